"""Circuit graphs: validation messages, export/load round trips, and the forward pass against plain numpy."""

import copy
import json
import time

import numpy as np
import pytest
from click.testing import CliRunner

from jaxscd.circuits.base import Circuit, CircuitError
from jaxscd.circuits.graph import GraphError, export_graph, load_graph, read_graph
from jaxscd.cli import main
from jaxscd.circuits.reference import (
    BRACKET_CHANNELS,
    BRACKET_NEURONS,
    QUOTE_CHANNELS,
    QUOTE_NEURONS,
    bracket_depth_circuit,
    quote_close_circuit,
)
from jaxscd.domain import Domain
from jaxscd.dsl.programs import CountThreshold
from jaxscd.kernels.enumerate import all_tokens
from jaxscd.tasks import SEED_TASKS, task_graph, task_names


def tiny_graph() -> dict:
    """A valid 2-layer graph: a causal head and an MLP, then a last-position head."""
    return {
        "schema": "jaxscd.circuit_graph", "version": 1, "name": "tiny",
        "vocab": ["a", "b", "c"], "channels": ["one", "is_a", "is_b", "pos", "mix", "out"], "max_positions": 6,
        "embed": {"a": {"one": 1, "is_a": 1}, "b": {"one": 1, "is_b": 1}, "c": {"one": 1}},
        "pos_embed": {"pos": [0, 1, 2, 3, 4, 5]},
        "layers": [
            {"heads": [{"query": "all", "d_head": 1, "d_value": 1, "w_q": {"one": [1.0]}, "w_k": {"is_a": [2.0]},
                        "w_v": {"is_b": [1.0]}, "w_o": {"mix": [1.0]}}],
             "mlp": {"neurons": [{"in": {"mix": 1, "is_a": -1}, "bias": 0.5, "out": {"out": 1}}]}},
            {"heads": [{"query": "last", "d_head": 2, "d_value": 1, "w_q": {"one": [1.0, 0.5]},
                        "w_k": {"mix": [1.0, 0.0], "pos": [0.0, 1.0]}, "w_v": {"out": [1.0]}, "w_o": {"out": [2.0]}}]}],
        "readout": {"classes": ["no", "yes"], "weights": {"out": [0, 1], "one": [0.3, 0]}},
    }


def edited(edit) -> dict:
    graph = tiny_graph()
    edit(graph)
    return graph


# --------------------------------------------------------------------------------------------------------------
# Validation: one precise line per problem


def test_tiny_graph_is_valid_and_is_a_circuit():
    circuit = load_graph(tiny_graph())
    assert isinstance(circuit, Circuit) and circuit.class_names == ("no", "yes")
    logits = np.asarray(circuit.forward(np.array([[0, 1, 2], [2, 2, 0]])))
    assert logits.shape == (2, 2) and logits.dtype == np.float64 and np.isfinite(logits).all()


