"""Candidate filtering: evaluate whole families of programs on domain chunks, keep those that never disagree.

Candidates are first run on a small probe set (a random sample of the domain plus any counterexamples), which
discards almost all of them cheaply, then survivors are checked on every chunk of the domain. Candidate blocks
are padded to powers of two, so each family compiles once per block size.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxscd.domain import Domain
from jaxscd.dsl.batch import Family
from jaxscd.kernels.enumerate import chunk_indices, decode_indices

ELEMENT_BUDGET = 1 << 24  # candidates x heads x inputs evaluated per kernel call (keeps memory flat)


@partial(jax.jit, static_argnums=0)
def mismatches(evaluate: Callable, params: dict, heads: dict, tokens: jax.Array, lengths: jax.Array,
               target: jax.Array, valid: jax.Array) -> jax.Array:
    """int32 [P, K]: inputs (where ``valid``) on which each candidate head differs from ``target``."""
    out = evaluate(params, heads, tokens, lengths)  # [P, K, N]
    return jnp.sum((out != (target == 1)[None, None, :]) & valid[None, None, :], axis=-1, dtype=jnp.int32)


def _block_size(n_alive: int, n_heads: int, n_inputs: int) -> int:
    cap = max(1, ELEMENT_BUDGET // max(1, n_heads * n_inputs))
    cap = 1 << (cap.bit_length() - 1)
    return min(cap, 1 << max(0, (n_alive - 1).bit_length()))


def _sweep(family: Family, alive: np.ndarray, tokens, lengths, target, valid) -> None:
    """Clear ``alive[p, k]`` for every candidate head that mismatches on this chunk (in place)."""
    rows = np.flatnonzero(alive.any(axis=1))
    block = _block_size(len(rows), family.n_heads, tokens.shape[0])
    heads = {k: jnp.asarray(v) for k, v in family.heads.items()}
    for begin in range(0, len(rows), block):
        sel = rows[begin:begin + block]
        padded = np.concatenate([sel, np.full(block - len(sel), sel[-1])])
        params = {k: jnp.asarray(v[padded]) for k, v in family.params.items()}
        bad = np.asarray(mismatches(family.evaluate, params, heads, tokens, lengths, target, valid))
        alive[sel] &= bad[:len(sel)] == 0


def filter_family(family: Family, domain: Domain, target: np.ndarray, valid: np.ndarray,
                  probe: np.ndarray | None = None, chunk_size: int = 1 << 12,
                  advance: Callable[[int], None] | None = None) -> np.ndarray:
    """bool [P, K]: candidate heads that agree with ``target`` on every valid domain input.

    ``probe`` (domain indices) are checked first; they only speed things up, the full pass decides.
    """
    alive = np.ones((family.n_params, family.n_heads), dtype=bool)
    if probe is not None and len(probe):
        tokens, lengths = decode_indices(domain, probe)
        _sweep(family, alive, tokens, lengths, jnp.asarray(target[probe]), jnp.asarray(valid[probe]))
    size = min(chunk_size, domain.size)
    for first, idx, real in chunk_indices(0, domain.size, size):
        if not alive.any():
            break
        in_chunk = np.arange(size) < real
        tokens, lengths = decode_indices(domain, idx)
        _sweep(family, alive, tokens, lengths, jnp.asarray(target[idx]), jnp.asarray(valid[idx] & in_chunk))
        if advance:
            advance(real)
    return alive
