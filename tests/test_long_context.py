"""Long contexts: bounds on the circuit agree with exhaustion where both run, a circuit that fails only from
length 20 on is proved at 16 and refuted at 24, and verify re-derives (and rejects tampered) long bundles."""

from __future__ import annotations

import dataclasses
import itertools
import json
from fractions import Fraction

import numpy as np
import pytest

from jaxscd.circuits.base import sha256_bytes
from jaxscd.circuits.reference import B_ONE, ONE, as_circuit, bracket_depth_circuit, quote_close_circuit
from jaxscd.dsl.programs import CountThreshold, DensityThreshold, MostRecent
from jaxscd.beyond import bounds
from jaxscd.beyond.exact import ExactCircuit, exp_interval
from jaxscd.beyond.symmetry import count_symmetry, orbits
from jaxscd.circuits.sources import as_source
from jaxscd.pipeline import DistillConfig, distill
from jaxscd.tasks import Task, get_task
from jaxscd.verify.certificate import write_bundle
from jaxscd.verify.prove import Verdict
from jaxscd.verify.recheck import recheck

CONFIG = DistillConfig(synth_states=0)
QUOTE_PRE = CountThreshold({2, 3}, set(), 1)


def distill_long(task, max_len: int):
    """distill on lengths 1..max_len, proved beyond enumeration whatever the size."""
    return distill(task, as_source(task).domain(1, max_len, exhaustive=False), CONFIG)


def _refutation(result) -> dict:
    return next(t for t in result.tried if t["outcome"] == "refuted")


def _with_readout_bias(model, bias: float, channel: int):
    readout = model.readout.copy()
    readout[channel, 1] += bias
    return dataclasses.replace(model, readout=readout)


def weak_recency_circuit():
    """quote_close whose quote detector (76) no longer outweighs 19 later non-quotes (recency 4 each), with a bias
    of 1 towards "'": from length 20 on, '"' then 19 non-quotes decides "'" (a diluted head)."""
    return _with_readout_bias(quote_close_circuit(128, key_gain=76 / 128), 1.0, ONE)


def _truth(model, n_tokens: int, length: int):
    tokens = np.array(list(itertools.product(range(n_tokens), repeat=length)), dtype=np.int32)
    logits = np.asarray(model(tokens))
    return tokens.tolist(), (logits[:, 1] > logits[:, 0]).astype(int)


def _leaf(node, sequence):
    while isinstance(node, list):
        node = node[2] if sequence[node[0]] in node[1] else node[3]
    return node


QUOTE_MODELS = {"quote_close": quote_close_circuit(128), "weak": weak_recency_circuit(),
                "diluted": _with_readout_bias(quote_close_circuit(128, key_gain=10 / 128), 1.0, ONE)}  # flips from 4


@pytest.mark.parametrize("name", sorted(QUOTE_MODELS))
def test_cube_tree_agrees_with_exhaustion(name):
    model = QUOTE_MODELS[name]
    built = bounds.build_cube_tree(bounds.token_tables(model, 6), range(1, 7), QUOTE_PRE)
    assert not built.undecided
    for length in range(1, 7):
        for sequence, decision in zip(*_truth(model, 4, length)):
            leaf = _leaf(built.trees[length], sequence)
            assert leaf == decision if leaf is not None else not ({2, 3} & set(sequence)), (name, sequence)


BRACKET_MODELS = {"bracket_depth": bracket_depth_circuit(128), "nudged": bracket_depth_circuit(128, threshold=0.3),
                  "biased": _with_readout_bias(bracket_depth_circuit(128), 0.5, B_ONE)}


@pytest.mark.parametrize("name", sorted(BRACKET_MODELS))
def test_orbits_agree_with_exhaustion(name):
    model = BRACKET_MODELS[name]
    assert count_symmetry(model, 8) is not None
    tables = bounds.token_tables(model, 8)
    for length in range(1, 8):
        orb = orbits(3, range(length, length + 1))
        classes = bounds.orbit_classes(tables, orb)
        table = {(tuple(orb.counts[i]), int(orb.last[i])): int(classes[i]) for i in range(len(orb))}
        for sequence, decision in zip(*_truth(model, 3, length)):
            assert table[tuple(np.bincount(sequence, minlength=3)), sequence[-1]] == decision, (name, sequence)


def test_no_symmetry_with_positions_or_for_callables():
    assert count_symmetry(quote_close_circuit(128), 8) is None
    assert count_symmetry(lambda tokens: tokens, 8) is None
    moved = bracket_depth_circuit(128)
    pos = moved.pos.copy()
    pos[40, 0] = 1e-300  # one entry past the short lengths
    assert count_symmetry(dataclasses.replace(moved, pos=pos), 32) is not None
    assert count_symmetry(dataclasses.replace(moved, pos=pos), 64) is None


