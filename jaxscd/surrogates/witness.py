"""Surrogates for found programs: the methods in registry order, the first exact one wins.

The surrogate is a witness, not an oracle: the search needs only the truth table, so a surrogate is fitted for the
programs that survive it. Whatever the method, the network's class equals the circuit's on every valid input
before it is returned; the certificate records the method.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from jaxscd.domain import Domain
from jaxscd.dsl.programs import Program
from jaxscd.surrogates.network import IntegerSurrogate
from jaxscd.surrogates.registry import METHODS, SurrogateConfig


@dataclass(frozen=True, eq=False)
class Witness:
    surrogate: IntegerSurrogate
    method: str  # a name in METHODS
    seconds: float


@dataclass
class Witnesses:
    """Finds exact surrogates for programs (the ``FitProblem`` every method reads); a method that is not
    ``per_program`` is attempted once and its result serves every program."""

    domain: Domain
    decisions: np.ndarray  # int8 [size]: the circuit's class of every input
    valid: np.ndarray  # bool [size]
    methods: tuple = tuple(METHODS)  # names, tried in order
    training: SurrogateConfig = SurrogateConfig()
    seed: int = 0
    log: Callable[[str], None] = lambda _: None
    attempts: list = field(default_factory=list)  # {"method", "seconds", "found", "reason"} per attempt made
    _shared: dict = field(default_factory=dict)  # name -> Witness or None, for methods that are not per_program
    _fitted: dict = field(default_factory=dict)  # (name, program) -> Witness or None, for per_program methods

    def __post_init__(self):
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown surrogate methods {unknown}; use some of {','.join(METHODS)}")

    def for_program(self, program: Program) -> Witness | None:
        """The first exact surrogate the methods give for ``program`` (None: every method failed; see attempts)."""
        return next(self.each_for_program(program), None)

    def each_for_program(self, program: Program) -> Iterator[Witness]:
        """Exact surrogates for ``program``, one per method that gives one, in method order, each fitted only when
        asked for (the pipeline asks for the next when a proof with the previous one ends UNKNOWN)."""
        for name in self.methods:
            witness = self.by_method(name, program)
            if witness is not None:
                yield witness

    def by_method(self, name: str, program: Program) -> Witness | None:
        """The surrogate method ``name`` gives for ``program`` (fitted once per program, or once for all)."""
        if name in self._shared:
            return self._shared[name]
        if (name, program) not in self._fitted:
            self._fitted[name, program] = self._attempt(name, program)
        return self._fitted[name, program]

    def reasons(self) -> list[str]:
        return [f"{a['method']}: {a['reason']}" for a in self.attempts if not a["found"]]

    def _attempt(self, name: str, program: Program) -> Witness | None:
        method = METHODS[name]
        start = time.perf_counter()
        surrogate, reason = method.fit(self, program)
        seconds = time.perf_counter() - start
        self.attempts.append({"method": name, "seconds": round(seconds, 3), "found": surrogate is not None,
                              "reason": reason})
        witness = Witness(surrogate, name, seconds) if surrogate is not None else None
        if not method.per_program:
            self._shared[name] = witness
        self.log(f"surrogate by {name}: " + (f"exact, {surrogate.n_neurons} neurons" if witness else reason))
        return witness
