"""Small decision circuits whose behaviour the DSL expresses but a gradient-trained surrogate did not fit exactly
(parity, automata, modular counts, long linear rules, recency at length 11). Tests and
``experiments/bench_surrogate.py`` share them.

Each entry: name -> (decisions of tokens int[B, L], alphabet, max_len); lengths run from 1.
"""

from __future__ import annotations

import numpy as np

from jaxscd.circuits.base import Circuit
from jaxscd.domain import Domain


def _count(tokens: np.ndarray, token: int) -> np.ndarray:
    return (tokens == token).sum(axis=1)


def _automaton(tokens: np.ndarray) -> np.ndarray:
    """A 3-state DFA over a, b, c (c keeps the state in 2 and 0; b resets but in state 1): accept in state 2."""
    table = np.array([[1, 0, 0], [2, 0, 1], [0, 2, 2]])
    state = np.zeros(len(tokens), dtype=np.int64)
    for column in tokens.T:
        state = table[state, column]
    return state == 2


def _saturating(tokens: np.ndarray) -> np.ndarray:
    """Depth +1 on '(' and -1 on ')', clamped to 0..3; class 1 iff the final depth is at least 2."""
    depth = np.zeros(len(tokens), dtype=np.int64)
    for column in tokens.T:
        depth = np.clip(depth + (column == 0) - (column == 1), 0, 3)
    return depth >= 2


def _most_recent(tokens: np.ndarray) -> np.ndarray:
    """Class 1 iff the last a-or-b is b (0 when there is none)."""
    out = np.zeros(len(tokens), dtype=bool)
    for column in tokens.T:
        out = np.where(column == 1, True, np.where(column == 0, False, out))
    return out


EXAMPLES = {
    "parity_of_count": (lambda t: _count(t, 0) % 2 == 1, "abc", 8),
    "automaton_3_states": (_automaton, "abc", 8),
    "difference_mod_3": (lambda t: (_count(t, 0) - _count(t, 1)) % 3 == 0, "abc", 8),
    "count_a_ge_2_long": (lambda t: _count(t, 0) >= 2, "ab", 20),
    "saturating_counter": (_saturating, "()x", 8),
    "most_recent_long": (_most_recent, "abc", 11),
}


def example(name: str) -> tuple[Circuit, Domain]:
    """The circuit (decisions only) and its default domain."""
    decide, alphabet, max_len = EXAMPLES[name]
    forward = lambda tokens: np.asarray(decide(np.asarray(tokens)), dtype=np.int8)  # noqa: E731
    return Circuit(name, forward, ("no", "yes")), Domain(tuple(alphabet), 1, max_len)