@pytest.mark.parametrize("edit, message", [
    (lambda g: g.update(version=2),
     r"^version: unsupported circuit graph schema version, got 2; this jaxscd reads version 1: write \"version\": 1$"),
    (lambda g: g.update(schema="onnx"), r"^schema: not a circuit graph, got 'onnx'; write \"schema\": "),
    (lambda g: g["layers"][1]["heads"][0]["w_q"].update(is_z=[1.0, 0.0]),
     r'^layers\[1\]\.heads\[0\]\.w_q\["is_z"\]: unknown channel "is_z" \(channels: one, is_a, .*\); '
     r'did you mean "is_b"\? add it to "channels" or fix the name$'),
    (lambda g: g["layers"][1]["heads"][0]["w_k"].update(mixx=[1.0, 0.0]),
     r'^layers\[1\]\.heads\[0\]\.w_k\["mixx"\]: unknown channel "mixx" .*; did you mean "mix"\? add it'),
    (lambda g: g["embed"].update(d={"one": 1}),
     r'^embed\["d"\]: unknown token "d" \(vocab: \[.a., .b., .c.\]\); add it to "vocab" or fix the name$'),
    (lambda g: g["embed"].pop("c"), r'^embed: missing token "c"; give every vocab token a channel vector'),
    (lambda g: g["layers"][1]["heads"][0]["w_k"].update(pos=[0.0, 1.0, 2.0]),
     r'^layers\[1\]\.heads\[0\]\.w_k\["pos"\]: row must be a list of 2 numbers \(d_head = 2\), '
     r'got \[0\.0, 1\.0, 2\.0\]; give exactly one number per head dim$'),
    (lambda g: g.update(pos_embed={"pos": [0, 1, 2]}),
     r'^pos_embed\["pos"\]: row must be a list of 6 numbers \(max_positions = 6\), got \[0, 1, 2\]; '
     r'give exactly one number per position$'),
    (lambda g: g["layers"][0]["heads"][0]["w_v"].update(is_b=[float("nan")]),
     r'^layers\[0\]\.heads\[0\]\.w_v\["is_b"\]\[0\]: weight must be finite \(not NaN or inf\), got nan; '
     r'replace it with a finite number$'),
    (lambda g: g["layers"][0]["mlp"]["neurons"][0].update(bias=float("inf")),
     r"^layers\[0\]\.mlp\.neurons\[0\]\.bias: weight must be finite \(not NaN or inf\), got inf"),
    (lambda g: g["embed"]["a"].update(one="1"), r'^embed\["a"\]\["one"\]: weight must be a number, got \'1\''),
    (lambda g: g["layers"][0]["heads"][0].pop("w_v"),
     r'^layers\[0\]\.heads\[0\]: missing field "w_v"; every head needs "query", "d_head", "d_value", "w_q", '),
    (lambda g: g.pop("readout"), r'^\$: missing field "readout"; every circuit graph needs "schema", '),
    (lambda g: g["layers"][0]["heads"][0].update(wq={}), r'^layers\[0\]\.heads\[0\]\.wq: unknown field "wq" '
     r'in a head; did you mean "w_q"\?$'),
    (lambda g: g["layers"][1]["heads"][0].update(query="first"),
     r'^layers\[1\]\.heads\[0\]\.query: query must be "all" \(every position, causal\) or "last"'),
    (lambda g: g["readout"].update(classes=["a", "b", "c"]),
     r"^readout\.classes: classes must be a list of exactly 2 non-empty strings"),
    (lambda g: g.update(channels=["one", "one"]), r"^channels: channels must be unique, repeated: \['one'\]"),
    (lambda g: g.pop("max_positions"), r'^pos_embed: a positional embedding needs "max_positions"'),
    (lambda g: g["layers"][0]["mlp"].update(activation="gelu"),
     r"^layers\[0\]\.mlp\.activation: unsupported activation \(supported: relu\), got 'gelu'"),
    (lambda g: g["readout"].update(weights=[[0, 1]] * 5),
     r"^readout\.weights: expected a channel matrix \(\{channel: \[2 numbers\]\} or a list of 6 rows\)"),
    (lambda g: g.update(domain={"min_len": 3, "max_len": 2}), r"^domain: min_len must not exceed max_len"),
    (lambda g: g.update(domain={"max_len": 9}),
     r'^domain\.max_len: longer than the 6 positions the circuit accepts, got 9; use at most 6 or raise'),
], ids=["version", "schema", "unknown_channel", "channel_typo", "unknown_token", "missing_token", "row_shape",
        "pos_shape", "nan", "inf", "not_a_number", "missing_head_field", "missing_top_field", "field_typo",
        "query_mode", "class_count", "repeated_channel", "pos_without_max", "activation", "matrix_rows",
        "domain_lengths", "domain_too_long"])
def test_each_problem_is_one_precise_line(edit, message):
    with pytest.raises(GraphError, match=message) as info:
        load_graph(edited(edit))
    assert len(info.value.problems) == 1 and "\n" not in info.value.problems[0]


def test_every_problem_is_reported_at_once():
    def edit(g):
        g["layers"][0]["heads"][0]["w_q"]["nope"] = [1.0]
        g["layers"][1]["heads"][0]["w_o"]["out"] = [float("nan")]
        g["readout"]["weights"]["out"] = [1.0]

    with pytest.raises(GraphError, match=r"^3 problems in the circuit graph:\nlayers\[0\]") as info:
        load_graph(edited(edit))
    assert [p.split(":")[0] for p in info.value.problems] == [
        'layers[0].heads[0].w_q["nope"]', 'layers[1].heads[0].w_o["out"][0]', 'readout.weights["out"]']


