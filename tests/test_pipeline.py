"""Known answers on the seed tasks: the programs found are the motifs the circuits implement, PROVED."""

import numpy as np
import pytest

from jaxscd.dsl import DensityThreshold, MostRecent, run
from jaxscd.kernels.enumerate import all_tokens, precondition_mask
from jaxscd.kernels.evaluate import evaluate_circuit
from jaxscd.pipeline import distill
from jaxscd.tasks import SEED_TASKS, get_task
from jaxscd.verify.prove import Verdict


@pytest.fixture(scope="module", params=SEED_TASKS)
def distilled(request):
    task = get_task(request.param)
    domain = task.domain(max_len=7)
    return task, domain, distill(task.circuit, domain, spec=task.spec)


def _circuit_decisions(task, domain):
    valid = precondition_mask(domain)
    return evaluate_circuit(task.circuit, domain, valid).decisions, valid


def test_seed_task_is_proved_and_program_equals_circuit_everywhere(distilled):
    task, domain, result = distilled
    assert result.verdict == Verdict.PROVED
    decisions, valid = _circuit_decisions(task, domain)
    tokens, lengths = all_tokens(domain)
    for i in np.flatnonzero(valid):
        assert run(result.program, tokens[i, :lengths[i]].tolist()) == decisions[i]


def test_program_is_the_motif_the_circuit_implements(distilled):
    task, domain, result = distilled
    if task.name == "bracket_depth":
        # uniform attention over a +1/-1 bracket detector, read by a threshold: a density threshold
        assert isinstance(result.program, DensityThreshold)
        assert (result.program.plus, result.program.minus) == ({0}, {1})
        # the readout threshold 0.27 lies in (1/4, num/den]: every density on the domain is split the same way
        assert 0.25 < result.program.num / result.program.den and 0.27 <= result.program.num / result.program.den
    else:
        # the head attends to the most recent quote and reads its type
        assert isinstance(result.program, MostRecent)
        assert (result.program.first, result.program.second) == ({2}, {3})


def test_rendered_program_runs_on_token_names(distilled):
    task, domain, result = distilled
    from jaxscd.dsl.source import load

    fn = load(result.source)
    tokens, lengths = all_tokens(domain)
    valid = precondition_mask(domain)
    for i in np.flatnonzero(valid)[::37]:
        seq = tokens[i, :lengths[i]].tolist()
        assert fn(domain.names(seq)) == run(result.program, seq)


def test_bracket_depth_dilution_is_reported_against_the_spec():
    task = get_task("bracket_depth")
    domain = task.domain(max_len=8)
    result = distill(task.circuit, domain, spec=task.spec)
    # depth 2 spread over 8 tokens is below the density threshold: the circuit says ']' where the spec says ']]'
    assert result.spec_mismatch_count > 0
    diluted = [0, 0, 2, 2, 2, 2, 2, 2]
    assert task.spec(diluted) == 1 and run(result.program, diluted) == 0
    # and a lone '[' is dense enough to say ']]' where the spec says ']'
    assert task.spec([0]) == 0 and run(result.program, [0]) == 1
    assert any(task.spec(s) != run(result.program, s) for s in result.spec_mismatches)


def test_quote_close_matches_its_spec():
    task = get_task("quote_close")
    domain = task.domain(max_len=6)
    result = distill(task.circuit, domain, spec=task.spec)
    assert result.spec_mismatch_count == 0
    assert result.margin > 0.5


def test_a_proof_left_unknown_is_tried_again_with_the_next_surrogate(monkeypatch):
    """No dead end when the budget runs out: the first surrogate's proof is UNKNOWN, the compiled one proves it,
    and the note names the obligation left with the first."""
    from dataclasses import replace

    from jaxscd import pipeline
    from jaxscd.pipeline import DistillConfig

    real, methods = pipeline.prove_equivalent, []

    def first_gives_up(surrogate, program, *args):
        methods.append(surrogate.n_neurons)
        proof = real(surrogate, program, *args)
        return replace(proof, verdict=Verdict.UNKNOWN, reason="timeout") if len(methods) == 1 else proof

    monkeypatch.setattr(pipeline, "prove_equivalent", first_gives_up)
    task = get_task("bracket_depth")
    result = distill(task, task.domain(max_len=5), DistillConfig(surrogate_methods=("lp", "compiled")))
    assert result.verdict == Verdict.PROVED and len(methods) == 2
    first = ({"lp", "compiled"} - {result.surrogate_method}).pop()  # the compiled network goes first (counts)
    assert any(f"obligation surrogate == program left UNKNOWN with the {first} surrogate (timeout)" in n
               for n in result.notes)


def test_parity_of_a_count_is_proved_over_count_vectors():
    """The compiled network of a count program has the same weights at every position: the count strategy proves
    surrogate == program over every count vector (no solver query), first among the surrogates."""
    from jaxscd.circuits.base import Circuit
    from jaxscd.domain import Domain
    from jaxscd.pipeline import DistillConfig

    def parity(tokens):
        return ((np.asarray(tokens) == 0).sum(axis=1) % 2).astype(np.int8)

    result = distill(Circuit("parity", parity), Domain(("a", "b", "c"), 1, 9), DistillConfig(synth_states=0))
    assert result.verdict == Verdict.PROVED and result.proof.method == "count-orbits"
    assert result.proof.record["count_vectors"] == sum((n + 1) * (n + 2) // 2 for n in range(1, 10))
