"""Exact z3 encodings of the domain and of the integer surrogate (integer arithmetic only, no floats)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import z3

from jaxscd.domain import Domain
from jaxscd.dsl import smt
from jaxscd.dsl.programs import Program
from jaxscd.surrogates import IntegerSurrogate
from jaxscd.verify.solver import smt2_text


@dataclass(frozen=True, eq=False)
class SymbolicSequence:
    tokens: list  # z3 Int per position 0..max_len-1
    length: z3.ArithRef
    constraints: list  # z3 Bools: the sequence lies in the domain
    onehot: list  # onehot[i][v]: z3 Int in {0, 1}, 1 iff position i is real and holds token v

    def concrete(self, model: z3.ModelRef) -> list[int]:
        n = model.eval(self.length, model_completion=True).as_long()
        return [model.eval(t, model_completion=True).as_long() for t in self.tokens[:n]]


def symbolic_sequence(domain: Domain) -> SymbolicSequence:
    """Token and length variables constrained to the domain (padding positions pinned to 0), with a 0/1 integer
    one-hot view of the tokens: the surrogate is linear in it, which z3's arithmetic solver handles far better
    than If-lookups on the token variables (measured in experiments/bench_smt.py)."""
    tokens = [z3.Int(f"t{i}") for i in range(domain.max_len)]
    length = z3.Int("len")
    constraints = [length >= domain.min_len, length <= domain.max_len]
    onehot = []
    for i, t in enumerate(tokens):
        constraints += [t >= 0, t < domain.n_tokens, z3.Implies(length <= i, t == 0)]
        row = [z3.Int(f"x{i}_{v}") for v in range(domain.n_tokens)]
        for v, x in enumerate(row):
            constraints += [x >= 0, x <= 1, (x == 1) == z3.And(length > i, t == v)]
        constraints.append(z3.Sum(row) == z3.If(length > i, 1, 0))
        onehot.append(row)
    if domain.precondition is not None:
        constraints.append(smt.encode(domain.precondition, tokens, length))
    return SymbolicSequence(tokens, length, constraints, onehot)


class OneHotToken:
    """A position's token seen through Boolean indicator variables: ``token == v`` is the indicator of v."""

    __hash__ = None

    def __init__(self, bits: list):
        self.bits = bits

    def __eq__(self, value):
        return self.bits[value] if isinstance(value, int) and 0 <= value < len(self.bits) else z3.BoolVal(False)


@dataclass(frozen=True, eq=False)
class BooleanSequence:
    """Tokens as Boolean indicators ``b{i}_{v}`` (padding: none set) and an Int length: with no arithmetic over
    token ids, finite-domain queries go to z3's SAT core (``z3.SolverFor("QF_FD")``)."""
    bits: list  # bits[i][v]
    tokens: list  # OneHotToken per position, for dsl.smt.encode
    length: z3.ArithRef
    constraints: list


def boolean_sequence(domain: Domain) -> BooleanSequence:
    bits = [[z3.Bool(f"b{i}_{v}") for v in range(domain.n_tokens)] for i in range(domain.max_len)]
    tokens = [OneHotToken(row) for row in bits]
    length = z3.Int("len")
    constraints = [length >= domain.min_len, length <= domain.max_len]
    for i, row in enumerate(bits):  # exactly one token at a real position, none at padding
        constraints.append(z3.Sum([z3.If(b, 1, 0) for b in row]) == z3.If(length > i, 1, 0))
    if domain.precondition is not None:
        constraints.append(smt.encode(domain.precondition, tokens, length))
    return BooleanSequence(bits, tokens, length, constraints)


def _positional_sum(weights: np.ndarray, seq: SymbolicSequence) -> z3.ArithRef:
    """sum over real positions i of weights[i, t_i] (weights int [max_len, V]), linear in the one-hot view."""
    if weights.shape != (len(seq.onehot), len(seq.onehot[0])):
        raise ValueError(f"surrogate weights {list(weights.shape)} do not fit sequences of "
                         f"{len(seq.onehot)} positions over {len(seq.onehot[0])} tokens")
    terms = [int(weights[i, v]) * seq.onehot[i][v] for i in range(weights.shape[0])
             for v in range(weights.shape[1]) if weights[i, v]]
    return z3.Sum(terms) if terms else z3.IntVal(0)


def surrogate_score(surrogate: IntegerSurrogate, seq: SymbolicSequence, phases: np.ndarray | None = None):
    """(score term, phase-violation terms). ``phases[j]`` = 1 / -1 fixes unit j active / inactive (its ReLU
    becomes linear or vanishes, in the score and in the units it feeds), 0 keeps the If; each fixed phase
    contributes a term that holds exactly when the fixed phase is wrong, so a query asserting "disagreement or a
    violated phase" stays sound: on an input where some fixed phase is wrong, the first such unit has its exact
    pre-activation (every earlier ReLU term is right), so its violation term holds."""
    score = [z3.IntVal(int(surrogate.out_b)), _positional_sum(surrogate.skip_w, seq)]
    violations, relus = [], []
    for j in range(surrogate.n_neurons):
        pre = z3.IntVal(int(surrogate.hidden_b[j])) + _positional_sum(surrogate.hidden_w[:, :, j], seq)
        inputs = [int(surrogate.unit_w[k, j]) * relus[k] for k in np.flatnonzero(surrogate.unit_w[:j, j])]
        if inputs:
            pre = pre + z3.Sum(inputs)
        phase = 0 if phases is None else int(phases[j])
        if phase > 0:
            relus.append(pre)
            violations.append(pre <= 0)
        elif phase < 0:
            relus.append(z3.IntVal(0))
            violations.append(pre > 0)
        else:
            relus.append(z3.If(pre > 0, pre, 0))
        if phase >= 0 and (surrogate.out_w[j] or not surrogate.unit_w[j].any()):  # a unit only feeding units
            score.append(int(surrogate.out_w[j]) * relus[j])                       # adds no score term
    return z3.Sum(score), violations


def surrogate_decision(surrogate: IntegerSurrogate, seq: SymbolicSequence) -> z3.BoolRef:
    """True exactly when the surrogate outputs class 1 (score > 0)."""
    return surrogate_score(surrogate, seq)[0] > 0


def equivalence_query(surrogate: IntegerSurrogate, program: Program, domain: Domain):
    """(solver, symbolic sequence): satisfiable iff some domain input separates program and surrogate."""
    seq = symbolic_sequence(domain)
    solver = z3.Solver()
    solver.add(*seq.constraints)
    solver.add(surrogate_decision(surrogate, seq) != smt.encode(program, seq.tokens, seq.length))
    return solver, seq


def one_query_text(surrogate: IntegerSurrogate, program: Program, domain: Domain) -> str:
    """The one query of surrogate != program as SMT-LIB2 (query.smt2 of every bundle, for other tools)."""
    return smt2_text(equivalence_query(surrogate, program, domain)[0])