def _weak_task() -> Task:
    quote = get_task("quote_close")
    return Task("weak_quote", "quote_close with a weak quote detector", as_circuit("weak_quote", weak_recency_circuit(),
                quote.circuit.class_names), quote.alphabet, 1, 6, 128, quote.spec, QUOTE_PRE, "at least one quote")


def test_weak_recency_is_proved_at_16_and_refuted_from_20():
    task = _weak_task()
    proved = distill_long(task, 16)
    assert proved.verdict == Verdict.PROVED and proved.program == MostRecent({2}, {3}, 0)
    refuted = distill_long(task, 24)
    assert refuted.verdict == Verdict.REFUTED
    cex = _refutation(refuted)
    assert cex["length"] >= 20 and cex["circuit"] != cex["program_class"] and cex["circuit_margin"] > \
        refuted.margin_bound
    logits = np.asarray(task.circuit.forward(np.array([cex["tokens"]], dtype=np.int32)))[0]
    assert int(logits[1] > logits[0]) == cex["circuit"] == 1


def test_bracket_depth_density_threshold_refit_at_length():
    task = get_task("bracket_depth")
    result = distill_long(task, 40)
    assert result.verdict == Verdict.PROVED and result.proof.method == "orbit bounds"
    assert result.proof.record["symmetry"]["symmetry"] == "counts+last-token"
    assert _refutation(result)["length"] >= 9  # the short-domain 2/7 is diluted past length 8
    assert isinstance(result.program, DensityThreshold) and result.program != DensityThreshold({0}, {1}, 2, 7)


def test_tie_orbits_leave_unknown():
    """At length 100 a density of exactly 27/100 meets a threshold of 0.27: its float decision is not fixed by the
    weights, so no verdict beyond UNKNOWN (the built-in circuit's threshold sits between such densities)."""
    tables = bounds.token_tables(bracket_depth_circuit(128, threshold=0.27), 100)
    orb = orbits(3, range(100, 101))
    classes = bounds.orbit_classes(tables, orb)
    tie = (orb.counts[:, 0] - orb.counts[:, 1]) * 100 == 27 * 100
    assert (classes[tie] == -1).all() and (classes[~tie] >= 0).all()


def test_exp_interval_brackets_exp():
    for y in (Fraction(0), Fraction(-1, 3), Fraction(-7), Fraction(-1000), Fraction(-12345, 7)):
        low, high = exp_interval(y)
        assert low <= high and (high - low) <= high * Fraction(1, 2**64)
        if y > -700:
            assert float(low) <= np.exp(float(y)) * (1 + 1e-15) and np.exp(float(y)) <= float(high) * (1 + 1e-15)


def test_exact_recheck_matches_float_bounds_on_leaves():
    model = quote_close_circuit(128)
    built = bounds.build_cube_tree(bounds.token_tables(model, 5), range(1, 6), QUOTE_PRE)
    exact = ExactCircuit(model, 5)
    margin = Fraction(bounds.token_tables(model, 5).margin)

    def walk(node, n, allowed):
        if isinstance(node, list):
            i, group = node[0], set(node[1])
            walk(node[2], n, allowed[:i] + [group] + allowed[i + 1:])
            walk(node[3], n, allowed[:i] + [allowed[i] - group] + allowed[i + 1:])
        elif node is not None:
            assert exact.cube_class(n, allowed, margin) == node

    for n, root in built.trees.items():
        walk(root, n, [set(range(4)) for _ in range(n)])


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    out = {}
    for name, max_len in (("quote_close", 12), ("bracket_depth", 20)):
        task = get_task(name)
        result = distill_long(task, max_len)
        assert result.verdict == Verdict.PROVED
        path = tmp_path_factory.mktemp(name) / "bundle"
        write_bundle(result, path, {"kind": "task", "name": name}, task.circuit.fingerprint)
        out[name] = path
    return out


def _copy(bundle, tmp_path):
    import shutil

    target = tmp_path / "copy"
    shutil.copytree(bundle, target)
    return target


def _failed(report) -> list:
    return [name for name, status, _ in report.checks if status == "FAILED"]


def test_long_bundles_verify(bundles):
    for path in bundles.values():
        report = recheck(path)
        assert report.verified, _failed(report)


def _flip_first_leaf(node) -> bool:
    for k in (2, 3):
        if isinstance(node[k], list):
            if _flip_first_leaf(node[k]):
                return True
        elif node[k] is not None:
            node[k] = 1 - node[k]
            return True
    return False


def test_tampered_cube_tree_is_rejected(bundles, tmp_path):
    bundle = _copy(bundles["quote_close"], tmp_path)
    trees = json.loads((bundle / "tree.json").read_text())
    assert _flip_first_leaf(trees["7"])
    (bundle / "tree.json").write_text(json.dumps(trees))
    cert = json.loads((bundle / "certificate.json").read_text())
    cert["files"]["tree.json"] = sha256_bytes((bundle / "tree.json").read_bytes())
    (bundle / "certificate.json").write_text(json.dumps(cert))
    assert "every leaf's class re-derived by exact bounds" in _failed(recheck(bundle))


