"""Bounded input domains: every sequence of length min_len..max_len over an alphabet, optionally filtered.

Sequences are numbered by length, then lexicographically (token id 0 first). ``jaxscd.kernels.enumerate``
turns indices into padded token arrays; this module only holds the description and the bookkeeping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from jaxscd.dsl.programs import Program, check_program
from jaxscd.errors import InputError

MAX_DOMAIN_SIZE = 1 << 26  # exhaustive passes above this take too long for interactive use
MAX_TOKENS = 12  # candidate grids grow as 3**tokens (signed counters); more tokens need a coarser DSL grid
MAX_LENGTH = 2048  # longer sequences pass every circuit's positions here (graphs: 1,024), and 12**2048 still prints


class DomainError(InputError):
    """A domain description that cannot be used (bad alphabet, lengths, or too large)."""


def approximate(count: int) -> str:
    """``f"{count:.3g}"`` for any size of count (formatting as a float stops near 1.8e308: 4 tokens at length 600)."""
    if count < 10**300:
        return f"{count:.3g}"
    exponent = int(math.log10(count))
    return f"{10 ** (math.log10(count) - exponent):.3g}e+{exponent}"


def _short(number) -> str:
    """An integer from the user for messages, cut when it has hundreds of digits."""
    if not isinstance(number, int) or number < 10**40:
        return str(number)
    return f"(a {int(number.bit_length() * math.log10(2)) + 1}-digit number)"  # str() stops at 4300 digits


@dataclass(frozen=True)
class Domain:
    alphabet: tuple
    min_len: int
    max_len: int
    precondition: Program | None = None  # class 1 = the sequence belongs to the domain
    precondition_text: str = field(default="", compare=False)
    exhaustive: bool = field(default=True, compare=False)  # False: proved by bounds (jaxscd.long_context), no size cap

    def __post_init__(self):
        object.__setattr__(self, "alphabet", tuple(str(a) for a in self.alphabet))
        if len(self.alphabet) < 2:
            raise DomainError(f"alphabet needs at least 2 tokens, got {list(self.alphabet)}; pass e.g. --alphabet a,b,c")
        if len(self.alphabet) > MAX_TOKENS:
            raise DomainError(f"alphabet has {len(self.alphabet)} tokens, at most {MAX_TOKENS} are supported; map "
                              f"the tokens the circuit does not tell apart to one name")
        if len(set(self.alphabet)) != len(self.alphabet):
            raise DomainError(f"alphabet has repeated tokens: {list(self.alphabet)}; list each token once")
        if not 1 <= self.min_len <= self.max_len:
            raise DomainError(f"lengths must satisfy 1 <= min_len <= max_len, got min_len={_short(self.min_len)}, "
                              f"max_len={_short(self.max_len)}; fix --min-len/--max-len")
        if self.max_len > MAX_LENGTH:  # before the size: a sum of n_tokens**length over 10**400 lengths never ends
            raise DomainError(f"max_len {_short(self.max_len)} is above the longest length jaxscd handles, "
                              f"{MAX_LENGTH:,}; lower --max-len")
        if self.exhaustive and self.size > MAX_DOMAIN_SIZE:
            size = f"{self.size:,}" if self.size < 10**30 else approximate(self.size)
            raise DomainError(f"domain has {size} sequences ({self.n_tokens} tokens, lengths "
                              f"{self.min_len}..{self.max_len}), above the exhaustive limit {MAX_DOMAIN_SIZE:,}; "
                              f"lower --max-len or use fewer tokens")
        if self.precondition is not None:
            check_program(self.precondition, self.n_tokens)

    @property
    def n_tokens(self) -> int:
        return len(self.alphabet)

    @property
    def lengths(self) -> range:
        return range(self.min_len, self.max_len + 1)

    @property
    def starts(self) -> np.ndarray:
        """int64 [n_lengths + 1]: index of the first sequence of each length, then the size."""
        counts = [self.n_tokens**length for length in self.lengths]
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    @property
    def size(self) -> int:
        """Number of sequences before the precondition filters them."""
        return sum(self.n_tokens**length for length in self.lengths)

    def decode(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """Domain indices -> (tokens int32[N, max_len] padded with -1 (``dsl.batch.PAD``), lengths int32[N]), in
        numpy; sequences are numbered by length, then lexicographically (``kernels.enumerate.decode`` in JAX)."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        starts = self.starts
        slot = np.searchsorted(starts, indices, side="right") - 1
        lengths = (self.min_len + slot).astype(np.int32)
        local = indices - starts[slot]
        positions = np.arange(self.max_len, dtype=np.int32)
        exponent = np.maximum(lengths[:, None] - 1 - positions[None, :], 0).astype(np.int64)
        digits = (local[:, None] // np.int64(self.n_tokens) ** exponent) % self.n_tokens
        tokens = np.where(positions[None, :] < lengths[:, None], digits, -1).astype(np.int32)
        return tokens, lengths

    def index_of(self, tokens: Sequence[int]) -> int:
        """Inverse of decoding: the domain index of one token-id sequence."""
        if not self.min_len <= len(tokens) <= self.max_len:
            raise DomainError(f"sequence length {len(tokens)} outside {self.min_len}..{self.max_len}")
        local = 0
        for t in tokens:
            local = local * self.n_tokens + int(t)
        return int(self.starts[len(tokens) - self.min_len]) + local

    def ids(self, names: Sequence[str]) -> list[int]:
        """Token ids for a sequence of token names."""
        lookup = {name: i for i, name in enumerate(self.alphabet)}
        unknown = [n for n in names if n not in lookup]
        if unknown:
            raise DomainError(f"unknown tokens {unknown}; the alphabet is {list(self.alphabet)}")
        return [lookup[n] for n in names]

    def names(self, ids: Sequence[int]) -> list[str]:
        return [self.alphabet[int(i)] for i in ids]

    def format(self, ids: Sequence[int]) -> str:
        """A readable token string: names joined without spaces when every name is one character."""
        names = self.names(ids)
        sep = "" if all(len(n) == 1 for n in self.alphabet) else " "
        return sep.join(names)

    def describe(self) -> dict:
        return {"alphabet": list(self.alphabet), "min_len": self.min_len, "max_len": self.max_len,
                "size": self.size, "precondition": self.precondition_text or None}
