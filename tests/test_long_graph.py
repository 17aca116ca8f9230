"""Multi-layer JSON circuit graphs beyond enumeration (``jaxscd.beyond.graph_bounds``, ``graph_exact``): the cube
bounds contain the float64 forward on every short sequence of every cube, for hand-written graphs and nudged
mutants; a two-layer graph is proved at length 20 from the CLI and verified (and a tampered bundle is not); a graph
exact up to length 20 is proved there and refuted at 24 by a longer counterexample."""

from __future__ import annotations

import itertools
import json
import math
from fractions import Fraction

import numpy as np
import pytest
from click.testing import CliRunner

from bundles import copy_bundle, failed_checks, rehash
from test_long_context import _flip_first_leaf

from jaxscd.beyond import GraphModel, ReferenceModel, model_of
from jaxscd.circuits.graph import read_graph
from jaxscd.cli import main
from jaxscd.verify.recheck import recheck

LEAF_CHECK = "every leaf's class re-derived by exact bounds"


def _head(name, query, w_q, w_k, w_v, w_o, d_head=1):
    return {"name": name, "query": query, "d_head": d_head, "d_value": 1, "w_q": w_q, "w_k": w_k, "w_v": w_v,
            "w_o": w_o}


def contains_graph(gain=30.0, gain2=20.0, bias=0.5) -> dict:
    """Class 1 iff the sequence contains b: layer 0 an "all" head puts a b detector at every position, layer 1 a
    "last" head reads the detector where it is strongest. No positional embedding, any length."""
    return {"schema": "jaxscd.circuit_graph", "version": 1, "name": "contains_b",
            "vocab": ["a", "b", "c"], "channels": ["one", "is_b", "has_b", "out"], "max_positions": None,
            "embed": {"a": {"one": 1}, "b": {"one": 1, "is_b": 1}, "c": {"one": 1}},
            "layers": [{"heads": [_head("detect", "all", {"one": [gain]}, {"is_b": [1]}, {"is_b": [1]},
                                        {"has_b": [1]})]},
                       {"heads": [_head("read", "last", {"one": [gain2]}, {"has_b": [1]}, {"has_b": [1]},
                                        {"out": [1]})]}],
            "readout": {"classes": ["no", "yes"], "weights": {"out": [0, 1], "one": [bias, 0]}},
            "domain": {"min_len": 1, "max_len": 5}}


def first_graph(gain=30.0, gain2=30.0, bias=0.5, positions=64) -> dict:
    """Class 1 iff the first token is a: layer 0 an "all" head copies is_a from position 0 (pos_embed "first"),
    layer 1 a "last" head reads the latest position (pos_embed "pos"). Weight e^gain on position 0 against 1 on
    each later one: exact while length - 1 < e^gain."""
    return {"schema": "jaxscd.circuit_graph", "version": 1, "name": "first_a",
            "vocab": ["a", "b", "c"], "channels": ["one", "is_a", "first", "pos", "fa", "out"],
            "max_positions": positions,
            "embed": {"a": {"one": 1, "is_a": 1}, "b": {"one": 1}, "c": {"one": 1}},
            "pos_embed": {"first": [1] + [0] * (positions - 1), "pos": list(range(positions))},
            "layers": [{"heads": [_head("copy_first", "all", {"one": [gain]}, {"first": [1]}, {"is_a": [1]},
                                        {"fa": [1]})]},
                       {"heads": [_head("latest", "last", {"one": [gain2]}, {"pos": [1]}, {"fa": [1]},
                                        {"out": [1]})]}],
            "readout": {"classes": ["other", "a_first"], "weights": {"out": [0, 1], "one": [bias, 0]}},
            "domain": {"min_len": 1, "max_len": 5}}


def mixed_graph() -> dict:
    """Three layers: a uniform "all" head (the fraction of b), a relu MLP, an "all" head of two query dims, then
    a "last" head; the readout also reads the last token."""
    return {"schema": "jaxscd.circuit_graph", "version": 1, "name": "mixed",
            "vocab": ["a", "b", "c"], "channels": ["one", "is_a", "is_b", "frac_b", "hot", "mix", "out"],
            "max_positions": None,
            "embed": {"a": {"one": 1, "is_a": 1}, "b": {"one": 1, "is_b": 1}, "c": {"one": 1}},
            "layers": [
                {"heads": [_head("mean_b", "all", {"one": [0]}, {"one": [1]}, {"is_b": [1]}, {"frac_b": [1]})],
                 "mlp": {"neurons": [{"in": {"frac_b": 4, "is_a": 1}, "bias": -1.5, "out": {"hot": 1}}]}},
                {"heads": [_head("spread", "all", {"one": [3, 1], "is_a": [1, 0]}, {"hot": [1, 0], "is_b": [0, 2]},
                                 {"hot": [1], "is_a": [0.5]}, {"mix": [1]}, d_head=2)]},
                {"heads": [_head("read", "last", {"one": [2]}, {"mix": [1]}, {"mix": [1]}, {"out": [1]})]}],
            "readout": {"classes": ["lo", "hi"], "weights": {"out": [0, 1], "one": [0.3, 0], "is_b": [0, 0.2]}},
            "domain": {"min_len": 1, "max_len": 5}}


