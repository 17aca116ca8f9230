"""Command line: a thin layer over jaxscd.pipeline.

Exit status, in one table (``EXIT_CODES``): 0 PROVED / VERIFIED, 2 bad input, 3 NO_PROGRAM, 4 UNKNOWN, 5 REFUTED,
6 verify FAILED, 7 corrupt bundle, 8 missing file, 9 unsupported certificate schema, 70 internal error (a bug in
jaxscd), 130 interrupted. Every command runs under ``_reported``, the one place where errors become exit statuses.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from pathlib import Path

import click
from rich.console import Console
from rich.progress import ProgressColumn
from rich.table import Table
from rich.text import Text

from jaxscd.errors import BundleError, CircuitError, InputError, JaxscdError
from jaxscd.surrogates import METHODS
from jaxscd.verify.prove import SURROGATE_STRATEGIES

EXIT_CODES = {
    "PROVED": 0, "VERIFIED": 0, "NO_PROGRAM": 3, "UNKNOWN": 4, "REFUTED": 5, "FAILED": 6,  # distill / verify outcomes
    "bad input": 2, "corrupt bundle": 7, "missing file": 8, "unsupported schema": 9,  # errors, by _outcome
    "internal error": 70, "interrupted": 130,
}
_BUNDLE_OUTCOMES = {"missing": "missing file", "corrupt": "corrupt bundle", "schema": "unsupported schema",
                    "input": "bad input"}  # BundleError.kind -> EXIT_CODES
DEBUG_VARIABLE = "JAXSCD_DEBUG"  # set to 1: an internal error prints its traceback


def _fail(message: str, outcome: str = "bad input"):
    click.echo(f"jaxscd: error: {message}", err=True)
    sys.exit(EXIT_CODES[outcome])


def _outcome(err: Exception) -> str:
    """The EXIT_CODES entry of an exception that ended a command. An OSError is bad input: every one a command meets
    is about a path the user named or the machine (missing, unwritable, a directory, disk full), and raised from
    dozens of file calls, so it is classified here rather than converted at each. A JaxscdError outside the three
    families is a fallback the library should have caught, and any other exception a bug: internal errors."""
    if isinstance(err, BundleError):
        return _BUNDLE_OUTCOMES[err.kind]
    if isinstance(err, (InputError, CircuitError, OSError)):
        return "bad input"
    return "internal error"


def _message(err: Exception) -> str:
    if isinstance(err, OSError) and not isinstance(err, JaxscdError):
        where = f"{str(err.filename)!r}: " if err.filename is not None else ""
        return f"cannot use {where}{err.strerror or err}; check the path, its permissions and the free disk space"
    return getattr(err, "summary", None) or str(err)  # summary: one line for errors that collect many (GraphError)


def _internal(err: Exception):
    """A bug in jaxscd: one line and EXIT_CODES["internal error"]; with JAXSCD_DEBUG=1 the traceback first."""
    from jaxscd.circuits.base import exception_line

    if os.environ.get(DEBUG_VARIABLE, "").strip() not in ("", "0"):
        click.echo("".join(traceback.format_exception(type(err), err, err.__traceback__)), err=True, nl=False)
    click.echo(f"jaxscd: internal error ({exception_line(err)}); this is a bug in jaxscd: please report it with the "
               f"command line that caused it (rerun with {DEBUG_VARIABLE}=1 for the traceback)", err=True)
    sys.exit(EXIT_CODES["internal error"])


def _reported(interrupted: str = "interrupted; nothing was written"):
    """Run a command so that whatever ends it early ends it with one line on stderr and its exit status: an error by
    ``_outcome``, Ctrl-C as "interrupted" with the line ``interrupted`` (formatted with the command's arguments).
    click's own exits and usage errors pass through."""

    def wrap(command):
        @functools.wraps(command)
        def run(**kwargs):
            try:
                return command(**kwargs)
            except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
                raise
            except KeyboardInterrupt:
                _fail(interrupted.format(**kwargs), "interrupted")
            except Exception as err:
                outcome = _outcome(err)
                if outcome == "internal error":
                    _internal(err)
                _fail(_message(err), outcome)

        run.reported = True  # tests check that every command has it
        return run

    return wrap


@click.group()
@click.version_option(package_name="jaxscd")
def main():
    """Distill a circuit into a short program with a z3 certificate."""


@main.command("tasks")
@_reported()
def tasks_command():
    """List the built-in tasks."""
    from jaxscd.tasks import get_task, task_names

    table = Table("task", "alphabet", "lengths", "classes", "description", box=None)
    for name in task_names():
        task = get_task(name)
        table.add_row(name, " ".join(task.alphabet), f"{task.min_len}..{task.max_len}",
                      " / ".join(task.circuit.class_names), task.description)
    Console(width=None if sys.stdout.isatty() else 200).print(table)  # no wrapping when piped


def _source_ref(task_name, circuit_target, sparse, graph) -> dict:
    """The certificate's circuit.source for the options naming a circuit (paths made absolute): a task name, a
    --circuit file, a --graph or a circuit_sparsity checkpoint (``sparse``: dict of model_dir, viz, means,
    template)."""
    if sum(x is not None for x in (task_name, circuit_target, sparse, graph)) != 1:
        raise click.UsageError("give exactly one of TASK, --circuit path.py:fn, --graph FILE.json or "
                               "--circuit-sparsity MODEL_DIR")
    if task_name is not None:
        return {"kind": "task", "name": task_name}
    if graph is not None:
        return {"kind": "graph", "path": str(Path(graph).resolve())}
    if sparse is not None:
        return {"kind": "circuit_sparsity"} | {k: str(Path(v).resolve()) if v else None for k, v in sparse.items()}
    path, _, name = circuit_target.rpartition(":")
    return {"kind": "callable", "target": f"{Path(path).resolve()}:{name}"}


class _ProgressDisplay:
    """The running stage by name, with a bar, counts and an ETA while a stage counts its work (``jaxscd.progress``);
    log lines from inside a stage as a note. Terminal only: the caller decides."""

    def __init__(self, console: Console):
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description:<11}"), BarColumn(bar_width=24),
                                 TextColumn("{task.fields[count]}"), _Eta(), TextColumn("[dim]{task.fields[note]}"),
                                 console=console, transient=True)
        self.task = self.progress.add_task("starting", total=None, count="", note="")

    def __enter__(self):
        from jaxscd import progress

        self.progress.__enter__()
        self._listening = progress.listening(self)
        self._listening.__enter__()
        return self

    def __exit__(self, *exc):
        self._listening.__exit__(*exc)
        return self.progress.__exit__(*exc)

    def stage(self, name: str) -> None:
        self.progress.reset(self.task, total=None, description=name, count="", note="")

    def count(self, done: int, total: int, unit: str) -> None:
        self.progress.update(self.task, total=total, completed=done, count=f"{done:,}/{total:,} {unit}")

    def note(self, text: str) -> None:
        if not text.endswith(" s") or ": " not in text:  # a stage's closing "name: 1.23 s" says nothing new
            self.progress.update(self.task, note=text)


