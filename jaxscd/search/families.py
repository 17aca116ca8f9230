"""Candidate search: generate DSL families, filter them on the exhaustive truth table, rank survivors by MDL.

Families are searched cheapest first (by a lower bound of their description length). Once an exact program is
found, families that cannot hold one at least as simple are skipped (``prune=True``): they can only supply
fall-back candidates, which ``distill`` asks for only when no survivor is proved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from jaxscd import progress
from jaxscd.domain import Domain
from jaxscd.dsl import batch
from jaxscd.dsl.batch import Family
from jaxscd.dsl.programs import description_length, rank_key
from jaxscd.kernels.filter import CountTable, filter_family


@dataclass
class SearchResult:
    generated: int = 0  # candidates evaluated
    survivors: list = field(default_factory=list)  # exact programs, simplest first
    per_family: dict = field(default_factory=dict)  # family name -> (generated, surviving)
    skipped: list = field(default_factory=list)  # families pruned by the MDL bound


def probe_indices(valid: np.ndarray, size: int, seed: int) -> np.ndarray:
    """A random sample of valid inputs checked before the full pass (discards most candidates cheaply)."""
    pool = np.flatnonzero(valid)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(pool, min(size, len(pool)), replace=False))


def candidate_families(domain: Domain, max_states: int = 3) -> list[Family]:
    families = batch.default_families(domain.n_tokens, domain.max_len, max_states=max_states)
    return sorted(families, key=lambda f: f.min_cost)


def search(domain: Domain, target: np.ndarray, valid: np.ndarray, families: Sequence[Family], probe: np.ndarray,
           counts: CountTable | None = None, prune: bool = True) -> SearchResult:
    """Every candidate whose decisions equal ``target`` on every valid input, ranked simplest first.

    ``probe``: domain indices checked first (a random sample, see ``probe_indices``); ``counts``: the grouped
    count table used for count-invariant families (``kernels.filter.count_table``).
    """
    result = SearchResult()
    for family in progress.counted(families, len(families), "candidate families"):
        best = min((description_length(p) for p in result.survivors), default=float("inf"))
        if prune and best < family.min_cost:  # equal cost may still win the tie-break (rank_key)
            result.skipped.append(family)
            continue
        alive = filter_family(family, domain, target, valid, probe, counts=counts)
        found = [family.program(int(p), int(k)) for p, k in zip(*np.nonzero(alive))]
        result.per_family[family.name] = (len(family), len(found))
        result.generated += len(family)
        result.survivors += found
    result.survivors.sort(key=rank_key)
    return result
