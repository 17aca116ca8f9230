"""Certificate bundles: program.py, certificate.json, surrogate.npz and query.smt2, written atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from jaxscd import __version__
from jaxscd.circuits.base import sha256_bytes, sha256_text
from jaxscd.verify.prove import solver_name

SCHEMA_VERSION = 1


def certificate(result, circuit_name: str, circuit_fingerprint: str) -> dict:
    """The JSON certificate: what was claimed, by which method, over which domain, with file hashes."""
    surrogate_bytes = result.surrogate.to_bytes() if result.surrogate is not None else b""
    proof = result.proof
    obligations = [
        {"claim": "circuit == surrogate", "method": "exhaustive", "inputs": result.n_valid,
         "verdict": "PROVED" if result.surrogate is not None else "UNKNOWN",
         "min_margin": result.margin, "float_error_bound": result.margin_bound},
        {"claim": "circuit == program", "method": "exhaustive", "inputs": result.n_valid,
         "verdict": "PROVED" if result.program is not None else "UNKNOWN"},
    ]
    if proof is not None:
        obligations.append({"claim": "surrogate == program", "method": "smt", "solver": solver_name(),
                            "verdict": proof.verdict.value, "seconds": round(proof.seconds, 3),
                            "query": "query.smt2", "reason": proof.reason or None})
    if result.spec_mismatches is not None:
        obligations.append({"claim": "circuit == spec", "method": "exhaustive", "inputs": result.n_valid,
                            "verdict": "PROVED" if result.spec_mismatch_count == 0 else "REFUTED",
                            "mismatches": result.spec_mismatch_count})
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": f"jaxscd {__version__}",
        "verdict": result.verdict.value,
        "circuit": {"name": circuit_name, "sha256": circuit_fingerprint, "classes": list(result.class_names)},
        "domain": result.domain.describe() | {"valid": result.n_valid,
                                              "precondition_program": repr(result.domain.precondition)},
        "program": {"repr": repr(result.program), "sha256": sha256_text(result.source or "")},
        "surrogate": {"sha256": sha256_bytes(surrogate_bytes),
                      "neurons": result.surrogate.n_neurons if result.surrogate is not None else None},
        "query": {"sha256": sha256_text(proof.smt2) if proof else None},
        "obligations": obligations,
    }


def write_bundle(result, out_dir: str | os.PathLike, circuit_name: str, circuit_fingerprint: str) -> Path:
    """Write the bundle into a temporary sibling directory, then rename it into place (no half bundles)."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (staging / "program.py").write_text(result.source or "")
        if result.surrogate is not None:
            (staging / "surrogate.npz").write_bytes(result.surrogate.to_bytes())
        if result.proof is not None:
            (staging / "query.smt2").write_text(result.proof.smt2)
        cert = certificate(result, circuit_name, circuit_fingerprint)
        (staging / "certificate.json").write_text(json.dumps(cert, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
