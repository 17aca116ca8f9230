"""Beyond exhaustion: C == P on domains too large to enumerate, by sound bounds on a circuit whose structure is
known (``model_of``: the built-in one-layer reference circuits, JSON graphs of the same shape, an MLP then one
head read at the last position, JSON graphs of any other shape (``GraphModel``: cube bounds layer by layer), and
one-layer circuit_sparsity checkpoints without position embeddings).

- ``bounds``: outward-rounded float bounds of the decision over orbits and cubes, and the branch-and-bound tree;
- ``exact``: the same bounds in integers and rationals, the second implementation ``jaxscd verify`` runs;
- ``graph_bounds`` / ``graph_exact``: cube bounds of multi-layer JSON graphs (interval numpy; arb balls);
- ``checkpoint`` / ``checkpoint_exact``: orbit bounds of circuit_sparsity checkpoints (interval numpy; arb balls);
- ``strategies``: the proof strategies ``orbits`` and ``circuit-bounds`` (prove, files, recheck);
- ``departures``: where a circuit departs from a counting spec, exact over the whole long domain.

The symmetry the bounds may use is in ``jaxscd.beyond.symmetry``; the driver (search on the short domain, then each
candidate proved at length) is ``jaxscd.pipeline.distill``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from jaxscd.domain import MAX_DOMAIN_SIZE, Domain, DomainError


class BoundsModel(Protocol):
    """What the beyond-exhaustion strategies need of a circuit's structure; ``ReferenceModel`` (one-layer reference
    circuits and JSON graphs) and ``checkpoint.CheckpointModel`` (circuit_sparsity checkpoints) implement it."""

    cubes: bool  # whether cube trees (the circuit-bounds strategy) are supported

    def refusal(self, max_len: int) -> str | None: ...  # what the bounds lack at lengths up to max_len, or None

    def accepts(self, max_len: int) -> bool: ...  # whether the circuit runs at all at lengths up to max_len

    def symmetry(self, max_len: int): ...  # the counts+last-token Symmetry proved on the arrays, or None

    def float_tables(self, max_len: int): ...  # the float bounds' shared state; ``.margin`` the float margin

    def orbit_classes(self, tables, orb) -> np.ndarray: ...  # int8 [orbits]: 1 / 0 decided, -1 undecided

    def exact(self, max_len: int): ...  # the second implementation verify runs: ``symmetry_holds(max_len)``,
    # ``orbit_classes(n, last, margin)`` -> {counts: class or None}, ``cube_class(n, allowed, margin)`` -> class
    # or None (cube models), ``margin`` (a floor for the recorded margin)

    # cube models (``cubes`` true) also build the tree: ``cube_tree(tables, lengths, precondition, deadline)`` ->
    # ``bounds.CubeTree``


@dataclass(eq=False)
class ReferenceModel:
    """A ``OneLayerCircuit`` (built-in, or a JSON graph of that shape) as a ``BoundsModel``."""

    one_layer: object
    cubes = True

    def refusal(self, max_len: int) -> str | None:
        positions = self.one_layer.pos.shape[0]
        return None if self.accepts(max_len) else f"its {positions} positions"

    def accepts(self, max_len: int) -> bool:
        return max_len <= self.one_layer.pos.shape[0]

    def symmetry(self, max_len: int):
        from jaxscd.beyond.symmetry import count_symmetry

        return count_symmetry(self.one_layer, max_len)

    def float_tables(self, max_len: int):
        from jaxscd.beyond.bounds import token_tables

        return token_tables(self.one_layer, max_len)

    def orbit_classes(self, tables, orb) -> np.ndarray:
        from jaxscd.beyond.bounds import orbit_classes

        return orbit_classes(tables, orb)

    def exact(self, max_len: int):
        from jaxscd.beyond.exact import ExactCircuit

        return ExactCircuit(self.one_layer, max_len)

    def cube_tree(self, tables, lengths, precondition=None, deadline: float | None = None):
        from jaxscd.beyond.bounds import build_cube_tree

        return build_cube_tree(tables, lengths, precondition, deadline=deadline)


@dataclass(eq=False)
class GraphModel:
    """A JSON circuit graph of any other shape (``CircuitGraph``: any number of layers, heads with query "all" or
    "last", relu MLPs, a positional embedding or none) as a ``BoundsModel``: cube bounds only (``graph_bounds``,
    re-derived by ``graph_exact``). No symmetry is claimed: a causal multi-layer circuit need not be a function of
    the token counts."""

    graph: object
    cubes = True

    def refusal(self, max_len: int) -> str | None:
        positions = self.graph.max_positions
        return None if self.accepts(max_len) else f"its {positions} positions"

    def accepts(self, max_len: int) -> bool:
        return self.graph.max_positions is None or max_len <= self.graph.max_positions

    def symmetry(self, max_len: int):
        return None

    def float_tables(self, max_len: int):
        from jaxscd.beyond.graph_bounds import GraphBounds

        return GraphBounds(self.graph, max_len)

    def orbit_classes(self, tables, orb) -> np.ndarray:
        return np.full(len(orb), -1, dtype=np.int8)  # no symmetry: no orbit is decided

    def exact(self, max_len: int):
        from jaxscd.beyond.graph_exact import BallGraph

        return BallGraph(self.graph, max_len)

    def cube_tree(self, tables, lengths, precondition=None, deadline: float | None = None):
        return tables.cube_tree(lengths, precondition, deadline)


def model_of(circuit) -> BoundsModel | None:
    """The circuit's structure as the bounds know it, or None: a built-in ``OneLayerCircuit``, a JSON graph of that
    shape (``CircuitGraph.one_layer``; its bounds are exact per position and faster), any other JSON graph
    (``GraphModel``), or a circuit_sparsity checkpoint circuit (its ``refusal`` says whether the orbit bounds cover
    it)."""
    from jaxscd.beyond.checkpoint import CheckpointModel
    from jaxscd.circuits.graph import CircuitGraph
    from jaxscd.circuits.reference import OneLayerCircuit

    forward = getattr(circuit, "forward", None)
    checkpoint = getattr(forward, "checkpoint", None)
    if checkpoint is not None:
        return CheckpointModel(*checkpoint)
    if isinstance(forward, CircuitGraph):
        one_layer = forward.one_layer()
        return GraphModel(forward) if one_layer is None else ReferenceModel(one_layer)
    return ReferenceModel(forward) if isinstance(forward, OneLayerCircuit) else None


def needs_bounds(domain: Domain, time_limit_s: float | None, max_states: int = 3) -> bool:
    """The one rule: a domain is proved beyond enumeration when it is above the exhaustive size cap or the
    up-front time and memory estimate (``jaxscd.budget``) refuses it."""
    from jaxscd.budget import check_budget

    if domain.size > MAX_DOMAIN_SIZE:
        return True
    try:
        check_budget(domain, time_limit_s, max_states)
    except DomainError:
        return True
    return False
