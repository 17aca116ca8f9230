"""A second derivation of the multi-layer graph cube bounds (``jaxscd verify``): python-flint arb, no floats.

Independent of ``graph_bounds`` (interval numpy with np.nextafter): every float64 weight is an exact arb; an interval
is a pair of exact arb points (lower, upper), each operation's result taken as the lower or upper end of arb's
rigorous ball at PREC bits; exp is arb's. The relaxation is the same (per position and own token a box; the
softmax average bounded by the best choice of token and weight per position, certified by F(y) <= 0 in arb; the
forward's rounding added by the same rules), so every leaf the float bounds decide, these decide too (their
intervals are inside the float ones, up to 2^-100 of a value).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from flint import arb, arb_mat, ctx

from jaxscd.beyond.exact import MIN_MARGIN

PREC = 128
EPS = arb(2) ** -52  # float64 unit roundoff x 2 (machine epsilon), as graph_bounds
TINY = arb(1e-300)
EXP_ULPS, EXP_ARG = 64, 746
STEPS = 60
HUGE = arb(1e300)  # a value past this leaves the cube undecided (the forward may overflow)
ZERO = arb(0)


def _exact(x) -> arb:
    return arb(float(x))


def _matrix(w: np.ndarray) -> arb_mat:
    w = np.atleast_2d(np.asarray(w, dtype=np.float64))
    return arb_mat(w.shape[0], w.shape[1], [arb(float(v)) for v in w.ravel()])


class _Affine:
    """x @ w (+ b) on boxes, as arb matrices of exact points: [lo @ w+ + hi @ w-, hi @ w+ + lo @ w-], widened by
    4 (k + 3) eps (|x| @ |w| (+ |b|)) + TINY, as the float bounds."""

    def __init__(self, w: np.ndarray, b: np.ndarray | None = None):
        w = np.asarray(w, dtype=np.float64)
        self.k, self.m = w.shape
        self.wp, self.wn, self.wa = _matrix(np.maximum(w, 0.0)), _matrix(np.minimum(w, 0.0)), _matrix(np.abs(w))
        self.b = None if b is None else [_exact(v) for v in b]
        self.factor = 4 * (self.k + 3) * EPS

    def __call__(self, lo: list, hi: list):
        """lo, hi: lists of rows (lists of exact arb points); returns the same for the image."""
        if not lo:
            return [], []
        rows = len(lo)
        lo_m = arb_mat(rows, self.k, [x for row in lo for x in row])
        hi_m = arb_mat(rows, self.k, [x for row in hi for x in row])
        abs_m = arb_mat(rows, self.k, [a for ra, rb in zip(lo, hi) for a in _abs_max_pair(ra, rb)])
        out_lo = (lo_m * self.wp + hi_m * self.wn).tolist()
        out_hi = (hi_m * self.wp + lo_m * self.wn).tolist()
        mag = (abs_m * self.wa).tolist()
        res_lo, res_hi = [], []
        for r in range(rows):
            row_lo, row_hi = [], []
            for c in range(self.m):
                a, b, g = out_lo[r][c], out_hi[r][c], mag[r][c]
                if self.b is not None:
                    a, b, g = a + self.b[c], b + self.b[c], g + abs(self.b[c])
                err = self.factor * g + TINY
                row_lo.append((a - err).lower())
                row_hi.append((b + err).upper())
            res_lo.append(row_lo)
            res_hi.append(row_hi)
        return res_lo, res_hi


def _abs_max_pair(lo: list, hi: list) -> list:
    """max(|lo|, |hi|) per entry (exact points)."""
    out = []
    for a, b in zip(lo, hi):
        a, b = abs(a), abs(b)
        out.append(a if a >= b else b)
    return out


def _box_dot(a_lo, a_hi, b_lo, b_hi) -> tuple[arb, arb]:
    """Sum of box products, widened by 4 (k + 3) eps sum max|a| max|b| + TINY."""
    lo, hi, mag = ZERO, ZERO, ZERO
    for al, ah, bl, bh in zip(a_lo, a_hi, b_lo, b_hi):
        if al == ah and bl == bh:
            p = al * bl
            lo, hi = lo + p.lower(), hi + p.upper()
        elif al == ah:
            p, q = al * bl, al * bh
            lo, hi = lo + min(p.lower(), q.lower()), hi + max(p.upper(), q.upper())
        elif bl == bh:
            p, q = al * bl, ah * bl
            lo, hi = lo + min(p.lower(), q.lower()), hi + max(p.upper(), q.upper())
        else:
            ps = (al * bl, al * bh, ah * bl, ah * bh)
            lo, hi = lo + min(p.lower() for p in ps), hi + max(p.upper() for p in ps)
        mag = mag + max(abs(al), abs(ah)) * max(abs(bl), abs(bh))
    err = 4 * (len(a_lo) + 3) * EPS * mag + TINY
    return (lo - err).lower(), (hi + err).upper()


def _average_upper(choices: list, channel: int) -> arb:
    """Upper bound of sum_j e_j z_j / sum_j e_j; ``choices``: per position present, a list of (e_lo, e_hi, z_hi
    per channel) per token. Dinkelbach's iteration, then F(y) <= 0 certified in arb; else max z."""
    z_max = max(z[channel] for position in choices for _, _, z in position)
    y = min(z[channel] for position in choices for _, _, z in position)
    for _ in range(STEPS):
        num, den = ZERO, ZERO
        for position in choices:
            best, best_val = None, None
            for e_lo, e_hi, z in position:
                d = z[channel] - y
                e = e_hi if d > 0 else e_lo
                val = e * d
                if best is None or val > best_val:
                    best, best_val = (e, z[channel]), val
            num, den = num + best[0] * best[1], den + best[0]
        if not den > 0:
            break
        y_new = (num / den).mid()
        if not y_new > y:
            break
        y = y_new
    spread = abs(z_max) + abs(y)
    for attempt in range(4):
        total = ZERO
        for position in choices:
            terms = []
            for e_lo, e_hi, z in position:
                d = z[channel] - y
                terms.append((e_hi * d) if d.lower() >= 0 else (e_lo * d) if d.upper() <= 0 else
                             max((e_hi * d).upper(), (e_lo * d).upper()))
            total = total + max(t.upper() for t in terms)
        if total.upper() <= 0:
            return y if y < z_max else z_max
        y = (y + spread * arb(2) ** (-100 + 20 * attempt) + TINY).upper()
    return z_max


