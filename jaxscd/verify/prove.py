"""Proofs with z3: a program equals the integer surrogate on the whole domain, or a checked counterexample."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, replace

import numpy as np
import z3

from jaxscd.domain import Domain
from jaxscd.dsl import reference, smt
from jaxscd.dsl.programs import Program
from jaxscd.surrogate import IntegerSurrogate
from jaxscd.verify.encode import surrogate_decision, symbolic_sequence


class Verdict(str, enum.Enum):
    PROVED = "PROVED"
    REFUTED = "REFUTED"
    UNKNOWN = "UNKNOWN"
    NO_PROGRAM = "NO_PROGRAM"


@dataclass(frozen=True)
class ProofResult:
    verdict: Verdict
    seconds: float
    smt2: str
    counterexample: tuple | None = None  # token ids where program and surrogate disagree
    reason: str = ""
    method: str = "smt"  # "smt": one query (smt2); "smt-cubes": one query per cube (cubes, cube_queries);
    #                      "smt-tree": interval-bounded decision tree (tree) + one tree == program query (tree_smt2)
    cubes: tuple = ()
    cube_queries: dict | None = None
    tree: dict | None = None  # {length (str): node}, see jaxscd.verify.tree
    tree_smt2: str = ""


def solver_name() -> str:
    return f"z3 {z3.get_version_string()}"


def surrogate_class(surrogate: IntegerSurrogate, tokens) -> int:
    """Exact class of one sequence (int64 arithmetic), for checking solver models independently."""
    padded = np.zeros((1, surrogate.skip_w.shape[0]), dtype=np.int32)
    padded[0, :len(tokens)] = tokens
    return int(np.asarray(surrogate.scores(padded, np.array([len(tokens)], dtype=np.int32)))[0] > 0)


def in_domain(domain: Domain, tokens) -> bool:
    ok_len = domain.min_len <= len(tokens) <= domain.max_len
    ok_tokens = all(0 <= t < domain.n_tokens for t in tokens)
    return ok_len and ok_tokens and (domain.precondition is None or reference.run(domain.precondition, tokens) == 1)


def equivalence_query(surrogate: IntegerSurrogate, program: Program, domain: Domain):
    """(solver, symbolic sequence): satisfiable iff some domain input separates program and surrogate."""
    seq = symbolic_sequence(domain)
    solver = z3.Solver()
    solver.add(*seq.constraints)
    solver.add(surrogate_decision(surrogate, seq) != smt.encode(program, seq.tokens, seq.length))
    return solver, seq


def smt2_text(solver: z3.Solver) -> str:
    """SMT-LIB2 text of a query (quantifier-free linear integer arithmetic), readable by z3 and cvc5."""
    return "(set-logic QF_LIA)\n" + solver.to_smt2()


def _checked_refutation(surrogate, program, domain, tokens, seconds, smt2, **extra) -> ProofResult:
    """REFUTED only if the model really separates program and surrogate (re-checked in plain Python)."""
    if in_domain(domain, tokens) and reference.run(program, tokens) != surrogate_class(surrogate, tokens):
        return ProofResult(Verdict.REFUTED, seconds, smt2, tokens, **extra)
    reason = {"smt-cubes": "a cube's fixed ReLU phase does not hold on this input (the exhaustive pass and the "
                           "solver disagree)",
              "smt-tree": "the solver's input lies in a void leaf of the tree, or the tree's interval bounds do "
                          "not hold on it"}.get(extra.get("method"),
                                                "solver model does not reproduce a disagreement (encoding mismatch)")
    return ProofResult(Verdict.UNKNOWN, seconds, smt2, tokens, reason, **extra)


def prove_equivalent(surrogate: IntegerSurrogate, program: Program, domain: Domain,
                     timeout_s: float = 60.0, strategy: str = "auto", valid=None) -> ProofResult:
    """PROVED only on UNSAT; a model is re-checked in plain Python before it counts as a counterexample.

    ``strategy``: "tree" (an interval-bounded decision tree and one tree == program query, see ``tree.py``),
    "single" (one query), "cubes" (cube-and-conquer, see ``cubes.py``), or "auto": for surrogates with more than
    ``AUTO_TREE_MIN_NEURONS`` neurons the tree first (one query grows steeply with unstable neurons), else one
    short query first; then the other; then cubes. Deep surrogates (compiled state machines) give the one query
    the whole timeout: their cubes fix few phases (units feed units), so one query is the better last resort.
    ``seconds`` counts every attempt made.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown proof strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    solver, seq = equivalence_query(surrogate, program, domain)
    smt2 = smt2_text(solver)
    if strategy == "auto":
        order = ("tree", "single", "cubes") if surrogate.n_neurons > AUTO_TREE_MIN_NEURONS else \
            ("single", "tree", "cubes")
    else:
        order = (strategy,)
    spent = 0.0
    for step in order:
        if step == "tree":
            result = _by_tree(surrogate, program, domain, smt2, timeout_s)
        elif step == "single":
            full = strategy == "single" or surrogate.deep
            budget = timeout_s if full else min(timeout_s, AUTO_SINGLE_BUDGET_S)
            result = _single(solver, seq, smt2, surrogate, program, domain, budget)
        else:
            result = _by_cubes(surrogate, program, domain, smt2, timeout_s, valid)
        result = replace(result, seconds=result.seconds + spent)
        if result.verdict != Verdict.UNKNOWN or result.counterexample is not None or step == order[-1]:
            return result
        spent = result.seconds
    raise AssertionError("unreachable")


