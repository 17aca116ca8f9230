"""Candidate search per family on every built-in task, and state-machine synthesis on the same truth tables.

The search stage runs as ``jaxscd.pipeline.distill`` runs it (same probe, count table and family order), except
that every family is searched (``prune=False``) and timed on its own. ``first s`` includes JIT compilation for
the family's shapes; ``warm s`` is a second identical run (``--no-warm`` skips it). Synthesis
(``jaxscd.search.synth.synthesize``) is timed on each task's circuit truth table.

    python experiments/bench_search.py [--tasks quote_close,for_while] [--max-states 3] [--synth-states 6]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

import jax
import numpy as np

from jaxscd.kernels.enumerate import all_tokens, precondition_mask
from jaxscd.kernels.evaluate import evaluate_circuit
from jaxscd.kernels.filter import count_table
from jaxscd.pipeline import DistillConfig
from jaxscd.search import candidate_families, probe_indices, search
from jaxscd.search.synth import synthesize
from jaxscd.tasks import get_task, task_names


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bench_task(name: str, args) -> dict:
    task = get_task(name)
    domain = task.domain()
    config = DistillConfig()
    valid = precondition_mask(domain)
    tokens, lengths = all_tokens(domain)
    table = evaluate_circuit(task.circuit, domain, valid)
    families = candidate_families(domain, args.max_states)
    probe = probe_indices(valid, config.probe_size, config.seed)
    counts = count_table(domain, table.decisions, valid)
    print(f"\n## {name}: {domain.n_tokens} tokens, lengths {domain.min_len}..{domain.max_len}, {domain.size:,} inputs "
          f"({int(valid.sum()):,} valid), {len(families)} families")
    header = f"{'family':<24} {'candidates':>11} {'survivors':>9} {'first s':>8} {'warm s':>8} {'cand/s (warm)':>14}"
    print(header)
    print("-" * len(header))
    totals = {"candidates": 0, "survivors": 0, "first": 0.0, "warm": 0.0}
    for family in families:
        first, found = timed(lambda: search(domain, table.decisions, valid, [family], probe, counts, prune=False))
        warm = timed(lambda: search(domain, table.decisions, valid, [family], probe, counts, prune=False))[0] \
            if args.warm else float("nan")
        survivors = len(found.survivors)
        rate = len(family) / (warm if args.warm else first)
        print(f"{family.name:<24} {len(family):>11,} {survivors:>9,} {first:>8.3f} {warm:>8.3f} {rate:>14.3e}")
        totals["candidates"] += len(family)
        totals["survivors"] += survivors
        totals["first"] += first
        totals["warm"] += warm
    elapsed = totals["warm"] if args.warm else totals["first"]
    print(f"{'total':<24} {totals['candidates']:>11,} {totals['survivors']:>9,} {totals['first']:>8.3f} "
          f"{totals['warm']:>8.3f} {totals['candidates'] / elapsed:>14.3e}")
    synthesis = synthesize(domain, table.decisions, valid, args.synth_states, args.synth_timeout, tokens, lengths)
    if synthesis.machine is not None:
        outcome = f"{synthesis.machine.n_states}-state machine"
    else:
        outcome = f"none ({synthesis.reason})"
    per_states = ", ".join(f"{n}: {s:.2f}" for n, s in synthesis.per_states.items())
    print(f"synthesis (max {args.synth_states} states): {outcome} in {synthesis.seconds:.2f} s; "
          f"{synthesis.sat_calls} SAT calls, sample {synthesis.sample_size:,} words; seconds per state count "
          f"{{{per_states}}}")
    return totals | {"synthesis": synthesis}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(task_names()), help="comma-separated built-in task names")
    parser.add_argument("--max-states", type=int, default=DistillConfig().max_states,
                        help="largest enumerated state machine family (as distill's --max-states)")
    parser.add_argument("--synth-states", type=int, default=6, help="largest machine synthesis looks for")
    parser.add_argument("--synth-timeout", type=float, default=60.0, help="seconds per synthesis")
    parser.add_argument("--no-warm", dest="warm", action="store_false", help="time each family once (with compile)")
    args = parser.parse_args()

    print("$ " + shlex.join([os.path.relpath(sys.argv[0])] + sys.argv[1:]))
    print(f"jax {jax.__version__}, devices {jax.devices()}, {os.cpu_count()} CPUs, numpy {np.__version__}")
    start = time.perf_counter()
    results = {name: bench_task(name, args) for name in args.tasks.split(",")}
    print(f"\n{'task':<16} {'candidates':>11} {'survivors':>9} {'search s':>9} {'synthesis':>26}")
    for name, r in results.items():
        s = r["synthesis"]
        outcome = f"{s.machine.n_states} states" if s.machine is not None else "none"
        elapsed = r["warm"] if args.warm else r["first"]
        print(f"{name:<16} {r['candidates']:>11,} {r['survivors']:>9,} {elapsed:>9.2f} "
              f"{outcome + f' in {s.seconds:.2f} s':>26}")
    print(f"\nwall time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
