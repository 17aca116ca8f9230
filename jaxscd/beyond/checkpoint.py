"""Orbit bounds for circuit_sparsity checkpoint circuits (``jaxscd.circuits.sparse_gpt``): the structure check that
proves the counts+last-token symmetry, and the decision of every orbit in outward-rounded interval arithmetic.

Structure (``CheckpointModel.refusal``, checked on the arrays, never assumed): one layer; no concatenated position
embeddings (d_pos_emb unset); ``transformer.wpe.weight`` exactly 0 on every prompt position the domain uses; every
ablation mask 0 or 1 and every mean one vector for all positions; the prompt = a fixed prefix + the sequence + a
fixed suffix, read at its last position. Then every per-position operation before attention (embedding, hooks, norm,
AbsTopK, q/k/v) depends on the token alone, the last position's attention is a weighted average over the multiset
of prompt tokens (weights exp(s_u), s_u from the last token's query; the sink only adds to the denominator), and
everything after it (c_proj, MLP, norms, AbsTopK, residuals, unembedding, bigram row) is at the last position: the
decision is a function of the token counts and the last prompt token.

Orbit classes (``orbit_classes``): numpy over all orbits at once, each value an interval [lo, hi] of the real-valued
circuit (the float64 weights as exact constants) with np.nextafter after every rounded operation; matrix products
in midpoint-radius form with a rigorous bound of the float sum's error; exp and the normal CDF widened far above
their libraries' error; norms from monotone pieces; AbsTopK decided only when the kept magnitudes are separated from
the dropped ones (or at most k entries are non-zero), else the orbit is undecided. An orbit is decided when the
logit difference target - alternative lies outside [-margin, margin] (``float_margin``).

``jaxscd verify`` re-derives every orbit with ``checkpoint_exact`` (python-flint arb balls), a second implementation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from jaxscd.beyond.bounds import EPS, MIN_MARGIN, _down, _up
from jaxscd.beyond.symmetry import COUNTS_AND_LAST, Symmetry
from jaxscd.circuits.sparse_gpt.forward import LAYER_NORM_EPS

TINY = 5e-324
GELU_ARGMIN = (-0.7518, -0.7517)  # x * Phi(x) decreases left of about -0.75179, increases right of it
GELU_MIN_LOW = -0.17  # below its minimum, about -0.169971
TOPK_GAP = 4096 * EPS  # relative gap AbsTopK's kept and dropped magnitudes must clear (the float forward's error)
CHUNK = 8192  # orbits per vectorised pass, so memory stays flat


# ------------------------------------------------------------------------------------------------------------
# Intervals: [lo, hi] arrays, every rounded result widened outward


@dataclass(frozen=True)
class Box:
    lo: np.ndarray
    hi: np.ndarray

    @staticmethod
    def point(x) -> Box:
        x = np.asarray(x, dtype=np.float64)
        return Box(x, x)

    def __getitem__(self, index) -> Box:
        return Box(self.lo[index], self.hi[index])

    def __add__(self, other) -> Box:
        other = other if isinstance(other, Box) else Box.point(other)
        return Box(_down_sum(self.lo + other.lo), _up_sum(self.hi + other.hi))

    def __sub__(self, other) -> Box:
        other = other if isinstance(other, Box) else Box.point(other)
        return Box(_down_sum(self.lo - other.hi), _up_sum(self.hi - other.lo))

    def __mul__(self, other) -> Box:
        other = other if isinstance(other, Box) else Box.point(other)
        pairs = [(self.lo, other.lo), (self.lo, other.hi), (self.hi, other.lo), (self.hi, other.hi)]
        exact_zero = [(a == 0) | (b == 0) for a, b in pairs]  # a product with a 0 factor is exactly 0
        low = [np.where(z, 0.0, _down(a * b)) for (a, b), z in zip(pairs, exact_zero)]
        high = [np.where(z, 0.0, _up(a * b)) for (a, b), z in zip(pairs, exact_zero)]
        return Box(np.minimum.reduce(low), np.maximum.reduce(high))

    def divide(self, c: float) -> Box:
        """Division by a positive float constant."""
        return Box(_down(self.lo / c), _up(self.hi / c))

    def sum(self, axis: int = -1) -> Box:
        n = self.lo.shape[axis]
        err_lo, err_hi = (np.where(np.all(a == 0, axis=axis), 0.0,  # a sum of exact zeros is exact
                                   _up((n + 2) * EPS * np.abs(a).sum(axis=axis)) + (n + 2) * TINY)
                          for a in (self.lo, self.hi))
        return Box(_down(self.lo.sum(axis=axis) - err_lo), _up(self.hi.sum(axis=axis) + err_hi))

    def matmul(self, w: np.ndarray) -> Box:
        """[..., d] @ w [d, m], midpoint-radius: the float product's error is at most (d+2) eps |mid| @ |w|."""
        d = w.shape[0]
        point = self.lo == self.hi
        mid = np.where(point, self.lo, self.lo / 2 + self.hi / 2)
        rad = np.where(point, 0.0, _up(np.maximum(_up(self.hi - mid), _up(mid - self.lo))))
        absw = np.abs(w)
        gamma = (d + 4) * EPS
        centre = mid @ w
        spread = _up(_up(_up(np.abs(mid) @ absw) * gamma) * (1 + gamma)) + _up(_up(rad @ absw) * (1 + gamma))
        spread = _up(spread + (d + 4) * TINY)
        # an output whose every product has a 0 factor is exactly 0 (no rounding, no underflow)
        products = ((mid != 0) | (rad != 0)).astype(np.float64) @ (w != 0).astype(np.float64)
        spread = np.where(products == 0, 0.0, spread)
        return Box(np.where(products == 0, 0.0, _down(centre - spread)), np.where(products == 0, 0.0,
                                                                                   _up(centre + spread)))

    def square(self) -> Box:
        a, b = self.lo * self.lo, self.hi * self.hi
        low = np.where((self.lo <= 0) & (self.hi >= 0), 0.0, _down(np.minimum(a, b)))
        return Box(low, _up(np.maximum(a, b)))


