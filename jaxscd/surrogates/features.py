"""The ``features`` method: the ``lp`` method over the one-hot inputs and fixed ReLU units on the circuit's own
count features, so parities and residues of counts become thresholds too (still from the truth table alone)."""

from __future__ import annotations

import numpy as np

from jaxscd.domain import Domain
from jaxscd.dsl.programs import Program
from jaxscd.surrogates.lp import Units, fit_linear
from jaxscd.surrogates.network import IntegerSurrogate
from jaxscd.surrogates.registry import FitProblem


def count_units(domain: Domain) -> Units:
    """The circuit's own count features: relu(count(v) - k) per token v and relu(count(u) - count(v) - k) per pair,
    over every k where the unit bends on the domain. With them a threshold can read parities and residues of
    counts (a sawtooth is a sum of such units), which a linear threshold cannot."""
    n, vocab = domain.max_len, domain.n_tokens
    columns, biases = [], []
    for u in range(vocab):
        for v in [None] + list(range(u + 1, vocab)):
            weights = np.zeros((n, vocab), np.int64)
            weights[:, u] = 1
            if v is not None:
                weights[:, v] = -1
            for k in range(-n + 1 if v is not None else 1, n):
                columns.append(weights)
                biases.append(-k)
    return Units(np.stack(columns, axis=-1), np.asarray(biases, np.int64))


def fit(problem: FitProblem, program: Program) -> tuple[IntegerSurrogate | None, str]:
    """The ``features`` method: a threshold of the one-hot inputs and the count units, from the truth table alone."""
    found = fit_linear(problem.domain, problem.decisions, problem.valid, count_units(problem.domain),
                       seed=problem.seed, log=problem.log)
    return found.surrogate, found.reason