class _Eta(ProgressColumn):
    """Seconds left in the current stage, once it has counted enough to estimate (blank before)."""

    def render(self, task):
        left = task.time_remaining if task.total else None
        return Text("" if left is None or task.finished else f"ETA {left:.0f} s", style="cyan")


def _check_plots(directory: str, out: str | None) -> None:
    """--plots: a new or empty directory, or one --plots wrote (``jaxscd.outputs``), not the bundle's."""
    from jaxscd.outputs import check_output_dir
    from jaxscd.report import PLOTS

    if out and Path(directory).resolve() == Path(out).resolve():
        raise InputError(f"--plots {directory!r} is the --out bundle directory; write the figures to another one")
    check_output_dir(directory, PLOTS)


def _write_plots(directory: str, result, source) -> None:
    """--plots: the report's figures as PNG files (the circuit drawn from its graph when it has one; a pruned
    checkpoint circuit as an SVG drawing)."""
    from jaxscd.report import result_figures, write_figures

    write_figures(result_figures(result, source), directory)


def _devices() -> dict:
    from jaxscd import devices

    return devices.describe()


def _print_beyond(console: Console, result) -> None:
    """The lines of a result proved beyond enumeration: strategy, candidates at length, spec departures."""
    from jaxscd.beyond.departures import departure_lines

    proof, short = result.proof, result.short
    console.print(f"search     on the default domain: {short.verdict.value}, {len(short.survivors)} exact programs "
                  f"of {short.generated:,} candidates")
    if proof is not None:
        symmetry = proof.record.get("symmetry")
        console.print(f"strategy   {proof.method}: {proof.summary or proof.reason}; decisions trusted above margin "
                      f"{result.margin_bound:g}", highlight=False)
        if symmetry:
            console.print(f"symmetry   {symmetry['reason']}", highlight=False)
    for c in result.tried:
        cex = f" on {c['counterexample']!r} (length {c['length']}; circuit class {c['circuit']}, margin " \
              f"{c['circuit_margin']:.3g}, program {c['program_class']})" if "counterexample" in c else ""
        console.print(f"candidate  {c['program']}: {c['outcome']}{cex}", highlight=False)
    color = {"PROVED": "green", "NO_PROGRAM": "yellow"}.get(result.verdict.value, "red")
    console.print(f"verdict    [bold {color}]{result.verdict.value}[/]")
    if result.departures is not None:
        for line in departure_lines(result.departures, result.class_names):
            console.print(line, highlight=False)
    for note in result.notes:
        console.print(f"note       {note}", highlight=False)
    if result.source:
        console.print("\n" + result.source, highlight=False, markup=False)
    console.print("timings    " + ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items()))