def _down_sum(x: np.ndarray) -> np.ndarray:
    """Lower bound of the exact sum whose float is x: a float sum that is 0 is exact (gradual underflow)."""
    return np.where(x == 0, 0.0, _down(x))


def _up_sum(x: np.ndarray) -> np.ndarray:
    return np.where(x == 0, 0.0, _up(x))


def _relu(x: Box) -> Box:
    return Box(np.maximum(x.lo, 0.0), np.maximum(x.hi, 0.0))


def _gelu_at(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) around x * Phi(x): scipy's ndtr is within a few ulp; widened by 1e-12 relative."""
    value = x * ndtr(x)
    pad = np.abs(value) * 1e-12 + 1e-300
    return _down(value - pad), _up(value + pad)


def _gelu(x: Box) -> Box:
    lo_at_lo, hi_at_lo = _gelu_at(x.lo)
    lo_at_hi, hi_at_hi = _gelu_at(x.hi)
    low = np.where(x.hi <= GELU_ARGMIN[0], lo_at_hi, np.where(x.lo >= GELU_ARGMIN[1], lo_at_lo, GELU_MIN_LOW))
    return Box(low, np.maximum(hi_at_lo, hi_at_hi))  # a valley: its maximum on an interval is at an end


def _exp(x: Box) -> Box:
    widen = 64 * EPS
    return Box(np.maximum(_down(np.exp(x.lo) * (1 - widen)), 0.0), _up(np.exp(x.hi) * (1 + widen)))


def _norm(x: Box, weight: np.ndarray, bias: np.ndarray | None, rms: bool) -> Box:
    """LayerNorm (eps 1e-5) or RMSNorm (eps = float64 machine epsilon), as sparse_gpt.forward._norm."""
    d = x.lo.shape[-1]
    if rms:
        centred, eps = x, EPS
    else:
        mean = x.sum(-1).divide(d)
        centred, eps = x - Box(mean.lo[..., None], mean.hi[..., None]), LAYER_NORM_EPS
    var = centred.square().sum(-1).divide(d) + eps
    inv_low = _down(1.0 / _up(np.sqrt(var.hi)))
    inv_high = _up(1.0 / _down(np.sqrt(np.maximum(var.lo, eps))))
    out = centred * Box(inv_low[..., None], inv_high[..., None]) * weight
    return out if bias is None else out + bias


