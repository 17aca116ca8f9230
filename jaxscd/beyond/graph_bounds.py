"""Sound cube bounds for JSON circuit graphs of any number of layers (``GraphModel``): float intervals, outward
rounded, that contain every value the float64 forward (``jaxscd.circuits.graph._forward``) computes on every
sequence of a cube (a length n and a set of allowed tokens per position).

State. For every position i and every token u allowed there, a box (lower/upper per residual channel) holding the
residual stream x_i of every sequence of the cube with t_i = u: the position's own token stays exact (at the first
layer every box is the point fl(embed[u] + pos_embed[i]), which is what the forward computes), every other
position's influence is a box.

Layers, each operation an interval enclosure widened by a rigorous bound of the float error of *both* this
computation and the forward's (any summation order, FMA or not): a dot product or matrix product of k terms by
4 (k + 2) eps sum |terms|; additions likewise; exp by 64 ulp (libm and XLA are within a few) plus the rounding of
its argument. A head: per query (i, u), keys (j, t) with j <= i ("all"; j = i only with t = u) or every j ("last",
i = n-1), scores q . k in box products, e = exp(score - reference) bracketed. The softmax average of each written
channel (values v W_o, one interval per (j, t)) is bounded *tightly* for independent positions: the maximum of
sum_j e_j z_j / sum_j e_j, each position choosing a token t and a weight e in its bracket, is the y with
F(y) = sum_j max_t max_e e (z_hi - y) = 0 (Dinkelbach's iteration finds it); the bound is certified by evaluating
F(y) <= 0 with upward rounding (then no choice gives a ratio above y), else the plain max of z. The minimum is the
same on -z. The forward's softmax differs from the exact one of its float scores by a relative error of the
weights (exp, its argument, the sum and the division) and the rounding of the average and of W_o; that is added
as rho * sum_k max|v_k| |W_o[k, c]|. MLPs: interval affine maps and relu. A non-finite value anywhere leaves the
cube undecided.

Decision: for each last token u allowed, D = logit_1 - logit_0 at position n-1 in an interval (x . (readout_1 -
readout_0), plus the forward's rounding of both logits); class 1 when its lower end is above the margin, 0 when its
upper end is below minus the margin, else undecided. Because the intervals contain the float64 forward's values,
the float64 circuit decides that class with a gap above the margin on every sequence of the cube.

``jaxscd verify`` re-derives every leaf with ``graph_exact`` (python-flint arb, no float arithmetic shared).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from jaxscd.beyond.bounds import EPS, MAX_CUBES, MIN_MARGIN, CubeTree, _down, _exp_bracket, _split_last, _up, \
    grow_cube_tree

TINY = 1e-300  # absolute slack for subnormal underflow in any sum (far above n * 2^-1074)
EXP_ULPS = 64  # relative error allowed to exp (libm and XLA's exp are within a few ulp)
EXP_ARG = 746  # |exp argument| above which exp underflows to 0: its argument's rounding costs at most this * eps
DINKELBACH_STEPS = 60
HUGE = 1e300  # a residual value past this leaves the cube undecided (the forward may overflow)


def graph_margin(graph) -> Fraction:
    """The float-error floor a decision must clear (as ``bounds.token_tables``), in rationals: 4096 eps (1 + sum_c
    (|ro_0| + |ro_1|) (max |embed_c| + max |pos_c|)), never below 1e-9. The bounds already contain the forward's
    rounding; this is the exhaustive pass's trust rule, kept the same at length."""
    readout = [Fraction(float(abs(a))) + Fraction(float(abs(b))) for a, b in graph.readout]
    rows = [max(Fraction(float(abs(v))) for v in column) for column in graph.embed.T]
    if graph.pos_embed is not None and graph.pos_embed.size:
        rows = [r + max(Fraction(float(abs(v))) for v in column) for r, column in zip(rows, graph.pos_embed.T)]
    scale = sum((a * b for a, b in zip(readout, rows)), Fraction(0))
    return max(Fraction(MIN_MARGIN), Fraction(4096) * Fraction(EPS) * (1 + scale))


