"""Purity check: a circuit's decision on an input must not depend on the rest of its batch, on the row the input
sits in, on the batch size, on earlier calls, or on the token dtype; and the evidence gathered for it.

What it can and cannot do. A circuit given as Python is code the user trusts: no re-running can catch code written
to detect the re-runs. The check catches accidents (batch statistics, caches and global state, branches on the
batch size or the row, int32 overflow) and makes deliberate evasion expensive: its seed is fresh on every run (and
``jaxscd verify`` draws its own), its batch sizes include 1 and odd primes, and on the domains where it costs little
every input is re-run. What it did is returned as a ``PurityEvidence`` and written into the certificate.

The truth table is computed one length at a time (int32 tokens, chunks of up to ``chunk_size``). Then, per length:

1. **alone**: every valid input (domains of at most ALONE_ALL valid inputs), else a random sample (SAMPLE_SIZE
   spread over the lengths), re-run in a batch of one with int64 tokens;
2. **ladder**: a random sample of LADDER_SAMPLE inputs re-run in a fresh order in batches of each ``ladder`` size
   (small odd primes; the caller passes none for circuits jaxscd itself runs jitted, its row-wise interpreters of
   weights, where each new batch shape costs a compilation);
3. **re-batched**: every valid input (domains of at most REBATCH_ALL valid inputs), else a random sample
   (REBATCH_SAMPLE spread over the lengths), re-run in a fresh random order in batches of an odd prime size
   (``batch_size_for``), the last batch filled by wrapping around so that each length adds one batch shape.

Any decision that changes where the table trusted its margin, or any logit gap that moves by more than the float
error bound, is refused (``CircuitError``). Thresholds measured on 2 shared CPU cores: an input alone costs about
0.1 ms with a jitted one-layer reference circuit (30 us with a numpy callable), so 20,000 inputs alone cost about
2 s; the second batching costs about what the table did (quote_close at lengths 1..10, 1.4M inputs: +0.5 s on a
1.8 s table). Every decode has one shape, so the check compiles about two batch shapes per length (alone, the
second batching) plus the ladder's for circuits that are not jitted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from jaxscd.circuits.base import CircuitError
from jaxscd.domain import Domain

ALONE_ALL = 20_000  # valid inputs up to which every input is re-run alone
SAMPLE_SIZE = 256  # inputs re-run alone above that (at least one per length)
LADDER = (3, 7, 13, 31)  # batch sizes the ladder sample is re-run in
LADDER_SAMPLE = 64  # inputs per length re-run in each ladder size
REBATCH_ALL = 2_000_000  # valid inputs up to which every input is re-run in a second batching
REBATCH_SAMPLE = 1 << 16  # inputs re-batched above that (spread over the lengths)
PRIMES = (3, 7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093, 8191)  # batch sizes of the re-batched pass
CALLS_PER_LENGTH = 64  # the re-batched pass takes the smallest prime that needs at most this many calls per length
DECODE_ROWS = 1 << 14  # rows decoded and run at once

# run(tokens int[B, L]) -> (decisions int8[B], margins float64[B], float error bound), raising CircuitError
Run = Callable[[np.ndarray], tuple]

BATCH_FIX = ("make the function compute each row from that row alone (no batch statistics, row indices, batch size "
             "or state kept between calls)")
DTYPE_FIX = "tokens arrive as int32: compute in a dtype that does not overflow (e.g. tokens.astype(np.int64))"


@dataclass(frozen=True)
class PurityEvidence:
    """What one purity check re-ran: ``seed`` (128 bits, fresh per run), the table's valid ``inputs``, how many
    were re-run ``alone`` (int64 tokens), in the ``ladder`` sample, and ``rebatched`` in a second batching, and
    every ``batch_sizes`` the re-runs used."""

    seed: int
    inputs: int
    alone: int
    ladder: int
    rebatched: int
    batch_sizes: tuple

    @property
    def every_input_alone(self) -> bool:
        return self.alone >= self.inputs > 0

    @property
    def every_input_rebatched(self) -> bool:
        return self.rebatched >= self.inputs > 0

    def to_json(self) -> dict:
        return {"seed": f"{self.seed:032x}", "inputs": self.inputs, "alone": self.alone, "ladder": self.ladder,
                "rebatched": self.rebatched, "batch_sizes": list(self.batch_sizes),
                "every_input_alone": self.every_input_alone, "every_input_rebatched": self.every_input_rebatched}

    @classmethod
    def from_json(cls, data) -> PurityEvidence | None:
        """The evidence a certificate records; None when it records none or something else (it is informational:
        ``jaxscd verify`` re-runs the check rather than trusting it)."""
        counts = ("inputs", "alone", "ladder", "rebatched")
        if not isinstance(data, dict) or not all(type(data.get(k)) is int and data[k] >= 0 for k in counts):
            return None
        sizes, seed = data.get("batch_sizes"), data.get("seed")
        if not isinstance(sizes, list) or not all(type(s) is int for s in sizes) or not isinstance(seed, str):
            return None
        try:
            return cls(int(seed, 16), *(data[k] for k in counts), tuple(sizes))
        except ValueError:
            return None

    def summary(self) -> str:
        """One line: 'seed 5f0c2e91…; alone (int64): every one of 4,059 inputs; ...'."""
        def share(count: int) -> str:
            return f"every one of {self.inputs:,} inputs" if count >= self.inputs else \
                f"{count:,} of {self.inputs:,} inputs"

        ladder = f"; a sample of {self.ladder:,} in small odd batches" if self.ladder else ""
        return (f"seed {self.seed:032x}"[:13] + f"…; alone (int64): {share(self.alone)}; in a second shuffled "
                f"batching: {share(self.rebatched)}{ladder}; batch sizes {', '.join(map(str, self.batch_sizes))}")


def fresh_seed() -> int:
    """128 bits of operating-system entropy (``np.random.SeedSequence``), never the same seed twice."""
    return int(np.random.SeedSequence().entropy)


def batch_size_for(count: int) -> int:
    """The odd prime batch size of the re-batched pass for ``count`` inputs of one length: the smallest of PRIMES
    that needs at most CALLS_PER_LENGTH calls (the largest beyond that)."""
    return next((p for p in PRIMES if -(-count // p) <= CALLS_PER_LENGTH), PRIMES[-1])


def check_purity(run: Run, name: str, domain: Domain, decisions: np.ndarray, margins: np.ndarray,
                 valid: np.ndarray, bound: float, chunk_size: int, ladder: tuple = LADDER,
                 seed: int | None = None) -> PurityEvidence:
    """Raise CircuitError when ``run`` disagrees with the table (``decisions``, ``margins``, ``bound``) on an input
    re-run alone (int64), in the ladder or in the second batching (int32); else the evidence gathered. ``seed``:
    fresh when not given (the same in every process of a distributed run)."""
    seed = fresh_seed() if seed is None else seed
    rng = np.random.default_rng(seed)
    n_valid = int(valid.sum())
    alone_quota = n_valid if n_valid <= ALONE_ALL else -(-SAMPLE_SIZE // len(domain.lengths))
    rebatch_quota = n_valid if n_valid <= REBATCH_ALL else -(-REBATCH_SAMPLE // len(domain.lengths))
    counts, sizes, starts = {"alone": 0, "ladder": 0, "rebatched": 0}, set(), domain.starts
    for slot, length in enumerate(domain.lengths):
        begin, end = int(starts[slot]), int(starts[slot + 1])
        rows = np.flatnonzero(valid[begin:end]) + begin
        if rows.size == 0:
            continue
        table = _Table(run, name, domain, length, decisions, margins, bound, min(end - begin, chunk_size))
        counts["alone"] += table.check_alone(_sample(rng, rows, alone_quota))
        sizes.add(1)
        sample = _sample(rng, rows, LADDER_SAMPLE) if ladder else rows[:0]
        for size in ladder:  # the same sample, in a fresh order for each size
            table.check_batches(sample, size, rng)
        counts["ladder"] += len(sample)
        sizes.update(ladder)
        members = _sample(rng, rows, rebatch_quota)
        size = batch_size_for(len(members))
        counts["rebatched"] += table.check_batches(members, size, rng)
        sizes.add(size)
    return PurityEvidence(seed, n_valid, counts["alone"], counts["ladder"], counts["rebatched"], tuple(sorted(sizes)))


def _sample(rng: np.random.Generator, rows: np.ndarray, quota: int) -> np.ndarray:
    return rows if quota >= len(rows) else np.sort(rng.choice(rows, size=quota, replace=False))


class _Table:
    """The table's answers for one length, and the comparisons against fresh runs."""

    def __init__(self, run, name, domain, length, decisions, margins, bound, batch_size):
        self.run, self.name, self.domain, self.length = run, name, domain, length
        self.decisions, self.margins, self.bound, self.batch_size = decisions, margins, bound, batch_size

    def tokens(self, indices, dtype=np.int32) -> np.ndarray:
        """Token rows of ``indices`` (decoded in numpy, DECODE_ROWS at a time)."""
        indices = np.asarray(indices, dtype=np.int64)
        blocks = [self.domain.decode(indices[first:first + DECODE_ROWS])[0][:, :self.length]
                  for first in range(0, len(indices), DECODE_ROWS)]
        return np.concatenate(blocks).astype(dtype)

    def differs(self, indices, decision, margin, bound) -> np.ndarray:
        """Per row: the decisions differ where the table trusted its margin, or the logit gaps differ by more than
        the bound (``bound``: one for the batch, or one per row)."""
        tolerance = np.maximum(self.bound, bound)
        table_decision, table_margin = self.decisions[indices], self.margins[indices]
        trusted = (table_margin > tolerance) | (margin > tolerance)
        gap, table_gap = np.where(decision == 1, margin, -margin), np.where(decision == 1, table_margin, -table_margin)
        with np.errstate(invalid="ignore"):
            moved = np.isfinite(gap) & np.isfinite(table_gap) & (np.abs(gap - table_gap) > tolerance)
        return np.where(decision != table_decision, trusted, moved)

    def check_alone(self, indices: np.ndarray) -> int:
        """Each input in a batch of one, int64 tokens (int32 too where that differs, to name the cause)."""
        for first in range(0, len(indices), DECODE_ROWS):
            block = indices[first:first + DECODE_ROWS]
            wide = self.tokens(block, np.int64)
            runs = [self.run(wide[row:row + 1]) for row in range(len(block))]
            decision = np.array([alone[0][0] for alone in runs])
            margin = np.array([alone[1][0] for alone in runs], dtype=np.float64)
            bound = np.array([alone[2] for alone in runs], dtype=np.float64)
            for row in np.flatnonzero(self.differs(block, decision, margin, bound)):
                self.refuse_alone(int(block[row]), runs[row])
        return len(indices)

    def refuse_alone(self, index: int, alone) -> None:
        alone32 = self.run(self.tokens([index]))
        if self.differs([index], alone32[0][:1], alone32[1][:1], alone32[2])[0]:
            self.refuse(index, f"{self.table_answer(index)} in a batch of {self.batch_size} and "
                               f"{_answer(alone32[0][0], alone32[1][0])} alone", BATCH_FIX)
        self.refuse(index, f"{_answer(alone32[0][0], alone32[1][0])} with int32 tokens and "
                           f"{_answer(alone[0][0], alone[1][0])} with int64 tokens", DTYPE_FIX)

    def check_batches(self, indices: np.ndarray, size: int, rng: np.random.Generator) -> int:
        """``indices`` in a fresh random order (never the table's), in batches of ``size``, the last one filled by
        wrapping around (one shape)."""
        order = rng.permutation(indices)
        if len(order) > 1 and (np.diff(order) > 0).all():
            order = np.roll(order, 1)
        filled = np.resize(order, -(-len(order) // size) * size)
        step = size * max(1, DECODE_ROWS // size)
        for first in range(0, len(filled), step):
            block = filled[first:first + step]
            tokens = self.tokens(block)
            for start in range(0, len(block), size):
                batch = block[start:start + size]
                decision, margin, bound = self.run(tokens[start:start + size])
                wrong = np.flatnonzero(self.differs(batch, decision, margin, bound))
                if wrong.size:
                    row = int(wrong[0])
                    self.refuse(int(batch[row]), f"{self.table_answer(int(batch[row]))} in a batch of "
                                                 f"{self.batch_size} and {_answer(decision[row], margin[row])} at row "
                                                 f"{row} of a shuffled batch of {size}", BATCH_FIX)
        return len(indices)

    def table_answer(self, index: int) -> str:
        return _answer(self.decisions[index], self.margins[index])

    def refuse(self, index: int, what: str, fix: str):
        raise CircuitError(f"circuit {self.name!r} is not a function of its input: input "
                           f"{self.domain.format(self.tokens([index])[0])!r} gave {what}; {fix}")


def _answer(decision, margin) -> str:
    """'class 1', with the signed logit gap when the circuit returns logits."""
    if not np.isfinite(margin):
        return f"class {int(decision)}"
    return f"class {int(decision)} (logit gap {margin if decision else -margin:+.6g})"