def _print_report(console: Console, result, description: str, circuit_name: str) -> None:
    from jaxscd.domain import approximate

    d = result.domain
    console.print(f"[bold]{circuit_name}[/]: {description}")
    pre = f"; {result.n_valid:,} satisfy: {d.precondition_text}" if d.precondition is not None and \
        result.n_valid is not None else f"; precondition: {d.precondition_text}" if d.precondition_text else ""
    size = f"{d.size:,} sequences" if d.exhaustive else f"{approximate(d.size)} sequences (beyond enumeration)"
    console.print(f"domain     alphabet {' '.join(d.alphabet)}, lengths {d.min_len}..{d.max_len}, {size}{pre}")
    if result.restriction:
        console.print("           the precondition restricts the circuit source's own")
    if not d.exhaustive:
        _print_beyond(console, result)
        return
    margin = "decisions only (no logits)" if result.margin == float("inf") else f"{result.margin:.4g}"
    console.print(f"circuit    min decision margin {margin} (float bound {result.margin_bound:g})")
    if result.surrogate is not None:
        console.print(f"surrogate  exact integer ReLU net ({result.surrogate_method}), {result.surrogate.n_neurons} "
                      f"neurons, depth {result.surrogate.depth}")
    console.print(f"search     {result.generated:,} candidates generated, {len(result.survivors)} exact on the domain")
    if result.skipped:
        console.print(f"           not searched (no simpler program there): {', '.join(result.skipped)}")
    for program, cex in result.refuted:
        console.print(f"refuted    {program!r} on {d.format(cex)!r}")
    color = {"PROVED": "green", "NO_PROGRAM": "yellow"}.get(result.verdict.value, "red")
    proof = ""
    if result.proof:
        how = f", {result.proof.summary}" if result.proof.summary else ""
        proof = f" ({result.proof.method}, {result.proof.seconds:.2f} s{how})"
    console.print(f"verdict    [bold {color}]{result.verdict.value}[/]{proof}")
    if result.circuit_program_mismatches == 0:
        console.print(f"cross-check the program equals the circuit on all {result.n_valid:,} inputs (exhaustive)")
    for note in result.notes:
        console.print(f"note       {note}")
    if result.source:
        console.print("\n" + result.source, highlight=False, markup=False)
    for rank, miss in enumerate(result.near_misses, 1):
        console.print(f"near miss {rank}: agrees on {miss.agreement:.2%} ({miss.mismatches:,} inputs differ): "
                      f"{miss.program!r}", highlight=False)
        for line in miss.patterns:
            console.print(f"             {line}", highlight=False)
    if result.exact_description is not None:
        described = result.exact_description
        console.print(f"exact      no short program, but the decision is a function of the token counts (checked on "
                      f"all {described.inputs:,} inputs): class 1 on {len(described.ones):,} of "
                      f"{len(described.ones) + len(described.zeros):,} count vectors")
        if len(described.ones) <= 24:
            console.print("\n" + described.source(result.domain, result.class_names), highlight=False, markup=False)
    if result.spec_mismatches is not None:
        if result.spec_mismatch_count == 0:
            console.print("spec       the circuit matches the task's intended behaviour on every input")
        else:
            console.print(f"spec       the circuit differs from the intended behaviour on "
                          f"{result.spec_mismatch_count:,} of {result.n_valid:,} inputs (exhaustive):")
            for line in result.spec_patterns:
                console.print(f"             {line}", highlight=False)
    console.print("timings    " + ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items()))


