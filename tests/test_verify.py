"""z3 proofs: correct programs PROVED, wrong programs and perturbed surrogates REFUTED with real counterexamples."""

import numpy as np
import pytest

from jaxscd.dsl import CountThreshold, DensityThreshold, MostRecent, StateMachine, Toggle, run
from jaxscd.kernels.enumerate import precondition_mask
from jaxscd.kernels.evaluate import evaluate_circuit
from jaxscd.surrogates import IntegerSurrogate
from jaxscd.surrogates.trained import train
from jaxscd.tasks import get_task
from jaxscd.verify.prove import Verdict, in_domain, prove_equivalent, surrogate_class


@pytest.fixture(scope="module")
def bracket():
    task = get_task("bracket_depth")
    domain = task.domain(max_len=6)
    valid = precondition_mask(domain)
    table = evaluate_circuit(task.circuit, domain, valid)
    return domain, train(domain, table.decisions, valid).surrogate


def _check_refutation(result, program, surrogate, domain):
    assert result.verdict == Verdict.REFUTED
    cex = list(result.counterexample)
    assert in_domain(domain, cex)
    assert run(program, cex) != surrogate_class(surrogate, cex)


def test_true_program_is_proved(bracket):
    domain, surrogate = bracket
    assert prove_equivalent(surrogate, DensityThreshold({0}, {1}, 2, 7), domain).verdict == Verdict.PROVED


@pytest.mark.parametrize("wrong", [
    DensityThreshold({0}, {1}, 1, 4),  # threshold one step too low
    DensityThreshold({0}, {1}, 2, 5),  # one step too high (1/3 is a density on L <= 6)
    DensityThreshold({0}, {1, 2}, 2, 7),  # token set changed
    CountThreshold({0}, {1}, 2),  # the intended spec, not what the circuit does
    Toggle({0}, 0),
    MostRecent({0}, {1}, 1),
    StateMachine(((1, 0, 0), (1, 1, 1)), {1}),
])
def test_wrong_program_is_refuted_with_a_real_counterexample(bracket, wrong):
    domain, surrogate = bracket
    _check_refutation(prove_equivalent(surrogate, wrong, domain), wrong, surrogate, domain)


def test_perturbed_surrogate_is_refuted(bracket):
    domain, surrogate = bracket
    program = DensityThreshold({0}, {1}, 2, 7)
    arrays = surrogate.arrays()
    arrays["out_b"] = arrays["out_b"] + np.abs(surrogate.skip_w).max() + 1  # pushes some decision across 0
    perturbed = IntegerSurrogate.from_arrays(arrays)
    _check_refutation(prove_equivalent(perturbed, program, domain), program, perturbed, domain)


def test_solver_timeout_is_unknown_never_proved():
    # a query z3 cannot finish in a millisecond: a dense random surrogate with many ReLUs on a large domain
    from jaxscd.domain import Domain

    rng = np.random.default_rng(0)
    domain = Domain(("a", "b", "c", "d"), 1, 10)
    surrogate = IntegerSurrogate(rng.integers(-50, 50, (10, 4, 24)), rng.integers(-50, 50, 24),
                                 rng.integers(-50, 50, 24), rng.integers(-50, 50, (10, 4)), 3)
    result = prove_equivalent(surrogate, Toggle({0, 1}, 0), domain, timeout_s=0.001)
    assert result.verdict in (Verdict.UNKNOWN, Verdict.REFUTED)
    assert result.verdict != Verdict.PROVED
