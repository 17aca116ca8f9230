"""Batched JAX meaning of the DSL: families of candidate programs as parameter arrays.

A ``Family`` holds ``P`` candidates of one motif as arrays with a leading axis ``P`` (``params``), plus ``K``
shared *heads* (``heads``): cheap read-outs that reuse one candidate's intermediate values (e.g. every threshold
of one signed counter, every accepting set of one transition table). ``evaluate(params, heads, tokens, lengths)``
returns decisions ``[P, K, N]`` for a chunk of ``N`` padded sequences; it is a pure function, jit-ed by
``jaxscd.kernels.filter``. ``program(p, k)`` turns one candidate back into a DSL value.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np

from jaxscd.dsl.programs import (
    COMPOSITION_OPS,
    Both,
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
    check_program,
    description_length,
)

PAD = -1  # token id of padding positions (i >= length)
GATHER_MIN_STATES = 32  # state machines above this many states step by a gather, not a chain of selects


@dataclass(frozen=True)
class StatisticEvaluator:
    """Evaluation through a small per-candidate statistic: decision = head_table(heads)[k, statistic[p, n]].

    ``statistic(params, tokens, lengths) -> int [P, N]`` in ``range(S)``; ``head_table(heads) -> bool [K, S]``.
    Filtering can then count (statistic, target) pairs once per candidate instead of once per head.
    """

    statistic: Callable
    head_table: Callable
    direct: Callable | None = None  # the same decisions computed directly (cheaper when S is large)

    def __call__(self, params, heads, tokens, lengths):
        if self.direct is not None:
            return self.direct(params, heads, tokens, lengths)
        state = self.statistic(params, tokens, lengths)  # [P, N]
        table = self.head_table(heads)  # [K, S]
        if table.shape[1] > GATHER_MIN_STATES:  # a learned machine's hundreds of states: one gather
            return jnp.transpose(table[:, state.astype(jnp.int32)], (1, 0, 2))
        out = table[None, :, -1, None]
        for s in range(table.shape[1] - 2, -1, -1):
            out = jnp.where((state == s)[:, None, :], table[None, :, s, None], out)
        return jnp.broadcast_to(out, (state.shape[0], table.shape[0], state.shape[1]))


@dataclass(frozen=True, eq=False)
class Family:
    name: str
    params: dict  # name -> np.ndarray [P, ...]
    heads: dict  # name -> np.ndarray [K, ...]
    evaluate: Callable  # (params, heads, tokens[N, Lmax], lengths[N]) -> bool[P, K, N]
    decode: Callable  # (params_row: dict, heads: dict, k: int) -> Program
    min_cost: float = 0.0  # lower bound of description_length over the family's candidates
    count_invariant: bool = False  # decisions depend only on how often each token occurs

    @property
    def n_params(self) -> int:
        return int(next(iter(self.params.values())).shape[0])

    @property
    def n_heads(self) -> int:
        return int(next(iter(self.heads.values())).shape[0])

    def __len__(self) -> int:
        return self.n_params * self.n_heads

    def program(self, p: int, k: int) -> Program:
        return self.decode({name: value[p] for name, value in self.params.items()}, self.heads, k)


# --------------------------------------------------------------------------------------------------------------
# Shared per-chunk features


def token_counts(tokens: jax.Array, n_tokens: int) -> jax.Array:
    """int32 [N, V]: occurrences of each token (padding counts nowhere)."""
    return jax.nn.one_hot(tokens, n_tokens, dtype=jnp.int32).sum(axis=1)


def _members(mask_row: np.ndarray) -> frozenset:
    return frozenset(int(t) for t in np.flatnonzero(mask_row))


def _sign_vectors(n_tokens: int) -> np.ndarray:
    """All non-zero vectors in {-1, 0, 1}^V: the (plus, minus) token-set pairs of a signed counter."""
    grid = np.array(list(itertools.product((-1, 0, 1), repeat=n_tokens)), dtype=np.int32)
    return grid[np.any(grid != 0, axis=1)]


# --------------------------------------------------------------------------------------------------------------
# Signed counters: CountThreshold and DensityThreshold share one family (heads = thresholds)


def _eval_linear_count(params, heads, tokens, lengths):
    signed = params["weights"] @ token_counts(tokens, params["weights"].shape[1]).T  # [P, N]
    lhs = heads["scale"][None, :, None] * signed[:, None, :] - heads["len_coef"][None, :, None] * lengths[None, None, :]
    return lhs >= heads["const"][None, :, None]


@dataclass(frozen=True)
class _SignedLength:
    """Statistic of a signed counter: (signed count s, length n) as one index (s + L) * (L + 1) + n, L = max_len;
    every head (threshold) is a function of it, so filtering counts (s, n, target) once per counter."""

    max_len: int

    def size(self) -> int:
        return (2 * self.max_len + 1) * (self.max_len + 1)

    def __call__(self, params, tokens, lengths):
        if tokens.shape[1] > self.max_len:
            raise ValueError(f"signed counters built for lengths <= {self.max_len} got {tokens.shape[1]} positions")
        signed = params["weights"] @ token_counts(tokens, params["weights"].shape[1]).T  # [P, N]
        return (signed + self.max_len) * (self.max_len + 1) + lengths[None, :]

    def table(self, heads):
        """bool [K, S]: each head's decision on every (s, n) index."""
        span = jnp.arange(self.size(), dtype=jnp.int32)
        signed, length = span // (self.max_len + 1) - self.max_len, span % (self.max_len + 1)
        lhs = heads["scale"][:, None] * signed[None, :] - heads["len_coef"][:, None] * length[None, :]
        return lhs >= heads["const"][:, None]


