"""distill at long contexts, where the domain is too large to enumerate: C == P by sound bounds on the circuit.

Candidates come from the exhaustive search on the task's default (short) domain; each is then proved or refuted
on the requested lengths by one of two strategies, for circuits whose structure is known (the built-in one-layer
reference circuits):

- ``orbits``: the structure proves the decision depends only on the token counts and the last token
  (``jaxscd.symmetry``); every orbit is decided by exact-up-to-exp bounds (``verify.circuit_bounds``), an
  orbit-invariant program is compared with the circuit on every orbit. When every short-domain candidate is
  refuted, the thresholds of their families are re-fitted on the complete orbit table (a search at length).
- ``circuit-bounds``: branch and bound builds a tree of cubes whose leaves the circuit's bounds decide; one z3
  query (the tree strategy's ``tree_query``) then checks tree == program over the whole domain.

A counterexample is re-run on the circuit (float64, with its margin) before it is reported. An orbit or cube the
bounds cannot decide (a margin under the float-error bound, or the cube budget spent) leaves the verdict UNKNOWN.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from jaxscd.budget import check_budget
from jaxscd.domain import MAX_DOMAIN_SIZE, Domain, DomainError
from jaxscd.dsl import reference as dsl
from jaxscd.dsl.programs import CountThreshold, DensityThreshold, LengthThreshold, Program, rank_key
from jaxscd.dsl.source import render
from jaxscd.symmetry import Orbits, Symmetry, count_symmetry, orbit_invariant, orbits, program_on_orbits
from jaxscd.verify import circuit_bounds as bounds
from jaxscd.verify.prove import Verdict

ORBITS, CIRCUIT_BOUNDS = "orbits", "circuit-bounds"


@dataclass
class LongResult:
    verdict: Verdict
    domain: Domain
    class_names: tuple
    strategy: str
    symmetry: Symmetry | None = None
    program: Program | None = None
    source: str | None = None
    candidates: list = field(default_factory=list)  # {"program", "outcome", "counterexample"?}
    counterexample: dict | None = None  # the first refutation, re-checked on the circuit
    orbits: int | None = None
    cubes: int | None = None
    undecided: int = 0
    undecided_example: list | None = None
    trees: dict | None = None  # circuit-bounds: {length: node}
    query: str | None = None
    margin: float = 0.0
    short_program: str | None = None
    short_verdict: str | None = None
    departures: dict | None = None  # where the circuit departs from the task's spec, by (statistic, length)
    timings: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


def supports(circuit) -> bool:
    """The circuit's structure is known to the bounds (a built-in one-layer reference circuit)."""
    from jaxscd.circuits.reference import OneLayerCircuit

    return isinstance(circuit.forward, OneLayerCircuit)


def beyond_exhaustion(task, min_len: int | None, max_len: int | None, time_limit: float | None,
                      max_states: int = 3) -> bool:
    """The requested domain is above the exhaustive size cap or the up-front time estimate."""
    if max_len is None:
        return False
    low = task.min_len if min_len is None else min_len
    if low > max_len:
        return False
    if sum(len(task.alphabet) ** n for n in range(low, max_len + 1)) > MAX_DOMAIN_SIZE:
        return True
    try:
        check_budget(task.domain(low, max_len), time_limit, max_states)
    except DomainError:
        return True
    return False


def long_domain(task, min_len: int | None, max_len: int) -> Domain:
    if max_len > task.max_positions:
        raise DomainError(f"--max-len {max_len} exceeds the {task.max_positions} positions of {task.name!r}'s "
                          f"circuit; use --max-len {task.max_positions} or less")
    return Domain(task.alphabet, task.min_len if min_len is None else min_len, max_len, task.precondition,
                  task.precondition_text, exhaustive=False)


