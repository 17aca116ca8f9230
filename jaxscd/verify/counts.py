"""The count strategy ("counts"; "count-orbits" in certificates): surrogate == program by evaluating every count
vector, no solver.

When the surrogate's weights are the same at every position (checked on its integer arrays) and the program and
the precondition depend only on how often each token occurs (``count_invariant``, by type), both sides are
functions of the count vector: a sequence and any reordering of it get the same class. One representative per
count vector of every length of the domain (tokens in id order) is then evaluated, the surrogate by its exact
int64 evaluator and the program and the precondition by the plain-Python reference interpreter: an exhaustive
proof over the orbits of reordering (parity of a count at length 12 over 3 tokens: 455 vectors, where the one
SMT query runs out of time).
"""

from __future__ import annotations

import time

import numpy as np

from jaxscd.beyond.symmetry import count_invariant, count_vectors
from jaxscd.domain import Domain
from jaxscd.dsl import reference
from jaxscd.verify.encode import one_query_text
from jaxscd.verify.solver import query_encodes
from jaxscd.verify.strategy import Goal, ProofResult, ProofStrategy, Verdict, solver_verdict

MAX_VECTORS = 500_000  # count vectors evaluated at most (the reference interpreter runs once per vector)


def why_not(surrogate, program, domain: Domain) -> str | None:
    """Why the count strategy does not apply (None when it does)."""
    if not (np.all(surrogate.hidden_w == surrogate.hidden_w[:1]) and np.all(surrogate.skip_w == surrogate.skip_w[:1])):
        return "the surrogate's weights differ between positions"
    if not count_invariant(program):
        return "the program reads positions or token order"
    if not count_invariant(domain.precondition):
        return "the precondition reads positions or token order"
    vectors = sum(_n_vectors(n, domain.n_tokens) for n in domain.lengths)
    if vectors > MAX_VECTORS:
        return f"{vectors:,} count vectors, above {MAX_VECTORS:,}"
    return None


def _n_vectors(total: int, n_tokens: int) -> int:
    from math import comb

    return comb(total + n_tokens - 1, n_tokens - 1)


def representatives(domain: Domain):
    """(tokens int32 [N, max_len] padded with 0, lengths int32 [N]): one sequence per count vector and length."""
    rows, lengths = [], []
    for n in domain.lengths:
        for counts in count_vectors(n, domain.n_tokens):
            rows.append(np.repeat(np.arange(domain.n_tokens), counts))
            lengths.append(n)
    tokens = np.zeros((len(rows), domain.max_len), dtype=np.int32)
    for i, row in enumerate(rows):
        tokens[i, :len(row)] = row
    return tokens, np.asarray(lengths, dtype=np.int32)


def first_difference(surrogate, program, domain: Domain) -> tuple[tuple | None, int]:
    """(the first valid representative where the surrogate's class and the program's differ, or None; the number
    of valid count vectors)."""
    tokens, lengths = representatives(domain)
    classes = np.asarray(surrogate.scores(tokens, lengths)) > 0
    valid = 0
    for row, n in enumerate(lengths.tolist()):
        sequence = tokens[row, :n].tolist()
        if domain.precondition is not None and reference.run(domain.precondition, sequence) != 1:
            continue
        valid += 1
        if reference.run(program, sequence) != int(classes[row]):
            return tuple(sequence), valid
    return None, valid


def prove(goal: Goal, timeout_s: float) -> ProofResult:
    start = time.perf_counter()
    reason = why_not(goal.surrogate, goal.program, goal.domain)
    if reason is not None:
        return ProofResult(Verdict.UNKNOWN, time.perf_counter() - start, reason=f"counts: {reason}",
                           method=STRATEGY.method)
    difference, valid = first_difference(goal.surrogate, goal.program, goal.domain)
    return solver_verdict("unsat" if difference is None else "sat", difference, time.perf_counter() - start,
                          goal.surrogate, goal.program, goal.domain, "", method=STRATEGY.method,
                          record={"count_vectors": valid}, summary=f"{valid:,} count vectors")


def files(obligation: dict) -> list:
    return ["query.smt2"]


def recheck(report, bundle, obligation, goal: Goal, timeout_s: float) -> None:
    """The symmetry from the arrays and the types, then every count vector evaluated again."""
    reason = why_not(goal.surrogate, goal.program, goal.domain)
    report.add("surrogate, program and precondition are functions of the token counts", reason is None,
               reason or "weights equal at every position; count-invariant by type")
    if reason is not None:
        return
    difference, valid = first_difference(goal.surrogate, goal.program, goal.domain)
    report.add(f"surrogate == program on all {valid:,} count vectors", difference is None and valid > 0,
               "" if difference is None else f"differ on {goal.domain.format(difference)!r}")
    query_encodes(report, bundle, "query.smt2", one_query_text(goal.surrogate, goal.program, goal.domain),
                  "surrogate")


STRATEGY = ProofStrategy("counts", "count-orbits", prove, files, recheck,
                         summary="every count vector evaluated, when surrogate, program and precondition depend "
                                 "only on token counts")