def _linear_count_evaluator(max_len: int) -> StatisticEvaluator:
    statistic = _SignedLength(max_len)
    return StatisticEvaluator(statistic, statistic.table, direct=_eval_linear_count)


def _decode_linear_count(row, heads, k):
    plus, minus = _members(row["weights"] > 0), _members(row["weights"] < 0)
    if heads["kind"][k] == 0:
        return CountThreshold(plus, minus, int(heads["const"][k]))
    return DensityThreshold(plus, minus, int(heads["len_coef"][k]), int(heads["scale"][k]))


def density_thresholds(max_len: int) -> list[Fraction]:
    """Every distinct threshold a density can take on lengths <= max_len, i.e. fractions in [-1, 1]."""
    fracs = {Fraction(n, d) for d in range(1, max_len + 1) for n in range(-d, d + 1)}
    return sorted(fracs)


def linear_count_family(n_tokens: int, max_len: int) -> Family:
    """Signed counters over every (plus, minus) split with every threshold that can matter on lengths <= max_len.

    Density thresholds are placed strictly between consecutive achievable densities (plus both ends), so each
    head is a distinct decision rule; the simplest fraction in each gap is used.
    """
    kinds, scales, len_coefs, consts = [], [], [], []
    for c in range(-max_len, max_len + 2):  # count >= c for every c that can split 0..max_len
        kinds.append(0), scales.append(1), len_coefs.append(0), consts.append(c)
    points = density_thresholds(max_len)
    cuts = [points[0]] + [_simplest_between(a, b) for a, b in zip(points, points[1:])] + [Fraction(2)]
    for cut in cuts:
        kinds.append(1), scales.append(cut.denominator), len_coefs.append(cut.numerator), consts.append(0)
    heads = {name: np.asarray(v, dtype=np.int32) for name, v in
             dict(kind=kinds, scale=scales, len_coef=len_coefs, const=consts).items()}
    return Family("signed_count", {"weights": _sign_vectors(n_tokens)}, heads, _linear_count_evaluator(max_len),
                  _decode_linear_count, min_cost=3.0, count_invariant=True)


def _simplest_between(low: Fraction, high: Fraction) -> Fraction:
    """Simplest fraction q with low < q <= high (Stern-Brocot descent): the canonical threshold for a gap."""
    lo_n, lo_d, hi_n, hi_d = 0, 1, 1, 0  # mediants of 0/1 and 1/0 cover the positives; shift for negatives
    shift = int(np.floor(float(low))) if low < 0 else 0
    low, high = low - shift, high - shift
    while True:
        n, d = lo_n + hi_n, lo_d + hi_d
        q = Fraction(n, d)
        if q <= low:
            lo_n, lo_d = n, d
        elif q > high:
            hi_n, hi_d = n, d
        else:
            return q + shift


# --------------------------------------------------------------------------------------------------------------
# Toggles (parity of a count; heads = flip)


def _toggle_parity(params, tokens, lengths):
    return (params["mask"] @ token_counts(tokens, params["mask"].shape[1]).T) % 2  # [P, N]


def _toggle_table(heads):
    return (jnp.arange(2)[None, :] ^ heads["flip"][:, None]) == 1  # [K, 2]


_eval_toggle = StatisticEvaluator(_toggle_parity, _toggle_table)


def _decode_toggle(row, heads, k):
    return Toggle(_members(row["mask"]), int(heads["flip"][k]))


def toggle_family(n_tokens: int) -> Family:
    masks = np.array([m for m in itertools.product((0, 1), repeat=n_tokens) if any(m)], dtype=np.int32)
    return Family("toggle", {"mask": masks}, {"flip": np.array([0, 1], dtype=np.int32)}, _eval_toggle, _decode_toggle,
                  min_cost=3.0, count_invariant=True)


