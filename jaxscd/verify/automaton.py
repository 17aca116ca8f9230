"""The automaton strategy ("automaton"; "automaton-product" in certificates): surrogate == state machine by walking
their product position by position, no solver.

It applies when the program is a ``StateMachine`` (or a ``SaturatedDepth``, a counter machine) and the surrogate
is *layered by position* (checked on its integer arrays): each unit has a *layer*, the last position whose tokens it
reads (a unit that reads none takes the latest layer of the units feeding it); it reads no position before the one
preceding its layer and is fed only by units of its own layer or of the layer before. Layer i is then a function of
the tokens at i - 1 and i (or padding) and of the *carried* values: the layer-(i - 1) units that layer i reads. A
prefix of length i is summarised by (carried values, its last token, the machine's state, or its class where the
sequence ended, the score so far); prefixes with equal summaries give equal classes for every continuation, so one
representative per summary is extended by every token, or ends (padding up to max_len). At every end whose length
is in the domain, the surrogate's class (score > 0) must equal the machine's: an exact induction over positions in
int64, with one step per (summary, token). A compiled n-state machine has at most n x tokens summaries per
position, so a 60-state machine at length 12 takes 0.3 s where one z3 query over its network runs for minutes. The
walk covers every sequence of the domain's lengths, the precondition ignored (a superset: a difference found outside
the precondition leaves the proof UNKNOWN).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from jaxscd.domain import Domain
from jaxscd.dsl.programs import SaturatedDepth, StateMachine
from jaxscd.errors import JaxscdError
from jaxscd.surrogates import IntegerSurrogate
from jaxscd.verify.encode import one_query_text
from jaxscd.verify.solver import query_encodes
from jaxscd.verify.strategy import Goal, ProofResult, ProofStrategy, Verdict, in_domain, solver_verdict

MAX_SUMMARIES = 1_000_000  # summaries kept at one position at most
_INT64_SAFE = 1 << 62


@dataclass(frozen=True)
class Layers:
    """The surrogate cut by position: ``units[i]`` (index order), ``carried[i]`` (the layer-i units layer i + 1
    reads)."""

    units: list
    carried: list


def layers(surrogate: IntegerSurrogate) -> tuple[Layers | None, str]:
    """(the layers, "") when the surrogate is layered by position, else (None, why not)."""
    length = surrogate.hidden_w.shape[0]
    reads = np.any(surrogate.hidden_w != 0, axis=1)  # [max_len, H]
    layer = np.zeros(surrogate.n_neurons, dtype=np.int64)
    for j in range(surrogate.n_neurons):
        positions = np.flatnonzero(reads[:, j])
        feeding = np.flatnonzero(surrogate.unit_w[:j, j])
        above = int(layer[feeding].max()) if len(feeding) else 0
        layer[j] = int(positions[-1]) if len(positions) else above
        if len(positions) and positions[0] < layer[j] - 1:
            return None, f"unit {j} reads positions {positions[:4].tolist()}: more than two, or not adjacent"
        if len(feeding) and (above > layer[j] or int(layer[feeding].min()) < layer[j] - 1):
            return None, (f"unit {j} (position {layer[j]}) is fed by units of positions "
                          f"{sorted(set(layer[feeding].tolist()))}: only its own and the one before are allowed")
    units = [np.flatnonzero(layer == i) for i in range(length)]
    carried = []
    for i in range(length):
        later = units[i + 1] if i + 1 < length else np.zeros(0, dtype=np.int64)
        carried.append(units[i][np.any(surrogate.unit_w[np.ix_(units[i], later)] != 0, axis=1)])
    return Layers(units, carried), ""


def machine_of(program, n_tokens: int) -> StateMachine | None:
    """The program as a state machine: itself, or a saturated depth's (cap + 1)-state counter; None otherwise."""
    if isinstance(program, SaturatedDepth):
        from jaxscd.surrogates.compiled import depth_machine

        return depth_machine(program.open, program.close, program.cap, program.threshold, n_tokens)
    return program if isinstance(program, StateMachine) else None