def _abs_top_k(x: Box, k: int) -> tuple[Box, np.ndarray]:
    """(x with the k largest magnitudes kept, decided [rows]): decided when the kept magnitudes are surely above
    the dropped ones, or at most k entries can be non-zero."""
    width = x.lo.shape[-1]
    rows = x.lo.shape[:-1]
    if k >= width:
        return x, np.ones(rows, dtype=bool)
    if k <= 0:
        return Box.point(np.zeros_like(x.lo)), np.ones(rows, dtype=bool)
    mag_lo = np.where(x.lo > 0, x.lo, np.where(x.hi < 0, -x.hi, 0.0))
    mag_hi = np.maximum(np.abs(x.lo), np.abs(x.hi))
    zero = (x.lo == 0) & (x.hi == 0)
    order = np.argsort(-(mag_lo + mag_hi), axis=-1, kind="stable")
    keep = np.zeros(x.lo.shape, dtype=bool)
    np.put_along_axis(keep, order[..., :k], True, axis=-1)
    # the float forward's own values differ from these real ones by rounding: its top k is the same only when the
    # gap between kept and dropped magnitudes is above a bound of that error
    gap = TOPK_GAP * (1.0 + mag_hi.max(axis=-1))
    separated = np.where(keep, mag_lo, np.inf).min(axis=-1) - np.where(keep, -np.inf, mag_hi).max(axis=-1) > gap
    few = (~zero).sum(axis=-1) <= k
    keep = keep | few[..., None]
    return Box(np.where(keep, x.lo, 0.0), np.where(keep, x.hi, 0.0)), separated | few


# ------------------------------------------------------------------------------------------------------------
# The structure


@dataclass(eq=False)
class CheckpointModel:
    """A circuit_sparsity model (``SparseGPT``), its node circuit (or None) and prompt template, as the bounds see
    it. Implements the ``jaxscd.beyond`` model protocol."""

    model: object  # SparseGPT
    circuit: object  # NodeCircuit | None
    template: object  # PromptTemplate
    cubes = False  # no cube trees: only the orbit strategy

    @property
    def config(self):
        return self.model.config

    def param(self, key: str) -> np.ndarray | None:
        value = self.model.params.get(key)
        return None if value is None else np.asarray(value, dtype=np.float64)

    def hooks(self) -> dict:
        if self.circuit is None:
            return {}
        return {loc: (np.asarray(m, dtype=np.float64), np.asarray(u, dtype=np.float64))
                for loc, (m, u) in self.circuit.hooks.items()}

    @property
    def positions(self) -> int:
        """The longest domain sequence whose prompt fits the block size."""
        return self.config.block_size - len(self.template.prefix) - len(self.template.suffix)

    def refusal(self, max_len: int) -> str | None:
        """What structure the counts+last-token symmetry needs and this circuit lacks at lengths up to max_len."""
        config, template = self.config, self.template
        if config.n_layer != 1:
            return f"it has {config.n_layer} layers; the orbit bounds know one-layer checkpoints"
        if config.d_pos_emb:
            return f"position embeddings are concatenated to every block input (d_pos_emb {config.d_pos_emb})"
        prompt = len(template.prefix) + max_len + len(template.suffix)
        wpe = self.param("transformer.wpe.weight")
        nonzero = np.flatnonzero(np.any(wpe[:prompt] != 0, axis=1))
        if len(nonzero):
            return f"position embeddings are not zero (position {int(nonzero[0])} of the prompt)"
        if prompt > config.block_size:
            return (f"prompts of {prompt} positions exceed block_size {config.block_size}: position embeddings are "
                    f"zero, but the circuit's forward refuses prompts longer than its block size")
        for loc, (mask, mean) in self.hooks().items():
            if not np.all((mask == 0) | (mask == 1)) or mean.ndim != 1:
                return f"the ablation at {loc!r} is not a 0/1 mask with one mean for every position"
        return None

    def accepts(self, max_len: int) -> bool:
        return len(self.template.prefix) + max_len + len(self.template.suffix) <= self.config.block_size

    def symmetry(self, max_len: int) -> Symmetry | None:
        if self.refusal(max_len) is not None:
            return None
        return Symmetry(COUNTS_AND_LAST, f"one-layer circuit_sparsity checkpoint: transformer.wpe.weight is 0 on "
                        f"prompt positions 0..{len(self.template.prefix) + max_len + len(self.template.suffix) - 1} "
                        "(checked on every entry), no concatenated position embeddings, ablation masks 0/1 with one "
                        "mean per channel: each position's residual, norms, AbsTopK, q, k and v depend only on its "
                        "token; the last position attends to every position with weights that depend only on their "
                        "tokens and its query, and the decision is read there: a function of the token counts and "
                        "the last token (the prefix and suffix fixed)" + (
                            "; a name standing for a set of model tokens is one slot whose quantities are the hull "
                            "of its members', so each orbit's bounds hold for every choice of members"
                            if self.template.has_sets else ""))

    @property
    def margin(self) -> float:
        return float_margin(self)

    def float_tables(self, max_len: int) -> CheckpointModel:
        return self

    def orbit_classes(self, tables, orb) -> np.ndarray:
        return orbit_classes(self, orb)

    def exact(self, max_len: int):
        from jaxscd.beyond.checkpoint_exact import BallCircuit

        return BallCircuit(self, max_len)