def test_files_json_text_and_their_errors(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(tiny_graph()))
    from_file, from_text = load_graph(path), load_graph(path.read_text())
    tokens = np.array([[0, 1, 2, 0]])
    assert np.array_equal(from_file.forward(tokens), from_text.forward(tokens))
    assert from_file.fingerprint == from_text.fingerprint
    with pytest.raises(GraphError, match=r"^\$: circuit graph file not found, got '.*missing\.json'; check the path$"):
        load_graph(tmp_path / "missing.json")
    path.write_text('{"schema": ')
    with pytest.raises(GraphError, match=r"^\$: not valid JSON \(Expecting value at line 1, column 12\)"):
        load_graph(path)


def test_dense_forms_equal_sparse_forms():
    sparse = tiny_graph()
    dense = copy.deepcopy(sparse)
    channels = dense["channels"]
    dense["embed"] = {tok: [row.get(c, 0) for c in channels] for tok, row in dense["embed"].items()}
    head = dense["layers"][1]["heads"][0]
    head["w_k"] = [head["w_k"].get(c, [0.0, 0.0]) for c in channels]
    dense["readout"]["weights"] = [dense["readout"]["weights"].get(c, [0, 0]) for c in channels]
    tokens = np.array([[0, 1, 2, 0, 1], [2, 2, 1, 0, 0]])
    assert np.array_equal(load_graph(sparse).forward(tokens), load_graph(dense).forward(tokens))


def test_longer_inputs_than_max_positions_are_refused():
    with pytest.raises(CircuitError, match=r"accepts at most 6 positions, got sequences of length 7; lower --max-len"):
        load_graph(tiny_graph()).forward(np.zeros((1, 7), dtype=np.int32))


def test_domain_block_is_read():
    graph = edited(lambda g: g.update(domain={"min_len": 2, "max_len": 5, "precondition_text": "has an a",
                                              "precondition": {"motif": "CountThreshold", "plus": [0], "minus": [],
                                                               "threshold": 1}}))
    g = read_graph(graph)
    assert (g.min_len, g.max_len, g.precondition, g.precondition_text) == (2, 5, CountThreshold({0}, set(), 1),
                                                                           "has an a")
    bad = edited(lambda g: g.update(domain={"precondition": {"motif": "CountThreshold", "plus": [7], "minus": [],
                                                             "threshold": 1}}))
    with pytest.raises(GraphError, match=r"^domain\.precondition: not a DSL program over the vocab: program uses "
                                         r"token ids \[7\] outside an alphabet of 3 tokens"):
        read_graph(bad)


# --------------------------------------------------------------------------------------------------------------
# Hostile graph files: a few bytes that declare a huge array, nest too deeply, hold numbers no float holds or
# repeat a long vocabulary. Each is one GraphError line, found fast, before any large array is built.


def _vocab_graph(n: int, **changes) -> dict:
    vocab = [f"t{i}" for i in range(n)]
    return edited(lambda g: g.update(vocab=vocab, embed={t: {} for t in vocab}, layers=[], pos_embed=None,
                                     **changes))


def _one_head(**head) -> dict:
    return edited(lambda g: g.update(layers=[{"heads": [{"query": "last", "d_head": 1, "d_value": 1, "w_q": {},
                                                         "w_k": {}, "w_v": {}, "w_o": {}} | head]}]))