def distill_long(task, domain: Domain, config, log: Callable[[str], None] = lambda _: None,
                 deadline_s: float = 300.0) -> LongResult:
    """Search on the task's default domain, then prove or refute each candidate on ``domain``."""
    from jaxscd.pipeline import distill

    start = time.perf_counter()
    short = distill(task.circuit, task.domain(), config, task.spec, log=log)
    candidates = sorted(short.survivors, key=rank_key)
    model = task.circuit.forward
    symmetry = count_symmetry(model, domain.max_len)
    use_orbits = symmetry is not None and orbit_invariant(domain.precondition)
    result = LongResult(Verdict.UNKNOWN, domain, task.circuit.class_names, ORBITS if use_orbits else CIRCUIT_BOUNDS,
                        symmetry if use_orbits else None, short_program=short.source,
                        short_verdict=short.verdict.value)
    result.timings["short search"] = round(time.perf_counter() - start, 3)
    tables = bounds.token_tables(model, domain.max_len)
    result.margin = tables.margin
    if use_orbits:
        _prove_on_orbits(result, tables, candidates, task.circuit, task.spec)
    else:
        _prove_by_cubes(result, tables, candidates, task.circuit, config.proof_timeout_s,
                        time.monotonic() + deadline_s)
    result.timings["total"] = round(time.perf_counter() - start, 3)
    if result.program is not None:
        result.source = render(result.program, domain.alphabet, result.class_names)
    return result


# ------------------------------------------------------------------------------------------------------------
# Counterexamples


def recheck_on_circuit(circuit, tokens: list[int], margin: float) -> tuple[int, float]:
    """(decision, margin) of the float64 circuit on one sequence; a margin not above ``margin`` is untrusted."""
    from jaxscd.kernels.evaluate import run_circuit

    decision, gap, _ = run_circuit(circuit, np.asarray([tokens], dtype=np.int32))
    return int(decision[0]), float(gap[0])


def _refute(result: LongResult, circuit, program: Program, tokens: list[int]) -> bool:
    """Record a counterexample when the circuit (re-run, margin trusted) and the program differ on it."""
    decision, gap = recheck_on_circuit(circuit, tokens, result.margin)
    expected = dsl.run(program, tokens)
    record = {"program": repr(program), "outcome": "refuted", "counterexample": result.domain.format(tokens),
              "tokens": list(tokens), "length": len(tokens), "circuit": decision, "program_class": expected,
              "circuit_margin": gap}
    if decision == expected or gap <= result.margin:
        record["outcome"] = "unknown"
        result.notes.append(f"{program!r}: the bounds disagree with the program on {result.domain.format(tokens)!r} "
                            f"but the re-run circuit does not (class {decision}, margin {gap:.3g}): not refuted")
        result.candidates.append(record)
        return False
    result.candidates.append(record)
    if result.counterexample is None:
        result.counterexample = record
    return True


# ------------------------------------------------------------------------------------------------------------
# Orbits


def _prove_on_orbits(result: LongResult, tables, candidates: list, circuit, spec=None) -> None:
    start = time.perf_counter()
    domain = result.domain
    orb = orbits(domain.n_tokens, domain.lengths)
    classes = bounds.orbit_classes(tables, orb)
    valid = np.ones(len(orb), dtype=bool) if domain.precondition is None else \
        program_on_orbits(domain.precondition, orb).astype(bool)
    result.departures = spec_departures(getattr(spec, "program", None), orb, classes, valid, domain)
    undecided = valid & (classes < 0)
    result.orbits, result.undecided = int(valid.sum()), int(undecided.sum())
    if undecided.any():
        row = int(np.flatnonzero(undecided)[0])
        result.undecided_example = orb.representative(row)
        result.notes.append(f"{result.undecided:,} orbits have a decision margin not above the float bound "
                            f"{tables.margin:g} (e.g. {domain.format(result.undecided_example)!r}, counts "
                            f"{orb.counts[row].tolist()}): the circuit's float64 decision there is not fixed by its "
                            f"weights, so no program is proved on this domain")
    result.timings["orbits"] = round(time.perf_counter() - start, 3)
    tried = [p for p in candidates if orbit_invariant(p)]
    for program in [p for p in candidates if not orbit_invariant(p)]:
        result.candidates.append({"program": repr(program), "outcome": "skipped: not a function of the token "
                                  "counts and the last token"})
    for program in tried + _refits(tried, orb, classes, valid):
        predicted = program_on_orbits(program, orb)
        _cross_check(program, orb, predicted)
        wrong = np.flatnonzero(valid & (classes >= 0) & (predicted != classes))
        if len(wrong):
            _refute(result, circuit, program, orb.representative(int(wrong[0])))
            continue
        result.program = program
        result.verdict = Verdict.UNKNOWN if undecided.any() else Verdict.PROVED
        result.candidates.append({"program": repr(program), "outcome": result.verdict.value.lower()})
        break
    else:
        if result.counterexample is not None:
            result.verdict = Verdict.REFUTED
    result.timings["orbits"] = round(time.perf_counter() - start, 3)


