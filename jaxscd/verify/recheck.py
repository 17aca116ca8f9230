"""Re-check a certificate bundle from scratch: hashes, exhaustive re-evaluation, and the SMT query.

Every check is independent of the run that wrote the bundle: the domain, program and surrogate are rebuilt
from the files, the circuit from its recorded source (its fingerprint must match), the SMT query is
regenerated and compared with ``query.smt2``, which z3 (and cvc5, when installed) must answer ``unsat``.

A bundle is data: nothing it names is imported. Built-in tasks, JSON graphs and circuit_sparsity checkpoints
(read with torch ``weights_only``) are re-run from their data; a circuit written as Python code is re-run only
from the file the user passes (``--circuit``), after its sha256 matches the certificate. Every obligation the
certificate lists is re-checked, or a FAILED line names it; SMT files are parsed only when they hold nothing but
declarations, assertions and check-sat (z3 and cvc5 obey options that write files).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jaxscd.circuits.base import CircuitError, sha256_bytes
from jaxscd.circuits.sources import CircuitOptionError, CircuitSource, resolve_certified
from jaxscd.domain import DomainError
from jaxscd.dsl.programs import check_program, from_json
from jaxscd.dsl.source import render
from jaxscd.kernels.enumerate import precondition_mask, program_decisions
from jaxscd.kernels.evaluate import evaluate_circuit
from jaxscd.surrogate import IntegerSurrogate, exhaustive_decisions
from jaxscd.verify.certificate import (
    SCHEMA_VERSION,
    bundle_file_problem,
    canonical_sha256,
    domain_from_json,
    domain_json,
)
from jaxscd.verify.long_bundle import recheck_long
from jaxscd.verify.prove import by_method


class BundleError(Exception):
    """A bundle that cannot be read at all; ``code`` is the CLI exit status."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


EXIT_BAD_INPUT, EXIT_CORRUPT, EXIT_MISSING, EXIT_SCHEMA = 2, 7, 8, 9
CIRCUIT_CLAIMS = ("circuit == surrogate", "circuit == program", "circuit == spec")  # need the circuit re-run
REQUIRED_CLAIMS = ("circuit == surrogate", "circuit == program", "surrogate == program")  # behind a PROVED


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
    files = cert.get("files")
    if not isinstance(files, dict):
        raise BundleError("certificate.json has no \"files\" table of sha256 hashes; the bundle is corrupt",
                          EXIT_CORRUPT)
    for name in files:
        if (problem := bundle_file_problem(name, files[name])) is not None:
            raise BundleError(f"certificate.json lists {name!r}: {problem}; the bundle is corrupt", EXIT_CORRUPT)
        if not (bundle / name).is_file():
            raise BundleError(f"{name} is missing from {str(bundle)!r}", EXIT_MISSING)
    return cert


def _check_names(report: Report, loaded: CircuitSource, domain, classes) -> None:
    """The certificate's token names and class names, in order, are the circuit's own."""
    own = loaded.alphabet
    if own is not None:
        expected = own[:domain.n_tokens] if loaded.prefix_alphabet else own
        same = tuple(domain.alphabet) == tuple(expected)
        report.add("alphabet is the circuit's", same, "" if same else
                   f"certificate {list(domain.alphabet)}, circuit {list(own)}")
    same = list(classes) == list(loaded.circuit.class_names)
    report.add("class names are the circuit's", same, "" if same else
               f"certificate {list(classes)}, circuit {list(loaded.circuit.class_names)}")


def recheck(bundle_dir, timeout_s: float = 120.0, circuit_target: str | None = None) -> Report:
    """Re-check a bundle; a bundle whose certificate is structurally malformed raises BundleError (corrupt).

    ``circuit_target`` (``path.py:fn``) re-runs a bundle's Python circuit: its sha256 must match first.
    """
    try:
        return _recheck(Path(bundle_dir), timeout_s, circuit_target)
    except BundleError:
        raise
    except (KeyError, TypeError, AttributeError, IndexError, ValueError, OSError, RecursionError) as err:
        raise BundleError(f"malformed bundle ({type(err).__name__}: {err}); re-create it with jaxscd distill --out",
                          EXIT_CORRUPT) from None


def _obligations(cert: dict) -> dict:
    """claim -> obligation, one each; anything else is a corrupt certificate."""
    raw = cert.get("obligations")
    if not isinstance(raw, list) or not all(isinstance(o, dict) and isinstance(o.get("claim"), str) for o in raw):
        raise BundleError("certificate.json has no list of obligations with claims; the bundle is corrupt",
                          EXIT_CORRUPT)
    by_claim = {o["claim"]: o for o in raw}
    if len(by_claim) != len(raw):
        raise BundleError("certificate.json lists an obligation twice; the bundle is corrupt", EXIT_CORRUPT)
    return by_claim