def _widen(lo: np.ndarray, hi: np.ndarray, err: np.ndarray):
    return _down(lo - err), _up(hi + err)


def _affine(lo: np.ndarray, hi: np.ndarray, w: np.ndarray, b: np.ndarray | None = None):
    """Box [..., D] @ w [D, K] (+ b): the exact range, widened for this product's and the forward's rounding."""
    wp, wn = np.maximum(w, 0.0), np.minimum(w, 0.0)
    out_lo, out_hi = lo @ wp + hi @ wn, hi @ wp + lo @ wn
    mag = np.maximum(np.abs(lo), np.abs(hi)) @ np.abs(w)
    if b is not None:
        out_lo, out_hi, mag = out_lo + b, out_hi + b, mag + np.abs(b)
    return _widen(out_lo, out_hi, _up(4 * (w.shape[0] + 3) * EPS * mag) + TINY)


def _box_dot(a_lo, a_hi, b_lo, b_hi):
    """Sum over the last axis of box products (broadcast), widened for both roundings."""
    corners = (a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi)
    lo = np.minimum(np.minimum(corners[0], corners[1]), np.minimum(corners[2], corners[3])).sum(axis=-1)
    hi = np.maximum(np.maximum(corners[0], corners[1]), np.maximum(corners[2], corners[3])).sum(axis=-1)
    mag = (np.maximum(np.abs(a_lo), np.abs(a_hi)) * np.maximum(np.abs(b_lo), np.abs(b_hi))).sum(axis=-1)
    return _widen(lo, hi, _up(4 * (a_lo.shape[-1] + 3) * EPS * mag) + TINY)


def _add(terms: list):
    """Interval sum of boxes (lo, hi), widened for this sum's and the forward's rounding."""
    lo = sum(t[0] for t in terms)
    hi = sum(t[1] for t in terms)
    mag = sum(np.maximum(np.abs(t[0]), np.abs(t[1])) for t in terms)
    return _widen(lo, hi, _up(4 * (len(terms) + 2) * EPS * mag) + TINY)


def _average_upper(e_lo, e_hi, valid, z):
    """Upper bound [Q, C] of sum_j e_j z_j / sum_j e_j over every choice, per position j present for query q, of a
    token t with valid[q, j, t] and a weight e in [e_lo, e_hi][q, j, t] (z [J, T, C] the value's upper end).
    Dinkelbach's iteration gives the candidate y; F(y) <= 0 in upward rounding certifies it; else max z."""
    j_count = valid.shape[1]
    present = valid.any(axis=2)  # [Q, J]
    ok = valid[..., None]
    el, eh, zz = e_lo[..., None], e_hi[..., None], z[None]
    z_max = np.where(ok, zz, -np.inf).max(axis=(1, 2))  # [Q, C]
    y = np.where(ok, zz, np.inf).min(axis=(1, 2))
    for _ in range(DINKELBACH_STEPS):
        d = zz - y[:, None, None, :]
        w = np.where(d > 0, eh, el)
        best = np.where(ok, w * d, -np.inf).argmax(axis=2)[:, :, None, :]  # [Q, J, 1, C]
        wb = np.take_along_axis(np.broadcast_to(w, d.shape), best, axis=2)[:, :, 0]
        zb = np.take_along_axis(np.broadcast_to(zz, d.shape), best, axis=2)[:, :, 0]
        wb = np.where(present[..., None], wb, 0.0)
        num, den = (wb * zb).sum(axis=1), wb.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            y_new = np.where(den > 0, num / np.where(den > 0, den, 1.0), y)
        if not (y_new > y).any():
            break
        y = np.maximum(y, y_new)
    certified = np.zeros(y.shape, dtype=bool)
    spread = np.where(np.isfinite(z_max), np.abs(z_max), 0.0) + np.abs(np.where(np.isfinite(y), y, 0.0))
    for _ in range(4):
        d = _up(zz - y[:, None, None, :])
        term = np.where(d >= 0, _up(eh * d), _up(el * d))
        term = np.where(ok, term, -np.inf).max(axis=2)
        term = np.where(present[..., None], term, 0.0)  # [Q, J, C]
        error = _up((j_count + 2) * EPS * np.abs(term).sum(axis=1)) + (j_count + 2) * 5e-324
        with np.errstate(invalid="ignore"):
            certified = _up(term.sum(axis=1) + error) <= 0
        if certified.all():
            break
        y = np.where(certified, y, _up(y + 1e-13 * spread + 1e-300))
    with np.errstate(invalid="ignore"):
        return np.where(certified, np.minimum(y, z_max), z_max)


