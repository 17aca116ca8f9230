"""Sweeps: distill a grid of (task, max_len, alphabet size, seed) points, one JSON record per run in results.jsonl.

Resumable: a point whose key is already in ``results.jsonl`` is skipped, and a record is appended (and flushed to
disk) as soon as its run ends, so an interrupted sweep loses at most the runs in flight. Runs go through an
*engine*: ``local`` (default) runs them in this process one by one, or in N local worker processes; ``dask`` hands
them to a Dask cluster (``jaxscd.cluster``, the optional ``jaxscd[cluster]`` extra). Either way the records are
written here, by the one process that owns the file.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from jaxscd.errors import InputError

RESULTS = "results.jsonl"


@dataclass(frozen=True)
class SweepPoint:
    task: str
    max_len: int
    alphabet_size: int | None = None  # the first k tokens of the task's alphabet; None: all of them
    seed: int = 0

    @property
    def key(self) -> str:
        size = "all" if self.alphabet_size is None else self.alphabet_size
        return f"{self.task}/len{self.max_len}/tokens{size}/seed{self.seed}"


class SweepError(InputError):
    """A grid that cannot run (unknown task, an alphabet or length the circuit does not accept, a domain too big)."""


def grid(tasks: Sequence[str], lengths: Sequence[int], alphabet_sizes: Sequence[int | None] = (None,),
         seeds: Sequence[int] = (0,)) -> list[SweepPoint]:
    """Every combination, in task, length, alphabet size, seed order; checked up front (``SweepError``)."""
    points = [SweepPoint(t, n, a, s) for t in tasks for n in lengths for a in alphabet_sizes for s in seeds]
    problems = list(dict.fromkeys(problem for point in points if (problem := _check(point))))
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise SweepError("; ".join(problems[:3]) + more)
    return points


def _check(point: SweepPoint) -> str | None:
    from jaxscd.budget import check_budget
    from jaxscd.domain import DomainError
    from jaxscd.tasks import get_task, task_names

    if point.task not in task_names():
        return f"unknown task {point.task!r}; known tasks: {', '.join(task_names())}"
    task = get_task(point.task)
    if point.max_len > task.max_positions or point.max_len < task.min_len:
        return (f"--max-len {point.max_len} is outside the lengths {task.min_len}..{task.max_positions} of "
                f"{point.task!r}")
    if point.alphabet_size is not None and not 1 <= point.alphabet_size <= len(task.alphabet):
        return (f"--alphabet-size {point.alphabet_size} is not in 1..{len(task.alphabet)}, the size of the alphabet "
                f"of {point.task!r}")
    try:
        domain = point_domain(point)
    except ValueError as err:  # a precondition that reads a token the smaller alphabet drops
        return (f"the domain of {point.task!r} does not fit --alphabet-size {point.alphabet_size} ({err}); use a "
                f"larger size")
    try:
        check_budget(domain, None)
    except DomainError as err:
        return f"{point.key}: {err}"
    return None


def point_domain(point: SweepPoint):
    from jaxscd.domain import Domain
    from jaxscd.tasks import get_task

    task = get_task(point.task)
    domain = task.domain(None, point.max_len)
    if point.alphabet_size is None:
        return domain
    return Domain(task.alphabet[:point.alphabet_size], domain.min_len, domain.max_len, domain.precondition,
                  domain.precondition_text)


# --------------------------------------------------------------------------------------------------------------
# One run -> one record


def run_point(point: SweepPoint, config_overrides: dict | None = None) -> dict:
    """Distill one grid point; the record written to results.jsonl (plain JSON types only)."""
    from jaxscd import devices
    from jaxscd.pipeline import DistillConfig, distill
    from jaxscd.tasks import get_task

    task = get_task(point.task)
    domain = point_domain(point)
    config = DistillConfig(seed=point.seed, **(config_overrides or {}))
    start = time.perf_counter()
    result = distill(task.circuit, domain, config)  # the circuit alone: no spec comparison per grid point
    wall = time.perf_counter() - start
    # result.to_json(): the one view of a result; its candidates count what is left after each stage: generated ->
    # exact on the domain (survivors) -> tried (surrogate + proof, simplest first) -> with a surrogate -> proved
    return {"key": point.key, **asdict(point)} | result.to_json() | {
        "wall_s": round(wall, 3),
        "devices": devices.describe(),
        "host": os.uname().nodename,
        "pid": os.getpid(),
    }


# --------------------------------------------------------------------------------------------------------------
# The results file


def read_results(directory: str | Path) -> list[dict]:
    """Every complete record in DIR/results.jsonl (a line cut short by an interrupted write is ignored)."""
    path = Path(directory) / RESULTS
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return [r for r in records if isinstance(r, dict) and "key" in r]


def _append(path: Path, record: dict) -> None:
    text = path.read_bytes() if path.exists() else b""
    prefix = "\n" if text and not text.endswith(b"\n") else ""  # never glue a record onto a cut-short line
    with open(path, "a") as stream:
        stream.write(prefix + json.dumps(record, sort_keys=True) + "\n")
        stream.flush()
        os.fsync(stream.fileno())


def pending(points: Iterable[SweepPoint], directory: str | Path) -> list[SweepPoint]:
    done = {r["key"] for r in read_results(directory)}
    return [p for p in points if p.key not in done]


def run_sweep(points: Sequence[SweepPoint], directory: str | Path, engine: str = "local", workers: int = 1,
              address: str | None = None, config_overrides: dict | None = None,
              on_record: Callable[[dict], None] = lambda _: None) -> list[dict]:
    """Run the points not yet in DIR/results.jsonl; append each record as it finishes; return the new records."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    todo = pending(points, directory)
    records = []
    for record in _engine(engine, workers, address)(todo, config_overrides):
        _append(directory / RESULTS, record)
        records.append(record)
        on_record(record)
    return records


def _engine(name: str, workers: int, address: str | None):
    if name == "local":
        return (lambda todo, overrides: _in_process(todo, overrides)) if workers <= 1 else \
            (lambda todo, overrides: _processes(todo, overrides, workers))
    if name == "dask":
        from jaxscd.cluster import dask_runs

        return lambda todo, overrides: dask_runs(run_point, todo, overrides, workers, address)
    raise SweepError(f"unknown engine {name!r}; use local or dask")


def _in_process(todo, overrides):
    for point in todo:
        yield run_point(point, overrides)


def _processes(todo, overrides, workers: int):
    """Local worker processes (spawned: each its own JAX runtime), records in completion order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_point, point, overrides) for point in todo]
        for future in as_completed(futures):
            yield future.result()