def _recheck(bundle: Path, timeout_s: float, circuit_target: str | None) -> Report:
    cert = _read_certificate(bundle)
    report = Report()
    files = cert["files"]

    changed = [name for name, expected in files.items()
               if sha256_bytes((bundle / name).read_bytes()) != expected]
    for name in changed:
        report.add(f"sha256 {name}", False, "file changed since the bundle was written")
    if not changed:
        report.add(f"sha256 of {len(files)} files", True)
    if cert.get("long_context") is not None:  # proved by bounds on the circuit (jaxscd.long_context)
        recheck_long(report, bundle, cert, timeout_s)
        return report

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
    classes = cert["circuit"].get("classes")
    if not (isinstance(classes, list) and len(classes) == 2 and all(isinstance(c, str) for c in classes)):
        raise BundleError(f"certificate.json circuit.classes must be 2 class names, got {classes!r}; the bundle is "
                          f"corrupt", EXIT_CORRUPT)
    obligations = _obligations(cert)
    recorded = cert["domain"].get("sha256")
    domain_ok = canonical_sha256(domain_json(domain)) == recorded
    report.add("domain hash", domain_ok, "" if domain_ok else "domain fields differ from the recorded hash")
    verdict_ok = cert.get("verdict") == "PROVED"
    report.add("certificate verdict is PROVED", verdict_ok, "" if verdict_ok else
               f"the certificate records {cert.get('verdict')!r}; only a PROVED certificate can be verified")
    if program is None:
        report.add("program", False, "the bundle holds no program (its verdict was not PROVED)")
        return report
    if "program.py" not in files:
        report.add("program.py is listed with its sha256", False, "the certificate's files do not list program.py")
    else:
        rendered = (bundle / "program.py").read_text(encoding="utf-8") == render(program, domain.alphabet, classes)
        report.add("program.py renders the certified program", rendered, "" if rendered else
                   "program.py differs from the program")
    for claim in REQUIRED_CLAIMS:
        verdict = obligations.get(claim, {}).get("verdict")
        report.add(f"obligation {claim} is PROVED", verdict == "PROVED", "" if verdict == "PROVED" else
                   "missing from the certificate" if claim not in obligations else f"recorded as {verdict!r}")
    rechecked: set = set()

    surrogate = None
    if "surrogate.npz" in files:
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

    table = None
    try:  # data rebuilt; Python code only from circuit_target, once its sha256 matches
        loaded = resolve_certified(cert["circuit"], circuit_target)
    except CircuitOptionError as err:
        raise BundleError(str(err), EXIT_BAD_INPUT) from None
    except (CircuitError, KeyError) as err:
        report.add(getattr(err, "check", "circuit available"), False,
                   str(err.args[0]) if isinstance(err, KeyError) else str(err))
        loaded = None
    if loaded is not None:
        circuit = loaded.circuit
        same = circuit.fingerprint == cert["circuit"]["sha256"]
        report.add("circuit fingerprint", same, "" if same else "the circuit's weights or source changed")
        _check_names(report, loaded, domain, classes)
        try:
            table = evaluate_circuit(circuit, domain, valid)
        except CircuitError as err:
            report.add("circuit runs on the domain", False, str(err))
            table = None
    if table is not None:
        margin_ok = table.min_margin() > table.margin_bound  # recomputed, never read from the certificate
        report.add("circuit margins above the float bound", margin_ok,
                   f"min margin {table.min_margin():.4g}, bound {table.margin_bound:.3g}")
        wrong = int((valid & (table.decisions != program_dec)).sum())
        report.add("circuit == program (exhaustive)", wrong == 0, f"{int(valid.sum()):,} inputs" if not wrong else
                   f"differs on {wrong:,} inputs")
        rechecked.add("circuit == program")
        if surrogate is not None:
            s_dec, _ = exhaustive_decisions(surrogate, domain)
            wrong = int((valid & (table.decisions != s_dec)).sum())
            report.add("circuit == surrogate (exhaustive)", wrong == 0, "" if not wrong else f"differs on {wrong:,}")
            rechecked.add("circuit == surrogate")
        if "circuit == spec" in obligations and loaded.spec is not None:
            _recheck_spec(report, obligations["circuit == spec"], loaded, domain, table)
            rechecked.add("circuit == spec")

    smt = obligations.get("surrogate == program")
    strategy = by_method(smt.get("method")) if smt is not None else None
    if surrogate is not None and strategy is not None:
        unlisted = sorted(set(strategy.files(smt)) - set(files))
        if unlisted:
            report.add("SMT files are listed with their sha256", False, f"{', '.join(unlisted)} not in the "
                       f"certificate's files")
        else:
            strategy.recheck(report, bundle, smt, surrogate, program, domain, valid, timeout_s)
            rechecked.add("surrogate == program")
    for claim, obligation in obligations.items():
        if claim not in rechecked:
            report.add(f"obligation {claim} ({obligation.get('method')}) re-checked", False,
                       _not_rechecked_reason(claim, obligation, loaded, surrogate))
    return report


def _not_rechecked_reason(claim: str, obligation: dict, loaded, surrogate) -> str:
    if claim not in CIRCUIT_CLAIMS + ("surrogate == program",):
        return "verify knows no such claim"
    if claim in CIRCUIT_CLAIMS and loaded is None:
        return "the circuit could not be re-run (see above)"
    if claim == "circuit == spec":
        return "the circuit's source holds no spec to compare with"
    if surrogate is None:
        return "surrogate.npz is not in the certificate's files, or does not fit the domain"
    if claim == "surrogate == program" and by_method(obligation.get("method")) is None:
        return f"unknown method {obligation.get('method')!r}"
    return "its files are missing or unreadable (see above)"


def _recheck_spec(report, obligation, loaded, domain, table) -> None:
    """The recorded number of inputs where the circuit departs from its intended behaviour."""
    from jaxscd.pipeline import DistillConfig, Problem, compare_with_spec

    try:
        count = compare_with_spec(loaded.spec, Problem(domain, table, DistillConfig()), loaded.circuit.class_names)[0]
    except CircuitError as err:
        report.add("circuit == spec (exhaustive)", False, str(err))
        return
    same = count == obligation.get("mismatches") and obligation.get("verdict") == ("PROVED" if count == 0
                                                                                    else "REFUTED")
    report.add("circuit == spec (exhaustive)", same, f"{count:,} mismatches, certificate says "
               f"{obligation.get('mismatches')} ({obligation.get('verdict')})")
