"""Readable Python source for a program: standard library only, defining ``program(tokens)``.

``tokens`` is a sequence of token *names*; the function returns the predicted class index.
"""

from __future__ import annotations

from collections.abc import Sequence

from jaxscd.dsl.programs import (
    Constant,
    CountThreshold,
    DensityThreshold,
    MostRecent,
    Program,
    StateMachine,
    Toggle,
)


def _names(group: frozenset, alphabet: Sequence[str]) -> str:
    return "{" + ", ".join(repr(alphabet[t]) for t in sorted(group)) + "}"


def _count_expr(group: frozenset, alphabet: Sequence[str]) -> str:
    if len(group) == 1:
        return f"tokens.count({alphabet[next(iter(group))]!r})"
    return f"sum(t in {_names(group, alphabet)} for t in tokens)"


def _signed(plus: frozenset, minus: frozenset, alphabet: Sequence[str]) -> str:
    parts = [_count_expr(plus, alphabet)] if plus else ["0"]
    if minus:
        parts.append("- " + _count_expr(minus, alphabet))
    return " ".join(parts)


def _classes_doc(class_names: Sequence[str] | None) -> str:
    if not class_names:
        return ""
    return "\n\n    Returns " + ", ".join(f"{i} ({name!r})" for i, name in enumerate(class_names)) + ".\n    "


def render(program: Program, alphabet: Sequence[str], class_names: Sequence[str] | None = None) -> str:
    """Source of ``def program(tokens)`` implementing ``program`` over token names from ``alphabet``."""
    header = "def program(tokens):\n"
    match program:
        case Constant(value):
            doc = "Constant: the same class for every input."
            body = f"    return {value}\n"
        case CountThreshold(plus, minus, threshold):
            doc = "Counter threshold: a signed count of tokens compared with a constant."
            body = (f"    count = {_signed(plus, minus, alphabet)}\n"
                    f"    return 1 if count >= {threshold} else 0\n")
        case DensityThreshold(plus, minus, num, den):
            doc = f"Density threshold: a signed count averaged over the context, compared with {num}/{den}."
            body = (f"    count = {_signed(plus, minus, alphabet)}\n"
                    f"    # count / len(tokens) >= {num}/{den}, in integers\n"
                    f"    return 1 if {den} * count >= {num} * len(tokens) else 0\n")
        case Toggle(group, flip):
            doc = "Toggle: the parity of a token count."
            expr = f"({_count_expr(group, alphabet)}) % 2"
            body = f"    return {expr}{' ^ 1' if flip else ''}\n"
        case MostRecent(first, second, default):
            doc = "Most recent: which token group occurred last."
            body = (f"    for token in reversed(tokens):\n"
                    f"        if token in {_names(first, alphabet)}:\n"
                    f"            return 0\n"
                    f"        if token in {_names(second, alphabet)}:\n"
                    f"            return 1\n"
                    f"    return {default}\n")
        case StateMachine(transitions, accepting):
            doc = f"State machine with {len(transitions)} states, read left to right from state s0."
            rows = []
            for s, row in enumerate(transitions):
                edges = ", ".join(f"{alphabet[t]!r}: 's{nxt}'" for t, nxt in enumerate(row))
                rows.append(f"        's{s}': {{{edges}}},\n")
            accept = "{" + ", ".join(f"'s{s}'" for s in sorted(accepting)) + "}"
            body = ("    step = {\n" + "".join(rows) + "    }\n"
                    "    state = 's0'\n"
                    "    for token in tokens:\n"
                    "        state = step[state][token]\n"
                    f"    return 1 if state in {accept} else 0\n")
        case _:
            raise TypeError(f"not a DSL program: {program!r}")
    return header + f'    """{doc}{_classes_doc(class_names)}"""\n' + body


def load(source: str):
    """Compile rendered source and return its ``program`` function (used to test the renderer)."""
    namespace: dict = {}
    exec(compile(source, "<jaxscd program>", "exec"), namespace)  # noqa: S102 - our own rendered source
    return namespace["program"]
