"""A second derivation of the checkpoint orbit bounds (``jaxscd verify``): python-flint's arb ball arithmetic.

Independent of ``checkpoint`` (numpy intervals with np.nextafter): every float64 weight is an exact arb; products,
sums, sqrt, exp and erf are arb's rigorous balls at PREC bits; an AbsTopK counts as decided only when arb proves the
kept magnitudes above the dropped ones (or at most k entries are non-zero); the orbit is decided when arb proves the
logit difference above the margin or below its negative. The structure is re-checked on the arrays here too.
"""

from __future__ import annotations

import math
from fractions import Fraction
from itertools import combinations

import numpy as np
from flint import arb, arb_mat, ctx, fmpq

from jaxscd.beyond.checkpoint import TOPK_GAP, float_margin
from jaxscd.circuits.sparse_gpt.forward import LAYER_NORM_EPS

PREC = 128
RMS_EPS = float(np.finfo(np.float64).eps)


def _vector(a) -> list:
    return [arb(float(v)) for v in np.asarray(a, dtype=np.float64).ravel()]


def _matrix(w: np.ndarray) -> arb_mat:
    """w [d, m] as an arb matrix, exactly."""
    return arb_mat(w.shape[0], w.shape[1], _vector(w))


class BallCircuit:
    """The checkpoint's one layer in arb balls, rows of prompts at a time."""

    def __init__(self, cm, max_len: int):
        self.cm, self.config, self.max_len = cm, cm.config, max_len
        self.margin = float_margin(cm)
        self._tokens = None

    # --- structure, re-derived on the arrays

    def symmetry_holds(self, max_len: int) -> bool:
        config, template = self.config, self.cm.template
        prompt = len(template.prefix) + max_len + len(template.suffix)
        wpe = np.asarray(self.cm.model.params["transformer.wpe.weight"])
        masks = [np.asarray(m) for m, _ in (self.cm.circuit.hooks.values() if self.cm.circuit else [])]
        return (config.n_layer == 1 and not config.d_pos_emb and prompt <= config.block_size
                and wpe.shape[0] >= prompt and not np.any(wpe[:prompt]) and all(np.all((m == 0) | (m == 1))
                                                                                  for m in masks))

    # --- pieces

    def _param(self, key):
        return self.cm.param(key)

    def _hook(self, loc: str, rows: list) -> list:
        hooks = self.cm.circuit.hooks if self.cm.circuit is not None else {}
        if loc not in hooks:
            return rows
        mask, mean = (np.asarray(a, dtype=np.float64) for a in hooks[loc])
        return [[x if mask[j] == 1 else arb(float(mean[j])) for j, x in enumerate(row)] for row in rows]

    def _linear(self, prefix: str, rows: list) -> list:
        w = self._param(f"{prefix}.weight")
        out = (arb_mat(len(rows), w.shape[1], [x for row in rows for x in row]) * _matrix(w.T)).tolist()
        bias = self._param(f"{prefix}.bias")
        return out if bias is None else [[x + b for x, b in zip(row, _vector(bias))] for row in out]

    def _norm(self, prefix: str, rows: list) -> list:
        weight, bias = _vector(self._param(f"{prefix}.weight")), self._param(f"{prefix}.bias")
        bias = None if bias is None else _vector(bias)
        out = []
        for row in rows:
            d = len(row)
            if self.config.rms_norm:
                centred, eps = row, arb(RMS_EPS)
            else:
                mean = sum(row, arb(0)) / d
                centred, eps = [x - mean for x in row], arb(LAYER_NORM_EPS)
            scale = 1 / (sum((c * c for c in centred), arb(0)) / d + eps).sqrt()
            normed = [c * scale * w for c, w in zip(centred, weight)]
            out.append(normed if bias is None else [x + b for x, b in zip(normed, bias)])
        return out

    def _sparsify(self, rows: list, loctype: str, ok: list) -> list:
        config = self.config
        if config.afrac is None or loctype not in config.afrac_loctypes:
            return rows
        out = []
        for i, row in enumerate(rows):
            kept, decided = _abs_top_k(row, int(config.afrac * len(row)))
            ok[i] = ok[i] and decided
            out.append(kept)
        return out

    def _residual(self, rows: list, loctype: str, ok: list) -> list:
        if self.config.residual_activation_type == "relu":
            rows = [[x.max(arb(0)) for x in row] for row in rows]
        return self._sparsify(rows, loctype, ok)

    def _token_rows(self):
        """Per prompt slot (a prefix or suffix token, or a name's set of model tokens): (slots, x, q, k, v,
        decided, bigram rows), each slot's balls the union of its members' balls, computed once."""
        if self._tokens is None:
            template, d = self.cm.template, self.config.d_attn
            tokens = sorted({*template.prefix, *(t for m in template.members for t in m), *template.suffix})
            ok = [True] * len(tokens)
            x = self._hook("0.resid_in", [_vector(r) for r in self._param("transformer.wte.weight")[tokens]])
            a = self._hook("0.attn.act_in", self._sparsify(self._norm("transformer.h.0.ln_1", x), "attn_in", ok))
            qkv = self._linear("transformer.h.0.attn.c_attn", a)
            q, k, v = [r[:d] for r in qkv], [r[d:2 * d] for r in qkv], [r[2 * d:] for r in qkv]
            k = self._hook("0.attn.k", self._sparsify(k, "attn_k", ok))
            q = self._hook("0.attn.q", self._sparsify(q, "attn_q", ok))
            v = self._hook("0.attn.v", self._sparsify(v, "attn_v", ok))
            slots = sorted({*((t,) for t in (*template.prefix, *template.suffix)), *template.members})
            rows = [[tokens.index(t) for t in slot] for slot in slots]
            bigram = self._param("bigram_table")
            columns = [template.alternative, template.target]
            b = None if bigram is None else [[arb(float(bigram[t, c])) for c in columns] for t in tokens]

            def union(values: list, r: list) -> list:
                out = list(values[r[0]])
                for i in r[1:]:
                    out = [a.union(c) for a, c in zip(out, values[i])]
                return out

            self._tokens = (slots, *([union(a, r) for r in rows] for a in (x, q, k, v)),
                            [all(ok[i] for i in r) for r in rows], None if b is None else [union(b, r) for r in rows])
        return self._tokens

    # --- one (length, last token): every orbit

    def orbit_classes(self, n: int, last: int, margin) -> dict:
        """{count vector: 1 / 0 / None} for every orbit of length n whose last domain token is ``last``."""
        old = ctx.prec
        ctx.prec = PREC
        try:
            fraction = Fraction(margin)
            return self._classes(n, last, arb(fmpq(fraction.numerator, fraction.denominator)))
        finally:
            ctx.prec = old

    def _classes(self, n: int, last: int, m: arb) -> dict:
        template, config = self.cm.template, self.config
        slots, x, q, k, v, token_ok, bigram = self._token_rows()
        where = {slot: i for i, slot in enumerate(slots)}
        query = where[(template.suffix[-1],)] if template.suffix else where[template.members[last]]
        vectors = [c for c in _compositions(n, len(template.token_ids)) if c[last] >= 1]
        if not vectors:
            return {}
        h, dh = config.n_head, config.d_head
        root = arb(math.sqrt(dh))
        scores = [[sum((q[query][hh * dh + j] * k[u][hh * dh + j] for j in range(dh)), arb(0)) / root
                   for hh in range(h)] for u in range(len(slots))]
        sink = self._param("transformer.h.0.attn.attn_imp.sink_logit")
        rows, ok = [], []
        for counts in vectors:
            mult = [0] * len(slots)
            for t in (*template.prefix, *template.suffix):
                mult[where[(t,)]] += 1
            for a, slot in enumerate(template.members):
                mult[where[slot]] += counts[a]
            present = [u for u in range(len(slots)) if mult[u]]
            ok.append(token_ok[query] and all(token_ok[u] for u in present))
            y = []
            for hh in range(h):
                weights = {u: mult[u] * scores[u][hh].exp() for u in present}
                total = sum(weights.values(), arb(0)) + (arb(float(sink[hh])).exp() if sink is not None else 0)
                y += [sum((weights[u] * v[u][hh * dh + j] for u in present), arb(0)) / total for j in range(dh)]
            rows.append(y)
        rows = self._hook("0.attn.y", rows)
        delta = self._sparsify(self._linear("transformer.h.0.attn.c_proj", rows), "attn_out", ok)
        delta = self._hook("0.attn.resid_delta", delta)
        resid = self._residual([[a + b for a, b in zip(x[query], row)] for row in delta], "resid_post_attn", ok)
        resid = self._hook("0.resid_mid", resid)
        mid = self._hook("0.mlp.act_in", self._sparsify(self._norm("transformer.h.0.ln_2", resid), "mlp_in", ok))
        pre = self._linear("transformer.h.0.mlp.c_fc", mid)
        if config.activation_type == "relu":
            act = [[p.max(arb(0)) for p in row] for row in pre]
        else:
            half_root = arb(2).sqrt()
            act = [[p * (1 + (p / half_root).erf()) / 2 for p in row] for row in pre]
        act = self._hook("0.mlp.post_act", self._sparsify(act, "mlp_neuron", ok))
        delta = self._hook("0.mlp.resid_delta",
                           self._sparsify(self._linear("transformer.h.0.mlp.c_proj", act), "mlp_out", ok))
        resid = self._residual([[a + b for a, b in zip(r, d)] for r, d in zip(resid, delta)], "resid_post_mlp", ok)
        final = self._norm("transformer.ln_f", self._hook("final_resid", resid))
        columns = [template.alternative, template.target]
        head = self._param("lm_head.weight")[columns]
        offset = self._param("final_logits_bias")[columns]
        out = {}
        for counts, row, decided in zip(vectors, final, ok):
            logit = [sum((a * arb(float(w)) for a, w in zip(row, head[c])), arb(0)) + arb(float(offset[c]))
                     + (bigram[query][c] if bigram is not None else 0) for c in (0, 1)]
            difference = logit[1] - logit[0]
            out[counts] = None if not decided else 1 if difference > m else 0 if difference < -m else None
        return out