def why_not(surrogate: IntegerSurrogate, program, domain: Domain) -> str | None:
    """Why the automaton strategy does not apply (None when it does)."""
    machine = machine_of(program, domain.n_tokens)
    if machine is None:
        return "the program is not a state machine"
    if len(machine.transitions[0]) != domain.n_tokens:
        return f"the machine reads {len(machine.transitions[0])} tokens, the domain has {domain.n_tokens}"
    if surrogate.hidden_w.shape[:2] != (domain.max_len, domain.n_tokens):
        return f"the surrogate's inputs {list(surrogate.hidden_w.shape[:2])} do not fit the domain"
    if surrogate.magnitude >= _INT64_SAFE:
        return "surrogate values may exceed exact int64"
    return layers(surrogate)[1] or None


def _step(surrogate: IntegerSurrogate, cut: Layers, i: int, carried: np.ndarray, previous: np.ndarray,
          token: np.ndarray):
    """(carried values of layer i [B, |carried[i]|], score added by layer i [B]) for summaries whose layer-(i - 1)
    carried values are ``carried`` [B, |carried[i - 1]|], whose token at i - 1 is ``previous`` and at i ``token``
    [B] (-1: padding, or i = 0). The layer's units at once; those fed by earlier units of the same layer then in
    index order."""
    units = cut.units[i]
    before = cut.carried[i - 1] if i > 0 else np.zeros(0, dtype=np.int64)
    pre = np.repeat(surrogate.hidden_b[units][None, :], len(token), axis=0)
    for position, at in ((i, token), (i - 1, previous)):
        if position >= 0:
            pre += np.where((at >= 0)[:, None], surrogate.hidden_w[position][np.maximum(at, 0)][:, units], 0)
    if len(before):  # sparse: each unit reads a few of the carried values (int64 throughout)
        from scipy import sparse

        pre += np.asarray(sparse.csr_matrix(surrogate.unit_w[np.ix_(before, units)].T) @ carried.T).T
    relu = np.maximum(pre, 0)
    inside = surrogate.unit_w[np.ix_(units, units)]  # strictly upper triangular: units are in index order
    for u in np.flatnonzero(inside.any(axis=0)).tolist():
        feeders = np.flatnonzero(inside[:u, u])
        relu[:, u] = np.maximum(pre[:, u] + relu[:, feeders] @ inside[feeders, u], 0)
    added = np.where(token >= 0, surrogate.skip_w[i, np.maximum(token, 0)], 0) + relu @ surrogate.out_w[units]
    return relu[:, np.searchsorted(units, cut.carried[i])], added