class BallGraph:
    """The graph's cube bounds in arb: ``cube_class(n, allowed, margin)`` for ``recheck_cubes``."""

    def __init__(self, graph, max_len: int):
        ctx.prec = PREC
        self.graph, self.max_len = graph, max_len
        self.n_tokens, self.width = graph.embed.shape
        self.margin = _margin(graph)
        self.layers = []
        for layer in graph.layers:
            heads = []
            for h in layer.heads:
                written = [c for c in range(self.width) if np.any(h.w_o[:, c] != 0)]
                w_o = h.w_o[:, written]
                heads.append((h.query, _Affine(h.w_q), _Affine(h.w_k), _Affine(h.w_v), _Affine(w_o), written,
                              [[abs(_exact(v)) for v in row] for row in w_o], h.w_v.shape[1]))
            mlp = None if layer.mlp is None else (_Affine(layer.mlp.w_in, layer.mlp.b_in), _Affine(layer.mlp.w_out))
            self.layers.append((heads, mlp))
        ro = graph.readout
        self.r = [_exact(a) - _exact(b) for a, b in zip(ro[:, 1], ro[:, 0])]  # exact: two floats' difference
        self.ro_abs = [abs(_exact(a)) + abs(_exact(b)) for a, b in zip(ro[:, 0], ro[:, 1])]

    def _start(self, i: int, u: int) -> list:
        """The forward's fl(embed[u] + pos[i]) enclosed: the exact sum within half an ulp."""
        g = self.graph
        row = []
        for c in range(self.width):
            e = _exact(g.embed[u, c])
            if g.pos_embed is None:
                row.append((e, e))
                continue
            s = e + _exact(g.pos_embed[i, c])
            half = abs(s) * EPS / 2 + TINY
            row.append(((s - half).lower(), (s + half).upper()))
        return row

    def decision_bounds(self, n: int, allowed: list) -> dict | None:
        """{last token allowed: (lower, upper) of logit_1 - logit_0 of the float64 forward on the cube}, or None
        where a value passes 1e300 (the forward may overflow)."""
        ctx.prec = PREC
        pairs = [(i, u) for i in range(n) for u in sorted(allowed[i])]
        index = {p: r for r, p in enumerate(pairs)}
        lo, hi = [], []
        for i, u in pairs:
            row = self._start(i, u)
            lo.append([a for a, _ in row])
            hi.append([b for _, b in row])
        for heads, mlp in self.layers:
            if heads:
                outs = [self._head(head, lo, hi, n, allowed, pairs, index) for head in heads]
                lo, hi = _add([(lo, hi)] + outs)
            if mlp is not None:
                pre_lo, pre_hi = mlp[0](lo, hi)
                relu = [[x if x > 0 else ZERO for x in row] for row in pre_lo], \
                    [[x if x > 0 else ZERO for x in row] for row in pre_hi]
                lo, hi = _add([(lo, hi), mlp[1](*relu)])
            if any(abs(x) > HUGE for rows in (lo, hi) for row in rows for x in row):
                return None
        out = {}
        for u in sorted(allowed[n - 1]):
            x_lo, x_hi = lo[index[n - 1, u]], hi[index[n - 1, u]]
            d_lo, d_hi = _box_dot(x_lo, x_hi, self.r, self.r)
            mag = sum((max(abs(a), abs(b)) * w for a, b, w in zip(x_lo, x_hi, self.ro_abs)), ZERO)
            err = 4 * (self.width + 3) * EPS * mag + TINY
            out[u] = ((d_lo - err).lower(), (d_hi + err).upper())
        return out

    def cube_class(self, n: int, allowed: list, margin: Fraction) -> int | None:
        """1 / 0 when every last token the cube allows gives logit_1 - logit_0 above the margin / below minus it
        on all its sequences, else None."""
        bounds = self.decision_bounds(n, allowed)
        if bounds is None:
            return None
        threshold = arb(margin.numerator) / margin.denominator * (1 + 4 * EPS)
        classes = {1 if lo > threshold else 0 if hi < -threshold else None for lo, hi in bounds.values()}
        return classes.pop() if len(classes) == 1 else None

    def _head(self, head, lo, hi, n, allowed, pairs, index):
        query, w_q, w_k, w_v, w_o, written, w_o_abs, d_value = head
        out_lo = [[ZERO] * self.width for _ in pairs]
        out_hi = [[ZERO] * self.width for _ in pairs]
        if not written:
            return out_lo, out_hi
        queries = [r for r, (i, _) in enumerate(pairs) if query == "all" or i == n - 1]
        q_lo, q_hi = w_q([lo[r] for r in queries], [hi[r] for r in queries])
        k_lo, k_hi = w_k(lo, hi)
        v_lo, v_hi = w_v(lo, hi)
        z_lo, z_hi = w_o(v_lo, v_hi)
        v_max = [max(max(abs(v_lo[r][k]), abs(v_hi[r][k])) for r in range(len(pairs))) for k in range(d_value)]
        rho = (2 * (EXP_ULPS + EXP_ARG + 4) + 4 * (n + d_value + 4)) * EPS
        widen = []
        for c in range(len(written)):
            mag = sum((v_max[k] * w_o_abs[k][c] for k in range(d_value)), ZERO)
            widen.append(rho * mag + TINY * (1 + mag))
        for qrow, r in enumerate(queries):
            i, u = pairs[r]
            keys = [index[j, t] for j in range(i) for t in sorted(allowed[j])] + [r]
            if query == "last":
                keys = [index[j, t] for j in range(n - 1) for t in sorted(allowed[j])] + [r]
            scores = {key: _box_dot(q_lo[qrow], q_hi[qrow], k_lo[key], k_hi[key]) for key in keys}
            reference = max(s_hi for _, s_hi in scores.values())
            positions = {}
            for key in keys:
                s_lo, s_hi = scores[key]
                e_lo, e_hi = (s_lo - reference).exp().lower(), (s_hi - reference).exp().upper()
                positions.setdefault(pairs[key][0], []).append((e_lo, e_hi, key))
            up = [[(e_lo, e_hi, z_hi[key]) for e_lo, e_hi, key in p] for p in positions.values()]
            down = [[(e_lo, e_hi, [-z for z in z_lo[key]]) for e_lo, e_hi, key in p] for p in positions.values()]
            for c, channel in enumerate(written):
                y_hi = _average_upper(up, c)
                y_lo = -_average_upper(down, c)
                out_lo[r][channel] = (y_lo - widen[c]).lower()
                out_hi[r][channel] = (y_hi + widen[c]).upper()
        return out_lo, out_hi