# --------------------------------------------------------------------------------------------------------------
# Most recent of two token groups (heads = default class)


def last_positions(tokens: jax.Array, n_tokens: int) -> jax.Array:
    """int32 [N, V]: last position of each token, -1 if absent."""
    positions = jnp.arange(tokens.shape[1], dtype=jnp.int32)
    hits = jax.nn.one_hot(tokens, n_tokens, dtype=jnp.int32) > 0  # [N, Lmax, V]
    return jnp.max(jnp.where(hits, positions[None, :, None], -1), axis=1)


def _most_recent_state(params, tokens, lengths):
    """0: a ``first`` token is the most recent of the two groups, 1: a ``second`` token is, 2: neither occurs."""
    last = last_positions(tokens, params["first"].shape[1])  # [N, V]
    last_first = jnp.max(jnp.where(params["first"][:, None, :] > 0, last[None], -1), axis=2)  # [P, N]
    last_second = jnp.max(jnp.where(params["second"][:, None, :] > 0, last[None], -1), axis=2)
    none = (last_first < 0) & (last_second < 0)
    return jnp.where(none, 2, (last_second > last_first).astype(jnp.int32))


def _most_recent_table(heads):
    k = heads["default"].shape[0]
    return jnp.stack([jnp.zeros(k, bool), jnp.ones(k, bool), heads["default"] == 1], axis=1)  # [K, 3]


_eval_most_recent = StatisticEvaluator(_most_recent_state, _most_recent_table)


def _decode_most_recent(row, heads, k):
    return MostRecent(_members(row["first"]), _members(row["second"]), int(heads["default"][k]))


def _group_pairs(n_tokens: int, first: str, second: str) -> dict:
    """Every pair of non-empty disjoint token groups as two int32 masks [P, V]."""
    signs = _sign_vectors(n_tokens)
    pairs = signs[np.any(signs > 0, axis=1) & np.any(signs < 0, axis=1)]
    return {first: (pairs > 0).astype(np.int32), second: (pairs < 0).astype(np.int32)}


def most_recent_family(n_tokens: int) -> Family:
    params = _group_pairs(n_tokens, "first", "second")
    return Family("most_recent", params, {"default": np.array([0, 1], dtype=np.int32)}, _eval_most_recent,
                  _decode_most_recent, min_cost=5.0)


# --------------------------------------------------------------------------------------------------------------
# Token at a position (params = position and direction; heads = token groups)


def _token_at_state(params, tokens, lengths):
    """0 when the sequence is too short for the position, else 1 + the token found there."""
    position = params["position"][:, None]  # [P, 1]
    index = jnp.where(params["from_end"][:, None] > 0, lengths[None, :] - 1 - position, position)  # [P, N]
    state = jnp.zeros(index.shape, dtype=jnp.int32)
    for i in range(tokens.shape[1]):
        state = jnp.where(index == i, tokens[None, :, i] + 1, state)
    return jnp.where((index >= 0) & (index < lengths[None, :]), state, 0)


def _token_at_table(heads):
    mask = heads["mask"] > 0  # [K, V]
    return jnp.concatenate([jnp.zeros((mask.shape[0], 1), dtype=bool), mask], axis=1)  # [K, 1 + V]


_eval_token_at = StatisticEvaluator(_token_at_state, _token_at_table)


def _decode_token_at(row, heads, k):
    return TokenAt(int(row["position"]), _members(heads["mask"][k]), bool(row["from_end"]))


def _proper_subsets(n_tokens: int) -> np.ndarray:
    """int32 [2^V - 2, V]: every token group except the empty and the full one (those are length conditions)."""
    return np.array([m for m in itertools.product((0, 1), repeat=n_tokens) if 0 < sum(m) < n_tokens],
                    dtype=np.int32)


def token_at_family(n_tokens: int, max_len: int) -> Family:
    rows = list(itertools.product(range(max_len), (0, 1)))
    params = {"position": np.array([p for p, _ in rows], dtype=np.int32),
              "from_end": np.array([e for _, e in rows], dtype=np.int32)}
    return Family("token_at", params, {"mask": _proper_subsets(n_tokens)}, _eval_token_at, _decode_token_at,
                  min_cost=description_length(TokenAt(0, {0}, False)))


# --------------------------------------------------------------------------------------------------------------
# Length thresholds (one row; heads = thresholds)


def _eval_length_threshold(params, heads, tokens, lengths):
    out = lengths[None, None, :] >= heads["threshold"][None, :, None]
    return jnp.broadcast_to(out, (params["row"].shape[0], heads["threshold"].shape[0], tokens.shape[0]))


def _decode_length_threshold(row, heads, k):
    return LengthThreshold(int(heads["threshold"][k]))


