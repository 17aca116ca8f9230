"""Task registry: a circuit, its default domain, and the behaviour it is meant to have (its spec)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from jaxscd.circuits.base import Circuit
from jaxscd.circuits.reference import as_circuit, bracket_depth_circuit, quote_close_circuit
from jaxscd.domain import Domain
from jaxscd.dsl.programs import CountThreshold, Program


@dataclass(frozen=True, eq=False)
class Task:
    name: str
    description: str
    circuit: Circuit
    alphabet: tuple
    min_len: int
    max_len: int
    max_positions: int  # longest sequence the circuit accepts
    spec: Callable[[Sequence[int]], int] | None = None  # intended behaviour on token ids
    precondition: Program | None = None
    precondition_text: str = ""

    def domain(self, min_len: int | None = None, max_len: int | None = None) -> Domain:
        return Domain(self.alphabet, self.min_len if min_len is None else min_len,
                      self.max_len if max_len is None else max_len, self.precondition, self.precondition_text)


def _quote_spec(tokens: Sequence[int]) -> int:
    """Close with the type of the most recent (unclosed) quote: 0 = '"', 1 = "'"."""
    quotes = [t for t in tokens if t in (2, 3)]
    return 0 if quotes[-1] == 2 else 1


def _bracket_spec(tokens: Sequence[int]) -> int:
    """Predict ']]' (1) when the nesting depth at the end is at least 2, else ']' (0)."""
    return int(tokens.count(0) - tokens.count(1) >= 2)


def _quote_close() -> Task:
    return Task(
        "quote_close", "which quote closes the open string (Gao et al. 2025, Fig. 4)",
        as_circuit("quote_close", quote_close_circuit(16), ('"', "'")),
        ("a", "b", '"', "'"), 1, 8, 16, _quote_spec,
        CountThreshold({2, 3}, set(), 1), "at least one quote")


def _bracket_depth() -> Task:
    return Task(
        "bracket_depth", "close one or two brackets, from bracket depth carried as a density (Fig. 5)",
        as_circuit("bracket_depth", bracket_depth_circuit(16), ("]", "]]")),
        ("[", "]", "a"), 1, 8, 16, _bracket_spec,
        CountThreshold({0}, {1}, 1), "at least one unclosed '['")


_BUILDERS = {"quote_close": _quote_close, "bracket_depth": _bracket_depth}


def task_names() -> list[str]:
    return list(_BUILDERS)


def get_task(name: str) -> Task:
    if name not in _BUILDERS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(_BUILDERS)}")
    return _BUILDERS[name]()
