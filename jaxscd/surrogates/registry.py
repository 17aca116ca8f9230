"""The surrogate methods: one small value per method, in registry order (cheapest first).

A method is a ``SurrogateMethod``. Its work lives in its own module, imported on the first call of ``fit``:
importing the registry (the CLI, the verifier) loads neither scipy nor flax. A new method is one module with a
``fit(problem, program)`` function and one entry in ``METHODS``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

    from jaxscd.domain import Domain
    from jaxscd.dsl.programs import Program
    from jaxscd.surrogates.network import IntegerSurrogate


@dataclass(frozen=True)
class SurrogateConfig:
    """Settings of the ``trained`` method (here, not in its module, so a config needs no flax)."""

    widths: tuple = (0, 4, 8, 16, 32)
    restarts: int = 4
    steps: int = 800
    learning_rate: float = 0.03
    l1: float = 1e-4
    max_scale_bits: int = 16
    train_limit: int = 1 << 14  # larger domains train on a sample plus the inputs still misclassified
    rounds: int = 4


class FitProblem(Protocol):
    """What a method reads (``Witnesses`` is one; names as in ``jaxscd.problem.Problem``)."""

    domain: Domain
    decisions: np.ndarray  # int8 [size]: the circuit's class of every domain input
    valid: np.ndarray  # bool [size]: the inputs that satisfy the precondition
    training: SurrogateConfig
    seed: int
    log: Callable[[str], None]


Fit = Callable[["FitProblem", "Program"], "tuple[IntegerSurrogate | None, str]"]


@dataclass(frozen=True)
class SurrogateMethod:
    """One way to find an exact integer surrogate.

    ``fit(problem, program)`` returns ``(surrogate, "")`` only once the surrogate's class equals
    ``problem.decisions`` on every valid input (checked in exact integers), else ``(None, reason)``.
    ``per_program`` is False when the result depends on the truth table alone: one attempt serves every program.
    """

    name: str
    per_program: bool
    fit: Fit
    summary: str  # a few words for the CLI's help


def _imported(module: str) -> Fit:
    """``module.fit``, imported on the first call."""

    def fit(problem: FitProblem, program: Program):
        return importlib.import_module(module).fit(problem, program)

    return fit


METHODS: dict[str, SurrogateMethod] = {method.name: method for method in (
    SurrogateMethod("lp", per_program=False, fit=_imported("jaxscd.surrogates.lp"),
                    summary="a linear threshold by LP"),
    SurrogateMethod("features", per_program=False, fit=_imported("jaxscd.surrogates.features"),
                    summary="LP over ReLU units on token counts"),
    SurrogateMethod("compiled", per_program=True, fit=_imported("jaxscd.surrogates.compiled"),
                    summary="a network compiled from the program"),
    SurrogateMethod("trained", per_program=False, fit=_imported("jaxscd.surrogates.trained"),
                    summary="gradient-trained, quantized"),
)}