HOSTILE_GRAPHS = {  # name: (file text, words of the one problem)
    "d_head 100,000,000 (was 12 GB)": (json.dumps(_one_head(d_head=100_000_000)),
                                       ["1,200,000,078 dense weights", "layers[0].heads[0]", "shrink"]),
    "d_value 10**12": (json.dumps(_one_head(d_value=10**12)), ["dense weights", "above the 50,000,000"]),
    "20,000 neurons x 20,000 channels, written sparsely": (
        json.dumps(edited(lambda g: g.update(channels=[f"c{i}" for i in range(20_000)], pos_embed=None, embed={
            t: {} for t in g["vocab"]}, layers=[{"mlp": {"neurons": [{"in": {}, "out": {}}] * 20_000}}],
            readout={"classes": ["no", "yes"], "weights": {}}))), ["dense weights", "layers[0].mlp"]),
    "nested 100,000 deep": ("[" * 100_000 + "]" * 100_000, ["nested too deeply"]),
    "a graph object nested 100,000 deep in its description": (
        '{"schema": "jaxscd.circuit_graph", "description": ' + "[" * 100_000 + "]" * 100_000 + "}",
        ["nested too deeply"]),
    "a weight of 400 digits": (json.dumps(tiny_graph()).replace('"bias": 0.5', '"bias": ' + "9" * 400),
                               ["layers[0].mlp.neurons[0].bias", "float64 number", "9999"]),
    "a negative weight of 400 digits in a dense row": (
        json.dumps(edited(lambda g: g["embed"].update(a=[-10**400, 0, 0, 0, 0, 0]))),
        ['embed["a"][0]', "float64 number"]),
    "a weight of 5,000 digits": (json.dumps(tiny_graph()).replace('"bias": 0.5', '"bias": ' + "9" * 5000),
                                 ["not usable JSON", "digits"]),
    "100,000 tokens, one repeated": (json.dumps(_vocab_graph(100_000) | {"vocab": [f"t{i}" for i in range(100_000)]
                                                                          + ["t7"]}), ["repeated: ['t7']"]),
    "100,000 embeddings of unknown tokens": (
        json.dumps(_vocab_graph(100_000) | {"embed": {f"u{i}": {} for i in range(100_000)}}),
        ['embed["u0"]: unknown token', "(100,000 in all)", "more"]),
    "100,000 unknown channels": (json.dumps(edited(lambda g: g["embed"].update(a={f"z{i}": 1 for i in
                                                                                   range(100_000)}))),
                                 ['embed["a"]["z0"]: unknown channel', "more"]),
}


@pytest.mark.parametrize("name", HOSTILE_GRAPHS)
def test_hostile_graph_is_one_line_found_fast(name, tmp_path):
    text, words = HOSTILE_GRAPHS[name]
    (tmp_path / "g.json").write_text(text)
    started = time.perf_counter()
    with pytest.raises(GraphError) as info:
        read_graph(tmp_path / "g.json")
    assert time.perf_counter() - started < 5.0, name  # linear in the file, nothing built from declared sizes
    assert "\n" not in info.value.summary and all(w in info.value.summary for w in words), info.value.summary


@pytest.mark.parametrize("n", [20_000, 100_000])
def test_a_long_vocabulary_with_empty_embeddings_is_read_in_linear_time(n):
    # was quadratic: 20,000 tokens 5.7 s, 100,000 past 2 minutes (a list.count per name, a tuple scan per token)
    started = time.perf_counter()
    graph = read_graph(_vocab_graph(n))
    assert len(graph.vocab) == n and time.perf_counter() - started < 3.0