@pytest.mark.parametrize("edit, check", [
    (lambda c: c["long_context"].update(symmetry=None), "symmetry counts+last-token from the circuit's arrays"),
    (lambda c: c.update(program={"motif": "DensityThreshold", "plus": [0], "minus": [1], "num": 2, "den": 7}),
     "program == circuit on every orbit"),
    (lambda c: c["long_context"].update(float_margin=1e-12), "float margin at least 1e-9"),
])
def test_tampered_orbit_claims_are_rejected(bundles, tmp_path, edit, check):
    bundle = _copy(bundles["bracket_depth"], tmp_path)
    cert = json.loads((bundle / "certificate.json").read_text())
    edit(cert)
    (bundle / "certificate.json").write_text(json.dumps(cert))
    assert check in _failed(recheck(bundle))


def test_symmetry_claim_on_a_positional_circuit_is_rejected(bundles, tmp_path):
    """An orbit certificate forged for quote_close (whose positional embedding is not 0) fails the symmetry; the
    bracket_depth orbit certificate pointed at quote_close fails on the names before its circuit is re-run."""
    bundle = _copy(bundles["quote_close"], tmp_path)
    orbit = json.loads((bundles["bracket_depth"] / "certificate.json").read_text())
    cert = json.loads((bundle / "certificate.json").read_text())
    cert["obligations"][0]["method"] = "orbit bounds"
    cert["long_context"].update(strategy="orbits", symmetry=orbit["long_context"]["symmetry"])
    (bundle / "certificate.json").write_text(json.dumps(cert))
    assert "symmetry counts+last-token from the circuit's arrays" in _failed(recheck(bundle))
    bundle = _copy(bundles["bracket_depth"], tmp_path / "other")
    quote = get_task("quote_close")
    orbit["circuit"] = {"source": {"kind": "task", "name": "quote_close"}, "sha256": quote.circuit.fingerprint,
                        "classes": list(quote.circuit.class_names)}
    (bundle / "certificate.json").write_text(json.dumps(orbit))
    failed = _failed(recheck(bundle))
    assert "alphabet is the circuit's" in failed and "obligation circuit == program (orbit bounds) re-checked" in failed


def test_cli_long_context_json_and_bad_length():
    from click.testing import CliRunner

    from jaxscd.cli import main

    result = CliRunner().invoke(main, ["distill", "bracket_depth", "--max-len", "30", "--json"])
    summary = json.loads(result.output)
    assert result.exit_code == 0 and summary["verdict"] == "PROVED"
    assert summary["proof"]["method"] == "orbit bounds" and summary["proof"]["symmetry"]["symmetry"] == \
        "counts+last-token" and summary["proof"]["orbits"] > 0
    result = CliRunner().invoke(main, ["distill", "quote_close", "--max-len", "200", "--json"])
    assert result.exit_code == 2 and "exceeds the 128 positions" in result.output


def test_spec_departures_by_orbits_equal_the_exhaustive_count():
    """The dilution map from orbits (exact multinomial counts) equals exhaustion on the default domain: 793
    departures, 784 of them at depth 2 and length 8."""
    from jaxscd.beyond.departures import spec_departures
    from jaxscd.beyond.symmetry import program_on_orbits

    task = get_task("bracket_depth")
    orb = orbits(3, range(1, 9))
    classes = bounds.orbit_classes(bounds.token_tables(task.circuit.forward, 8), orb)
    valid = program_on_orbits(task.precondition, orb).astype(bool)
    found = spec_departures(task.spec.program, orb, classes, valid, task.domain())
    cells = {(value, length): (total, wrong) for value, length, total, wrong, _ in found["cells"]}
    assert sum(wrong for _, wrong in cells.values()) == 793 and cells[(2, 8)][1] == 784
    assert sum(total for total, _ in cells.values()) == 4059  # every valid input of the domain


def test_long_cli_reports_departures_and_writes_the_dilution_map(tmp_path):
    from click.testing import CliRunner

    from jaxscd.cli import main

    run = CliRunner().invoke(main, ["distill", "bracket_depth", "--max-len", "20", "--json", "--plots",
                                    str(tmp_path / "plots")])
    summary = json.loads(run.output)
    assert summary["verdict"] == "PROVED" and summary["proof"]["method"] == "orbit bounds"
    departing = {(v, n) for v, n, _, wrong, _ in summary["spec_departures"]["cells"] if wrong}
    assert (2, 20) in departing and (2, 7) not in departing  # depth 2 is diluted from length 8 on
    assert (tmp_path / "plots" / "departures.png").stat().st_size > 10_000


