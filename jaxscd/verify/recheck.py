"""Re-check a certificate bundle from scratch: hashes, exhaustive re-evaluation, and the SMT query.

Every check is independent of the run that wrote the bundle: the domain, program and surrogate are rebuilt
from the files, the circuit from its recorded source (its fingerprint must match), the SMT query is
regenerated and compared with ``query.smt2``, which z3 (and cvc5, when installed) must answer ``unsat``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import z3

from jaxscd.circuits.base import Circuit, CircuitError, sha256_bytes
from jaxscd.domain import DomainError
from jaxscd.dsl.programs import check_program, from_json
from jaxscd.dsl.source import render
from jaxscd.kernels.enumerate import precondition_mask, program_decisions
from jaxscd.kernels.evaluate import evaluate_circuit
from jaxscd.surrogate import IntegerSurrogate, exhaustive_decisions
from jaxscd.verify.certificate import SCHEMA_VERSION, canonical_sha256, domain_from_json, domain_json
from jaxscd.verify.prove import equivalence_query, smt2_text


class BundleError(Exception):
    """A bundle that cannot be read at all; ``code`` is the CLI exit status."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


EXIT_CORRUPT, EXIT_MISSING, EXIT_SCHEMA = 7, 8, 9


@dataclass
class Report:
    checks: list = field(default_factory=list)  # (name, status, detail); status in ok / FAILED / skipped

    def add(self, name: str, ok: bool | None, detail: str = "") -> None:
        self.checks.append((name, "ok" if ok else "skipped" if ok is None else "FAILED", detail))

    @property
    def verified(self) -> bool:
        return all(status != "FAILED" for _, status, _ in self.checks)


def _read_certificate(bundle: Path) -> dict:
    if not bundle.is_dir():
        raise BundleError(f"bundle directory not found: {str(bundle)!r}", EXIT_MISSING)
    path = bundle / "certificate.json"
    if not path.is_file():
        raise BundleError(f"{str(path)!r} is missing; is {str(bundle)!r} a jaxscd bundle?", EXIT_MISSING)
    try:
        cert = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"certificate.json is not valid JSON ({err}); the bundle is corrupt", EXIT_CORRUPT) from None
    version = cert.get("schema_version") if isinstance(cert, dict) else None
    if version != SCHEMA_VERSION:
        raise BundleError(f"certificate schema_version is {version!r}, this jaxscd reads {SCHEMA_VERSION}; "
                          f"re-create the bundle with this version", EXIT_SCHEMA)
    for name in cert.get("files", {}):
        if not (bundle / name).is_file():
            raise BundleError(f"{name} is missing from {str(bundle)!r}", EXIT_MISSING)
    return cert


def _load_circuit(source: dict) -> Circuit:
    from jaxscd.circuits.callable import load_callable
    from jaxscd.tasks import get_task

    if source.get("kind") == "task":
        return get_task(source["name"]).circuit
    if source.get("kind") == "callable":
        return load_callable(source["target"]).circuit
    if source.get("kind") == "graph":
        from jaxscd.circuits.graph import load_graph

        return load_graph(source["path"])
    if source.get("kind") == "circuit_sparsity":
        from jaxscd.circuits.sparse_gpt import load_sparse_circuit

        return load_sparse_circuit(source["model_dir"], source["template"], source.get("viz"), source.get("means"))[0]
    raise CircuitError(f"unknown circuit source {source!r}")


def _same_assertions(text: str, expected: str) -> bool:
    """Both texts parse to structurally identical assertions (let-names and layout may differ)."""
    try:
        got, want = z3.parse_smt2_string(text), z3.parse_smt2_string(expected)
    except z3.Z3Exception:
        return False
    return len(got) == len(want) and all(a.eq(b) for a, b in zip(got, want))


def _z3_unsat(text: str, timeout_s: float, logic: str | None = None) -> tuple[bool | None, str]:
    from jaxscd.verify.cubes import solve_text

    try:
        answer, _, _ = solve_text(text, timeout_s, logic)
    except z3.Z3Exception as err:
        return False, f"unparseable query: {err}"
    return (True if answer == "unsat" else None if answer == "unknown" else False), answer


def _cvc5_unsat(text: str, timeout_s: float) -> tuple[bool | None, str]:
    """The same SMT-LIB2 text through cvc5, an independent second solver (optional extra ``jaxscd[cvc5]``)."""
    try:
        import cvc5
    except ImportError:
        return None, "cvc5 not installed (pip install jaxscd[cvc5])"
    solver = cvc5.Solver(cvc5.TermManager())
    solver.setOption("tlimit-per", str(int(timeout_s * 1000)))
    parser = cvc5.InputParser(solver)
    parser.setStringInput(cvc5.InputLanguage.SMT_LIB_2_6, text, "query.smt2")
    answer = ""
    while not (command := parser.nextCommand()).isNull():
        answer = command.invoke(solver, parser.getSymbolManager()).strip() or answer
    return (True if answer == "unsat" else None if answer in ("unknown", "") else False), f"cvc5 answered {answer}"


