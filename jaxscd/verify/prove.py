"""The proof strategies (``jaxscd.verify.strategy.ProofStrategy``, one module each), registered here: a new
strategy is its module plus one entry of ``STRATEGIES``. Surrogate == program on an enumerable domain: tree, single,
cubes, counts, automaton (``prove_equivalent``, and the order ``auto`` tries them in). Circuit == program beyond
enumeration: orbits, circuit-bounds (``jaxscd.beyond``).
"""

from __future__ import annotations

from dataclasses import replace

from jaxscd.beyond import strategies as beyond
from jaxscd.domain import Domain
from jaxscd.dsl.programs import Program
from jaxscd.surrogates import IntegerSurrogate
from jaxscd.verify import automaton, counts, cubes, single, tree
from jaxscd.verify.encode import one_query_text
from jaxscd.verify.strategy import (
    SURROGATE_CLAIM,
    Goal,
    ProofResult,
    ProofStrategy,
    Verdict,
    in_domain,
    surrogate_class,
)

__all__ = ["STRATEGIES", "SURROGATE_STRATEGIES", "ProofResult", "Verdict", "by_method", "in_domain", "prove_equivalent",
           "surrogate_class"]

STRATEGIES = {s.name: s for s in (tree.STRATEGY, single.STRATEGY, cubes.STRATEGY, counts.STRATEGY, automaton.STRATEGY,
                                  beyond.ORBITS, beyond.CIRCUIT_BOUNDS)}
SURROGATE_STRATEGIES = {name: s for name, s in STRATEGIES.items() if s.claim == SURROGATE_CLAIM}  # --proof choices
AUTO_SINGLE_BUDGET_S = 5.0
AUTO_TREE_MIN_NEURONS = 4  # measured in experiments/bench_smt.py: one query wins below, the tree above


def by_method(method) -> ProofStrategy | None:
    """The strategy a certificate's obligation names (its ``method``), or None when no strategy has that name."""
    return next((s for s in STRATEGIES.values() if s.method == method), None)


def prove_equivalent(surrogate: IntegerSurrogate, program: Program, domain: Domain,
                     timeout_s: float = 60.0, strategy: str = "auto", valid=None) -> ProofResult:
    """PROVED only on UNSAT; a model is re-checked in plain Python before it counts as a counterexample.

    ``strategy``: "tree" (an interval-bounded decision tree and one tree == program query, see ``tree.py``),
    "single" (one query), "cubes" (cube-and-conquer, see ``cubes.py``), "counts" (every count vector, see
    ``counts.py``), "automaton" (a state machine walked with a network layered by position, see ``automaton.py``),
    or "auto": "counts", else "automaton", first where it applies; then for surrogates with more than
    ``AUTO_TREE_MIN_NEURONS`` neurons the tree first (one query grows steeply with unstable neurons), else one
    short query first; then the other; then cubes. Deep surrogates (compiled state machines) give the one query
    the whole timeout: their cubes fix few phases (units feed units), so one query is the better last resort.
    ``seconds`` counts every attempt made; ``smt2`` is the one query whatever the strategy (query.smt2).
    """
    if strategy != "auto" and strategy not in SURROGATE_STRATEGIES:
        raise ValueError(f"unknown proof strategy {strategy!r}; use one of auto, {', '.join(SURROGATE_STRATEGIES)}")
    if strategy == "auto":
        order = ("tree", "single", "cubes") if surrogate.n_neurons > AUTO_TREE_MIN_NEURONS else \
            ("single", "tree", "cubes")
        if counts.why_not(surrogate, program, domain) is None:  # exact and fast where it applies
            order = ("counts", *order)
        elif surrogate.deep and automaton.why_not(surrogate, program, domain) is None:  # a machine, a layered net
            order = ("automaton", *order)
    else:
        order = (strategy,)
    spent, smt2 = 0.0, ""
    for name in order:
        short = strategy == "auto" and name == "single" and not surrogate.deep
        budget = min(timeout_s, AUTO_SINGLE_BUDGET_S) if short else timeout_s
        result = STRATEGIES[name].prove(Goal(domain, program, valid, surrogate), budget)
        smt2 = smt2 or result.smt2 or one_query_text(surrogate, program, domain)
        result = replace(result, seconds=result.seconds + spent, smt2=smt2)
        if result.verdict != Verdict.UNKNOWN or result.counterexample is not None or name == order[-1]:
            return result
        spent = result.seconds
    raise AssertionError("unreachable")
