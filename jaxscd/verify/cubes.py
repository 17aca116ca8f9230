"""Cube-and-conquer proofs of surrogate == program (``--proof cubes``; "smt-cubes" in certificates).

The domain is split into cubes (a length and a fixed token prefix: a contiguous range of domain indices).
Inside a cube, every ReLU whose phase is constant on the cube's valid inputs (known exactly from the exhaustive
pass) is fixed: linear if always active, dropped if never. Each cube query asserts "the decisions differ, or
some fixed phase is violated", so UNSAT proves the cube without trusting the exhaustive pass. Cubes whose query
times out are split by their next token (adaptive depth); cubes are solved in parallel processes, each with a
fresh solver from the query's SMT-LIB2 text.
"""

from __future__ import annotations

import heapq
import os
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
import multiprocessing

import numpy as np
import z3

from jaxscd import progress
from jaxscd.domain import Domain
from jaxscd.dsl import smt
from jaxscd.dsl.programs import Program
from jaxscd.kernels.enumerate import precondition_mask
from jaxscd.surrogates import IntegerSurrogate, exhaustive_decisions
from jaxscd.verify.encode import surrogate_score, symbolic_sequence
from jaxscd.verify.solver import cvc5_unsat, read_query, same_assertions, smt2_text, solve_text, z3_unsat
from jaxscd.verify.strategy import Goal, ProofResult, ProofStrategy, solver_verdict


@dataclass(frozen=True, order=True)
class Cube:
    length: int
    prefix: tuple = ()

    def index_range(self, domain: Domain) -> tuple[int, int]:
        """[first, stop) domain indices of the cube's sequences (lexicographic order keeps them contiguous)."""
        rest = domain.n_tokens ** (self.length - len(self.prefix))
        local = 0
        for t in self.prefix:
            local = local * domain.n_tokens + t
        first = int(domain.starts[self.length - domain.min_len]) + local * rest
        return first, first + rest

    def children(self, n_tokens: int) -> list[Cube]:
        return [Cube(self.length, self.prefix + (t,)) for t in range(n_tokens)]

    def describe(self, domain: Domain) -> str:
        return f"len={self.length} prefix={domain.format(self.prefix)!r}"


def cube_phases(active: np.ndarray, valid: np.ndarray, first: int, stop: int) -> np.ndarray:
    """int8 [H]: 1 if a neuron is active on every valid input of the range, -1 if on none, else 0."""
    rows = active[first:stop][valid[first:stop]]
    if len(rows) == 0:
        return np.full(active.shape[1], -1, dtype=np.int8)  # no valid input: any phase is vacuous
    return np.where(rows.all(axis=0), 1, np.where(~rows.any(axis=0), -1, 0)).astype(np.int8)


def cube_query(surrogate: IntegerSurrogate, program: Program, domain: Domain, cube: Cube,
               phases: np.ndarray) -> str:
    """SMT-LIB2 text: satisfiable iff some input of the cube separates surrogate and program, or breaks a phase."""
    seq = symbolic_sequence(domain)
    solver = z3.Solver()
    solver.add(*seq.constraints, seq.length == cube.length)
    solver.add(*[seq.tokens[i] == t for i, t in enumerate(cube.prefix)])
    score, violations = surrogate_score(surrogate, seq, phases)
    differs = (score > 0) != smt.encode(program, seq.tokens, seq.length)
    solver.add(z3.Or([differs, *violations]))
    return smt2_text(solver)


@dataclass
class CubeRun:
    answer: str  # unsat (all cubes proved) | sat | unknown
    counterexample: tuple | None = None
    cubes: list = field(default_factory=list)  # per leaf cube: dict(length, prefix, answer, seconds, phases)
    queries: dict = field(default_factory=dict)  # leaf cube file name -> SMT-LIB2 text
    seconds: float = 0.0
    reason: str = ""


