"""jaxscd.learn: a tiny model retrained for a few hundred steps, pruned, exported in circuit_sparsity's layout,
reloaded by jaxscd eval to 1e-6, and distilled; a PROVED program is checked on every input of the domain."""

import json
from pathlib import Path
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner

from jaxscd.circuits.sparse_gpt import _forward, eval_logits, load_model, load_sparse_circuit, make_circuit
from jaxscd.cli import main
from jaxscd.domain import Domain
from jaxscd.dsl import reference as dsl
from jaxscd.learn import LearnError, data
from jaxscd.learn.export import save_circuit, save_model, torch_available
from jaxscd.learn.model import keep_largest
from jaxscd.learn.prune import PruneConfig, prune
from jaxscd.learn.train import (_optimizer, circuit_loss, circuit_strength, default_config, masked_locations,
                                 new_model, train, warmup_steps)
from jaxscd.pipeline import DistillConfig, Verdict, distill

TASK = "quote_close"
TINY = {"steps": 300, "max_len": 4, "batch_size": 32, "seed": 0}


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    root = tmp_path_factory.mktemp("learned")
    trained = train(TASK, root / "model", default_config(TASK, **TINY), progress=False)
    pruned = prune(root / "model", TASK, root / "circuit", PruneConfig(steps=60, mean_documents=128, refine=1))
    return root, trained, pruned


def _domain_tokens(template: dict) -> np.ndarray:
    language = data.task_language(TASK, template["max_len"])
    prompts, _ = data.domain_prompts(language, data.enumerate_domain(language)[0])
    return prompts


def _circuit_logits(params: dict, pruned, tokens: np.ndarray) -> np.ndarray:
    """The pruned circuit run from the in-memory artefacts (float32 weights, kept indices, float64 means)."""
    model = load_model(pruned.circuit_dir.rsplit("/", 1)[0] + "/model")
    circuit = make_circuit(model.config, pruned.kept, pruned.means)
    hooks = {loc: (jnp.asarray(m), jnp.asarray(u)) for loc, (m, u) in circuit.hooks.items()}
    weights = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in params.items()}
    return np.asarray(_forward(weights, jnp.asarray(tokens), hooks, config=model.config)[0])


def test_training_reaches_the_task_and_the_weight_density(learned):
    _, trained, _ = learned
    assert trained.accuracy >= 0.9
    assert trained.density == pytest.approx(0.1, abs=0.03)  # the annealed target, plus the per-neuron minimum


def test_pruning_keeps_a_small_circuit_that_agrees_with_the_model(learned):
    _, _, pruned = learned
    assert 0 < pruned.nodes_kept < pruned.nodes_total
    assert 0 < pruned.edges_kept < pruned.edges_total
    assert pruned.agreement >= 0.95


@pytest.mark.skipif(not torch_available(), reason="the .pt files need torch (pip install jaxscd[circuit-sparsity])")
def test_export_loads_with_weights_only(learned):
    import torch

    root, _, pruned = learned
    state = torch.load(root / "model" / "final_model.pt", weights_only=True)
    viz = torch.load(pruned.files["viz"], weights_only=True)
    means = torch.load(pruned.files["means"], weights_only=True)
    assert all(t.dtype == torch.float32 for t in state.values())
    assert set(viz) == {"circuit_data", "importances", "num_total_nodes", "samples"}
    assert {k: v.tolist() for k, v in viz["circuit_data"].items()} == {k: v.tolist() for k, v in pruned.kept.items()}
    assert viz["num_total_nodes"] == pruned.nodes_total and all(m.dtype == torch.float64 for m in means.values())


