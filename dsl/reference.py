"""Plain-Python reference interpreter: the oracle for every other meaning of a program."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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
        case MostRecent(first, second, default) | FirstOccurrence(first, second, default):
            # the last (MostRecent) or first (FirstOccurrence) token of either group decides
            for t in reversed(tokens) if isinstance(program, MostRecent) else tokens:
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
        case TokenAt(position, group, from_end):
            if position >= len(tokens):
                return 0
            return int(tokens[len(tokens) - 1 - position if from_end else position] in group)
        case LengthThreshold(threshold):
            return int(len(tokens) >= threshold)
        case WindowCount(group, window, threshold):
            return int(_count(tokens[-window:], group) >= threshold)
        case SaturatedDepth(open_, close, cap, threshold):
            depth = 0
            for t in tokens:
                if t in open_:
                    depth = min(depth + 1, cap)
                elif t in close:
                    depth = max(depth - 1, 0)
            return int(depth >= threshold)
        case Both(left, right, op):
            a, b = run(left, tokens), run(right, tokens)
            return {"and": a & b, "or": a | b, "xor": a ^ b}[op]
    raise TypeError(f"not a DSL program: {program!r}")


def run_many(program: Program, sequences: Iterable[Sequence[int]]) -> list[int]:
    return [run(program, s) for s in sequences]