def spec_departures(spec: Program | None, orb: Orbits, classes: np.ndarray, valid: np.ndarray,
                    domain: Domain) -> dict | None:
    """Where the circuit departs from a counting spec (CountThreshold / DensityThreshold, e.g. bracket depth), exact
    over the whole long domain: per (statistic value, length), the number of sequences whose decided class differs
    from the spec's, and how many there are (orbit sizes are multinomials, exact Python integers). None when the
    task has no such spec."""
    if not isinstance(spec, (CountThreshold, DensityThreshold)):
        return None
    plus, minus = sorted(spec.plus), sorted(spec.minus)
    statistic = orb.counts[:, plus].sum(axis=1) - orb.counts[:, minus].sum(axis=1)
    intended = program_on_orbits(spec, orb)
    departs = valid & (classes >= 0) & (intended != classes)
    factorial = [1]
    for n in range(1, domain.max_len + 1):
        factorial.append(factorial[-1] * n)
    cells: dict = {}
    for row in np.flatnonzero(valid).tolist():
        rest = orb.counts[row].tolist()
        rest[int(orb.last[row])] -= 1
        size = factorial[sum(rest)]
        for c in rest:
            size //= factorial[c]
        key = (int(statistic[row]), int(orb.length[row]))
        total, wrong, circuit_class = cells.get(key, (0, 0, None))
        if departs[row]:
            wrong, circuit_class = wrong + size, int(classes[row])
        cells[key] = (total + size, wrong, circuit_class)
    names = domain.alphabet
    label = " + ".join(f"#{names[t]}" for t in plus) + "".join(f" − #{names[t]}" for t in minus)
    if isinstance(spec, CountThreshold):
        text = f"{label} ≥ {spec.threshold}"
    else:
        text = f"({label}) / length ≥ {spec.num}/{spec.den}"
    return {"statistic": label, "spec": text,
            "cells": [[value, length, total, wrong, circuit_class] for (value, length), (total, wrong, circuit_class)
                      in sorted(cells.items())]}


def departure_lines(departures: dict, class_names) -> list[str]:
    """A few readable lines: per statistic value, the lengths at which the circuit departs from the spec."""
    by_value: dict = {}
    for value, length, _, wrong, circuit_class in departures["cells"]:
        if wrong:
            by_value.setdefault((value, circuit_class), []).append(length)
    wrong = sum(c[3] for c in departures["cells"])
    total = sum(c[2] for c in departures["cells"])
    if not wrong:
        return [f"spec       the circuit matches {departures['spec']} on every input (exact, by orbits)"]
    lines = [f"spec       the circuit departs from {departures['spec']} on {wrong:.3g} of {total:.3g} inputs "
             f"(exact, by orbits):"]
    for (value, circuit_class), lengths in sorted(by_value.items())[:8]:
        span = f"{lengths[0]}..{lengths[-1]}" if lengths == list(range(lengths[0], lengths[-1] + 1)) else \
            ", ".join(map(str, lengths[:6])) + (", ..." if len(lengths) > 6 else "")
        lines.append(f"             {departures['statistic']} = {value}: circuit {class_names[circuit_class]!s} at "
                     f"lengths {span}")
    if len(by_value) > 8:
        lines.append(f"             ... and {len(by_value) - 8} more values")
    return lines


