"""The one-query strategy ("single"; "smt" in certificates): one z3 query, satisfiable iff some domain input
separates surrogate and program; the query is the bundle's query.smt2."""

from __future__ import annotations

import time

import z3

from jaxscd.verify.encode import equivalence_query, one_query_text
from jaxscd.verify.solver import checked, recheck_query, smt2_text
from jaxscd.verify.strategy import Goal, ProofResult, ProofStrategy, solver_verdict


def prove(goal: Goal, timeout_s: float) -> ProofResult:
    surrogate, program, domain = goal.surrogate, goal.program, goal.domain
    solver, seq = equivalence_query(surrogate, program, domain)
    smt2 = smt2_text(solver)
    solver.set(timeout=max(1, int(timeout_s * 1000)))
    start = time.perf_counter()
    answer = checked(solver)
    seconds = time.perf_counter() - start
    tokens = tuple(seq.concrete(solver.model())) if answer == z3.sat else None
    return solver_verdict(str(answer), tokens, seconds, surrogate, program, domain,
                          f"solver gave up: {solver.reason_unknown()}", smt2=smt2, method=STRATEGY.method,
                          record={"file": "query.smt2"})


def files(obligation: dict) -> list:
    return ["query.smt2"]


def recheck(report, bundle, obligation, goal: Goal, timeout_s: float) -> None:
    recheck_query(report, bundle, "query.smt2", one_query_text(goal.surrogate, goal.program, goal.domain), "surrogate",
                  timeout_s)


STRATEGY = ProofStrategy("single", "smt", prove, files, recheck,
                         summary="one query")