def length_threshold_family(max_len: int) -> Family:
    """Thresholds 2..max_len: 1 holds for every sequence (Constant), above max_len for none."""
    thresholds = np.arange(2, max_len + 1, dtype=np.int32)
    return Family("length_threshold", {"row": np.zeros(1, dtype=np.int32)}, {"threshold": thresholds},
                  _eval_length_threshold, _decode_length_threshold,
                  min_cost=description_length(LengthThreshold(2)), count_invariant=True)


# --------------------------------------------------------------------------------------------------------------
# First occurrence of two token groups (heads = default class)


def first_positions(tokens: jax.Array, n_tokens: int) -> jax.Array:
    """int32 [N, V]: first position of each token, Lmax if absent."""
    positions = jnp.arange(tokens.shape[1], dtype=jnp.int32)
    hits = jax.nn.one_hot(tokens, n_tokens, dtype=jnp.int32) > 0  # [N, Lmax, V]
    return jnp.min(jnp.where(hits, positions[None, :, None], tokens.shape[1]), axis=1)


def _first_occurrence_state(params, tokens, lengths):
    """0: a ``first`` token comes first of the two groups, 1: a ``second`` token does, 2: neither occurs."""
    first = first_positions(tokens, params["first"].shape[1])  # [N, V]
    absent = tokens.shape[1]
    first_first = jnp.min(jnp.where(params["first"][:, None, :] > 0, first[None], absent), axis=2)  # [P, N]
    first_second = jnp.min(jnp.where(params["second"][:, None, :] > 0, first[None], absent), axis=2)
    none = (first_first == absent) & (first_second == absent)
    return jnp.where(none, 2, (first_second < first_first).astype(jnp.int32))


_eval_first_occurrence = StatisticEvaluator(_first_occurrence_state, _most_recent_table)


def _decode_first_occurrence(row, heads, k):
    return FirstOccurrence(_members(row["first"]), _members(row["second"]), int(heads["default"][k]))


def first_occurrence_family(n_tokens: int) -> Family:
    params = _group_pairs(n_tokens, "first", "second")
    return Family("first_occurrence", params, {"default": np.array([0, 1], dtype=np.int32)}, _eval_first_occurrence,
                  _decode_first_occurrence, min_cost=description_length(FirstOccurrence({0}, {1}, 0)))


# --------------------------------------------------------------------------------------------------------------
# Counters with a readout threshold: heads hold the thresholds as a table over the counter's values


def _threshold_heads(thresholds: Sequence[int], n_values: int) -> dict:
    """threshold [K] and at_least [K, n_values]: at_least[k, v] = v >= threshold[k]."""
    thresholds = np.asarray(thresholds, dtype=np.int32)
    at_least = (np.arange(n_values)[None, :] >= thresholds[:, None]).astype(np.int32)
    return {"threshold": thresholds, "at_least": at_least}


def _threshold_table(heads):
    return heads["at_least"] > 0  # [K, values]


def _group_hits(tokens: jax.Array, mask: jax.Array) -> jax.Array:
    """int32 [P, N, Lmax]: 1 where a position holds a token of group p (padding is in no group)."""
    return jnp.einsum("nlv,pv->pnl", jax.nn.one_hot(tokens, mask.shape[1], dtype=jnp.int32), mask)


# Window counts (one family per window; heads = thresholds 1..window)


def _window_count_state(params, tokens, lengths):
    """The number of group tokens among the last ``window`` positions, in 0..window."""
    positions = jnp.arange(tokens.shape[1], dtype=jnp.int32)
    recent = positions[None, None, :] >= lengths[None, :, None] - params["window"][:, None, None]  # [P, N, Lmax]
    return jnp.sum(jnp.where(recent, _group_hits(tokens, params["mask"]), 0), axis=2)


_eval_window_count = StatisticEvaluator(_window_count_state, _threshold_table)


def _decode_window_count(row, heads, k):
    return WindowCount(_members(row["mask"]), int(row["window"]), int(heads["threshold"][k]))


def window_count_family(n_tokens: int, window: int) -> Family:
    """Every proper token group over the last ``window`` tokens, with every threshold 1..window."""
    masks = _proper_subsets(n_tokens)
    params = {"mask": masks, "window": np.full(len(masks), window, dtype=np.int32)}
    return Family(f"window_count_{window}", params, _threshold_heads(range(1, window + 1), window + 1),
                  _eval_window_count, _decode_window_count,
                  min_cost=description_length(WindowCount({0}, window, 1)))


# Saturated depth (one family per cap; heads = thresholds 1..cap)