def _add(terms: list):
    """Interval sum of boxes (lists of rows), widened by 4 (terms + 2) eps sum |terms| + TINY."""
    factor = 4 * (len(terms) + 2) * EPS
    rows, width = len(terms[0][0]), len(terms[0][0][0]) if terms[0][0] else 0
    lo_out, hi_out = [], []
    for r in range(rows):
        row_lo, row_hi = [], []
        for c in range(width):
            lo, hi, mag = ZERO, ZERO, ZERO
            for t_lo, t_hi in terms:
                a, b = t_lo[r][c], t_hi[r][c]
                lo, hi = lo + a, hi + b
                mag = mag + max(abs(a), abs(b))
            err = factor * mag + TINY
            row_lo.append((lo - err).lower())
            row_hi.append((hi + err).upper())
        lo_out.append(row_lo)
        hi_out.append(row_hi)
    return lo_out, hi_out


def _margin(graph) -> Fraction:
    """The float-error floor of ``graph_bounds.graph_margin``, re-derived in rationals: 4096 eps (1 + sum_c
    (|ro_0| + |ro_1|) (max |embed_c| + max |pos_c|)), never below 1e-9."""
    readout = [Fraction(float(abs(a))) + Fraction(float(abs(b))) for a, b in graph.readout]
    rows = [max(Fraction(float(abs(v))) for v in column) for column in graph.embed.T]
    if graph.pos_embed is not None and graph.pos_embed.size:
        rows = [r + max(Fraction(float(abs(v))) for v in column) for r, column in zip(rows, graph.pos_embed.T)]
    scale = sum((a * b for a, b in zip(readout, rows)), Fraction(0))
    return max(MIN_MARGIN, Fraction(4096) * Fraction(1, 2**52) * (1 + scale))
