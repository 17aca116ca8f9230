"""Exhaustive evaluation of a reference circuit: every sequence of N positions over its alphabet (4^10 = 1,048,576
for quote_close), on every local device, timed after compilation.

Two figures: the truth-table pass alone (decode + circuit + decisions, the kernel path ``evaluate_circuit`` uses)
and ``evaluate_circuit`` in full (with the purity check: a sample re-run alone, every input re-run in a second
shuffled batching).

    python experiments/bench_truth_table.py [--task quote_close] [--positions 10] [--repeats 3]
    XLA_FLAGS=--xla_force_host_platform_device_count=8 python experiments/bench_truth_table.py   # 8 CPU devices
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

from jaxscd import devices
from jaxscd.domain import Domain
from jaxscd.kernels import evaluate
from jaxscd.kernels.enumerate import decode_indices
from jaxscd.tasks import get_task

TARGET_S = 1.0  # issue 10: 4^10 inputs in at most a second after compilation (CPU)


def table_pass(circuit, domain: Domain) -> np.ndarray:
    """Decisions of every sequence (one length): the loop of ``evaluate_circuit`` without the purity check."""
    decisions = np.empty(domain.size, dtype=np.int8)
    for first, idx, real in evaluate._circuit_chunks(0, domain.size, 1 << 14, evaluate._jax_circuit(circuit)):
        tokens, _ = decode_indices(domain, idx)
        decisions[first:first + real] = evaluate.run_circuit(circuit, tokens)[0][:real]
    return decisions


def best(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="quote_close")
    parser.add_argument("--positions", type=int, default=10, help="sequence length (the domain is one length)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    task = get_task(args.task)
    domain = Domain(task.alphabet, args.positions, args.positions)
    described = devices.describe()
    print(f"jax {jax.__version__}; {described['count']} {described['platform']} device(s) ({described['kind']}), "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
    print(f"{args.task}: {domain.n_tokens}^{args.positions} = {domain.size:,} sequences, best of {args.repeats}")
    table_pass(task.circuit, domain)  # compile every shape first
    seconds, decisions = best(lambda: table_pass(task.circuit, domain), args.repeats)
    valid = np.ones(domain.size, dtype=bool)
    full_seconds, table = best(lambda: evaluate.evaluate_circuit(task.circuit, domain, valid), args.repeats)
    assert np.array_equal(decisions, table.decisions), "the table pass and evaluate_circuit disagree"
    verdict = "meets" if seconds <= TARGET_S else "misses"
    print(f"truth-table pass   {seconds:7.3f} s  {domain.size / seconds:.3e} sequences/s  ({verdict} the "
          f"{TARGET_S:g} s target)")
    print(f"evaluate_circuit   {full_seconds:7.3f} s  (with the purity check)")


if __name__ == "__main__":
    main()
