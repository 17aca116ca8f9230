"""The ``lp`` method: an exact linear-threshold surrogate by linear programming with cutting planes (HiGHS
through scipy).

Many circuit behaviours (counts, densities, recency, the token at a position) are linear thresholds over the
one-hot (position x token) features, often with weights gradient descent does not find (recency needs 1, 2, 4, ...).
The LP asks for weights w and a bias b with y * (w . x + b) >= 1 on a sample of inputs (y = +1 for class 1, -1 for
class 0), minimising |w|_1. The float solution is rounded to integers at a scale where the margin survives rounding;
the integer network is then checked on every input of the domain, and the inputs it gets wrong join the LP
(cutting planes) until it is exact. An infeasible LP proves that no linear threshold exists (it fails on a subset).
Fixed ReLU units may join the features, their output weights chosen by the LP (the ``features`` method).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.sparse

from jaxscd.domain import Domain
from jaxscd.dsl.programs import Program
from jaxscd.kernels.enumerate import decode_indices
from jaxscd.surrogates.network import IntegerSurrogate, wrong_inputs
from jaxscd.surrogates.registry import FitProblem


@dataclass(frozen=True)
class LinearFit:
    surrogate: IntegerSurrogate | None  # None: no exact linear threshold
    rounds: int
    constraints: int  # inputs in the final LP
    reason: str = ""


@dataclass(frozen=True, eq=False)
class Units:
    """Fixed first-layer ReLU units whose outputs join the one-hot inputs as LP features (output layer by LP):
    relu(hidden_b[j] + sum_i hidden_w[i, t_i, j]), integers."""

    hidden_w: np.ndarray  # int64 [max_len, V, H]
    hidden_b: np.ndarray  # int64 [H]

    @classmethod
    def none(cls, domain: Domain) -> Units:
        return cls(np.zeros((domain.max_len, domain.n_tokens, 0), np.int64), np.zeros(0, np.int64))

    def values(self, tokens: np.ndarray) -> np.ndarray:
        """int64 [N, H] unit outputs on padded tokens (numpy, exact)."""
        return np.maximum(self.hidden_b + _positional_sum(self.hidden_w, tokens), 0)

    def bound(self) -> int:
        """Largest value any unit reaches (Python int)."""
        top = self.hidden_b.astype(object) + self.hidden_w.astype(object).max(axis=1, initial=0).sum(axis=0)
        return int(sum(max(int(t), 0) for t in top))


def _positional_sum(weights: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """sum over real positions i of weights[i, t_i] (weights [max_len, V, ...], tokens padded with -1), in numpy:
    the LP's sample checks need no compiled kernel."""
    positions = np.broadcast_to(np.arange(tokens.shape[1]), tokens.shape)
    picked = weights[positions, np.maximum(tokens, 0)]  # [N, L, ...]
    real = (tokens >= 0).reshape(tokens.shape + (1,) * (picked.ndim - 2))
    return np.where(real, picked, 0).sum(axis=1)


def _constraint_rows(domain: Domain, indices: np.ndarray, target: np.ndarray,
                     units: Units) -> scipy.sparse.csr_matrix:
    """Rows -y * [one-hot(x), units(x), 1] of the constraints -y (w . features + b) <= -1."""
    tokens = np.asarray(decode_indices(domain, indices)[0])
    real = tokens >= 0
    rows = np.repeat(np.arange(len(indices)), real.sum(axis=1))
    cols = (np.arange(domain.max_len)[None, :] * domain.n_tokens + tokens)[real]
    n_features = domain.max_len * domain.n_tokens
    sign = np.where(target[indices] == 1, -1.0, 1.0)
    onehot = scipy.sparse.csr_matrix((sign[rows], (rows, cols)), shape=(len(indices), n_features))
    hidden = scipy.sparse.csr_matrix(units.values(tokens) * sign[:, None])
    return scipy.sparse.hstack([onehot, hidden, scipy.sparse.csr_matrix(sign[:, None])]).tocsr()


