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
    with open(out / RESULTS, "ab") as stream:  # lines that are not records: skipped and named, never rewritten
        stream.write(BAD_LINES)
    again = _cli("sweep", "--tasks", "bracket_depth", "--max-len", "3,4", "--out", str(out))
    assert again.returncode == 0 and "2 runs, 1 already in" in again.stderr, again.stderr
    assert "skipped 5 lines of results.jsonl" in again.stderr and "line 3: 'key' is [\"a\", 1]" in again.stderr
    lines = (out / RESULTS).read_bytes().splitlines()
    assert b"\n".join(lines[2:7]) + b"\n" == BAD_LINES
    records = [json.loads(line) for line in lines[:2] + lines[7:]]
    assert [(r["task"], r["max_len"]) for r in records] == [("quote_close", 3), ("bracket_depth", 3),
                                                            ("bracket_depth", 4)]
    assert all(r["verdict"] == "PROVED" for r in records)
    plotted = _cli("plot", str(out))
    assert plotted.returncode == 0, plotted.stderr
    assert "plot: skipped 5 lines" in plotted.stderr
    for name in ("stage_times.png", "verdicts.png", "candidates.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = _cli("sweep", "--tasks", "quote_close", "--max-len", "3", "--out", str(out))  # beside its figures
    assert again.returncode == 0 and "1 runs, 1 already in" in again.stderr, again.stderr
    assert _cli("plot", str(out)).returncode == 0  # plot replaces its own figures


BAD_LINES = (b'{"key": ["a", 1], "task": "x"}\n'  # a list as key (was: unhashable, sweep refused to resume)
             b'{"key": "quote_close/len3/tokensall/seed9"}\n'  # fields missing (was: KeyError in plot)
             b'\xff\xfe not UTF-8\n'  # (was: UnicodeDecodeError in plot)
             + b"[" * 100_000 + b"\n"  # nested too deeply
             + b'"a JSON string"\n')


def _record(**changes) -> dict:
    """A record with the fields sweep and plot read."""
    return {"key": "bracket_depth/len3/tokensall/seed0", "task": "bracket_depth", "max_len": 3, "seed": 0,
            "alphabet_size": None, "verdict": "PROVED", "wall_s": 0.5, "domain": {"alphabet": ["[", "]", "a"],
                                                                                "size": 39},
            "timings": {"circuit": 0.1}, "candidates": {"generated": 9, "survivors": 1, "proved": 1}} | changes


@pytest.mark.parametrize("line, why", [
    (json.dumps(_record(key=["a"])), "'key' is [\"a\"]"),
    (json.dumps(_record(key={"a": 1})), "'key' is {\"a\": 1}"),
    (json.dumps({k: v for k, v in _record().items() if k != "timings"}), "no 'timings' field"),
    (json.dumps(_record(max_len=True)), "'max_len' is true"),
    (json.dumps(_record(wall_s="fast")), "'wall_s' is \"fast\""),
    (json.dumps(_record(domain={"alphabet": "abc"})), "'domain' lacks its alphabet or size"),
    (json.dumps(_record(timings={"circuit": "1 s"})), "'circuit' is \"1 s\", not a number"),
    (json.dumps(_record(candidates={"generated": None})), "'generated' is null, not a number"),
    ("[1, 2]", "[1, 2], not a JSON object"),
    ('{"key": "bracket_d', "not JSON (JSONDecodeError)"),
    ("[" * 100_000, "not JSON (RecursionError)"),
    ("9" * 5000, "not JSON (ValueError)"),
], ids=["list key", "object key", "no timings", "bool max_len", "text wall_s", "bad domain", "text timing",
        "null count", "a list", "cut short", "nested too deeply", "5000 digits"])
def test_a_line_that_is_no_record_is_skipped_and_named(tmp_path, line, why):
    (tmp_path / RESULTS).write_bytes(json.dumps(_record()).encode() + b"\n" + line.encode() + b"\n\n")
    skipped = []
    assert read_results(tmp_path, skipped) == [_record()]
    assert skipped == [(2, why)]
    assert pending(grid(["bracket_depth"], [3, 4]), tmp_path) == [SweepPoint("bracket_depth", 4)]


def test_a_line_that_is_not_utf8_is_skipped(tmp_path):
    (tmp_path / RESULTS).write_bytes(b"\xff\n" + json.dumps(_record()).encode() + b"\n")
    skipped = []
    assert read_results(tmp_path, skipped) == [_record()] and skipped == [(1, "not UTF-8")]


# A sweep appends only in a new or empty directory or one of sweep results; plot replaces only its own figures.

def _snapshot(folder) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("files, words", [
    ({"notes.txt": b"mine"}, "a sweep does not write (notes.txt)"),
    ({"verdicts.png": b"mine"}, "holds no results.jsonl"),
    ({RESULTS: json.dumps(_record()).encode() + b"\n", "notes.txt": b"mine"}, "a sweep does not write (notes.txt)"),
    ({RESULTS: b'{"my": "own data"}\n'}, "its results.jsonl holds no sweep record (skipped 1 line"),
    ({RESULTS: json.dumps(_record()).encode() + b"\n", "sub/verdicts.png": b"mine"}, "(sub/verdicts.png)"),
], ids=["a user's directory", "a user's figure", "results beside a user file", "a user's results.jsonl",
        "a nested figure name"])
def test_sweep_and_plot_refuse_a_directory_that_is_not_of_results(tmp_path, files, words):
    out = tmp_path / "runs"
    for name, data in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    before = _snapshot(out)
    for args in (["sweep", "--tasks", "bracket_depth", "--max-len", "3", "--out", str(out)], ["plot", str(out)]):
        if args[0] == "plot" and b"bracket_depth" not in files.get(RESULTS, b""):
            continue  # plot of a directory without records says so ("no runs in", test_cli_bad_input_one_line)
        done = _cli(*args)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and words in done.stderr, done.stderr
        assert "is not a directory of sweep results" in done.stderr and "Traceback" not in done.stderr
        assert _snapshot(out) == before


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
