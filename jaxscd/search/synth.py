"""State machines by synthesis: the smallest DFA that reproduces a truth table on every valid input.

The candidate search enumerates state machines only up to 3 states (the family grows as n^(n k)); beyond that a
machine is synthesized instead. DFA identification is SAT (Heule & Verwer 2010): every node of the prefix tree
(trie) of the labelled words gets a state, the root is state 0, a node's state and token fix its child's state
through the transition table, and a labelled node's state is accepting iff its label is 1. States are numbered
in breadth-first order (Ulyantsev, Zakirzyanov & Shalyto 2015), so each machine has one encoding and "no
n-state machine" is proved without trying its n! renamings.

The trie is never built for the whole domain. It holds a *sample* of valid words (the shortest ones and a few
random ones); a solution is run on the whole domain and inputs it gets wrong join the sample (counterexample-
guided). Nodes off every sampled path, in particular subtrees with no valid word, never enter the encoding. A
sample's constraints are a subset of the domain's, so "no n-state machine fits the sample" holds for the domain
too: the first n whose solution survives the full check is the minimum. Invalid inputs (precondition false)
are unconstrained.

    >>> from jaxscd.domain import Domain
    >>> from jaxscd.kernels.enumerate import all_tokens
    >>> domain = Domain(("a", "b"), 1, 6)
    >>> tokens, lengths = all_tokens(domain)
    >>> decisions = ((tokens == 0).sum(axis=1) % 3 == 0).astype(np.int8)  # count of 'a' divisible by 3
    >>> synthesize_dfa(domain, decisions, np.ones(domain.size, dtype=bool)).transitions
    ((1, 0), (2, 1), (0, 2))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import z3

from jaxscd.domain import Domain
from jaxscd.dsl.programs import StateMachine
from jaxscd.dsl.reference import run
from jaxscd.errors import JaxscdError
from jaxscd.kernels.enumerate import all_tokens
from jaxscd.verify.solver import checked

INITIAL_SHORTEST = 64  # the shortest valid words start the sample: they pin down the first transitions
INITIAL_RANDOM = 32  # plus a few random ones, so long words constrain the first solution too
COUNTEREXAMPLES_PER_ROUND = 16  # half the shortest wrong inputs, half random ones


class SynthesisError(JaxscdError, RuntimeError):
    """A synthesized machine disagrees with the truth table it was built from (a bug in this module)."""


@dataclass
class Synthesis:
    machine: StateMachine | None  # the smallest machine, canonically numbered; None when not found
    reason: str  # why ``machine`` is None ("" when found)
    ruled_out: int  # no machine with this many states (or fewer) fits; 0 when none was ruled out
    seconds: float
    sat_calls: int = 0
    sample_size: int = 0  # labelled words in the final sample
    per_states: dict = field(default_factory=dict)  # n -> seconds spent on n-state queries


# --------------------------------------------------------------------------------------------------------------
# CNF over numbered Bool variables, handed to z3 as SMT-LIB text (parsing text is ~10x faster than building one
# z3 term per clause through the Python API)


class _Cnf:
    def __init__(self):
        self.solver = z3.SolverFor("QF_FD")
        self.n_vars = 0
        self._declared = 0
        self._pending: list[str] = []

    def var(self) -> int:
        self.n_vars += 1
        return self.n_vars

    def clause(self, *literals: int) -> None:
        """Disjunction of literals: +v is variable v, -v its negation."""
        text = " ".join(f"v{lit}" if lit > 0 else f"(not v{-lit})" for lit in literals)
        self._pending.append(f"(assert (or {text} false))\n")

    def check(self, timeout_s: float) -> z3.CheckSatResult:
        declarations = "".join(f"(declare-const v{v} Bool)\n" for v in range(self._declared + 1, self.n_vars + 1))
        self.solver.from_string(declarations + "".join(self._pending))
        self._declared, self._pending = self.n_vars, []
        self.solver.set("timeout", max(1, int(timeout_s * 1000)))
        return checked(self.solver)

    def values(self, variables) -> np.ndarray:
        model = self.solver.model()
        flat = np.asarray(variables)
        truth = [z3.is_true(model.eval(z3.Bool(f"v{v}"), model_completion=True)) for v in flat.ravel()]
        return np.array(truth, dtype=bool).reshape(flat.shape)


def _exactly_one(cnf: _Cnf, variables: Sequence[int]) -> None:
    cnf.clause(*variables)
    for i, a in enumerate(variables):
        for b in variables[i + 1:]:
            cnf.clause(-a, -b)


# --------------------------------------------------------------------------------------------------------------
# The encoding for a fixed number of states; words are added incrementally


class _Encoding:
    """SAT encoding of "an n-state DFA over n_tokens tokens labels every added word correctly".

    Variables: ``delta[p, a, q]`` (p --a--> q), ``accept[q]``, ``accept_after[p, a]`` (the state p --a--> is
    accepting) and, for each trie node with a child, ``state[node][q]``. A labelled node without children needs
    no state variables: its label constrains ``accept_after`` of its parent's state.
    """

    def __init__(self, n_states: int, n_tokens: int, label_of: Callable[[tuple], int | None]):
        self.n, self.k, self.label_of = n_states, n_tokens, label_of
        self.cnf = cnf = _Cnf()
        n, k = n_states, n_tokens
        self.delta = np.array([[[cnf.var() for _ in range(n)] for _ in range(k)] for _ in range(n)])
        self.accept = np.array([cnf.var() for _ in range(n)])
        self.accept_after = np.array([[cnf.var() for _ in range(k)] for _ in range(n)])
        for p in range(n):
            for a in range(k):
                _exactly_one(cnf, list(self.delta[p, a]))
                for q in range(n):
                    cnf.clause(-self.delta[p, a, q], -self.accept[q], self.accept_after[p, a])
                    cnf.clause(-self.delta[p, a, q], self.accept[q], -self.accept_after[p, a])
        self._breadth_first_numbering()
        root = [cnf.var() for _ in range(n)]
        for q in range(n):
            cnf.clause(root[q] if q == 0 else -root[q])
        self.states: dict[tuple, list[int]] = {(): root}
        self.leaves: set[tuple] = set()

    def _breadth_first_numbering(self) -> None:
        """States 1..n-1 are numbered in the order a breadth-first walk from state 0 (tokens in id order)
        discovers them: parents are non-decreasing, and siblings follow the order of their smallest token."""
        cnf, n, k, delta = self.cnf, self.n, self.k, self.delta
        edge = {(i, j): cnf.var() for j in range(n) for i in range(j)}  # some token leads i -> j
        parent = {(j, i): cnf.var() for j in range(1, n) for i in range(j)}  # i is j's smallest predecessor
        first = {(i, a, j): cnf.var() for j in range(n) for i in range(j) for a in range(k)}  # a: smallest i -> j
        for (i, j), e in edge.items():
            for a in range(k):
                cnf.clause(-delta[i, a, j], e)
            cnf.clause(-e, *[delta[i, a, j] for a in range(k)])
        for j in range(1, n):
            cnf.clause(*[parent[j, i] for i in range(j)])
            for i in range(j):
                cnf.clause(-parent[j, i], edge[i, j])
                for earlier in range(i):
                    cnf.clause(-parent[j, i], -edge[earlier, j])
                cnf.clause(parent[j, i], -edge[i, j], *[edge[earlier, j] for earlier in range(i)])
                if j + 1 < n:
                    for earlier in range(i):
                        cnf.clause(-parent[j, i], -parent[j + 1, earlier])
        for (i, a, j), m in first.items():
            cnf.clause(-m, delta[i, a, j])
            for b in range(a):
                cnf.clause(-m, -delta[i, b, j])
            cnf.clause(m, -delta[i, a, j], *[delta[i, b, j] for b in range(a)])
        for j in range(1, n - 1):
            for i in range(j):
                for a in range(k):
                    for b in range(a):
                        cnf.clause(-parent[j, i], -parent[j + 1, i], -first[i, a, j], -first[i, b, j + 1])

    def _label(self, states: list[int], label: int) -> None:
        for q in range(self.n):
            self.cnf.clause(-states[q], self.accept[q] if label else -self.accept[q])

    def _expand(self, node: tuple) -> list[int]:
        """State variables of ``node`` (its parent expanded first), tied to the parent's by the transitions."""
        if node in self.states:
            return self.states[node]
        above, token = self._expand(node[:-1]), node[-1]
        cnf, n = self.cnf, self.n
        states = [cnf.var() for _ in range(n)]
        for i, a in enumerate(states):  # at most one state (implied by the transitions; helps propagation)
            for b in states[i + 1:]:
                cnf.clause(-a, -b)
        for p in range(n):
            for q in range(n):
                cnf.clause(-above[p], -self.delta[p, token, q], states[q])
                cnf.clause(-above[p], -states[q], self.delta[p, token, q])
        label = self.label_of(node)
        if label is not None:
            self._label(states, label)
        self.states[node] = states
        return states

    def add_word(self, word: tuple, label: int) -> None:
        for length in range(1, len(word)):
            self._expand(word[:length])
        if word in self.states:
            self._label(self.states[word], label)
        elif word not in self.leaves:
            self.leaves.add(word)
            above, token = self.states[word[:-1]], word[-1]
            for p in range(self.n):
                self.cnf.clause(-above[p], self.accept_after[p, token] if label else -self.accept_after[p, token])

    def machine(self) -> tuple[np.ndarray, np.ndarray]:
        """(transitions int [n, k], accepting bool [n]) of the current model."""
        return self.cnf.values(self.delta).argmax(axis=2), self.cnf.values(self.accept)