def _solve(rows: scipy.sparse.csr_matrix) -> np.ndarray | None:
    """min |w|_1 subject to the rows (variables w = p - q, p, q >= 0; bias free); None if infeasible."""
    n = rows.shape[1] - 1
    a_ub = scipy.sparse.hstack([rows[:, :n], -rows[:, :n], rows[:, n:]]).tocsr()
    cost = np.concatenate([np.ones(2 * n), [0.0]])
    bounds = [(0, None)] * (2 * n) + [(None, None)]
    answer = scipy.optimize.linprog(cost, A_ub=a_ub, b_ub=-np.ones(rows.shape[0]), bounds=bounds, method="highs")
    if answer.status == 2:
        return None
    if answer.status != 0:
        raise RuntimeError(f"HiGHS did not solve the LP: {answer.message}")
    x = answer.x
    return np.concatenate([x[:n] - x[n:2 * n], x[2 * n:]])


def _rounded(solution: np.ndarray, scale: int, domain: Domain, units: Units) -> IntegerSurrogate:
    """Integer weights at ``scale`` (divided by their gcd); units whose output weight rounds to 0 are dropped."""
    weights = np.rint(solution * scale).astype(np.int64)
    divisor = np.gcd.reduce(weights) if weights.any() else 1
    weights //= max(int(divisor), 1)
    n_onehot = domain.max_len * domain.n_tokens
    out_w = weights[n_onehot:-1]
    keep = out_w != 0
    return IntegerSurrogate(units.hidden_w[:, :, keep], units.hidden_b[keep], out_w[keep],
                            weights[:n_onehot].reshape(domain.max_len, domain.n_tokens), int(weights[-1]))


def _integer_network(solution: np.ndarray, domain: Domain, sample: np.ndarray, target: np.ndarray, units: Units):
    """The first rounding (scale 1, 2, 4, ... up to one that provably keeps every sampled decision) that is exact on
    the LP's own inputs. Rounding moves a score by at most half the sum of the features' largest values
    ((max_len + 1) / 2 plus half the units' bound); a scale above that keeps the LP's margin of 1."""
    safe = (domain.max_len + 1 + units.bound()) // 2 + 1
    scales = [s for s in (1, 2, 4, 8, 16, 32, 64) if s < safe] + [safe]
    tokens = np.asarray(decode_indices(domain, sample)[0])
    for scale in scales:
        candidate = _rounded(solution, scale, domain, units)  # scores by numpy on the sample: no compile per round
        hidden = Units(candidate.hidden_w, candidate.hidden_b).values(tokens)
        scores = candidate.out_b + hidden @ candidate.out_w + _positional_sum(candidate.skip_w, tokens)
        if np.array_equal(scores > 0, target[sample] == 1):
            return candidate
    raise AssertionError("rounding at the safe scale must keep every sampled decision")


def fit_linear(domain: Domain, target: np.ndarray, valid: np.ndarray, units: Units | None = None,
               sample_size: int = 4000, max_rounds: int = 30, seed: int = 0,
               log: Callable[[str], None] = lambda _: None) -> LinearFit:
    """An exact integer surrogate that is a linear threshold of the one-hot inputs (and of fixed ``units``, whose
    output weights the LP chooses), or the reason there is none."""
    units = Units.none(domain) if units is None else units
    pool = np.flatnonzero(valid)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(pool, min(sample_size, len(pool)), replace=False))
    rows = _constraint_rows(domain, sample, target, units)
    what = "linear threshold" if not units.hidden_b.size else f"threshold of {units.hidden_b.size} fixed units"
    for round_ in range(1, max_rounds + 1):
        solution = _solve(rows)
        if solution is None:
            return LinearFit(None, round_, len(sample), f"no {what} separates the classes (LP infeasible on "
                                                        f"{len(sample):,} inputs)")
        candidate = _integer_network(solution, domain, sample, target, units)
        count, wrong = wrong_inputs(candidate, domain, target, valid)
        log(f"lp round {round_}: {len(sample):,} constraints, wrong on {count:,} inputs")
        if count == 0:
            return LinearFit(candidate, round_, len(sample))
        sample = np.union1d(sample, wrong)
        rows = scipy.sparse.vstack([rows, _constraint_rows(domain, wrong, target, units)]).tocsr()
    return LinearFit(None, max_rounds, len(sample), f"no exact {what} after {max_rounds} LP rounds")


def fit(problem: FitProblem, program: Program) -> tuple[IntegerSurrogate | None, str]:
    """The ``lp`` method: a linear threshold of the one-hot inputs, from the truth table alone."""
    found = fit_linear(problem.domain, problem.decisions, problem.valid, seed=problem.seed, log=problem.log)
    return found.surrogate, found.reason
