"""``jaxscd report``: one self-contained HTML page about a certificate bundle, and the same figures as PNG files.

The bundle is read as data, under verify's rules (``jaxscd.circuits.sources``): a built-in task, a JSON graph or a
checkpoint is rebuilt from its data to draw the circuit and its truth table; a circuit written as Python is re-run
only from the file passed as ``circuit_target`` once its sha256 matches the certificate; without it the truth table
is the certified program's (which the certificate claims equals the circuit on every input). Nothing the bundle names is
imported, and every name it holds is escaped (jinja2 autoescape).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jaxscd import outputs
from jaxscd.circuits.base import CircuitError, sha256_bytes
from jaxscd.domain import Domain, DomainError
from jaxscd.errors import BundleError

VERDICT_MEANING = {
    "PROVED": "the program computes exactly what the circuit computes on every input of the domain",
    "NO_PROGRAM": "no program of the DSL matches the circuit on every input; the nearest misses are listed",
    "UNKNOWN": "nothing was certified (a solver timeout, an untrusted float margin, or no exact surrogate)",
    "REFUTED": "every exact candidate was refuted by the solver",
}
FIGURES = ("circuit", "truth_table", "departures")
GRAPH_CAPTION = ("The circuit: residual channels as wires; each column reads (●) and writes (▲) them, in layer "
                 "order, ending at the readout.")
NO_GRAPH_CAPTION = "The circuit is code or a whole checkpoint: no graph in the bundle's data to draw."
CHECKPOINT_CAPTION = ("The pruned circuit, drawn as in Gao et al. (2025): its kept nodes (channels at hook "
                      "locations) in columns by layer, and every non-zero weight between two of them (blue positive, "
                      "red negative, width by magnitude; dashed: the residual stream into a later norm). Beside each "
                      "node, the tokens at whose positions it is most active; at the right, each kept block output's "
                      "direct weight on the compared logits. Hover a node or an edge for its numbers.")


@dataclass
class Rebuilt:
    """What the report could rebuild from the bundle's data: the circuit, its graph, its spec, and what it could
    not (``notes``)."""

    circuit: object | None = None
    graph: dict | None = None
    spec: object | None = None
    spec_label: str = "its spec"
    notes: list = field(default_factory=list)


def rebuild_circuit(cert: dict, circuit_target: str | None = None) -> Rebuilt:
    """The certified circuit, rebuilt as verify would (data only; a Python circuit only from ``circuit_target``)."""
    from jaxscd.circuits.sources import CircuitOptionError, NotRerun, resolve_certified

    try:
        source = resolve_certified(cert["circuit"], circuit_target)
    except CircuitOptionError as err:
        raise BundleError(str(err), "input") from None
    except NotRerun as err:
        return Rebuilt(notes=[str(err)])
    except (CircuitError, KeyError, OSError) as err:
        return Rebuilt(notes=[f"the circuit could not be rebuilt: {err.args[0] if err.args else err}"])
    rebuilt = Rebuilt(source.circuit, source.graph, source.spec, source.spec_label)
    if source.circuit.fingerprint != cert["circuit"]["sha256"]:
        rebuilt.notes.append("the circuit's weights or source changed since the bundle was written; the truth table "
                             "shown is the certified program's")
        rebuilt.circuit = rebuilt.spec = None
    return rebuilt


def figures(domain: Domain, class_names, decisions: np.ndarray | None, valid: np.ndarray, graph: dict | None,
            title: str, source: str, intended: np.ndarray | None = None, spec_label: str = "its spec",
            programs: tuple = (), drawing: str | None = None) -> dict:
    """name -> matplotlib Figure (or SVG text): the circuit (``drawing``, a checkpoint circuit's SVG, else the
    diagram of its graph), the truth table (when there are decisions) and the departures from the spec (when there
    is one)."""
    from jaxscd.report import draw
    from jaxscd.report.table import choose_statistic, summarise

    out = {"circuit": drawing if drawing is not None else draw.circuit_diagram(graph, title)}
    if decisions is None:
        return out
    summary = summarise(domain, decisions, valid, choose_statistic(domain, *programs), intended)
    out["truth_table"] = draw.truth_table_figure(summary, class_names, source)
    if intended is not None:
        out["departures"] = draw.departure_figure(summary, spec_label)
    return out


def result_figures(result, source) -> dict:
    """The report's figures for a fresh distill result of ``source`` (a CircuitSource; ``--plots``): the truth
    table is the program's when it equals the circuit on every input (checked exhaustively by distill), else the
    circuit is run again."""
    from jaxscd.kernels.enumerate import precondition_mask, program_decisions
    from jaxscd.kernels.evaluate import evaluate_circuit
    from jaxscd.problem import spec_decisions
    from jaxscd.report.circuit_drawing import checkpoint_svg

    domain, circuit, spec = result.domain, source.circuit, source.spec
    if not domain.exhaustive:  # beyond enumeration: the departures from the spec, exact by orbits, when known
        from jaxscd.report.draw import long_departure_figure

        from jaxscd.report.draw import sampled_departure_figure

        span = f"lengths {domain.min_len}..{domain.max_len}"
        if result.departures:
            return {"departures": long_departure_figure(result.departures, span)}
        sampled = result.sampled_departures
        return {"departures": sampled_departure_figure(sampled, span)} if sampled and sampled["cells"] else {}
    valid = precondition_mask(domain)
    if result.program is not None and result.circuit_program_mismatches == 0:
        decisions, shown = program_decisions(result.program, domain), "the circuit (equal to the program everywhere)"
    else:
        decisions, shown = evaluate_circuit(circuit, domain, valid).decisions, "the circuit, run on every input"
    intended = spec_decisions(spec, domain, valid) if spec is not None else None
    drawing = checkpoint_svg(source.ref, circuit.fingerprint, domain)
    return figures(domain, result.class_names, decisions, valid, source.graph, circuit.name, shown, intended,
                   source.spec_label, (getattr(spec, "program", None), result.program), drawing)


PLOTS = outputs.Output("--plots", "a figure directory of `distill --plots`", "jaxscd_plots.json",
                       lambda data: outputs.files_table(data, "jaxscd_plots.json"),
                       "one `distill --plots` writes (with the sha256 of every figure)")


def write_figures(named: dict, directory) -> list:
    """Each figure as ``directory/NAME.png`` (SVG text as ``NAME.svg``), with the manifest ``jaxscd_plots.json``,
    written as one directory atomically: into a new or empty directory, or over one --plots wrote
    (``jaxscd.outputs``); the paths written."""
    from jaxscd.report.draw import png

    files = dict((f"{name}.svg", figure.encode()) if isinstance(figure, str) else (f"{name}.png", png(figure))
                 for name, figure in named.items())
    manifest = json.dumps({"files": outputs.hashes(files)}, indent=1, sort_keys=True) + "\n"
    directory = outputs.write_output_dir(directory, PLOTS, files | {PLOTS.manifest: manifest.encode()})
    return [directory / name for name in files]


def report_context(bundle_dir, circuit_target: str | None = None) -> dict:
    """Everything the template shows, read from the bundle (BundleError when it is not a readable bundle)."""
    from jaxscd.verify.certificate import read_certificate

    bundle = Path(bundle_dir)
    typed = read_certificate(bundle)
    try:
        return _context(bundle, typed, circuit_target)
    except BundleError:
        raise
    except (KeyError, TypeError, AttributeError, IndexError, ValueError, DomainError) as err:
        raise BundleError(f"malformed bundle ({type(err).__name__}: {err}); re-create it with jaxscd distill --out") \
            from None


def _sampled_lines(sampled: dict) -> list[str]:
    """Readable lines of ``sampled_departures``: the departing share at each sampled length."""
    cells = [c for c in sampled["cells"] if isinstance(c, list) and len(c) == 4 and c[1]]
    lines = [f"departures from {sampled.get('spec', 'the spec')} among uniform random sequences (an estimate, not a "
             f"bound; no bounds cover this circuit at these lengths):"]
    return lines + [f"length {n}: {d:,} of {v:,} sampled sequences depart" for n, v, d, _ in cells[:24]]


def _long_context(bundle: Path, cert: dict, domain: Domain, classes: list, rebuilt: Rebuilt) -> dict:
    """A long-context bundle (``jaxscd.long_context``): no truth table to draw (beyond enumeration); the strategy,
    the symmetry claim, the candidates and the dilution map (exact counts by orbits) from the certificate."""
    from jaxscd.beyond.departures import departure_lines
    from jaxscd.report.draw import circuit_diagram, long_departure_figure, sampled_departure_figure, svg

    run = cert.get("run") if isinstance(cert.get("run"), dict) else {}
    long = cert.get("long_context") if isinstance(cert.get("long_context"), dict) else {}
    title = str(cert["circuit"]["source"].get("name") or "circuit")
    drawn = {"circuit": circuit_diagram(rebuilt.graph, title)}
    departures = run.get("spec_departures") or run.get("departures")  # "departures": bundles before one result type
    departures = departures if isinstance(departures, dict) else None
    sampled = run.get("sampled_departures") if isinstance(run.get("sampled_departures"), dict) else None
    if departures:
        drawn["departures"] = long_departure_figure(departures, f"lengths {domain.min_len}..{domain.max_len}")
    elif sampled and isinstance(sampled.get("cells"), list) and sampled["cells"]:
        drawn["departures"] = sampled_departure_figure(sampled, f"lengths {domain.min_len}..{domain.max_len}")
    symmetry = long.get("symmetry") if isinstance(long.get("symmetry"), dict) else None
    return {
        "long": long, "beyond": True, "symmetry": symmetry,
        "candidates": run.get("tried") or (run["candidates"] if isinstance(run.get("candidates"), list) else []),
        "departure_lines": [line.removeprefix("spec").strip() for line in departure_lines(departures, classes)]
        if departures else _sampled_lines(sampled) if drawn.get("departures") is not None else [],
        "figures": {name: svg(figure) for name, figure in drawn.items()},
        "figure_captions": {"circuit": GRAPH_CAPTION,
                            "departures": "Where the circuit departs from the task's intended behaviour, per length "
                                          "and statistic value: exact counts over every sequence, by orbits."
                                          if departures else "Where the circuit departs from its intended behaviour, "
                                          "per length, among uniform random sequences: an estimate (no bounds cover "
                                          "this circuit at these lengths)."},
        "timings": _timings(run), "run": run,
    }


def _context(bundle: Path, typed, circuit_target: str | None) -> dict:
    from jaxscd.kernels.enumerate import precondition_mask, program_decisions
    from jaxscd.kernels.evaluate import evaluate_circuit
    from jaxscd.problem import spec_decisions
    from jaxscd.report.draw import svg
    from jaxscd.verify.recheck import describe_domain

    cert = typed.to_json()  # the informational blocks (run, surrogate) as written
    domain, classes, program = typed.domain, list(typed.classes), typed.program
    rebuilt = rebuild_circuit(cert, circuit_target)
    notes = list(rebuilt.notes)
    common = {"cert": cert, "verdict": str(cert.get("verdict")), "domain": domain, "classes": classes,
              "verdict_meaning": VERDICT_MEANING.get(str(cert.get("verdict")), "not a verdict jaxscd writes"),
              "domain_text": "; ".join(describe_domain(typed)), "circuit_source": cert["circuit"]["source"],
              "obligations": [_obligation_row(o) for o in cert.get("obligations", []) if isinstance(o, dict)],
              "program_html": _highlight(_program_text(bundle, cert)), "program_css": _highlight_css(),
              "hashes": _hashes(bundle, cert), "notes": notes, "purity": _purity(typed)}
    if not domain.exhaustive:
        return common | {"title": str(cert["circuit"]["source"].get("name") or "circuit"), "surrogate": None,
                         "proof": None, "spec": None} | _long_context(bundle, cert, domain, classes, rebuilt)
    valid = precondition_mask(domain)
    decisions = intended = None
    source = ""
    if rebuilt.circuit is not None:
        try:
            decisions = evaluate_circuit(rebuilt.circuit, domain, valid).decisions
            source = "the circuit, re-run on every input"
        except CircuitError as err:
            notes.append(f"the circuit did not run on the domain: {err}")
    if decisions is None and program is not None:
        decisions = program_decisions(program, domain)
        source = "the certified program (the certificate claims it equals the circuit on every input)"
    if decisions is not None and rebuilt.spec is not None and source.startswith("the circuit"):
        intended = spec_decisions(rebuilt.spec, domain, valid)
    circuit_source = cert["circuit"]["source"]
    title = str(circuit_source.get("name") or circuit_source.get("target") or circuit_source.get("path") or "circuit")
    spec_program = getattr(rebuilt.spec, "program", None)
    drawing = _checkpoint_drawing(cert, domain, rebuilt, notes)
    drawn = figures(domain, classes, decisions, valid, rebuilt.graph, title, source, intended,
                    rebuilt.spec_label, (spec_program, program), drawing)
    run = cert.get("run") if isinstance(cert.get("run"), dict) else {}
    return common | {
        "title": title, "long": None,
        "surrogate": cert.get("surrogate") if isinstance(cert.get("surrogate"), dict) else None,
        "proof": next((o for o in cert.get("obligations", []) if isinstance(o, dict)
                       and o.get("claim") == "surrogate == program"), None),
        "spec": next((o for o in cert.get("obligations", []) if isinstance(o, dict)
                      and o.get("claim") == "circuit == spec"), None),
        "spec_label": rebuilt.spec_label, "run": run, "timings": _timings(run),
        "exact_html": _highlight(str(run["exact_description"].get("source", "")))
        if isinstance(run.get("exact_description"), dict) else "",
        "figures": {name: svg(figure) for name, figure in drawn.items()},
        "figure_captions": {"circuit": CHECKPOINT_CAPTION if drawing is not None else
                                       GRAPH_CAPTION if rebuilt.graph is not None else NO_GRAPH_CAPTION,
                            "truth_table": f"The truth table, from {source}.",
                            "departures": f"Inputs where the circuit departs from {rebuilt.spec_label}."},
    }


def _checkpoint_drawing(cert: dict, domain: Domain, rebuilt: Rebuilt, notes: list) -> str | None:
    """The SVG of a checkpoint's pruned circuit (``circuit_drawing``) when the bundle's circuit is one and was
    rebuilt unchanged; None otherwise (with a note when drawing it failed)."""
    from jaxscd.report.circuit_drawing import checkpoint_svg

    if rebuilt.circuit is None:
        return None
    try:
        return checkpoint_svg(cert["circuit"]["source"], cert["circuit"]["sha256"], domain)
    except CircuitError as err:
        notes.append(f"the circuit could not be drawn: {err}")
        return None


def _purity(typed) -> dict | None:
    """The purity evidence the certificate records (summary, full seed), or why there is none; None beyond
    enumeration (no truth table)."""
    if not typed.domain.exhaustive:
        return None
    evidence = typed.purity
    if evidence is None:
        return {"summary": "not recorded (a bundle written before purity evidence was recorded)", "seed": None}
    return {"summary": evidence.summary(), "seed": evidence.to_json()["seed"]}


def _obligation_row(o: dict) -> dict:
    """claim, method, verdict and one line of details of an obligation, whatever types its fields hold."""
    def number(key, form):
        value = o.get(key)
        return form.format(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    details = [number("inputs", "{:,} inputs"), number("min_margin", "smallest decision margin {:.4g}"),
               number("float_error_bound", "float error bound {:.3g}"),
               number("mismatches", "differs on {:,} inputs") if o.get("mismatches") else None,
               number("seconds", "{:.3f} s"), str(o["reason"]) if o.get("reason") else None]
    method = str(o.get("method")) + (f" ({o['solver']})" if o.get("solver") else "")
    return {"claim": str(o.get("claim")), "method": method, "verdict": str(o.get("verdict")),
            "details": "; ".join(d for d in details if d)}


def _program_text(bundle: Path, cert: dict) -> str:
    if "program.py" not in cert["files"]:
        return ""
    try:
        return (bundle / "program.py").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return "# program.py is unreadable"


def _highlight(code: str):
    from markupsafe import Markup
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    return Markup(highlight(code, PythonLexer(), HtmlFormatter(cssclass="code"))) if code.strip() else ""


def _highlight_css() -> str:
    from pygments.formatters import HtmlFormatter

    return HtmlFormatter(style="friendly").get_style_defs(".code")


def _timings(run: dict) -> list:
    timings = run.get("timings") if isinstance(run.get("timings"), dict) else {}
    return [(str(k), float(v)) for k, v in timings.items() if isinstance(v, (int, float))]


def _hashes(bundle: Path, cert: dict) -> list:
    """(file, recorded sha256, whether the file still has it) for every file the certificate lists."""
    rows = []
    for name, digest in sorted(cert["files"].items()):
        try:
            same = sha256_bytes((bundle / name).read_bytes()) == digest
        except OSError:
            same = False
        rows.append((name, digest, same))
    return rows


def render_report(bundle_dir, circuit_target: str | None = None) -> str:
    """The report page of a bundle as HTML text (self-contained: styles and figures inline)."""
    from jinja2 import Environment, PackageLoader, TemplateError, select_autoescape

    env = Environment(loader=PackageLoader("jaxscd.report", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False)
    context = report_context(bundle_dir, circuit_target)
    try:
        return env.get_template("report.html.j2").render(**context)
    except (TemplateError, TypeError, ValueError) as err:  # fields of unexpected types in a forged certificate
        raise BundleError(f"malformed bundle ({type(err).__name__}: {err}); re-create it with jaxscd distill --out") \
            from None


def is_report(head: bytes) -> bool:
    """Whether a file beginning with ``head`` is a page ``write_report`` wrote (its template's first lines)."""
    return head.startswith(b"<!DOCTYPE html>") and b"<title>jaxscd report: " in head


def write_report(bundle_dir, output, circuit_target: str | None = None) -> Path:
    """Render the report and write it to ``output`` atomically (no half-written page). An existing ``output`` is
    replaced only when it is a jaxscd report; a directory, a link or any other file is refused untouched."""
    outputs.check_output_file(output, "-o", "an HTML report jaxscd wrote", is_report)
    html = render_report(bundle_dir, circuit_target)
    outputs.check_output_file(output, "-o", "an HTML report jaxscd wrote", is_report)  # again, after rendering
    return outputs.write_file(output, html)
