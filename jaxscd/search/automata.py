"""State machines by active learning (AALpy): an exact automaton of any size from the truth table, in milliseconds.

Synthesis (``synth``) finds the *smallest* machine but is capped (``DistillConfig.synth_states``); here AALpy's KV
or L* learns one of any size, with jaxscd's truth table as both oracles:

- ``TableSUL``: membership queries answered from the truth table (a word's class, looked up by its domain index).
  Words outside the domain (lengths outside ``min_len..max_len``, the empty word, precondition false) are
  *don't care* for the claim; the SUL answers them ``OUTSIDE`` (0, reject), so it is a fixed finite language whose
  minimal automaton AALpy always reaches, exact on the domain;
- ``DomainOracle``: the equivalence query checks the hypothesis on *every* valid input (``final_states``: the
  machine run over the whole domain length by length in numpy, no word-by-word loop) and returns the shortest
  disagreeing word;
- ``merge_states``: the learner stops at its first hypothesis exact on the domain, but answering 0 outside the
  domain can still make it count lengths (a rejecting layer past ``max_len``); greedy state merges, each kept only
  while every valid input keeps its class, fold such states together (the minimum is NP-hard: ``synth`` searches
  below the merged size, up to its cap).

``learn`` (``learn_automaton(problem)``) is what ``distill`` runs when the DSL and the compositions come up empty;
the machine is compiled and proved like any other program (``jaxscd.verify.automaton`` walks the compiled network
and the machine together). For AALpy users, ``TableSUL.from_circuit`` adapts any jaxscd circuit source, and
``certify`` turns a learned AALpy DFA into a ``distill`` result with a certificate:

    >>> from aalpy.learning_algs import run_KV
    >>> from jaxscd.circuits.examples import example
    >>> circuit, domain = example("parity_of_count")
    >>> sul = TableSUL.from_circuit(circuit, domain)
    >>> dfa = run_KV(sul.alphabet, sul, DomainOracle(sul), "dfa", print_level=0)
    >>> certify(dfa, circuit, domain).verdict.value  # doctest: +SKIP
    'PROVED'
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from aalpy.base import SUL, Oracle

from jaxscd.domain import Domain
from jaxscd.dsl.programs import StateMachine
from jaxscd.errors import InputError

OUTSIDE = 0  # the SUL's answer to a word outside the domain (don't care for the claim: any fixed answer is sound)
MERGE_BUDGET_S = 2.0  # seconds the greedy state merges may take; the machine is exact after every kept merge


# --------------------------------------------------------------------------------------------------------------
# The whole domain through a machine, length by length


def final_states(transitions: np.ndarray, domain: Domain) -> np.ndarray:
    """int32 [size]: the state a DFA (``transitions`` int [n_states, n_tokens], start state 0) ends in on every
    sequence of ``domain``. Sequences are numbered by length, then lexicographically (``jaxscd.domain``), so the
    words of length n are those of length n - 1 followed by each token: one gather per length, no decoding."""
    transitions = np.asarray(transitions, dtype=np.int32)
    out = np.empty(domain.size, dtype=np.int32)
    layer = np.zeros(1, dtype=np.int32)  # the empty word
    for length in range(1, domain.max_len + 1):
        layer = transitions[layer].reshape(-1)
        if length >= domain.min_len:
            first = int(domain.starts[length - domain.min_len])
            out[first:first + len(layer)] = layer
    return out


def machine_decisions(machine: StateMachine, domain: Domain) -> np.ndarray:
    """int8 [size]: the class of ``machine`` on every sequence of ``domain`` (``final_states``, then acceptance)."""
    accepting = np.zeros(machine.n_states, dtype=np.int8)
    accepting[sorted(machine.accepting)] = 1
    return accepting[final_states(np.array(machine.transitions), domain)]


# --------------------------------------------------------------------------------------------------------------
# The AALpy side: a SUL over the truth table and an equivalence oracle over the whole domain


class TableSUL(SUL):
    """AALpy system under learning backed by a jaxscd truth table: the output after each letter is the class of the
    word read so far (``OUTSIDE`` for words outside the domain). Letters are the domain's token names.

    ``decisions``: int [size], the class of every domain input; ``valid``: bool [size], the precondition."""

    def __init__(self, domain: Domain, decisions: np.ndarray, valid: np.ndarray | None = None):
        super().__init__()
        self.domain = domain
        self.decisions = np.asarray(decisions).astype(np.int8)
        self.valid = np.ones(domain.size, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
        if self.decisions.shape != (domain.size,) or self.valid.shape != (domain.size,):
            raise InputError(f"a truth table needs one decision and one validity per domain input ({domain.size:,}), "
                             f"got {list(self.decisions.shape)} and {list(self.valid.shape)}")
        self._letter = {name: token for token, name in enumerate(domain.alphabet)}
        self._starts = [int(s) for s in domain.starts]
        self.pre()

    @classmethod
    def from_problem(cls, problem) -> TableSUL:
        return cls(problem.domain, problem.decisions, problem.valid)

    @classmethod
    def from_circuit(cls, source, domain: Domain | None = None) -> TableSUL:
        """The SUL of any jaxscd circuit source (a task, a ``CircuitSource`` or a ``Circuit``) on ``domain`` (default:
        the source's own): jaxscd's exhaustive pass evaluates every input once, queries then cost a look-up."""
        from jaxscd.circuits.sources import as_source
        from jaxscd.kernels.enumerate import precondition_mask
        from jaxscd.kernels.evaluate import evaluate_circuit

        source = as_source(source)
        domain = source.domain() if domain is None else domain
        valid = precondition_mask(domain)
        table = evaluate_circuit(source.circuit, domain, valid)
        if table.min_margin() <= table.margin_bound:
            raise InputError(f"circuit margin {table.min_margin():.3g} is not above the float bound "
                             f"{table.margin_bound:g}: its truth table is not trusted, so it cannot answer queries")
        return cls(domain, table.decisions, valid)

    @property
    def alphabet(self) -> list:
        return list(self.domain.alphabet)

    def pre(self) -> None:
        self._length, self._local = 0, 0

    def post(self) -> None:
        pass

    def step(self, letter) -> bool:
        if letter is not None:
            if letter not in self._letter:
                raise InputError(f"letter {letter!r} is not in the alphabet {self.alphabet}")
            self._length += 1
            if self._length <= self.domain.max_len:
                self._local = self._local * self.domain.n_tokens + self._letter[letter]
        return self._class()

    def _class(self) -> bool:
        length, domain = self._length, self.domain
        if not domain.min_len <= length <= domain.max_len:
            return bool(OUTSIDE)
        index = self._starts[length - domain.min_len] + self._local
        return bool(self.decisions[index]) if self.valid[index] else bool(OUTSIDE)

    def member(self, word) -> bool:
        """The class of one word (letters), as the learner sees it."""
        self.pre()
        out = self.step(None)
        for letter in word:
            out = self.step(letter)
        return out


class DomainOracle(Oracle):
    """AALpy equivalence oracle: the hypothesis equals the truth table on every valid input of the domain, or the
    shortest (then lexicographically first) input where it does not is the counterexample. One call runs the
    hypothesis over the whole domain in numpy (``final_states``)."""

    def __init__(self, sul: TableSUL):
        super().__init__(sul.alphabet, sul)
        self.table = sul  # the learner may wrap ``self.sul`` in its cache; the table is read directly

    def find_cex(self, hypothesis) -> tuple | None:
        self.num_queries += 1
        transitions, accepting = dfa_table(hypothesis, self.table.alphabet)
        table = self.table
        predicted = accepting[final_states(transitions, table.domain)]
        wrong = np.flatnonzero(table.valid & (predicted != table.decisions.astype(bool)))
        self.num_steps += int(table.valid.sum())
        if not len(wrong):
            return None
        from jaxscd.kernels.enumerate import decode_indices

        tokens, lengths = decode_indices(table.domain, wrong[:1])
        return tuple(table.domain.names(np.asarray(tokens)[0, :int(lengths[0])]))


# --------------------------------------------------------------------------------------------------------------
# AALpy DFA <-> StateMachine


def dfa_table(dfa, alphabet) -> tuple[np.ndarray, np.ndarray]:
    """(transitions int32 [n, len(alphabet)], accepting bool [n]) of an AALpy DFA, states numbered breadth first
    from its initial state (letters in ``alphabet`` order); states it cannot reach are left out."""
    order, number = [dfa.initial_state], {id(dfa.initial_state): 0}
    rows = []
    for state in order:
        missing = [a for a in alphabet if a not in state.transitions]
        if missing:
            raise InputError(f"the automaton has no transition from state {state.state_id!r} on {missing}; a "
                             f"StateMachine needs a complete DFA over {list(alphabet)} (make_input_complete())")
        row = []
        for letter in alphabet:
            nxt = state.transitions[letter]
            if id(nxt) not in number:
                number[id(nxt)] = len(order)
                order.append(nxt)
            row.append(number[id(nxt)])
        rows.append(row)
    return np.array(rows, dtype=np.int32), np.array([bool(s.is_accepting) for s in order])


def to_state_machine(dfa, domain: Domain) -> StateMachine:
    """The DSL's ``StateMachine`` for an AALpy DFA over the domain's token names: the same class on every word."""
    transitions, accepting = dfa_table(dfa, list(domain.alphabet))
    return StateMachine(transitions.tolist(), frozenset(np.flatnonzero(accepting).tolist()))


def to_dfa(machine: StateMachine, domain: Domain):
    """The AALpy DFA of a ``StateMachine`` (letters: the domain's token names)."""
    from aalpy.automata import Dfa, DfaState

    states = [DfaState(f"s{s}", s in machine.accepting) for s in range(machine.n_states)]
    for state, row in zip(states, machine.transitions):
        for name, nxt in zip(domain.alphabet, row):
            state.transitions[name] = states[nxt]
    return Dfa(states[0], states)


# --------------------------------------------------------------------------------------------------------------
# Greedy merges: fewer states, exact on the domain after each


def _fold(transitions: np.ndarray, free: np.ndarray, label: np.ndarray, p: int, q: int):
    """(class root of every state, a leader per root) after merging p and q and, to stay deterministic, their
    successors; None as soon as a class would hold states where inputs of both classes end (``label``: per state,
    the class of the valid inputs ending there, -1 for none). A state is ``free`` when no domain word reads a token
    from it (it is reached at max_len or later): its transitions constrain nothing, so a class follows the
    transitions of a member that is not free."""
    parent = np.arange(len(transitions))
    leader = np.where(free, -1, np.arange(len(transitions)))  # per class root: a member that is not free, or -1
    label = label.copy()

    def find(s: int) -> int:
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    pending = [(p, q)]
    while pending:
        ra, rb = (find(s) for s in pending.pop())
        if ra == rb:
            continue
        if label[ra] >= 0 and label[rb] >= 0 and label[ra] != label[rb]:
            return None
        root, other = min(ra, rb), max(ra, rb)
        parent[other] = root
        label[root] = max(label[ra], label[rb])
        a, b = leader[ra], leader[rb]
        if a >= 0 and b >= 0:
            pending += zip(transitions[a].tolist(), transitions[b].tolist())
        leader[root] = a if a >= 0 else b
    return np.array([find(s) for s in range(len(transitions))]), leader


def _relabel(transitions: np.ndarray, representative: np.ndarray, leader: np.ndarray | None = None) -> np.ndarray:
    """The quotient machine's table, states numbered breadth first from the start state's class; a class moves as
    its ``leader`` does (a class without one, and every state reached only at max_len or later, loops)."""
    leader = np.arange(len(transitions)) if leader is None else leader
    order, number = [int(representative[0])], {int(representative[0]): 0}
    rows = []
    for cls in order:
        row = representative[transitions[leader[cls]]] if leader[cls] >= 0 else np.full(transitions.shape[1], cls)
        for nxt in row.tolist():
            if nxt not in number:
                number[nxt] = len(order)
                order.append(nxt)
        rows.append([number[n] for n in row.tolist()])
    return np.array(rows, dtype=np.int32)


def _free(transitions: np.ndarray, max_len: int) -> np.ndarray:
    """bool [n]: states no word shorter than ``max_len`` reaches (breadth-first depth from state 0)."""
    depth = np.full(len(transitions), max_len, dtype=np.int64)
    depth[0], frontier = 0, [0]
    for level in range(1, max_len):
        frontier = [n for n in set(transitions[frontier].ravel().tolist()) if depth[n] == max_len]
        depth[frontier] = level
    return depth >= max_len


def _trimmed(transitions: np.ndarray, max_len: int) -> np.ndarray:
    """The machine with the transitions of free states looping (they constrain nothing), renumbered without the
    states only they reached."""
    free = _free(transitions, max_len)
    return _relabel(transitions, np.arange(len(transitions)), np.where(free, -1, np.arange(len(transitions))))


def _labels(final: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray | None:
    """int [n]: the class of the inputs ending in each state (``final``: the state per input; -1 where none ends),
    or None when some state has both classes."""
    total = np.bincount(final, minlength=n)
    ones = np.bincount(final, weights=labels, minlength=n)
    if np.any((ones > 0) & (ones < total)):
        return None
    return np.where(total == 0, -1, (ones > 0).astype(np.int64))


def merge_states(machine: StateMachine, domain: Domain, decisions: np.ndarray, valid: np.ndarray,
                 budget_s: float = MERGE_BUDGET_S) -> StateMachine:
    """A machine with fewer states, equal to ``decisions`` on every valid input, by greedy merges (each state, in
    breadth-first order, into the first earlier state it can join); stops after ``budget_s`` seconds. ``machine``
    must already be exact on the valid inputs. A domain word never reads a token from a free state, so after a
    merge it ends in the class of the state it ended in before: a merge keeps the machine exact exactly when no
    class holds states where inputs of both classes end."""
    deadline = time.perf_counter() + budget_s
    labels = np.asarray(decisions).astype(np.int64)[valid]
    table = _trimmed(np.array(machine.transitions, dtype=np.int32), domain.max_len)
    label = _labels(final_states(table, domain)[valid], labels, len(table))
    if label is None:
        raise ValueError(f"merge_states needs a machine exact on the domain; {machine!r} is not")
    q = 1
    while q < len(table) and time.perf_counter() < deadline:
        free = _free(table, domain.max_len)
        for p in range(q):
            folded = _fold(table, free, label, p, q)
            if folded is not None:
                table = _trimmed(_relabel(table, *folded), domain.max_len)
                label = _labels(final_states(table, domain)[valid], labels, len(table))
                break
        else:
            q += 1
    return StateMachine(table.tolist(), frozenset(np.flatnonzero(label == 1).tolist()))


# --------------------------------------------------------------------------------------------------------------
# Learning


@dataclass(frozen=True)
class Learned:
    machine: StateMachine | None  # exact on every valid input; None when the learner failed
    learned_states: int  # states of AALpy's automaton, before the merges
    membership_queries: int
    equivalence_queries: int
    seconds: float
    reason: str = ""  # why ``machine`` is None

    def summary(self) -> str:
        if self.machine is None:
            return f"automaton learning: {self.reason}"
        return (f"learned automaton (AALpy): {self.learned_states} states from {self.membership_queries} membership "
                f"and {self.equivalence_queries} equivalence queries, {self.machine.n_states} after merges, "
                f"{self.seconds:.2f} s")


def learn(domain: Domain, decisions: np.ndarray, valid: np.ndarray, algorithm: str = "kv",
          merge_budget_s: float = MERGE_BUDGET_S) -> Learned:
    """An exact state machine for the truth table (``decisions`` on every ``valid`` input) by AALpy's KV ("kv") or
    L* ("lstar") with the whole-domain oracle, then merged (``merge_states``)."""
    from aalpy.learning_algs import run_KV, run_Lstar

    learners = {"kv": run_KV, "lstar": run_Lstar}
    if algorithm not in learners:
        raise InputError(f"unknown learning algorithm {algorithm!r}; use one of {', '.join(learners)}")
    start = time.perf_counter()
    sul = TableSUL(domain, decisions, valid)
    oracle = DomainOracle(sul)
    dfa, info = learners[algorithm](sul.alphabet, sul, oracle, "dfa", return_data=True, print_level=0)
    learned = to_state_machine(dfa, domain)
    exact = not np.any(sul.valid & (machine_decisions(learned, domain) != sul.decisions))
    if not exact:  # the oracle accepted it, so this is a bug (here or in AALpy): never a silent wrong answer
        return Learned(None, learned.n_states, info["queries_learning"], info["queries_eq_oracle"],
                       time.perf_counter() - start, "the learned automaton differs from the truth table (a bug)")
    machine = merge_states(learned, domain, sul.decisions, sul.valid, merge_budget_s)
    return Learned(machine, learned.n_states, info["queries_learning"], info["queries_eq_oracle"],
                   time.perf_counter() - start)


def learn_automaton(problem, algorithm: str = "kv") -> StateMachine | None:
    """An exact state machine of any size for a ``Problem``'s truth table (see ``learn``)."""
    return learn(problem.domain, problem.decisions, problem.valid, algorithm).machine


# --------------------------------------------------------------------------------------------------------------
# For AALpy users: certify a learned automaton


def certify(dfa, source, domain: Domain | None = None, config=None, log=lambda _: None):
    """``distill`` with an AALpy DFA as the one candidate: the DFA is converted to a ``StateMachine``, checked on
    every valid input (REFUTED with the shortest disagreeing input when it differs), then compiled to an integer
    surrogate and proved equal to it by z3, as every jaxscd program is. Returns the ``DistillResult`` (write its
    bundle with ``jaxscd.write_bundle``)."""
    from jaxscd.circuits.sources import as_source
    from jaxscd.pipeline import DistillConfig, distill

    source = as_source(source)
    domain = source.domain() if domain is None else domain
    machine = to_state_machine(dfa, domain)
    return distill(source, domain, DistillConfig() if config is None else config, log=log, candidate=machine)
