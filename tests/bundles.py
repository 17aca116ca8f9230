"""Bundle helpers shared by the certificate and tree tests: write a task's bundle, copy it, edit it."""

from __future__ import annotations

import json
import shutil


def task_bundle(tmp_path_factory, task_name: str, max_len: int, strategy: str = "auto"):
    """(bundle directory, distill result) for a built-in task on lengths up to ``max_len``."""
    from jaxscd.pipeline import DistillConfig, distill
    from jaxscd.tasks import get_task
    from jaxscd.verify.certificate import write_bundle

    task = get_task(task_name)
    result = distill(task.circuit, task.domain(max_len=max_len), DistillConfig(proof_strategy=strategy))
    out = tmp_path_factory.mktemp("bundles") / f"{task_name}_{strategy}"
    write_bundle(result, out, {"kind": "task", "name": task_name}, task.circuit.fingerprint)
    return out, result


def copy_bundle(bundle, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(bundle, target)
    return target


def rehash(bundle, name):
    """Record the current hash of an edited file, so only the deeper checks can notice the edit."""
    from jaxscd.circuits.base import sha256_bytes

    cert = json.loads((bundle / "certificate.json").read_text())
    cert["files"][name] = sha256_bytes((bundle / name).read_bytes())
    (bundle / "certificate.json").write_text(json.dumps(cert))


def failed_checks(report):
    return {name for name, status, _ in report.checks if status == "FAILED"}


def forge(bundle, edit):
    """Edit certificate.json as a forger would: apply ``edit(cert)``, then recompute the domain hash, re-render
    program.py and record every listed file's hash, so only the checks against the circuit can notice."""
    from jaxscd.circuits.base import sha256_bytes
    from jaxscd.dsl.programs import from_json
    from jaxscd.dsl.source import render
    from jaxscd.verify.certificate import canonical_sha256, domain_from_json, domain_json

    cert = json.loads((bundle / "certificate.json").read_text())
    edit(cert)
    domain = domain_from_json(cert["domain"])
    cert["domain"]["sha256"] = canonical_sha256(domain_json(domain, cert["domain"].get("restriction") is True))
    try:
        program = from_json(cert["program"])
    except ValueError:  # a program verify must refuse to read: program.py stays as it was
        program = None
    if program is not None:
        (bundle / "program.py").write_text(render(program, domain.alphabet, cert["circuit"]["classes"]))
    cert["files"] = {name: sha256_bytes((bundle / name).read_bytes()) for name in cert["files"]}
    (bundle / "certificate.json").write_text(json.dumps(cert))
