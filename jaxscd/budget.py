"""Up-front estimate of a distill run's time and memory, so a domain that cannot finish is refused with its size.

The time goes to two places: per-input passes (circuit, truth table, surrogate checks: linear in the domain
size) and the candidate filter (linear in the number of candidate heads, which grows like 3**tokens for signed
counters). Rates measured on 2 CPU cores, worst cases (NO_PROGRAM: every family searched, near misses scored):
2 tokens x lengths 1..25 (67M inputs) in 539 s, 7e-6 s an input; 12 tokens x lengths 1..5 (793M candidate heads,
fused filter kernels) in 86 s, about 1e-7 s a head, counted double here. An accelerator is faster, so the
estimate errs long.

A circuit whose forward states its own cost (``forward.cost``: a JSON graph, ``jaxscd.circuits.graph.GraphCost``)
adds it: jit compilation once per batch shape (a few shapes per length: the table's tiles, the purity re-runs), its
arithmetic on every input, and its weights and activations in memory.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from dataclasses import dataclass

from jaxscd.domain import Domain, DomainError

DEFAULT_LIMIT_S = 300.0  # estimates above this are refused unless --time-limit allows more
SECONDS_FIXED = 3.0  # start-up and compilation
SECONDS_PER_INPUT = 7e-6
SECONDS_PER_CANDIDATE_HEAD = 2e-7
BYTES_FIXED = 500 << 20
BYTES_PER_INPUT_POSITION = 2  # the whole domain as int16 tokens [size, max_len]
BYTES_PER_INPUT = 40  # decisions, margins, masks, probe and count bookkeeping
SHAPES_PER_LENGTH = 4  # batch shapes a run compiles per length (measured 3: table tiles, alone, shuffled), +1 spare
CIRCUIT_PASSES = 3  # times the circuit runs over the domain (the table; the purity re-runs, counted generously)
CIRCUIT_ROWS = 1 << 12  # rows per call of a JAX circuit (kernels.evaluate.DEVICE_TILE)


@dataclass(frozen=True)
class Estimate:
    seconds: float
    bytes: int
    candidate_heads: int
    circuit_seconds: float = 0.0  # the part the circuit's own cost adds (compiling and running it)
    circuit: str = ""  # what that cost is, for messages


def estimate(domain: Domain, max_states: int = 3, circuit=None) -> Estimate:
    """The estimate for ``domain``, plus the cost ``circuit.forward.cost`` states, if any."""
    from jaxscd.search import candidate_families  # the same families distill searches

    heads = sum(len(family) * family.n_heads for family in candidate_families(domain, max_states))
    seconds = SECONDS_FIXED + domain.size * SECONDS_PER_INPUT + heads * SECONDS_PER_CANDIDATE_HEAD
    memory = BYTES_FIXED + domain.size * (domain.max_len * BYTES_PER_INPUT_POSITION + BYTES_PER_INPUT)
    cost = getattr(getattr(circuit, "forward", None), "cost", None)
    if cost is None:
        return Estimate(seconds, memory, heads)
    shapes = SHAPES_PER_LENGTH * len(domain.lengths)
    extra = shapes * cost.compile_seconds + CIRCUIT_PASSES * domain.size * cost.seconds_per_input(domain.max_len)
    what = (f"the circuit graph's {cost.describe()}: about {_duration(cost.compile_seconds)} to compile for each of "
            f"{shapes} batch shapes")
    return Estimate(seconds + extra, memory + cost.bytes(CIRCUIT_ROWS, domain.max_len), heads, extra, what)


class TimeLimitExceeded(BaseException):
    """The run's --time-limit ran out (a BaseException, like KeyboardInterrupt, so no ``except Exception`` in
    library or user code swallows it)."""


@contextmanager
def deadline(seconds: float | None):
    """Raise TimeLimitExceeded in the main thread after ``seconds`` (none: no limit)."""
    if not seconds:
        yield
        return

    def expire(signum, frame):
        raise TimeLimitExceeded(seconds)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_budget(domain: Domain, time_limit_s: float | None, max_states: int = 3, circuit=None) -> Estimate:
    """Raise DomainError when the estimate (with ``circuit``'s own cost, if it states one) exceeds the time limit
    (DEFAULT_LIMIT_S when none is given; 0: no limit) or the machine's memory."""
    guess = estimate(domain, max_states, circuit)
    what = (f"domain of {domain.size:,} sequences ({domain.n_tokens} tokens, lengths {domain.min_len}.."
            f"{domain.max_len}) with {guess.candidate_heads:,} candidate programs")
    why = f" ({guess.circuit})" if guess.circuit else ""
    fewer = "lower --max-len, use fewer tokens" + (" or a smaller circuit" if guess.circuit else "")
    available = physical_memory()
    if available and guess.bytes > available:
        raise DomainError(f"{what} needs about {guess.bytes / 2**30:.1f} GiB{why}, more than the "
                          f"{available / 2**30:.1f} GiB of this machine; {fewer}")
    limit = DEFAULT_LIMIT_S if time_limit_s is None else time_limit_s
    if limit and guess.seconds > limit:
        raise DomainError(f"{what} would take about {_duration(guess.seconds)} on a CPU{why}, above the "
                          f"{limit:g} s {'allowed by default' if time_limit_s is None else 'of --time-limit'}; "
                          f"{fewer}, or pass a larger --time-limit SECONDS (the run then stops with UNKNOWN when it "
                          f"runs out; 0: no limit)")
    return guess


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def physical_memory() -> int:
    """Bytes of memory of this machine (0 when unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0
