"""Sound bounds on a one-layer reference circuit's decision over sets of inputs (orbits and cubes), beyond the
lengths exhaustion reaches.

The circuit (``jaxscd.circuits.reference.OneLayerCircuit``): x_i = embed[t_i] + pos[i], x_i += MLP(x_i), the
last position n-1 attends with softmax weights w_j ∝ exp(s_j), s_j = q(x_{n-1}) . k(x_j), and the decision is
the sign of D = base + sum_j w_j c_j, with base = x_{n-1} . r, c_j = v(x_j) W_o . r and r = readout[:, 1] -
readout[:, 0]. Every x_j, s_j, c_j and base depends only on (position, token) (and the last token), so they are
computed once as exact rationals from the float64 weights (``TokenTables``).

Because every exp(s_j) > 0, D > m on every sequence of a cube (a length and a set of allowed tokens per position,
the last token fixed) iff sum_j min_{u allowed at j} exp(s_j(u)) (c_j(u) + base - m) > 0: the positions are
independent, so the bound is *exact* up to the rounding of exp, which is bracketed outward (np.nextafter, and a
relative widening far above libm's error). The decision is trusted only with |D| above the float-error margin m
(as the exhaustive pass requires), so the float64 circuit decides the same. The same test over count vectors
decides an orbit of the counts+last-token symmetry (``jaxscd.beyond.symmetry``).

``jaxscd verify`` re-derives every leaf and orbit with a second implementation (``circuit_recheck``: Python
integers and exact rational bounds of exp, no floats).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from jaxscd.dsl.abstract import outputs

EPS = float(np.finfo(np.float64).eps)
MIN_MARGIN = 1e-9  # as kernels.evaluate.MIN_BOUND
VOID = None
MAX_CUBES = 200_000


def _exact(a: np.ndarray) -> list:
    return [[Fraction(float(v)) for v in row] for row in np.atleast_2d(np.asarray(a, dtype=np.float64))]


def _matvec(x: list, w: list) -> list:
    """Exact x @ w for a vector x (Fractions) and a matrix w (rows of Fractions)."""
    return [sum((x[d] * w[d][j] for d in range(len(x)) if x[d] and w[d][j]), Fraction(0)) for j in range(len(w[0]))]


@dataclass(eq=False)
class TokenTables:
    """Exact per-(position, token) quantities of a OneLayerCircuit: keys, queries, values read out, base."""

    keys: list  # [P][V] -> list of Fractions (d_head)
    queries: list  # [P][V] -> list of Fractions
    values: list  # [P][V] -> Fraction: c = v W_o . r
    base: list  # [P][V] -> Fraction: x . r
    margin: float  # |D| must exceed this for a decision to be trusted
    _scores: dict = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        return len(self.values[0])

    def scores(self, n: int, last: int) -> list:
        """[n][V] exact scores of every (position, token) against the query of ``last`` at position n-1."""
        key = (n, last)
        if key not in self._scores:
            q = self.queries[n - 1][last]
            self._scores[key] = [[sum((a * b for a, b in zip(q, k) if a and b), Fraction(0)) for k in row]
                                 for row in self.keys[:n]]
        return self._scores[key]


def token_tables(model, positions: int) -> TokenTables:
    w = {name: _exact(a) for name, a in model.arrays().items()}
    readout = w["readout"]
    r = [row[1] - row[0] for row in readout]
    w_o_r = [[sum((row[d] * r[d] for d in range(len(r))), Fraction(0))] for row in w["w_o"]]  # [d_v, 1]
    keys, queries, values, base = [], [], [], []
    for i in range(positions):
        k_row, q_row, v_row, b_row = [], [], [], []
        for u in range(len(w["embed"])):
            x = [e + p for e, p in zip(w["embed"][u], w["pos"][i])]
            pre = [a + b for a, b in zip(_matvec(x, w["w_in"]), w["b_in"][0])]
            hidden = [max(h, Fraction(0)) for h in pre]
            x = [a + b for a, b in zip(x, _matvec(hidden, w["w_out"]))]
            k_row.append(_matvec(x, w["w_k"]))
            q_row.append(_matvec(x, w["w_q"]))
            v_row.append(_matvec(_matvec(x, w["w_v"]), w_o_r)[0])
            b_row.append(sum((a * b for a, b in zip(x, r)), Fraction(0)))
        keys.append(k_row), queries.append(q_row), values.append(v_row), base.append(b_row)
    scale = max(abs(v) for row in values + base for v in row) + max(abs(v) for row in base for v in row)
    scale += max(abs(float(row[j])) for row in readout for j in range(2))
    margin = max(MIN_MARGIN, 4096 * EPS * (1.0 + float(scale)))
    return TokenTables(keys, queries, values, base, margin)


# ------------------------------------------------------------------------------------------------------------
# Outward-rounded float brackets


def _down(x: np.ndarray) -> np.ndarray:
    return np.nextafter(x, -np.inf)


def _up(x: np.ndarray) -> np.ndarray:
    return np.nextafter(x, np.inf)


def _bracket(values) -> tuple[np.ndarray, np.ndarray]:
    """float64 (low, high) with low <= v <= high for exact Fractions ``values`` (any nesting of lists)."""
    exact = np.array(values, dtype=object)
    approx = np.vectorize(float, otypes=[np.float64])(exact)
    inexact = np.vectorize(lambda v, f: Fraction(f) != v, otypes=[bool])(exact, approx)
    return np.where(inexact, _down(approx), approx), np.where(inexact, _up(approx), approx)


def _exp_bracket(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of exp over [low, high] (low <= high <= 0 here): libm's exp is within a few ulp; the widening is
    64 ulp plus the arguments' own rounding."""
    widen = 64 * EPS
    low, high = np.minimum(low, 1.0), np.minimum(high, 1.0)  # entries outside the cube may lie above; unused
    return (np.maximum(_down(np.exp(low) * (1 - widen)), 0.0), _up(np.exp(high) * (1 + widen)))