def _recheck_cubes(report, bundle, cubes, surrogate, program, domain, valid, timeout_s) -> None:
    """Cube proofs: the cubes partition the domain, each file is the query of its cube, and each is unsat."""
    from jaxscd.verify.cubes import Cube, covers_domain, cube_phases, cube_query

    report.add("cubes partition the domain", covers_domain(domain, cubes), f"{len(cubes)} cubes")
    _, active = exhaustive_decisions(surrogate, domain)
    mismatched, not_unsat, cvc5_bad, cvc5_skipped = [], [], [], 0
    for entry in cubes:
        cube = Cube(entry["length"], tuple(entry["prefix"]))
        text = (bundle / entry["file"]).read_text()
        phases = cube_phases(active, valid, *cube.index_range(domain))
        if not _same_assertions(text, cube_query(surrogate, program, domain, cube, phases)):
            mismatched.append(entry["file"])
        unsat, _ = _z3_unsat(text, timeout_s)
        if unsat is not True:
            not_unsat.append(entry["file"])
        ok, _ = _cvc5_unsat(text, timeout_s)
        cvc5_skipped += ok is None
        if ok is False:
            cvc5_bad.append(entry["file"])
    report.add("each cube file is the query of its cube", not mismatched, ", ".join(mismatched[:3]))
    report.add("z3: every cube query is unsat", not not_unsat, ", ".join(not_unsat[:3]))
    report.add("cvc5: every cube query is unsat", None if cvc5_skipped else not cvc5_bad,
               f"{cvc5_skipped} not decided by cvc5" if cvc5_skipped else ", ".join(cvc5_bad[:3]))


def _check_one_query_form(report, bundle, surrogate, program, domain) -> None:
    query = (bundle / "query.smt2").read_text()
    same = _same_assertions(query, smt2_text(equivalence_query(surrogate, program, domain)[0]))
    report.add("query.smt2 encodes surrogate != program on the domain", same,
               "" if same else "query.smt2 is not the query of this surrogate, program and domain")


def _recheck_tree(report, bundle, entry, surrogate, program, domain, timeout_s) -> None:
    """Tree proofs: the tree partitions the domain, plain-integer interval bounds prove every decided leaf, the
    query file is the tree == program query, and z3 (and cvc5) find it unsat."""
    from jaxscd.verify.tree import TREE_LOGIC, check_tree, tree_query, trees_from_json

    raw = json.loads((bundle / entry["tree"]["file"]).read_text())
    if not isinstance(raw, dict):
        raise BundleError("tree.json is not a JSON object of trees by length", EXIT_CORRUPT)
    trees = trees_from_json(raw)
    problems, unproved = check_tree(trees, surrogate, domain)
    report.add("tree partitions the domain", not problems, "; ".join(problems[:3]))
    if problems:
        return
    report.add("interval bounds prove every decided leaf of the tree", not unproved,
               f"{len(unproved)} leaves not proved, e.g. {', '.join(unproved[:3])}" if unproved else "")
    text = (bundle / entry["file"]).read_text()
    same = _same_assertions(text, tree_query(trees, program, domain))
    report.add(f"{entry['file']} encodes tree != program on the domain", same,
               "" if same else f"{entry['file']} is not the query of this tree, program and domain")
    unsat, answer = _z3_unsat(text, timeout_s, TREE_LOGIC)
    report.add(f"z3: {entry['file']} is unsat", unsat is True, f"z3 answered {answer}")
    ok, answer = _cvc5_unsat(text, timeout_s)
    report.add(f"cvc5: {entry['file']} is unsat", ok, answer)


def recheck(bundle_dir, timeout_s: float = 120.0) -> Report:
    """Re-check a bundle; a bundle whose certificate is structurally malformed raises BundleError (corrupt)."""
    try:
        return _recheck(Path(bundle_dir), timeout_s)
    except BundleError:
        raise
    except (KeyError, TypeError, AttributeError, IndexError, ValueError, OSError, RecursionError) as err:
        raise BundleError(f"malformed bundle ({type(err).__name__}: {err}); re-create it with jaxscd distill --out",
                          EXIT_CORRUPT) from None


