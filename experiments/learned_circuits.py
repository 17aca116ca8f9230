"""Train, prune and distill learned circuits over seeds; prints a Markdown table (and appends JSON lines).

    .venv/bin/python experiments/learned_circuits.py [--tasks quote_close,bracket_depth] [--seeds 0,1,2,3,4]
        [--steps N] [--layers 1] [--train '{"circuit_weight": 1.0}'] [--prune '{"restarts": 3}']
        [--out out/learned]

Each row: train (jaxscd.learn.train), prune (jaxscd.learn.prune), then jaxscd's distill on the pruned circuit read
back from the exported files, exactly as `jaxscd distill --circuit-sparsity` runs it; every PROVED program is
re-checked against the pruned circuit on every input of the domain.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from jaxscd.circuits.sparse_gpt import load_sparse_circuit
from jaxscd.domain import Domain
from jaxscd.dsl import reference as dsl
from jaxscd.learn.prune import PruneConfig, prune
from jaxscd.learn.train import default_config, train
from jaxscd.pipeline import DistillConfig, Verdict, distill


def checked_on_every_input(circuit, domain: Domain, program) -> bool:
    for length in range(domain.min_len, domain.max_len + 1):
        rows = np.array(list(np.ndindex(*(len(domain.alphabet),) * length)), dtype=np.int32)
        logits = np.asarray(circuit.forward(rows))
        if (logits[:, 1] > logits[:, 0]).astype(int).tolist() != [dsl.run(program, list(map(int, r))) for r in rows]:
            return False
    return True


def one(task: str, seed: int, steps: int | None, layers: int, root: Path, overrides: dict | None = None,
        prune_overrides: dict | None = None) -> dict:
    started = time.perf_counter()
    run_dir = root / f"{task}_L{layers}_s{seed}"
    model_dir, circuit_dir = run_dir / "model", run_dir / "circuit"
    steps = {} if steps is None else {"steps": steps}  # default: the task's default_config, as `jaxscd train`
    config = default_config(task, seed=seed, n_layer=layers, **steps, **(overrides or {}))
    trained = train(task, model_dir, config, progress=False)
    pruned = prune(model_dir, task, circuit_dir, PruneConfig(seed=seed, **(prune_overrides or {})))
    circuit, template = load_sparse_circuit(model_dir, pruned.files["template"], pruned.files["viz"],
                                            pruned.files["means"])
    domain = Domain(template.alphabet, template.min_len, template.max_len)
    distill_started = time.perf_counter()
    result = distill(circuit, domain, DistillConfig(seed=seed))
    row = {"task": task, "layers": layers, "seed": seed, "overrides": overrides or {}, "prune": prune_overrides or {},
           "model_accuracy": trained.accuracy, "nodes": pruned.nodes_kept,
           "nodes_total": pruned.nodes_total, "edges": pruned.edges_kept, "edges_total": pruned.edges_total,
           "agreement": pruned.agreement, "circuit_accuracy": pruned.circuit_accuracy,
           "verdict": result.verdict.value, "train_s": trained.seconds, "prune_s": pruned.seconds,
           "distill_s": time.perf_counter() - distill_started}
    if result.verdict is Verdict.PROVED:
        row["program"] = repr(result.program)
        row["checked_on_every_input"] = checked_on_every_input(circuit, domain, result.program)
    elif result.near_misses:
        miss = result.near_misses[0]
        row["program"] = f"nearest: {miss.program!r} ({miss.agreement:.2%})"
    row["total_s"] = time.perf_counter() - started
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", default="quote_close,bracket_depth")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: TrainConfig's)")
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--train", default="{}", help="TrainConfig settings over the task's defaults, as JSON")
    parser.add_argument("--prune", default="{}", help="PruneConfig settings, as JSON")
    parser.add_argument("--out", default="out/learned")
    args = parser.parse_args()
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for task in args.tasks.split(","):
        for seed in map(int, args.seeds.split(",")):
            row = one(task, seed, args.steps, args.layers, root, json.loads(args.train), json.loads(args.prune))
            rows.append(row)
            with open(root / "results.jsonl", "a") as log:
                log.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    print("| task | layers | seed | model acc | nodes | edges | agreement | verdict | program | train+prune+distill s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['layers']} | {r['seed']} | {r['model_accuracy']:.2%} | {r['nodes']}/{r['nodes_total']} | "
              f"{r['edges']}/{r['edges_total']} | {r['agreement']:.2%} | {r['verdict']} | "
              f"`{r.get('program', '')}` | {r['train_s']:.0f}+{r['prune_s']:.0f}+{r['distill_s']:.0f} |")


if __name__ == "__main__":
    main()