def float_margin(cm: CheckpointModel) -> float:
    """The float-error margin a decision must clear: 4096 ulp of a bound on |logit| (as the reference circuits'
    ``bounds.token_tables``), never below 1e-9. |norm(x)_j| <= sqrt(d) |w_j| + |b_j| for LayerNorm and RMSNorm."""
    d = cm.config.d_model
    weight, bias = cm.param("transformer.ln_f.weight"), cm.param("transformer.ln_f.bias")
    normed = math.sqrt(d) * np.abs(weight) + (0 if bias is None else np.abs(bias))
    columns = [cm.template.alternative, cm.template.target]
    scale = (np.abs(cm.param("lm_head.weight")[columns]) @ normed).max()
    scale += np.abs(cm.param("final_logits_bias")[columns]).max()
    bigram = cm.param("bigram_table")
    if bigram is not None:
        scale += np.abs(bigram[:, columns]).max()
    return max(MIN_MARGIN, float(4096 * EPS * (1.0 + float(scale))))


# ------------------------------------------------------------------------------------------------------------
# The forward in intervals


class _Forward:
    """The one layer in intervals: per-token quantities once, then the last position for rows of orbits."""

    def __init__(self, cm: CheckpointModel):
        self.cm, self.config = cm, cm.config
        self.hook_arrays = cm.hooks()
        template = cm.template
        members = [m for name in template.members for m in name]
        self.tokens = sorted({*template.prefix, *members, *template.suffix})  # model ids in prompts
        # slots: the prefix and suffix tokens, and each name's set of model tokens (one slot when it is one token);
        # a slot's quantities are the hull of its members', computed one token at a time
        self.slots = sorted({*((t,) for t in (*template.prefix, *template.suffix)), *template.members})
        self.index = {slot: i for i, slot in enumerate(self.slots)}
        ok = np.ones(len(self.tokens), dtype=bool)
        x = Box.point(cm.param("transformer.wte.weight")[self.tokens])
        x = self.hook("0.resid_in", x)
        a, ok = self.sparsify(self.norm("transformer.h.0.ln_1", x), "attn_in", ok)
        a = self.hook("0.attn.act_in", a)
        qkv = self.linear("transformer.h.0.attn.c_attn", a)
        d = self.config.d_attn
        q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]
        k, ok = self.sparsify(k, "attn_k", ok)
        q, ok = self.sparsify(q, "attn_q", ok)
        v, ok = self.sparsify(v, "attn_v", ok)
        k, q, v = self.hook("0.attn.k", k), self.hook("0.attn.q", q), self.hook("0.attn.v", v)
        rows = [[self.tokens.index(t) for t in slot] for slot in self.slots]
        hull = lambda b: Box(np.stack([b.lo[r].min(axis=0) for r in rows]),  # noqa: E731
                             np.stack([b.hi[r].max(axis=0) for r in rows]))
        self.x, self.k, self.q, self.v = hull(x), hull(k), hull(q), hull(v)
        self.ok = np.array([ok[r].all() for r in rows])
        bigram = cm.param("bigram_table")
        columns = [template.alternative, template.target]
        self.bigram = None if bigram is None else hull(Box.point(bigram[self.tokens][:, columns]))

    def hook(self, loc: str, x: Box) -> Box:
        if loc not in self.hook_arrays:
            return x
        mask, mean = self.hook_arrays[loc]
        kept = mask == 1
        return Box(np.where(kept, x.lo, mean), np.where(kept, x.hi, mean))

    def sparsify(self, x: Box, loctype: str, ok: np.ndarray) -> tuple[Box, np.ndarray]:
        config = self.config
        if config.afrac is None or loctype not in config.afrac_loctypes:
            return x, ok
        out, decided = _abs_top_k(x, int(config.afrac * x.lo.shape[-1]))
        return out, ok & decided

    def norm(self, prefix: str, x: Box) -> Box:
        return _norm(x, self.cm.param(f"{prefix}.weight"), self.cm.param(f"{prefix}.bias"), self.config.rms_norm)

    def linear(self, prefix: str, x: Box) -> Box:
        out = x.matmul(self.cm.param(f"{prefix}.weight").T)
        bias = self.cm.param(f"{prefix}.bias")
        return out if bias is None else out + bias

    def residual(self, x: Box, loctype: str, ok: np.ndarray) -> tuple[Box, np.ndarray]:
        if self.config.residual_activation_type == "relu":
            x = _relu(x)
        return self.sparsify(x, loctype, ok)

    def attention(self, counts: np.ndarray, query: np.ndarray) -> Box:
        """y [N, d_attn] at the last position: per head, sum_u m_u exp(s_u) v_u / (sum_u m_u exp(s_u) + exp(sink));
        ``counts`` float [N, U] multiplicities of every prompt token, ``query`` int [N] the last token's index."""
        config = self.config
        h, dh = config.n_head, config.d_head
        split = lambda b: Box(b.lo.reshape(-1, h, dh), b.hi.reshape(-1, h, dh))  # noqa: E731
        q, k, v = split(self.q), split(self.k), split(self.v)  # [U, h, dh]
        scores = (Box(q.lo[:, None], q.hi[:, None]) * Box(k.lo[None], k.hi[None])).sum(-1).divide(math.sqrt(dh))
        s = scores[query]  # [N, U, h]
        present = (counts > 0)[..., None]
        sink = self.cm.param("transformer.h.0.attn.attn_imp.sink_logit")
        reference = np.where(present, s.hi, -np.inf).max(axis=1)  # [N, h]
        if sink is not None:
            reference = np.maximum(reference, sink[None])
        shifted = s - Box(reference[:, None], reference[:, None])
        absent = np.broadcast_to(~present, shifted.lo.shape)  # exp(-inf) = 0: absent tokens weigh nothing
        e = _exp(Box(np.where(absent, -np.inf, shifted.lo), np.where(absent, -np.inf, shifted.hi)))  # [N, U, h]
        mass = e * counts[..., None]  # m_u exp(s_u - ref), 0 where absent
        rest_lo = np.stack([np.delete(mass.lo, u, axis=1) for u in range(counts.shape[1])], axis=1)
        rest_hi = np.stack([np.delete(mass.hi, u, axis=1) for u in range(counts.shape[1])], axis=1)
        rest = Box(rest_lo, rest_hi).sum(axis=2)  # [N, U, h]: the other tokens' mass
        if sink is not None:
            rest = rest + _exp(Box.point(sink[None]) - Box(reference, reference))[:, None]
        low_den = _up(mass.lo + rest.hi)
        high_den = _down(mass.hi + rest.lo)
        w_lo = np.where(low_den > 0, _down(mass.lo / np.where(low_den > 0, low_den, 1.0)), 0.0)
        w_hi = np.where(high_den > 0, _up(mass.hi / np.where(high_den > 0, high_den, 1.0)), 1.0)
        w = Box(np.clip(w_lo, 0.0, 1.0), np.clip(w_hi, 0.0, 1.0))  # [N, U, h]
        y = (Box(w.lo[..., None], w.hi[..., None]) * Box(v.lo[None], v.hi[None])).sum(axis=1)  # [N, h, dh]
        return Box(y.lo.reshape(len(query), -1), y.hi.reshape(len(query), -1))

    def logit_difference(self, counts: np.ndarray, query: np.ndarray) -> tuple[Box, np.ndarray]:
        """(target - alternative logit, decided [N]) at the last position."""
        cm, template = self.cm, self.cm.template
        ok = self.ok[query] & np.all(self.ok[None] | (counts == 0), axis=1)  # every present token decided
        y = self.hook("0.attn.y", self.attention(counts, query))
        delta, ok = self.sparsify(self.linear("transformer.h.0.attn.c_proj", y), "attn_out", ok)
        x, ok = self.residual(self.x[query] + self.hook("0.attn.resid_delta", delta), "resid_post_attn", ok)
        x = self.hook("0.resid_mid", x)
        m, ok = self.sparsify(self.norm("transformer.h.0.ln_2", x), "mlp_in", ok)
        m = self.hook("0.mlp.act_in", m)
        pre = self.linear("transformer.h.0.mlp.c_fc", m)
        act = _relu(pre) if self.config.activation_type == "relu" else _gelu(pre)
        act, ok = self.sparsify(act, "mlp_neuron", ok)
        act = self.hook("0.mlp.post_act", act)
        delta, ok = self.sparsify(self.linear("transformer.h.0.mlp.c_proj", act), "mlp_out", ok)
        x, ok = self.residual(x + self.hook("0.mlp.resid_delta", delta), "resid_post_mlp", ok)
        x = self.hook("final_resid", x)
        columns = [template.alternative, template.target]
        out = self.norm("transformer.ln_f", x).matmul(cm.param("lm_head.weight")[columns].T)
        out = out + cm.param("final_logits_bias")[columns]
        if self.bigram is not None:
            out = out + self.bigram[query]
        return out[:, 1] - out[:, 0], ok


