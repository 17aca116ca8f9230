"""Certificate bundles: program.py, certificate.json, surrogate.npz and query.smt2, written atomically.

``certificate.json`` (schema 1) records what was claimed, by which method, over which domain, and the sha256
of every artifact, so ``jaxscd.verify.recheck`` can re-establish each claim from scratch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from jaxscd import __version__
from jaxscd.circuits.base import sha256_bytes, sha256_text
from jaxscd.domain import Domain
from jaxscd.dsl.programs import from_json, to_json
from jaxscd.verify.solver import solver_name

SCHEMA_VERSION = 1
_SHA256 = re.compile(r"[0-9a-f]{64}")


class OutputDirError(OSError):
    """``--out`` names something that is neither new, empty, nor a jaxscd bundle recognised completely."""


def domain_json(domain: Domain) -> dict:
    return {"alphabet": list(domain.alphabet), "min_len": domain.min_len, "max_len": domain.max_len,
            "size": domain.size, "precondition": to_json(domain.precondition) if domain.precondition else None,
            "precondition_text": domain.precondition_text or None}


def domain_from_json(data: dict) -> Domain:
    """The domain a certificate describes; ``"exhaustive": false`` marks a long-context domain (no size cap)."""
    pre = data.get("precondition")
    return Domain(tuple(data["alphabet"]), int(data["min_len"]), int(data["max_len"]),
                  from_json(pre) if pre else None, data.get("precondition_text") or "",
                  exhaustive=data.get("exhaustive", True) is not False)


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
        obligations.append({"claim": "surrogate == program", "method": proof.method, "solver": solver_name(),
                            "verdict": proof.verdict.value, "seconds": round(proof.seconds, 3), "expect": "unsat",
                            "reason": proof.reason or None} | proof.record)  # the files its strategy rests on
    if result.spec_mismatches is not None:
        obligations.append({"claim": "circuit == spec", "method": "exhaustive", "inputs": result.n_valid,
                            "verdict": "PROVED" if result.spec_mismatch_count == 0 else "REFUTED",
                            "mismatches": result.spec_mismatch_count,
                            "examples": [result.domain.format(s) for s in result.spec_mismatches]})
    files = {"program.py": sha256_text(result.source or "")}
    if result.surrogate is not None:
        files["surrogate.npz"] = sha256_bytes(result.surrogate.to_bytes())
    if proof is not None:
        for name, text in _proof_files(proof).items():
            files[name] = sha256_text(text)
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": f"jaxscd {__version__}",
        "verdict": result.verdict.value,
        "circuit": {"source": circuit_ref, "sha256": circuit_fingerprint, "classes": list(result.class_names)},
        "domain": domain | {"valid": result.n_valid, "sha256": canonical_sha256(domain)},
        "program": to_json(result.program) if result.program is not None else None,
        "surrogate": {"neurons": result.surrogate.n_neurons, "depth": result.surrogate.depth,
                      "obtained_by": result.surrogate_method} if result.surrogate is not None else None,
        "files": files,
        "obligations": obligations,
        "run": run_record(result),
    }


def _proof_files(proof) -> dict:
    """Bundle path -> text: query.smt2 (the one query, for other tools), then what the proof's strategy adds."""
    return {"query.smt2": proof.smt2} | proof.files


def run_record(result) -> dict:
    """What the run found beyond its claims, for reports (``jaxscd report``): stage timings, the search's counts,
    notes, the spec's departure patterns and the nearest misses. Informational: verify re-checks no part of it."""
    from jaxscd.dsl.source import render

    return {"timings": dict(result.timings), "notes": list(result.notes),
            "candidates": {"generated": result.generated, "survivors": len(result.survivors),
                           "per_family": {k: list(v) for k, v in result.per_family.items()},
                           "skipped_families": list(result.skipped)},
            "surrogate_attempts": list(result.surrogate_attempts), "spec_patterns": list(result.spec_patterns),
            "near_misses": [{"program": render(m.program, result.domain.alphabet, result.class_names),
                             "agreement": m.agreement, "mismatches": m.mismatches, "patterns": list(m.patterns)}
                            for m in result.near_misses],
            "refuted": [{"program": repr(p), "counterexample": result.domain.format(c)} for p, c in result.refuted],
            "exact_description": _description(result)}