def test_many_layers_are_estimated_and_refused_up_front(tmp_path):
    # 800 one-head layers in a small file: jit compiles them into one program, about 100 s a batch shape
    layer = {"heads": [{"query": "all", "d_head": 1, "d_value": 1, "w_q": {"one": [1]}, "w_k": {"is_a": [1]},
                        "w_v": {"is_a": [1]}, "w_o": {"out": [0.001]}}]}
    path = tmp_path / "deep.json"
    path.write_text(json.dumps(edited(lambda g: g.update(layers=[layer] * 800))))
    graph = read_graph(path)
    assert graph.cost.heads == 800 and 30 < graph.cost.compile_seconds < 120
    result = CliRunner().invoke(main, ["distill", "--graph", str(path), "--max-len", "4"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    for words in ("800 heads", "to compile for each of 16 batch shapes", "would take about", "--time-limit"):
        assert words in lines[0], lines[0]
    small = edited(lambda g: g.update(layers=[layer] * 2, domain={"max_len": 3}))
    (tmp_path / "small.json").write_text(json.dumps(small))
    assert CliRunner().invoke(main, ["distill", "--graph", str(tmp_path / "small.json")]).exit_code in (0, 3)


def test_a_huge_max_positions_builds_no_huge_array():
    graph = read_graph(edited(lambda g: g.update(max_positions=10**12, pos_embed=None, layers=[
        {"heads": [{"query": "last", "d_head": 1, "d_value": 1, "w_q": {"one": [1]}, "w_k": {"is_a": [1]},
                    "w_v": {"is_a": [1]}, "w_o": {"out": [1]}}]}])))
    assert graph.one_layer().pos.shape == (1024, 6)  # zero rows, at most UNBOUNDED_POSITIONS of them


@pytest.mark.parametrize("domain, words", [
    ({"max_len": 10**400}, ["(a 401-digit number)", "2,048"]),
    ({"max_len": 5000}, ["max_len 5000", "2,048"]),
])
def test_a_huge_domain_hint_is_one_line(domain, words, tmp_path):
    (tmp_path / "g.json").write_text(json.dumps(edited(lambda g: g.update(max_positions=None, pos_embed=None,
                                                                          domain=domain))))
    result = CliRunner().invoke(main, ["distill", "--graph", str(tmp_path / "g.json")])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and all(w in lines[0] for w in words), result.output


# --------------------------------------------------------------------------------------------------------------
# Round trips


def _logits_by_length(forward, domain: Domain) -> list:
    tokens, lengths = all_tokens(domain)
    return [np.asarray(forward(tokens[lengths == n, :n].astype(np.int32))) for n in domain.lengths]


@pytest.mark.parametrize("model, vocab, classes, channels, neurons", [
    (quote_close_circuit(16), ("a", "b", '"', "'"), ('"', "'"), QUOTE_CHANNELS, QUOTE_NEURONS),
    (bracket_depth_circuit(16), ("[", "]", "a"), ("]", "]]"), BRACKET_CHANNELS, BRACKET_NEURONS),
], ids=["quote_close", "bracket_depth"])
def test_reference_circuit_round_trips_through_json_text(model, vocab, classes, channels, neurons):
    text = json.dumps(export_graph(model, vocab, classes, name="x", channels=channels, neurons=neurons))
    circuit = load_graph(text)
    assert circuit.class_names == classes
    domain = Domain(vocab, 1, 6)
    for ours, theirs in zip(_logits_by_length(circuit.forward, domain), _logits_by_length(model, domain)):
        assert np.max(np.abs(ours - theirs)) <= 1e-12


@pytest.mark.parametrize("name", task_names())
def test_every_task_graph_round_trips(name):
    graph = read_graph(json.dumps(task_graph(name)))
    again = read_graph(json.dumps(graph.to_json()))
    assert again.to_json() == graph.to_json() and again.fingerprint() == graph.fingerprint()
    domain = Domain(graph.vocab, 1, 5, graph.precondition)
    for ours, theirs in zip(_logits_by_length(again, domain), _logits_by_length(graph, domain)):
        assert np.array_equal(ours, theirs)
    if name in SEED_TASKS:  # the export carries the task's domain and gives the task circuit's logits
        from jaxscd.tasks import get_task

        task = get_task(name)
        assert (graph.min_len, graph.max_len, graph.precondition) == (task.min_len, task.max_len, task.precondition)
        for ours, theirs in zip(_logits_by_length(graph, domain), _logits_by_length(task.circuit.forward, domain)):
            assert np.max(np.abs(ours - theirs)) <= 1e-12


# --------------------------------------------------------------------------------------------------------------
# The forward pass against an independent numpy computation


def _random_weights(rng, n_tokens=3, d=5, max_positions=6) -> dict:
    m = lambda *shape: np.round(rng.normal(size=shape), 3)  # noqa: E731
    return {"embed": m(n_tokens, d), "pos": m(max_positions, d),
            "layers": [{"heads": [("all", m(d, 2), m(d, 2), m(d, 2), m(2, d)), ("last", m(d, 1), m(d, 1), m(d, 3),
                                                                                  m(3, d))],
                        "mlp": (m(d, 3), m(3), m(3, d))},
                       {"heads": [("all", m(d, 2), m(d, 2), m(d, 1), m(1, d))], "mlp": (m(d, 2), m(2), m(2, d))}],
            "readout": m(d, 2)}


def _as_graph(w: dict) -> dict:
    """Dense list forms for some matrices, sparse dicts for others."""
    d = w["embed"].shape[1]
    channels = [f"c{i}" for i in range(d)]
    sparse = lambda mat: {c: [float(v) for v in row] for c, row in zip(channels, mat) if np.any(row)}  # noqa: E731
    dense = lambda mat: [[float(v) for v in row] for row in mat]  # noqa: E731
    layers = []
    for layer in w["layers"]:
        heads = [{"query": mode, "d_head": wq.shape[1], "d_value": wv.shape[1], "w_q": sparse(wq), "w_k": dense(wk),
                  "w_v": sparse(wv), "w_o": dense(wo.T)} for mode, wq, wk, wv, wo in layer["heads"]]
        w_in, b_in, w_out = layer["mlp"]
        neurons = [{"in": [float(v) for v in w_in[:, j]], "bias": float(b_in[j]),
                    "out": dict(zip(channels, map(float, w_out[j])))} for j in range(len(b_in))]
        layers.append({"heads": heads, "mlp": {"neurons": neurons}})
    return {"schema": "jaxscd.circuit_graph", "version": 1, "vocab": ["a", "b", "c"], "channels": channels,
            "max_positions": w["pos"].shape[0], "embed": {t: [float(v) for v in row] for t, row in
                                                           zip("abc", w["embed"])},
            "pos_embed": sparse(w["pos"].T), "layers": layers,
            "readout": {"classes": ["0", "1"], "weights": dense(w["readout"])}}


def _softmax(s):
    e = np.exp(s - s.max())
    return e / e.sum()


def _numpy_logits(w: dict, seq) -> np.ndarray:
    """Position by position, head by head, in plain numpy."""
    n = len(seq)
    x = np.array([w["embed"][t] + w["pos"][i] for i, t in enumerate(seq)])
    for layer in w["layers"]:
        delta = np.zeros_like(x)
        for mode, wq, wk, wv, wo in layer["heads"]:
            for i in (range(n) if mode == "all" else [n - 1]):
                scores = np.array([(x[i] @ wq) @ (x[j] @ wk) for j in range(i + 1)])
                a = _softmax(scores)
                delta[i] += sum(a[j] * (x[j] @ wv) for j in range(i + 1)) @ wo
        x = x + delta
        w_in, b_in, w_out = layer["mlp"]
        x = x + np.maximum(x @ w_in + b_in, 0.0) @ w_out
    return x[-1] @ w["readout"]


def test_two_layer_forward_equals_numpy_on_every_input():
    w = _random_weights(np.random.default_rng(0))
    circuit = load_graph(json.dumps(_as_graph(w)))
    domain = Domain(("a", "b", "c"), 1, 5)
    tokens, lengths = all_tokens(domain)
    worst = 0.0
    for n, logits in zip(domain.lengths, _logits_by_length(circuit.forward, domain)):
        expected = np.array([_numpy_logits(w, seq[:n].tolist()) for seq in tokens[lengths == n]])
        worst = max(worst, float(np.max(np.abs(logits - expected))))
    assert worst <= 1e-12


def test_export_graph_replaces_only_a_graph_it_wrote(tmp_path):
    out = tmp_path / "g.json"
    assert CliRunner().invoke(main, ["export-graph", "for_while", "-o", str(out)]).exit_code == 0
    assert CliRunner().invoke(main, ["export-graph", "if_ternary", "-o", str(out)]).exit_code == 0
    assert read_graph(out).name == "if_ternary"
    (tmp_path / "mine.json").write_text('{"mine": 1}')
    result = CliRunner().invoke(main, ["export-graph", "for_while", "-o", str(tmp_path / "mine.json")])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "is not a circuit graph export-graph wrote" in lines[0]
    assert (tmp_path / "mine.json").read_text() == '{"mine": 1}' and len(list(tmp_path.iterdir())) == 2