@main.command("distill")
@click.argument("task", required=False)
@click.option("--circuit", "circuit_target", help="A Python callable instead of a task: path/to/file.py:fn")
@click.option("--graph", type=click.Path(), help="A circuit as a JSON graph (docs/circuit_graph.md).")
@click.option("--circuit-sparsity", "sparse_dir", type=click.Path(),
              help="An OpenAI circuit_sparsity model directory (beeg_config.json + final_model.pt).")
@click.option("--viz", type=click.Path(), help="viz_data.pt with the circuit's node mask (with --circuit-sparsity).")
@click.option("--means", type=click.Path(), help="means.pt with the mean activations used for ablation.")
@click.option("--template", type=click.Path(), help="Task template JSON for --circuit-sparsity.")
@click.option("--alphabet", help="Comma-separated token names for a --circuit file without ALPHABET (with one: "
              "its first tokens, in order, to restrict the domain).")
@click.option("--min-len", type=click.IntRange(min=1), help="Shortest sequence length.")
@click.option("--max-len", type=click.IntRange(min=1), help="Longest sequence length.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for surrogate training and probes.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
              help="Seconds per solver query; a timeout is UNKNOWN.")
@click.option("--proof", "proof_strategy", type=click.Choice(["auto", *SURROGATE_STRATEGIES]), default="auto",
              show_default=True, help="How z3 proves surrogate == program: " + "; ".join(
                  f"{s.name}: {s.summary}" for s in SURROGATE_STRATEGIES.values()) + "; auto: the tree if it fits its "
              "node budget, else one short query, then cubes. Beyond enumeration the circuit's structure decides.")
@click.option("--out", type=click.Path(file_okay=False), help="Write the certificate bundle to this directory.")
@click.option("--all-candidates", is_flag=True, help="Search every motif family, even those that cannot hold a "
              "simpler program than one already found (slower; reports every exact program).")
@click.option("--synth-states", type=click.IntRange(min=0), default=8, show_default=True,
              help="When no DSL motif is exact, synthesize a DFA with up to this many states (0: no state machine "
              "beyond the DSL's).")
@click.option("--learn/--no-learn", "learn_automaton", default=True, show_default=True,
              help="When no DSL motif is exact, also learn an exact state machine of any size (AALpy, with the "
              "truth table as its oracle); synthesis then looks only for a smaller one.")
@click.option("--surrogate", "surrogate_methods", default=",".join(METHODS), show_default=True,
              help="Surrogate fitting methods, tried in order for each exact program: "
              + ", ".join(f"{m.name} ({m.summary})" for m in METHODS.values()) + ".")
@click.option("--time-limit", type=click.FloatRange(min=0), help="Stop with UNKNOWN (exit 4) after this many "
              "seconds, nothing written. Without it, domains estimated to take over 5 minutes on a CPU are refused "
              "up front; 0: no limit.")
