"""Sweeps: distill a grid of (task, max_len, alphabet size, seed) points, one JSON record per run in results.jsonl.

Resumable: a point whose key is already in ``results.jsonl`` is skipped, and a record is appended (and flushed to
disk) as soon as its run ends, so an interrupted sweep loses at most the runs in flight. A line that is not a record
(cut short, not UTF-8, fields missing) is skipped and named, never rewritten. Records are appended only in a new or
empty directory or one of sweep results (``check_results_dir``). Runs go through an
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


# The fields of a record that resuming and plotting read, with their JSON types (bool is not a number here)
RECORD_FIELDS = {"key": str, "task": str, "max_len": int, "seed": int, "verdict": str, "wall_s": (int, float),
                 "domain": dict, "timings": dict, "candidates": dict}
_COUNTS = ("generated", "exact", "survivors", "tried", "with_surrogate", "proved")  # candidates that plot reads
PLOT_FILES = ("stage_times.png", "verdicts.png", "candidates.png")  # what `jaxscd plot` adds beside the results


def record_problem(record) -> str | None:
    """Why a results.jsonl value is not a sweep record resuming and plotting can read (None if it is)."""
    if not isinstance(record, dict):
        return f"{_show(record)}, not a JSON object"
    for name, kind in RECORD_FIELDS.items():
        if name not in record:
            return f"no {name!r} field"
        if isinstance(record[name], bool) or not isinstance(record[name], kind):
            return f"{name!r} is {_show(record[name])}"
    domain = record["domain"]
    if not isinstance(domain.get("alphabet"), list) or not _is_number(domain.get("size")):
        return "'domain' lacks its alphabet or size"
    numbers = {**record["timings"], **{k: v for k, v in record["candidates"].items() if k in _COUNTS}}
    bad = next((k for k, v in numbers.items() if not _is_number(v)), None)
    return None if bad is None else f"{bad!r} is {_show(numbers[bad])}, not a number"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _show(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_results(directory: str | Path, skipped: list | None = None) -> list[dict]:
    """Every sweep record in DIR/results.jsonl. A line that is not one (cut short by an interrupted write, not
    UTF-8, not JSON, or without the fields a record has) is left out and, when ``skipped`` is a list, added to it
    as (line number, why)."""
    path = Path(directory) / RESULTS
    if not path.exists():
        return []
    records = []
    for number, raw in enumerate(path.read_bytes().splitlines(), 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
            problem = record_problem(record)
        except UnicodeDecodeError:
            problem = "not UTF-8"
        except (ValueError, RecursionError) as err:
            problem = f"not JSON ({type(err).__name__})"
        if problem is None:
            records.append(record)
        elif skipped is not None:
            skipped.append((number, problem))
    return records


def skipped_note(skipped: list, limit: int = 3) -> str:
    """One line naming the skipped lines of results.jsonl, e.g. for stderr."""
    shown = "; ".join(f"line {number}: {why}" for number, why in skipped[:limit])
    more = f"; and {len(skipped) - limit} more" if len(skipped) > limit else ""
    return f"skipped {len(skipped)} line{'s' * (len(skipped) != 1)} of {RESULTS} that are not sweep records " \
           f"({shown}{more}); they are kept as they are"


def check_results_dir(directory: str | Path, option: str = "--out") -> None:
    """Raise OutputDirError unless ``directory`` is new, empty, or a directory of sweep results: a results.jsonl
    with at least one sweep record and nothing else but the figures `jaxscd plot` draws from it. Sweeps append to
    that file and plot replaces those figures; a directory holding anything else is refused untouched."""
    from jaxscd.outputs import OutputDirError, unexpected_entries

    path = Path(directory)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        problem = "it is a link" if path.is_symlink() else "it is not a directory"
    elif not path.exists() or not any(path.iterdir()):
        return
    else:
        links, others = unexpected_entries(path, lambda p: p == RESULTS or p in PLOT_FILES)
        skipped = []
        problem = f"it holds a link, {links[0]!r}" if links else \
            f"it holds files a sweep does not write ({', '.join(others[:3])})" if others else \
            f"it holds no {RESULTS}" if not (path / RESULTS).is_file() else \
            f"its {RESULTS} holds no sweep record" if not read_results(path, skipped) else None
        if skipped and problem:
            problem += f" ({skipped_note(skipped)})"
    if problem is not None:
        raise OutputDirError(f"{option} {str(path)!r} exists and is not a directory of sweep results ({problem}); "
                             f"choose a new directory")


def _append(path: Path, record: dict) -> None:
    text = path.read_bytes() if path.exists() else b""
    prefix = "\n" if text and not text.endswith(b"\n") else ""  # never glue a record onto a cut-short line
    with open(path, "a") as stream:
        stream.write(prefix + json.dumps(record, sort_keys=True) + "\n")
        stream.flush()
        os.fsync(stream.fileno())


def pending(points: Iterable[SweepPoint], directory: str | Path, skipped: list | None = None) -> list[SweepPoint]:
    """The points without a record in DIR/results.jsonl (``skipped``: see ``read_results``)."""
    done = {r["key"] for r in read_results(directory, skipped)}
    return [p for p in points if p.key not in done]


def run_sweep(points: Sequence[SweepPoint], directory: str | Path, engine: str = "local", workers: int = 1,
              address: str | None = None, config_overrides: dict | None = None,
              on_record: Callable[[dict], None] = lambda _: None) -> list[dict]:
    """Run the points not yet in DIR/results.jsonl; append each record as it finishes; return the new records.
    DIR must be new, empty or a directory of sweep results (``check_results_dir``)."""
    directory = Path(directory)
    check_results_dir(directory)
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