def _saturated_depth_state(params, tokens, lengths):
    """The final depth in 0..cap (padding opens and closes nothing, so it leaves the depth alone)."""
    step = _group_hits(tokens, params["open"]) - _group_hits(tokens, params["close"])  # [P, N, Lmax]
    cap = params["cap"][:, None]
    depth = jnp.zeros(step.shape[:2], dtype=jnp.int32)
    for i in range(tokens.shape[1]):
        depth = jnp.clip(depth + step[:, :, i], 0, cap)
    return depth


_eval_saturated_depth = StatisticEvaluator(_saturated_depth_state, _threshold_table)


def _decode_saturated_depth(row, heads, k):
    return SaturatedDepth(_members(row["open"]), _members(row["close"]), int(row["cap"]), int(heads["threshold"][k]))


def saturated_depth_family(n_tokens: int, cap: int) -> Family:
    """Every pair of non-empty disjoint open/close groups (an empty close group is a plain count)."""
    params = _group_pairs(n_tokens, "open", "close")
    params["cap"] = np.full(len(params["open"]), cap, dtype=np.int32)
    return Family(f"saturated_depth_{cap}", params, _threshold_heads(range(1, cap + 1), cap + 1),
                  _eval_saturated_depth, _decode_saturated_depth,
                  min_cost=description_length(SaturatedDepth({0}, {1}, cap, 1)))


# --------------------------------------------------------------------------------------------------------------
# State machines: every initially-connected DFA with n states up to isomorphism (heads = accepting sets)


def _select_by_state(state: jax.Array, values: jax.Array) -> jax.Array:
    """values[p, state[p, n]] for values [P, S] as a chain of selects (much faster than a gather on CPU)."""
    out = values[:, -1][:, None]
    for s in range(values.shape[1] - 2, -1, -1):
        out = jnp.where(state == s, values[:, s][:, None], out)
    return out


def state_dtype(n_states: int):
    """The narrowest signed integer dtype that holds state ids 0..n_states-1 (int8 up to 127 states: a wider
    machine's ids would wrap, and a gather with a negative id reads another state)."""
    return jnp.int8 if n_states <= 127 else jnp.int16 if n_states <= 32767 else jnp.int32


def final_states(table: jax.Array, tokens: jax.Array, lengths: jax.Array) -> jax.Array:
    """[P, N] (``state_dtype``): the state each DFA (table [P, S, V]) ends in on each padded sequence."""
    n_states, n_tokens = table.shape[1], table.shape[2]
    bits = max(1, (n_states - 1).bit_length())
    if bits * n_states * (n_tokens + 1) <= 64:
        return _packed_final_states(table, tokens, lengths, bits)
    dtype = state_dtype(n_states)
    if n_states > GATHER_MIN_STATES:  # a select per state and token would unroll into a huge program
        flat = table.reshape(table.shape[0], -1).astype(jnp.int32)  # [P, S * V]: entry s * V + v
        state = jnp.zeros((table.shape[0], tokens.shape[0]), dtype=jnp.int32)
        for i in range(tokens.shape[1]):
            nxt = jnp.take_along_axis(flat, state * n_tokens + jnp.maximum(tokens[None, :, i], 0), axis=1)
            state = jnp.where((i < lengths)[None, :], nxt, state)
        return state.astype(dtype)
    table = table.astype(dtype)
    state = jnp.zeros((table.shape[0], tokens.shape[0]), dtype=dtype)
    for i in range(tokens.shape[1]):
        token = tokens[:, i]
        nxt = state
        for v in range(table.shape[2]):
            nxt = jnp.where((token == v)[None, :], _select_by_state(state, table[:, :, v]), nxt)
        state = jnp.where((i < lengths)[None, :], nxt, state)
    return state


def _packed_final_states(table: jax.Array, tokens: jax.Array, lengths: jax.Array, bits: int) -> jax.Array:
    """``final_states`` with each transition table packed into one word (``bits`` per entry, entry s * (V + 1) + v;
    token V, used for padding, maps every state to itself): one step is a multiply-add, a shift and a mask per
    (machine, input), with no gather and no select chain."""
    n_states, n_tokens = table.shape[1], table.shape[2]
    width = n_tokens + 1
    padded = jnp.concatenate([table, jnp.broadcast_to(jnp.arange(n_states, dtype=table.dtype)[None, :, None],
                                                      (table.shape[0], n_states, 1))], axis=2)  # [P, S, V + 1]
    word = jnp.uint32 if bits * n_states * width <= 32 else jnp.uint64  # 32-bit words: twice the SIMD lanes
    shifts = (bits * jnp.arange(n_states * width, dtype=word)).reshape(n_states, width)
    packed = jnp.sum(padded.astype(word) << shifts[None], axis=(1, 2), dtype=word)[:, None]  # [P, 1]
    live = jnp.arange(tokens.shape[1])[None, :] < lengths[:, None]
    column = (jnp.where(live, tokens, n_tokens) * bits).astype(word)  # [N, L]: token part of the shift
    state = jnp.zeros((table.shape[0], tokens.shape[0]), dtype=word)
    row, mask = word(bits * width), word((1 << bits) - 1)
    for i in range(tokens.shape[1]):
        state = (packed >> (state * row + column[None, :, i])) & mask
    return state.astype(jnp.int8)