# --------------------------------------------------------------------------------------------------------------
# Whole-domain checks and the canonical form


def final_states(transitions: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(final state [N], bool [n_states, n_tokens]: transitions taken) of a DFA run on padded token rows."""
    state = np.zeros(len(tokens), dtype=np.int64)
    used = np.zeros(transitions.shape, dtype=bool)
    for position in range(tokens.shape[1]):
        column = tokens[:, position].astype(np.int64)
        live = column >= 0
        used[state[live], column[live]] = True
        state = np.where(live, transitions[state, np.maximum(column, 0)], state)
    return state, used


def _canonical(transitions: np.ndarray, final: np.ndarray, used: np.ndarray, decisions: np.ndarray) -> StateMachine:
    """The machine with its free choices fixed: transitions no valid input takes loop back, states no valid input
    ends in reject, and states are renumbered in breadth-first order from state 0 (tokens in id order).
    ``final, used`` are ``final_states`` of the valid inputs."""
    table = np.where(used, transitions, np.arange(len(transitions))[:, None])
    accepting = np.zeros(len(table), dtype=bool)
    accepting[final[decisions == 1]] = True
    order, seen = [0], {0}
    for state in order:
        for nxt in table[state]:
            if int(nxt) not in seen:
                seen.add(int(nxt))
                order.append(int(nxt))
    rename = {old: new for new, old in enumerate(order)}
    rows = tuple(tuple(rename[int(nxt)] for nxt in table[old]) for old in order)
    return StateMachine(rows, frozenset(rename[s] for s in order if accepting[s]))


def _check_with_reference(machine: StateMachine, tokens: np.ndarray, lengths: np.ndarray,
                          decisions: np.ndarray) -> None:
    """Every valid input through the reference interpreter: the DSL meaning must equal the synthesized one."""
    wrong = [row for row in range(len(tokens)) if run(machine, tokens[row, :lengths[row]].tolist()) != decisions[row]]
    if wrong:
        example = tokens[wrong[0], :lengths[wrong[0]]].tolist()
        raise SynthesisError(f"synthesized {machine!r} disagrees with the truth table on {len(wrong)} valid inputs, "
                             f"e.g. {example} (table says {int(decisions[wrong[0]])}); this is a bug in "
                             f"jaxscd.search.synth, please report it with the domain and the table")


# --------------------------------------------------------------------------------------------------------------
# Counterexample-guided synthesis


def synthesize(domain: Domain, decisions: np.ndarray, valid: np.ndarray, max_states: int = 8,
               timeout_s: float = 60.0, tokens: np.ndarray | None = None, lengths: np.ndarray | None = None,
               seed: int = 0) -> Synthesis:
    """The smallest state machine (at most ``max_states`` states) whose class equals ``decisions`` on every
    valid input, with statistics; ``machine`` is None after ``timeout_s`` seconds or when none fits.

    ``decisions``: int [size] (class per domain index); ``valid``: bool [size]; ``tokens``, ``lengths``: the
    domain from ``kernels.enumerate.all_tokens`` when the caller already has it.
    """
    start = time.perf_counter()
    deadline = start + timeout_s
    if tokens is None or lengths is None:
        tokens, lengths = all_tokens(domain)
    rows = np.flatnonzero(valid)
    tokens, lengths, labels = tokens[rows], lengths[rows], np.asarray(decisions)[rows].astype(np.int8)
    label_of = _labeller(domain, valid, decisions)
    rng = np.random.default_rng(seed)
    sample = list(range(min(INITIAL_SHORTEST, len(rows))))  # rows are numbered shortest first
    sample += rng.choice(len(rows), min(INITIAL_RANDOM, len(rows)), replace=False).tolist() if len(rows) else []
    sample = sorted(set(sample))
    result = Synthesis(None, "", 0, 0.0)

    def word(row: int) -> tuple:
        return tuple(int(t) for t in tokens[row, :lengths[row]])

    n = 1
    encoding = None
    while n <= max_states:
        if encoding is None:
            encoding = _Encoding(n, domain.n_tokens, label_of)
            for row in sample:
                encoding.add_word(word(row), int(labels[row]))
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            break
        began = time.perf_counter()
        verdict = encoding.cnf.check(remaining)
        result.sat_calls += 1
        result.per_states[n] = result.per_states.get(n, 0.0) + time.perf_counter() - began
        if verdict == z3.unknown:
            break
        if verdict == z3.unsat:
            result.ruled_out, n, encoding = n, n + 1, None
            continue
        transitions, accepting = encoding.machine()
        final, used = final_states(transitions, tokens)
        wrong = np.flatnonzero(accepting[final].astype(np.int8) != labels)
        if not len(wrong):
            result.machine = _canonical(transitions, final, used, labels)
            break
        picked = set(wrong[:COUNTEREXAMPLES_PER_ROUND // 2].tolist())
        picked |= set(rng.choice(wrong, min(COUNTEREXAMPLES_PER_ROUND // 2, len(wrong)), replace=False).tolist())
        for row in sorted(picked):
            encoding.add_word(word(row), int(labels[row]))
        sample += sorted(picked)
    result.sample_size = len(sample)
    if result.machine is None:
        result.reason = (f"no machine with at most {max_states} states fits" if n > max_states else
                         f"timed out after {timeout_s:g} s while trying {n} states")
    else:
        _check_with_reference(result.machine, tokens, lengths, labels)
    result.seconds = time.perf_counter() - start
    return result


def _labeller(domain: Domain, valid: np.ndarray, decisions: np.ndarray) -> Callable[[tuple], int | None]:
    """The label of a trie node: its decision when it is a valid domain word, else None (unconstrained)."""
    def label_of(word: tuple) -> int | None:
        if len(word) < domain.min_len:
            return None
        index = domain.index_of(word)
        return int(decisions[index]) if valid[index] else None
    return label_of


def synthesize_dfa(domain: Domain, decisions: np.ndarray, valid: np.ndarray, max_states: int = 8,
                   timeout_s: float = 60.0, tokens: np.ndarray | None = None,
                   lengths: np.ndarray | None = None) -> StateMachine | None:
    """The smallest state machine equal to ``decisions`` on every valid input, or None (see ``synthesize``)."""
    return synthesize(domain, decisions, valid, max_states, timeout_s, tokens, lengths).machine
