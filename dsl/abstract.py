"""Abstract meaning of a program over a cube of sequences: the set of classes it can output.

A cube is one length ``n`` and, per position, a set of allowed tokens (``allowed``: bool [n, V]); it holds every
sequence that picks one allowed token at each position. ``outputs(program, allowed)`` is a superset of the
classes the program outputs on the cube (exact for every base motif; ``Both`` may over-approximate, since its
two parts are bounded separately). The proof strategies use it only to steer cube splitting and to mark cubes
that the precondition excludes; every such claim is re-checked by the solver.
"""

from __future__ import annotations

import numpy as np
from jaxscd.dsl.programs import (
    Both,
    Constant,
    CountThreshold,
    DensityThreshold,
    FirstOccurrence,
    LengthThreshold,
    MostRecent,
    Program,
    SaturatedDepth,
    StateMachine,
    Toggle,
    TokenAt,
    WindowCount,
)


def _weights(n_tokens: int, plus: frozenset, minus: frozenset = frozenset()) -> np.ndarray:
    return np.array([(v in plus) - (v in minus) for v in range(n_tokens)], dtype=np.int64)


def _sum_range(allowed: np.ndarray, weights: np.ndarray) -> tuple[int, int]:
    """Exact (min, max) over the cube of sum_i weights[t_i] (positions are independent)."""
    if len(allowed) == 0:
        return 0, 0
    low = np.where(allowed, weights, np.iinfo(np.int64).max).min(axis=1)
    high = np.where(allowed, weights, np.iinfo(np.int64).min).max(axis=1)
    return int(low.sum()), int(high.sum())


def _at_least(low: int, high: int, threshold: int) -> set:
    return ({1} if high >= threshold else set()) | ({0} if low < threshold else set())


def _reachable(allowed: np.ndarray, step, start: int) -> set:
    states = {start}
    for row in allowed:
        tokens = np.flatnonzero(row).tolist()
        states = {step(s, v) for s in states for v in tokens}
    return states


def outputs(program: Program, allowed: np.ndarray) -> set:
    """Classes ``program`` can output on the cube ``allowed`` (bool [n, V], every row non-empty)."""
    n, n_tokens = allowed.shape
    match program:
        case Constant(value):
            return {value}
        case CountThreshold(plus, minus, threshold):
            return _at_least(*_sum_range(allowed, _weights(n_tokens, plus, minus)), threshold)
        case DensityThreshold(plus, minus, num, den):
            low, high = _sum_range(allowed, den * _weights(n_tokens, plus, minus))
            return _at_least(low, high, num * n)
        case Toggle(group, flip):
            inside = _weights(n_tokens, group).astype(bool)
            can_in, can_out = allowed[:, inside].any(axis=1), allowed[:, ~inside].any(axis=1)
            if (can_in & can_out).any():
                return {0, 1}
            return {int(can_in.sum() % 2) ^ flip}
        case MostRecent(first, second, default) | FirstOccurrence(first, second, default):
            order = range(n - 1, -1, -1) if isinstance(program, MostRecent) else range(n)
            found = set()
            for i in order:
                tokens = set(np.flatnonzero(allowed[i]).tolist())
                found |= ({0} if tokens & first else set()) | ({1} if tokens & second else set())
                if tokens <= first | second:  # this position decides every sequence of the cube
                    return found
            return found | {default}
        case StateMachine(transitions, accepting):
            return {int(s in accepting) for s in _reachable(allowed, lambda s, v: transitions[s][v], 0)}
        case TokenAt(position, group, from_end):
            i = n - 1 - position if from_end else position
            if not 0 <= i < n:
                return {0}
            tokens = set(np.flatnonzero(allowed[i]).tolist())
            return ({1} if tokens & group else set()) | ({0} if tokens - group else set())
        case LengthThreshold(threshold):
            return {int(n >= threshold)}
        case WindowCount(group, window, threshold):
            return _at_least(*_sum_range(allowed[max(0, n - window):], _weights(n_tokens, group)), threshold)
        case SaturatedDepth(open_, close, cap, threshold):
            def step(depth, v):
                return min(depth + 1, cap) if v in open_ else max(depth - 1, 0) if v in close else depth

            return {int(d >= threshold) for d in _reachable(allowed, step, 0)}
        case Both(left, right, op):
            combine = {"and": lambda a, b: a & b, "or": lambda a, b: a | b, "xor": lambda a, b: a ^ b}[op]
            return {combine(a, b) for a in outputs(left, allowed) for b in outputs(right, allowed)}
    raise TypeError(f"not a DSL program: {program!r}")
