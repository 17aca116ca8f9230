"""Beyond one process: two jax.distributed processes give the same truth table as one; sweep runs fanned out through
a Dask cluster (started here) or local worker processes give the same records as this process."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from jaxscd.distributed import share

WORKER = r"""
import sys
import numpy as np
from jaxscd import distributed
port, rank, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
distributed.initialize(f"localhost:{port}", 2, rank)
import jax
from jaxscd.kernels.enumerate import precondition_mask
from jaxscd.tasks import get_task
task = get_task("bracket_depth")
domain = task.domain(None, 6)
table = distributed.evaluate_circuit_across_processes(task.circuit, domain, precondition_mask(domain))
np.savez(out, decisions=table.decisions, margins=table.margins, bound=table.margin_bound,
         processes=jax.process_count(), purity_seed=f"{table.purity.seed:x}")
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def test_share_covers_the_domain_once():
    for size in (1, 7, 10, 1000):
        for processes in (1, 2, 3, 8):
            spans = [share(size, p, processes) for p in range(processes)]
            assert spans[0][0] == 0 and spans[-1][1] == size
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


@pytest.mark.slow
def test_two_processes_make_the_same_truth_table_as_one(tmp_path):
    from jaxscd.kernels.enumerate import precondition_mask
    from jaxscd.kernels.evaluate import evaluate_circuit
    from jaxscd.tasks import get_task

    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(port), str(rank), str(tmp_path / f"rank{rank}.npz")],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for rank in (0, 1)]
    for worker in workers:
        _, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err[-3000:]
    task = get_task("bracket_depth")
    domain = task.domain(None, 6)
    one = evaluate_circuit(task.circuit, domain, precondition_mask(domain))
    for rank in (0, 1):
        got = np.load(tmp_path / f"rank{rank}.npz")
        assert int(got["processes"]) == 2
        assert np.array_equal(got["decisions"], one.decisions)
        assert np.array_equal(got["margins"], one.margins)  # bit-identical
        assert float(got["bound"]) == one.margin_bound
    seeds = {str(np.load(tmp_path / f"rank{rank}.npz")["purity_seed"]) for rank in (0, 1)}
    assert len(seeds) == 1 and seeds != {f"{one.purity.seed:x}"}  # process 0's fresh seed, shared: the same re-runs


def _same_runs(records, reference):
    fields = ("key", "verdict", "program", "domain", "candidates")
    return sorted(tuple(json.dumps(r[f], sort_keys=True) for f in fields) for r in records) == \
        sorted(tuple(json.dumps(r[f], sort_keys=True) for f in fields) for r in reference)


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory):
    from jaxscd.sweep import grid, run_sweep

    points = grid(["bracket_depth", "quote_close"], [3])
    return points, run_sweep(points, tmp_path_factory.mktemp("here"))


@pytest.mark.slow
def test_sweep_on_a_dask_cluster(tmp_path, reference_runs):
    distributed = pytest.importorskip("dask.distributed", reason="the cluster extra (dask[distributed]) is not installed")
    from jaxscd.sweep import read_results, run_sweep

    points, reference = reference_runs
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        records = run_sweep(points, tmp_path, engine="dask", address=cluster.scheduler_address)
    assert _same_runs(records, reference)
    assert len({r["pid"] for r in records} - {os.getpid()}) >= 1  # ran in the cluster's worker processes
    assert _same_runs(read_results(tmp_path), reference)


@pytest.mark.slow
def test_sweep_in_local_worker_processes(tmp_path, reference_runs):
    from jaxscd.sweep import run_sweep

    points, reference = reference_runs
    records = run_sweep(points, tmp_path, engine="local", workers=2)
    assert _same_runs(records, reference) and os.getpid() not in {r["pid"] for r in records}
