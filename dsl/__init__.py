"""The DSL of transformer motifs: program values and their meanings.

``programs``  immutable typed program values (one class per motif), description length.
``reference`` plain-Python interpreter: the oracle every other meaning is tested against.
``batch``     JAX evaluation of whole families of candidates given as parameter arrays.
``smt``       z3 terms over symbolic token sequences.
``source``    readable, standard-library-only Python source.
``abstract``  the classes a program can output on a cube of sequences (for proof splitting).
"""

from jaxscd.dsl.programs import (
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
    check_program,
    description_length,
)
from jaxscd.dsl.reference import run, run_many

__all__ = [
    "Both",
    "Constant",
    "CountThreshold",
    "DensityThreshold",
    "FirstOccurrence",
    "LengthThreshold",
    "MostRecent",
    "Program",
    "SaturatedDepth",
    "StateMachine",
    "Toggle",
    "TokenAt",
    "WindowCount",
    "check_program",
    "description_length",
    "run",
    "run_many",
]