def mutant(data: dict, seed: int, scale: float = 0.3) -> dict:
    """Every head, MLP and readout weight nudged, on every channel (dense): a few decisions flip."""
    rng = np.random.default_rng(seed)
    graph = read_graph(data)
    out = graph.to_json()

    def nudge(mat):
        return (mat + scale * rng.normal(size=mat.shape) * np.sqrt(1 + np.abs(mat))).tolist()

    for layer, entry in zip(graph.layers, out["layers"]):
        for head, written in zip(layer.heads, entry.get("heads", [])):
            written.update(w_q=nudge(head.w_q), w_k=nudge(head.w_k), w_v=nudge(head.w_v), w_o=nudge(head.w_o.T))
        if layer.mlp is not None:
            w_in = nudge(layer.mlp.w_in)
            for k, neuron in enumerate(entry["mlp"]["neurons"]):
                neuron.update({"in": [row[k] for row in w_in], "bias": neuron["bias"] + scale * rng.normal()})
    out["readout"]["weights"] = nudge(graph.readout)
    out["name"] += f"_m{seed}"
    return out


BASES = {"contains": contains_graph(), "first": first_graph(), "mixed": mixed_graph()}
SOFT = {"contains": contains_graph(3.0, 3.0), "first": first_graph(3.0, 5.0), "mixed": mixed_graph()}
GRAPHS = dict(BASES) | {f"{name}_m{seed}": (name, seed) for name in SOFT for seed in (0, 1)}


def _graph(name):
    spec = GRAPHS[name]
    return read_graph(spec if isinstance(spec, dict) else mutant(SOFT[spec[0]], spec[1]))


def _leaves(node, n, allowed):
    if isinstance(node, list):
        i, group = node[0], set(node[1])
        yield from _leaves(node[2], n, allowed[:i] + [group] + allowed[i + 1:])
        yield from _leaves(node[3], n, allowed[:i] + [allowed[i] - group] + allowed[i + 1:])
    elif node is not None:
        yield allowed, node


def _forward(graph, n):
    tokens = np.array(list(itertools.product(range(3), repeat=n)), dtype=np.int32)
    logits = np.asarray(graph(tokens))
    return {tuple(t): (int(l1 > l0), float(l1 - l0)) for t, (l0, l1) in zip(tokens.tolist(), logits)}


def test_model_of_graphs():
    assert isinstance(model_of(read_graph(first_graph()).circuit()), GraphModel)
    model = model_of(read_graph(first_graph(positions=40)).circuit())
    assert model.symmetry(8) is None and model.refusal(40) is None and "40 positions" in model.refusal(41)
    assert model_of(read_graph(contains_graph()).circuit()).refusal(10_000) is None
    one_layer = {**contains_graph(), "layers": contains_graph()["layers"][1:]}  # one "last" head: exact bounds
    assert isinstance(model_of(read_graph(one_layer).circuit()), ReferenceModel)


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_cube_bounds_contain_the_forward(name):
    """Every leaf of the tree (lengths 1..6 over 3 tokens) the float bounds decide holds on every sequence of its
    cube, with the float64 forward's gap above the margin; arb decides the same class; and on random cubes both
    decision intervals contain the forward's logit difference."""
    graph = _graph(name)
    model = model_of(graph.circuit())
    max_len = 6 if not name.startswith("mixed") else 5
    tables, exact = model.float_tables(max_len), model.exact(max_len)
    tree = model.cube_tree(tables, range(1, max_len + 1))
    margin = max(Fraction(tables.margin), exact.margin)
    rng = np.random.default_rng(0)
    flips, decided = 0, 0
    for n in range(1, max_len + 1):
        truth = _forward(graph, n)
        if "_m" in name:
            base = _forward(read_graph(SOFT[name.split("_")[0]]), n)
            flips += sum(base[s][0] != truth[s][0] for s in truth)
        for allowed, cls in _leaves(tree.trees[n], n, [set(range(3)) for _ in range(n)]):
            for sequence in itertools.product(*map(sorted, allowed)):
                decision, gap = truth[sequence]
                assert decision == cls and abs(gap) > tables.margin, (name, sequence, cls, gap)
                decided += 1
            assert exact.cube_class(n, allowed, margin) == cls, (name, n, allowed)
        for _ in range(6):  # random cubes, decided or not: the intervals contain the forward
            allowed = rng.random((n, 3)) < 0.6
            allowed[np.arange(n), rng.integers(0, 3, n)] = True
            ev = tables.evaluate(n, allowed)
            balls = exact.decision_bounds(n, [set(np.flatnonzero(row).tolist()) for row in allowed])
            for sequence in itertools.product(*[np.flatnonzero(row).tolist() for row in allowed]):
                d = truth[sequence][1]
                last = sequence[-1]
                assert ev.d_lo[last] <= d <= ev.d_hi[last], (name, sequence)
                assert float(balls[last][0].lower()) <= d <= float(balls[last][1].upper()), (name, sequence)
    assert decided > 0
    if "_m" in name:
        assert flips > 0  # the mutant decides some inputs otherwise than its base


