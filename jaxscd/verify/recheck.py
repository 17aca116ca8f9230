"""Re-check a certificate bundle from scratch: one path for every bundle, whatever its strategy.

Every file is bound to the certificate: each listed file has its recorded sha256; program.py is the rendering of
the certified program; the domain has its recorded hash, fits the circuit (lengths within its positions) and
admits at least one input; its precondition is the circuit source's own, or a restriction the certificate
declares (and verify prints); the circuit is rebuilt from its recorded source and has its fingerprint. Then every
obligation is re-established by its method: "exhaustive" claims by re-running the circuit on every input (with
the purity check, ``jaxscd.circuits.purity``, under verify's own fresh seed; the evidence the certificate records
is printed beside it, not relied on), the others by the proof strategy registered under that method
(``jaxscd.verify.prove.STRATEGIES``). A PROVED certificate needs circuit == program re-checked, and, when that
rests on exhaustion, the surrogate legs too. Nothing is skipped silently: what cannot be re-checked is a FAILED
line naming it.

A bundle is data: nothing it names is imported. Built-in tasks, JSON graphs and circuit_sparsity checkpoints
(read with torch ``weights_only``) are re-run from their data; a circuit written as Python code is re-run only
from the file the user passes (``--circuit``), after its sha256 matches the certificate. SMT files are parsed only
when they hold nothing but declarations, assertions and check-sat (z3 and cvc5 obey options that write files).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from jaxscd.circuits.base import CircuitError, sha256_bytes
from jaxscd.circuits.sources import CircuitSource, resolve_certified
from jaxscd.domain import MAX_DOMAIN_SIZE, approximate
from jaxscd.dsl.programs import Both
from jaxscd.dsl.source import render
from jaxscd.errors import BundleError
from jaxscd.kernels.enumerate import precondition_mask, program_decisions
from jaxscd.kernels.evaluate import evaluate_circuit
from jaxscd.surrogates import IntegerSurrogate, exhaustive_decisions
from jaxscd.verify.certificate import Certificate, Obligation, precondition_text, read_certificate
from jaxscd.verify.prove import by_method
from jaxscd.verify.strategy import CIRCUIT_CLAIM, SURROGATE_CLAIM, Goal

EXHAUSTIVE = "exhaustive"
REFERENCE_ALL, REFERENCE_SAMPLE = 60_000, 20_000  # inputs the reference interpreter re-runs: all of them, or a sample
SURROGATE_LEGS = ("circuit == surrogate", SURROGATE_CLAIM)  # behind a circuit == program that rests on exhaustion


@dataclass
class Report:
    """``checks``: (name, status, detail), status in ok / FAILED / skipped. ``domain``: lines describing the domain
    that was verified (printed by ``jaxscd verify`` and the report page)."""

    checks: list = field(default_factory=list)
    domain: list = field(default_factory=list)

    def add(self, name: str, ok: bool | None, detail: str = "") -> None:
        self.checks.append((name, "ok" if ok else "skipped" if ok is None else "FAILED", detail))

    @property
    def verified(self) -> bool:
        return bool(self.checks) and all(status != "FAILED" for _, status, _ in self.checks)


def recheck(bundle_dir, timeout_s: float = 120.0, circuit_target: str | None = None) -> Report:
    """Re-check a bundle. One that cannot be read raises BundleError (``kind``: missing, corrupt, schema, input);
    any other exception is a bug in jaxscd, never reported as a corrupt bundle.

    ``circuit_target`` (``path.py:fn``) re-runs a bundle's Python circuit: its sha256 must match first.
    """
    bundle = Path(bundle_dir)
    cert = read_certificate(bundle)
    report = Report(domain=describe_domain(cert))
    _bind_files(report, bundle, cert)
    report.add("domain hash", cert.domain_hash_ok, "" if cert.domain_hash_ok else
               "domain fields differ from the recorded hash")
    proved = cert.verdict == "PROVED"
    report.add("certificate verdict is PROVED", proved, "" if proved else
               f"the certificate records {cert.verdict!r}; only a PROVED certificate can be verified")
    if cert.program is None:
        report.add("program", False, "the bundle holds no program (its verdict was not PROVED)")
        return report
    _bind_program(report, bundle, cert)
    source = _rebuild(report, cert, circuit_target)
    if source is not None and not _bind_source(report, cert, source):
        source = None  # names or lengths that are not the circuit's: re-running it here would mean nothing
    checker = _Checker(report, bundle, cert, source, _surrogate(report, bundle, cert), timeout_s)
    rechecked = {o.claim for o in cert.obligations if checker.obligation(o)}
    _required(report, cert, rechecked)
    return report


def describe_domain(cert: Certificate) -> list[str]:
    """The domain a certificate claims, as verify prints it (the precondition as the program that is checked)."""
    d = cert.domain
    size = f"{d.size:,} sequences" if d.exhaustive else f"{approximate(d.size)} sequences (beyond enumeration)"
    lines = [f"alphabet {' '.join(d.alphabet)}; lengths {d.min_len}..{d.max_len}; {size}",
             f"precondition {precondition_text(d.precondition, d.precondition_text, d.alphabet)}"
             + (" [declared a restriction of the circuit source's own]" if cert.restriction else "")]
    if isinstance(cert.domain_record.get("valid"), int):
        lines.append(f"{cert.domain_record['valid']:,} valid inputs recorded")
    return lines


# ------------------------------------------------------------------------------------------------------------
# Binding every file to the certificate


def _bind_files(report: Report, bundle: Path, cert: Certificate) -> None:
    changed = [name for name, expected in cert.files.items() if sha256_bytes((bundle / name).read_bytes()) != expected]
    for name in changed:
        report.add(f"sha256 {name}", False, "file changed since the bundle was written")
    if not changed:
        report.add(f"sha256 of {len(cert.files)} files", True)


def _bind_program(report: Report, bundle: Path, cert: Certificate) -> None:
    if "program.py" not in cert.files:
        report.add("program.py is listed with its sha256", False, "the certificate's files do not list program.py")
        return
    try:
        text = (bundle / "program.py").read_text(encoding="utf-8")
    except UnicodeDecodeError:
        text = None
    same = text == render(cert.program, cert.domain.alphabet, cert.classes)
    report.add("program.py renders the certified program", same, "" if same else "program.py differs from the program")


def _rebuild(report: Report, cert: Certificate, circuit_target: str | None) -> CircuitSource | None:
    """The circuit from its recorded source (data only; Python code only from ``circuit_target``), or None after
    a FAILED line."""
    from jaxscd.circuits.sources import CircuitOptionError

    try:
        source = resolve_certified({"source": cert.circuit_source, "sha256": cert.circuit_sha256}, circuit_target)
    except CircuitOptionError as err:
        raise BundleError(str(err), "input") from None
    except (CircuitError, KeyError) as err:
        report.add(getattr(err, "check", "circuit available"), False,
                   str(err.args[0]) if isinstance(err, KeyError) else str(err))
        return None
    same = source.circuit.fingerprint == cert.circuit_sha256
    report.add("circuit fingerprint", same, "" if same else "the circuit's weights or source changed")
    return source if same else None


def _bind_source(report: Report, cert: Certificate, source: CircuitSource) -> bool:
    """Token and class names, lengths and precondition are the circuit source's own (or a declared restriction);
    False when the names or lengths are not, so the circuit is not re-run on the domain."""
    domain = cert.domain
    own, names = source.alphabet, True
    if own is not None:
        expected = own[:domain.n_tokens] if source.prefix_alphabet else own
        names = tuple(domain.alphabet) == tuple(expected)
        report.add("alphabet is the circuit's", names, "" if names else
                   f"certificate {list(domain.alphabet)}, circuit {list(own)}")
    classes = list(cert.classes) == list(source.circuit.class_names)
    report.add("class names are the circuit's", classes, "" if classes else
               f"certificate {list(cert.classes)}, circuit {list(source.circuit.class_names)}")
    limit = source.max_positions
    fits = limit is None or domain.max_len <= limit
    report.add("domain lengths within the circuit's positions", fits, "" if fits else
               f"max_len {domain.max_len}, the circuit has {limit} positions")
    report.add(*_precondition_check(cert, source))
    return names and classes and fits


def _precondition_check(cert: Certificate, source: CircuitSource) -> tuple[str, bool, str]:
    """The certified precondition is the source's own, with its text; or, declared a restriction, the source's own
    AND another condition (any condition when the source has none)."""
    pre, own, text = cert.domain.precondition, source.precondition, cert.domain.precondition_text or ""
    said = f"source's: {precondition_text(own, source.precondition_text, cert.domain.alphabet)}"
    if pre == own and not cert.restriction:
        same_text = text == (source.precondition_text or "")
        return "precondition is the circuit source's own", same_text, "" if same_text else \
            f"its text {text!r} is not the source's {source.precondition_text!r}"
    if not cert.restriction:
        certified = precondition_text(pre, text, cert.domain.alphabet)
        return "precondition is the circuit source's own", False, f"certified: {certified}; {said}; not declared a " \
            f"restriction"
    narrows = pre is not None and pre != own and (own is None or (isinstance(pre, Both) and pre.op == "and" and
                                                                  own in (pre.left, pre.right)))
    return "precondition restricts the circuit source's own", narrows, said if narrows else \
        f"a restriction must be the source's precondition AND another condition; {said}"


def _surrogate(report: Report, bundle: Path, cert: Certificate) -> IntegerSurrogate | None:
    if "surrogate.npz" not in cert.files:
        return None
    try:
        surrogate = IntegerSurrogate.from_arrays(np.load(io.BytesIO((bundle / "surrogate.npz").read_bytes())))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise BundleError(f"surrogate.npz is unreadable ({err}); the bundle is corrupt") from None
    shape = (cert.domain.max_len, cert.domain.n_tokens)
    if surrogate.skip_w.shape != shape:
        report.add("surrogate fits the domain", False, f"surrogate inputs {list(surrogate.skip_w.shape)} != "
                   f"[max_len, tokens] = {list(shape)}")
        return None
    return surrogate


def _required(report: Report, cert: Certificate, rechecked: set) -> None:
    """A PROVED certificate rests on circuit == program, PROVED and re-checked; when that claim rests on exhaustion,
    on the surrogate legs too."""
    main = cert.obligation(CIRCUIT_CLAIM)
    claims = (CIRCUIT_CLAIM,) + (SURROGATE_LEGS if main is None or main.method == EXHAUSTIVE else ())
    for claim in claims:
        obligation = cert.obligation(claim)
        verdict = obligation.verdict if obligation is not None else None
        report.add(f"obligation {claim} is PROVED", verdict == "PROVED", "" if verdict == "PROVED" else
                   "missing from the certificate" if obligation is None else f"recorded as {verdict!r}")


def _recorded_purity(cert: Certificate) -> str:
    """The purity evidence the certificate records, as one phrase (informational: verify re-runs the check)."""
    if cert.purity is not None:
        return cert.purity.summary()
    return "none (written before purity evidence was recorded)" if "purity" not in cert.extra else \
        "unreadable (not a block jaxscd writes)"


# ------------------------------------------------------------------------------------------------------------
# Obligations


class _Checker:
    """Re-checks one obligation at a time; the circuit's truth table (exhaustive claims) is computed once."""

    def __init__(self, report, bundle, cert, source, surrogate, timeout_s):
        self.report, self.bundle, self.cert, self.source = report, bundle, cert, source
        self.surrogate, self.timeout_s = surrogate, timeout_s
        self.domain = cert.domain
        self.enumerable = self.domain.size <= MAX_DOMAIN_SIZE

    @cached_property
    def valid(self) -> np.ndarray:
        valid = precondition_mask(self.domain)
        n_valid, recorded = int(valid.sum()), self.cert.domain_record.get("valid")
        self.report.domain.append(f"{n_valid:,} valid inputs, every one re-evaluated")
        self.report.add("domain has the recorded number of valid inputs", n_valid > 0 and n_valid == recorded,
                        f"{n_valid:,} valid inputs, certificate says {recorded!r}")
        return valid

    @cached_property
    def program_decisions(self) -> np.ndarray:
        """The program's class of every input (batched meaning), checked against the reference interpreter."""
        decisions = program_decisions(self.cert.program, self.domain)
        self._meanings_agree(decisions)
        return decisions

    def _meanings_agree(self, decisions: np.ndarray) -> None:
        """The exhaustive legs read the batched meanings of the precondition and the program, the solver legs
        their z3 meanings: both are held against the plain-Python reference interpreter, on every input of a
        small domain, else on a fresh random sample."""
        from jaxscd.dsl.reference import run
        from jaxscd.kernels.enumerate import decode_indices

        size, pre, program = self.domain.size, self.domain.precondition, self.cert.program
        rows = np.arange(size) if size <= REFERENCE_ALL else \
            np.sort(np.random.default_rng().choice(size, REFERENCE_SAMPLE, replace=False))
        tokens, lengths = (np.asarray(a) for a in decode_indices(self.domain, rows))
        wrong = None
        for i, row in enumerate(rows.tolist()):
            sequence = tokens[i, :lengths[i]].tolist()
            valid = pre is None or run(pre, sequence) == 1
            if valid != bool(self.valid[row]) or (valid and run(program, sequence) != decisions[row]):
                wrong = self.domain.format(sequence)
                break
        how = f"all {size:,} inputs" if size <= REFERENCE_ALL else f"{len(rows):,} random inputs"
        self.report.add("batched meanings == reference interpreter (precondition, program)", wrong is None,
                        how if wrong is None else f"differ on {wrong!r}")

    @cached_property
    def table(self):
        try:
            table = evaluate_circuit(self.source.circuit, self.domain, self.valid)
        except CircuitError as err:  # "not a function of its input" included: the purity check re-run here
            self.report.add("circuit runs on the domain", False, str(err))
            return None
        self.report.add("circuit is a function of its input (purity re-run, fresh seed)", True,
                        f"this run: {table.purity.summary()}; recorded: {_recorded_purity(self.cert)}")
        return table

    def obligation(self, o: Obligation) -> bool:
        """True when ``o`` was re-checked (its lines added); otherwise a FAILED line says why not."""
        if o.method == EXHAUSTIVE:
            done, why = self._exhaustive(o)
        else:
            done, why = self._strategy(o)
        if not done:
            self.report.add(f"obligation {o.claim} ({o.method}) re-checked", False, why)
        return done

    def _exhaustive(self, o: Obligation) -> tuple[bool, str]:
        if o.claim not in ("circuit == surrogate", CIRCUIT_CLAIM, "circuit == spec"):
            return False, "verify knows no such claim"
        if not self.enumerable:
            return False, f"the domain has {approximate(self.domain.size)} sequences, above the exhaustive limit"
        if self.source is None or self.table is None:
            return False, "the circuit could not be re-run (see above)"
        table, valid = self.table, self.valid
        if o.claim == CIRCUIT_CLAIM:
            margin_ok = table.min_margin() > table.margin_bound  # recomputed, never read from the certificate
            self.report.add("circuit margins above the float bound", margin_ok,
                            f"min margin {table.min_margin():.4g}, bound {table.margin_bound:.3g}")
            wrong = int((valid & (table.decisions != self.program_decisions)).sum())
            self.report.add("circuit == program (exhaustive)", wrong == 0, f"{int(valid.sum()):,} inputs" if not wrong
                            else f"differs on {wrong:,} inputs")
        elif o.claim == "circuit == surrogate":
            if self.surrogate is None:
                return False, "surrogate.npz is not in the certificate's files, or does not fit the domain"
            decisions, _ = exhaustive_decisions(self.surrogate, self.domain, phases=False)
            wrong = int((valid & (table.decisions != decisions)).sum())
            self.report.add("circuit == surrogate (exhaustive)", wrong == 0, "" if not wrong else
                            f"differs on {wrong:,}")
        else:
            return self._spec(o)
        return True, ""

    def _spec(self, o: Obligation) -> tuple[bool, str]:
        """The recorded number of inputs where the circuit departs from its intended behaviour."""
        from jaxscd.problem import Problem, compare_with_spec

        if self.source.spec is None:
            return False, "the circuit's source holds no spec to compare with"
        try:
            count = compare_with_spec(self.source.spec, Problem(self.domain, self.table),
                                      self.source.circuit.class_names)[0]
        except CircuitError as err:
            self.report.add("circuit == spec (exhaustive)", False, str(err))
            return True, ""
        recorded = o.record.get("mismatches")
        same = count == recorded and o.verdict == ("PROVED" if count == 0 else "REFUTED")
        self.report.add("circuit == spec (exhaustive)", same, f"{count:,} mismatches, certificate says {recorded} "
                        f"({o.verdict})")
        return True, ""

    def _strategy(self, o: Obligation) -> tuple[bool, str]:
        strategy = by_method(o.method)
        if strategy is None or strategy.claim != o.claim:
            return False, "verify knows no such claim" if o.claim not in (CIRCUIT_CLAIM, SURROGATE_CLAIM) else \
                f"unknown method {o.method!r}"
        try:
            listed = strategy.files(o.record)
        except (KeyError, TypeError, IndexError) as err:
            raise BundleError(f"obligation {o.claim} ({o.method}) does not name its files ({err!r}); the bundle is "
                              f"corrupt") from None
        unlisted = sorted(set(listed) - set(self.cert.files))
        if unlisted:
            self.report.add("SMT files are listed with their sha256", False, f"{', '.join(unlisted)} not in the "
                            f"certificate's files")
            return False, "its files are not all listed with their sha256 (see above)"
        if strategy.claim == SURROGATE_CLAIM:
            if self.surrogate is None:
                return False, "surrogate.npz is not in the certificate's files, or does not fit the domain"
            if not self.enumerable:
                return False, f"the domain has {approximate(self.domain.size)} sequences, above the exhaustive limit"
            goal = Goal(self.domain, self.cert.program, self.valid, self.surrogate)
        else:
            if self.source is None:
                return False, "the circuit could not be re-run (see above)"
            goal = Goal(self.domain, self.cert.program, circuit=self.source.circuit, record=self.cert.long_context)
        strategy.recheck(self.report, self.bundle, o.record, goal, self.timeout_s)
        return True, ""