@click.option("--plots", type=click.Path(file_okay=False), help="Write the report's figures (circuit, truth table, "
              "departures from the spec) as PNG files into this directory (a pruned checkpoint circuit as "
              "circuit.svg): a new or empty one, or one --plots wrote (replaced whole).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@_reported()
def distill_command(task, circuit_target, graph, sparse_dir, viz, means, template, alphabet, min_len, max_len,
                    seed, timeout, proof_strategy, out, all_candidates, synth_states, learn_automaton,
                    surrogate_methods, time_limit, plots, as_json):
    """Distill TASK (see `jaxscd tasks`) or --circuit FILE:FN into a certified program."""
    from jaxscd.budget import TimeLimitExceeded, deadline
    from jaxscd.circuits.sources import resolve
    from jaxscd.pipeline import DistillConfig, choose_domain, distill
    from jaxscd.verify.certificate import check_output_dir, write_bundle

    interactive = sys.stdout.isatty() and not as_json
    console = Console(soft_wrap=True)
    try:
        sparse = None if sparse_dir is None else {"model_dir": sparse_dir, "viz": viz, "means": means,
                                                  "template": template}
        if out:
            check_output_dir(out)  # refused before the work, not after
        if plots:
            _check_plots(plots, out)
        source = resolve(_source_ref(task, circuit_target, sparse, graph), circuit_target)
        config = DistillConfig(seed=seed, proof_timeout_s=timeout, prune=not all_candidates,
                               proof_strategy=proof_strategy, synth_states=synth_states,
                               learn_automaton=learn_automaton,
                               surrogate_methods=tuple(m.strip() for m in surrogate_methods.split(",")),
                               bounds_deadline_s=0.8 * time_limit if time_limit else 300.0)
        names = tuple(a.strip() for a in alphabet.split(",")) if alphabet else None
        domain = choose_domain(source, min_len, max_len, names, time_limit, config.max_states)
        with deadline(time_limit):
            if interactive:
                with _ProgressDisplay(console) as display:
                    result = distill(source, domain, config, log=display.note)
            else:
                result = distill(source, domain, config)
        if out:
            write_bundle(result, out, source.ref, source.circuit.fingerprint)
        if plots:
            _write_plots(plots, result, source)
    except TimeLimitExceeded:  # a verdict, not an error
        _fail(f"the --time-limit of {time_limit:g} s ran out before a verdict: UNKNOWN, nothing was written", "UNKNOWN")
    if as_json:
        click.echo(json.dumps(result.to_json() | {"description": source.description, "devices": _devices()}))
    else:
        _print_report(console, result, source.description, source.circuit.name)
        if out:
            files = ", ".join(sorted(p.name + ("/" if p.is_dir() else "") for p in Path(out).iterdir()))
            console.print(f"bundle     {out}/ ({files})")
    sys.exit(EXIT_CODES[result.verdict.value])


@main.command("export-graph")
@click.argument("task")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of stdout (an existing "
              "file only when it is a graph export-graph wrote).")
@_reported()
def export_graph_command(task, output):
    """Print a built-in task's circuit as a JSON graph (see docs/circuit_graph.md)."""
    from jaxscd.tasks import task_graph

    text = json.dumps(task_graph(task), indent=1) + "\n"
    if output:
        from jaxscd.outputs import check_output_file, write_file

        # an existing file is replaced only when it is a graph export-graph wrote (its first lines)
        check_output_file(output, "-o", "a circuit graph export-graph wrote",
                          lambda head: head.startswith(b'{\n "schema": "jaxscd.circuit_graph"'))
        write_file(output, text)
    else:
        click.echo(text, nl=False)


@main.command("eval")
@click.option("--circuit-sparsity", "model_dir", required=True, type=click.Path(),
              help="circuit_sparsity model directory (beeg_config.json + final_model.pt).")
@click.option("--viz", type=click.Path(), help="viz_data.pt: run the circuit (node mask + mean ablation).")
@click.option("--means", type=click.Path(), help="means.pt: {location: [width]} mean activations.")
@click.option("--tokens", required=True, type=click.Path(), help="int token array [batch, positions] (.npy).")
@click.option("--out", required=True, type=click.Path(), help="Where to write float64 logits [batch, positions, vocab].")
@_reported()
def eval_command(model_dir, viz, means, tokens, out):
    """Run a circuit_sparsity model (or its circuit) on tokens and save the logits."""
    from jaxscd.circuits.sparse_gpt import eval_logits

    logits = eval_logits(model_dir, tokens, out, viz=viz, means=means)
    click.echo(f"wrote {out}: float64 logits {list(logits.shape)}")


@main.command("verify")
@click.argument("bundle", type=click.Path())
@click.option("--timeout", type=click.FloatRange(min=0.1), default=120.0, show_default=True,
              help="Seconds per solver run.")
@click.option("--circuit", "circuit_target", help="Re-run a bundle's Python circuit from this file (path.py:fn); its "
              "sha256 must match the certificate before it is imported. Bundles never run code by themselves.")
@_reported("interrupted")
def verify_command(bundle, timeout, circuit_target):
    """Re-check a certificate bundle from scratch (hashes, exhaustive pass, SMT query)."""
    from jaxscd.verify.recheck import recheck

    report = recheck(bundle, timeout, circuit_target)
    console = Console(soft_wrap=True)
    for line in report.domain:  # the domain that was verified, as the certificate states it and verify counted it
        console.print(f"{'domain':>7}  {line}", highlight=False, markup=False)
    for name, status, detail in report.checks:
        color = {"ok": "green", "FAILED": "bold red"}.get(status, "yellow")
        console.print(f"[{color}]{status:>7}[/]  {name}" + (f"  ({detail})" if detail else ""), highlight=False)
    console.print("[bold green]VERIFIED[/]" if report.verified else "[bold red]FAILED[/]")
    sys.exit(EXIT_CODES["VERIFIED" if report.verified else "FAILED"])


@main.command("report")
@click.argument("bundle", type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="report.html", show_default=True,
              help="Where to write the HTML page (self-contained: styles and figures inline); an existing file is "
              "replaced only when it is a jaxscd report.")
@click.option("--circuit", "circuit_target", help="Re-run a bundle's Python circuit from this file (path.py:fn) for "
              "its truth table; its sha256 must match the certificate first. Bundles never run code by themselves.")
@_reported()
def report_command(bundle, output, circuit_target):
    """Write one HTML page about a certificate bundle: verdict, claims, program, circuit, truth table, spec."""
    from jaxscd.report import write_report

    write_report(bundle, output, circuit_target)
    click.echo(f"wrote {output}")


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{option} {text!r} is not a comma-separated list of integers, e.g. {option} 6,8,10") from None
    if not values or min(values) < 0:
        raise InputError(f"{option} {text!r} needs at least one non-negative integer, e.g. {option} 6,8,10")
    return values


@main.command("sweep")
@click.option("--tasks", required=True, help="Comma-separated task names (see `jaxscd tasks`).")
@click.option("--max-len", "lengths", required=True, help="Comma-separated longest lengths, e.g. 6,8,10.")
@click.option("--alphabet-size", "alphabet_sizes", help="Comma-separated alphabet sizes: the first k tokens of each "
              "task's alphabet (default: all of them).")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory for results.jsonl (runs "
              "already there are skipped: the sweep resumes): a new or empty one, or one of sweep results.")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="local: this process, or --workers local processes; dask: a Dask cluster (pip install "
              "jaxscd[cluster]; a local one unless --address).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Runs at a time.")