def _cross_check(program: Program, orb: Orbits, predicted: np.ndarray, samples: int = 256) -> None:
    """The counts meaning of the program equals the reference interpreter on a sample of representatives."""
    rows = np.random.default_rng(0).choice(len(orb), size=min(samples, len(orb)), replace=False)
    for row in rows.tolist():
        if dsl.run(program, orb.representative(row)) != predicted[row]:
            raise AssertionError(f"orbit meaning of {program!r} differs from the interpreter on "
                                 f"{orb.representative(row)}")


def _simplest_fraction_above(low: Fraction, high: Fraction, max_den: int = 1 << 12) -> Fraction | None:
    """The fraction with the smallest denominator in (low, high]."""
    for den in range(1, max_den + 1):
        num = (high * den).numerator // (high * den).denominator
        if Fraction(num, den) > low:
            return Fraction(num, den)
    return None


def _refits(candidates: list, orb: Orbits, classes: np.ndarray, valid: np.ndarray) -> list:
    """Threshold programs of the candidates' families with the threshold fitted to the whole orbit table."""
    decided = valid & (classes >= 0)
    ones, zeros = decided & (classes == 1), decided & (classes == 0)
    refits = []
    for program in candidates:
        match program:
            case CountThreshold(plus, minus, _) | DensityThreshold(plus, minus, _, _):
                weights = np.array([(v in plus) - (v in minus) for v in range(orb.counts.shape[1])])
                signed = orb.counts @ weights
                if isinstance(program, CountThreshold):
                    low = int(signed[zeros].max()) if zeros.any() else None
                    high = int(signed[ones].min()) if ones.any() else None
                    if low is not None and (high is None or low + 1 <= high):
                        refits.append(CountThreshold(plus, minus, low + 1))
                    continue
                low = max((Fraction(int(s), int(n)) for s, n in _extreme(signed, orb.length, zeros, max)),
                          default=Fraction(-1))
                high = min((Fraction(int(s), int(n)) for s, n in _extreme(signed, orb.length, ones, min)),
                           default=Fraction(1))
                q = _simplest_fraction_above(low, high) if low < high else None
                if q is not None:
                    refits.append(DensityThreshold(plus, minus, q.numerator, q.denominator))
            case LengthThreshold(_):
                low = int(orb.length[zeros].max()) if zeros.any() else 0
                refits.append(LengthThreshold(low + 1))
    return [p for p in dict.fromkeys(refits) if p not in candidates]


def _extreme(signed: np.ndarray, length: np.ndarray, mask: np.ndarray, pick) -> list:
    """The (signed, length) pair of extreme ratio among ``mask`` rows (exact comparison per length)."""
    out = []
    for n in np.unique(length[mask]):
        rows = mask & (length == n)
        out.append((pick(signed[rows]), n))
    return out


# ------------------------------------------------------------------------------------------------------------
# Cube trees


