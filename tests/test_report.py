"""jaxscd report: the HTML page (autoescaped, self-contained, rendered by headless Chromium), --plots, the library
API and the README's library example."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from jaxscd.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]
FIGURE_IDS = ("fig-circuit", "fig-truth-table", "fig-departures")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """bracket_depth at its default domain (lengths 1..8): PROVED, and the circuit departs from its spec."""
    from jaxscd import distill, get_task, write_bundle

    task = get_task("bracket_depth")
    result = distill(task.circuit, task.domain(), spec=task.spec)
    out = tmp_path_factory.mktemp("bundles") / "bracket_depth"
    write_bundle(result, out, {"kind": "task", "name": task.name}, task.circuit.fingerprint)
    return out


@pytest.fixture(scope="module")
def page(bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    result = CliRunner().invoke(cli, ["report", str(bundle), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_report_shows_verdict_claims_program_and_every_figure(page):
    html = page.read_text()
    assert 'id="verdict">PROVED<' in html
    assert "def" in html and "program" in html and "tokens.count" in html.replace("</span>", "").replace(
        '<span class="n">', "").replace('<span class="o">', "")
    for claim in ("circuit == surrogate", "surrogate == program", "circuit == program", "circuit == spec"):
        assert claim in html
    for figure in FIGURE_IDS:
        assert re.search(f'<figure id="{figure}"><svg', html), figure
    assert "793</b> of 4,059 inputs differ" in html  # the dilution: bracket_depth departs from depth >= 2
    assert "matches" in html and "CHANGED" not in html


def test_report_shows_the_recorded_purity_evidence(bundle, page):
    recorded = json.loads((bundle / "certificate.json").read_text())["purity"]
    shown = re.search(r'<p class="small" id="purity">(.*?)</p>', page.read_text(), re.S).group(1)
    assert f"seed {recorded['seed'][:8]}" in shown and recorded["seed"] in shown  # short in the line, then in full
    assert "every one of 4,059 inputs" in shown and "batch sizes 1, " in shown


def test_report_is_self_contained(page):
    html = page.read_text()
    assert not re.search(r"<(script|link|img|iframe)\b", html)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert not re.search(r"url\((?!#)", html)  # only references to the page's own SVG definitions


def test_report_escapes_hostile_names(bundle, tmp_path):
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    target = tmp_path / "hostile"
    shutil.copytree(bundle, target)
    cert = json.loads((target / "certificate.json").read_text())
    cert["circuit"]["classes"] = [hostile, "]]"]
    cert["domain"]["precondition_text"] = hostile
    cert["run"]["notes"] = [hostile]
    cert["run"]["spec_patterns"] = [hostile]
    cert["obligations"][0]["reason"] = hostile
    cert["run"]["near_misses"] = [{"program": hostile, "agreement": 0.5, "mismatches": 3, "patterns": [hostile]}]
    (target / "certificate.json").write_text(json.dumps(cert))
    (target / "program.py").write_text(f"# {hostile}\n")  # its hash no longer matches: shown as CHANGED
    from jaxscd.report import render_report

    html = render_report(target)
    assert "<script" not in html and "<img" not in html and "onerror=alert(1)>" not in html
    assert "&lt;script&gt;" in html
    assert "CHANGED" in html


@pytest.mark.parametrize("make, code, words", [
    (lambda p: p / "nowhere", 8, "not found"),
    (lambda p: p, 8, "certificate.json"),
    (lambda p: (p / "certificate.json").write_text("{not json") and p, 7, "not valid JSON"),
])
def test_report_bad_input_is_one_line_and_writes_nothing(tmp_path, make, code, words):
    bundle = make(tmp_path)
    out = tmp_path / "r.html"
    result = CliRunner().invoke(cli, ["report", str(bundle), "-o", str(out)])
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxscd: error:") and words in lines[0]
    assert not out.exists()


def test_distill_plots_writes_the_figures_as_png(tmp_path):
    plots = tmp_path / "plots"
    result = CliRunner().invoke(cli, ["distill", "bracket_depth", "--max-len", "5", "--plots", str(plots), "--json"])
    assert result.exit_code == 0, result.output
    json.loads(result.output)  # --json output stays one object
    assert sorted(p.name for p in plots.iterdir()) == ["circuit.png", "departures.png", "jaxscd_plots.json",
                                                       "truth_table.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in plots.glob("*.png"))
    # a directory --plots wrote is replaced whole
    before = (plots / "jaxscd_plots.json").read_text()
    again = CliRunner().invoke(cli, ["distill", "bracket_depth", "--max-len", "4", "--plots", str(plots)])
    assert again.exit_code == 0, again.output
    assert (plots / "jaxscd_plots.json").read_text() != before and len(list(tmp_path.iterdir())) == 1


# Nothing a user wrote is replaced: report -o replaces only a jaxscd report, --plots only a directory it wrote.

def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("prepare, words", [
    (lambda d: (d / "figures").mkdir() or (d / "figures" / "notes.txt").write_text("mine"),
     "no readable jaxscd_plots.json"),
    (lambda d: (d / "figures").mkdir() or (d / "figures" / "circuit.png").write_bytes(b"\x89PNG mine"),
     "no readable jaxscd_plots.json"),
    (lambda d: (d / "figures").write_text("mine"), "is a file"),
    (lambda d: [(d / "figures").mkdir(), (d / "figures" / "jaxscd_plots.json").write_text('{"files": {}}'),
                (d / "figures" / "circuit.png").write_text("mine")], "does not list (circuit.png)"),
], ids=["user file", "user PNG of a figure's name", "a file", "a manifest that does not list a file"])
def test_plots_refuses_a_directory_it_did_not_write(tmp_path, prepare, words):
    prepare(tmp_path)
    before = _snapshot(tmp_path)
    result = CliRunner().invoke(cli, ["distill", "bracket_depth", "--max-len", "4", "--plots",
                                      str(tmp_path / "figures")])
    assert result.exit_code == 2 and words in result.stderr, result.output  # a file: click's own usage error
    assert len(result.stderr.strip().splitlines()) == 1 or "Usage:" in result.stderr
    assert "verdict" not in result.stdout  # refused before the work
    assert _snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["figures"]


def test_plots_and_out_must_differ(tmp_path):
    result = CliRunner().invoke(cli, ["distill", "bracket_depth", "--max-len", "4", "--out", str(tmp_path / "b"),
                                      "--plots", str(tmp_path / "b")])
    assert result.exit_code == 2 and "is the --out bundle directory" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("prepare, words", [
    (lambda p: p.write_text("<html>my own page</html>"), "is not an HTML report jaxscd wrote, so it is left"),
    (lambda p: p.write_text("<!DOCTYPE html>\n<title>mine</title>"), "is not an HTML report jaxscd wrote"),
    (lambda p: p.mkdir() or (p / "keep.txt").write_text("mine"), "is a directory"),
    (lambda p: p.symlink_to(p.with_name("elsewhere.html")), "exists and is a link, not an HTML report"),
], ids=["html of the user's", "another page", "a directory", "a dangling link"])
def test_report_replaces_only_a_report_it_wrote(bundle, page, tmp_path, prepare, words):
    out = tmp_path / "report.html"
    prepare(out)
    before = _snapshot(tmp_path)
    result = CliRunner().invoke(cli, ["report", str(bundle), "-o", str(out)])
    assert result.exit_code == 2 and words in result.stderr, result.output  # a directory: click's own usage error
    assert len(result.stderr.strip().splitlines()) == 1 or "Usage:" in result.stderr
    assert _snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    shutil.copy(page, tmp_path / "earlier.html")  # a report jaxscd wrote is replaced
    (tmp_path / "earlier.html").write_text((tmp_path / "earlier.html").read_text().replace("PROVED", "FORMER"))
    again = CliRunner().invoke(cli, ["report", str(bundle), "-o", str(tmp_path / "earlier.html")])
    assert again.exit_code == 0 and "FORMER" not in (tmp_path / "earlier.html").read_text()


# --------------------------------------------------------------------------------------------------------------
# Headless Chromium: the page as a reader sees it.


def _chromium() -> str | None:
    return next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)


def _browser(args: list, tmp_path: Path) -> subprocess.CompletedProcess:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}"]
    return subprocess.run([chromium, *flags, *args], capture_output=True, text=True, timeout=120)


def test_chromium_renders_the_report(bundle, page, tmp_path):
    dom = _browser(["--dump-dom", page.as_uri()], tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert re.search(r'id="verdict"[^>]*>PROVED<', dom.stdout)
    text = html.unescape(re.sub(r"<[^>]+>", "", dom.stdout))
    assert (bundle / "program.py").read_text().strip() in text  # the program, as the reader sees it
    for figure in FIGURE_IDS:
        assert re.search(f'<figure id="{figure}"><svg', dom.stdout), figure
    shot = tmp_path / "report.png"
    run = _browser([f"--screenshot={shot}", "--window-size=1200,3200", page.as_uri()], tmp_path)
    assert shot.is_file(), run.stderr[-2000:]
    import matplotlib.image

    pixels = (matplotlib.image.imread(shot)[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    colours = np.unique(pixels, axis=0)
    assert len(colours) > 200, f"{len(colours)} colours: the screenshot looks blank"
    assert (pixels.min(1) < 128).mean() > 0.01  # some dark ink: text and figures, not an empty page


# --------------------------------------------------------------------------------------------------------------
# The library API.


def test_import_stays_cheap_and_exports_the_entry_points():
    code = ("import sys, jaxscd; heavy = [m for m in ('z3', 'flax', 'scipy', 'matplotlib') if m in sys.modules]; "
            "assert not heavy, heavy; print(sorted(n for n in jaxscd.__all__ if not n.startswith('_')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    import jaxscd

    for name in ("distill", "DistillConfig", "Domain", "get_task", "task_names", "load_callable", "load_graph",
                 "recheck", "Verdict", "write_bundle", "render_report"):
        assert name in out.stdout and getattr(jaxscd, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        jaxscd.nope


def test_readme_library_example_runs(capsys):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### As a library"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 6  # import + four lines (one blank line between)
    exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out.startswith("PROVED def program(tokens):")


def test_no_program_report_lists_near_misses_and_reruns_python_only_when_passed(tmp_path):
    (tmp_path / "pal.py").write_text(
        "import numpy as np\nALPHABET = ('a', 'b')\nLENGTHS = (1, 4)\n"
        "def palindrome(tokens):\n    t = np.asarray(tokens)\n    return (t == t[:, ::-1]).all(axis=1).astype(int)\n")
    bundle = tmp_path / "B"
    run = CliRunner().invoke(cli, ["distill", "--circuit", f"{tmp_path}/pal.py:palindrome", "--synth-states", "2",
                                   "--no-learn", "--out", str(bundle), "--json"])
    assert run.exit_code == 3, run.output
    from jaxscd.report import render_report

    alone = render_report(bundle)  # the bundle alone: a Python circuit is never imported
    assert 'id="verdict">NO_PROGRAM<' in alone and 'id="near-misses"' in alone
    assert "pass --circuit FILE.py:FN" in alone and 'id="fig-truth-table"' not in alone
    rerun = render_report(bundle, f"{tmp_path}/pal.py:palindrome")
    assert re.search('<figure id="fig-truth-table"><svg', rerun)


def test_long_context_bundle_has_a_report_with_the_dilution_map(tmp_path):
    """A bundle proved beyond enumeration (orbits): the page shows the symmetry claim, the candidates and the
    dilution map from the certificate, without re-running the circuit on 1e19 inputs."""
    from click.testing import CliRunner

    from jaxscd.cli import main
    from jaxscd.report import render_report

    bundle = tmp_path / "long"
    run = CliRunner().invoke(main, ["distill", "bracket_depth", "--max-len", "24", "--out", str(bundle)])
    assert run.exit_code == 0, run.output
    page = render_report(bundle)
    assert 'id="verdict">PROVED' in page and 'id="symmetry"' in page and "counts+last-token" in page
    assert 'id="fig-departures"' in page and "<svg" in page and "lengths 8..24" in page
    assert 'id="candidates"' in page and "refuted" in page
