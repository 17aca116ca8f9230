"""Beyond exhaustion: C == P on domains too large to enumerate, by sound bounds on a circuit whose structure is
known (the built-in one-layer reference circuits, and JSON graphs of the same shape: an MLP, then one head read
at the last position).

- ``bounds``: outward-rounded float bounds of the decision over orbits and cubes, and the branch-and-bound tree;
- ``exact``: the same bounds in integers and rationals, the second implementation ``jaxscd verify`` runs;
- ``strategies``: the proof strategies ``orbits`` and ``circuit-bounds`` (prove, files, recheck);
- ``departures``: where a circuit departs from a counting spec, exact over the whole long domain.

The symmetry the bounds may use is in ``jaxscd.beyond.symmetry``; the driver (search on the short domain, then each
candidate proved at length) is ``jaxscd.pipeline.distill``.
"""

from __future__ import annotations

from jaxscd.domain import MAX_DOMAIN_SIZE, Domain, DomainError


def model_of(circuit):
    """The circuit as a one-layer reference model (the structure the bounds know), or None: a built-in
    ``OneLayerCircuit``, or a JSON graph of that shape (``CircuitGraph.one_layer``)."""
    from jaxscd.circuits.graph import CircuitGraph
    from jaxscd.circuits.reference import OneLayerCircuit

    forward = getattr(circuit, "forward", None)
    if isinstance(forward, CircuitGraph):
        return forward.one_layer()
    return forward if isinstance(forward, OneLayerCircuit) else None


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