def prompt_counts(cm: CheckpointModel, index: dict, counts: np.ndarray, last: np.ndarray) -> tuple:
    """(multiplicities float [N, U] of every prompt slot, index of the last prompt slot [N]) of orbits given by
    domain token counts [N, k] and last domain tokens [N]; ``index``: slot (a tuple of model ids) -> column."""
    template = cm.template
    out = np.zeros((len(counts), len(index)))
    for t in [*template.prefix, *template.suffix]:
        out[:, index[(t,)]] += 1
    for a, slot in enumerate(template.members):
        out[:, index[slot]] += counts[:, a]
    query = np.full(len(counts), index[(template.suffix[-1],)]) if template.suffix else \
        np.asarray([index[slot] for slot in template.members])[last]
    return out, query.astype(np.int64)


def orbit_classes(cm: CheckpointModel, orb) -> np.ndarray:
    """int8 [N]: 1 / 0 where the orbit's decision is surely target / alternative with the margin, -1 undecided."""
    forward, margin = _Forward(cm), cm.margin
    classes = np.full(len(orb), -1, dtype=np.int8)
    for start in range(0, len(orb), CHUNK):
        rows = slice(start, start + CHUNK)
        counts, query = prompt_counts(cm, forward.index, orb.counts[rows], orb.last[rows])
        difference, ok = forward.logit_difference(counts, query)
        classes[rows] = np.where(ok & (difference.lo > margin), 1, np.where(ok & (difference.hi < -margin), 0, -1))
    return classes
