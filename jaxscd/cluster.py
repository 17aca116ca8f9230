"""Fan-out of independent runs (sweep points) through Dask: ``pip install 'jaxscd[cluster]'``.

Why Dask rather than Ray: it is pure Python (wheels everywhere, nothing to build), a ``LocalCluster`` of worker
processes starts in a couple of seconds on a laptop or a CI runner, the same code reaches a real cluster by
scheduler address (``dask scheduler`` + ``dask worker`` over ssh, Kubernetes, SLURM via dask-jobqueue), and its
futures API mirrors ``concurrent.futures``, which the local engine already uses, so both engines share one loop.
Ray brings its own object store and raylet daemons, a far larger install, and nothing a sweep of independent runs
needs. The results file is still written by the one process that owns it (``jaxscd.sweep``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from jaxscd.errors import InputError


def dask_runs(run: Callable, todo: Sequence, overrides: dict | None, workers: int,
              address: str | None = None) -> Iterator[dict]:
    """``run(point, overrides)`` for every point on a Dask cluster (a local one of ``workers`` processes unless
    ``address`` names a scheduler); results in completion order."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as err:
        raise InputError(f"--engine dask needs Dask ({err}); install the cluster extra: pip install 'jaxscd[cluster]'") \
            from None

    if not todo:
        return
    cluster = None
    if address is None:  # one thread per worker process: each run is a JAX program with its own device set
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        address = cluster.scheduler_address
    try:
        with Client(address) as client:
            futures = [client.submit(run, point, overrides, pure=False) for point in todo]
            for future in as_completed(futures):
                yield future.result()
    finally:
        if cluster is not None:
            cluster.close()
