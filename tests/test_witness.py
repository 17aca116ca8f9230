"""Exact surrogates by construction: circuits the trained surrogate could not fit end PROVED, through the LP or a
network compiled from the found program, and every program is checked against the circuit on every input here."""

from __future__ import annotations

import numpy as np
import pytest

from cases import CASES
from jaxscd.circuits.examples import EXAMPLES, example
from jaxscd.domain import Domain
from jaxscd.dsl.programs import MostRecent
from jaxscd.kernels.enumerate import all_tokens, chunks, program_decisions
from jaxscd.pipeline import DistillConfig, distill
from jaxscd.surrogates import wrong_inputs
from jaxscd.surrogates.compiled import compile_program
from jaxscd.surrogates.features import count_units
from jaxscd.surrogates.lp import fit_linear
from jaxscd.verify.prove import Verdict


@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLES)
def test_circuit_beyond_the_trained_surrogate_is_proved(name):
    circuit, domain = example(name)
    decide = EXAMPLES[name][0]
    result = distill(circuit, domain, DistillConfig(surrogate_methods=("lp", "features", "compiled")))
    assert result.verdict == Verdict.PROVED, result.notes
    assert result.surrogate_method in ("lp", "features", "compiled")
    truth = np.concatenate([np.asarray(decide(np.asarray(t)[:r, :length]), dtype=np.int8)
                            for length in domain.lengths for _, t, _, r in chunks(_length(domain, length), 1 << 16)])
    assert np.array_equal(program_decisions(result.program, domain), truth)


def _length(domain: Domain, length: int) -> Domain:
    return Domain(domain.alphabet, length, length)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_compiled_network_equals_the_program_on_every_input(case):
    surrogate = compile_program(case.program, case.domain)
    count, _ = wrong_inputs(surrogate, case.domain, program_decisions(case.program, case.domain),
                            np.ones(case.domain.size, dtype=bool))
    assert count == 0


def test_lp_finds_recency_weights_and_rejects_parity():
    domain = Domain(("a", "b", "c"), 1, 7)
    tokens, lengths = all_tokens(domain)
    valid = np.ones(domain.size, dtype=bool)
    recent = program_decisions(MostRecent({0}, {1}, 0), domain)
    found = fit_linear(domain, recent, valid, sample_size=200)
    assert found.surrogate is not None and found.surrogate.n_neurons == 0
    assert wrong_inputs(found.surrogate, domain, recent, valid)[0] == 0
    parity = np.array([sum(t == 0 for t in row[:n]) % 2 for row, n in zip(tokens, lengths)], dtype=np.int8)
    none = fit_linear(domain, parity, valid, sample_size=200)
    assert none.surrogate is None and "infeasible" in none.reason


@pytest.mark.parametrize("name, fits", [("parity_of_count", True), ("difference_mod_3", True),
                                        ("automaton_3_states", False)])
def test_count_features_fit_parities_and_residues_from_the_circuit_alone(name, fits):
    circuit, domain = example(name)
    valid = np.ones(domain.size, dtype=bool)
    target = np.concatenate([np.asarray(circuit.forward(np.asarray(t)[:r, :length]))
                             for length in domain.lengths for _, t, _, r in chunks(_length(domain, length), 1 << 16)])
    found = fit_linear(domain, target, valid, count_units(domain))
    assert (found.surrogate is not None) == fits, found.reason
    if fits:
        assert 0 < found.surrogate.n_neurons < 20 and wrong_inputs(found.surrogate, domain, target, valid)[0] == 0