def _prove_by_cubes(result: LongResult, tables, candidates: list, circuit, timeout_s: float,
                    deadline: float) -> None:
    from jaxscd.verify.solver import solve_text
    from jaxscd.verify.tree import TREE_LOGIC, tree_query, tree_stats

    domain = result.domain
    start = time.perf_counter()
    built = bounds.build_cube_tree(tables, domain.lengths, domain.precondition, deadline=deadline)
    result.timings["bounds"] = round(time.perf_counter() - start, 3)
    result.cubes, result.undecided = built.cubes, len(built.undecided)
    if built.undecided:
        n, allowed = built.undecided[0]
        result.undecided_example = bounds.sample_cube(allowed, np.random.default_rng(0))
        result.notes.append(f"{result.undecided:,} cubes are not decided by the bounds within the budget (e.g. "
                            f"length {n}): no tree, so no proof")
        _sample_undecided(result, built.undecided, candidates, circuit)
        return
    result.trees = built.trees
    result.notes.append(f"cube tree: {tree_stats(built.trees)}")
    for program in candidates:
        query_start = time.perf_counter()
        text = tree_query(built.trees, program, domain)
        answer, tokens, _ = solve_text(text, timeout_s, TREE_LOGIC)
        result.timings["z3"] = round(result.timings.get("z3", 0.0) + time.perf_counter() - query_start, 3)
        if answer == "unsat":
            result.program, result.query, result.verdict = program, text, Verdict.PROVED
            result.candidates.append({"program": repr(program), "outcome": "proved"})
            return
        if answer == "sat" and _refute(result, circuit, program, list(tokens)):
            continue
        result.candidates.append({"program": repr(program), "outcome": f"unknown (z3: {answer})"})
        if result.program is None:
            result.program = program
    if result.program is None and result.counterexample is not None:
        result.verdict = Verdict.REFUTED


def _sample_undecided(result: LongResult, undecided: list, candidates: list, circuit, per_cube: int = 4) -> None:
    """Concrete sequences of undecided cubes, re-run on the circuit: a disagreement refutes a candidate."""
    rng = np.random.default_rng(0)
    samples = [bounds.sample_cube(allowed, rng) for _, allowed in undecided[:64] for _ in range(per_cube)]
    for program in candidates:
        for tokens in samples:
            if result.domain.precondition is not None and not dsl.run(result.domain.precondition, tokens):
                continue
            decision, gap = recheck_on_circuit(circuit, tokens, result.margin)
            if gap > result.margin and decision != dsl.run(program, tokens):
                _refute(result, circuit, program, tokens)
                break
        else:
            if result.program is None:
                result.program = program


# ------------------------------------------------------------------------------------------------------------
# Report


def summary(result: LongResult, description: str) -> dict:
    d = result.domain
    return {
        "verdict": result.verdict.value,
        "program": result.source,
        "domain": {"alphabet": list(d.alphabet), "min_len": d.min_len, "max_len": d.max_len, "size": d.size},
        "strategy": {"name": result.strategy, "symmetry": result.symmetry.claim() if result.symmetry else None,
                     "orbits": result.orbits, "cubes": result.cubes, "undecided": result.undecided,
                     "float_margin": result.margin},
        "candidates": result.candidates,
        "counterexample": result.counterexample,
        "spec_departures": result.departures,
        "short_domain": {"verdict": result.short_verdict, "program": result.short_program},
        "timings": result.timings,
        "notes": result.notes,
        "description": description,
    }


def report_lines(result: LongResult) -> list[str]:
    d = result.domain
    how = (f"{result.orbits:,} orbits ({result.symmetry.name}, from the circuit's structure)" if result.orbits
           is not None else f"{result.cubes:,} cubes by branch and bound, tree == program by z3")
    lines = [f"domain     alphabet {' '.join(d.alphabet)}, lengths {d.min_len}..{d.max_len}, {d.size:.3g} sequences "
             f"(beyond exhaustion)",
             f"strategy   {result.strategy}: {how}; decisions trusted above margin {result.margin:g}"]
    if result.symmetry:
        lines.append(f"symmetry   {result.symmetry.reason}")
    for c in result.candidates:
        cex = f" on {c['counterexample']!r} (length {c['length']}; circuit class {c['circuit']}, margin " \
              f"{c['circuit_margin']:.3g}, program {c['program_class']})" if "counterexample" in c else ""
        lines.append(f"candidate  {c['program']}: {c['outcome']}{cex}")
    lines.append(f"verdict    {result.verdict.value}")
    if result.departures is not None:
        lines += departure_lines(result.departures, result.class_names)
    lines += [f"note       {n}" for n in result.notes]
    if result.source:
        lines += ["", result.source]
    lines.append("timings    " + ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items()))
    return lines
