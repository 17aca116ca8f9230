"""Certificate bundles: program.py, certificate.json, surrogate.npz and query.smt2, written atomically.

``certificate.json`` (schema 1) records what was claimed, by which method, over which domain, and the sha256
of every artifact, so ``jaxscd.verify.recheck`` can re-establish each claim from scratch.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from jaxscd import __version__
from jaxscd.circuits.base import sha256_bytes, sha256_text
from jaxscd.domain import Domain
from jaxscd.dsl.programs import from_json, to_json
from jaxscd.verify.prove import solver_name

SCHEMA_VERSION = 1


def domain_json(domain: Domain) -> dict:
    return {"alphabet": list(domain.alphabet), "min_len": domain.min_len, "max_len": domain.max_len,
            "size": domain.size, "precondition": to_json(domain.precondition) if domain.precondition else None,
            "precondition_text": domain.precondition_text or None}


def domain_from_json(data: dict) -> Domain:
    pre = data.get("precondition")
    return Domain(tuple(data["alphabet"]), int(data["min_len"]), int(data["max_len"]),
                  from_json(pre) if pre else None, data.get("precondition_text") or "")


def tree_text(tree: dict) -> str:
    """tree.json: one line per length, so a tree of thousands of nodes stays diffable."""
    lines = [f"  {json.dumps(n)}: {json.dumps(node, separators=(',', ':'))}" for n, node in tree.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def canonical_sha256(data) -> str:
    return sha256_text(json.dumps(data, sort_keys=True, separators=(",", ":")))


def certificate(result, circuit_ref: dict, circuit_fingerprint: str) -> dict:
    """The JSON certificate of a distillation result (see the module docstring)."""
    proof = result.proof
    domain = domain_json(result.domain)
    obligations = [{"claim": "circuit == surrogate", "method": "exhaustive", "inputs": result.n_valid,
                    "verdict": "PROVED" if result.surrogate is not None else "UNKNOWN",
                    "min_margin": result.margin, "float_error_bound": result.margin_bound}]
    if result.program is not None and result.circuit_program_mismatches is not None:
        obligations.append({"claim": "circuit == program", "method": "exhaustive", "inputs": result.n_valid,
                            "verdict": "PROVED" if result.circuit_program_mismatches == 0 else "REFUTED",
                            "mismatches": result.circuit_program_mismatches})
    if proof is not None:
        smt = {"claim": "surrogate == program", "method": proof.method, "solver": solver_name(),
               "verdict": proof.verdict.value, "seconds": round(proof.seconds, 3), "expect": "unsat",
               "reason": proof.reason or None}
        if proof.method == "smt-cubes":  # query.smt2 is kept for other tools; the cube queries are the proof
            smt["cubes"] = [dict(c, file=f"cubes/{c['file']}") for c in proof.cubes]
        elif proof.method == "smt-tree":  # surrogate == tree by interval bounds, tree == program by the solver
            from jaxscd.verify.tree import tree_stats

            smt["tree"] = {"file": "tree.json", "bounds": "exact integer interval bounds per leaf"} | \
                tree_stats(proof.tree)
            smt["file"] = "tree_query.smt2"
        else:
            smt["file"] = "query.smt2"
        obligations.append(smt)
    if result.spec_mismatches is not None:
        obligations.append({"claim": "circuit == spec", "method": "exhaustive", "inputs": result.n_valid,
                            "verdict": "PROVED" if result.spec_mismatch_count == 0 else "REFUTED",
                            "mismatches": result.spec_mismatch_count,
                            "examples": [result.domain.format(s) for s in result.spec_mismatches]})
    files = {"program.py": sha256_text(result.source or "")}
    if result.surrogate is not None:
        files["surrogate.npz"] = sha256_bytes(result.surrogate.to_bytes())
    if proof is not None:
        files["query.smt2"] = sha256_text(proof.smt2)
        for name, text in (proof.cube_queries or {}).items():
            files[f"cubes/{name}"] = sha256_text(text)
        if proof.tree is not None:
            files["tree.json"] = sha256_text(tree_text(proof.tree))
            files["tree_query.smt2"] = sha256_text(proof.tree_smt2)
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": f"jaxscd {__version__}",
        "verdict": result.verdict.value,
        "circuit": {"source": circuit_ref, "sha256": circuit_fingerprint, "classes": list(result.class_names)},
        "domain": domain | {"valid": result.n_valid, "sha256": canonical_sha256(domain)},
        "program": to_json(result.program) if result.program is not None else None,
        "surrogate": {"neurons": result.surrogate.n_neurons} if result.surrogate is not None else None,
        "files": files,
        "obligations": obligations,
    }


def write_bundle(result, out_dir: str | os.PathLike, circuit_ref: dict, circuit_fingerprint: str) -> Path:
    """Write the bundle into a temporary sibling directory, then rename it into place (no half bundles)."""
    out = Path(out_dir)
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / "certificate.json").exists())):
        raise OSError(f"--out {str(out)!r} exists and is not a jaxscd bundle; choose a new directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (staging / "program.py").write_text(result.source or "")
        if result.surrogate is not None:
            (staging / "surrogate.npz").write_bytes(result.surrogate.to_bytes())
        if result.proof is not None:
            (staging / "query.smt2").write_text(result.proof.smt2)
            if result.proof.tree is not None:
                (staging / "tree.json").write_text(tree_text(result.proof.tree))
                (staging / "tree_query.smt2").write_text(result.proof.tree_smt2)
            if result.proof.cube_queries:
                (staging / "cubes").mkdir()
                for name, text in result.proof.cube_queries.items():
                    (staging / "cubes" / name).write_text(text)
        cert = certificate(result, circuit_ref, circuit_fingerprint)
        (staging / "certificate.json").write_text(json.dumps(cert, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
