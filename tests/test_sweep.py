"""jaxscd sweep / jaxscd plot: the grid, records in results.jsonl, resuming, figures, one-line errors."""

import json
import subprocess
import sys

import pytest

from jaxscd.sweep import RESULTS, SweepError, SweepPoint, grid, pending, read_results, run_sweep

CLI = [sys.executable, "-m", "jaxscd.cli"]


def _cli(*args, cwd=None):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=300, cwd=cwd)


def test_grid_order_and_keys():
    points = grid(["quote_close", "bracket_depth"], [3, 4], [None], [0, 1])
    assert len(points) == 8
    assert points[0] == SweepPoint("quote_close", 3, None, 0)
    assert points[1].key == "quote_close/len3/tokensall/seed1"
    assert len({p.key for p in points}) == 8


@pytest.mark.parametrize("tasks, lengths, sizes, match", [
    (["nope"], [4], [None], "unknown task 'nope'"),
    (["quote_close"], [999], [None], "outside the lengths 1..128 of 'quote_close'"),
    (["bracket_depth"], [4], [9], "--alphabet-size 9 is not in 1..3"),
    (["quote_close"], [4], [3], "does not fit --alphabet-size 3"),
    (["quote_close"], [30], [None], "above the exhaustive limit"),
])
def test_grid_refuses_bad_points(tasks, lengths, sizes, match):
    with pytest.raises(SweepError, match=match):
        grid(tasks, lengths, sizes)


def test_sweep_records_and_resumes(tmp_path):
    points = grid(["bracket_depth"], [3, 4], [None, 2])
    new = run_sweep(points[:2], tmp_path)
    assert [r["key"] for r in new] == [p.key for p in points[:2]]
    record = new[0]
    for field in ("task", "domain", "verdict", "program", "timings", "candidates", "devices", "wall_s"):
        assert field in record, field
    assert record["domain"]["size"] == 3 + 9 + 27 and record["devices"]["count"] >= 1
    assert record["candidates"]["generated"] >= record["candidates"]["survivors"] >= record["candidates"]["proved"]
    assert new[1]["domain"]["alphabet"] == ["[", "]"]
    # an interrupted write leaves a cut-short line: it is ignored, and the next record starts on its own line
    with open(tmp_path / RESULTS, "a") as stream:
        stream.write('{"key": "bracket_d')
    assert [p.key for p in pending(points, tmp_path)] == [p.key for p in points[2:]]
    run_sweep(points, tmp_path)  # only the two missing runs
    assert sorted(r["key"] for r in read_results(tmp_path)) == sorted(p.key for p in points)
    assert run_sweep(points, tmp_path) == []


def test_cli_sweep_and_plot(tmp_path):
    out = tmp_path / "sweep"
    done = _cli("sweep", "--tasks", "quote_close,bracket_depth", "--max-len", "3", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stderr and "ETA" not in done.stderr  # no progress bar off a terminal
    again = _cli("sweep", "--tasks", "bracket_depth", "--max-len", "3,4", "--out", str(out))
    assert again.returncode == 0 and "2 runs, 1 already in" in again.stderr, again.stderr
    records = [json.loads(line) for line in (out / RESULTS).read_text().splitlines()]
    assert [(r["task"], r["max_len"]) for r in records] == [("quote_close", 3), ("bracket_depth", 3),
                                                            ("bracket_depth", 4)]
    assert all(r["verdict"] == "PROVED" for r in records)
    plotted = _cli("plot", str(out))
    assert plotted.returncode == 0, plotted.stderr
    for name in ("stage_times.png", "verdicts.png", "candidates.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, message", [
    (["sweep", "--tasks", "nope", "--max-len", "4", "--out", "{tmp}"], "unknown task 'nope'"),
    (["sweep", "--tasks", "quote_close", "--max-len", "4,x", "--out", "{tmp}"], "--max-len '4,x' is not"),
    (["sweep", "--tasks", "quote_close", "--max-len", "4", "--seeds", ",", "--out", "{tmp}"], "--seeds ',' needs"),
    (["plot", "{tmp}"], "no runs in"),
])
def test_cli_bad_input_one_line(tmp_path, args, message):
    done = _cli(*[a.format(tmp=tmp_path) for a in args])
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr and "Traceback" not in done.stderr
