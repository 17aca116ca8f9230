"""Exact linear-threshold surrogates by linear programming with cutting planes (HiGHS through scipy).

Many circuit behaviours (counts, densities, recency, the token at a position) are linear thresholds over the
one-hot (position x token) features, often with weights gradient descent does not find (recency needs 1, 2, 4, ...).
The LP asks for weights w and a bias b with y * (w . x + b) >= 1 on a sample of inputs (y = +1 for class 1, -1 for
class 0), minimising |w|_1. The float solution is rounded to integers at a scale where the margin survives rounding;
the integer network is then checked on every input of the domain, and the inputs it gets wrong join the LP
(cutting planes) until it is exact. An infeasible LP proves that no linear threshold exists (it fails on a subset).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.sparse

from jaxscd.domain import Domain
from jaxscd.kernels.enumerate import chunks, decode_indices
from jaxscd.surrogate import IntegerSurrogate


@dataclass(frozen=True)
class LinearFit:
    surrogate: IntegerSurrogate | None  # None: no exact linear threshold
    rounds: int
    constraints: int  # inputs in the final LP
    reason: str = ""


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


def _constraint_rows(domain: Domain, indices: np.ndarray, target: np.ndarray) -> scipy.sparse.csr_matrix:
    """Rows -y * [one-hot(x), 1] of the constraints -y (w . x + b) <= -1, over variables [w, b]."""
    tokens, lengths = (np.asarray(a) for a in decode_indices(domain, indices))
    real = tokens >= 0
    rows = np.repeat(np.arange(len(indices)), real.sum(axis=1))
    cols = (np.arange(domain.max_len)[None, :] * domain.n_tokens + tokens)[real]
    n_features = domain.max_len * domain.n_tokens
    sign = np.where(target[indices] == 1, -1.0, 1.0)
    onehot = scipy.sparse.csr_matrix((sign[rows], (rows, cols)), shape=(len(indices), n_features))
    return scipy.sparse.hstack([onehot, scipy.sparse.csr_matrix(sign[:, None])]).tocsr()


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


def _rounded(solution: np.ndarray, scale: int, domain: Domain) -> IntegerSurrogate:
    weights = np.rint(solution * scale).astype(np.int64)
    divisor = np.gcd.reduce(weights) if weights.any() else 1
    weights //= max(int(divisor), 1)
    empty = np.zeros((domain.max_len, domain.n_tokens, 0), dtype=np.int64)
    return IntegerSurrogate(empty, np.zeros(0, np.int64), np.zeros(0, np.int64),
                            weights[:-1].reshape(domain.max_len, domain.n_tokens), int(weights[-1]))


def _integer_network(solution: np.ndarray, domain: Domain, sample: np.ndarray, target: np.ndarray):
    """The first rounding (scale 1, 2, 4, ... up to one that provably keeps every sampled decision) that is exact on
    the LP's own inputs. At scale s > max_len + 1 the margin s exceeds the rounding error (max_len + 1) / 2."""
    safe = domain.max_len + 2
    scales = [s for s in (1, 2, 4, 8, 16, 32, 64) if s < safe] + [safe]
    tokens = np.asarray(decode_indices(domain, sample)[0])
    real = tokens >= 0
    positions = np.broadcast_to(np.arange(domain.max_len), tokens.shape)
    for scale in scales:
        candidate = _rounded(solution, scale, domain)  # width 0: its score is a plain gather (numpy, no compile)
        scores = candidate.out_b + np.where(real, candidate.skip_w[positions, np.maximum(tokens, 0)], 0).sum(axis=1)
        if np.array_equal(scores > 0, target[sample] == 1):
            return candidate
    raise AssertionError("rounding at the safe scale must keep every sampled decision")


def fit_linear(domain: Domain, target: np.ndarray, valid: np.ndarray, sample_size: int = 4000,
               max_rounds: int = 30, seed: int = 0, log: Callable[[str], None] = lambda _: None) -> LinearFit:
    """An exact width-0 integer surrogate (a linear threshold of the one-hot inputs), or the reason there is none."""
    pool = np.flatnonzero(valid)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(pool, min(sample_size, len(pool)), replace=False))
    rows = _constraint_rows(domain, sample, target)
    for round_ in range(1, max_rounds + 1):
        solution = _solve(rows)
        if solution is None:
            return LinearFit(None, round_, len(sample), f"no linear threshold separates the classes (LP infeasible "
                                                        f"on {len(sample):,} inputs)")
        candidate = _integer_network(solution, domain, sample, target)
        count, wrong = wrong_inputs(candidate, domain, target, valid)
        log(f"lp round {round_}: {len(sample):,} constraints, wrong on {count:,} inputs")
        if count == 0:
            return LinearFit(candidate, round_, len(sample))
        sample = np.union1d(sample, wrong)
        rows = scipy.sparse.vstack([rows, _constraint_rows(domain, wrong, target)]).tocsr()
    return LinearFit(None, max_rounds, len(sample), f"no exact linear threshold after {max_rounds} LP rounds")
