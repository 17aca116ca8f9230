"""Figures of a sweep (``jaxscd plot DIR``): PNG files drawn with matplotlib from DIR/results.jsonl.

- ``stage_times.png``: wall time of each pipeline stage against the domain size, log-log, one panel per task;
- ``verdicts.png``: the verdict of every (task, alphabet size) x max_len cell (seeds that disagree: "mixed");
- ``candidates.png``: candidates left after each stage (generated, exact on the domain, tried, with a surrogate,
  proved), one line per run.
"""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path

from jaxscd.outputs import write_file
from jaxscd.sweep import PLOT_FILES, SweepError, check_results_dir, read_results

VERDICT_COLORS = {"PROVED": "#4caf50", "UNKNOWN": "#ff9800", "NO_PROGRAM": "#fdd835", "REFUTED": "#e53935",
                  "mixed": "#9e9e9e"}
STAGES = ("generated", "survivors", "tried", "with_surrogate", "proved")
FLOOR_S = 1e-3  # stages timed at 0.000 s are drawn at 1 ms (a log axis has no zero)


def write_sweep_figures(directory: str | Path, skipped: list | None = None) -> list[Path]:
    """Write the three PNG files (``PLOT_FILES``, each atomically) into ``directory``, a directory of sweep results
    (``check_results_dir``: a user's file there is never replaced); the paths written. ``skipped``: see
    ``read_results``."""
    records = read_results(directory, skipped)
    if not records:
        raise SweepError(f"no runs in {Path(directory) / 'results.jsonl'}; run `jaxscd sweep ... --out {directory}` "
                         f"first")
    check_results_dir(directory, "plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    paths = []
    for name, draw in zip(PLOT_FILES, (_stage_times, _verdicts, _candidates)):
        figure = draw(records)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
        plt.close(figure)
        paths.append(write_file(directory / name, buffer.getvalue()))
    return paths


def _row_label(record: dict) -> str:
    tokens = len(record["domain"]["alphabet"])
    return f"{record['task']} ({tokens} tokens)"


def _stage_times(records: list[dict]):
    import matplotlib.pyplot as plt

    tasks = sorted({_row_label(r) for r in records})  # a panel per task and alphabet size
    stages = list(dict.fromkeys(s for r in records for s in r["timings"]))
    colors = dict(zip(stages, plt.get_cmap("tab10").colors))
    figure, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks) + 1, 3.8), squeeze=False, sharey=True)
    for ax, task in zip(axes[0], tasks):
        runs = sorted((r for r in records if _row_label(r) == task), key=lambda r: r["domain"]["size"])
        for stage in stages:
            points = defaultdict(list)  # size -> times (seeds averaged)
            for r in runs:
                if stage in r["timings"]:
                    points[r["domain"]["size"]].append(max(r["timings"][stage], FLOOR_S))
            if points:
                sizes = sorted(points)
                ax.plot(sizes, [sum(points[s]) / len(points[s]) for s in sizes], "o-", color=colors[stage],
                        label=stage, markersize=4)
        sizes = sorted({r["domain"]["size"] for r in runs})
        ax.plot(sizes, [sum(r["wall_s"] for r in runs if r["domain"]["size"] == s) /
                        sum(1 for r in runs if r["domain"]["size"] == s) for s in sizes], "k--", label="total")
        ax.set(xscale="log", yscale="log", title=task, xlabel="domain size (sequences)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("wall time (s)")
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_lines()}
    figure.legend(handles.values(), handles.keys(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    figure.suptitle("wall time per stage vs domain size")
    figure.tight_layout()
    return figure


def _verdicts(records: list[dict]):
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = sorted({_row_label(r) for r in records})
    lengths = sorted({r["max_len"] for r in records})
    cells = defaultdict(set)
    for r in records:
        cells[_row_label(r), r["max_len"]].add(r["verdict"])
    figure, ax = plt.subplots(figsize=(1.1 * len(lengths) + 3, 0.5 * len(rows) + 1.6))
    for i, row in enumerate(rows):
        for j, length in enumerate(lengths):
            found = cells.get((row, length))
            if not found:
                continue
            verdict = next(iter(found)) if len(found) == 1 else "mixed"
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, color=VERDICT_COLORS.get(verdict, "#bdbdbd")))
            ax.text(j, i, verdict.replace("_", " "), ha="center", va="center", fontsize=7)
    ax.set(xlim=(-0.5, len(lengths) - 0.5), ylim=(len(rows) - 0.5, -0.5), xlabel="max_len",
           title="verdict by task and length")
    ax.set_xticks(range(len(lengths)), [str(n) for n in lengths])
    ax.set_yticks(range(len(rows)), rows)
    used = sorted({v for found in cells.values() for v in (found if len(found) == 1 else {"mixed"})})
    ax.legend(handles=[Patch(color=VERDICT_COLORS.get(v, "#bdbdbd"), label=v) for v in used],
              loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    figure.tight_layout()
    return figure


def _candidates(records: list[dict]):
    import matplotlib.pyplot as plt

    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    figure, ax = plt.subplots(figsize=(8, 4.2))
    cmap = plt.get_cmap("viridis")
    runs = sorted(records, key=lambda r: (_row_label(r), r["domain"]["size"], r["seed"]))
    rows = sorted({_row_label(r) for r in runs})
    markers = dict(zip(rows, "osD^vP*Xhp<>"))
    scale = Normalize(min(r["max_len"] for r in runs), max(r["max_len"] for r in runs) + 1e-9)
    for r in runs:
        counts = [r["candidates"].get(stage, r["candidates"].get("exact", 0) if stage == "survivors" else 0)
                  for stage in STAGES]  # "exact": records written before DistillResult.to_json
        ax.plot(range(len(STAGES)), counts, marker=markers.get(_row_label(r), "o"), color=cmap(scale(r["max_len"])),
                alpha=0.8, markersize=4)
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xticks(range(len(STAGES)), ["generated", "exact on\nthe domain", "tried", "with a\nsurrogate", "proved"])
    ax.set(ylabel="candidates left", title="candidates surviving each stage (one line per run)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(handles=[Line2D([], [], marker=markers[row], color="k", linestyle="", label=row) for row in rows],
              fontsize=7, loc="upper right")
    figure.colorbar(plt.cm.ScalarMappable(norm=scale, cmap=cmap), ax=ax, label="max_len")
    figure.tight_layout()
    return figure