def test_restarts_search_from_successive_seeds_and_keep_the_smallest_circuit(learned, tmp_path, monkeypatch):
    import jaxscd.learn.prune as prune_module

    root, _, single = learned
    found, search = [], prune_module._search

    def recorded(*args):
        result = search(*args)
        found.append((args[-1].seed, {loc: list(map(int, idx)) for loc, idx in result[1].items()}, args[1]))
        return result

    monkeypatch.setattr(prune_module, "_search", recorded)
    pruned = prune(root / "model", TASK, tmp_path / "circuit",
                   PruneConfig(steps=60, mean_documents=128, refine=1, restarts=2))
    assert [seed for seed, _, _ in found] == [0, 1]
    as_lists = lambda kept: {loc: list(map(int, idx)) for loc, idx in kept.items()}  # noqa: E731
    assert found[0][1] == as_lists(single.kept)  # restart 0 is the single search
    assert pruned.nodes_kept == min(sum(map(len, kept.values())) for _, kept, _ in found)
    chosen = [means for _, kept, means in found if kept == as_lists(pruned.kept)]
    assert chosen and pruned.agreement == 1.0
    same = lambda a, b: all(np.array_equal(a[loc], b[loc]) for loc in a)  # noqa: E731
    assert same(found[0][2], single.means) and not same(found[1][2], single.means)  # each seed its own ablation
    assert same(pruned.means, chosen[0])  # the circuit is written with the ablation it was found under


def test_eval_reproduces_the_pruned_circuit_from_the_files(learned, tmp_path):
    root, trained, pruned = learned
    template = json.loads((root / "circuit" / "template.json").read_text())
    tokens = _domain_tokens(template)
    np.save(tmp_path / "tokens.npy", tokens)
    from_files = eval_logits(root / "model", tmp_path / "tokens.npy", tmp_path / "logits.npy", pruned.files["viz"],
                             pruned.files["means"])
    assert np.max(np.abs(from_files - _circuit_logits(trained.params, pruned, tokens))) <= 1e-6
    runner = CliRunner()
    out = runner.invoke(main, ["eval", "--circuit-sparsity", str(root / "model"), "--viz", pruned.files["viz"],
                               "--means", pruned.files["means"], "--tokens", str(tmp_path / "tokens.npy"),
                               "--out", str(tmp_path / "cli.npy")])
    assert out.exit_code == 0, out.output
    assert np.max(np.abs(np.load(tmp_path / "cli.npy") - from_files)) == 0.0


def test_the_npz_layout_needs_no_torch(learned, tmp_path):
    root, trained, pruned = learned
    config = json.loads((root / "model" / "beeg_config.json").read_text())
    save_model(tmp_path / "model", config, trained.params, {}, use_torch=False)
    template = json.loads((root / "circuit" / "template.json").read_text())
    files = save_circuit(tmp_path / "circuit", config, pruned.kept, pruned.means, template, {}, use_torch=False)
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["beeg_config.json", "jaxscd_train.json",
                                                                     "weights.npz"]
    tokens = _domain_tokens(template)
    np.save(tmp_path / "tokens.npy", tokens)
    logits = eval_logits(tmp_path / "model", tmp_path / "tokens.npy", tmp_path / "out.npy", files["viz"],
                         files["means"])
    assert np.max(np.abs(logits - _circuit_logits(trained.params, pruned, tokens))) <= 1e-6


def test_distilled_program_matches_the_pruned_circuit_on_every_input(learned):
    root, _, pruned = learned
    circuit, template = load_sparse_circuit(root / "model", pruned.files["template"], pruned.files["viz"],
                                            pruned.files["means"])
    domain = Domain(template.alphabet, template.min_len, template.max_len)
    result = distill(circuit, domain, DistillConfig(proof_timeout_s=30.0))
    assert result.verdict in (Verdict.PROVED, Verdict.NO_PROGRAM)
    if result.verdict is Verdict.NO_PROGRAM:
        assert result.near_misses  # the honest failure names the nearest programs
        return
    sequences = [list(s) for n in range(domain.min_len, domain.max_len + 1)
                 for s in np.ndindex(*(len(template.alphabet),) * n)]
    for length in range(domain.min_len, domain.max_len + 1):
        rows = np.array([s for s in sequences if len(s) == length], dtype=np.int32)
        logits = np.asarray(circuit.forward(rows))
        expected = [dsl.run(result.program, [int(t) for t in row]) for row in rows]
        assert (logits[:, 1] > logits[:, 0]).astype(int).tolist() == expected


