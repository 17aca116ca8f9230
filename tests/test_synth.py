"""State-machine synthesis: minimal, exact on every valid input, canonical, and honest about giving up."""

import doctest
import functools
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxscd.search import synth
from jaxscd.domain import Domain
from jaxscd.dsl import CountThreshold, StateMachine, run
from jaxscd.kernels.enumerate import all_tokens
from jaxscd.search.synth import SynthesisError, synthesize, synthesize_dfa


@functools.lru_cache
def domain_arrays(alphabet: str, min_len: int, max_len: int, precondition=None):
    domain = Domain(tuple(alphabet), min_len, max_len, precondition)
    tokens, lengths = all_tokens(domain)
    words = [tokens[i, :lengths[i]].tolist() for i in range(domain.size)]
    return domain, words


def truth_table(words, fn) -> np.ndarray:
    return np.array([fn(w) for w in words], dtype=np.int8)


def a_count_mod_4(w):
    return int(w.count(0) % 4 == 0)


def since_last_a_mod_5(w):
    """Tokens after the last 'a' (all of them when there is none) is a multiple of 5."""
    last = max((i for i, t in enumerate(w) if t == 0), default=-1)
    return int((len(w) - 1 - last) % 5 == 0)


KNOWN = [  # (name, alphabet, lengths, decision, prefixes that must all reach different states)
    ("a_count_mod_4", "ab", (1, 7), a_count_mod_4, ["b", "a", "aa", "aaa"]),
    ("since_last_a_mod_5", "abc", (1, 6), since_last_a_mod_5, ["a", "ab", "abb", "abbb", "abbbb"]),
]


def distinguishable(p: tuple, q: tuple, labels: dict, n_tokens: int, max_len: int) -> bool:
    """Some suffix s labels p+s and q+s differently, so no machine can be in the same state after p and q."""
    for n in range(max_len - min(len(p), len(q)) + 1):
        for s in itertools.product(range(n_tokens), repeat=n):
            if p + s in labels and q + s in labels and labels[p + s] != labels[q + s]:
                return True
    return False


def assert_agrees(machine: StateMachine, words, decisions, valid=None):
    valid = np.ones(len(words), dtype=bool) if valid is None else valid
    wrong = [w for w, d, v in zip(words, decisions, valid) if v and run(machine, w) != d]
    assert not wrong, f"{machine!r} wrong on {len(wrong)} inputs, e.g. {wrong[:3]}"


def assert_breadth_first(machine: StateMachine):
    order = [0]
    for state in order:
        for nxt in machine.transitions[state]:
            if nxt not in order:
                order.append(nxt)
    assert order == list(range(machine.n_states)), f"states not numbered breadth-first: {machine.transitions}"


@pytest.mark.parametrize("name, alphabet, lengths, decide, witnesses", KNOWN, ids=[k[0] for k in KNOWN])
def test_known_automata_are_recovered_with_their_minimal_number_of_states(name, alphabet, lengths, decide, witnesses):
    domain, words = domain_arrays(alphabet, *lengths)
    decisions, valid = truth_table(words, decide), np.ones(domain.size, dtype=bool)
    # independent lower bound: pairwise distinguishable prefixes need as many states
    labels = {tuple(w): int(d) for w, d in zip(words, decisions)}
    prefixes = [tuple(domain.ids(w)) for w in witnesses]
    assert all(distinguishable(p, q, labels, domain.n_tokens, domain.max_len)
               for p, q in itertools.combinations(prefixes, 2))
    n_states = len(witnesses)
    machine = synthesize_dfa(domain, decisions, valid)
    assert machine is not None and machine.n_states == n_states
    assert_agrees(machine, words, decisions)
    assert_breadth_first(machine)
    fewer = synthesize(domain, decisions, valid, max_states=n_states - 1)
    assert fewer.machine is None and fewer.ruled_out == n_states - 1
    assert f"at most {n_states - 1} states" in fewer.reason


def test_inputs_outside_the_precondition_are_unconstrained():
    at_least_one_a = CountThreshold({0}, set(), 1)
    domain, words = domain_arrays("ab", 1, 6, at_least_one_a)
    valid = np.array([run(at_least_one_a, w) == 1 for w in words])
    decisions = truth_table(words, lambda w: w.count(1) % 2)  # parity of 'b' on valid inputs ...
    decisions[~valid] = np.random.default_rng(0).integers(0, 2, int((~valid).sum()))  # ... noise elsewhere
    machine = synthesize_dfa(domain, decisions, valid)
    assert machine is not None and machine.n_states == 2
    assert_agrees(machine, words, decisions, valid)
    assert synthesize_dfa(domain, decisions, np.ones(domain.size, dtype=bool), max_states=3) is None


def test_timeout_returns_none_and_says_so():
    domain, words = domain_arrays("abc", 1, 6)
    decisions = truth_table(words, since_last_a_mod_5)
    result = synthesize(domain, decisions, np.ones(domain.size, dtype=bool), timeout_s=1e-4)
    assert result.machine is None and "timed out" in result.reason


def test_a_machine_that_disagrees_with_the_reference_interpreter_is_an_error(monkeypatch):
    domain, words = domain_arrays("ab", 1, 5)
    decisions = truth_table(words, a_count_mod_4)
    canonical = synth._canonical
    monkeypatch.setattr(synth, "_canonical", lambda *args: StateMachine(
        canonical(*args).transitions, frozenset()))  # a wrong acceptance set
    with pytest.raises(SynthesisError, match="disagrees with the truth table on .* valid inputs"):
        synthesize_dfa(domain, decisions, np.ones(domain.size, dtype=bool))


def test_docstring_example_runs():
    assert doctest.testmod(synth).failed == 0


@st.composite
def small_machines(draw) -> StateMachine:
    n_states = draw(st.integers(2, 4))
    row = st.lists(st.integers(0, n_states - 1), min_size=2, max_size=2)
    return StateMachine(draw(st.lists(row, min_size=n_states, max_size=n_states)),
                        draw(st.frozensets(st.integers(0, n_states - 1))))


@settings(max_examples=30, deadline=None)
@given(small_machines())
def test_random_machines_are_resynthesized_with_no_more_states(machine):
    domain, words = domain_arrays("ab", 1, 6)
    decisions = truth_table(words, lambda w: run(machine, w))
    found = synthesize_dfa(domain, decisions, np.ones(domain.size, dtype=bool), max_states=machine.n_states)
    assert found is not None and found.n_states <= machine.n_states
    assert_agrees(found, words, decisions)
    assert_breadth_first(found)
