"""Readable Python source for a program: standard library only, defining ``program(tokens)``.

``tokens`` is a sequence of token *names*; the function returns the predicted class index.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def _names(group: frozenset, alphabet: Sequence[str]) -> str:
    if not group:
        return "set()"  # "{}" would read as an empty dict
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
    return _function("program", program, alphabet, class_names)


def _indent(source: str) -> str:
    return "".join("    " + line if line.strip() else line for line in source.splitlines(keepends=True))


def _function(name: str, program: Program, alphabet: Sequence[str], class_names: Sequence[str] | None) -> str:
    header = f"def {name}(tokens):\n"
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
        case MostRecent(first, second, default) | FirstOccurrence(first, second, default):
            recent = isinstance(program, MostRecent)
            doc = "Most recent: which token group occurred last." if recent else \
                "First occurrence: which token group occurred first."
            body = (f"    for token in {'reversed(tokens)' if recent else 'tokens'}:\n"
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
        case TokenAt(position, group, from_end):
            where = "from the end" if from_end else "from the start"
            doc = f"Token at position {position} {where} (0-based): is it one of a token group?"
            index = f"-{position + 1}" if from_end else f"{position}"
            body = (f"    if len(tokens) <= {position}:\n"
                    f"        return 0  # too short\n"
                    f"    return 1 if tokens[{index}] in {_names(group, alphabet)} else 0\n")
        case LengthThreshold(threshold):
            doc = "Length threshold: long enough sequences."
            body = f"    return 1 if len(tokens) >= {threshold} else 0\n"
        case WindowCount(group, window, threshold):
            doc = f"Window count: how many of the last {window} tokens belong to a token group."
            body = (f"    recent = tokens[-{window}:]\n"
                    f"    count = sum(t in {_names(group, alphabet)} for t in recent)\n"
                    f"    return 1 if count >= {threshold} else 0\n")
        case SaturatedDepth(open_, close, cap, threshold):
            doc = f"Saturated depth: nesting depth kept within 0..{cap}, compared with {threshold}."
            body = ("    depth = 0\n"
                    "    for token in tokens:\n"
                    f"        if token in {_names(open_, alphabet)}:\n"
                    f"            depth = min(depth + 1, {cap})\n"
                    f"        elif token in {_names(close, alphabet)}:\n"
                    "            depth = max(depth - 1, 0)\n"
                    f"    return 1 if depth >= {threshold} else 0\n")
        case Both(left, right, op):
            doc = f"Composition: the {op} of two motifs."
            symbol = {"and": "&", "or": "|", "xor": "^"}[op]
            parts = _function("left", left, alphabet, None) + _function("right", right, alphabet, None)
            body = _indent(parts) + f"    return left(tokens) {symbol} right(tokens)\n"
        case _:
            raise TypeError(f"not a DSL program: {program!r}")
    return header + f"    {_docstring(doc + _classes_doc(class_names))}\n" + body


def _docstring(text: str) -> str:
    """A triple-quoted literal whose value is ``text``, whatever names it holds (quotes, backslashes)."""
    return '"""' + text.replace("\\", "\\\\").replace('"', '\\"') + '"""'


def load(source: str):
    """Compile rendered source and return its ``program`` function (used to test the renderer)."""
    namespace: dict = {}
    exec(compile(source, "<jaxscd program>", "exec"), namespace)  # noqa: S102 - our own rendered source
    return namespace["program"]
