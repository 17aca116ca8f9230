"""Throughput of candidate filtering: the batched JAX kernel against a plain numpy loop over candidates.

Both sides do the same work on the same candidates and inputs: every candidate head is checked on every domain
input against a fixed target program's decisions, with no early discard, and both report mismatch counts per
candidate (asserted equal). The JAX side is ``jaxscd.kernels.filter.mismatches`` over fixed-shape candidate
blocks and domain chunks, compiled before timing: statistic families (signed counters, state machines) count
(statistic, target) cells per candidate and score every head from the counts, never forming [candidates x heads x
inputs]. The numpy side loops over candidates in Python and evaluates
each one vectorised over the inputs of a chunk (one family row's intermediate values are shared by its heads,
as in the JAX family).

    python experiments/bench_filter.py [--max-len 8] [--tokens 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import string
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxscd import devices
from jaxscd.domain import Domain
from jaxscd.dsl.batch import Family, evaluate_program, linear_count_family, state_machine_family
from jaxscd.dsl.programs import CountThreshold
from jaxscd.kernels.enumerate import chunks as token_chunks
from jaxscd.kernels.filter import block_size, count_table, mismatches, score_rows

TARGET = CountThreshold({0}, {1}, 1)  # "more a than b": any fixed program works, nothing is discarded


# --------------------------------------------------------------------------------------------------------------
# Inputs: the whole domain as fixed-shape chunks (decoded once, shared by both sides)


def domain_chunks(domain: Domain, chunk_size: int) -> list[dict]:
    out = []
    for _, tokens, lengths, real in token_chunks(domain, chunk_size):
        target = evaluate_program(TARGET, tokens, lengths, domain.n_tokens)
        valid = np.arange(len(tokens)) < real  # the padded tail of the last chunk repeats one input
        out.append({"tokens": np.asarray(tokens), "lengths": np.asarray(lengths), "target": np.asarray(target),
                    "valid": valid})
    return out


# --------------------------------------------------------------------------------------------------------------
# JAX: mismatches over candidate blocks x domain chunks


def jax_mismatches(family: Family, rows: np.ndarray, chunks: list[dict]) -> np.ndarray:
    """int64 [len(rows), K]: mismatch counts of every candidate head over every chunk."""
    block = block_size(family, len(rows), len(chunks[0]["valid"]))
    padded = np.concatenate([rows, np.full(-len(rows) % block, rows[-1])])  # full blocks: one compiled shape
    heads = {k: jnp.asarray(v) for k, v in family.heads.items()}
    blocks = [{k: jnp.asarray(v[padded[b:b + block]]) for k, v in family.params.items()}
              for b in range(0, len(padded), block)]
    device_chunks = [{k: jnp.asarray(v) for k, v in c.items()} for c in chunks]
    totals = [jnp.zeros((block, family.n_heads), dtype=jnp.int32) for _ in blocks]
    for c in device_chunks:
        for i, params in enumerate(blocks):
            totals[i] = totals[i] + mismatches(family.evaluate, params, heads, c["tokens"], c["lengths"],
                                               c["target"], c["valid"])
    return np.concatenate([np.asarray(t) for t in totals])[:len(rows)].astype(np.int64)


# --------------------------------------------------------------------------------------------------------------
# numpy: one candidate at a time, vectorised over the inputs of a chunk


def numpy_signed_count(family: Family, rows: np.ndarray, chunks: list[dict]) -> np.ndarray:
    heads = family.heads
    out = np.zeros((len(rows), family.n_heads), dtype=np.int64)
    for c in chunks:
        n_tokens = family.params["weights"].shape[1]
        counts = (c["tokens"][:, :, None] == np.arange(n_tokens)).sum(axis=1)  # [N, V], padding counts nowhere
        target, valid, lengths = c["target"], c["valid"], c["lengths"]
        for i, p in enumerate(rows):
            signed = counts @ family.params["weights"][p]  # shared by this row's heads
            for k in range(family.n_heads):
                decision = heads["scale"][k] * signed - heads["len_coef"][k] * lengths >= heads["const"][k]
                out[i, k] += np.count_nonzero((decision != target) & valid)
    return out


def numpy_state_machine(family: Family, rows: np.ndarray, chunks: list[dict]) -> np.ndarray:
    accepting = family.heads["accepting"]
    out = np.zeros((len(rows), family.n_heads), dtype=np.int64)
    for c in chunks:
        tokens, lengths, target, valid = c["tokens"], c["lengths"], c["target"], c["valid"]
        steps = [(i < lengths, np.maximum(tokens[:, i], 0)) for i in range(tokens.shape[1])]
        for i, p in enumerate(rows):
            table = family.params["transitions"][p]
            flat, n_tokens = table.ravel(), table.shape[1]
            state = np.zeros(len(lengths), dtype=np.int64)
            for live, token in steps:  # shared by this row's heads
                state = np.where(live, flat[state * n_tokens + token], state)
            for k in range(family.n_heads):
                out[i, k] += np.count_nonzero(((accepting[k][state] > 0) != target) & valid)
    return out


# --------------------------------------------------------------------------------------------------------------
# Driver


def best_time(fn, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def bench(family: Family, numpy_fn, jax_rows: int, numpy_rows: int, chunks: list[dict], n_inputs: int,
          repeats: int) -> dict:
    rows = np.arange(min(jax_rows, family.n_params))
    subset = rows[:numpy_rows]
    jax_mismatches(family, rows, chunks[:1])  # compile (every block and chunk has one shape) before timing
    jax_time, jax_counts = best_time(lambda: jax_mismatches(family, rows, chunks), repeats)
    numpy_time, numpy_counts = best_time(lambda: numpy_fn(family, subset, chunks), repeats)
    assert np.array_equal(jax_counts[:len(subset)], numpy_counts), f"{family.name}: JAX and numpy mismatch counts differ"
    jax_checks = len(rows) * family.n_heads * n_inputs
    numpy_checks = len(subset) * family.n_heads * n_inputs
    return {"family": family.name, "candidates": jax_checks // n_inputs, "of": len(family),
            "numpy_candidates": numpy_checks // n_inputs, "inputs": n_inputs,
            "jax": jax_checks / jax_time, "numpy": numpy_checks / numpy_time}


def jax_count_table(family: Family, rows: np.ndarray, table) -> np.ndarray:
    """Mismatches via the count table: count-invariant families decided on one representative per group."""
    return score_rows(family, rows, table.tokens, table.lengths, table.target, table.weight).astype(np.int64)


def bench_count_table(family: Family, numpy_fn, domain: Domain, chunks: list[dict], repeats: int) -> dict:
    """Same answers as the per-input kernel (asserted), from grouped inputs: the search's real path."""
    rows = np.arange(family.n_params)
    target = np.concatenate([np.asarray(c["target"])[c["valid"]] for c in chunks]).astype(np.int8)
    valid = np.ones(domain.size, dtype=bool)
    table = count_table(domain, target, valid)
    jax_count_table(family, rows, table)  # compile
    jax_time, jax_counts = best_time(lambda: jax_count_table(family, rows, table), repeats)
    numpy_time, numpy_counts = best_time(lambda: numpy_fn(family, rows, chunks), repeats)
    assert np.array_equal(jax_counts, numpy_counts), "count-table mismatch counts differ from numpy"
    checks = len(rows) * family.n_heads * domain.size
    return {"family": family.name + " (count table)", "candidates": len(rows) * family.n_heads, "of": len(family),
            "numpy_candidates": len(rows) * family.n_heads, "inputs": domain.size,
            "jax": checks / jax_time, "numpy": checks / numpy_time}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-len", type=int, default=8, help="longest input sequence (domain: lengths 1..max-len)")
    parser.add_argument("--tokens", type=int, default=4, help="alphabet size")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side; the best is reported")
    parser.add_argument("--chunk-size", type=int, default=1 << 14, help="domain inputs per kernel call")
    parser.add_argument("--sm-rows", type=int, default=1024,
                        help="transition tables of the 3-state family checked by JAX (the full family is large)")
    parser.add_argument("--sm-numpy-rows", type=int, default=128,
                        help="transition tables checked by the numpy loop (a subset of --sm-rows)")
    args = parser.parse_args()

    domain = Domain(tuple(string.ascii_lowercase[:args.tokens]), 1, args.max_len)
    chunks = domain_chunks(domain, args.chunk_size)
    print(f"domain: {domain.n_tokens} tokens, lengths 1..{domain.max_len}, {domain.size:,} inputs in {len(chunks)} "
          f"chunks of {len(chunks[0]['valid']):,}; target {TARGET}")
    described = devices.describe()
    print(f"jax {jax.__version__} on {described['count']} {described['platform']} device(s) ({described['kind']}), "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; numpy {np.__version__}, best of "
          f"{args.repeats}\n")

    signed = linear_count_family(domain.n_tokens, domain.max_len)
    machines = state_machine_family(3, domain.n_tokens)
    results = [
        bench(signed, numpy_signed_count, signed.n_params, signed.n_params, chunks, domain.size, args.repeats),
        bench(machines, numpy_state_machine, args.sm_rows, args.sm_numpy_rows, chunks, domain.size, args.repeats),
        bench_count_table(signed, numpy_signed_count, domain, chunks, args.repeats),
    ]

    header = f"{'family':<30} {'candidates':>22} {'inputs':>9} {'jax checks/s':>14} {'numpy checks/s':>15} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for r in results:
        shown = f"{r['candidates']:,}" + (f" of {r['of']:,}" if r["candidates"] < r["of"] else "")
        print(f"{r['family']:<30} {shown:>22} {r['inputs']:>9,} {r['jax']:>14.3e} {r['numpy']:>15.3e} "
              f"{r['jax'] / r['numpy']:>6.1f}x")
    for r in results:
        if r["numpy_candidates"] < r["candidates"]:
            print(f"\n{r['family']}: numpy rate measured on the first {r['numpy_candidates']:,} candidates; "
                  f"mismatch counts equal on those.")
    print("mismatch counts of JAX and numpy agree on every candidate both checked.")


if __name__ == "__main__":
    main()