def _verdict(answer: str, tokens, seconds: float, reason: str, surrogate, program, domain, smt2,
             **extra) -> ProofResult:
    """A solver answer as a ProofResult: unsat is PROVED, sat a counterexample re-checked in plain Python,
    anything else UNKNOWN with ``reason``."""
    if answer == "unsat":
        return ProofResult(Verdict.PROVED, seconds, smt2, **extra)
    if answer == "sat":
        return _checked_refutation(surrogate, program, domain, tokens, seconds, smt2, **extra)
    return ProofResult(Verdict.UNKNOWN, seconds, smt2, reason=reason, **extra)


def _by_cubes(surrogate, program, domain, smt2, timeout_s, valid) -> ProofResult:
    from jaxscd.kernels.enumerate import precondition_mask
    from jaxscd.verify.cubes import prove_by_cubes

    run = prove_by_cubes(surrogate, program, domain, precondition_mask(domain) if valid is None else valid,
                         timeout_s=timeout_s)
    return _verdict(run.answer, run.counterexample, run.seconds, run.reason, surrogate, program, domain, smt2,
                    method="smt-cubes", cubes=tuple(run.cubes), cube_queries=run.queries)


AUTO_SINGLE_BUDGET_S = 5.0
AUTO_TREE_MIN_NEURONS = 4  # measured in experiments/bench_smt.py: one query wins below, the tree above
STRATEGIES = ("auto", "tree", "single", "cubes")


def _by_tree(surrogate, program, domain, smt2, timeout_s) -> ProofResult:
    from jaxscd.verify.tree import json_trees, prove_by_tree

    start = time.perf_counter()
    run = prove_by_tree(surrogate, program, domain, timeout_s)
    seconds = time.perf_counter() - start
    if run is None:
        return ProofResult(Verdict.UNKNOWN, seconds, smt2, reason="no interval-bounded tree within its node budget",
                           method="smt-tree")
    answer, tokens, trees, text = run
    return _verdict(answer, tokens, seconds, f"tree query: solver gave up ({answer})", surrogate, program, domain,
                    smt2, method="smt-tree", tree=json_trees(trees), tree_smt2=text)


def checked(solver: z3.Solver, *assumptions) -> z3.CheckSatResult:
    """solver.check(), except that Ctrl-C stays a KeyboardInterrupt: z3 catches SIGINT during a check and
    returns unknown ("interrupted from keyboard"), which must stop the run, not read as a solver timeout."""
    answer = solver.check(*assumptions)
    if answer == z3.unknown and "interrupted" in solver.reason_unknown():
        raise KeyboardInterrupt
    return answer


def _single(solver, seq, smt2, surrogate, program, domain, timeout_s) -> ProofResult:
    solver.set(timeout=max(1, int(timeout_s * 1000)))
    start = time.perf_counter()
    answer = checked(solver)
    seconds = time.perf_counter() - start
    tokens = tuple(seq.concrete(solver.model())) if answer == z3.sat else None
    return _verdict(str(answer), tokens, seconds, f"solver gave up: {solver.reason_unknown()}", surrogate, program,
                    domain, smt2)
