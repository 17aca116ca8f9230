"""Stage 4, the search: exact programs from the circuit's truth table, and honest answers when there is none.

- ``families``: DSL motif families filtered on the whole truth table (jit kernels), survivors ranked by MDL;
- ``synth``: the smallest state machine that reproduces the truth table (SAT), when no motif is exact;
- ``nearmiss``: the nearest candidates and readable disagreement patterns (NO_PROGRAM, spec departures);
- ``describe``: the decision as a table over token counts, when no short program is exact but one exists.
"""

from jaxscd.search.families import SearchResult, candidate_families, probe_indices, search

__all__ = ["SearchResult", "candidate_families", "probe_indices", "search"]