@click.option("--address", help="Dask scheduler address (tcp://host:8786) for --engine dask.")
@_reported("interrupted; finished runs are in {out}/results.jsonl (run again to resume)")
def sweep_command(tasks, lengths, alphabet_sizes, seeds, out, engine, workers, address):
    """Distill a grid of tasks x lengths x alphabet sizes x seeds; one JSON record per run in OUT/results.jsonl."""
    from jaxscd.sweep import check_results_dir, grid, pending, run_sweep, skipped_note

    points = grid([t.strip() for t in tasks.split(",") if t.strip()], _int_list(lengths, "--max-len"),
                  _int_list(alphabet_sizes, "--alphabet-size") if alphabet_sizes else [None],
                  _int_list(seeds, "--seeds"))
    check_results_dir(out)
    skipped = []
    todo = pending(points, out, skipped)
    if skipped:
        click.echo(f"sweep: {skipped_note(skipped)}", err=True)
    click.echo(f"sweep: {len(points)} runs, {len(points) - len(todo)} already in {out}/results.jsonl", err=True)
    with _sweep_display(len(todo)) as shown:
        records = run_sweep(todo, out, engine, workers, address, on_record=shown)
    verdicts = ", ".join(f"{v} {sum(r['verdict'] == v for r in records)}"
                         for v in sorted({r["verdict"] for r in records}))
    click.echo(f"sweep: {len(records)} runs done ({verdicts or 'none'}); {out}/results.jsonl", err=True)


class _sweep_display:
    """A progress bar with ETA on a terminal (stderr); nothing otherwise. Called with each finished record."""

    def __init__(self, total: int):
        self.total, self.progress = total, None

    def __enter__(self):
        if sys.stderr.isatty() and self.total:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("ETA"),
                                     TimeRemainingColumn(), TextColumn("{task.description}"),
                                     console=Console(stderr=True))
            self.progress.__enter__()
            self.task = self.progress.add_task("", total=self.total)
        return self

    def __call__(self, record: dict) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=1, description=f"{record['key']}: {record['verdict']}")

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)


