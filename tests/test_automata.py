"""jaxscd.search.automata: the AALpy SUL and oracle over a truth table, learned machines, certify."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from aalpy.learning_algs import run_KV, run_Lstar

from cases import CASES
from jaxscd.circuits.base import Circuit
from jaxscd.circuits.examples import example
from jaxscd.domain import Domain
from jaxscd.dsl.programs import StateMachine
from jaxscd.dsl.reference import run
from jaxscd.kernels.enumerate import all_tokens, program_decisions
from jaxscd.pipeline import DistillConfig, distill
from jaxscd.search.automata import (
    DomainOracle,
    TableSUL,
    certify,
    learn,
    machine_decisions,
    merge_states,
    to_dfa,
    to_state_machine,
)
from jaxscd.verify.prove import Verdict

ROOT = Path(__file__).resolve().parents[1]
MACHINES = [c for c in CASES if isinstance(c.program, StateMachine)]


def _words(domain: Domain):
    tokens, lengths = all_tokens(domain)
    return [row[:n].tolist() for row, n in zip(tokens, lengths)]


def _machine_circuit(machine: StateMachine, name: str = "machine") -> Circuit:
    """A decision circuit that runs ``machine`` (numpy, padding -1 keeps the state)."""
    table = np.array(machine.transitions)
    accepting = np.array([s in machine.accepting for s in range(machine.n_states)])

    def forward(tokens):
        state = np.zeros(len(tokens), dtype=np.int64)
        for column in np.asarray(tokens).T:
            state = np.where(column >= 0, table[state, np.maximum(column, 0)], state)
        return accepting[state].astype(np.int8)

    return Circuit(name, forward, ("no", "yes"))


def _mod_machine(modulus: int) -> StateMachine:
    """(count(a) - count(b)) mod ``modulus`` == 0 over a, b, c: ``modulus`` states, no smaller machine."""
    return StateMachine(tuple(((s + 1) % modulus, (s - 1) % modulus, s) for s in range(modulus)), {0})


@pytest.mark.parametrize("case", MACHINES, ids=lambda c: c.name)
def test_whole_domain_walk_equals_the_batched_and_reference_meanings(case):
    expected = program_decisions(case.program, case.domain)
    assert np.array_equal(machine_decisions(case.program, case.domain), expected)
    assert [run(case.program, w) for w in _words(case.domain)] == expected.tolist()


def test_sul_answers_the_table_and_rejects_words_outside_the_domain():
    circuit, _ = example("parity_of_count")
    domain = Domain(("a", "b", "c"), 2, 4)
    sul = TableSUL.from_circuit(circuit, domain)
    assert sul.member(("a", "b")) and not sul.member(("a", "a", "c"))
    assert not sul.member(("a",)) and not sul.member(()) and not sul.member(tuple("abbbb"))  # outside 2..4
    assert sul.query(("a", "b", "a")) == [False, True, False]  # after each letter: a (too short), ab, aba
    with pytest.raises(Exception, match="letter 'z' is not in the alphabet"):
        sul.member(("z",))


def test_oracle_checks_every_input_and_returns_the_shortest_disagreement():
    domain = Domain(("a", "b", "c"), 1, 5)
    truth = _mod_machine(3)
    sul = TableSUL(domain, machine_decisions(truth, domain))
    oracle = DomainOracle(sul)
    assert oracle.find_cex(to_dfa(truth, domain)) is None
    wrong = StateMachine(truth.transitions, {0, 2})  # also accepts count difference 2 (mod 3)
    assert oracle.find_cex(to_dfa(wrong, domain)) == ("b",)


def test_precondition_words_are_dont_care():
    domain = Domain(("a", "b"), 1, 4, precondition=StateMachine(((1, 0), (1, 1)), {1}), precondition_text="an a")
    decisions = np.array([int("a" in "".join(w) and len(w) % 2 == 0) for w in
                          (["ab"[t] for t in word] for word in _words(domain))], dtype=np.int8)
    valid = program_decisions(domain.precondition, domain).astype(bool)
    learned = learn(domain, decisions, valid)
    assert learned.machine is not None
    assert np.array_equal(machine_decisions(learned.machine, domain)[valid], decisions[valid])


@pytest.mark.parametrize("learner", [run_KV, run_Lstar], ids=["kv", "lstar"])
@pytest.mark.parametrize("machine", [_mod_machine(5), MACHINES[-1].program], ids=["mod_5", "prefix_tree_63"])
def test_learned_dfa_converts_to_an_equal_state_machine(learner, machine):
    """Differential: the AALpy DFA (its own step function), the converted StateMachine's reference meaning and its
    batched meaning agree on every input, and equal the circuit."""
    domain = Domain(("a", "b", "c")[:len(machine.transitions[0])], 1, 5)
    sul = TableSUL(domain, machine_decisions(machine, domain))
    dfa = learner(sul.alphabet, sul, DomainOracle(sul), "dfa", print_level=0)
    converted = to_state_machine(dfa, domain)
    words = _words(domain)
    aalpy_says = [dfa.compute_output_seq(dfa.initial_state, domain.names(w))[-1] for w in words]
    assert [int(a) for a in aalpy_says] == [run(converted, w) for w in words]
    assert np.array_equal(program_decisions(converted, domain), sul.decisions)


def _layered_parity_step(state: int, token: int) -> int:
    """State 2 * length + parity of the count of a, up to length 6 (later steps loop: no word is longer)."""
    length, parity = divmod(state, 2)
    return state if length == 6 else 2 * (length + 1) + (parity ^ (token == 0))


def test_merges_fold_away_the_length_counting():
    domain = Domain(("a", "b"), 1, 6)
    unrolled = StateMachine(tuple((_layered_parity_step(s, 0), _layered_parity_step(s, 1)) for s in range(14)),
                            {s for s in range(14) if s % 2})
    decisions = machine_decisions(unrolled, domain)  # odd count of a, counted by length: 13 reachable states
    merged = merge_states(unrolled, domain, decisions, np.ones(domain.size, dtype=bool))
    assert merged.n_states == 2 and np.array_equal(machine_decisions(merged, domain), decisions)


def test_a_machine_above_the_synthesis_cap_is_proved_through_learning():
    """Count difference mod 5 needs 5 states; synthesis stops at 3, the learned machine is compiled and proved."""
    domain = Domain(("a", "b", "c"), 1, 6)
    circuit = _machine_circuit(_mod_machine(5), "difference_mod_5")
    capped = distill(circuit, domain, DistillConfig(synth_states=3, learn_automaton=False))
    assert capped.verdict == Verdict.NO_PROGRAM
    result = distill(circuit, domain, DistillConfig(synth_states=3))
    assert result.verdict == Verdict.PROVED and result.circuit_program_mismatches == 0
    assert isinstance(result.program, StateMachine) and result.program.n_states == 5
    assert "learned_state_machine" in result.per_family and result.proof.method == "automaton-product"
    assert any("no machine with at most 3 states fits" in note for note in result.notes)


def test_certify_refutes_a_wrong_automaton_with_the_shortest_input():
    circuit, domain = example("automaton_3_states")
    wrong = to_dfa(StateMachine(((1, 0, 0), (2, 0, 1), (0, 2, 0)), {2}), domain)  # c from state 2 resets
    result = certify(wrong, circuit, domain)
    assert result.verdict == Verdict.REFUTED
    (program, counterexample), = result.refuted
    assert domain.format(counterexample) == "aac"


def test_readme_aalpy_example_runs(capsys):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### For AALpy users"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out.strip().endswith("PROVED")


def test_palindromes_get_a_certified_automaton_not_no_program():
    """No DSL motif computes "is a palindrome"; the learned machine is exact, so the answer is PROVED."""
    domain = Domain(("a", "b"), 1, 5)
    circuit = Circuit("palindrome", lambda t: (np.asarray(t) == np.asarray(t)[:, ::-1]).all(axis=1).astype(np.int8))
    result = distill(circuit, domain)
    assert result.verdict == Verdict.PROVED and isinstance(result.program, StateMachine)
    assert result.circuit_program_mismatches == 0
