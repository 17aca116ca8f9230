"""Decoding of domain indices into padded token arrays, inside jit; the one place sequences are built."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxscd import devices
from jaxscd.domain import Domain
from jaxscd.dsl.batch import PAD, evaluate_program


@partial(jax.jit, static_argnames=("n_tokens", "min_len", "max_len"))
def decode(indices: jax.Array, starts: jax.Array, *, n_tokens: int, min_len: int, max_len: int):
    """Domain indices int64[N] -> (tokens int32[N, max_len] padded with PAD, lengths int32[N]).

    ``starts`` is ``Domain.starts``: sequences are numbered by length, then lexicographically.
    """
    slot = jnp.searchsorted(starts, indices, side="right") - 1
    lengths = (min_len + slot).astype(jnp.int32)
    local = indices - starts[slot]
    positions = jnp.arange(max_len, dtype=jnp.int32)
    exponent = jnp.maximum(lengths[:, None] - 1 - positions[None, :], 0)  # most significant digit first
    place = jnp.asarray(n_tokens, dtype=jnp.int64) ** exponent.astype(jnp.int64)
    digits = (local[:, None] // place) % n_tokens
    tokens = jnp.where(positions[None, :] < lengths[:, None], digits, PAD).astype(jnp.int32)
    return tokens, lengths


HOST_ROWS = 1 << 16  # up to this many indices decode in numpy (Domain.decode): tracing a new shape costs more


def decode_indices(domain: Domain, indices) -> tuple[jax.Array, jax.Array]:
    """``decode`` of any number of indices, on the devices (``jaxscd.devices.rows``). Up to HOST_ROWS indices are
    decoded in numpy; more run the jitted ``decode``, padded to a power of two inside (index 0 repeated) so that
    samples of changing sizes share a few compiled shapes."""
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    n = len(indices)
    if n <= HOST_ROWS:
        tokens, lengths = domain.decode(indices)
        return devices.rows(tokens), devices.rows(lengths)
    padded = np.zeros(1 << max(0, (n - 1).bit_length()), dtype=np.int64)
    padded[:n] = indices
    # the indices' rows split over every local device (jaxscd.devices): decoding and every kernel that reads
    # these tokens run sharded along the domain axis
    tokens, lengths = decode(devices.rows(padded), devices.replicated(domain.starts), n_tokens=domain.n_tokens,
                             min_len=domain.min_len, max_len=domain.max_len)
    return (tokens, lengths) if n == len(padded) else (tokens[:n], lengths[:n])


def chunk_indices(start: int, stop: int, chunk_size: int) -> Iterator[tuple[int, np.ndarray, int]]:
    """Fixed-size index chunks of [start, stop): (first index, int64[size], number of real entries), where
    size is ``chunk_size`` but never more than the range itself (a small range is one small chunk).

    The last chunk is padded by repeating ``stop - 1`` so every chunk has the same shape (one compilation).
    """
    chunk_size = max(1, min(chunk_size, stop - start))
    for first in range(start, stop, chunk_size):
        real = min(chunk_size, stop - first)
        idx = np.minimum(np.arange(first, first + chunk_size, dtype=np.int64), stop - 1)
        yield first, idx, real


def chunks(domain: Domain, chunk_size: int, start: int = 0, stop: int | None = None):
    """Padded token chunks over the domain: (first index, tokens[chunk, max_len], lengths[chunk], n_real)."""
    stop = domain.size if stop is None else stop
    for first, idx, real in chunk_indices(start, stop, chunk_size):
        tokens, lengths = decode_indices(domain, idx)
        yield first, tokens, lengths, real


def program_decisions(program, domain: Domain, chunk_size: int = 1 << 15) -> np.ndarray:
    """int8 [size]: a DSL program's class on every sequence of the domain."""
    out = np.empty(domain.size, dtype=np.int8)
    for first, tokens, lengths, real in chunks(domain, chunk_size):
        out[first:first + real] = np.asarray(evaluate_program(program, tokens, lengths, domain.n_tokens))[:real]
    return out


def precondition_mask(domain: Domain, chunk_size: int = 1 << 15) -> np.ndarray:
    """bool [size]: which sequences satisfy the domain's precondition (all True without one)."""
    if domain.precondition is None:
        return np.ones(domain.size, dtype=bool)
    return program_decisions(domain.precondition, domain, chunk_size).astype(bool)


def all_tokens(domain: Domain, chunk_size: int = 1 << 15) -> tuple[np.ndarray, np.ndarray]:
    """The whole domain as int16 tokens [size, max_len] and int8 lengths [size] (padding is -1)."""
    tokens = np.empty((domain.size, domain.max_len), dtype=np.int16)
    lengths = np.empty(domain.size, dtype=np.int8)
    for first, chunk, chunk_lengths, real in chunks(domain, chunk_size):
        tokens[first:first + real] = np.asarray(chunk)[:real]
        lengths[first:first + real] = np.asarray(chunk_lengths)[:real]
    return tokens, lengths
