"""Proofs with z3: a program equals the integer surrogate on the whole domain, or a checked counterexample."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

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


def prove_equivalent(surrogate: IntegerSurrogate, program: Program, domain: Domain,
                     timeout_s: float = 60.0) -> ProofResult:
    """PROVED only on UNSAT; a model is re-checked in plain Python before it counts as a counterexample."""
    solver, seq = equivalence_query(surrogate, program, domain)
    smt2 = smt2_text(solver)
    solver.set(timeout=max(1, int(timeout_s * 1000)))
    start = time.perf_counter()
    answer = solver.check()
    seconds = time.perf_counter() - start
    if answer == z3.unsat:
        return ProofResult(Verdict.PROVED, seconds, smt2)
    if answer == z3.sat:
        tokens = tuple(seq.concrete(solver.model()))
        if in_domain(domain, tokens) and reference.run(program, tokens) != surrogate_class(surrogate, tokens):
            return ProofResult(Verdict.REFUTED, seconds, smt2, tokens)
        return ProofResult(Verdict.UNKNOWN, seconds, smt2, tokens,
                           "solver model does not reproduce a disagreement (encoding mismatch)")
    return ProofResult(Verdict.UNKNOWN, seconds, smt2, reason=f"solver gave up: {solver.reason_unknown()}")