def test_keep_largest_keeps_the_fraction_and_a_minimum_per_row():
    weight = jnp.asarray(np.random.default_rng(0).normal(size=(6, 10)))
    sparse = np.asarray(keep_largest(weight, jnp.asarray(0.1), 2))
    assert np.all(np.count_nonzero(sparse, axis=1) >= 2)
    assert np.count_nonzero(sparse) <= 6 + 12
    assert np.count_nonzero(np.asarray(keep_largest(weight, jnp.asarray(1.0), 2))) == 60


@pytest.mark.parametrize("args, message", [
    (["train", "no_such_task", "--out", "{tmp}/m"], "unknown task 'no_such_task'"),
    (["prune", "{tmp}/missing", "--task", TASK, "--out", "{tmp}/c"], "jaxscd_train.json"),
    (["prune", "{tmp}", "--task", TASK, "--out", "{tmp}/c"], "jaxscd_train.json"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    out = CliRunner().invoke(main, [a.format(tmp=tmp_path) for a in args])
    assert out.exit_code == 2
    assert re.search(re.escape(message), out.output) and "Traceback" not in out.output


def test_prune_refuses_an_unknown_task_for_a_trained_model(learned, tmp_path):
    root, _, _ = learned
    out = CliRunner().invoke(main, ["prune", str(root / "model"), "--task", "nope", "--out", str(tmp_path / "c")])
    assert out.exit_code == 2 and "unknown task 'nope'" in out.output


def test_settings_are_checked():
    with pytest.raises(LearnError, match="weight_density=0"):
        default_config(TASK, weight_density=0.0)
    with pytest.raises(LearnError, match="warmup=-1"):
        default_config(TASK, warmup=-1)


@pytest.mark.parametrize("steps", [1, 2, 3, 99, 100, 101, 199, 200, 2000])
def test_any_step_count_has_a_learning_rate_schedule(steps):
    # the warm-up was 100 steps whatever --steps said: optax refused a cosine decay of 0 steps (N <= 100)
    config = default_config(TASK, steps=steps)
    assert warmup_steps(config) == min(100, steps // 2)
    optimizer = _optimizer(config, {"w": jnp.zeros(2)})
    assert optimizer.init({"w": jnp.zeros(2)}) is not None


# Nothing a user wrote is replaced: train and prune write a new or empty directory, or replace one they wrote
# themselves (its manifest lists the sha256 of every file); anything else is refused before the work, untouched.

def _snapshot(folder) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_train_replaces_its_own_directory_and_trains_with_few_steps(tmp_path):
    out = tmp_path / "m"
    first = _cli("train", TASK, "--out", out, "--steps", "1")  # N <= 100 steps: was a traceback
    assert first.exit_code == 0, first.output
    manifest = json.loads((out / "jaxscd_train.json").read_text())
    assert sorted(manifest["files"]) == sorted(p.name for p in out.iterdir() if p.name != "jaxscd_train.json")
    again = _cli("train", TASK, "--out", out, "--steps", "100", "--seed", "1")
    assert again.exit_code == 0, again.output
    assert json.loads((out / "jaxscd_train.json").read_text())["train"]["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # nothing left beside it


OWN_MODEL = {"beeg_config.json": b"{}", "final_model.pt": b"weights", "jaxscd_train.json": b"{}"}
OWN_CIRCUIT = {"viz_data.pt": b"viz", "means.pt": b"means", "template.json": b"{}"}


@pytest.mark.parametrize("command, files, words", [
    ("train", OWN_MODEL | {"notes.txt": b"mine"}, "is not one `jaxscd train` writes"),
    ("train", {"beeg_config.json": b"{}", "final_model.pt": b"weights", "notes.txt": b"mine"},
     "holds no readable jaxscd_train.json"),  # a copy of a circuit_sparsity checkpoint
    ("train", OWN_CIRCUIT | {"jaxscd_prune.json": b'{"task": "x", "files": {}}'}, "no readable jaxscd_train.json"),
    ("train", {"jaxscd_train.json": b'{"vocabulary": [], "files": {"beeg_config.json": "' + b"0" * 64 + b'"}}',
               "beeg_config.json": b"{}"}, "changed since jaxscd wrote them (beeg_config.json)"),
    ("train", {"jaxscd_train.json": b'{"vocabulary": [], "files": {}}', "notes.txt": b"mine"},
     "does not list (notes.txt)"),
    ("train", {"jaxscd_train.json": b'{"vocabulary": []}', "beeg_config.json": b"{}"},
     "is not one `jaxscd train` writes"),  # written before manifests held hashes
    ("prune", OWN_CIRCUIT, "no readable jaxscd_prune.json"),  # the circuit_sparsity layout, of the user's
    ("prune", {"jaxscd_prune.json": b'{"task": "x", "files": {"../x": "' + b"0" * 64 + b'"}}'},
     "is not one `jaxscd prune` writes"),
], ids=["train: a model dir plus a user file", "train: a checkpoint copy", "train: a prune dir",
        "train: an edited file", "train: an unlisted file", "train: an old manifest", "prune: a circuit copy",
        "prune: a manifest naming a path outside"])
def test_train_and_prune_refuse_a_directory_they_did_not_write(tmp_path, command, files, words):
    out = tmp_path / "out"
    out.mkdir()
    for name, content in files.items():
        (out / name).write_bytes(content)
    before = _snapshot(tmp_path)
    args = ("train", TASK, "--out", out) if command == "train" else ("prune", tmp_path / "model", "--task", TASK,
                                                                     "--out", out)
    result = _cli(*args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and words in lines[0], result.output
    assert "exists and is not a" in lines[0] and "choose a new directory" in lines[0]
    assert _snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_prune_refuses_the_model_directory_and_replaces_its_own(learned, tmp_path):
    root, trained, pruned = learned
    before = _snapshot(root / "model")
    result = _cli("prune", root / "model", "--task", TASK, "--out", root / "model")
    assert result.exit_code == 2 and "not a circuit directory of `jaxscd prune`" in result.stderr
    assert _snapshot(root / "model") == before
    config = json.loads((root / "model" / "beeg_config.json").read_text())
    template = json.loads((root / "circuit" / "template.json").read_text())
    first = save_circuit(tmp_path / "c", config, pruned.kept, pruned.means, template, {"task": TASK})
    second = save_circuit(tmp_path / "c", config, pruned.kept, pruned.means, template, {"task": TASK, "run": 2})
    assert first == second and json.loads((tmp_path / "c" / "jaxscd_prune.json").read_text())["run"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_a_failed_write_leaves_the_previous_directory(learned, tmp_path, monkeypatch):
    from jaxscd import outputs

    root, trained, _ = learned
    config = json.loads((root / "model" / "beeg_config.json").read_text())
    save_model(tmp_path / "m", config, trained.params, {"vocabulary": []}, use_torch=False)
    before = _snapshot(tmp_path / "m")
    renames, rename = [], os.rename

    def failing(source, target):  # moving the previous directory aside works; putting the new one in place fails
        renames.append(target)
        if len(renames) == 2:
            raise OSError(28, "No space left on device")
        rename(source, target)

    monkeypatch.setattr(outputs.os, "rename", failing)
    with pytest.raises(OSError):
        save_model(tmp_path / "m", config, trained.params, {"vocabulary": [], "run": 2}, use_torch=False)
    monkeypatch.undo()
    assert _snapshot(tmp_path / "m") == before and sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_a_two_layer_model_trains_prunes_and_distills(tmp_path):
    # n_layer 2 end to end: 16 masked locations, the exported files run as pruning measured them, and distill answers
    trained = train(TASK, tmp_path / "model", default_config(TASK, **TINY | {"steps": 150, "n_layer": 2}),
                    progress=False)
    pruned = prune(tmp_path / "model", TASK, tmp_path / "circuit",
                   PruneConfig(steps=30, mean_documents=64, attempts=1, shrink=False))  # the fixture shrinks
    assert pruned.nodes_total == 2 * 288 and 0 < pruned.nodes_kept <= pruned.nodes_total
    assert {loc.split(".")[0] for loc in pruned.kept} == {"0", "1"} and pruned.agreement == 1.0
    template = json.loads((tmp_path / "circuit" / "template.json").read_text())
    tokens = _domain_tokens(template)
    np.save(tmp_path / "tokens.npy", tokens)
    from_files = eval_logits(tmp_path / "model", tmp_path / "tokens.npy", tmp_path / "logits.npy",
                             pruned.files["viz"], pruned.files["means"])
    assert np.max(np.abs(from_files - _circuit_logits(trained.params, pruned, tokens))) <= 1e-6
    model = eval_logits(tmp_path / "model", tmp_path / "tokens.npy", tmp_path / "model.npy")
    answer = (tokens > 0).sum(axis=1)  # <bos> is id 0: the last task token's position
    decide = lambda logits: (logits[np.arange(len(tokens)), answer, template["target"]]  # noqa: E731
                             > logits[np.arange(len(tokens)), answer, template["alternative"]])
    assert np.array_equal(decide(from_files), decide(model))  # agreement 1.0, as the files run it
    circuit, template = load_sparse_circuit(tmp_path / "model", pruned.files["template"], pruned.files["viz"],
                                            pruned.files["means"])
    domain = Domain(template.alphabet, template.min_len, template.max_len)
    result = distill(circuit, domain, DistillConfig(proof_timeout_s=30.0))
    assert result.verdict in (Verdict.PROVED, Verdict.NO_PROGRAM)


def test_a_trained_model_brings_its_task_spec_and_accepts_128_positions(learned, tmp_path):
    """The source of a model jaxscd trained carries the task's spec (the departures beyond enumeration are drawn
    against it), only when the template reads the task's alphabet and classes in order; and every trained model
    accepts prompts of 128 positions, its position embeddings 0 past the training documents."""
    from jaxscd.circuits.sources import _trained_task_spec
    from jaxscd.circuits.sparse_gpt.template import load_template, template_from_dict
    from jaxscd.circuits.sparse_gpt.weights import load_model
    from jaxscd.tasks import get_task

    root, _, pruned = learned
    raw = json.loads(Path(pruned.files["template"]).read_text(encoding="utf-8"))  # as prune wrote it: the task's order
    assert list(raw["alphabet"]) == list(get_task(TASK).alphabet)
    assert _trained_task_spec(root / "model", template_from_dict(raw)) is get_task(TASK).spec
    raw["alphabet"] = dict(reversed(list(raw["alphabet"].items())))  # another order: the spec would misread ids
    assert _trained_task_spec(root / "model", template_from_dict(raw)) is None
    assert _trained_task_spec(tmp_path, load_template(pruned.files["template"])) is None  # no jaxscd_train.json
    model = load_model(root / "model")
    assert model.config.block_size >= data.CONTEXT + 1  # <bos> + 128 task tokens
    wpe = np.asarray(model.params["transformer.wpe.weight"])
    document = data.document_length(TINY["max_len"])
    assert np.any(wpe[:document] != 0) and not np.any(wpe[document:] != 0)  # quote_close learns positions


def _circuit_batch(config):
    languages = [data.task_language(TASK, config.max_len)]
    batch = data.sample_batch(languages, np.random.default_rng(0), 16, data.document_length(config.max_len),
                              config.filler_fraction, data.filler_chain())
    return {k: jnp.asarray(getattr(batch, k)) for k in ("tokens", "targets", "is_task", "valid")}


def _task_ce(logits, batch) -> float:
    logp = np.asarray(jax.nn.log_softmax(logits.astype(jnp.float64), -1))
    picked = np.take_along_axis(logp, np.asarray(batch["targets"])[..., None], -1)[..., 0]
    task = np.asarray(batch["is_task"], dtype=np.float64)
    return float(-(picked * task).sum() / task.sum())


def test_the_circuit_term_is_the_task_loss_of_the_gated_mean_ablated_model():
    # gates open: the model's task cross-entropy; gates shut: every masked node at its mean over the batch's real
    # positions (computed here in numpy), the other locations untouched; plus the penalty per (sigmoid) kept node
    config = default_config(TASK, **TINY)
    _, gpt, module = new_model(config)
    batch = _circuit_batch(config)
    penalty = 0.01
    logits, acts = module(batch["tokens"], record=True)
    widths = masked_locations(gpt)
    opened = {loc: jnp.full(w, 2.0) for loc, w in widths.items()}
    term = circuit_loss(module, gpt, opened, acts, batch["tokens"], batch["targets"], batch["is_task"],
                        batch["valid"], penalty)
    nodes = sum(widths.values())
    assert float(term) == pytest.approx(_task_ce(logits, batch) + penalty * nodes * float(jax.nn.sigmoid(2.0)),
                                        rel=1e-5)
    real = np.asarray(batch["valid"], dtype=np.float64)[..., None]
    means = {loc: (np.asarray(a, np.float64) * real).sum((0, 1)) / real.sum() for loc, a in acts.items()}
    hooks = {loc: (jnp.zeros(len(m)) if loc in widths else jnp.ones(len(m)), jnp.asarray(m, jnp.float32))
             for loc, m in means.items()}
    ablated, _ = _forward(module.params(), batch["tokens"], hooks, config=gpt)
    shut = {loc: jnp.full(w, -2.0) for loc, w in widths.items()}
    term = circuit_loss(module, gpt, shut, acts, batch["tokens"], batch["targets"], batch["is_task"],
                        batch["valid"], penalty)
    expected = _task_ce(ablated, batch) + penalty * nodes * float(jax.nn.sigmoid(-2.0))
    assert float(term) == pytest.approx(expected, rel=1e-4)
    assert abs(expected - _task_ce(logits, batch)) > 0.01  # the ablation changes the loss: the check can fail


def test_the_circuit_term_trains_the_gates_and_starts_halfway():
    config = default_config(TASK, **TINY | {"circuit_weight": 2.0})
    _, gpt, module = new_model(config)
    batch = _circuit_batch(config)
    gates = {loc: jnp.full(w, 0.5) for loc, w in masked_locations(gpt).items()}

    def term(gates):
        _, acts = module(batch["tokens"], record=True)
        return circuit_loss(module, gpt, gates, acts, batch["tokens"], batch["targets"], batch["is_task"],
                            batch["valid"], 1e-3)

    grads = jax.grad(term)(gates)  # straight-through: the Heaviside forward, the sigmoid's gradient backward
    assert all(np.isfinite(np.asarray(g)).all() for g in grads.values())
    assert sum(float(jnp.abs(g).sum()) for g in grads.values()) > 0
    strength = [float(circuit_strength(jnp.asarray(s), config)) for s in (0, 150, 187.5, 225, 300)]
    assert strength == pytest.approx([0.0, 0.0, 1.0, 2.0, 2.0])
    with pytest.raises(LearnError, match="circuit_start=1.0"):
        default_config(TASK, circuit_start=1.0)