@main.command("plot")
@click.argument("directory", type=click.Path(file_okay=False))
@_reported()
def plot_command(directory):
    """Figures of a sweep (PNG) from DIRECTORY/results.jsonl: stage times, verdict grid, candidates per stage."""
    from jaxscd.sweep import skipped_note
    from jaxscd.sweep_figures import write_sweep_figures

    skipped = []
    paths = write_sweep_figures(directory, skipped)
    if skipped:
        click.echo(f"plot: {skipped_note(skipped)}", err=True)
    for path in paths:
        click.echo(f"wrote {path}")


@main.command("train")
@click.argument("task")
@click.option("--out", "model_dir", required=True, type=click.Path(file_okay=False),
              help="Model directory to write: beeg_config.json + final_model.pt (weights.npz without torch); a new or "
              "empty one, or one `jaxscd train` wrote (replaced whole).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Optimizer steps (default 2000; 4000 for one-layer bracket_depth, 5000 for quote_close past length "
              "8; the learning-rate warm-up is at most half of them).")
@click.option("--layers", type=click.IntRange(1, 4), default=1, show_default=True, help="Transformer blocks.")
@click.option("--max-len", type=click.IntRange(1, 64), default=None, help="Longest training sequence (default 6): "
              "the learned domain is lengths 1..N. The model accepts prompts of up to 128 positions either way.")
@click.option("--circuit-weight", type=click.FloatRange(min=0), default=None,
              help="Weight of the circuit term in the second half of training: the task loss of a gated, "
              "mean-ablated sub-circuit plus a per-node penalty, so that pruning finds a small circuit (0: off; the "
              "default is the task's, see docs/learned_circuits.md).")
@_reported("interrupted; nothing was written")
def train_command(task, model_dir, seed, steps, layers, max_len, circuit_weight):
    """Train a small weight-sparse GPT on TASK's token language plus filler (circuit_sparsity layout)."""
    from jaxscd.learn.train import default_config, train

    config = default_config(task, seed=seed, n_layer=layers, **({} if steps is None else {"steps": steps}),
                            **({} if max_len is None else {"max_len": max_len}),
                            **({} if circuit_weight is None else {"circuit_weight": circuit_weight}))
    result = train(task, model_dir, config)
    click.echo(f"wrote {result.weights_file}: {task} accuracy {result.accuracy:.2%} on its {result.domain_size:,}-"
               f"sequence domain, weight density {result.density:.2f}, {result.seconds:.0f} s")


@main.command("prune")
@click.argument("model_dir", type=click.Path())
@click.option("--task", required=True, help="The task whose circuit to keep (see `jaxscd tasks`).")
@click.option("--out", "circuit_dir", required=True, type=click.Path(file_okay=False),
              help="Circuit directory to write: viz_data.pt, means.pt, template.json; a new or empty one, or one "
              "`jaxscd prune` wrote (replaced whole).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--restarts", type=click.IntRange(1, 16), default=1, show_default=True,
              help="Searches from seeds SEED, SEED+1, .. (each its own mean ablation); the smallest circuit is kept.")
@_reported("interrupted; nothing was written")
def prune_command(model_dir, task, circuit_dir, seed, restarts):
    """Prune a `jaxscd train` model to TASK's node circuit (learned masks, mean ablation, bisection)."""
    from jaxscd.learn.prune import PruneConfig, prune

    result = prune(model_dir, task, circuit_dir, PruneConfig(seed=seed, restarts=restarts))
    click.echo(f"kept {result.nodes_kept}/{result.nodes_total} nodes, {result.edges_kept}/{result.edges_total} edges; "
               f"task loss {result.task_loss:.4f} (model {result.model_loss:.4f}); circuit agrees with the model on "
               f"{result.agreement:.2%} of {result.domain_size:,} inputs (accuracy {result.circuit_accuracy:.2%}, "
               f"model {result.model_accuracy:.2%}); {result.seconds:.0f} s")
    files = result.files
    click.echo(f"distill it: jaxscd distill --circuit-sparsity {model_dir} --viz {files['viz']} "
               f"--means {files['means']} --template {files['template']}")


if __name__ == "__main__":  # python -m jaxscd.cli: the console script's Ctrl-C handling (once JAX is imported)
    from jaxscd_main import main as console_script

    console_script()
