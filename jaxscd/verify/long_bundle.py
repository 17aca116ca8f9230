"""Certificate bundles of long-context proofs (``jaxscd.long_context``) and their independent re-check.

A bundle holds program.py, certificate.json (schema 1, with a ``long_context`` block: the strategy, the symmetry
claim and its reason, the float margin, the number of orbits or cubes) and, for circuit bounds, tree.json and
tree_query.smt2. ``jaxscd verify`` re-derives everything with ``circuit_recheck`` (integers and rationals, no
floats): the symmetry from the circuit's arrays, every orbit's or leaf cube's class, the tree's partition of the
domain, and the tree == program query through z3.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from fractions import Fraction
from pathlib import Path

from jaxscd.circuits.base import sha256_bytes
from jaxscd.circuits.reference import OneLayerCircuit
from jaxscd.circuits.sources import resolve_certified
from jaxscd.domain import Domain
from jaxscd.dsl import reference as dsl
from jaxscd.dsl.programs import from_json, to_json
from jaxscd.symmetry import COUNTS_AND_LAST, orbit_invariant
from jaxscd.verify.certificate import SCHEMA_VERSION, canonical_sha256, check_output_dir, domain_json
from jaxscd.verify.circuit_recheck import MIN_MARGIN, ExactCircuit
from jaxscd.verify.solver import recheck_query
from jaxscd.verify.tree import TREE_LOGIC, check_partition, read_trees, tree_query, tree_text

METHODS = {"orbits": "orbit bounds", "circuit-bounds": "cube bounds + smt-tree"}  # strategy -> obligation method


def long_domain_json(domain: Domain) -> dict:
    return domain_json(domain) | {"exhaustive": False}


def long_certificate(result, circuit_ref: dict, fingerprint: str) -> dict:
    domain = long_domain_json(result.domain)
    from jaxscd import __version__

    return {
        "schema_version": SCHEMA_VERSION, "tool": f"jaxscd {__version__}", "verdict": result.verdict.value,
        "program": to_json(result.program) if result.program is not None else None,
        "domain": domain | {"sha256": canonical_sha256(domain)},
        "circuit": {"source": circuit_ref, "sha256": fingerprint, "classes": list(result.class_names)},
        "long_context": {"strategy": result.strategy,
                         "symmetry": result.symmetry.claim() if result.symmetry else None,
                         "float_margin": result.margin, "orbits": result.orbits, "cubes": result.cubes},
        "obligations": [{"claim": "circuit == program", "method": METHODS[result.strategy],
                         "verdict": result.verdict.value,
                         "float_error_bound": result.margin}],
        "counterexample": result.counterexample,
        # informational (verify ignores it; the report page reads it)
        "run": {"departures": result.departures, "candidates": result.candidates, "timings": result.timings,
                "notes": result.notes, "short_domain": {"verdict": result.short_verdict,
                                                        "program": result.short_program}},
    }


def write_long_bundle(result, out_dir, circuit_ref: dict, fingerprint: str) -> Path:
    out = Path(out_dir)
    check_output_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (staging / "program.py").write_text(result.source or "", encoding="utf-8")
        if result.trees is not None and result.query is not None:
            (staging / "tree.json").write_text(tree_text(result.trees), encoding="utf-8")
            (staging / "tree_query.smt2").write_text(result.query, encoding="utf-8")
        cert = long_certificate(result, circuit_ref, fingerprint)
        cert["files"] = {p.name: sha256_bytes(p.read_bytes()) for p in sorted(staging.iterdir())}
        (staging / "certificate.json").write_text(json.dumps(cert, indent=1) + "\n", encoding="utf-8")
        previous = None
        if out.exists():
            previous = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, previous / "bundle")
        os.replace(staging, out)
        if previous is not None:
            shutil.rmtree(previous)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


# ------------------------------------------------------------------------------------------------------------
# Re-check (jaxscd verify)


def recheck_long(report, bundle: Path, cert: dict, timeout_s: float) -> None:
    """Add the long-context checks to ``report`` (a recheck.Report); any claim not re-derived is FAILED."""
    block, data = cert["long_context"], cert["domain"]
    pre = data.get("precondition")
    domain = Domain(tuple(data["alphabet"]), int(data["min_len"]), int(data["max_len"]),
                    from_json(pre) if pre else None, data.get("precondition_text") or "", exhaustive=False)
    report.add("domain hash", canonical_sha256(long_domain_json(domain)) == data.get("sha256"))
    report.add("certificate verdict is PROVED", cert.get("verdict") == "PROVED", str(cert.get("verdict")))
    program = from_json(cert["program"]) if cert.get("program") else None
    source = cert["circuit"]["source"]
    if source.get("kind") != "task" or program is None:
        report.add("circuit with known structure", False, "long-context bundles name a built-in task and a program")
        return
    task = resolve_certified(cert["circuit"])
    model = task.circuit.forward
    same = isinstance(model, OneLayerCircuit) and task.circuit.fingerprint == cert["circuit"]["sha256"]
    report.add("circuit fingerprint", same, "" if same else "the task's circuit differs from the certified one")
    report.add("alphabet and classes are the circuit's", tuple(domain.alphabet) == task.alphabet and
               cert["circuit"]["classes"] == list(task.circuit.class_names))
    margin = Fraction(block["float_margin"])
    report.add("float margin at least 1e-9", margin >= MIN_MARGIN, str(block["float_margin"]))
    if not same or domain.max_len > model.pos.shape[0]:
        return
    exact = ExactCircuit(model, domain.max_len)
    if block["strategy"] == "orbits":
        _recheck_orbits(report, exact, model, block, domain, program, max(margin, MIN_MARGIN))
    elif block["strategy"] == "circuit-bounds":
        _recheck_cubes(report, bundle, exact, domain, program, max(margin, MIN_MARGIN), timeout_s)
    else:
        report.add("long-context strategy", False, f"unknown strategy {block['strategy']!r}")


def _recheck_orbits(report, exact, model, block, domain, program, margin) -> None:
    claim = block.get("symmetry") or {}
    proved = claim.get("symmetry") == COUNTS_AND_LAST and exact.zero_positions(model, domain.max_len)
    report.add("symmetry counts+last-token from the circuit's arrays", proved,
               "" if proved else "the positional embedding is not 0 on every position, or no such claim")
    invariant = orbit_invariant(program) and orbit_invariant(domain.precondition)
    report.add("program and precondition are functions of the orbit (by type)", invariant)
    if not (proved and invariant):
        return
    wrong, undecided, count = None, 0, 0
    for n in domain.lengths:
        for last in range(domain.n_tokens):
            for counts, cls in exact.orbit_classes(n, last, margin).items():
                sequence = [u for u, c in enumerate(counts) for _ in range(c - (u == last))] + [last]
                if domain.precondition is not None and not dsl.run(domain.precondition, sequence):
                    continue
                count += 1
                if cls is None:
                    undecided += 1
                elif cls != dsl.run(program, sequence) and wrong is None:
                    wrong = domain.format(sequence)
    report.add(f"{count:,} orbits decided by exact bounds", undecided == 0, f"{undecided} undecided" if undecided
               else "")
    report.add("program == circuit on every orbit", wrong is None, "" if wrong is None else f"differs on {wrong!r}")


def _recheck_cubes(report, bundle, exact, domain, program, margin, timeout_s) -> None:
    """The cube tree partitions the domain, exact bounds on the circuit re-derive every leaf's class, and
    tree_query.smt2 is the tree == program query, unsat."""
    try:
        trees = read_trees(bundle / "tree.json")
    except (OSError, ValueError, AttributeError) as err:
        report.add("tree.json and tree_query.smt2", False, str(err))
        return
    problems, unproved = check_partition(trees, domain, lambda n, allowed: exact.cube_class(n, allowed, margin))
    report.add("tree partitions the domain", not problems, "; ".join(problems[:3]))
    report.add("every leaf's class re-derived by exact bounds", not problems and not unproved,
               f"{len(unproved)} leaves not proved, e.g. {unproved[0]}" if unproved else "")
    if not problems:
        recheck_query(report, bundle, "tree_query.smt2", tree_query(trees, program, domain), "tree", timeout_s,
                      TREE_LOGIC)
