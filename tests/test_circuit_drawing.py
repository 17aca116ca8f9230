"""jaxscd.report.circuit_drawing: a pruned checkpoint circuit drawn as SVG in the report page and by distill --plots,
with the nodes and edges prune counts, hostile token names escaped, rendered by headless Chromium."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner
from test_report import _browser

from jaxscd.cli import main as cli

HOSTILE = '<script>alert("x")</script>'
TASK = "quote_close"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A one-layer model trained for a few steps, a circuit of the 4 channels of largest mean magnitude at every
    location prune masks (written by prune's exporter; pruning itself is tested in test_learn), distilled with a
    template and a vocabulary whose names are hostile. Returns (root, kept, edges prune counts, report page)."""
    from jaxscd.circuits.sparse_gpt import load_model
    from jaxscd.learn import data
    from jaxscd.learn.export import save_circuit
    from jaxscd.learn.prune import count_edges, masked_locations, mixture_means, read_training_info
    from jaxscd.learn.train import default_config, train

    root = tmp_path_factory.mktemp("drawing")
    train(TASK, root / "model", default_config(TASK, steps=150, max_len=3, batch_size=32, seed=0), progress=False)
    model = load_model(root / "model")
    means = mixture_means(model.params, model.config, read_training_info(root / "model"), 64, 0)
    kept = {loc: np.sort(np.argsort(-np.abs(means[loc]), kind="stable")[:4]) for loc in masked_locations(model.config)}
    template = data.task_language(TASK, 3).template()
    config = json.loads((root / "model" / "beeg_config.json").read_text())
    files = save_circuit(root / "circuit", config, kept, means, template, {"task": TASK})
    template["alphabet"] = {(HOSTILE if name == "a" else name): token for name, token in template["alphabet"].items()}
    (root / "template.json").write_text(json.dumps(template))
    info = json.loads((root / "model" / "jaxscd_train.json").read_text())
    info["vocabulary"][0] = "<bos></text><img src=x onerror=alert(1)>"  # names read from the model directory too
    (root / "model" / "jaxscd_train.json").write_text(json.dumps(info))
    run = CliRunner().invoke(cli, ["distill", "--circuit-sparsity", str(root / "model"), "--viz", str(files["viz"]),
                                   "--means", str(files["means"]), "--template", str(root / "template.json"),
                                   "--out", str(root / "bundle"), "--plots", str(root / "plots"), "--json"])
    assert run.exit_code in (0, 3), run.output  # PROVED or NO_PROGRAM: a bundle either way
    page = root / "report.html"
    report = CliRunner().invoke(cli, ["report", str(root / "bundle"), "-o", str(page)])
    assert report.exit_code == 0, report.output
    return root, kept, count_edges(model.params, model.config, kept)[0], page.read_text()


def _figure(page: str) -> str:
    return re.search(r'<figure id="fig-circuit">(<svg.*?</svg>)', page, re.S).group(1)


def test_the_report_draws_every_kept_node_and_edge(checkpoint):
    _, kept, edges, page = checkpoint
    svg = _figure(page)
    nodes = re.findall(r'<g class="node" data-location="([^"]+)" data-channel="(\d+)">', svg)
    assert len(nodes) == sum(len(channels) for channels in kept.values()) == len(re.findall(r'class="node"', svg))
    assert sorted(nodes) == sorted((loc, str(c)) for loc, channels in kept.items() for c in channels)
    assert len(re.findall(r'<path class="edge (weight|residual)"', svg)) == edges > 0  # as prune counts them
    assert 'stroke="#2b6cb0"' in svg and 'stroke="#c53030"' in svg  # both signs of weight
    assert f"{len(nodes)} nodes, {edges} edges" in svg
    assert "The pruned circuit, drawn as in Gao et al." in page


def test_hostile_token_names_are_escaped(checkpoint):
    _, _, _, page = checkpoint
    svg = _figure(page)
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in svg  # the alphabet name, in a node's table
    assert "&lt;bos&gt;&lt;/text&gt;&lt;img src=x onerror=alert(1)&gt;" in svg  # the vocabulary name


def test_distill_plots_writes_the_same_drawing(checkpoint):
    root, _, _, page = checkpoint
    plots = root / "plots"
    assert sorted(p.name for p in plots.iterdir()) == ["circuit.svg", "jaxscd_plots.json", "truth_table.png"]
    manifest = json.loads((plots / "jaxscd_plots.json").read_text())
    assert set(manifest["files"]) == {"circuit.svg", "truth_table.png"}
    assert (plots / "circuit.svg").read_text() == _figure(page)  # deterministic: the same bytes twice


def test_chromium_renders_the_drawing(checkpoint, tmp_path):
    root, kept, edges, _ = checkpoint
    dom = _browser(["--dump-dom", (root / "report.html").as_uri()], tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    svg = re.search(r'<figure id="fig-circuit">(<svg.*?</svg>)', dom.stdout, re.S).group(1)  # parsed as SVG
    assert len(re.findall(r'<g class="node"', svg)) == sum(len(channels) for channels in kept.values())
    assert len(re.findall(r'<path class="edge ', svg)) == edges
    assert "<script" not in dom.stdout
