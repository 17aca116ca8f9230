"""DSL program values: one frozen dataclass per transformer motif.

Every program maps a token sequence (ints in ``range(n_tokens)``) to a class in {0, 1}. Programs carry no
behaviour: their meanings live in ``reference`` (oracle), ``batch`` (JAX), ``smt`` (z3) and ``source``.

Comparing two counts needs no motif of its own: count(A) >= count(B) is ``CountThreshold(A, B, 0)`` and
count(A) > count(B) is ``CountThreshold(A, B, 1)`` (A and B disjoint; shared tokens cancel out of the difference).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Union

TokenSet = frozenset  # frozenset[int] of token ids
PARAMETER_LIMIT = 1 << 20  # |every integer parameter|: the batched meaning multiplies them by lengths in int32


def _integer(owner: str, name: str, value, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int within [low, high] and within +-PARAMETER_LIMIT, or a ValueError naming the field."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{owner}.{name} must be an integer, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = "0 or 1" if (low, high) == (0, 1) else f"{low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{owner}.{name} must be {bounds}, got {value}")
    if abs(value) > PARAMETER_LIMIT:
        raise ValueError(f"{owner}.{name} must be at most {PARAMETER_LIMIT:,} in magnitude, got {value}")
    return value


def _items(value, owner: str, name: str) -> tuple:
    """The elements of a collection field (a set, list, tuple or array), or a ValueError naming the field."""
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{owner}.{name} must be a collection of integers, got {value!r}")
    return tuple(value)


def _token_set(value, owner: str = "program", name: str = "tokens") -> frozenset:
    tokens = frozenset(_integer(owner, name, t) for t in _items(value, owner, name))
    if any(t < 0 for t in tokens):
        raise ValueError(f"token ids must be non-negative, got {sorted(tokens)}")
    return tokens


def _disjoint_token_sets(program, first: str, second: str) -> None:
    """Normalise two token-set fields of a frozen program to frozensets of ids; they must not overlap."""
    owner = type(program).__name__
    a, b = _token_set(getattr(program, first), owner, first), _token_set(getattr(program, second), owner, second)
    object.__setattr__(program, first, a)
    object.__setattr__(program, second, b)
    if a & b:
        raise ValueError(f"{first} and {second} must be disjoint, both contain {sorted(a & b)}")


# --------------------------------------------------------------------------------------------------------------
# Motifs


@dataclass(frozen=True)
class Constant:
    """Always the same class."""

    value: int

    def __post_init__(self):
        object.__setattr__(self, "value", _integer("Constant", "value", self.value, 0, 1))


@dataclass(frozen=True)
class CountThreshold:
    """Class 1 iff count(plus) - count(minus) >= threshold (a signed counter read by a threshold neuron)."""

    plus: frozenset
    minus: frozenset
    threshold: int

    def __post_init__(self):
        _disjoint_token_sets(self, "plus", "minus")
        object.__setattr__(self, "threshold", _integer("CountThreshold", "threshold", self.threshold))


@dataclass(frozen=True)
class DensityThreshold:
    """Class 1 iff (count(plus) - count(minus)) / len >= num / den (a counter averaged by uniform attention)."""

    plus: frozenset
    minus: frozenset
    num: int
    den: int

    def __post_init__(self):
        _disjoint_token_sets(self, "plus", "minus")
        object.__setattr__(self, "num", _integer("DensityThreshold", "num", self.num))
        object.__setattr__(self, "den", _integer("DensityThreshold", "den", self.den))
        if self.den <= 0 or math.gcd(self.num, self.den) != 1:
            raise ValueError(f"threshold must be a reduced fraction with den > 0, got {self.num}/{self.den}")


@dataclass(frozen=True)
class Toggle:
    """Class = parity of count(tokens), flipped when ``flip`` is 1 (a toggle / XOR feature)."""

    tokens: frozenset
    flip: int

    def __post_init__(self):
        object.__setattr__(self, "tokens", _token_set(self.tokens, "Toggle"))
        object.__setattr__(self, "flip", _integer("Toggle", "flip", self.flip, 0, 1))


@dataclass(frozen=True)
class MostRecent:
    """Class 0 if the last token from first|second is in ``first``, 1 if in ``second``; ``default`` if none."""

    first: frozenset
    second: frozenset
    default: int

    def __post_init__(self):
        _disjoint_token_sets(self, "first", "second")
        object.__setattr__(self, "default", _integer("MostRecent", "default", self.default, 0, 1))


@dataclass(frozen=True)
class StateMachine:
    """A DFA read left to right from state 0: class 1 iff the final state is accepting.

    ``transitions[state][token]`` is the next state.
    """

    transitions: tuple
    accepting: frozenset

    def __post_init__(self):
        table = tuple(tuple(_integer("StateMachine", "transitions", s) for s in _items(row, "StateMachine",
                      "transitions")) for row in _items(self.transitions, "StateMachine", "transitions"))
        object.__setattr__(self, "transitions", table)
        object.__setattr__(self, "accepting", _token_set(self.accepting, "StateMachine", "accepting"))
        n = len(table)
        if n == 0 or len({len(row) for row in table}) != 1:
            raise ValueError(f"transitions must be a non-empty rectangular table, got {table!r}")
        bad = sorted({s for row in table for s in row if not 0 <= s < n} | {s for s in self.accepting if not 0 <= s < n})
        if bad:
            raise ValueError(f"state ids must lie in 0..{n - 1}, got {bad}")

    @property
    def n_states(self) -> int:
        return len(self.transitions)


@dataclass(frozen=True)
class TokenAt:
    """Class 1 iff the token at ``position`` is in ``tokens``; class 0 if the sequence is too short.

    Positions count from 0 at the start, or from 0 at the last token when ``from_end`` (a positional head).
    """

    position: int
    tokens: frozenset
    from_end: bool

    def __post_init__(self):
        object.__setattr__(self, "position", _integer("TokenAt", "position", self.position, low=0))
        object.__setattr__(self, "tokens", _token_set(self.tokens, "TokenAt"))
        if isinstance(self.from_end, float) or self.from_end not in (0, 1):
            raise ValueError(f"TokenAt.from_end must be True or False, got {self.from_end!r}")
        object.__setattr__(self, "from_end", bool(self.from_end))


@dataclass(frozen=True)
class LengthThreshold:
    """Class 1 iff the sequence has at least ``threshold`` tokens (a position signal read by a threshold)."""

    threshold: int

    def __post_init__(self):
        object.__setattr__(self, "threshold", _integer("LengthThreshold", "threshold", self.threshold, low=1))


@dataclass(frozen=True)
class FirstOccurrence:
    """Class 0 if the first token from first|second is in ``first``, 1 if in ``second``; ``default`` if none."""

    first: frozenset
    second: frozenset
    default: int

    def __post_init__(self):
        _disjoint_token_sets(self, "first", "second")
        object.__setattr__(self, "default", _integer("FirstOccurrence", "default", self.default, 0, 1))


@dataclass(frozen=True)
class WindowCount:
    """Class 1 iff at least ``threshold`` of the last ``window`` tokens are in ``tokens`` (all of them when the
    sequence is shorter than the window): a counter over a local attention window."""

    tokens: frozenset
    window: int
    threshold: int

    def __post_init__(self):
        object.__setattr__(self, "tokens", _token_set(self.tokens, "WindowCount"))
        object.__setattr__(self, "window", _integer("WindowCount", "window", self.window, low=1))
        object.__setattr__(self, "threshold", _integer("WindowCount", "threshold", self.threshold, low=1,
                                                       high=self.window))


@dataclass(frozen=True)
class SaturatedDepth:
    """Nesting depth read left to right, clamped to 0..cap: +1 on ``open``, -1 on ``close``, other tokens keep
    it. Class 1 iff the final depth is at least ``threshold`` (a bounded stack, i.e. a (cap + 1)-state counter)."""

    open: frozenset
    close: frozenset
    cap: int
    threshold: int

    def __post_init__(self):
        _disjoint_token_sets(self, "open", "close")
        object.__setattr__(self, "cap", _integer("SaturatedDepth", "cap", self.cap, low=1))
        object.__setattr__(self, "threshold", _integer("SaturatedDepth", "threshold", self.threshold, low=1,
                                                       high=self.cap))


BASE_MOTIFS = (Constant, CountThreshold, DensityThreshold, Toggle, MostRecent, StateMachine, TokenAt, LengthThreshold,
               FirstOccurrence, WindowCount, SaturatedDepth)
COMPOSITION_OPS = ("and", "or", "xor")


@dataclass(frozen=True)
class Both:
    """Boolean composition ``left op right`` of two base motifs, op in {"and", "or", "xor"} (no nesting)."""

    left: "Program"
    right: "Program"
    op: str

    def __post_init__(self):
        for name in ("left", "right"):
            part = getattr(self, name)
            if isinstance(part, Both):
                raise ValueError(f"Both.{name} must be a base motif, not another composition (depth <= 2), got "
                                 f"{part!r}")
            if not isinstance(part, BASE_MOTIFS):
                raise TypeError(f"Both.{name} is not a DSL program: {part!r}")
        if self.op not in COMPOSITION_OPS:
            raise ValueError(f"Both.op must be one of {list(COMPOSITION_OPS)}, got {self.op!r}")


Program = Union[Constant, CountThreshold, DensityThreshold, Toggle, MostRecent, StateMachine, TokenAt,
                LengthThreshold, FirstOccurrence, WindowCount, SaturatedDepth, Both]
MOTIFS = BASE_MOTIFS + (Both,)


# --------------------------------------------------------------------------------------------------------------
# Checks and description length


def check_program(program: Program, n_tokens: int) -> None:
    """Raise ValueError when ``program`` mentions a token outside ``range(n_tokens)``."""
    if not isinstance(program, MOTIFS):
        raise TypeError(f"not a DSL program: {program!r}")
    if isinstance(program, Both):
        check_program(program.left, n_tokens)
        check_program(program.right, n_tokens)
        return
    used: set = set()
    for field in ("plus", "minus", "tokens", "first", "second", "open", "close"):
        used |= set(getattr(program, field, ()))
    if isinstance(program, StateMachine) and len(program.transitions[0]) != n_tokens:
        raise ValueError(f"StateMachine has {len(program.transitions[0])} token columns, alphabet has {n_tokens}")
    bad = sorted(t for t in used if t >= n_tokens)
    if bad:
        raise ValueError(f"program uses token ids {bad} outside an alphabet of {n_tokens} tokens")


def _bits(value: int) -> float:
    return math.log2(abs(value) + 1)


def description_length(program: Program) -> float:
    """MDL cost used to rank exact programs: fewer parameters, smaller constants, fewer states first."""
    match program:
        case Constant():
            return 1.0
        case CountThreshold(plus, minus, threshold):
            return 2 + len(plus) + len(minus) + _bits(threshold)
        case DensityThreshold(plus, minus, num, den):
            return 3 + len(plus) + len(minus) + _bits(num) + _bits(den)
        case Toggle(tokens, _):
            return 2 + len(tokens)
        case MostRecent(first, second, _):
            return 3 + len(first) + len(second)
        case StateMachine(transitions, accepting):
            n = len(transitions)
            return 4 + len(transitions[0]) * n * math.log2(n + 1) + len(accepting)
        case TokenAt(position, tokens, _):
            return 3 + len(tokens) + _bits(position)
        case LengthThreshold(threshold):
            return 2 + _bits(threshold)
        case FirstOccurrence(first, second, _):
            return 3 + len(first) + len(second)
        case WindowCount(tokens, window, threshold):
            return 3 + len(tokens) + _bits(window) + _bits(threshold)
        case SaturatedDepth(open_, close, cap, threshold):
            return 3 + len(open_) + len(close) + _bits(cap) + _bits(threshold)
        case Both(left, right, _):
            return 1 + description_length(left) + description_length(right)
    raise TypeError(f"not a DSL program: {program!r}")


# --------------------------------------------------------------------------------------------------------------
# JSON form (certificates store programs and preconditions this way)


def to_json(program: Program) -> dict:
    """A JSON-able dict that ``from_json`` turns back into an equal program."""
    if not isinstance(program, MOTIFS):
        raise TypeError(f"not a DSL program: {program!r}")
    out = {"motif": type(program).__name__}
    for name in program.__dataclass_fields__:
        value = getattr(program, name)
        if isinstance(value, frozenset):
            value = sorted(value)
        elif isinstance(value, MOTIFS):  # the parts of a composition
            value = to_json(value)
        elif name == "transitions":
            value = [list(row) for row in value]
        out[name] = value
    return out


def from_json(data: dict) -> Program:
    motifs = {cls.__name__: cls for cls in MOTIFS}
    if not isinstance(data, dict) or data.get("motif") not in motifs:
        raise ValueError(f"not a program: expected {{'motif': one of {sorted(motifs)}, ...}}, got {data!r}")
    cls = motifs[data["motif"]]
    fields = set(cls.__dataclass_fields__)
    if set(data) - {"motif"} != fields:
        raise ValueError(f"{cls.__name__} needs fields {sorted(fields)}, got {sorted(set(data) - {'motif'})}")
    if cls is Both:
        return Both(from_json(data["left"]), from_json(data["right"]), data["op"])
    return cls(**{name: data[name] for name in fields})


def rank_key(program: Program) -> tuple:
    """Simplest first: description length, then motif order (earlier motifs read more directly as attention
    and MLP mechanisms), then the text of the program, so ties are broken the same way every run."""
    return description_length(program), MOTIFS.index(type(program)), repr(program)
