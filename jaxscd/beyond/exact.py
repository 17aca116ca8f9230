"""A second, float-free derivation of the long-context bounds (``jaxscd verify``): Python integers and rationals.

Independent of ``circuit_bounds`` (which brackets floats with np.nextafter): the circuit's per-(position, token)
quantities are exact rationals of its float64 weights; exp is bounded by a Taylor series with an alternating
remainder and repeated squaring, rounded outward to 96 significant bits; each term of the decision test is then
floored (or ceiled) to an integer at a fixed scale 2^-SCALE_BITS, so every sum is exact integer arithmetic.
"""

from __future__ import annotations

import math
from fractions import Fraction
from itertools import combinations

import numpy as np

BITS = 96  # significant bits kept by the outward-rounded exp
SCALE_BITS = 4096  # terms are integers in units of 2^-SCALE_BITS (e^-2800 still has bits left)
MIN_MARGIN = Fraction(1, 10**9)


def _round(x: Fraction, up: bool) -> Fraction:
    """x > 0 rounded down (or up) to BITS significant bits."""
    shift = BITS - (x.numerator.bit_length() - x.denominator.bit_length())
    scaled = x * (Fraction(2) ** shift)
    whole = -(-scaled.numerator // scaled.denominator) if up else scaled.numerator // scaled.denominator
    return Fraction(whole) / (Fraction(2) ** shift)


def exp_interval(y: Fraction) -> tuple[Fraction, Fraction]:
    """Rational (low, high) around exp(y) for y <= 0."""
    if y > 0:
        raise ValueError(f"exp_interval needs y <= 0, got {y}")
    if y == 0:
        return Fraction(1), Fraction(1)
    k = math.ceil(-y)
    f = y / k  # in [-1, 0): the Taylor terms alternate and shrink, so partial sums bracket exp(f)
    term, total, sums = Fraction(1), Fraction(1), []
    for i in range(1, 26):
        term = term * f / i
        total += term
        sums.append(total)
    low, high = _round(min(sums[-2:]), False), _round(max(sums[-2:]), True)
    result_low, result_high = Fraction(1), Fraction(1)
    while k:  # (low, high) ** k by squaring, rounded outward
        if k & 1:
            result_low, result_high = _round(result_low * low, False), _round(result_high * high, True)
        low, high, k = _round(low * low, False), _round(high * high, True), k >> 1
    return result_low, result_high


def _vector_matrix(x: list, m: np.ndarray) -> list:
    return [sum((x[d] * Fraction(float(m[d, j])) for d in range(len(x))), Fraction(0)) for j in range(m.shape[1])]


class ExactCircuit:
    """Per-(position, token) residual quantities of a OneLayerCircuit as exact rationals."""

    def __init__(self, model, positions: int):
        w = model.arrays()
        self.model = model
        r = (w["readout"][:, 1] - w["readout"][:, 0])
        self.positions, self.n_tokens = positions, w["embed"].shape[0]
        self.rows = {}
        for i in range(positions):
            for u in range(self.n_tokens):
                x = [Fraction(float(a)) + Fraction(float(b)) for a, b in zip(w["embed"][u], w["pos"][i])]
                hidden = [max(h + Fraction(float(b)), Fraction(0)) for h, b in zip(_vector_matrix(x, w["w_in"]),
                                                                                    w["b_in"])]
                x = [a + b for a, b in zip(x, _vector_matrix(hidden, w["w_out"]))]
                readout = [Fraction(float(v)) for v in r]
                head = _vector_matrix(_vector_matrix(x, w["w_v"]), w["w_o"])
                self.rows[i, u] = (_vector_matrix(x, w["w_q"]), _vector_matrix(x, w["w_k"]),
                                   sum((a * b for a, b in zip(head, readout)), Fraction(0)),
                                   sum((a * b for a, b in zip(x, readout)), Fraction(0)))
        self._terms = {}
        self._exp = {}

    def _e(self, y: Fraction):
        if y not in self._exp:
            self._exp[y] = exp_interval(y)
        return self._exp[y]

    def terms(self, n: int, last: int, margin: Fraction, positions=None):
        """(low [j][u], high [j][u]) integer bounds, in units of 2^-SCALE_BITS, of exp(s - M) (c + base -/+ margin)
        for every position j < n and token u, the last token fixed."""
        key = (n, last, margin)
        if key not in self._terms:
            query, _, _, base = self.rows[n - 1, last]
            js = range(n) if positions is None else positions
            scores = {(j, u): sum((a * b for a, b in zip(query, self.rows[j, u][1])), Fraction(0))
                      for j in js for u in range(self.n_tokens)}
            top = max(scores.values())
            scale = Fraction(2) ** SCALE_BITS
            low, high = {}, {}
            for (j, u), s in scores.items():
                e_low, e_high = self._e(s - top)
                value = self.rows[j, u][2] + base
                g_low, g_high = value - margin, value + margin
                lo = (e_low if g_low >= 0 else e_high) * g_low * scale
                hi = (e_high if g_high >= 0 else e_low) * g_high * scale
                low[j, u] = lo.numerator // lo.denominator
                high[j, u] = -(-hi.numerator // hi.denominator)
            self._terms[key] = (low, high)
        return self._terms[key]

    def cube_class(self, n: int, allowed: list, margin: Fraction) -> int | None:
        """1 / 0 when every last token the cube allows gives D > margin / D < -margin on all its sequences."""
        classes = set()
        for last in allowed[n - 1]:
            low, high = self.terms(n, last, margin)
            rows = [set(a) for a in allowed[:n - 1]] + [{last}]
            positive = sum(min(low[j, u] for u in rows[j]) for j in range(n)) > 0
            negative = sum(max(high[j, u] for u in rows[j]) for j in range(n)) < 0
            classes.add(1 if positive else 0 if negative else None)
        return classes.pop() if len(classes) == 1 else None

    def symmetry_holds(self, max_len: int) -> bool:
        """The counts+last-token symmetry, re-derived from the arrays: the positional embedding is 0."""
        return self.zero_positions(self.model, max_len)

    def zero_positions(self, model, max_len: int) -> bool:
        """The positional embedding is exactly 0 on positions 0..max_len-1."""
        pos = model.arrays()["pos"]
        return pos.shape[0] >= max_len and all(Fraction(float(v)) == 0 for row in pos[:max_len] for v in row)

    def orbit_classes(self, n: int, last: int, margin: Fraction):
        """{count vector: class or None} for every orbit of length n ending in ``last`` (symmetry assumed proved:
        every position holds position 0's quantities)."""
        low, high = self.terms(n, last, margin, positions=[0])
        out = {}
        for counts in _compositions(n, self.n_tokens):
            if counts[last] < 1:
                continue
            lo = sum(c * low[0, u] for u, c in enumerate(counts) if c)
            hi = sum(c * high[0, u] for u, c in enumerate(counts) if c)
            out[counts] = 1 if lo > 0 else 0 if hi < 0 else None
        return out


def _compositions(n: int, k: int):
    """Every k-tuple of non-negative integers summing to n (stars and bars)."""
    for bars in combinations(range(n + k - 1), k - 1):
        edges = (-1,) + bars + (n + k - 1,)
        yield tuple(edges[i + 1] - edges[i] - 1 for i in range(k))
