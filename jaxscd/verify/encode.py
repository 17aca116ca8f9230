"""Exact z3 encodings of the domain and of the integer surrogate (integer arithmetic only, no floats)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import z3

from jaxscd.domain import Domain
from jaxscd.dsl import smt
from jaxscd.surrogate import IntegerSurrogate


@dataclass(frozen=True, eq=False)
class SymbolicSequence:
    tokens: list  # z3 Int per position 0..max_len-1
    length: z3.ArithRef
    constraints: list  # z3 Bools: the sequence lies in the domain

    def concrete(self, model: z3.ModelRef) -> list[int]:
        n = model.eval(self.length, model_completion=True).as_long()
        return [model.eval(t, model_completion=True).as_long() for t in self.tokens[:n]]


def symbolic_sequence(domain: Domain) -> SymbolicSequence:
    """Token and length variables constrained to the domain (padding positions pinned to 0)."""
    tokens = [z3.Int(f"t{i}") for i in range(domain.max_len)]
    length = z3.Int("len")
    constraints = [length >= domain.min_len, length <= domain.max_len]
    for i, t in enumerate(tokens):
        constraints += [t >= 0, t < domain.n_tokens, z3.Implies(length <= i, t == 0)]
    if domain.precondition is not None:
        constraints.append(smt.encode(domain.precondition, tokens, length))
    return SymbolicSequence(tokens, length, constraints)


def _lookup(row: np.ndarray, token: z3.ArithRef) -> z3.ArithRef:
    """row[token] as an If chain over the token's possible values (row: int weights per token)."""
    term = z3.IntVal(int(row[-1]))
    for v in range(len(row) - 2, -1, -1):
        term = z3.If(token == v, z3.IntVal(int(row[v])), term)
    return term


def _positional_sum(weights: np.ndarray, seq: SymbolicSequence) -> z3.ArithRef:
    """sum over real positions i of weights[i, t_i] (weights int [max_len, V])."""
    terms = []
    for i, token in enumerate(seq.tokens):
        if np.any(weights[i]):
            terms.append(z3.If(seq.length > i, _lookup(weights[i], token), z3.IntVal(0)))
    return z3.Sum(terms) if terms else z3.IntVal(0)


def surrogate_score(surrogate: IntegerSurrogate, seq: SymbolicSequence, phases: np.ndarray | None = None):
    """(score term, phase-violation terms). ``phases[j]`` = 1 / -1 fixes neuron j active / inactive (its ReLU
    becomes linear or vanishes), 0 keeps the If; each fixed phase contributes a term that holds exactly when the
    fixed phase is wrong, so a query asserting "disagreement or a violated phase" stays sound."""
    score = [z3.IntVal(int(surrogate.out_b)), _positional_sum(surrogate.skip_w, seq)]
    violations = []
    for j in range(surrogate.n_neurons):
        pre = z3.IntVal(int(surrogate.hidden_b[j])) + _positional_sum(surrogate.hidden_w[:, :, j], seq)
        phase = 0 if phases is None else int(phases[j])
        if phase > 0:
            score.append(int(surrogate.out_w[j]) * pre)
            violations.append(pre <= 0)
        elif phase < 0:
            violations.append(pre > 0)
        else:
            score.append(int(surrogate.out_w[j]) * z3.If(pre > 0, pre, 0))
    return z3.Sum(score), violations


def surrogate_decision(surrogate: IntegerSurrogate, seq: SymbolicSequence) -> z3.BoolRef:
    """True exactly when the surrogate outputs class 1 (score > 0)."""
    return surrogate_score(surrogate, seq)[0] > 0
