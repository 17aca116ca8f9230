"""Exact descriptions beyond the DSL: when no short program matches the circuit, the best description jaxscd can
still certify.

A learned circuit is rarely exactly a textbook motif. If its decision on the domain depends only on the token
counts, the decision *is* a table over count vectors: it is read off the grouped count table (every valid input
lies in exactly one (count vector, class) group, so the check is exhaustive), and it is rendered as a short Python
function next to the nearest short programs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jaxscd.domain import Domain
from jaxscd.dsl.batch import token_counts
from jaxscd.kernels.filter import CountTable


@dataclass(frozen=True)
class CountDescription:
    """The circuit's class as a function of the token counts, exact on every valid input of the domain."""

    ones: tuple  # count vectors (one int per token) with class 1
    zeros: tuple  # count vectors with class 0
    inputs: int  # valid inputs it was checked on (all of them)

    def source(self, domain: Domain, class_names) -> str:
        names = ", ".join(f"tokens.count({name!r})" for name in domain.alphabet)
        ones = ",\n    ".join(repr(c) for c in self.ones) if self.ones else ""
        return (f"# class 1 ({class_names[1]!r}) exactly on these counts of ({', '.join(map(repr, domain.alphabet))}); "
                f"checked on all {self.inputs:,} valid inputs\n"
                f"ONES = {{\n    {ones}\n}}\n\n\n"
                f"def program(tokens):\n    return 1 if ({names}) in ONES else 0\n")

    def to_json(self) -> dict:
        return {"kind": "count table", "ones": [list(c) for c in self.ones], "zeros": [list(c) for c in self.zeros],
                "inputs": self.inputs}


def count_description(domain: Domain, counts: CountTable) -> CountDescription | None:
    """The decision as a table over count vectors, or None when two inputs with the same counts differ in class
    (the circuit then reads more than the counts: order, position, recency)."""
    weight = np.asarray(counts.weight)
    real = weight > 0
    vectors = np.asarray(token_counts(counts.tokens, domain.n_tokens))[real]
    classes = np.asarray(counts.target)[real]
    table: dict = {}
    for vector, cls in zip(map(tuple, vectors.tolist()), classes.tolist()):
        if table.setdefault(vector, cls) != cls:
            return None
    ones = tuple(sorted(v for v, c in table.items() if c == 1))
    zeros = tuple(sorted(v for v, c in table.items() if c != 1))
    return CountDescription(ones, zeros, int(weight.sum()))