def initial_cubes(domain: Domain, active: np.ndarray, valid: np.ndarray, max_unstable: int,
                  max_cubes: int) -> list[Cube]:
    """Start from one cube per length; repeatedly split the cube with the most neurons of unknown phase (from
    the exhaustive pass) by its next token, until every cube has at most ``max_unstable`` of them or there
    would be more than ``max_cubes`` cubes."""
    def unstable(cube):
        return int(np.count_nonzero(cube_phases(active, valid, *cube.index_range(domain)) == 0))

    heap = [(-unstable(c), c.length, c.prefix) for c in (Cube(n) for n in domain.lengths)]
    heapq.heapify(heap)
    while heap and -heap[0][0] > max_unstable and len(heap) + domain.n_tokens - 1 <= max_cubes:
        _, length, prefix = heapq.heappop(heap)
        if len(prefix) == length:  # a single sequence: nothing left to split
            heapq.heappush(heap, (0, length, prefix))
            continue
        for child in Cube(length, prefix).children(domain.n_tokens):
            heapq.heappush(heap, (-unstable(child), child.length, child.prefix))
    return sorted(Cube(length, prefix) for _, length, prefix in heap)


def prove_by_cubes(surrogate: IntegerSurrogate, program: Program, domain: Domain, valid: np.ndarray,
                   timeout_s: float = 60.0, cube_timeout_s: float = 2.0, max_unstable: int = 2,
                   max_cubes: int = 64, workers: int | None = None) -> CubeRun:
    """Solve every cube (splitting on timeout); unsat overall only if every leaf cube is unsat."""
    start = time.perf_counter()
    _, active = exhaustive_decisions(surrogate, domain)
    run = CubeRun("unsat")
    pending = initial_cubes(domain, active, valid, max_unstable, max_cubes)
    workers = workers or min(os.cpu_count() or 1, 8)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers > 1 else None
    try:
        while pending:
            queries = []
            for cube in pending:
                phases = cube_phases(active, valid, *cube.index_range(domain))
                queries.append((cube, phases, cube_query(surrogate, program, domain, cube, phases)))
            leaf_budget = [timeout_s if len(c.prefix) >= c.length else cube_timeout_s for c, _, _ in queries]
            texts = [q for _, _, q in queries]
            try:
                answers = list(progress.counted(
                    pool.map(solve_text, texts, leaf_budget) if pool and len(texts) > 1 else
                    (solve_text(t, b) for t, b in zip(texts, leaf_budget)), len(texts), "cubes"))
            except BrokenProcessPool:  # a solver process was killed (out of memory, signal): decide nothing
                run.answer, run.reason = "unknown", "a solver process died before answering"
                break
            pending = []
            for (cube, phases, text), (answer, tokens, seconds) in zip(queries, answers):
                if answer == "unknown" and len(cube.prefix) < cube.length:
                    pending += cube.children(domain.n_tokens)
                    continue
                name = f"cube_{len(run.cubes):05d}.smt2"
                run.cubes.append({"length": cube.length, "prefix": list(cube.prefix), "answer": answer,
                                  "seconds": round(seconds, 4), "fixed": int(np.count_nonzero(phases)),
                                  "unstable": int(np.count_nonzero(phases == 0)), "file": name})
                run.queries[name] = text
                if answer == "sat" and run.answer != "sat":
                    run.answer, run.counterexample = "sat", tokens
                elif answer == "unknown" and run.answer == "unsat":
                    run.answer, run.reason = "unknown", f"cube {cube.describe(domain)} timed out"
            if run.answer == "sat" or time.perf_counter() - start > timeout_s * 4:
                if pending:
                    run.answer = run.answer if run.answer == "sat" else "unknown"
                    run.reason = run.reason or "cube budget exhausted"
                break
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    run.seconds = time.perf_counter() - start
    return run


