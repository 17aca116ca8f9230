"""Symmetries proven from a circuit's structure, and the orbits they leave to check.

A one-layer reference circuit (``jaxscd.circuits.reference.OneLayerCircuit``) computes, at every position i,
x_i = embed[t_i] + pos[i] followed by a per-position MLP; one head reads the last position's query against every
position's key and mixes every position's value; the readout reads the last position. When ``pos`` is zero on
every position a sequence can use, x_i depends on t_i alone, so the keys, values and softmax weights are a
function of the token at each position and the mix is a sum over positions: permuting the tokens before the
last one (which feeds the query and the readout) changes nothing. The decision is then a function of the token
counts and the last token: one orbit per (count vector, last token), C(L + k - 1, k - 1) * k per length instead
of k^L. ``count_symmetry`` checks the condition on the arrays; callables have no known structure, so they get
no symmetry.

Programs: a program is a function of the same orbit when its type says so (``orbit_invariant``); its value on an
orbit then comes from the counts alone (``program_on_orbits``).
"""

from __future__ import annotations

from dataclasses import dataclass

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

COUNTS_AND_LAST = "counts+last-token"


@dataclass(frozen=True)
class Symmetry:
    name: str  # COUNTS_AND_LAST
    reason: str  # why the structure proves it, for the certificate

    def claim(self) -> dict:
        return {"symmetry": self.name, "reason": self.reason}


def count_symmetry(model, max_len: int) -> Symmetry | None:
    """The counts+last-token symmetry of a OneLayerCircuit when its positional embedding is exactly zero on
    positions 0..max_len-1 (checked on the array), else None."""
    from jaxscd.circuits.reference import OneLayerCircuit

    if not isinstance(model, OneLayerCircuit):
        return None
    pos = np.asarray(model.pos, dtype=np.float64)
    if pos.shape[0] < max_len or np.any(pos[:max_len] != 0):
        return None
    return Symmetry(COUNTS_AND_LAST, f"one-layer circuit: positional embedding is 0 on positions 0..{max_len - 1} "
                    "(checked on every entry), so each position's residual, key and value depend only on its token; "
                    "the head mixes all positions with weights that depend only on their tokens and the last "
                    "position's query, and the readout reads the last position: the decision is a function of the "
                    "token counts and the last token")


def orbit_invariant(program: Program | None) -> bool:
    """True when the program's value depends only on the token counts and the last token (from its type)."""
    match program:
        case None | Constant() | CountThreshold() | DensityThreshold() | LengthThreshold() | Toggle():
            return True
        case TokenAt(position, _, from_end):
            return bool(from_end) and position == 0
        case Both(left, right, _):
            return orbit_invariant(left) and orbit_invariant(right)
        case MostRecent() | StateMachine() | FirstOccurrence() | WindowCount() | SaturatedDepth():
            return False  # they read the order of the tokens
    raise TypeError(f"orbit_invariant has no case for {program!r}: not a DSL program, or a motif to add here")


def count_invariant(program: Program | None) -> bool:
    """True when the program's value depends only on the token counts (from its type; the length is their sum)."""
    match program:
        case None | Constant() | CountThreshold() | DensityThreshold() | LengthThreshold() | Toggle():
            return True
        case Both(left, right, _):
            return count_invariant(left) and count_invariant(right)
        case TokenAt() | MostRecent() | StateMachine() | FirstOccurrence() | WindowCount() | SaturatedDepth():
            return False  # they read positions or the order of the tokens
    raise TypeError(f"count_invariant has no case for {program!r}: not a DSL program, or a motif to add here")


def count_vectors(total: int, n_tokens: int) -> np.ndarray:
    """int64 [N, n_tokens]: every vector of non-negative counts summing to ``total``."""
    if n_tokens == 1:
        return np.array([[total]], dtype=np.int64)
    parts = [np.column_stack([np.full(len(rest), first, dtype=np.int64), rest])
             for first in range(total + 1) for rest in [count_vectors(total - first, n_tokens - 1)]]
    return np.concatenate(parts)


@dataclass(frozen=True, eq=False)
class Orbits:
    counts: np.ndarray  # int64 [N, k]
    last: np.ndarray  # int64 [N]: the last token (its count is >= 1)
    length: np.ndarray  # int64 [N]

    def __len__(self) -> int:
        return len(self.last)

    def representative(self, row: int) -> list[int]:
        """One sequence of the orbit: tokens in id order, the last token moved to the end."""
        counts = self.counts[row].copy()
        last = int(self.last[row])
        counts[last] -= 1
        return [v for v, c in enumerate(counts.tolist()) for _ in range(c)] + [last]


def orbits(n_tokens: int, lengths: range) -> Orbits:
    counts, last, length = [], [], []
    for n in lengths:
        vectors = count_vectors(n, n_tokens)
        for t in range(n_tokens):
            rows = vectors[vectors[:, t] >= 1]
            counts.append(rows)
            last.append(np.full(len(rows), t, dtype=np.int64))
            length.append(np.full(len(rows), n, dtype=np.int64))
    return Orbits(np.concatenate(counts), np.concatenate(last), np.concatenate(length))


def _signed(counts: np.ndarray, plus: frozenset, minus: frozenset) -> np.ndarray:
    weights = np.array([(v in plus) - (v in minus) for v in range(counts.shape[1])], dtype=np.int64)
    return counts @ weights


def program_on_orbits(program: Program, orb: Orbits) -> np.ndarray:
    """int8 [N]: the class an orbit-invariant program gives every sequence of each orbit."""
    match program:
        case Constant(value):
            return np.full(len(orb), value, dtype=np.int8)
        case CountThreshold(plus, minus, threshold):
            return (_signed(orb.counts, plus, minus) >= threshold).astype(np.int8)
        case DensityThreshold(plus, minus, num, den):
            return (den * _signed(orb.counts, plus, minus) >= num * orb.length).astype(np.int8)
        case LengthThreshold(threshold):
            return (orb.length >= threshold).astype(np.int8)
        case Toggle(tokens, flip):
            return ((_signed(orb.counts, tokens, frozenset()) % 2) ^ flip).astype(np.int8)
        case TokenAt(0, tokens, True):
            return np.isin(orb.last, sorted(tokens)).astype(np.int8)
        case Both(left, right, op):
            a, b = program_on_orbits(left, orb), program_on_orbits(right, orb)
            return {"and": a & b, "or": a | b, "xor": a ^ b}[op]
    raise ValueError(f"{program!r} is not a function of the token counts and the last token")
