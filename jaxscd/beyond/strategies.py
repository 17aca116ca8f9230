"""The beyond-exhaustion proof strategies (claim circuit == program), registered with the others in
``jaxscd.verify.prove.STRATEGIES``:

- ``orbits`` ("orbit bounds"): the circuit's structure proves its decision depends only on the token counts and the
  last token (``symmetry``); every orbit is decided by outward-rounded bounds (``bounds.orbit_classes``) and
  an orbit-invariant program is compared with the circuit on every orbit;
- ``circuit-bounds`` ("cube bounds + smt-tree"): branch and bound builds a tree of cubes whose leaves the circuit's
  bounds decide; one z3 query (the tree strategy's ``tree_query``) checks tree == program over the whole domain.

A counterexample is re-run on the circuit (float64, with its margin) before it refutes. An orbit or cube the bounds
cannot decide leaves the verdict UNKNOWN. ``jaxscd verify`` re-derives every orbit's and leaf's class with a second
implementation (``exact``: integers and rationals, no floats).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

import numpy as np

from jaxscd.beyond import bounds, model_of
from jaxscd.beyond.exact import MIN_MARGIN, ExactCircuit
from jaxscd.domain import Domain
from jaxscd.dsl import reference as dsl
from jaxscd.beyond.symmetry import COUNTS_AND_LAST, orbit_invariant, orbits, program_on_orbits
from jaxscd.verify.solver import recheck_query, solve_text
from jaxscd.verify.strategy import CIRCUIT_CLAIM, Goal, ProofResult, ProofStrategy, Verdict
from jaxscd.verify.tree import TREE_LOGIC, check_partition, read_trees, tree_query, tree_stats, tree_text

ORBIT_METHOD, CUBE_METHOD = "orbit bounds", "cube bounds + smt-tree"


@dataclass(eq=False)
class AtLength:
    """The circuit analysed on a domain beyond enumeration, shared by every candidate: exact per-(position, token)
    tables, the symmetry its structure proves (or None), and, computed on first use, the orbit classes or the cube
    tree. ``deadline``: time.monotonic() after which the cube tree stops growing (its open cubes stay undecided)."""

    circuit: object
    domain: Domain
    deadline: float | None = None

    def __post_init__(self):
        model = model_of(self.circuit)
        refusal = "no structure the bounds know" if model is None else model.refusal(self.domain.max_len)
        if refusal is not None:
            raise ValueError(f"{self.circuit.name}: the bounds do not cover lengths up to {self.domain.max_len}: "
                             f"{refusal}")
        self.model = model
        self.tables = model.float_tables(self.domain.max_len)
        symmetry = model.symmetry(self.domain.max_len)
        self.symmetry = symmetry if symmetry is not None and orbit_invariant(self.domain.precondition) else None

    @property
    def margin(self) -> float:
        return self.tables.margin

    @cached_property
    def orbits(self):
        return orbits(self.domain.n_tokens, self.domain.lengths)

    @cached_property
    def orbit_valid(self) -> np.ndarray:
        pre = self.domain.precondition
        return np.ones(len(self.orbits), dtype=bool) if pre is None else program_on_orbits(pre, self.orbits) == 1

    @cached_property
    def orbit_classes(self) -> np.ndarray:
        """int8 [orbits]: 1 / 0 where the circuit surely decides it (with margin), -1 where undecided."""
        return self.model.orbit_classes(self.tables, self.orbits)

    @cached_property
    def cube_tree(self) -> bounds.CubeTree:
        if not self.model.cubes:
            raise ValueError(f"{self.circuit.name}: cube trees need a reference circuit or a JSON circuit graph")
        return self.model.cube_tree(self.tables, self.domain.lengths, self.domain.precondition, self.deadline)

    def rerun(self, tokens: list[int]) -> tuple[int, float]:
        """(decision, margin) of the float64 circuit on one sequence."""
        from jaxscd.kernels.evaluate import run_circuit

        decision, gap, _ = run_circuit(self.circuit, np.asarray([tokens], dtype=np.int32))
        return int(decision[0]), float(gap[0])


def _refuted(goal: Goal, tokens: list[int], seconds: float, **fields) -> ProofResult:
    """REFUTED when the re-run circuit (its margin trusted) and the program differ on ``tokens``, else UNKNOWN."""
    at = goal.at_length
    decision, gap = at.rerun(tokens)
    expected = dsl.run(goal.program, tokens)
    if decision != expected and gap > at.margin:
        return ProofResult(Verdict.REFUTED, seconds, counterexample=tuple(tokens), **fields)
    return ProofResult(Verdict.UNKNOWN, seconds, counterexample=tuple(tokens), reason=f"the bounds disagree with "
                       f"the program on {goal.domain.format(tokens)!r} but the re-run circuit does not (class "
                       f"{decision}, margin {gap:.3g})", **fields)


# ------------------------------------------------------------------------------------------------------------
# Orbits


def prove_orbits(goal: Goal, timeout_s: float) -> ProofResult:
    at, program = goal.at_length, goal.program
    start = time.perf_counter()
    record = {"symmetry": at.symmetry.claim() if at.symmetry else None, "orbits": int(at.orbit_valid.sum()),
              "float_error_bound": at.margin}
    fields = {"method": ORBIT_METHOD, "record": record}
    if at.symmetry is None or not orbit_invariant(program):
        return ProofResult(Verdict.UNKNOWN, time.perf_counter() - start, reason="not a function of the token counts "
                           "and the last token", **fields)
    classes, valid, orb = at.orbit_classes, at.orbit_valid, at.orbits
    predicted = program_on_orbits(program, orb)
    _cross_check(program, orb, predicted)
    wrong = np.flatnonzero(valid & (classes >= 0) & (predicted != classes))
    if len(wrong):
        return _refuted(goal, orb.representative(int(wrong[0])), time.perf_counter() - start, **fields)
    undecided = np.flatnonzero(valid & (classes < 0))
    seconds = time.perf_counter() - start
    if len(undecided):
        example = orb.representative(int(undecided[0]))
        return ProofResult(Verdict.UNKNOWN, seconds, reason=f"{len(undecided):,} orbits have a decision margin not "
                           f"above the float bound {at.margin:g} (e.g. {goal.domain.format(example)!r}): the "
                           f"circuit's float64 decision there is not fixed by its weights", **fields)
    return ProofResult(Verdict.PROVED, seconds, summary=f"{record['orbits']:,} orbits", **fields)


def _cross_check(program, orb, predicted: np.ndarray, samples: int = 256) -> None:
    """The counts meaning of the program equals the reference interpreter on a sample of representatives."""
    rows = np.random.default_rng(0).choice(len(orb), size=min(samples, len(orb)), replace=False)
    for row in rows.tolist():
        if dsl.run(program, orb.representative(row)) != predicted[row]:
            raise AssertionError(f"orbit meaning of {program!r} differs from the interpreter on "
                                 f"{orb.representative(row)}")


def recheck_orbits(report, bundle, obligation, goal: Goal, timeout_s: float) -> None:
    exact, margin = _exact(report, goal)
    if exact is None:
        return
    domain, program = goal.domain, goal.program
    claim = (goal.record or {}).get("symmetry")
    claim = claim if isinstance(claim, dict) else {}
    proved = claim.get("symmetry") == COUNTS_AND_LAST and exact.symmetry_holds(domain.max_len)
    report.add("symmetry counts+last-token from the circuit's arrays", proved,
               "" if proved else "the circuit's structure does not prove it (e.g. a positional embedding not 0 on "
               "every position), or no such claim")
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
    recorded = (goal.record or {}).get("orbits")
    report.add("orbit count matches the record", recorded == count, f"recorded {recorded!r}, re-derived {count:,}")
    report.domain.append(f"{count:,} orbits (counts+last-token) hold every valid input")
    report.add("domain has at least one valid input", count > 0, f"{count:,} orbits satisfy the precondition")
    report.add(f"{count:,} orbits decided by exact bounds", count > 0 and undecided == 0,
               f"{undecided} undecided" if undecided else "")
    report.add("program == circuit on every orbit", count > 0 and wrong is None,
               "" if wrong is None else f"differs on {wrong!r}")


# ------------------------------------------------------------------------------------------------------------
# Cube trees


def prove_cubes(goal: Goal, timeout_s: float) -> ProofResult:
    at, program, domain = goal.at_length, goal.program, goal.domain
    start = time.perf_counter()
    built = at.cube_tree
    record = {"cubes": built.cubes, "float_error_bound": at.margin, "tree": {"file": "tree.json"},
              "file": "tree_query.smt2"}
    fields = {"method": CUBE_METHOD, "record": record}
    if built.undecided:
        rng = np.random.default_rng(0)
        for _, allowed in built.undecided[:64]:  # concrete sequences of open cubes may still refute
            for _ in range(4):
                tokens = bounds.sample_cube(allowed, rng)
                if domain.precondition is not None and not dsl.run(domain.precondition, tokens):
                    continue
                decision, gap = at.rerun(tokens)
                if gap > at.margin and decision != dsl.run(program, tokens):
                    return _refuted(goal, tokens, time.perf_counter() - start, **fields)
        return ProofResult(Verdict.UNKNOWN, time.perf_counter() - start, reason=f"{len(built.undecided):,} cubes are "
                           f"not decided by the bounds within the budget (e.g. length {built.undecided[0][0]}): no "
                           f"tree, so no proof", **fields)
    text = tree_query(built.trees, program, domain)
    answer, tokens, _ = solve_text(text, timeout_s, TREE_LOGIC)
    seconds = time.perf_counter() - start
    files = {"tree.json": tree_text(built.trees), "tree_query.smt2": text}
    if answer == "unsat":
        return ProofResult(Verdict.PROVED, seconds, files=files, summary=f"cube tree: {tree_stats(built.trees)}",
                           **fields)
    if answer == "sat":
        return _refuted(goal, list(tokens), seconds, **fields)
    return ProofResult(Verdict.UNKNOWN, seconds, reason=f"tree query: solver gave up ({answer})", **fields)


def recheck_cubes(report, bundle, obligation, goal: Goal, timeout_s: float) -> None:
    """The cube tree partitions the domain, exact bounds on the circuit re-derive every leaf's class, and
    tree_query.smt2 is the tree == program query, unsat."""
    exact, margin = _exact(report, goal)
    if exact is None:
        return
    try:
        trees = read_trees(bundle / "tree.json")
    except (OSError, ValueError, AttributeError, TypeError, KeyError, IndexError, RecursionError) as err:
        report.add("tree.json and tree_query.smt2", False, str(err))
        return
    domain = goal.domain
    problems, unproved = check_partition(trees, domain, lambda n, allowed: exact.cube_class(n, allowed, margin))
    report.add("tree partitions the domain", not problems, "; ".join(problems[:3]))
    report.add("every leaf's class re-derived by exact bounds", not problems and not unproved,
               f"{len(unproved)} leaves not proved, e.g. {unproved[0]}" if unproved else "")
    witness = valid_witness(domain)
    report.add("domain has at least one valid input", witness is not None, "none found" if witness is None else
               f"e.g. {domain.format(witness)!r}")
    if not problems:
        recheck_query(report, bundle, "tree_query.smt2", tree_query(trees, goal.program, domain), "tree", timeout_s,
                      TREE_LOGIC)


def valid_witness(domain: Domain, samples: int = 4096) -> list[int] | None:
    """One sequence of ``domain`` its precondition admits, or None when none is found: the first sequence of each
    length, then seeded random ones. A witness proves the domain non-empty; None fails the check."""
    pre = domain.precondition
    rng = np.random.default_rng(0)
    candidates = [[t] * n for n in domain.lengths for t in range(domain.n_tokens)]
    candidates += [rng.integers(0, domain.n_tokens, int(rng.choice(domain.lengths))).tolist() for _ in range(samples)]
    return next((c for c in candidates if pre is None or dsl.run(pre, c) == 1), None)


def _exact(report, goal: Goal) -> tuple[ExactCircuit | None, Fraction]:
    """The circuit's exact tables on the domain and the certified float margin, or (None, _) after a FAILED line:
    a circuit whose structure the bounds do not know, or a domain longer than its positions."""
    model = model_of(goal.circuit)
    report.add("circuit with known structure", model is not None, "" if model is not None else
               "beyond-exhaustion proofs need a one-layer reference circuit or a circuit_sparsity checkpoint")
    record = goal.record or {}
    raw = record.get("float_margin")
    try:
        margin = Fraction(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else Fraction(0)
    except (ValueError, OverflowError):  # NaN, infinity
        margin = Fraction(0)
    report.add("float margin at least 1e-9", margin >= MIN_MARGIN, str(raw))
    if model is None:
        return None, margin
    refusal = model.refusal(goal.domain.max_len)
    report.add("domain lengths within what the bounds cover", refusal is None, f"max_len {goal.domain.max_len}"
               + ("" if refusal is None else f": {refusal}"))
    if refusal is not None:
        return None, margin
    exact = model.exact(goal.domain.max_len)
    return exact, max(margin, MIN_MARGIN, Fraction(getattr(exact, "margin", 0)))


def _no_files(obligation: dict) -> list:
    return []


def _cube_files(obligation: dict) -> list:
    return ["tree.json", "tree_query.smt2"]


ORBITS = ProofStrategy("orbits", ORBIT_METHOD, prove_orbits, _no_files, recheck_orbits, CIRCUIT_CLAIM,
                       "every orbit of a proved counts+last-token symmetry decided by bounds on the circuit")
CIRCUIT_BOUNDS = ProofStrategy("circuit-bounds", CUBE_METHOD, prove_cubes, _cube_files, recheck_cubes, CIRCUIT_CLAIM,
                               "a tree of input cubes decided by bounds on the circuit + one tree == program query")
