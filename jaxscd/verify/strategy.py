"""The proof-strategy protocol: how a strategy proves surrogate == program, what it adds to the bundle, and how
``jaxscd verify`` re-checks it. A new strategy is one module that ends with a ``ProofStrategy`` and one entry in
``jaxscd.verify.prove.STRATEGIES``; the certificate writer and verify never look at strategy names.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from jaxscd.domain import Domain
from jaxscd.dsl import reference
from jaxscd.surrogates import IntegerSurrogate


class Verdict(str, enum.Enum):
    PROVED = "PROVED"
    REFUTED = "REFUTED"
    UNKNOWN = "UNKNOWN"
    NO_PROGRAM = "NO_PROGRAM"


@dataclass(frozen=True)
class ProofResult:
    verdict: Verdict
    seconds: float
    smt2: str = ""  # the one-query form (query.smt2, for other tools), whatever the strategy
    counterexample: tuple | None = None  # token ids where program and surrogate disagree
    reason: str = ""
    method: str = "smt"  # the strategy's ``method``: its name in the certificate
    record: dict = field(default_factory=dict)  # the strategy's fields of the obligation (its files, statistics)
    files: dict = field(default_factory=dict)  # bundle path -> text: what the strategy adds beside query.smt2
    summary: str = ""  # for the terminal, e.g. "12 cubes"


SURROGATE_CLAIM, CIRCUIT_CLAIM = "surrogate == program", "circuit == program"


@dataclass(frozen=True)
class Goal:
    """What a strategy proves (``prove``) or re-checks (``recheck``) ``program`` against, on ``domain``.
    ``valid``: the precondition mask of an enumerable domain (None beyond enumeration). ``surrogate``: the integer
    surrogate (strategies of the claim surrogate == program). ``circuit``: the circuit, its fingerprint checked;
    ``at_length``: its analysis beyond enumeration, shared by every candidate (``jaxscd.beyond``); ``record``: the
    certificate's beyond-exhaustion block when re-checking (strategy, symmetry claim, float margin)."""

    domain: Domain
    program: object
    valid: np.ndarray | None = None
    surrogate: IntegerSurrogate | None = None
    circuit: object = None
    at_length: object = None
    record: dict | None = None


@dataclass(frozen=True)
class ProofStrategy:
    """``name``: the ``--proof`` choice. ``method``: the obligation's method in certificates (schema 1:
    "smt", "smt-cubes", "smt-tree" for surrogate == program; "orbit bounds", "cube bounds + smt-tree" for
    circuit == program beyond enumeration; bundles written before keep verifying). ``claim``: what it proves.
    ``prove(goal, timeout_s) -> ProofResult``.
    ``files(obligation) -> [bundle path]``: the files a certificate's obligation rests on; verify checks they are
    listed with their sha256 before ``recheck``.
    ``recheck(report, bundle, obligation, goal, timeout_s)``: re-establish the claim from the files, adding a
    FAILED line to ``report`` for anything that does not hold (``obligation``: the obligation's fields).
    ``claim``: what it proves; ``summary``: one line for ``--help``."""

    name: str
    method: str
    prove: Callable[..., ProofResult]
    files: Callable[[dict], list]
    recheck: Callable[..., None]
    claim: str = SURROGATE_CLAIM
    summary: str = ""  # one line for --help


def surrogate_class(surrogate: IntegerSurrogate, tokens) -> int:
    """Exact class of one sequence (int64 arithmetic), for checking solver models independently."""
    padded = np.zeros((1, surrogate.skip_w.shape[0]), dtype=np.int32)
    padded[0, :len(tokens)] = tokens
    return int(np.asarray(surrogate.scores(padded, np.array([len(tokens)], dtype=np.int32)))[0] > 0)


def in_domain(domain: Domain, tokens) -> bool:
    ok_len = domain.min_len <= len(tokens) <= domain.max_len
    ok_tokens = all(0 <= t < domain.n_tokens for t in tokens)
    return ok_len and ok_tokens and (domain.precondition is None or reference.run(domain.precondition, tokens) == 1)


def solver_verdict(answer: str, tokens, seconds: float, surrogate, program, domain, gave_up: str,
                   unconfirmed: str = "solver model does not reproduce a disagreement (encoding mismatch)",
                   **fields) -> ProofResult:
    """A solver answer as a ProofResult: unsat is PROVED; a model is REFUTED only if it really separates program
    and surrogate (re-checked in plain Python), else UNKNOWN with ``unconfirmed``; anything else is UNKNOWN with
    ``gave_up``."""
    if answer == "unsat":
        return ProofResult(Verdict.PROVED, seconds, **fields)
    if answer != "sat":
        return ProofResult(Verdict.UNKNOWN, seconds, reason=gave_up, **fields)
    if in_domain(domain, tokens) and reference.run(program, tokens) != surrogate_class(surrogate, tokens):
        return ProofResult(Verdict.REFUTED, seconds, counterexample=tokens, **fields)
    return ProofResult(Verdict.UNKNOWN, seconds, counterexample=tokens, reason=unconfirmed, **fields)
