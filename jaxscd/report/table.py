"""Truth-table summaries small enough to draw: decisions counted by (length, signed token count) and by (position
from the end, token), streamed over the domain chunk by chunk (nothing of size |domain| x max_len is kept)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jaxscd.domain import Domain
from jaxscd.dsl.programs import CountThreshold
from jaxscd.kernels.enumerate import chunks


@dataclass(frozen=True)
class Statistic:
    """count(plus) - count(minus): the summarising axis of the truth-table pictures."""

    plus: tuple
    minus: tuple
    label: str


@dataclass
class TableSummary:
    """Counts over the valid inputs. Grids are [length, statistic value]; position grids [position from end, token]."""

    domain: Domain
    statistic: Statistic
    values: np.ndarray  # statistic values, the grids' columns
    total: np.ndarray  # valid inputs per cell
    ones: np.ndarray  # of which the decision is class 1
    departs: np.ndarray | None  # of which the decision differs from the intended one (None: no spec)
    position_total: np.ndarray
    position_ones: np.ndarray

    @property
    def lengths(self) -> list:
        return list(self.domain.lengths)


def choose_statistic(domain: Domain, *programs) -> Statistic:
    """The signed count the first counting program reads (the spec's, then the certified one's), else the first
    token minus the second: for bracket depth, #'[' - #']' is the depth."""
    for program in programs:
        if isinstance(program, CountThreshold):
            plus, minus = tuple(sorted(program.plus)), tuple(sorted(program.minus))
            break
    else:
        plus, minus = (0,), (1,)
    names = domain.alphabet
    label = " + ".join(f"#{names[t]}" for t in plus) + "".join(f" − #{names[t]}" for t in minus)
    return Statistic(plus, minus, label)


def summarise(domain: Domain, decisions: np.ndarray, valid: np.ndarray, statistic: Statistic,
              intended: np.ndarray | None = None, chunk_size: int = 1 << 14) -> TableSummary:
    """Counts of valid inputs, class-1 decisions and departures from ``intended`` per (length, statistic) cell and
    per (position from the end, token)."""
    n_len, width = len(domain.lengths), 2 * domain.max_len + 1
    total, ones = np.zeros((n_len, width), np.int64), np.zeros((n_len, width), np.int64)
    departs = None if intended is None else np.zeros((n_len, width), np.int64)
    pos_total = np.zeros((domain.max_len, domain.n_tokens), np.int64)
    pos_ones = np.zeros_like(pos_total)
    for first, tokens, lengths, real in chunks(domain, chunk_size):
        tokens, lengths = np.asarray(tokens)[:real], np.asarray(lengths)[:real]
        keep = valid[first:first + real]
        tokens, lengths = tokens[keep], lengths[keep]
        decided = decisions[first:first + real][keep].astype(bool)
        inside = np.arange(domain.max_len)[None, :] < lengths[:, None]
        value = (np.isin(tokens, statistic.plus) & inside).sum(1) - (np.isin(tokens, statistic.minus) & inside).sum(1)
        cell = (lengths - domain.min_len, value + domain.max_len)
        np.add.at(total, cell, 1)
        np.add.at(ones, cell, decided)
        if departs is not None:
            np.add.at(departs, cell, intended[first:first + real][keep] != decisions[first:first + real][keep])
        for back in range(domain.max_len):
            rows = np.flatnonzero(lengths > back)
            token = tokens[rows, lengths[rows] - 1 - back]
            np.add.at(pos_total[back], token, 1)
            np.add.at(pos_ones[back], token, decided[rows])
    used = np.flatnonzero(total.sum(0))
    span = slice(used.min(), used.max() + 1) if len(used) else slice(0, 0)
    return TableSummary(domain, statistic, np.arange(-domain.max_len, domain.max_len + 1)[span], total[:, span],
                        ones[:, span], None if departs is None else departs[:, span], pos_total, pos_ones)
