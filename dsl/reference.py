"""Plain-Python reference interpreter: the oracle for every other meaning of a program."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from jaxscd.dsl.programs import (
    Constant,
    CountThreshold,
    DensityThreshold,
    MostRecent,
    Program,
    StateMachine,
    Toggle,
)


def _count(tokens: Sequence[int], group: frozenset) -> int:
    return sum(1 for t in tokens if t in group)


def run(program: Program, tokens: Sequence[int]) -> int:
    """The class (0 or 1) ``program`` assigns to one token sequence."""
    tokens = [int(t) for t in tokens]
    match program:
        case Constant(value):
            return value
        case CountThreshold(plus, minus, threshold):
            return int(_count(tokens, plus) - _count(tokens, minus) >= threshold)
        case DensityThreshold(plus, minus, num, den):
            # exact: (c+ - c-)/len >= num/den  <=>  den*(c+ - c-) >= num*len, as len > 0 and den > 0
            return int(den * (_count(tokens, plus) - _count(tokens, minus)) >= num * len(tokens))
        case Toggle(group, flip):
            return (_count(tokens, group) % 2) ^ flip
        case MostRecent(first, second, default):
            for t in reversed(tokens):
                if t in first:
                    return 0
                if t in second:
                    return 1
            return default
        case StateMachine(transitions, accepting):
            state = 0
            for t in tokens:
                state = transitions[state][t]
            return int(state in accepting)
    raise TypeError(f"not a DSL program: {program!r}")


def run_many(program: Program, sequences: Iterable[Sequence[int]]) -> list[int]:
    return [run(program, s) for s in sequences]