def _machine_state(params, tokens, lengths):
    return final_states(params["transitions"], tokens, lengths)


def _machine_table(heads):
    return heads["accepting"] > 0  # [K, S]


_eval_state_machine = StatisticEvaluator(_machine_state, _machine_table)


def _decode_state_machine(row, heads, k):
    return StateMachine(row["transitions"].tolist(), _members(heads["accepting"][k]))


def canonical_transition_tables(n_states: int, n_tokens: int) -> np.ndarray:
    """int32 [P, S, V]: one representative per isomorphism class of initially-connected DFA transition tables.

    Canonical = states numbered in order of first appearance when the table is read row by row from state 0,
    with every state reached before its own row is read (so every state is reachable).
    """
    width = n_states * n_tokens
    tables = np.array(list(itertools.product(range(n_states), repeat=width)), dtype=np.int32)
    seen_max = np.zeros(len(tables), dtype=np.int32)
    ok = np.ones(len(tables), dtype=bool)
    for j in range(width):
        if j % n_tokens == 0:
            ok &= seen_max >= j // n_tokens  # the row's state was reached from an earlier row
        target = tables[:, j]
        ok &= target <= seen_max + 1
        seen_max = np.maximum(seen_max, target)
    ok &= seen_max == n_states - 1
    return tables[ok].reshape(-1, n_states, n_tokens)


def state_machine_family(n_states: int, n_tokens: int) -> Family:
    subsets = [s for s in itertools.product((0, 1), repeat=n_states) if 0 < sum(s) < n_states]
    return Family(f"state_machine_{n_states}", {"transitions": canonical_transition_tables(n_states, n_tokens)},
                  {"accepting": np.array(subsets, dtype=np.int32)}, _eval_state_machine, _decode_state_machine,
                  min_cost=description_length(StateMachine([[0] * n_tokens] * n_states, {0})))


def n_transition_tables(n_states: int, n_tokens: int) -> int:
    """Raw tables enumerated to find the canonical ones (the cost of ``canonical_transition_tables``)."""
    return n_states ** (n_states * n_tokens)


MAX_DEPTH_CAP = 3  # saturated depths up to 3: counters with up to 4 states, one more than the enumerated DFAs


def default_families(n_tokens: int, max_len: int, max_states: int = 3, max_raw_tables: int = 2_000_000) -> list[Family]:
    """Every motif family of the DSL for an alphabet of ``n_tokens`` and lengths up to ``max_len``.

    Compositions (``Both``) are not enumerated here: ``composition_family`` pairs up a chosen list of programs.
    Grid points that always equal a cheaper program of another family are left out: windows 1 (the last token,
    ``TokenAt``) and max_len (every token, ``CountThreshold``), and depth cap 1 (the most recent of open and
    close, ``MostRecent``).
    """
    families = [constant_family(), linear_count_family(n_tokens, max_len), toggle_family(n_tokens),
                most_recent_family(n_tokens), token_at_family(n_tokens, max_len), length_threshold_family(max_len),
                first_occurrence_family(n_tokens)]
    families += [window_count_family(n_tokens, window) for window in range(2, max_len)]
    families += [saturated_depth_family(n_tokens, cap) for cap in range(2, min(MAX_DEPTH_CAP, max_len) + 1)]
    for n_states in range(2, max_states + 1):
        if n_transition_tables(n_states, n_tokens) <= max_raw_tables:
            families.append(state_machine_family(n_states, n_tokens))
    return [family for family in families if len(family)]  # e.g. no length thresholds when max_len == 1


# --------------------------------------------------------------------------------------------------------------
# Constants, and any single program as a one-candidate family


def _constant_state(params, tokens, lengths):
    return jnp.zeros((params["row"].shape[0], tokens.shape[0]), dtype=jnp.int32)


def _constant_table(heads):
    return heads["value"][:, None] == 1  # [K, 1]


_eval_constant = StatisticEvaluator(_constant_state, _constant_table)


def _decode_constant(row, heads, k):
    from jaxscd.dsl.programs import Constant

    return Constant(int(heads["value"][k]))


def constant_family() -> Family:
    return Family("constant", {"row": np.zeros(1, dtype=np.int32)}, {"value": np.array([0, 1], dtype=np.int32)},
                  _eval_constant, _decode_constant, min_cost=1.0, count_invariant=True)


