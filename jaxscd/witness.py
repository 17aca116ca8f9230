"""Surrogates for found programs: the cheapest exact method first, each re-checked on every input.

The surrogate is a witness, not an oracle: the search needs only the truth table, so a surrogate is fitted for the
programs that survive it. Methods, in order:

- ``lp``: a linear threshold of the one-hot inputs by LP with cutting planes (``jaxscd.lp``); found from the
  circuit's truth table alone, so it serves every program;
- ``features``: the same LP over the one-hot inputs and fixed ReLU units on the circuit's own count features
  (relu(count - k), relu(count(u) - count(v) - k)): parities and residues of counts, still program-independent;
- ``compiled``: the program compiled into an exact integer ReLU network (``jaxscd.compiler``);
- ``trained``: the gradient-trained, quantized network (``jaxscd.surrogate.fit``), the general fallback.

Whatever the method, the network's class equals the circuit's on every valid input (checked here in exact
integers) before it is returned; the certificate records the method.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from jaxscd.compiler import CompileError, compile_program
from jaxscd.domain import Domain
from jaxscd.dsl.programs import Program
from jaxscd.lp import count_units, fit_linear, wrong_inputs
from jaxscd.surrogate import IntegerSurrogate, SurrogateConfig, SurrogateError, fit

METHODS = ("lp", "features", "compiled", "trained")


@dataclass(frozen=True, eq=False)
class Witness:
    surrogate: IntegerSurrogate
    method: str  # one of METHODS
    seconds: float


@dataclass
class Witnesses:
    """Finds exact surrogates for programs; program-independent results (lp, features, trained) are found once."""

    domain: Domain
    target: np.ndarray
    valid: np.ndarray
    methods: tuple = METHODS
    training: SurrogateConfig = SurrogateConfig()
    seed: int = 0
    log: Callable[[str], None] = lambda _: None
    attempts: list = field(default_factory=list)  # {"method", "seconds", "found", "reason"} per attempt made
    _shared: dict = field(default_factory=dict)  # method -> Witness or None, for program-independent methods

    def for_program(self, program: Program) -> Witness | None:
        """The first exact surrogate the methods give for ``program`` (None: every method failed; see attempts)."""
        for method in self.methods:
            witness = self._shared.get(method) if method in self._shared else self._attempt(method, program)
            if witness is not None:
                return witness
        return None

    def reasons(self) -> list[str]:
        return [f"{a['method']}: {a['reason']}" for a in self.attempts if not a["found"]]

    def _attempt(self, method: str, program: Program) -> Witness | None:
        start = time.perf_counter()
        surrogate, reason = getattr(self, f"_{method}")(program)
        seconds = time.perf_counter() - start
        self.attempts.append({"method": method, "seconds": round(seconds, 3), "found": surrogate is not None,
                              "reason": reason})
        witness = Witness(surrogate, method, seconds) if surrogate is not None else None
        if method != "compiled":
            self._shared[method] = witness
        self.log(f"surrogate by {method}: " + (f"exact, {surrogate.n_neurons} neurons" if witness else reason))
        return witness

    def _lp(self, program):
        result = fit_linear(self.domain, self.target, self.valid, seed=self.seed, log=self.log)
        return result.surrogate, result.reason

    def _features(self, program):
        result = fit_linear(self.domain, self.target, self.valid, count_units(self.domain), seed=self.seed,
                            log=self.log)
        return result.surrogate, result.reason

    def _compiled(self, program):
        try:
            surrogate = compile_program(program, self.domain)
        except CompileError as err:
            return None, str(err)
        count, _ = wrong_inputs(surrogate, self.domain, self.target, self.valid)  # lp and trained check their own
        return (None, f"differs from the circuit on {count} inputs (a compiler bug)") if count else (surrogate, "")

    def _trained(self, program):
        try:
            return fit(self.domain, self.target, self.valid, self.training, self.seed, log=self.log).surrogate, ""
        except SurrogateError as err:
            return None, str(err)
