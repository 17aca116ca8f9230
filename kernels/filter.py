"""Candidate filtering: evaluate whole families of programs on domain chunks, keep those that never disagree.

Candidates are first run on a small probe set (a random sample of the domain plus any counterexamples), which
discards almost all of them cheaply, then survivors are checked on every chunk of the domain. Candidate blocks
are padded to powers of two, so each family compiles once per block size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxscd import devices
from jaxscd.domain import Domain
from jaxscd.dsl.batch import Family, StatisticEvaluator, _jit_evaluate, token_counts
from jaxscd.kernels.enumerate import chunk_indices, chunks, decode_indices

ELEMENT_BUDGET = 1 << 24  # candidates x heads x inputs evaluated per kernel call (keeps memory flat)
STATISTIC_BUDGET = 1 << 19  # candidates x inputs of a statistic family per call: its [P, N] states are rewritten
# once per position, so they should stay in cache (measured: 2**19 beats 2**17 and 2**21 on a 2-core CPU)
MAX_WEIGHT = 1 << 24  # total multiplicity per kernel call (count-table weights stay well inside int32 counts)


@partial(jax.jit, static_argnums=0)
def mismatches(evaluate: Callable, params: dict, heads: dict, tokens: jax.Array, lengths: jax.Array,
               target: jax.Array, valid: jax.Array) -> jax.Array:
    """int32 [P, K]: inputs on which each candidate head differs from ``target``, each counted ``valid`` times
    (``valid`` is a mask, or a multiplicity when inputs stand for classes of equivalent inputs).

    For statistic families, (state, target) pairs are counted once per candidate (a histogram: one integer
    scatter-add per candidate and input) and every head is scored from those counts: the [candidates x heads x
    inputs] decisions are never formed, and the work per head no longer grows with the number of inputs.
    """
    if isinstance(evaluate, StatisticEvaluator):
        state = evaluate.statistic(params, tokens, lengths).astype(jnp.int32)  # [P, N]
        table = evaluate.head_table(heads).astype(jnp.int32)  # [K, S]
        counts = _state_label_counts(state, target, valid, table.shape[1])  # [P, S, 2]
        return counts[:, :, 0] @ table.T + counts[:, :, 1] @ (1 - table).T
    out = evaluate(params, heads, tokens, lengths)  # [P, K, N]
    wrong = out != (target == 1)[None, None, :]
    return jnp.sum(jnp.where(wrong, valid.astype(jnp.int32)[None, None, :], 0), axis=-1, dtype=jnp.int32)


def _state_label_counts(state: jax.Array, target: jax.Array, valid: jax.Array, n_states: int) -> jax.Array:
    """int32 [P, S, 2]: the weight (``valid``) of inputs in each (state, target label) cell, per candidate: one
    integer scatter-add per candidate and input (measured faster in place than a masked matmul per state, even
    for 3 states, since it fuses with the statistic)."""
    cell = state * 2 + (target == 1).astype(jnp.int32)[None, :]
    counts = jax.vmap(lambda row: jnp.bincount(row, valid.astype(jnp.int32), length=2 * n_states))(cell)
    return counts.reshape(-1, n_states, 2).astype(jnp.int32)


def block_size(family: Family, n_alive: int, n_inputs: int) -> int:
    """Candidates per kernel call: a power of two within ELEMENT_BUDGET. Statistic families hold [P, N] states, never
    the [P, K, N] decisions, so their heads do not count."""
    if isinstance(family.evaluate, StatisticEvaluator):
        return _block_size(n_alive, 1, n_inputs, STATISTIC_BUDGET)
    return _block_size(n_alive, family.n_heads, n_inputs)


def _block_size(n_alive: int, n_heads: int, n_inputs: int, budget: int = ELEMENT_BUDGET) -> int:
    cap = max(1, budget // max(1, n_heads * n_inputs))
    cap = 1 << (cap.bit_length() - 1)
    return min(cap, 1 << max(0, (n_alive - 1).bit_length()))


def _blocks(family: Family, rows: np.ndarray, block: int):
    """(number of real rows, their params padded to ``block`` rows) for each block of ``rows``: one compiled shape."""
    for begin in range(0, len(rows), block):
        sel = rows[begin:begin + block]
        padded = np.concatenate([sel, np.full(block - len(sel), sel[-1])])
        yield len(sel), {k: jnp.asarray(v[padded]) for k, v in family.params.items()}


def score_rows(family: Family, rows: np.ndarray, tokens, lengths, target, valid) -> np.ndarray:
    """int [len(rows), K]: mismatches of the given candidate rows on one chunk, in padded blocks."""
    heads = {k: jnp.asarray(v) for k, v in family.heads.items()}
    out = [np.asarray(mismatches(family.evaluate, params, heads, tokens, lengths, target, valid))[:real]
           for real, params in _blocks(family, rows, block_size(family, len(rows), tokens.shape[0]))]
    return np.concatenate(out) if out else np.zeros((0, family.n_heads), dtype=np.int32)


def family_decisions(family: Family, tokens, lengths) -> np.ndarray:
    """bool [P, K, N]: every candidate's decisions on a small set of padded sequences (e.g. a count table's
    representatives), in padded blocks within ELEMENT_BUDGET."""
    tokens, lengths = jnp.asarray(tokens), jnp.asarray(lengths)
    heads = {k: jnp.asarray(v) for k, v in family.heads.items()}
    rows = np.arange(family.n_params)
    block = _block_size(len(rows), family.n_heads, tokens.shape[0])
    return np.concatenate([np.asarray(_jit_evaluate(family.evaluate, params, heads, tokens, lengths))[:real]
                           for real, params in _blocks(family, rows, block)])


def _sweep(family: Family, alive: np.ndarray, tokens, lengths, target, valid) -> None:
    """Clear ``alive[p, k]`` for every candidate head that mismatches on this chunk (in place)."""
    rows = np.flatnonzero(alive.any(axis=1))
    alive[rows] &= score_rows(family, rows, tokens, lengths, target, valid) == 0


@dataclass(frozen=True, eq=False)
class CountTable:
    """The valid domain grouped by (token counts, target): one representative sequence per group.

    Any program whose decision depends only on token counts (``Family.count_invariant``) has the same
    mismatches on the representatives, weighted by group size, as on the whole domain.
    """

    tokens: jax.Array  # int32 [C, max_len], padded to a power of two with weight-0 rows
    lengths: jax.Array
    target: jax.Array
    weight: jax.Array  # int32 [C]: group sizes


def count_table(domain: Domain, target: np.ndarray, valid: np.ndarray, chunk_size: int = 1 << 15) -> CountTable:
    """Streamed: each chunk is grouped on its own, then the (few) chunk groups are merged, so memory stays at the
    number of groups, not the domain size."""
    radix = np.int64(domain.max_len + 1) ** np.arange(domain.n_tokens, dtype=np.int64)
    groups, firsts, sizes = [], [], []
    for first, tokens, _, real in chunks(domain, chunk_size):
        rows = np.flatnonzero(valid[first:first + real])
        counts = np.asarray(token_counts(tokens, domain.n_tokens), dtype=np.int64)[rows]
        grouped = (counts @ radix) * 2 + target[first + rows]
        keys, first_row, size = np.unique(grouped, return_index=True, return_counts=True)
        groups.append(keys), firsts.append(first + rows[first_row]), sizes.append(size)
    grouped, firsts, sizes = np.concatenate(groups), np.concatenate(firsts), np.concatenate(sizes)
    keys, slot = np.unique(grouped, return_inverse=True)
    weight = np.bincount(slot, weights=sizes, minlength=len(keys)).astype(np.int64)
    reps = np.full(len(keys), np.iinfo(np.int64).max)
    np.minimum.at(reps, slot, firsts)  # the first sequence of each group, as in one pass over the domain
    padded = 1 << max(0, (len(reps) - 1).bit_length())
    reps = np.concatenate([reps, np.full(padded - len(reps), reps[0])])
    weight = np.concatenate([weight, np.zeros(padded - len(weight), dtype=weight.dtype)]).astype(np.int32)
    tokens, lengths = decode_indices(domain, reps)
    return CountTable(tokens, lengths, devices.rows(target[reps]), devices.rows(weight))


def filter_family(family: Family, domain: Domain, target: np.ndarray, valid: np.ndarray,
                  probe: np.ndarray | None = None, chunk_size: int = 1 << 12,
                  counts: CountTable | None = None) -> np.ndarray:
    """bool [P, K]: candidate heads that agree with ``target`` on every valid domain input.

    ``probe`` (domain indices) are checked first; they only speed things up, the full pass decides. With a
    ``counts`` table, count-invariant families are decided on its representatives in one pass.
    """
    alive = np.ones((family.n_params, family.n_heads), dtype=bool)
    if counts is not None and family.count_invariant and int(valid.sum()) < MAX_WEIGHT:
        _sweep(family, alive, counts.tokens, counts.lengths, counts.target, counts.weight)
        return alive
    if probe is not None and len(probe):
        tokens, lengths = decode_indices(domain, probe)
        _sweep(family, alive, tokens, lengths, devices.rows(target[probe]), devices.rows(valid[probe]))
    for first, idx, real in chunk_indices(0, domain.size, chunk_size):
        if not alive.any():
            break
        in_chunk = np.arange(len(idx)) < real
        tokens, lengths = decode_indices(domain, idx)
        _sweep(family, alive, tokens, lengths, devices.rows(target[idx]), devices.rows(valid[idx] & in_chunk))
    return alive