def walk(surrogate: IntegerSurrogate, program, domain: Domain) -> tuple[tuple | None, int]:
    """(a sequence of the domain's lengths where the surrogate's class and the machine's differ, or None; the number
    of summaries walked). Status per summary: the machine's state while the sequence runs, ``n + class`` once it
    ended (n states)."""
    cut, _ = layers(surrogate)
    program = machine_of(program, domain.n_tokens)
    n, n_tokens, length = program.n_states, domain.n_tokens, domain.max_len
    transitions = np.array(program.transitions, dtype=np.int64)
    accepting = np.zeros(n, dtype=np.int64)
    accepting[sorted(program.accepting)] = 1
    # one row per summary: carried values, status, score; and a representative prefix per row
    carried = np.zeros((1, 0), dtype=np.int64)
    previous = np.full(1, -1, dtype=np.int64)
    status = np.zeros(1, dtype=np.int64)
    score = np.full(1, surrogate.out_b, dtype=np.int64)
    prefix = np.full((1, length), -1, dtype=np.int64)
    walked = 1
    for i in range(length):
        running = status < n
        ends = running & (i >= domain.min_len)  # sequences of length i end here (padding from position i on)
        # each running summary: every token; each running one of a domain length, and each ended one: padding
        rows = np.concatenate([np.repeat(np.flatnonzero(running), n_tokens), np.flatnonzero(ends | ~running)])
        token = np.concatenate([np.tile(np.arange(n_tokens), int(running.sum())),
                                np.full(int((ends | ~running).sum()), -1)])
        nxt = np.where(token >= 0, transitions[np.minimum(status[rows], n - 1), np.maximum(token, 0)],
                       np.where(status[rows] < n, n + accepting[np.minimum(status[rows], n - 1)], status[rows]))
        values, added = _step(surrogate, cut, i, carried[rows], previous[rows], token)
        prefix = prefix[rows]
        prefix[:, i] = token
        key = np.concatenate([values, token[:, None], nxt[:, None], (score[rows] + added)[:, None]], axis=1)
        key, first = np.unique(key, axis=0, return_index=True)
        if len(key) > MAX_SUMMARIES:
            raise _TooMany(f"{len(key):,} summaries at position {i}, above {MAX_SUMMARIES:,}")
        carried, previous, status, score = key[:, :-3], key[:, -3], key[:, -2], key[:, -1]
        prefix = prefix[first]
        walked += len(key)
    # every sequence has ended by max_len: running ones have length max_len (in the domain)
    expected = np.where(status < n, accepting[np.minimum(status, n - 1)], status - n)
    wrong = np.flatnonzero((score > 0).astype(np.int64) != expected)
    if not len(wrong):
        return None, walked
    row = prefix[wrong[0]]
    return tuple(int(t) for t in row[row >= 0]), walked


class _TooMany(JaxscdError):
    """More summaries than ``MAX_SUMMARIES`` at one position: the proof is left UNKNOWN."""


def prove(goal: Goal, timeout_s: float) -> ProofResult:
    start = time.perf_counter()
    reason = why_not(goal.surrogate, goal.program, goal.domain)
    if reason is None:
        try:
            difference, walked = walk(goal.surrogate, goal.program, goal.domain)
        except _TooMany as err:
            reason = str(err)
    if reason is not None:
        return ProofResult(Verdict.UNKNOWN, time.perf_counter() - start, reason=f"automaton: {reason}",
                           method=STRATEGY.method)
    seconds = time.perf_counter() - start
    if difference is not None and not in_domain(goal.domain, difference):  # the walk ignores the precondition
        return ProofResult(Verdict.UNKNOWN, seconds, method=STRATEGY.method,
                           reason=f"automaton: surrogate and machine differ on {goal.domain.format(difference)!r}, "
                                  f"outside the precondition; the walk does not read it")
    return solver_verdict("unsat" if difference is None else "sat", difference, seconds, goal.surrogate,
                          goal.program, goal.domain, "", method=STRATEGY.method, record={"summaries": walked},
                          summary=f"{walked:,} product summaries")


def files(obligation: dict) -> list:
    return ["query.smt2"]


def recheck(report, bundle, obligation, goal: Goal, timeout_s: float) -> None:
    """The layering from the arrays and the program's type, then the product walked again."""
    reason = why_not(goal.surrogate, goal.program, goal.domain)
    report.add("surrogate is layered by position and the program a state machine", reason is None,
               reason or "each unit reads its position, the one before, and units of the layer before")
    if reason is not None:
        return
    try:
        difference, walked = walk(goal.surrogate, goal.program, goal.domain)
    except _TooMany as err:
        report.add("surrogate == program over the product walk", False, str(err))
        return
    report.add(f"surrogate == program over all {walked:,} product summaries", difference is None,
               "" if difference is None else f"differ on {goal.domain.format(difference)!r}")
    query_encodes(report, bundle, "query.smt2", one_query_text(goal.surrogate, goal.program, goal.domain),
                  "surrogate")


STRATEGY = ProofStrategy("automaton", "automaton-product", prove, files, recheck,
                         summary="surrogate layered by position walked together with a state machine program, "
                                 "position by position")