def _product_low(e_low, e_high, g_low):
    """Lower bound of e * g over e in [e_low, e_high] (>= 0), g >= g_low."""
    return _down(np.minimum(e_low * g_low, e_high * g_low))


def _product_high(e_low, e_high, g_high):
    return _up(np.maximum(e_low * g_high, e_high * g_high))


def _sum_sign(terms: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """(sum > 0 surely, sum < 0 surely) of float terms along ``axis``, with a rigorous error bound of the float sum
    (n eps sum |t|, above the classical (n-1) u / (1 - (n-1) u) sum |t|)."""
    n = terms.shape[axis]
    total = terms.sum(axis=axis)
    error = _up((n + 2) * EPS * np.abs(terms).sum(axis=axis)) + (n + 2) * 5e-324
    return total - error > 0, total + error < 0


@dataclass(eq=False)
class LastTokenBounds:
    """For one length n and last token: float brackets of score and of c + base -/+ margin, [n, V]."""

    score_low: np.ndarray
    score_high: np.ndarray
    g_low: np.ndarray  # lower bound of c + base - margin
    g_high: np.ndarray  # upper bound of c + base + margin


def last_token_bounds(tables: TokenTables, n: int, last: int) -> LastTokenBounds:
    s_low, s_high = _bracket(tables.scores(n, last))
    base, m = tables.base[n - 1][last], Fraction(tables.margin)
    g_low, _ = _bracket([[c + base - m for c in row] for row in tables.values[:n]])
    _, g_high = _bracket([[c + base + m for c in row] for row in tables.values[:n]])
    return LastTokenBounds(s_low, s_high, g_low, g_high)


def _terms(b: LastTokenBounds, allowed: np.ndarray):
    """Per-position (low, high) bounds of the cube's numerator terms (D -/+ margin times the softmax denominator,
    scaled by exp(-reference)), [n] each; ``allowed`` bool [n, V]."""
    reference = b.score_high[allowed].max()
    e_low, e_high = _exp_bracket(_down(b.score_low - reference), _up(b.score_high - reference))
    low = np.where(allowed, _product_low(e_low, e_high, b.g_low), np.inf).min(axis=1)
    high = np.where(allowed, _product_high(e_low, e_high, b.g_high), -np.inf).max(axis=1)
    return low, high, e_high * np.abs(b.g_low + b.g_high) / 2


def cube_class(b: LastTokenBounds, allowed: np.ndarray) -> int | None:
    """1 / 0 when D > margin / D < -margin on every sequence of the cube (last token fixed), else None."""
    low, high, _ = _terms(b, allowed)
    positive, _ = _sum_sign(low)
    _, negative = _sum_sign(high)
    return 1 if positive else 0 if negative else None


# ------------------------------------------------------------------------------------------------------------
# Orbits (counts+last-token symmetry)


def orbit_classes(tables: TokenTables, orb) -> np.ndarray:
    """int8 [N]: 1 / 0 where the orbit's decision is surely 1 / 0 with margin, -1 where undecided. Needs the
    symmetry: the tables at position 0 stand for every position."""
    classes = np.full(len(orb), -1, dtype=np.int8)
    for n in np.unique(orb.length):
        for last in range(tables.n_tokens):
            rows = np.flatnonzero((orb.length == n) & (orb.last == last))
            if not len(rows):
                continue
            s_low, s_high = _bracket(tables.scores(int(n), last)[0])  # [V]: every position is position 0
            base, m = tables.base[int(n) - 1][last], Fraction(tables.margin)
            g_low, _ = _bracket([c + base - m for c in tables.values[0]])
            _, g_high = _bracket([c + base + m for c in tables.values[0]])
            counts = orb.counts[rows].astype(np.float64)
            present = counts > 0
            reference = np.where(present, s_high, -np.inf).max(axis=1, keepdims=True)
            e_low, e_high = _exp_bracket(_down(s_low - reference), _up(s_high - reference))
            low = np.where(present, _down(counts * _product_low(e_low, e_high, g_low)), 0.0)
            high = np.where(present, _up(counts * _product_high(e_low, e_high, g_high)), 0.0)
            positive, _ = _sum_sign(low)
            _, negative = _sum_sign(high)
            classes[rows] = np.where(positive, 1, np.where(negative, 0, -1))
    return classes


# ------------------------------------------------------------------------------------------------------------
# Cube trees


@dataclass
class CubeTree:
    trees: dict  # {length: node}; node: 0 | 1 | None (void) | [position, group, then, else]
    undecided: list  # (length, allowed bool [n, V]) cubes left open when the budget ran out
    cubes: int = 0


def _void(precondition, allowed: np.ndarray) -> bool:
    return precondition is not None and outputs(precondition, allowed) == {0}


def _split_last(classes: dict) -> list | None:
    """Group of last tokens sharing the first token's class, when the classes differ."""
    tokens = sorted(classes)
    group = [t for t in tokens if classes[t] == classes[tokens[0]]]
    return group if len(group) < len(tokens) else None


def _split_inner(bounds: LastTokenBounds, allowed: np.ndarray) -> tuple[int, list]:
    """Position (not the last) with the widest term range, ties to the latest; its tokens cut at the widest gap
    of their term midpoints."""
    low, high, key = _terms(bounds, allowed)
    n = allowed.shape[0]
    choice = np.array([(high[j] - low[j]) if allowed[j].sum() > 1 else -np.inf for j in range(n - 1)])
    choice = np.nan_to_num(choice, nan=np.inf, posinf=np.finfo(np.float64).max)
    j = int(len(choice) - 1 - np.argmax(choice[::-1]))
    tokens = np.flatnonzero(allowed[j])
    mids = np.nan_to_num(key[j, tokens] * np.sign(bounds.g_low[j, tokens] + bounds.g_high[j, tokens]))
    order = tokens[np.argsort(mids, kind="stable")]
    gaps = np.diff(np.sort(mids))
    cut = int(np.argmax(gaps)) + 1 if len(gaps) else 1
    return j, sorted(order[:cut].tolist())


def build_cube_tree(tables: TokenTables, lengths: range, precondition=None, max_cubes: int = MAX_CUBES,
                    deadline: float | None = None) -> CubeTree:
    """Branch and bound per length on a one-layer reference circuit (``grow_cube_tree``): a cube's class per last
    token by ``cube_class``; it splits the last position when the classes of its last tokens differ (or none
    decides), else the position of widest bound."""
    cache: dict = {}

    def bounds(n, last):
        if (n, last) not in cache:
            cache[(n, last)] = last_token_bounds(tables, n, last)
        return cache[(n, last)]

    def classes_of(n, allowed):
        classes = {}
        for last in np.flatnonzero(allowed[n - 1]).tolist():
            pinned = allowed.copy()
            pinned[n - 1] = False
            pinned[n - 1, last] = True
            classes[last] = cube_class(bounds(n, last), pinned)
        return classes

    def split(n, allowed, classes):
        group = _split_last(classes) if len(classes) > 1 else None
        if group is None and len(classes) > 1:
            group = sorted(classes)[:len(classes) // 2]
        if group is not None:
            return n - 1, group
        if allowed[:n - 1].sum(axis=1).max(initial=1) <= 1:
            return None  # one sequence whose margin is too small
        return _split_inner(bounds(n, next(iter(classes))), allowed)

    return grow_cube_tree(lengths, tables.n_tokens, classes_of, split, precondition, max_cubes, deadline)


def grow_cube_tree(lengths: range, n_tokens: int, classes_of, split, precondition=None, max_cubes: int = MAX_CUBES,
                   deadline: float | None = None) -> CubeTree:
    """Branch and bound per length, for any circuit whose bounds give ``classes_of(n, allowed)`` ({last token
    allowed: 1 / 0 / None}) and ``split(n, allowed, classes)`` ((position, group of its tokens) or None when the
    cube cannot be split further). A cube is decided when every last token it allows decides one class, void when
    the precondition excludes it; otherwise it is split in two. Cubes left when the budget (``max_cubes``, the
    ``deadline`` of time.monotonic()) runs out, or that cannot be split, are returned undecided (the tree then
    proves nothing)."""
    import time

    result = CubeTree({}, [])

    def grow(n, allowed):
        result.cubes += 1
        if result.cubes > max_cubes or (deadline is not None and time.monotonic() > deadline):
            result.undecided.append((n, allowed))
            return VOID
        if _void(precondition, allowed):
            return VOID
        classes = classes_of(n, allowed)
        values = set(classes.values())
        if len(values) == 1 and None not in values:
            return values.pop()
        choice = split(n, allowed, classes)
        if choice is None:
            result.undecided.append((n, allowed))
            return VOID
        j, group = choice
        then, other = allowed.copy(), allowed.copy()
        then[j] = False
        then[j, group] = True
        other[j, group] = False
        return [j, group, grow(n, then), grow(n, other)]

    for n in lengths:
        result.trees[n] = grow(n, np.ones((n, n_tokens), dtype=bool))
    return result


def sample_cube(allowed: np.ndarray, rng: np.random.Generator) -> list[int]:
    return [int(rng.choice(np.flatnonzero(row))) for row in allowed]
