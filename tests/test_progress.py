"""Progress that tells the truth: a stage is named when it starts, long stages count their work, and nothing is
shown on a pipe or with --json."""

from __future__ import annotations

import io

from click.testing import CliRunner
from rich.console import Console

from jaxscd import progress
from jaxscd.cli import _ProgressDisplay
from jaxscd.cli import main as cli


class Recorder:
    def __init__(self):
        self.events = []

    def stage(self, name):
        self.events.append(("stage", name))

    def count(self, done, total, unit):
        self.events.append(("count", done, total, unit))

    def note(self, text):
        self.events.append(("note", text))


def _distill_small(log=lambda _: None):
    from jaxscd import distill, get_task

    task = get_task("bracket_depth")
    return distill(task.circuit, task.domain(max_len=5), spec=task.spec, log=log)


def test_stages_are_announced_when_they_start_and_long_ones_count():
    recorder = Recorder()
    with progress.listening(recorder):
        _distill_small(log=recorder.note)
    events = recorder.events
    stages = [e[1] for e in events if e[0] == "stage"]
    assert stages[:4] == ["domain", "circuit", "spec", "search"]
    circuit = events.index(("stage", "circuit"))
    finished = events.index(("note", next(e[1] for e in events if e[0] == "note" and e[1].startswith("circuit:"))))
    counts = [e for e in events[circuit:finished] if e[0] == "count"]  # counted while the circuit stage runs
    assert counts and counts[-1][1] == counts[-1][2] and counts[-1][3] == "inputs"
    search = events.index(("stage", "search"))
    assert ("count", 0, events[search + 1][2], "candidate families") == events[search + 1]


def test_terminal_display_names_the_running_stage():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with _ProgressDisplay(console) as display:
        display.stage("circuit")
        display.count(5, 10, "inputs")
        display.progress.refresh()
        shown = out.getvalue()
        display.note("circuit: 1.00 s")  # the closing line of a stage is not news
        assert display.progress.tasks[0].fields["note"] == ""
    assert "circuit" in shown and "5/10 inputs" in shown
    assert progress._listener.get() is None  # the display stops listening when it closes


def test_nothing_on_a_pipe_or_with_json():
    for args in (["distill", "bracket_depth", "--max-len", "4"], ["distill", "bracket_depth", "--max-len", "4",
                                                                   "--json"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert "ETA" not in result.output and "candidate families" not in result.output and "⠋" not in result.output