def covers_domain(domain: Domain, cubes: list[dict]) -> bool:
    """The leaf cubes partition the domain: each is a well-formed cube of the domain (length in range, prefix no
    longer than the length, tokens in the alphabet), and their index ranges are disjoint and cover it."""
    for c in cubes:
        prefix = tuple(c["prefix"])
        if not (domain.min_len <= c["length"] <= domain.max_len and len(prefix) <= c["length"]
                and all(isinstance(t, int) and 0 <= t < domain.n_tokens for t in prefix)):
            return False
    ranges = sorted(Cube(c["length"], tuple(c["prefix"])).index_range(domain) for c in cubes)
    position = 0
    for first, stop in ranges:
        if first != position:
            return False
        position = stop
    return position == domain.size


# ------------------------------------------------------------------------------------------------------------
# The strategy: prove, the files it adds, recheck


def prove(goal: Goal, timeout_s: float) -> ProofResult:
    surrogate, program, domain, valid = goal.surrogate, goal.program, goal.domain, goal.valid
    run = prove_by_cubes(surrogate, program, domain, precondition_mask(domain) if valid is None else valid,
                         timeout_s=timeout_s)
    return solver_verdict(run.answer, run.counterexample, run.seconds, surrogate, program, domain, run.reason,
                          "a cube's fixed ReLU phase does not hold on this input (the exhaustive pass and the "
                          "solver disagree)", method=STRATEGY.method,
                          record={"cubes": [dict(c, file=f"cubes/{c['file']}") for c in run.cubes]},
                          files={f"cubes/{name}": text for name, text in run.queries.items()},
                          summary=f"{len(run.cubes)} cubes" if run.cubes else "")


def files(obligation: dict) -> list:
    """The cube query files; a TypeError (a corrupt bundle) unless every cube is {length, prefix, file} of the
    types jaxscd writes."""
    cubes = obligation["cubes"]
    if not isinstance(cubes, list) or not all(_well_formed(c) for c in cubes):
        raise TypeError("cubes must be a list of {\"length\": int, \"prefix\": [int, ...], \"file\": str}")
    return [entry["file"] for entry in cubes]


def _well_formed(cube) -> bool:
    def integer(value):
        return isinstance(value, int) and not isinstance(value, bool)

    return isinstance(cube, dict) and integer(cube.get("length")) and isinstance(cube.get("file"), str) and \
        isinstance(cube.get("prefix"), list) and all(integer(t) for t in cube["prefix"])


def recheck(report, bundle, obligation, goal: Goal, timeout_s: float) -> None:
    """The cubes partition the domain, each file is the query of its cube, and each is unsat."""
    surrogate, program, domain, valid = goal.surrogate, goal.program, goal.domain, goal.valid
    cubes = obligation["cubes"]
    report.add("cubes partition the domain", covers_domain(domain, cubes), f"{len(cubes)} cubes")
    _, active = exhaustive_decisions(surrogate, domain)
    mismatched, not_unsat, cvc5_bad, cvc5_skipped = [], [], [], 0
    for entry in cubes:
        cube = Cube(entry["length"], tuple(entry["prefix"]))
        text = read_query(report, bundle, entry["file"])
        if text is None:
            mismatched.append(entry["file"])
            continue
        phases = cube_phases(active, valid, *cube.index_range(domain))
        if not same_assertions(text, cube_query(surrogate, program, domain, cube, phases)):
            mismatched.append(entry["file"])
        unsat, _ = z3_unsat(text, timeout_s)
        if unsat is not True:
            not_unsat.append(entry["file"])
        ok, _ = cvc5_unsat(text, timeout_s)
        cvc5_skipped += ok is None
        if ok is False:
            cvc5_bad.append(entry["file"])
    report.add("each cube file is the query of its cube", not mismatched, ", ".join(mismatched[:3]))
    report.add("z3: every cube query is unsat", not not_unsat and not mismatched, ", ".join(not_unsat[:3]))
    report.add("cvc5: every cube query is unsat", None if cvc5_skipped else not cvc5_bad,
               f"{cvc5_skipped} not decided by cvc5" if cvc5_skipped else ", ".join(cvc5_bad[:3]))


STRATEGY = ProofStrategy("cubes", "smt-cubes", prove, files, recheck,
                         summary="cube-and-conquer")
