"""The integer surrogate: a tiny ReLU network over one-hot (position x token) inputs, evaluated exactly in int64.

A feed-forward DAG of ReLU units (one hidden layer when ``unit_w`` is zero, as trained and LP nets are; compiled
nets may be deeper):
    pre_j = hidden_b[j] + sum_i hidden_w[i, t_i, j] + sum_{k<j} unit_w[k, j] * relu(pre_k)
    score = out_b + sum_j out_w[j] * relu(pre_j) + sum_i skip_w[i, t_i];   class 1 iff score > 0.

Every fitting method ends here: its network is checked on every domain input (``exhaustive_decisions``,
``wrong_inputs``), and neurons whose phase never changes on the domain are folded away (``fold_stable_neurons``),
so the prover sees as few ReLUs as possible. jax and numpy only: the verifier imports this module.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cached_property

import jax
import jax.numpy as jnp
import numpy as np

from jaxscd.domain import Domain
from jaxscd.kernels.enumerate import chunks

_INT64_SAFE = 1 << 62  # exact int64 evaluation needs every intermediate sum below this in magnitude
SPARSE_DEEP_MIN_WORK = 256  # depth x neurons above which deep nets are evaluated unit by unit (``sparse_deep``)
_SPARSE_CELLS = 1 << 23  # rows x neurons held at once by the unit-by-unit evaluator (64 MiB of int64)


@dataclass(frozen=True, eq=False)
class IntegerSurrogate:
    hidden_w: np.ndarray  # int64 [max_len, V, H]
    hidden_b: np.ndarray  # int64 [H]
    out_w: np.ndarray  # int64 [H]
    skip_w: np.ndarray  # int64 [max_len, V]
    out_b: int
    unit_w: np.ndarray | None = None  # int64 [H, H], strictly upper triangular: [k, j] weighs relu_k into pre_j

    def __post_init__(self):
        """Every array becomes int64 (integer-valued input only) and the shapes must fit together: the exact
        evaluators, the bound checks and the z3 encodings all rely on it. ``unit_w`` defaults to zeros (one
        hidden layer) and must be strictly upper triangular, so units are evaluated in index order."""
        if self.unit_w is None:
            object.__setattr__(self, "unit_w", np.zeros((len(self.hidden_b),) * 2, dtype=np.int64))
        for name in ("hidden_w", "hidden_b", "out_w", "skip_w", "unit_w"):
            raw = np.asarray(getattr(self, name))
            if raw.dtype.kind not in "iub" and not (raw.dtype.kind == "f" and np.array_equal(raw, np.round(raw))):
                raise ValueError(f"surrogate {name} must hold integers, got dtype {raw.dtype}")
            if raw.dtype.kind == "u" and raw.size and int(raw.max()) > np.iinfo(np.int64).max:
                raise ValueError(f"surrogate {name} does not fit int64")
            object.__setattr__(self, name, raw.astype(np.int64))
        object.__setattr__(self, "out_b", int(self.out_b))
        w, b, out, skip, units = self.hidden_w, self.hidden_b, self.out_w, self.skip_w, self.unit_w
        if w.ndim != 3 or b.shape != (w.shape[2],) or out.shape != (w.shape[2],) or skip.shape != w.shape[:2]:
            raise ValueError(f"surrogate shapes do not fit: hidden_w {list(w.shape)} (len, tokens, neurons), "
                             f"hidden_b {list(b.shape)}, out_w {list(out.shape)}, skip_w {list(skip.shape)}")
        if units.shape != (w.shape[2],) * 2:
            raise ValueError(f"surrogate unit_w {list(units.shape)} must be [neurons, neurons] = {[w.shape[2]] * 2}")
        if np.tril(units).any():
            k, j = (int(a[0]) for a in np.nonzero(np.tril(units)))
            raise ValueError(f"surrogate unit_w must be strictly upper triangular (unit k feeds only units j > k), "
                             f"got unit_w[{k}, {j}] = {units[k, j]}; renumber the units in topological order")

    @property
    def n_neurons(self) -> int:
        return int(self.hidden_b.shape[0])

    @property
    def deep(self) -> bool:
        """Some unit feeds another (more than one hidden layer)."""
        return bool(self.unit_w.any())

    @cached_property
    def unit_depths(self) -> np.ndarray:
        """int [H]: the longest chain of units ending at each unit (1 for a unit fed by the tokens only)."""
        depths = np.zeros(self.n_neurons, dtype=np.int64)
        for j in range(self.n_neurons):
            depths[j] = 1 + max(depths[np.flatnonzero(self.unit_w[:j, j])], default=0)
        return depths

    @cached_property
    def levels(self) -> tuple:
        """The units grouped by depth, with what each group reads (``_sparse_deep``)."""
        return _levels(self)

    @property
    def sparse_deep(self) -> bool:
        """Deep and wide enough that ``depth`` dense passes over every unit cost more than reading each unit's own
        inputs once (a compiled state machine: a few hundred units per position, each fed by a few): such nets are
        evaluated unit by unit in numpy (``_sparse_deep``), exactly the same integers."""
        return self.deep and self.depth * self.n_neurons > SPARSE_DEEP_MIN_WORK

    @property
    def depth(self) -> int:
        """Longest chain of units: 0 without units, 1 for one hidden layer."""
        return int(self.unit_depths.max(initial=0))

    @cached_property
    def magnitude(self) -> int:
        """A bound (Python int) on the magnitude of every pre-activation, score and partial sum over any input of
        up to max_len tokens: each unit's bias plus its largest weight per position plus its inputs' bounds."""
        position_max = np.abs(self.hidden_w.astype(object)).max(axis=1, initial=0).sum(axis=0)  # [H]
        bounds = []
        for j in range(self.n_neurons):
            inputs = sum(abs(int(u)) * bound for u, bound in zip(self.unit_w[:j, j], bounds))
            bounds.append(abs(int(self.hidden_b[j])) + int(position_max[j]) + inputs)
        skip = int(np.abs(self.skip_w.astype(object)).max(axis=1, initial=0).sum())
        score = abs(self.out_b) + skip + sum(abs(int(o)) * bound for o, bound in zip(self.out_w, bounds))
        return max([score, *bounds])

    def arrays(self) -> dict:
        """The arrays of a bundle's surrogate.npz; ``unit_w`` only when some unit feeds another, so one-layer
        nets keep their bytes and hashes."""
        arrays = {"hidden_w": self.hidden_w, "hidden_b": self.hidden_b, "out_w": self.out_w, "skip_w": self.skip_w,
                  "out_b": np.asarray(self.out_b, dtype=np.int64)}
        return arrays | ({"unit_w": self.unit_w} if self.deep else {})

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, **self.arrays())
        return buffer.getvalue()

    @classmethod
    def from_arrays(cls, arrays) -> IntegerSurrogate:
        """The surrogate of ``arrays()`` (or a loaded surrogate.npz: ValueError when it is malformed or too large
        to evaluate exactly)."""
        surrogate = cls(*(arrays[k] for k in ("hidden_w", "hidden_b", "out_w", "skip_w", "out_b")),
                        unit_w=arrays["unit_w"] if "unit_w" in arrays else None)
        surrogate._check_int64()
        return surrogate

    def preactivations(self, tokens, lengths) -> jax.Array:
        """int64 [N, H] exact pre-activations of padded token chunks."""
        self._check_int64()
        if self.sparse_deep:
            return _sparse_deep(self, tokens, lengths)[0]
        if self.deep:
            return _deep_preactivations(*(jnp.asarray(a) for a in (self.hidden_w, self.hidden_b, self.unit_w)),
                                        self.depth, tokens, lengths)
        return _preactivations(jnp.asarray(self.hidden_w), jnp.asarray(self.hidden_b), tokens, lengths)

    def scores(self, tokens, lengths) -> jax.Array:
        """int64 [N] exact scores of padded token chunks."""
        self._check_int64()
        if self.sparse_deep:
            return _sparse_deep(self, tokens, lengths, keep=False)[1]
        weights = {k: jnp.asarray(v) for k, v in self.arrays().items()}
        if self.deep:
            return _deep_scores(weights, self.depth, tokens, lengths)
        return _scores(weights, tokens, lengths)

    def _check_int64(self) -> None:
        if self.magnitude >= _INT64_SAFE:
            raise ValueError(f"surrogate values may reach {self.magnitude} in magnitude, beyond exact int64 "
                             f"evaluation (< 2^62); use smaller weights")


@dataclass(frozen=True, eq=False)
class _Level:
    """Units of one depth (``unit_depths``): none feeds another, so they are evaluated together. The evaluator keeps
    the ReLUs in level order, so a level's values are one contiguous slice ``start:stop``."""

    units: np.ndarray  # int [U]: unit ids
    start: int
    stop: int
    positions: list  # (position, [U, V + 1] token weights, padding column zero) per position they read
    feeding: object  # scipy CSR [U, H] over ReLUs in level order (None when no unit feeds these)


