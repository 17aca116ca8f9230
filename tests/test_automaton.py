"""jaxscd.verify.automaton: surrogate == state machine by the product walk, its refutations, where it applies,
and a bundle that ``jaxscd verify`` re-checks."""

from __future__ import annotations

import numpy as np
import pytest
from aalpy.learning_algs import run_KV

from bundles import failed_checks
from cases import CASES
from jaxscd.dsl.programs import CountThreshold, SaturatedDepth, StateMachine
from jaxscd.dsl.reference import run
from jaxscd.pipeline import DistillConfig
from jaxscd.surrogates import IntegerSurrogate
from jaxscd.surrogates.compiled import compile_program
from jaxscd.tasks import get_task
from jaxscd.verify import automaton
from jaxscd.verify.certificate import write_bundle
from jaxscd.verify.prove import Verdict, prove_equivalent, surrogate_class
from jaxscd.verify.recheck import recheck
from jaxscd.search.automata import DomainOracle, TableSUL, certify

MACHINES = [c for c in CASES if isinstance(c.program, (StateMachine, SaturatedDepth))]


@pytest.mark.parametrize("case", MACHINES, ids=lambda c: c.name)
def test_compiled_machine_is_proved_and_every_flipped_state_refuted(case):
    surrogate = compile_program(case.program, case.domain)
    assert automaton.why_not(surrogate, case.program, case.domain) is None
    proof = prove_equivalent(surrogate, case.program, case.domain, strategy="automaton")
    assert proof.verdict == Verdict.PROVED and proof.record["summaries"] > 0
    machine = automaton.machine_of(case.program, case.n_tokens)
    for state in range(min(machine.n_states, 6)):
        flipped = StateMachine(machine.transitions, machine.accepting ^ {state})
        result = prove_equivalent(surrogate, flipped, case.domain, strategy="automaton")
        if result.verdict == Verdict.PROVED:  # the state is never where a domain word ends
            continue
        assert result.verdict == Verdict.REFUTED
        tokens = result.counterexample
        assert run(flipped, tokens) != surrogate_class(surrogate, tokens)


def test_walk_applies_only_to_machines_and_networks_layered_by_position():
    case = MACHINES[0]
    surrogate = compile_program(case.program, case.domain)
    assert "not a state machine" in automaton.why_not(surrogate, CountThreshold({0}, set(), 1), case.domain)
    length, tokens = case.domain.max_len, case.domain.n_tokens
    every_position = IntegerSurrogate(np.ones((length, tokens, 1)), np.zeros(1), np.ones(1),
                                      np.zeros((length, tokens)), 0)
    assert "reads positions [0, 1, 2" in automaton.why_not(every_position, case.program, case.domain)
    result = prove_equivalent(every_position, case.program, case.domain, strategy="automaton")
    assert result.verdict == Verdict.UNKNOWN and result.reason.startswith("automaton:")


def test_learned_automaton_bundle_is_rechecked(tmp_path):
    """An automaton learned by AALpy from a task (with its precondition) is certified, written, and re-verified."""
    task = get_task("quote_close")
    domain = task.domain(max_len=5)
    sul = TableSUL.from_circuit(task, domain)
    dfa = run_KV(sul.alphabet, sul, DomainOracle(sul), "dfa", print_level=0)
    result = certify(dfa, task, domain, DistillConfig(surrogate_methods=("compiled",)))
    assert result.verdict == Verdict.PROVED and result.proof.method == "automaton-product"
    bundle = write_bundle(result, tmp_path / "bundle", {"kind": "task", "name": "quote_close"},
                          task.circuit.fingerprint)
    report = recheck(bundle)
    assert not failed_checks(report)
    assert any("product summaries" in name for name, status, _ in report.checks if status == "ok")


def test_a_difference_outside_the_precondition_leaves_the_walk_unknown():
    """The walk reads every sequence; where surrogate and machine differ only off the precondition, it cannot
    conclude (UNKNOWN, no counterexample) and ``auto`` goes on to the solver strategies, which read it."""
    from jaxscd.domain import Domain

    has_a = StateMachine(((1, 0), (1, 1)), {1})
    domain = Domain(("a", "b"), 1, 4, precondition=has_a, precondition_text="an a")
    even = StateMachine(((1, 1), (0, 0)), {0})
    even_with_a = StateMachine(((3, 1), (2, 0), (3, 3), (2, 2)), {2})  # 2 x seen a + odd: even on "an a"
    surrogate = compile_program(even_with_a, domain)
    walked = prove_equivalent(surrogate, even, domain, strategy="automaton")
    assert walked.verdict == Verdict.UNKNOWN and walked.counterexample is None
    assert "outside the precondition" in walked.reason
    assert prove_equivalent(surrogate, even, domain).verdict == Verdict.PROVED