def _description(result) -> dict | None:
    described = getattr(result, "exact_description", None)
    if described is None:
        return None
    return described.to_json() | {"source": described.source(result.domain, result.class_names)}


def bundle_file_problem(name, digest) -> str | None:
    """Why ``name: digest`` cannot be an entry of a certificate's files (None if it can): a relative path
    inside the bundle, other than certificate.json, with a sha256 hex digest."""
    path = PurePosixPath(name) if isinstance(name, str) else None
    if path is None or not name or path.is_absolute() or ".." in path.parts or "\\" in name or \
            str(path) != name or name == "certificate.json":
        return "not a relative path inside the bundle"
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        return f"its sha256 {digest!r} is not 64 hex digits"
    return None


def _not_a_bundle(out: Path) -> str | None:
    """Why ``out`` is not a previous jaxscd bundle that may be replaced whole (None if it is one): a
    certificate.json of this schema, every file it lists present with its recorded sha256, and nothing else."""
    try:
        cert = json.loads((out / "certificate.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "it holds no readable certificate.json"
    files = cert.get("files") if isinstance(cert, dict) else None
    if cert.get("schema_version") != SCHEMA_VERSION or not isinstance(files, dict) or \
            any(bundle_file_problem(name, digest) for name, digest in files.items()):
        return "its certificate.json is not a jaxscd certificate of this version"
    present = set()
    for folder, dirs, names in os.walk(out):
        for name in dirs + names:
            path = Path(folder) / name
            if path.is_symlink():
                return f"it holds a link, {str(path.relative_to(out))!r}"
            if name in names:
                present.add(path.relative_to(out).as_posix())
    unlisted = sorted(present - set(files) - {"certificate.json"})
    if unlisted:
        return f"it holds files its certificate does not list ({', '.join(unlisted[:3])})"
    missing = sorted(set(files) - present)
    if missing:
        return f"files its certificate lists are missing ({', '.join(missing[:3])})"
    changed = sorted(name for name, digest in files.items() if sha256_bytes((out / name).read_bytes()) != digest)
    if changed:
        return f"files were changed since jaxscd wrote them ({', '.join(changed[:3])})"
    return None


def check_output_dir(out: str | os.PathLike) -> None:
    """Raise OutputDirError unless ``out`` is new, an empty directory, or a jaxscd bundle recognised completely
    (which writing replaces); nothing else is ever deleted."""
    out = Path(out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        problem = "it is a link" if out.is_symlink() else "it is not a directory"
    elif not out.exists() or not any(out.iterdir()):
        return
    else:
        problem = _not_a_bundle(out)
    if problem is not None:
        raise OutputDirError(f"--out {str(out)!r} exists and is not a jaxscd bundle to replace ({problem}); "
                             f"choose a new directory")


def write_bundle(result, out_dir: str | os.PathLike, circuit_ref: dict, circuit_fingerprint: str) -> Path:
    """Write the bundle into a temporary sibling directory, then rename it into place (no half bundles); a
    previous bundle there is moved aside and deleted only once the new one is in place."""
    out = Path(out_dir)
    check_output_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    previous = None
    try:
        (staging / "program.py").write_text(result.source or "", encoding="utf-8")
        if result.surrogate is not None:
            (staging / "surrogate.npz").write_bytes(result.surrogate.to_bytes())
        for name, text in (_proof_files(result.proof) if result.proof is not None else {}).items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_text(text, encoding="utf-8")
        cert = certificate(result, circuit_ref, circuit_fingerprint)
        (staging / "certificate.json").write_text(json.dumps(cert, indent=2) + "\n", encoding="utf-8")
        check_output_dir(out)  # again: the directory may have changed while the bundle was computed
        if out.exists():
            previous = staging.with_name(staging.name + ".previous")
            os.rename(out, previous)
        os.rename(staging, out)
    except BaseException:
        if previous is not None and previous.exists() and not out.exists():
            os.rename(previous, out)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
    return out