def _levels(surrogate: IntegerSurrogate) -> tuple[list, np.ndarray, np.ndarray]:
    """(levels, ReLU index in level order of each unit, out weights in level order)."""
    from scipy import sparse

    dtype = _sparse_dtype(surrogate)
    order = np.argsort(surrogate.unit_depths, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    padded = np.concatenate([surrogate.hidden_w, np.zeros_like(surrogate.hidden_w[:, :1])], axis=1)  # [L, V + 1, H]
    levels, start = [], 0
    for depth in np.unique(surrogate.unit_depths):
        units = order[start:start + int((surrogate.unit_depths == depth).sum())]
        weights = padded[:, :, units]
        reads = np.flatnonzero(np.any(weights != 0, axis=(1, 2)))
        feeding = surrogate.unit_w[np.ix_(order, units)].T  # [U, H]: inputs in level order
        levels.append(_Level(units, start, start + len(units),
                             [(int(i), np.ascontiguousarray(weights[i].T.astype(dtype))) for i in reads],
                             sparse.csr_matrix(feeding.astype(dtype)) if feeding.any() else None))
        start += len(units)
    return levels, rank, surrogate.out_w[order]


def _sparse_dtype(surrogate: IntegerSurrogate):
    """int32 when every value fits (half the memory traffic), else int64."""
    return np.int32 if surrogate.magnitude < (1 << 31) else np.int64


def _sparse_deep(surrogate: IntegerSurrogate, tokens, lengths, keep: bool = True):
    """(int64 pre-activations [N, H] or None when not ``keep``, int64 scores [N]) in numpy, one depth at a time:
    each level's units read only the positions they weigh and, through a sparse matrix, the units feeding them
    (exact: integer arithmetic throughout, in int32 when ``magnitude`` allows). Rows go in blocks of
    ``_SPARSE_CELLS`` / H."""
    levels, _, out_w = surrogate.levels
    dtype = _sparse_dtype(surrogate)
    tokens, lengths = np.asarray(tokens), np.asarray(lengths)
    n_rows, width = tokens.shape
    n_tokens = surrogate.hidden_w.shape[1]
    skip_w = np.concatenate([surrogate.skip_w, np.zeros_like(surrogate.skip_w[:, :1])], axis=1)
    real = np.arange(width)[:, None] < lengths[None, :]
    column = np.where(real, np.maximum(tokens.T, 0), n_tokens)  # [L, N]: the padding token reads zero weights
    scores = surrogate.out_b + skip_w[np.arange(width)[:, None], column].sum(axis=0)
    pre_all = np.empty((n_rows, surrogate.n_neurons), dtype=np.int64) if keep else None
    read = np.flatnonzero(out_w)  # units the score reads (level order)
    block = max(1, _SPARSE_CELLS // max(1, surrogate.n_neurons))
    for start in range(0, n_rows, block):
        rows = slice(start, min(n_rows, start + block))
        relu = np.empty((surrogate.n_neurons, rows.stop - rows.start), dtype=dtype)  # [H in level order, rows]
        for level in levels:
            pre = np.repeat(surrogate.hidden_b[level.units].astype(dtype)[:, None], relu.shape[1], axis=1)
            for i, weights in level.positions:
                pre += weights[:, column[i, rows]]
            if level.feeding is not None:
                pre += level.feeding @ relu
            if keep:
                pre_all[rows, level.units] = pre.T
            np.maximum(pre, 0, out=relu[level.start:level.stop])
        scores[rows] += out_w[read] @ relu[read].astype(np.int64)
    return pre_all, scores


def _gather(weights: jax.Array, tokens: jax.Array, lengths: jax.Array) -> jax.Array:
    """sum_i weights[i, t_i] over real positions: weights [Lmax, V, ...] -> [N, ...] (exact integers)."""
    positions = jnp.arange(tokens.shape[1])
    picked = weights[positions[None, :], jnp.maximum(tokens, 0)]  # [N, Lmax, ...]
    mask = (positions[None, :] < lengths[:, None]).reshape(tokens.shape + (1,) * (picked.ndim - 2))
    return jnp.sum(jnp.where(mask, picked, 0), axis=1)


@jax.jit
def _preactivations(hidden_w, hidden_b, tokens, lengths):
    return hidden_b[None, :] + _gather(hidden_w, tokens, lengths)


@jax.jit
def _deep_preactivations(hidden_w, hidden_b, unit_w, depth, tokens, lengths):
    """Every unit at once, ``depth - 1`` times: unit_w is strictly upper triangular, so after pass p every unit
    of depth <= p + 1 has its exact pre-activation (its inputs were exact one pass earlier). ``depth`` is traced:
    one compilation per shape."""
    base = _preactivations(hidden_w, hidden_b, tokens, lengths)
    return jax.lax.fori_loop(1, depth, lambda _, pre: base + jax.nn.relu(pre) @ unit_w, base)


def _readout(w, pre, tokens, lengths):
    return w["out_b"] + jax.nn.relu(pre) @ w["out_w"] + _gather(w["skip_w"], tokens, lengths)


@jax.jit
def _scores(w, tokens, lengths):
    return _readout(w, _preactivations(w["hidden_w"], w["hidden_b"], tokens, lengths), tokens, lengths)


@jax.jit
def _deep_scores(w, depth, tokens, lengths):
    pre = _deep_preactivations(w["hidden_w"], w["hidden_b"], w["unit_w"], depth, tokens, lengths)
    return _readout(w, pre, tokens, lengths)


def exhaustive_decisions(surrogate: IntegerSurrogate, domain: Domain, chunk_size: int = 1 << 15,
                         phases: bool = True):
    """(int8 decisions [size], bool active [size, H], or None without ``phases``) of the integer surrogate on every
    domain sequence."""
    decisions = np.empty(domain.size, dtype=np.int8)
    active = np.empty((domain.size, surrogate.n_neurons), dtype=bool) if phases else None
    for first, tokens, lengths, real in chunks(domain, chunk_size):
        decisions[first:first + real] = np.asarray(surrogate.scores(tokens, lengths) > 0)[:real]
        if phases:
            active[first:first + real] = np.asarray(surrogate.preactivations(tokens, lengths) > 0)[:real]
    return decisions, active


def wrong_inputs(surrogate: IntegerSurrogate, domain: Domain, target: np.ndarray, valid: np.ndarray,
                 limit: int = 1 << 12, chunk_size: int = 1 << 15) -> tuple[int, np.ndarray]:
    """(number of valid inputs where the surrogate's class differs from ``target``, the first ``limit`` of them),
    streamed over the domain in exact int64 arithmetic."""
    count, found = 0, []
    for first, tokens, lengths, real in chunks(domain, chunk_size):
        decisions = np.asarray(surrogate.scores(tokens, lengths) > 0)[:real]
        span = slice(first, first + real)
        bad = np.flatnonzero(valid[span] & (decisions != target[span].astype(bool))) + first
        count += len(bad)
        if sum(len(f) for f in found) < limit:
            found.append(bad)
    return count, np.concatenate(found)[:limit] if found else np.zeros(0, dtype=np.int64)


def fold_stable_neurons(surrogate: IntegerSurrogate, active: np.ndarray) -> IntegerSurrogate:
    """Drop neurons never active on the domain; substitute always-active ones into their consumers (later
    units, or the linear skip path for the output).

    Exact on the inputs ``active`` was computed on: relu(z) = 0 when z <= 0 there, and = z when z > 0 there.
    Always-active units go last to first, so the edges a substitution adds (from earlier units) are folded in
    turn. Arithmetic in Python integers: a result beyond int64 raises OverflowError instead of wrapping.
    """
    always = active.all(axis=0)
    dead = ~active.any(axis=0) & ~always
    w, b, units, out, skip = (a.astype(object) for a in (surrogate.hidden_w, surrogate.hidden_b, surrogate.unit_w,
                                                          surrogate.out_w, surrogate.skip_w))
    out_b = surrogate.out_b
    units[dead], out[dead] = 0, 0  # relu = 0: their outgoing edges vanish
    for k in np.flatnonzero(always)[::-1]:  # relu_k = pre_k, linear in the tokens and earlier relus
        w += np.multiply.outer(w[:, :, k], units[k])
        b += b[k] * units[k]
        units += np.outer(units[:, k], units[k])  # m < k < j: stays strictly upper triangular
        skip += w[:, :, k] * out[k]
        out_b += b[k] * out[k]
        out += units[:, k] * out[k]
        units[k], out[k] = 0, 0
    keep = ~(dead | always)
    return IntegerSurrogate(*(_int64(a) for a in (w[:, :, keep], b[keep], out[keep], skip)), out_b,
                            _int64(units[np.ix_(keep, keep)]))


def _int64(values: np.ndarray) -> np.ndarray:
    return np.array(values.tolist(), dtype=np.int64).reshape(values.shape)