def _signed_weights(plus: frozenset, minus: frozenset, n_tokens: int) -> np.ndarray:
    weights = np.zeros((1, n_tokens), dtype=np.int32)
    weights[0, sorted(plus)] = 1
    weights[0, sorted(minus)] = -1
    return weights


def _mask(group: frozenset, n_tokens: int) -> np.ndarray:
    mask = np.zeros((1, n_tokens), dtype=np.int32)
    mask[0, sorted(group)] = 1
    return mask


def single_family(program: Program, n_tokens: int) -> Family:
    """A family holding exactly ``program`` (P = K = 1): the batched meaning of one program."""
    from jaxscd.dsl.programs import Constant

    check_program(program, n_tokens)
    i32 = lambda *v: np.array(v, dtype=np.int32)  # noqa: E731
    match program:
        case Constant(value):
            return Family("constant", {"row": i32(0)}, {"value": i32(value)}, _eval_constant, _decode_constant)
        case CountThreshold(plus, minus, threshold):
            heads = dict(kind=i32(0), scale=i32(1), len_coef=i32(0), const=i32(threshold))
            return Family("signed_count", {"weights": _signed_weights(plus, minus, n_tokens)}, heads,
                          _eval_linear_count, _decode_linear_count)
        case DensityThreshold(plus, minus, num, den):
            heads = dict(kind=i32(1), scale=i32(den), len_coef=i32(num), const=i32(0))
            return Family("signed_count", {"weights": _signed_weights(plus, minus, n_tokens)}, heads,
                          _eval_linear_count, _decode_linear_count)
        case Toggle(group, flip):
            return Family("toggle", {"mask": _mask(group, n_tokens)}, {"flip": i32(flip)}, _eval_toggle,
                          _decode_toggle)
        case MostRecent(first, second, default):
            params = {"first": _mask(first, n_tokens), "second": _mask(second, n_tokens)}
            return Family("most_recent", params, {"default": i32(default)}, _eval_most_recent, _decode_most_recent)
        case StateMachine(transitions, accepting):
            table = np.array([transitions], dtype=np.int32)
            accept = np.zeros((1, len(transitions)), dtype=np.int32)
            accept[0, sorted(accepting)] = 1
            return Family(f"state_machine_{len(transitions)}", {"transitions": table}, {"accepting": accept},
                          _eval_state_machine, _decode_state_machine)
        case TokenAt(position, group, from_end):
            return Family("token_at", {"position": i32(position), "from_end": i32(int(from_end))},
                          {"mask": _mask(group, n_tokens)}, _eval_token_at, _decode_token_at)
        case LengthThreshold(threshold):
            return Family("length_threshold", {"row": i32(0)}, {"threshold": i32(threshold)},
                          _eval_length_threshold, _decode_length_threshold)
        case FirstOccurrence(first, second, default):
            params = {"first": _mask(first, n_tokens), "second": _mask(second, n_tokens)}
            return Family("first_occurrence", params, {"default": i32(default)}, _eval_first_occurrence,
                          _decode_first_occurrence)
        case WindowCount(group, window, threshold):
            return Family(f"window_count_{window}", {"mask": _mask(group, n_tokens), "window": i32(window)},
                          _threshold_heads([threshold], window + 1), _eval_window_count, _decode_window_count)
        case SaturatedDepth(open_, close, cap, threshold):
            params = {"open": _mask(open_, n_tokens), "close": _mask(close, n_tokens), "cap": i32(cap)}
            return Family(f"saturated_depth_{cap}", params, _threshold_heads([threshold], cap + 1),
                          _eval_saturated_depth, _decode_saturated_depth)
        case Both(left, right, op):
            return _composition((left, right), n_tokens, [(0, 1)], [COMPOSITION_OPS.index(op)])
    raise TypeError(f"not a DSL program: {program!r}")


# --------------------------------------------------------------------------------------------------------------
# Compositions: Both(left, right, op) over a given list of parts (P = pairs of parts, heads = ops)

# truth[op][2 * left + right]
_OP_TRUTH = {"and": (0, 0, 0, 1), "or": (0, 1, 1, 1), "xor": (0, 1, 1, 0)}


@dataclass(frozen=True, eq=False)
class _PartDecisions:
    """The decisions of a fixed list of programs, evaluated group by group: parts whose single families share an
    evaluator and array shapes are stacked and evaluated as one batch. Hashed by identity (a jit static arg)."""

    n_parts: int
    groups: tuple  # (indices int [G], evaluate, params {name: [G, ...]}, heads {name: [G, ...]})

    def __call__(self, tokens: jax.Array, lengths: jax.Array) -> jax.Array:
        """bool [M, N]."""
        out = jnp.zeros((self.n_parts, tokens.shape[0]), dtype=bool)
        for indices, evaluate, params, heads in self.groups:
            params, heads = jax.tree.map(jnp.asarray, (params, heads))
            if isinstance(evaluate, StatisticEvaluator):  # part g reads head g: decisions = table[g, state[g]]
                state = evaluate.statistic(params, tokens, lengths).astype(jnp.int32)
                decisions = jnp.take_along_axis(evaluate.head_table(heads), state, axis=1)
            else:  # part g is the diagonal (g, g) of the group's [G, G, N] block
                diagonal = jnp.arange(len(indices))
                decisions = evaluate(params, heads, tokens, lengths)[diagonal, diagonal]
            out = out.at[jnp.asarray(indices)].set(decisions)
        return out


