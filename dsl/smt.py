"""z3 meaning of a program over a symbolic token sequence.

A symbolic sequence is ``tokens`` (z3 Ints, one per position up to max_len) and ``length`` (a z3 Int);
positions ``i >= length`` are padding and never read. The term is a z3 Bool: True means class 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import z3

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


def _present(tokens, length, i: int, group: frozenset) -> z3.BoolRef:
    if not group:
        return z3.BoolVal(False)
    return z3.And(length > i, z3.Or([tokens[i] == t for t in sorted(group)]))


def _count(tokens, length, group: frozenset) -> z3.ArithRef:
    return z3.Sum([z3.If(_present(tokens, length, i, group), 1, 0) for i in range(len(tokens))] + [z3.IntVal(0)])


def encode(program: Program, tokens: Sequence[z3.ArithRef], length: z3.ArithRef) -> z3.BoolRef:
    """z3 Bool that holds exactly when ``program`` outputs class 1 on the symbolic sequence."""
    match program:
        case Constant(value):
            return z3.BoolVal(bool(value))
        case CountThreshold(plus, minus, threshold):
            return _count(tokens, length, plus) - _count(tokens, length, minus) >= threshold
        case DensityThreshold(plus, minus, num, den):
            signed = _count(tokens, length, plus) - _count(tokens, length, minus)
            return den * signed >= num * length
        case Toggle(group, flip):
            odd = z3.BoolVal(False)
            for i in range(len(tokens)):
                odd = z3.Xor(odd, _present(tokens, length, i, group))
            return z3.Not(odd) if flip else odd
        case MostRecent(first, second, default) | FirstOccurrence(first, second, default):
            # scan towards the deciding end (the last token for MostRecent, the first for FirstOccurrence):
            # each first/second token overrides the answer so far
            out = z3.BoolVal(bool(default))
            order = range(len(tokens)) if isinstance(program, MostRecent) else reversed(range(len(tokens)))
            for i in order:
                out = z3.If(_present(tokens, length, i, first), z3.BoolVal(False),
                            z3.If(_present(tokens, length, i, second), z3.BoolVal(True), out))
            return out
        case StateMachine(transitions, accepting):
            state = z3.IntVal(0)
            for i in range(len(tokens)):
                step = z3.IntVal(0)
                for s, row in enumerate(transitions):
                    for t, nxt in enumerate(row):
                        step = z3.If(z3.And(state == s, tokens[i] == t), z3.IntVal(nxt), step)
                state = z3.If(length > i, step, state)
            return z3.Or([state == s for s in sorted(accepting)] + [z3.BoolVal(False)])
        case TokenAt(position, group, from_end):
            if not from_end:
                return _present(tokens, length, position, group) if position < len(tokens) else z3.BoolVal(False)
            # the token at i is position-th from the end exactly when length == i + 1 + position
            return z3.Or([z3.And(length == i + 1 + position, _present(tokens, length, i, group))
                          for i in range(len(tokens) - position)] + [z3.BoolVal(False)])
        case LengthThreshold(threshold):
            return length >= threshold
        case WindowCount(group, window, threshold):
            recent = [z3.If(z3.And(length - window <= i, _present(tokens, length, i, group)), 1, 0)
                      for i in range(len(tokens))]
            return z3.Sum(recent + [z3.IntVal(0)]) >= threshold
        case SaturatedDepth(open_, close, cap, threshold):
            depth = z3.IntVal(0)
            for i in range(len(tokens)):
                depth = z3.If(_present(tokens, length, i, open_), z3.If(depth < cap, depth + 1, depth),
                              z3.If(_present(tokens, length, i, close), z3.If(depth > 0, depth - 1, depth), depth))
            return depth >= threshold
        case Both(left, right, op):
            a, b = encode(left, tokens, length), encode(right, tokens, length)
            return {"and": z3.And, "or": z3.Or, "xor": z3.Xor}[op](a, b)
    raise TypeError(f"not a DSL program: {program!r}")
