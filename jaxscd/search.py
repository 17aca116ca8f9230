"""Candidate search: generate DSL families, filter them on the exhaustive truth table, rank survivors by MDL."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from jaxscd.domain import Domain
from jaxscd.dsl import batch
from jaxscd.dsl.programs import Program, description_length
from jaxscd.kernels.filter import filter_family


@dataclass(frozen=True)
class SearchResult:
    generated: int
    survivors: list  # exact programs, simplest first
    per_family: dict  # family name -> (generated, surviving)


def probe_indices(valid: np.ndarray, size: int, seed: int) -> np.ndarray:
    """A random sample of valid inputs checked before the full pass (discards most candidates cheaply)."""
    pool = np.flatnonzero(valid)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(pool, min(size, len(pool)), replace=False))


def search(domain: Domain, target: np.ndarray, valid: np.ndarray, *, max_states: int = 3, probe_size: int = 512,
           seed: int = 0, advance: Callable[[int], None] | None = None) -> SearchResult:
    """Every DSL candidate whose decisions equal ``target`` on every valid input, ranked simplest first."""
    families = batch.default_families(domain.n_tokens, domain.max_len, max_states=max_states)
    probe = probe_indices(valid, probe_size, seed)
    survivors: list[Program] = []
    per_family = {}
    for family in families:
        alive = filter_family(family, domain, target, valid, probe)
        found = [family.program(int(p), int(k)) for p, k in zip(*np.nonzero(alive))]
        per_family[family.name] = (len(family), len(found))
        survivors += found
        if advance:
            advance(1)
    survivors.sort(key=lambda p: (description_length(p), repr(p)))
    return SearchResult(sum(g for g, _ in per_family.values()), survivors, per_family)