def _recheck(bundle: Path, timeout_s: float) -> Report:
    cert = _read_certificate(bundle)
    report = Report()

    changed = [name for name, expected in cert["files"].items()
               if sha256_bytes((bundle / name).read_bytes()) != expected]
    for name in changed:
        report.add(f"sha256 {name}", False, "file changed since the bundle was written")
    if not changed:
        report.add(f"sha256 of {len(cert['files'])} files", True)

    try:
        domain = domain_from_json(cert["domain"])
        program = from_json(cert["program"]) if cert.get("program") else None
    except (DomainError, ValueError, KeyError, TypeError) as err:
        raise BundleError(f"certificate.json describes no valid domain/program: {err}", EXIT_CORRUPT) from None
    if program is not None:
        try:
            check_program(program, domain.n_tokens)
        except (ValueError, TypeError) as err:
            raise BundleError(f"the certified program does not fit the domain: {err}", EXIT_CORRUPT) from None
    recorded = cert["domain"].get("sha256")
    domain_ok = canonical_sha256(domain_json(domain)) == recorded
    report.add("domain hash", domain_ok, "" if domain_ok else "domain fields differ from the recorded hash")
    if program is None:
        report.add("program", False, "the bundle holds no program (its verdict was not PROVED)")
        return report
    rendered = (bundle / "program.py").read_text() == render(program, domain.alphabet, cert["circuit"].get("classes"))
    report.add("program.py renders the certified program", rendered, "" if rendered else
               "program.py differs from the program")

    surrogate = None
    if (bundle / "surrogate.npz").is_file():
        try:
            surrogate = IntegerSurrogate.from_arrays(np.load(io.BytesIO((bundle / "surrogate.npz").read_bytes())))
        except (OSError, ValueError, KeyError) as err:
            raise BundleError(f"surrogate.npz is unreadable ({err}); the bundle is corrupt", EXIT_CORRUPT) from None

    if surrogate is not None and surrogate.skip_w.shape != (domain.max_len, domain.n_tokens):
        report.add("surrogate fits the domain", False, f"surrogate inputs {list(surrogate.skip_w.shape)} != "
                   f"[max_len, tokens] = {[domain.max_len, domain.n_tokens]}")
        surrogate = None
    valid = precondition_mask(domain)
    n_valid = int(valid.sum())
    report.add("domain has the recorded number of valid inputs", n_valid > 0 and n_valid == cert["domain"]["valid"],
               f"{n_valid:,} valid inputs, certificate says {cert['domain']['valid']:,}")
    program_dec = program_decisions(program, domain)

    try:
        circuit = _load_circuit(cert["circuit"]["source"])
    except (CircuitError, KeyError) as err:
        report.add("circuit available", False, str(err))
        circuit = None
    if circuit is not None:
        same = circuit.fingerprint == cert["circuit"]["sha256"]
        report.add("circuit fingerprint", same, "" if same else "the circuit's weights or source changed")
        try:
            table = evaluate_circuit(circuit, domain, valid)
        except CircuitError as err:
            report.add("circuit runs on the domain", False, str(err))
            return report
        margin_ok = table.min_margin() > table.margin_bound  # recomputed, never read from the certificate
        report.add("circuit margins above the float bound", margin_ok,
                   f"min margin {table.min_margin():.4g}, bound {table.margin_bound:.3g}")
        wrong = int((valid & (table.decisions != program_dec)).sum())
        report.add("circuit == program (exhaustive)", wrong == 0, f"{int(valid.sum()):,} inputs" if not wrong else
                   f"differs on {wrong:,} inputs")
        if surrogate is not None:
            s_dec, _ = exhaustive_decisions(surrogate, domain)
            wrong = int((valid & (table.decisions != s_dec)).sum())
            report.add("circuit == surrogate (exhaustive)", wrong == 0, "" if not wrong else f"differs on {wrong:,}")

    smt = next((o for o in cert["obligations"] if o.get("claim") == "surrogate == program"), None)
    if surrogate is not None and smt is not None and smt.get("method") == "smt-cubes":
        _recheck_cubes(report, bundle, smt["cubes"], surrogate, program, domain, valid, timeout_s)
    elif surrogate is not None and smt is not None and smt.get("method") == "smt-tree":
        _recheck_tree(report, bundle, smt, surrogate, program, domain, timeout_s)
        _check_one_query_form(report, bundle, surrogate, program, domain)
    elif surrogate is not None and (bundle / "query.smt2").is_file():
        _check_one_query_form(report, bundle, surrogate, program, domain)
        query = (bundle / "query.smt2").read_text()
        unsat, answer = _z3_unsat(query, timeout_s)
        report.add("z3: query.smt2 is unsat", unsat is True, f"z3 answered {answer}")
        ok, answer = _cvc5_unsat(query, timeout_s)
        report.add("cvc5: query.smt2 is unsat", ok, answer)
    return report