def _write(tmp_path, data, name):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def _distill(path, max_len, out=None):
    args = ["distill", "--graph", str(path), "--max-len", str(max_len), "--json"]
    run = CliRunner().invoke(main, args + (["--out", str(out)] if out else []))
    return json.loads(run.stdout), run


def test_contains_b_proved_at_length_and_verified(tmp_path):
    """A two-layer graph ("contains b") PROVED at length 20 by the cube tree from the CLI; jaxscd verify re-derives
    every leaf in arb and passes; a flipped leaf and a changed weight are caught."""
    path = _write(tmp_path, contains_graph(), "contains")
    summary, run = _distill(path, 20, tmp_path / "bundle")
    assert summary["verdict"] == "PROVED" and summary["proof"]["method"] == "cube bounds + smt-tree", run.output
    assert "CountThreshold" in summary["tried"][-1]["program"] and summary["proof"]["cubes"] > 20
    verify = CliRunner().invoke(main, ["verify", str(tmp_path / "bundle")])
    assert verify.exit_code == 0 and "VERIFIED" in verify.output, verify.output

    flipped = copy_bundle(tmp_path / "bundle", tmp_path / "flipped")
    trees = json.loads((flipped / "tree.json").read_text())
    assert _flip_first_leaf(trees["12"])
    (flipped / "tree.json").write_text(json.dumps(trees))
    rehash(flipped, "tree.json")
    assert LEAF_CHECK in failed_checks(recheck(flipped))

    changed = copy_bundle(tmp_path / "bundle", tmp_path / "changed")
    path.write_text(json.dumps(contains_graph(bias=1.5)))  # now never class 1: every class-1 leaf is wrong
    assert "circuit fingerprint" in failed_checks(recheck(changed))
    cert = json.loads((changed / "certificate.json").read_text())
    cert["circuit"]["sha256"] = read_graph(path).fingerprint()  # a forger's fingerprint: the bounds still see it
    (changed / "certificate.json").write_text(json.dumps(cert))
    assert LEAF_CHECK in failed_checks(recheck(changed))


def test_graph_proved_below_its_break_and_refuted_above(tmp_path):
    """first_a with e^gain = 19.5: exact on lengths up to 20, not from 21 on. PROVED at --max-len 20 (beyond
    enumeration), REFUTED at 32 with a counterexample of length >= 21 that the graph itself decides otherwise."""
    data = first_graph(gain=math.log(19.5))
    path = _write(tmp_path, data, "first_weak")
    proved, run = _distill(path, 20)
    assert proved["verdict"] == "PROVED" and proved["proof"]["method"] == "cube bounds + smt-tree", run.output
    assert "TokenAt" in proved["tried"][-1]["program"]
    refuted, run = _distill(path, 32)  # the counterexample search before the tree refutes it in seconds
    assert refuted["verdict"] == "REFUTED", run.output
    cex = next(t for t in refuted["tried"] if t["outcome"] == "refuted")
    assert cex["length"] >= 21 and cex["circuit"] != cex["program_class"]
    logits = np.asarray(read_graph(data)(np.array([cex["tokens"]], dtype=np.int32)))[0]
    assert int(logits[1] > logits[0]) == cex["circuit"]
