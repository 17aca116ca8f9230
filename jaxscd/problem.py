"""Problem: the circuit's truth table on its domain, the one value every stage after the circuit reads.

Search, composition, synthesis, near misses, the surrogate methods and the proof take a ``Problem``; nothing of
size |domain| x max_len is kept (token arrays are decoded chunk by chunk). Also the spec comparison, which
``jaxscd verify`` re-runs without the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from jaxscd.domain import Domain
from jaxscd.kernels.enumerate import chunks, decode_indices, program_decisions
from jaxscd.kernels.evaluate import TruthTable
from jaxscd.kernels.filter import CountTable, count_table
from jaxscd.search.nearmiss import disagreement_patterns, one_sided_scores
from jaxscd.search import candidate_families, probe_indices


@dataclass(eq=False)
class Problem:
    """``domain`` and the circuit's ``table`` (decisions, valid mask, margins) with what the search derives from
    them, computed once on first use: the probe set, the count table, the candidate families and their one-sided
    scores. ``seed``, ``probe_size`` and ``max_states`` are the few settings those read."""

    domain: Domain
    table: TruthTable
    seed: int = 0
    probe_size: int = 512
    max_states: int = 3

    @property
    def decisions(self) -> np.ndarray:
        """int8 [size]: the circuit's class of every input (0 where not valid)."""
        return self.table.decisions

    @property
    def valid(self) -> np.ndarray:
        return self.table.valid

    @property
    def n_valid(self) -> int:
        return int(self.valid.sum())

    @cached_property
    def probe(self) -> np.ndarray:
        return probe_indices(self.valid, self.probe_size, self.seed)

    @cached_property
    def counts(self) -> CountTable:
        return count_table(self.domain, self.decisions, self.valid)

    @cached_property
    def families(self) -> list:
        return candidate_families(self.domain, self.max_states)

    @cached_property
    def scored(self) -> list:
        """One-sided scores of every family, read by the compositions and by the near misses."""
        return one_sided_scores(self.domain, self.decisions, self.valid, self.families, self.probe, self.counts)


def spec_decisions(spec: Callable, domain: Domain, valid: np.ndarray) -> np.ndarray:
    """int8 [size]: the intended class of every valid input (0 elsewhere). A spec that carries a DSL ``program`` is
    evaluated in batches; any other callable is called on one sequence at a time, chunk by chunk."""
    program = getattr(spec, "program", None)
    if program is not None:
        return program_decisions(program, domain)
    intended = np.zeros(domain.size, dtype=np.int8)
    for first, tokens, lengths, real in chunks(domain, 1 << 14):
        tokens, lengths = np.asarray(tokens), np.asarray(lengths)
        intended[first:first + real] = [int(spec(tokens[i, :lengths[i]].tolist())) if valid[first + i] else 0
                                        for i in range(real)]
    return intended


def compare_with_spec(spec: Callable, problem: Problem, class_names) -> tuple[int, list, list]:
    """(count, up to 5 examples, readable patterns) of valid inputs where the circuit differs from ``spec``.

    Exhaustive: every valid input is compared, so the count is exact on the domain (see ``spec_decisions``).
    """
    domain, decisions, valid = problem.domain, problem.decisions, problem.valid
    intended = spec_decisions(spec, domain, valid)
    wrong = np.flatnonzero(valid & (intended != decisions))
    tokens, lengths = (np.asarray(a) for a in decode_indices(domain, wrong[:5]))
    examples = [tokens[i, :lengths[i]].tolist() for i in range(len(tokens))]
    patterns = disagreement_patterns(domain, wrong, decisions[wrong], intended[wrong], class_names, what="spec")
    return len(wrong), examples, patterns