@dataclass(frozen=True)
class _Head:
    query: str
    w_q: np.ndarray
    w_k: np.ndarray
    w_v: np.ndarray
    w_o: np.ndarray  # [d_value, C]: the written channels only
    written: np.ndarray  # [C] channel indices


@dataclass
class Evaluation:
    """One cube's bounds: D per last token, and what the split rule reads."""

    d_lo: np.ndarray  # [V]
    d_hi: np.ndarray  # [V]
    finite: bool
    sensitivity: np.ndarray  # [n]: how much each position's token set widens some head's average
    keys: np.ndarray  # [n, V]: per token, its value midpoint in that head (groups tokens when splitting)


class GraphBounds:
    """The float bounds of one graph up to ``max_len`` (``GraphModel.float_tables``); ``margin`` the float margin."""

    def __init__(self, graph, max_len: int):
        self.graph, self.max_len = graph, max_len
        self.n_tokens, self.width = graph.embed.shape
        self.margin_exact = graph_margin(graph)
        self.margin = float(self.margin_exact)
        if Fraction(self.margin) < self.margin_exact:
            self.margin = float(_up(np.float64(self.margin)))
        x0 = np.broadcast_to(graph.embed[None], (max_len, self.n_tokens, self.width))
        if graph.pos_embed is not None:
            x0 = graph.embed[None] + graph.pos_embed[:max_len, None, :]  # fl(embed + pos): what the forward computes
        self.x0 = np.ascontiguousarray(x0)
        self.layers = []
        for layer in graph.layers:
            heads = []
            for h in layer.heads:
                written = np.flatnonzero(np.any(h.w_o != 0, axis=0))
                heads.append(_Head(h.query, h.w_q, h.w_k, h.w_v, h.w_o[:, written], written))
            self.layers.append((heads, layer.mlp))
        ro = graph.readout
        r = ro[:, 1] - ro[:, 0]
        self.r_lo, self.r_hi = _down(r), _up(r)
        self.ro_abs = np.abs(ro[:, 0]) + np.abs(ro[:, 1])
        self.threshold = float(_up(np.float64(self.margin) * (1 + 4 * EPS)))
        self._recent: dict = {}

    # --- one cube

    def evaluate(self, n: int, allowed: np.ndarray) -> Evaluation:
        key = (n, allowed.tobytes())
        if key in self._recent:
            return self._recent[key]
        result = self._evaluate(n, allowed)
        self._recent[key] = result
        while len(self._recent) > 16:  # the cube, its candidate children: what the split rule and grow reuse
            del self._recent[next(iter(self._recent))]
        return result

    def _evaluate(self, n: int, allowed: np.ndarray) -> Evaluation:
        v = self.n_tokens
        lo, hi = self.x0[:n].copy(), self.x0[:n].copy()
        sensitivity, keys = np.zeros(n), np.zeros((n, v))
        finite = True
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            for heads, mlp in self.layers:
                if heads:
                    outs = [self._head(h, lo, hi, n, allowed, sensitivity, keys) for h in heads]
                    lo, hi = _add([(lo, hi)] + outs)
                if mlp is not None:
                    pre_lo, pre_hi = _affine(lo, hi, mlp.w_in, mlp.b_in)
                    out = _affine(np.maximum(pre_lo, 0.0), np.maximum(pre_hi, 0.0), mlp.w_out)
                    lo, hi = _add([(lo, hi), out])
                mask = allowed[:, :, None]
                if not ((np.abs(np.where(mask, lo, 0.0)) <= HUGE).all() and
                        (np.abs(np.where(mask, hi, 0.0)) <= HUGE).all()):
                    finite = False  # NaN, infinite, or so large the forward may overflow
                    break
            d_lo, d_hi = np.full(v, -np.inf), np.full(v, np.inf)
            if finite:
                last_lo, last_hi = lo[n - 1], hi[n - 1]  # [V, D]
                d_lo, d_hi = _box_dot(last_lo, last_hi, self.r_lo, self.r_hi)
                mag = np.maximum(np.abs(last_lo), np.abs(last_hi)) @ self.ro_abs
                d_lo, d_hi = _widen(d_lo, d_hi, _up(4 * (self.width + 3) * EPS * mag) + TINY)
                ok = np.isfinite(d_lo) & np.isfinite(d_hi)
                d_lo, d_hi = np.where(ok, d_lo, -np.inf), np.where(ok, d_hi, np.inf)
        return Evaluation(d_lo, d_hi, finite, sensitivity, keys)

    def _head(self, head: _Head, lo, hi, n: int, allowed, sensitivity, keys):
        v = self.n_tokens
        if head.query == "all":
            qi, qu = np.nonzero(allowed)
        else:
            qu = np.flatnonzero(allowed[n - 1])
            qi = np.full(len(qu), n - 1)
        out_lo, out_hi = np.zeros_like(lo), np.zeros_like(hi)
        if not len(head.written):
            return out_lo, out_hi
        q_lo, q_hi = _affine(lo[qi, qu], hi[qi, qu], head.w_q)  # [Q, dh]
        k_lo, k_hi = _affine(lo, hi, head.w_k)  # [n, V, dh]
        v_lo, v_hi = _affine(lo, hi, head.w_v)  # [n, V, dv]
        z_lo, z_hi = _affine(v_lo, v_hi, head.w_o)  # [n, V, C]
        j = np.arange(n)[None, :, None]
        t = np.arange(v)[None, None, :]
        own = (j == qi[:, None, None]) & (t == qu[:, None, None])
        valid = (allowed[None] & (j < qi[:, None, None])) | own  # [Q, n, V]
        s_lo, s_hi = _box_dot(q_lo[:, None, None, :], q_hi[:, None, None, :], k_lo[None], k_hi[None])
        s_lo, s_hi = np.where(valid, s_lo, -np.inf), np.where(valid, s_hi, -np.inf)
        reference = s_hi.max(axis=(1, 2), keepdims=True)
        reference = np.where(np.isfinite(reference), reference, 0.0)
        e_lo, e_hi = _exp_bracket(_down(s_lo - reference), _up(s_hi - reference))
        e_lo, e_hi = np.where(valid, e_lo, 0.0), np.where(valid, e_hi, 0.0)
        y_hi = _average_upper(e_lo, e_hi, valid, z_hi)
        y_lo = -_average_upper(e_lo, e_hi, valid, -z_lo)
        # the forward's softmax: relative weight error (exp, its argument, the sum, the division) and the rounding
        # of the average and of W_o, on sum_k max|v_k| |W_o[k, c]|
        used = allowed[:, :, None]
        v_max = np.where(used, np.maximum(np.abs(v_lo), np.abs(v_hi)), 0.0).max(axis=(0, 1))
        mag = v_max @ np.abs(head.w_o)
        rho = (2 * (EXP_ULPS + EXP_ARG + 4) + 4 * (n + head.w_v.shape[1] + 4)) * EPS
        y_lo, y_hi = _widen(y_lo, y_hi, _up(rho * mag) + TINY * (1 + mag))
        rows = (qi[:, None], qu[:, None], head.written[None, :])
        out_lo[rows], out_hi[rows] = y_lo, y_hi
        self._sense(e_lo, e_hi, valid, z_lo, z_hi, allowed, sensitivity, keys)
        return out_lo, out_hi

    @staticmethod
    def _sense(e_lo, e_hi, valid, z_lo, z_hi, allowed, sensitivity, keys):
        """Heuristic (no soundness role): for each position with more than one token, the largest weight a query
        may give it times the spread of its tokens' values (lowest to highest); the tokens' value midpoints in the
        channel where that is reached (they group the tokens when the position is split)."""
        present = valid.any(axis=2)
        eh = np.where(valid, e_hi, 0.0).max(axis=2)  # [Q, n]
        el = np.where(valid, e_lo, np.inf).min(axis=2)
        el = np.where(present, el, 0.0)
        others = el.sum(axis=1, keepdims=True) - el
        with np.errstate(invalid="ignore", divide="ignore"):
            weight = np.where(present, eh / np.maximum(eh + others, 1e-300), 0.0).max(axis=0)  # [n]
        used = allowed[:, :, None]
        mids = (z_lo + z_hi) / 2  # [n, V, C]
        spread = np.where(used, z_hi, -np.inf).max(axis=1) - np.where(used, z_lo, np.inf).min(axis=1)  # [n, C]
        spread = np.where(np.isfinite(spread), spread, 0.0)
        score = weight[:, None] * spread
        several = allowed.sum(axis=1) > 1
        channel = score.argmax(axis=1)
        best = score.max(axis=1)
        better = several & (best > sensitivity)
        for position in np.flatnonzero(better):
            sensitivity[position] = best[position]
            c = channel[position]
            keys[position] = mids[position, :, c]

    # --- decisions and the split rule

    def classes(self, n: int, allowed: np.ndarray) -> dict:
        """{last token allowed: 1 / 0 / None}."""
        ev = self.evaluate(n, allowed)
        out = {}
        for u in np.flatnonzero(allowed[n - 1]).tolist():
            out[u] = 1 if ev.d_lo[u] > self.threshold else 0 if ev.d_hi[u] < -self.threshold else None
        return out

    def cube_class(self, n: int, allowed: np.ndarray) -> int | None:
        values = set(self.classes(n, allowed).values())
        return values.pop() if len(values) == 1 else None

    def split(self, n: int, allowed: np.ndarray, classes: dict):
        """(position, group) or None: the last position when its tokens' classes differ; else the inner position
        (with more than one token) of largest sensitivity, ties to the latest, its tokens cut at the widest gap of
        their value midpoints; else the last position in halves."""
        if len(set(classes.values())) > 1:
            return n - 1, _split_last(classes)
        inner = np.flatnonzero(allowed[:n - 1].sum(axis=1) > 1)
        if len(inner):
            ev = self.evaluate(n, allowed)
            sens = np.nan_to_num(ev.sensitivity[inner], nan=0.0, posinf=np.finfo(np.float64).max)
            j = int(inner[len(inner) - 1 - int(np.argmax(sens[::-1]))])
            tokens = np.flatnonzero(allowed[j])
            mids = np.nan_to_num(ev.keys[j, tokens])
            order = tokens[np.argsort(mids, kind="stable")]
            gaps = np.diff(np.sort(mids))
            cut = int(np.argmax(gaps)) + 1 if len(gaps) and gaps.max() > 0 else len(tokens) // 2
            return j, sorted(order[:cut].tolist())
        if len(classes) > 1:
            return n - 1, sorted(classes)[:len(classes) // 2]
        return None

    def cube_tree(self, lengths, precondition=None, deadline: float | None = None,
                  max_cubes: int = MAX_CUBES) -> CubeTree:
        return grow_cube_tree(lengths, self.n_tokens, self.classes, self.split, precondition, max_cubes, deadline)