@functools.lru_cache(maxsize=64)
def _part_decisions(parts: tuple, n_tokens: int) -> _PartDecisions:
    """Cached per part list, so evaluating the same composition again reuses its compiled kernels."""
    grouped: dict = {}
    for index, part in enumerate(parts):
        family = single_family(part, n_tokens)
        key = (family.evaluate, tuple((k, v.shape[1:]) for k, v in family.params.items()),
               tuple((k, v.shape[1:]) for k, v in family.heads.items()))
        grouped.setdefault(key, []).append((index, family))
    groups = []
    for (evaluate, _, _), members in grouped.items():
        groups.append((np.array([i for i, _ in members]), evaluate, _stack([f.params for _, f in members]),
                       _stack([f.heads for _, f in members])))
    return _PartDecisions(len(parts), tuple(groups))


def _stack(arrays: list[dict]) -> dict:
    return {name: np.concatenate([a[name] for a in arrays]) for name in arrays[0]}


@dataclass(frozen=True, eq=False)
class _CompositionState:
    """Statistic of a composition family: 2 * left decision + right decision, in 0..3."""

    parts: _PartDecisions

    def __call__(self, params, tokens, lengths):
        decisions = self.parts(tokens, lengths).astype(jnp.int32)  # [M, N]
        return 2 * decisions[params["left"]] + decisions[params["right"]]


def _composition_table(heads):
    return heads["truth"] > 0  # [K, 4]


def _composition(parts: tuple, n_tokens: int, pairs: Sequence[tuple], ops: Sequence[int]) -> Family:
    pairs = np.asarray(pairs, dtype=np.int32).reshape(-1, 2)
    params = {"left": pairs[:, 0], "right": pairs[:, 1]}
    heads = {"op": np.asarray(ops, dtype=np.int32),
             "truth": np.array([_OP_TRUTH[COMPOSITION_OPS[o]] for o in ops], dtype=np.int32).reshape(-1, 4)}

    def decode(row, heads, k):
        return Both(parts[int(row["left"])], parts[int(row["right"])], COMPOSITION_OPS[int(heads["op"][k])])

    evaluate = StatisticEvaluator(_CompositionState(_part_decisions(parts, n_tokens)), _composition_table)
    costs = sorted(description_length(p) for p in parts)
    return Family("composition", params, heads, evaluate, decode, min_cost=1 + costs[0] + costs[1])


def composition_family(parts: Sequence[Program], n_tokens: int) -> Family:
    """Both(a, b, op) for every unordered pair of distinct ``parts`` (P) and every op (K = and, or, xor).

    Every kernel call evaluates all parts once and each candidate reads two of their decision rows, so the cost
    grows with the number of parts, not of pairs; meant for a short list of promising programs, e.g. one-sided
    near misses of the other families (an AND needs parts that are never 0 where the target is 1, an OR parts
    that are never 1 where it is 0).
    """
    parts = tuple(dict.fromkeys(parts))  # distinct, in the given order
    composite = [p for p in parts if isinstance(p, Both)]
    if composite:
        raise ValueError(f"composition parts must be base motifs, got the composition {composite[0]!r}; "
                         f"compositions do not nest")
    if len(parts) < 2:
        raise ValueError(f"a composition family needs at least 2 distinct parts, got {len(parts)}: {list(parts)!r}")
    for part in parts:
        check_program(part, n_tokens)
    pairs = list(itertools.combinations(range(len(parts)), 2))  # and, or, xor are symmetric
    return _composition(parts, n_tokens, pairs, range(len(COMPOSITION_OPS)))


def evaluate_program(program: Program, tokens, lengths, n_tokens: int) -> jax.Array:
    """bool [N]: class 1 decisions of one program on a chunk of padded sequences."""
    family = single_family(program, n_tokens)
    return _jit_evaluate(family.evaluate, family.params, family.heads, jnp.asarray(tokens), jnp.asarray(lengths))[0, 0]


_jit_evaluate = jax.jit(lambda evaluate, params, heads, tokens, lengths: evaluate(params, heads, tokens, lengths),
                        static_argnums=0)
