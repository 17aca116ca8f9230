"""Mutants for soundness testing: small edits to a program or an integer surrogate.

A prover is sound on a mutant when its verdict equals the exhaustive truth: PROVED exactly when the mutant
still agrees with its counterpart on every domain input, otherwise REFUTED with a counterexample that really
disagrees. ``MutationBase.check`` returns that comparison; tests/test_mutation.py, tests/test_deep_surrogate.py and
``experiments/mutation_suite.py`` (which puts tests/ on sys.path) use it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from jaxscd.domain import Domain
from jaxscd.dsl import reference
from jaxscd.dsl.batch import evaluate_program
from jaxscd.dsl.programs import (
    COMPOSITION_OPS,
    Both,
    Constant,
    CountThreshold,
    DensityThreshold,
    FirstOccurrence,
    LengthThreshold,
    MostRecent,
    Program,
    SaturatedDepth,
    StateMachine,
    Toggle,
    TokenAt,
    WindowCount,
)
from jaxscd.kernels.enumerate import all_tokens, precondition_mask
from jaxscd.surrogates import IntegerSurrogate, exhaustive_decisions
from jaxscd.verify.prove import Verdict, in_domain, prove_equivalent, surrogate_class


def _toggled(group: frozenset, token: int) -> frozenset:
    return group ^ {token}


def program_mutants(program: Program, n_tokens: int) -> Iterator[tuple[str, Program]]:
    """Every single edit of ``program``: constants +-1, one token added to / removed from a set, a transition
    redirected, an accepting state toggled, a default, flip or direction inverted, a composition's op changed or
    one edit of one of its parts. Invalid edits are skipped."""
    def attempt(kind, build):
        try:
            return kind, build()
        except ValueError:
            return None

    edits = []
    match program:
        case Constant(value):
            edits.append(attempt("constant flipped", lambda: Constant(1 - value)))
        case CountThreshold(plus, minus, threshold):
            edits += [attempt(f"threshold {d:+d}", lambda d=d: CountThreshold(plus, minus, threshold + d))
                      for d in (-1, 1)]
            for t in range(n_tokens):
                edits.append(attempt("token set changed", lambda t=t: CountThreshold(_toggled(plus, t), minus - {t},
                                                                                     threshold)))
                edits.append(attempt("token set changed", lambda t=t: CountThreshold(plus - {t}, _toggled(minus, t),
                                                                                     threshold)))
        case DensityThreshold(plus, minus, num, den):
            for n, d in ((num - 1, den), (num + 1, den), (num, den + 1), (num, den - 1)):
                if d > 0:
                    g = math.gcd(n, d) or 1
                    edits.append(attempt("threshold moved", lambda n=n, d=d, g=g: DensityThreshold(plus, minus, n // g,
                                                                                                    d // g)))
            for t in range(n_tokens):
                edits.append(attempt("token set changed", lambda t=t: DensityThreshold(_toggled(plus, t),
                                                                                       minus - {t}, num, den)))
        case Toggle(group, flip):
            edits.append(attempt("flip inverted", lambda: Toggle(group, 1 - flip)))
            edits += [attempt("token set changed", lambda t=t: Toggle(_toggled(group, t), flip))
                      for t in range(n_tokens)]
        case MostRecent(first, second, default):
            edits.append(attempt("default flipped", lambda: MostRecent(first, second, 1 - default)))
            edits.append(attempt("groups swapped", lambda: MostRecent(second, first, default)))
            for t in range(n_tokens):
                edits.append(attempt("token set changed", lambda t=t: MostRecent(_toggled(first, t), second - {t},
                                                                                 default)))
        case StateMachine(transitions, accepting):
            n = len(transitions)
            for s, t, target in itertools.product(range(n), range(n_tokens), range(n)):
                if transitions[s][t] != target:
                    table = [list(row) for row in transitions]
                    table[s][t] = target
                    edits.append(attempt("transition changed", lambda table=table: StateMachine(table, accepting)))
            edits += [attempt("accepting state toggled", lambda s=s: StateMachine(transitions, accepting ^ {s}))
                      for s in range(n)]
        case TokenAt(position, group, from_end):
            edits += [attempt(f"position {d:+d}", lambda d=d: TokenAt(position + d, group, from_end)) for d in (-1, 1)]
            edits.append(attempt("direction flipped", lambda: TokenAt(position, group, not from_end)))
            edits += [attempt("token set changed", lambda t=t: TokenAt(position, _toggled(group, t), from_end))
                      for t in range(n_tokens)]
        case LengthThreshold(threshold):
            edits += [attempt(f"threshold {d:+d}", lambda d=d: LengthThreshold(threshold + d)) for d in (-1, 1)]
        case FirstOccurrence(first, second, default):
            edits.append(attempt("default flipped", lambda: FirstOccurrence(first, second, 1 - default)))
            edits.append(attempt("groups swapped", lambda: FirstOccurrence(second, first, default)))
            edits.append(attempt("first became most recent", lambda: MostRecent(first, second, default)))
            for t in range(n_tokens):
                edits.append(attempt("token set changed", lambda t=t: FirstOccurrence(_toggled(first, t),
                                                                                      second - {t}, default)))
                edits.append(attempt("token set changed", lambda t=t: FirstOccurrence(first - {t},
                                                                                      _toggled(second, t), default)))
        case WindowCount(group, window, threshold):
            for d in (-1, 1):
                edits.append(attempt(f"window {d:+d}", lambda d=d: WindowCount(group, window + d, threshold)))
                edits.append(attempt(f"threshold {d:+d}", lambda d=d: WindowCount(group, window, threshold + d)))
            edits += [attempt("token set changed", lambda t=t: WindowCount(_toggled(group, t), window, threshold))
                      for t in range(n_tokens)]
        case SaturatedDepth(open_, close, cap, threshold):
            for d in (-1, 1):
                edits.append(attempt(f"cap {d:+d}", lambda d=d: SaturatedDepth(open_, close, cap + d, threshold)))
                edits.append(attempt(f"threshold {d:+d}", lambda d=d: SaturatedDepth(open_, close, cap, threshold + d)))
            for t in range(n_tokens):
                edits.append(attempt("token set changed", lambda t=t: SaturatedDepth(_toggled(open_, t), close - {t},
                                                                                     cap, threshold)))
                edits.append(attempt("token set changed", lambda t=t: SaturatedDepth(open_ - {t}, _toggled(close, t),
                                                                                     cap, threshold)))
        case Both(left, right, op):
            edits += [attempt("op changed", lambda o=o: Both(left, right, o)) for o in COMPOSITION_OPS if o != op]
            edits += [attempt(f"left part: {kind}", lambda m=m: Both(m, right, op))
                      for kind, m in program_mutants(left, n_tokens)]
            edits += [attempt(f"right part: {kind}", lambda m=m: Both(left, m, op))
                      for kind, m in program_mutants(right, n_tokens)]
        case _:
            raise TypeError(f"program_mutants has no case for {program!r}: not a DSL program, or a motif to add here")
    seen = {program}
    for edit in edits:
        if edit is not None and edit[1] not in seen:
            seen.add(edit[1])
            yield edit


def surrogate_mutants(surrogate: IntegerSurrogate, domain: Domain, valid: np.ndarray, count: int,
                      seed: int = 0) -> Iterator[tuple[str, IntegerSurrogate]]:
    """Surrogates with one weight pushed just across the decision boundary of a chosen domain input: a skip
    weight of one of its positions, or the output bias (the chosen input's decision always flips); for deep nets
    also a weight between two units (see ``_edited_unit_weights``)."""
    rng = np.random.default_rng(seed)
    tokens, lengths = all_tokens(domain)
    rows = rng.choice(np.flatnonzero(valid), size=min(count, int(valid.sum())), replace=False)
    scores = np.asarray(surrogate.scores(tokens[rows].astype(np.int32), lengths[rows].astype(np.int32)))
    for row, score in zip(rows, scores):
        push = -int(score) if score > 0 else -int(score) + 1  # score + push crosses 0 the other way
        arrays = {k: np.array(v, copy=True) for k, v in surrogate.arrays().items()}
        if surrogate.deep and rng.random() < 1 / 3:
            arrays["unit_w"] = _edited_unit_weights(surrogate, tokens[row, :lengths[row]].tolist(), rng)
            kind = "unit weight changed"
        elif rng.random() < 0.5:
            position = int(rng.integers(lengths[row]))
            arrays["skip_w"][position, tokens[row, position]] += push
            kind = "skip weight pushed"
        else:
            arrays["out_b"] = arrays["out_b"] + push
            kind = "output bias pushed"
        yield kind, IntegerSurrogate.from_arrays(arrays)


def _edited_unit_weights(surrogate: IntegerSurrogate, tokens: list, rng: np.random.Generator) -> np.ndarray:
    """unit_w with one edge between units changed by the smallest +-2^b (b < 8) that flips the decision on
    ``tokens`` (a unit's effect on the score is not monotone in its weights), else by +1."""
    k, j = rng.choice(np.argwhere(surrogate.unit_w))
    before = surrogate_class(surrogate, tokens)
    for delta in [sign << b for b in range(8) for sign in (1, -1)] + [1]:
        units = surrogate.unit_w.copy()
        units[k, j] += delta
        if surrogate_class(replace(surrogate, unit_w=units), tokens) != before:
            break
    return units


@dataclass(frozen=True)
class MutantOutcome:
    kind: str
    equivalent: bool  # exhaustive truth: the mutant pair still agrees everywhere
    verdict: Verdict
    sound: bool  # verdict matches the truth, and any counterexample really disagrees
    counterexample: tuple | None


class MutationBase:
    """A proved pair (surrogate, program) on a domain, with the exhaustive data needed to judge mutants."""

    def __init__(self, name: str, surrogate: IntegerSurrogate, program: Program, domain: Domain):
        self.name, self.surrogate, self.program, self.domain = name, surrogate, program, domain
        self.valid = precondition_mask(domain)
        tokens, lengths = all_tokens(domain)
        self.tokens, self.lengths = tokens.astype(np.int32), lengths.astype(np.int32)

    @classmethod
    def fitted(cls, name: str, program: Program, domain: Domain, seed: int = 0,
               method: str = "trained") -> MutationBase:
        """An exact integer surrogate of ``program`` itself (the program stands in for a circuit), obtained by
        ``method`` (see ``jaxscd.surrogates``: trained, lp or compiled)."""
        from jaxscd.surrogates import Witnesses

        base = cls(name, None, program, domain)
        target = np.asarray(evaluate_program(program, base.tokens, base.lengths, domain.n_tokens)).astype(np.int8)
        witness = Witnesses(domain, target, base.valid, (method,), seed=seed).for_program(program)
        if witness is None:
            raise ValueError(f"no {method} surrogate for {program!r}")
        base.surrogate = witness.surrogate
        return base

    def mutants(self, surrogate_count: int, seed: int = 0) -> Iterator[tuple[str, IntegerSurrogate, Program]]:
        for kind, program in program_mutants(self.program, self.domain.n_tokens):
            yield kind, self.surrogate, program
        for kind, surrogate in surrogate_mutants(self.surrogate, self.domain, self.valid, surrogate_count, seed):
            yield kind, surrogate, self.program

    def check(self, kind: str, surrogate: IntegerSurrogate, program: Program,
              timeout_s: float = 30.0, strategy: str = "auto") -> MutantOutcome:
        s_dec, _ = exhaustive_decisions(surrogate, self.domain)
        p_dec = np.asarray(evaluate_program(program, self.tokens, self.lengths, self.domain.n_tokens))
        equivalent = not bool((self.valid & (s_dec != p_dec)).any())
        proof = prove_equivalent(surrogate, program, self.domain, timeout_s, strategy)
        cex = proof.counterexample
        if proof.verdict == Verdict.PROVED:
            sound = equivalent
        elif proof.verdict == Verdict.REFUTED:
            sound = (not equivalent and in_domain(self.domain, cex)
                     and reference.run(program, cex) != surrogate_class(surrogate, cex))
        else:  # UNKNOWN is honest but decides nothing: counted as a miss so a suite run shows it
            sound = False
        return MutantOutcome(kind, equivalent, proof.verdict, sound, cex)


def standard_bases(seed: int = 0) -> list[MutationBase]:
    """One proved pair per motif family, on small domains (the surrogates are fitted exactly)."""
    bracket = Domain(("[", "]", "a"), 1, 6, CountThreshold({0}, {1}, 1), "depth >= 1")
    quotes = Domain(("a", "b", '"', "'"), 1, 5, CountThreshold({2, 3}, set(), 1), "a quote")
    abc = Domain(("a", "b", "c"), 1, 6)
    short = Domain(("a", "b", "c"), 1, 4)
    return [
        MutationBase.fitted("density", DensityThreshold({0}, {1}, 1, 3), bracket, seed),
        MutationBase.fitted("most_recent", MostRecent({2}, {3}, 0), quotes, seed),
        MutationBase.fitted("counter", CountThreshold({0}, {1}, 1), abc, seed),
        MutationBase.fitted("toggle", Toggle({0}, 0), Domain(("a", "b"), 1, 6), seed),
        MutationBase.fitted("state_machine", StateMachine(((1, 0, 0), (1, 2, 0), (2, 2, 2)), {2}), abc, seed),
        # surrogates obtained by construction: a linear threshold by LP, and deep networks compiled from programs
        MutationBase.fitted("most_recent_lp", MostRecent({0}, {1}, 1), abc, seed, "lp"),
        MutationBase.fitted("toggle_features", Toggle({0, 1}, 1), short, seed, "features"),
        MutationBase.fitted("machine_compiled", StateMachine(((1, 0, 0), (1, 2, 0), (2, 2, 2)), {2}), short, seed,
                            "compiled"),
        MutationBase.fitted("xor_compiled", Both(Toggle({0}, 0), TokenAt(0, {1}, True), "xor"), short, seed,
                            "compiled"),
    ]