def _abs_top_k(row: list, k: int) -> tuple[list, bool]:
    if k >= len(row):
        return row, True
    if k <= 0:
        return [arb(0)] * len(row), True
    nonzero = [j for j, x in enumerate(row) if not x.is_zero()]
    if len(nonzero) <= k:
        return row, True
    order = sorted(range(len(row)), key=lambda j: -float(abs(row[j].mid())))
    kept, dropped = order[:k], order[k:]
    low = min((row[j].abs_lower() for j in kept), key=float)  # exact points; checked exactly below
    top = max((row[j].abs_upper() for j in range(len(row))), key=float)
    gap = arb(TOPK_GAP) * (1 + top)  # as checkpoint._abs_top_k: above the float forward's rounding
    separated = all(row[j].abs_lower() >= low for j in kept) and all(low - row[j].abs_upper() > gap
                                                                      for j in dropped)
    keep = set(kept)
    return [x if j in keep else arb(0) for j, x in enumerate(row)], separated


def _compositions(n: int, k: int):
    """Every k-tuple of non-negative integers summing to n (stars and bars)."""
    for bars in combinations(range(n + k - 1), k - 1):
        edges = (-1,) + bars + (n + k - 1,)
        yield tuple(edges[i + 1] - edges[i] - 1 for i in range(k))
