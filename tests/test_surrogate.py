"""The integer surrogate is exact on every domain input, in integer arithmetic; folding keeps it exact."""

import numpy as np

from jaxscd.domain import Domain
from jaxscd.dsl import Toggle
from jaxscd.dsl.batch import evaluate_program
from jaxscd.kernels.enumerate import all_tokens
from jaxscd.surrogate import IntegerSurrogate, exhaustive_decisions, fit, fold_stable_neurons


def test_fit_parity_needs_relus_and_is_exact_in_integers():
    domain = Domain(("x", "y"), 1, 5)
    tokens, lengths = all_tokens(domain)
    target = np.asarray(evaluate_program(Toggle({0}, 0), tokens.astype(np.int32), lengths.astype(np.int32), 2))
    target = target.astype(np.int8)
    valid = np.ones(domain.size, dtype=bool)
    result = fit(domain, target, valid)
    surrogate = result.surrogate
    assert surrogate.n_neurons > 0  # parity is not linearly separable
    assert all(a.dtype == np.int64 for a in surrogate.arrays().values())
    decisions, _ = exhaustive_decisions(surrogate, domain)
    np.testing.assert_array_equal(decisions, target)


def test_folding_stable_neurons_keeps_every_decision():
    rng = np.random.default_rng(1)
    domain = Domain(("a", "b", "c"), 1, 4)
    hidden_w = rng.integers(-3, 4, (4, 3, 6))
    hidden_b = np.array([50, -50, 1, 0, 2, -1])  # neuron 0 always on, neuron 1 always off
    surrogate = IntegerSurrogate(hidden_w, hidden_b, rng.integers(-5, 6, 6), rng.integers(-3, 4, (4, 3)), 1)
    decisions, active = exhaustive_decisions(surrogate, domain)
    folded = fold_stable_neurons(surrogate, active)
    assert folded.n_neurons <= 4
    folded_decisions, _ = exhaustive_decisions(folded, domain)
    np.testing.assert_array_equal(decisions, folded_decisions)
    tokens, lengths = all_tokens(domain)
    np.testing.assert_array_equal(np.asarray(surrogate.scores(tokens.astype(np.int32), lengths.astype(np.int32))),
                                  np.asarray(folded.scores(tokens.astype(np.int32), lengths.astype(np.int32))))


def test_round_trip_through_npz_bytes():
    import io

    rng = np.random.default_rng(2)
    s = IntegerSurrogate(rng.integers(-9, 9, (3, 2, 2)), rng.integers(-9, 9, 2), rng.integers(-9, 9, 2),
                         rng.integers(-9, 9, (3, 2)), -4)
    back = IntegerSurrogate.from_arrays(np.load(io.BytesIO(s.to_bytes())))
    for name, value in s.arrays().items():
        np.testing.assert_array_equal(value, back.arrays()[name])