# ------------------------------------------------------------------------------------------------------------
# JSON graphs of the one-layer shape: the same bounds, the same strategies


def _graph_file(tmp_path, model, name: str):
    from jaxscd.circuits.graph import export_graph

    quote = get_task("quote_close")
    graph = export_graph(model, quote.alphabet, quote.circuit.class_names, name=name, lengths=(1, 6),
                         precondition=QUOTE_PRE, precondition_text="at least one quote")
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(graph))
    return path


def test_graph_beyond_enumeration_proved_below_its_break_and_refuted_above(tmp_path):
    """A one-layer JSON graph whose quote detector is diluted from length 20 on: PROVED at 16, REFUTED at 24 with a
    counterexample the graph circuit itself gives; the bundle verifies from the graph file."""
    from jaxscd.circuits.sources import resolve

    path = _graph_file(tmp_path, weak_recency_circuit(), "weak_graph")
    source = resolve({"kind": "graph", "path": str(path)})
    proved = distill(source, source.domain(1, 16, exhaustive=False), CONFIG)
    assert proved.verdict == Verdict.PROVED and proved.proof.method == "cube bounds + smt-tree"
    write_bundle(proved, tmp_path / "bundle", source.ref, source.circuit.fingerprint)
    assert recheck(tmp_path / "bundle").verified
    refuted = distill(source, source.domain(1, 24, exhaustive=False), CONFIG)
    cex = _refutation(refuted)
    assert refuted.verdict == Verdict.REFUTED and cex["length"] >= 20
    logits = np.asarray(source.circuit.forward(np.array([cex["tokens"]], dtype=np.int32)))[0]
    assert int(logits[1] > logits[0]) == cex["circuit"] != cex["program_class"]


def test_cli_graph_at_length_and_graphs_of_other_shapes(tmp_path):
    from click.testing import CliRunner

    from jaxscd.cli import main

    path = tmp_path / "depth_graph.json"
    CliRunner().invoke(main, ["export-graph", "bracket_depth", "-o", str(path)])
    run = CliRunner().invoke(main, ["distill", "--graph", str(path), "--max-len", "40", "--json"])
    assert run.exit_code == 0 and json.loads(run.stdout)["proof"]["method"] == "orbit bounds", run.output
    deep = tmp_path / "deep.json"
    run = CliRunner().invoke(main, ["export-graph", "for_while", "-o", str(deep)])  # two heads in a row
    run = CliRunner().invoke(main, ["distill", "--graph", str(deep), "--max-len", "16", "--json"])
    payload = json.loads(run.stdout)  # beyond enumeration either way: an answer, not a refusal
    assert payload["verdict"] in ("PROVED", "REFUTED", "UNKNOWN"), run.output
    if payload["verdict"] == "PROVED":
        assert payload["proof"]["method"] == "cube bounds + smt-tree"
    else:
        assert any("not refuted" in note or "bounds" in note for note in payload["notes"])


def test_long_bundles_of_a_callable_and_a_graph_bind_their_circuit_files(tmp_path):
    """A callable holding a reference circuit and a one-layer graph, proved at length: each bundle verifies from
    its circuit file, and fails once the file changes (an edited callable, a nudged graph weight)."""
    from click.testing import CliRunner

    from jaxscd.cli import main

    code = tmp_path / "depth.py"
    code.write_text("from jaxscd.circuits.reference import bracket_depth_circuit\nALPHABET = ('[', ']', 'a')\n"
                    "LENGTHS = (1, 4)\nf = bracket_depth_circuit()\n")
    graph = tmp_path / "depth_graph.json"
    CliRunner().invoke(main, ["export-graph", "bracket_depth", "-o", str(graph)])
    for source, circuit in ((["--circuit", f"{code}:f"], ["--circuit", f"{code}:f"]), (["--graph", str(graph)], [])):
        bundle = tmp_path / f"bundle_{len(circuit)}"
        run = CliRunner().invoke(main, ["distill", *source, "--max-len", "24", "--out", str(bundle), "--json"])
        assert run.exit_code == 0 and json.loads(run.stdout)["proof"]["method"] == "orbit bounds", run.output
        assert CliRunner().invoke(main, ["verify", str(bundle), *circuit]).exit_code == 0
    code.write_text(code.read_text() + "# edited\n")
    assert CliRunner().invoke(main, ["verify", str(tmp_path / "bundle_2"), "--circuit", f"{code}:f"]).exit_code != 0
    data = json.loads(graph.read_text())
    data["readout"]["weights"] = {k: [w[0], w[1] + 1e-6] for k, w in data["readout"]["weights"].items()}
    graph.write_text(json.dumps(data))
    assert CliRunner().invoke(main, ["verify", str(tmp_path / "bundle_0")]).exit_code != 0
