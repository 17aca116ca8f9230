"""Purity check: a circuit's decision on an input must not depend on the rest of its batch, on the row the input
sits in, on earlier calls, or on the token dtype.

The truth table is computed one length at a time, with all sequences of a length in one batch of int32 tokens.
A circuit that normalises by a batch statistic, branches on the batch size or the row index, keeps state between
calls, or overflows in int32 gives a table that is not the function of single inputs a certificate claims. After
the table is built, a seeded sample of valid inputs (every length represented) is re-run one at a time with int64
tokens, and the first batch of every length is re-run with its rows shuffled; any decision that changes, or any
logit gap that moves by more than the float error bound, is refused (``CircuitError``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from jaxscd.circuits.base import CircuitError
from jaxscd.domain import Domain
from jaxscd.kernels.enumerate import decode_indices

SAMPLE_SIZE = 256  # inputs re-run one at a time (at least one per length), seeded
SEED = 20240514

# run(tokens int[B, L]) -> (decisions int8[B], margins float64[B], float error bound), raising CircuitError
Run = Callable[[np.ndarray], tuple]

BATCH_FIX = ("make the function compute each row from that row alone (no batch statistics, row indices, batch size "
             "or state kept between calls)")
DTYPE_FIX = "tokens arrive as int32: compute in a dtype that does not overflow (e.g. tokens.astype(np.int64))"


def check_purity(run: Run, name: str, domain: Domain, decisions: np.ndarray, margins: np.ndarray,
                 valid: np.ndarray, bound: float, chunk_size: int) -> None:
    """Raise CircuitError when ``run`` disagrees with the table (``decisions``, ``margins``, ``bound``) on a
    sample of inputs run alone (int64) or in a shuffled batch (int32)."""
    rng = np.random.default_rng(SEED)
    quota = -(-SAMPLE_SIZE // len(domain.lengths))
    starts = domain.starts
    for slot, length in enumerate(domain.lengths):
        begin, end = int(starts[slot]), int(starts[slot + 1])
        first_batch = np.arange(begin, min(end, begin + chunk_size))
        rows = np.flatnonzero(valid[begin:end]) + begin
        if rows.size == 0:
            continue
        sample = rng.choice(rows, size=min(quota, rows.size), replace=False)
        table = _Table(run, name, domain, length, decisions, margins, bound, len(first_batch))
        for index in sample:
            table.check_alone(int(index))
        table.check_shuffled(first_batch, valid[first_batch], rng)


class _Table:
    """The table's answers for one length, and the comparisons against fresh runs."""

    def __init__(self, run, name, domain, length, decisions, margins, bound, batch_size):
        self.run, self.name, self.domain, self.length = run, name, domain, length
        self.decisions, self.margins, self.bound, self.batch_size = decisions, margins, bound, batch_size

    def tokens(self, indices, dtype=np.int32) -> np.ndarray:
        return np.asarray(decode_indices(self.domain, np.asarray(indices))[0])[:, :self.length].astype(dtype)

    def differs(self, index: int, decision, margin, bound) -> bool:
        """Decisions differ where the table trusted its margin, or the logit gaps differ by more than the bound."""
        tolerance = max(self.bound, bound)
        if decision != self.decisions[index]:
            return self.margins[index] > tolerance or margin > tolerance
        gap = margin if decision else -margin
        table_gap = self.margins[index] if decision else -self.margins[index]
        return bool(np.isfinite(gap) and np.isfinite(table_gap) and abs(gap - table_gap) > tolerance)

    def check_alone(self, index: int) -> None:
        alone = self.run(self.tokens([index], np.int64))
        if not self.differs(index, alone[0][0], alone[1][0], alone[2]):
            return
        alone32 = self.run(self.tokens([index]))
        if self.differs(index, alone32[0][0], alone32[1][0], alone32[2]):
            self.refuse(index, f"{self.table_answer(index)} in a batch of {self.batch_size} and "
                               f"{_answer(alone32[0][0], alone32[1][0])} alone", BATCH_FIX)
        self.refuse(index, f"{_answer(alone32[0][0], alone32[1][0])} with int32 tokens and "
                           f"{_answer(alone[0][0], alone[1][0])} with int64 tokens", DTYPE_FIX)

    def check_shuffled(self, batch: np.ndarray, valid: np.ndarray, rng: np.random.Generator) -> None:
        order = rng.permutation(len(batch))
        if len(batch) > 1 and (order == np.arange(len(batch))).all():
            order = np.roll(order, 1)  # never the table's own order
        dec, margin, bound = self.run(self.tokens(batch[order]))
        for row, index in enumerate(batch[order]):
            if valid[order[row]] and self.differs(int(index), dec[row], margin[row], bound):
                self.refuse(int(index), f"{self.table_answer(index)} at row {order[row]} and "
                                        f"{_answer(dec[row], margin[row])} at row {row} of the same batch of "
                                        f"{len(batch)} shuffled", BATCH_FIX)

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
