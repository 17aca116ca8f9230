"""circuit_sparsity checkpoints: parity with OpenAI's reference outputs, an independent numpy forward, invariants of
circuit execution, and one-line errors for bad checkpoints, circuits, templates and token files."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxscd.circuits.base import CircuitError
from jaxscd.circuits.sparse_gpt import (GPTConfig, SparseGPTError, _forward, activations, eval_logits, hook_widths,
                                        load_circuit, load_model, load_template, logits, make_circuit,
                                        model_from_state_dict, sparse_gpt_circuit, state_dict_shapes,
                                        template_from_dict)

FIXTURES = Path(__file__).parents[1] / ".." / "shared" / "fixtures" / "circuit_sparsity"
VARIANTS = ("afrac_default", "bigram", "ln_gelu_base", "sink")
TOLERANCE = 1e-6

# Flags the fixtures never combine: RMSNorm + ReLU MLP + ReLU residual + concatenated position embeddings + untied
# unembedding + learnable bigram table + sink + activation sparsity at k/v, neuron and residual locations.
CONFIG_A = {"block_size": 10, "vocab_size": 11, "n_layer": 2, "n_head": 2, "d_head": 3, "d_model": 8, "d_mlp": 12,
            "bias": False, "ln_bias": False, "rms_norm": True, "residual_activation_type": "relu",
            "activation_type": "relu", "afrac": 0.5,
            "afrac_loctypes": "attn_in,attn_k,attn_v,mlp_neuron,resid_post_attn",
            "tied_unembed": False, "enable_bigram_table": True, "learnable_bigram_table": True, "bigram_table_rank": 4,
            "d_pos_emb": 4, "sinusoidal_cat_pos_emb": False, "sink": True, "pfrac": 0.1, "flash": True, "dropout": 0.1}
# LayerNorm without bias, GELU, biased Linears, d_head independent of d_model / n_head, tied, the old n_mlp key.
CONFIG_B = {"block_size": 10, "vocab_size": 13, "n_layer": 2, "n_head": 2, "d_head": 5, "d_model": 8, "n_mlp": 16,
            "bias": True, "ln_bias": False, "rms_norm": False, "activation_type": "gelu", "afrac": 0.75,
            "afrac_loctypes": "mlp_in,attn_q,attn_out,mlp_out,resid_post_mlp", "tied_unembed": True, "sink": False,
            "enable_bigram_table": False, "d_pos_emb": None, "tokenizer_name": "tinypython_2k"}
CONFIGS = {"A": CONFIG_A, "B": CONFIG_B}
SHAPE = (4, 6)  # one token shape for the random-config tests, so each compiled forward is reused


def _random_state(raw: dict, seed: int = 0) -> dict:
    config = GPTConfig.from_dict(raw)
    rng = np.random.default_rng(seed)
    state = {key: rng.normal(scale=0.5, size=shape) for key, shape in state_dict_shapes(config).items()}
    for key in state:
        if "ln" in key and key.endswith(".weight"):
            state[key] = 1.0 + 0.3 * state[key]
    if config.tied_unembed:
        state["lm_head.weight"] = state["transformer.wte.weight"]
    return state


def _random_circuit(config: GPTConfig, seed: int = 1) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    widths = hook_widths(config)
    kept = {loc: np.flatnonzero(rng.random(width) < 0.6) for loc, width in widths.items()}
    means = {loc: rng.normal(size=width) for loc, width in widths.items()}
    return kept, means


# ------------------------------------------------------------------------------ independent numpy reference

def _reference_forward(state: dict, raw: dict, tokens: np.ndarray, kept: dict | None = None,
                       means: dict | None = None) -> np.ndarray:
    """circuit_sparsity's eval forward written out in plain numpy, one sequence, position and head at a time."""
    kept = kept or {}
    n_head, d_head, n_layer = raw["n_head"], raw["d_head"], raw["n_layer"]
    sparse_at = raw["afrac_loctypes"].split(",") if raw.get("afrac") else []
    cat = raw.get("d_pos_emb") is not None

    def hook(name, x):
        if name not in kept:
            return x
        mask = np.zeros(x.shape[-1])
        mask[kept[name]] = 1.0
        return x * mask + means[name] * (1.0 - mask)

    def topk(x, loctype):
        if loctype not in sparse_at:
            return x
        k = int(raw["afrac"] * x.shape[-1])
        out = np.zeros_like(x)
        for row in range(x.shape[0]):
            top = np.argsort(-np.abs(x[row]), kind="stable")[:k]
            out[row, top] = x[row, top]
        return out

    def norm(prefix, x):
        weight = state[prefix + ".weight"]
        if raw["rms_norm"]:
            return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + np.finfo(np.float64).eps) * weight
        y = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * weight
        return y + state[prefix + ".bias"] if raw["ln_bias"] else y

    def linear(prefix, x):
        y = x @ state[prefix + ".weight"].T
        return y + state[prefix + ".bias"] if raw["bias"] else y

    def mlp_activation(x):
        if raw["activation_type"] == "relu":
            return np.maximum(x, 0.0)
        return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))

    def resid(x, loctype):
        if raw.get("residual_activation_type") == "relu":
            x = np.maximum(x, 0.0)
        return topk(x, loctype)

    def block_input(x, pos, block, ln, ln_pos):
        a = norm(f"{block}.{ln}", x)
        return np.concatenate([a, norm(f"{block}.{ln_pos}", pos)], axis=-1) if cat else a

    width = n_head * d_head
    out = []
    for seq in tokens:
        length = len(seq)
        pos = state["transformer.wpe.weight"][:length]
        x = state["transformer.wte.weight"][seq] + (0.0 if cat else pos)
        for layer in range(n_layer):
            block = f"transformer.h.{layer}"
            x = hook(f"{layer}.resid_in", x)
            a = hook(f"{layer}.attn.act_in", topk(block_input(x, pos, block, "ln_1", "ln_p1"), "attn_in"))
            qkv = linear(f"{block}.attn.c_attn", a)
            q, k, v = qkv[:, :width], qkv[:, width:2 * width], qkv[:, 2 * width:]
            k = hook(f"{layer}.attn.k", topk(k, "attn_k"))
            q = hook(f"{layer}.attn.q", topk(q, "attn_q"))
            v = hook(f"{layer}.attn.v", topk(v, "attn_v"))
            y = np.zeros((length, width))
            for head in range(n_head):
                cols = slice(head * d_head, (head + 1) * d_head)
                for t in range(length):
                    scores = k[:t + 1, cols] @ q[t, cols] / math.sqrt(d_head)
                    top = scores.max()
                    weights = np.exp(scores - top)
                    denominator = weights.sum()
                    if raw.get("sink"):
                        denominator += np.exp(state[f"{block}.attn.attn_imp.sink_logit"][head] - top)
                    y[t, cols] = (weights / denominator) @ v[:t + 1, cols]
            y = hook(f"{layer}.attn.y", y)
            x = resid(x + hook(f"{layer}.attn.resid_delta", topk(linear(f"{block}.attn.c_proj", y), "attn_out")),
                      "resid_post_attn")
            x = hook(f"{layer}.resid_mid", x)
            m = hook(f"{layer}.mlp.act_in", topk(block_input(x, pos, block, "ln_2", "ln_p2"), "mlp_in"))
            h = hook(f"{layer}.mlp.post_act", topk(mlp_activation(linear(f"{block}.mlp.c_fc", m)), "mlp_neuron"))
            x = resid(x + hook(f"{layer}.mlp.resid_delta", topk(linear(f"{block}.mlp.c_proj", h), "mlp_out")),
                      "resid_post_mlp")
        x = hook("final_resid", x)
        unembed = state["transformer.wte.weight" if raw["tied_unembed"] else "lm_head.weight"]
        row = norm("transformer.ln_f", x) @ unembed.T + state.get("final_logits_bias", 0.0)
        if raw.get("enable_bigram_table"):
            row = row + state["bigram_table"][seq]
        out.append(row)
    return np.stack(out)


# --------------------------------------------------------------------------------------------- fixtures

def _fixture(variant: str) -> Path:
    folder = FIXTURES / variant
    if not (folder / "reference.npz").is_file():
        pytest.skip(f"circuit_sparsity fixtures not found at {FIXTURES}")
    return folder


@pytest.mark.parametrize("variant", VARIANTS)
def test_fixture_parity(variant):
    folder = _fixture(variant)
    model = load_model(folder / "model", folder / "weights.npz")
    ref, acts = np.load(folder / "reference.npz"), np.load(folder / "acts.npz")
    tokens, hooks = ref["tokens"], [str(h) for h in ref["hook_names"]]
    assert hooks == list(hook_widths(model.config))
    means = {h: ref[f"mean__{h}"] for h in hooks}

    clean = np.asarray(logits(model.params, model.config, tokens))
    assert clean.dtype == np.float64 and np.abs(clean - ref["logits"]).max() <= TOLERANCE

    circuit = make_circuit(model.config, {str(loc): ref[f"keep__{loc}"] for loc in ref["circuit_locations"]}, means)
    got, recorded = activations(model.params, model.config, tokens, circuit)
    assert np.abs(np.asarray(got) - ref["circuit_logits"]).max() <= TOLERANCE
    for h in hooks:
        assert np.abs(np.asarray(recorded[h]) - acts[f"circuit_act__{h}"]).max() <= TOLERANCE, h

    # every hook present with an all-ones mask is the clean model (and reuses the compiled circuit forward)
    _, recorded = activations(model.params, model.config, tokens, make_circuit(model.config, {}, means))
    for h in hooks:
        assert np.abs(np.asarray(recorded[h]) - acts[f"act__{h}"]).max() <= TOLERANCE, h
    for i, h in enumerate(hooks):
        single, _ = activations(model.params, model.config, tokens, make_circuit(model.config, {h: ref[f"keep__{h}"]},
                                                                                  means))
        assert np.abs(np.asarray(single) - ref["single_logits"][i]).max() <= TOLERANCE, h


@pytest.mark.parametrize("variant", VARIANTS)
def test_fixture_torch_files_match_their_numpy_mirrors(variant):
    pytest.importorskip("torch")
    folder = _fixture(variant)
    from_pt, from_npz = load_model(folder / "model"), load_model(folder / "model", folder / "weights.npz")
    assert from_pt.config == from_npz.config and from_pt.fingerprint == from_npz.fingerprint
    ref = np.load(folder / "reference.npz")
    circuit = load_circuit(from_pt.config, folder / "viz_data.pt", folder / "means.pt")
    assert sorted(circuit.kept) == sorted(str(loc) for loc in ref["circuit_locations"])
    for loc, (mask, mean) in circuit.hooks.items():
        np.testing.assert_array_equal(mean, ref[f"mean__{loc}"])
        if loc in circuit.kept:
            np.testing.assert_array_equal(np.flatnonzero(mask), ref[f"keep__{loc}"])
        else:
            assert mask.min() == 1.0


def test_eval_logits_on_a_fixture_with_and_without_its_circuit(tmp_path):
    pytest.importorskip("torch")
    folder = _fixture("sink")
    ref = np.load(folder / "reference.npz")
    np.save(tmp_path / "tokens.npy", ref["tokens"])
    out = eval_logits(folder / "model", tmp_path / "tokens.npy", tmp_path / "clean.npy")
    assert np.abs(np.load(tmp_path / "clean.npy") - ref["logits"]).max() <= TOLERANCE
    np.testing.assert_array_equal(out, np.load(tmp_path / "clean.npy"))
    eval_logits(folder / "model", tmp_path / "tokens.npy", tmp_path / "circuit.npy", folder / "viz_data.pt",
                folder / "means.pt")
    written = np.load(tmp_path / "circuit.npy")
    assert written.dtype == np.float64 and written.shape == ref["circuit_logits"].shape
    assert np.abs(written - ref["circuit_logits"]).max() <= TOLERANCE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["circuit.npy", "clean.npy", "tokens.npy"]


# ------------------------------------------------------------------------- other flag combinations

@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_random_configs_match_the_numpy_reference(name):
    raw = CONFIGS[name]
    config = GPTConfig.from_dict(raw)
    state = _random_state(raw)
    model = model_from_state_dict(config, state)
    tokens = np.random.default_rng(2).integers(0, config.vocab_size, size=SHAPE)
    reference_raw = {**raw, "d_mlp": config.d_mlp}
    expected = _reference_forward(state, reference_raw, tokens)
    np.testing.assert_allclose(np.asarray(logits(model.params, config, tokens)), expected, rtol=0, atol=1e-10)
    kept, means = _random_circuit(config)
    circuit = make_circuit(config, kept, means)
    expected = _reference_forward(state, reference_raw, tokens, kept, means)
    np.testing.assert_allclose(np.asarray(logits(model.params, config, tokens, circuit)), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_keeping_every_channel_is_the_clean_model(name):
    config = GPTConfig.from_dict(CONFIGS[name])
    model = model_from_state_dict(config, _random_state(CONFIGS[name]))
    tokens = np.random.default_rng(3).integers(0, config.vocab_size, size=SHAPE)
    _, means = _random_circuit(config)
    everything = make_circuit(config, {loc: np.arange(w) for loc, w in hook_widths(config).items()}, means)
    # x*1 + mean*0 is x exactly; the two programs compile separately, so allow float64 round-off elsewhere
    np.testing.assert_allclose(np.asarray(logits(model.params, config, tokens, everything)),
                               np.asarray(logits(model.params, config, tokens)), rtol=0, atol=1e-12)


def test_ablating_a_whole_residual_stream_cuts_off_the_tokens():
    config = GPTConfig.from_dict(CONFIG_B)  # no bigram table: logits can only see tokens through the residual
    model = model_from_state_dict(config, _random_state(CONFIG_B))
    _, means = _random_circuit(config)
    circuit = make_circuit(config, {"1.resid_in": []}, means)
    rng = np.random.default_rng(4)
    first, second = (rng.integers(0, config.vocab_size, size=SHAPE) for _ in range(2))
    out_first = np.asarray(logits(model.params, config, first, circuit))
    out_second = np.asarray(logits(model.params, config, second, circuit))
    np.testing.assert_allclose(out_first, out_second, rtol=0, atol=1e-12)
    assert np.abs(np.asarray(logits(model.params, config, first)) - out_first).max() > 1e-3


def test_forward_compiles_once_per_shape():
    config = GPTConfig.from_dict(CONFIG_A)
    model = model_from_state_dict(config, _random_state(CONFIG_A))
    tokens = np.random.default_rng(5).integers(0, config.vocab_size, size=SHAPE)
    logits(model.params, config, tokens)
    before = _forward._cache_size()
    logits(model.params, config, tokens + 0)
    assert _forward._cache_size() == before


# --------------------------------------------------------------------------------------------- config

def test_config_ignores_keys_that_do_not_change_eval():
    config = GPTConfig.from_dict(CONFIG_A)
    assert {"bigram_table_rank", "pfrac", "flash", "dropout", "learnable_bigram_table"} <= set(config.ignored_keys)
    assert config.afrac_loctypes == ("attn_in", "attn_k", "attn_v", "mlp_neuron", "resid_post_attn")
    assert GPTConfig.from_dict({**CONFIG_A, "some_future_flag": 3}) == config
    b = GPTConfig.from_dict(CONFIG_B)
    assert b.d_mlp == 16 and b.d_model_in == 8 and b.d_attn == 10
    assert GPTConfig.from_dict({"n_head": 4, "d_model": 16, "d_head": None, "d_mlp": None}).d_head == 4
    assert GPTConfig(d_model=16, n_head=4).d_mlp == 64


@pytest.mark.parametrize("key, value, match", [
    ("activation_type", "silu", "activation_type 'silu' is not supported; use 'gelu' or 'relu'"),
    ("residual_activation_type", "tanh", "residual_activation_type 'tanh' is not supported"),
    ("afrac", 1.5, r"afrac must be in \(0, 1\] or null, got 1.5"),
    ("afrac_loctypes", "attn_in,mlp_bogus", r"unknown afrac_loctypes \['mlp_bogus'\]; known location types: attn_in"),
    ("n_head", "2", "n_head must be an integer, got '2'"),
    ("bias", "yes", "bias must be true or false, got 'yes'"),
    ("d_model", 0, "d_model must be at least 1, got 0"),
    ("use_tied_aux_matrix", True, "use_tied_aux_matrix=true is not supported"),
    ("afrac", 10**400, r"afrac must be in \(0, 1\] or null, got 1000000000"),  # was OverflowError in float()
    ("afrac", -10**400, r"afrac must be in \(0, 1\] or null, got -1000000000"),
])
def test_config_rejects_values_it_cannot_run(key, value, match):
    with pytest.raises(SparseGPTError, match=match):
        GPTConfig.from_dict({**CONFIG_B, key: value}, "beeg_config.json")


# ---------------------------------------------------------------------------------------- checkpoints

def _model_dir(tmp_path: Path, raw: dict, state: dict) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "beeg_config.json").write_text(json.dumps(raw))
    np.savez(folder / "weights.npz", **{k: np.asarray(v, dtype=np.float32) for k, v in state.items()})
    return folder


def test_missing_files_are_reported(tmp_path):
    with pytest.raises(SparseGPTError, match="model directory not found"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(SparseGPTError, match="config file not found: .*beeg_config.json"):
        load_model(tmp_path)
    (tmp_path / "beeg_config.json").write_text(json.dumps(CONFIG_B))
    with pytest.raises(SparseGPTError, match="no final_model.pt or weights.npz in"):
        load_model(tmp_path)
    with pytest.raises(SparseGPTError, match="weights file not found: .*other.npz"):
        load_model(tmp_path, tmp_path / "other.npz")
    (tmp_path / "beeg_config.json").write_text("{not json")
    with pytest.raises(SparseGPTError, match="is not valid JSON"):
        load_model(tmp_path)


def _drop(state):
    del state["transformer.h.0.mlp.c_fc.weight"]


def _extra(state):
    state["transformer.h.0.extra"] = np.zeros(3)


def _reshape(state):
    state["transformer.h.1.attn.c_proj.weight"] = np.zeros((8, 9))


def _nan(state):
    state["transformer.ln_f.weight"][2] = np.nan


@pytest.mark.parametrize("mutate, match", [
    (_drop, r"missing keys \['transformer.h.0.mlp.c_fc.weight'\]"),
    (_extra, r"unexpected keys \['transformer.h.0.extra'\]"),
    (_reshape, r"wrong shapes: transformer.h.1.attn.c_proj.weight \(expected \[8, 10\], got \[8, 9\]\)"),
    (_nan, r"NaN or inf values in \['transformer.ln_f.weight'\]"),
])
def test_state_dict_problems_are_errors(tmp_path, mutate, match):
    state = _random_state(CONFIG_B)
    mutate(state)
    with pytest.raises(SparseGPTError, match=match) as info:
        load_model(_model_dir(tmp_path, CONFIG_B, state))
    assert isinstance(info.value, CircuitError) and "\n" not in str(info.value)


def test_every_state_dict_problem_is_listed_in_one_error():
    state = _random_state(CONFIG_B)
    for mutate in (_drop, _extra, _reshape, _nan):
        mutate(state)
    with pytest.raises(SparseGPTError, match="missing keys .*; unexpected keys .*; wrong shapes: .*; NaN or inf"):
        model_from_state_dict(GPTConfig.from_dict(CONFIG_B), state)


def test_optional_and_tied_entries():
    config = GPTConfig.from_dict(CONFIG_B)
    state = _random_state(CONFIG_B)
    full = model_from_state_dict(config, state)
    del state["final_logits_bias"], state["transformer.wte.weight"]
    state["transformer.h.0.attn.bias"] = np.tril(np.ones((10, 10)))[None, None]  # causal mask of flash=False models
    partial = model_from_state_dict(config, state)
    np.testing.assert_array_equal(partial.params["transformer.wte.weight"], full.params["lm_head.weight"])
    assert float(np.abs(partial.params["final_logits_bias"]).max()) == 0.0
    assert "transformer.h.0.attn.bias" not in partial.params
    state = _random_state(CONFIG_B)
    state["lm_head.weight"] = state["lm_head.weight"] + 1.0
    with pytest.raises(SparseGPTError, match="tied_unembed is true but lm_head.weight and transformer.wte.weight"):
        model_from_state_dict(config, state)


def test_torch_missing_is_reported_with_the_install_hint(tmp_path, monkeypatch):
    folder = _model_dir(tmp_path, CONFIG_B, _random_state(CONFIG_B))
    (folder / "final_model.pt").write_bytes(b"not really a checkpoint")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(SparseGPTError, match=r"needs torch; pip install jaxscd\[circuit-sparsity\]"):
        load_model(folder)


def test_torch_checkpoint_errors(tmp_path):
    torch = pytest.importorskip("torch")
    raw = CONFIG_B
    state = {k: torch.tensor(v, dtype=torch.float32) for k, v in _random_state(raw).items()}
    folder = _model_dir(tmp_path, raw, _random_state(raw))
    torch.save({k: v.to(torch.bfloat16) for k, v in state.items()}, folder / "final_model.pt")
    assert load_model(folder).params["transformer.wte.weight"].dtype == np.float64
    state["transformer.h.1.mlp.c_proj.bias"][0] = float("inf")
    torch.save(state, folder / "final_model.pt")
    with pytest.raises(SparseGPTError, match=r"NaN or inf values in \['transformer.h.1.mlp.c_proj.bias'\]"):
        load_model(folder)
    torch.save(torch.zeros(3), folder / "final_model.pt")
    with pytest.raises(SparseGPTError, match="holds a Tensor, not a state dict"):
        load_model(folder)
    (folder / "final_model.pt").write_bytes(b"garbage")
    with pytest.raises(SparseGPTError, match="could not read .*final_model.pt.* \\(state dict\\)"):
        load_model(folder)


def test_torch_circuit_file_errors(tmp_path):
    torch = pytest.importorskip("torch")
    config = GPTConfig.from_dict(CONFIG_B)
    means = {loc: torch.zeros(w, dtype=torch.float64) for loc, w in hook_widths(config).items()}
    torch.save(means, tmp_path / "means.pt")
    torch.save({"circuit_data": {"0.attn.q": torch.tensor([0, 3])}}, tmp_path / "viz.pt")
    assert list(load_circuit(config, tmp_path / "viz.pt", tmp_path / "means.pt").kept) == ["0.attn.q"]
    torch.save({"samples": {}}, tmp_path / "viz.pt")
    with pytest.raises(SparseGPTError, match="has no 'circuit_data' mapping"):
        load_circuit(config, tmp_path / "viz.pt", tmp_path / "means.pt")
    torch.save({"circuit_data": {}, "importances": {"beeg_model_config": CONFIG_A}}, tmp_path / "viz.pt")
    with pytest.raises(SparseGPTError, match="was made for a different model config"):
        load_circuit(config, tmp_path / "viz.pt", tmp_path / "means.pt")
    with pytest.raises(SparseGPTError, match="means.pt not found"):
        load_circuit(config, tmp_path / "viz.pt", tmp_path / "missing.pt")


# --------------------------------------------------------------------------------------------- circuits

def test_circuit_errors():
    config = GPTConfig.from_dict(CONFIG_A)
    _, means = _random_circuit(config)
    with pytest.raises(SparseGPTError, match=r"unknown hook locations \['0.attn.z'\]; valid locations: 0.resid_in, "
                                             r"0.attn.act_in, 0.attn.k"):
        make_circuit(config, {"0.attn.z": [1]}, means)
    with pytest.raises(SparseGPTError, match=r"channel index 12 out of range at '0.mlp.post_act' \(width 12\)"):
        make_circuit(config, {"0.mlp.post_act": [0, 12]}, means)
    with pytest.raises(SparseGPTError, match=r"channel index -1 out of range at '1.attn.v' \(width 6\)"):
        make_circuit(config, {"1.attn.v": [-1]}, means)
    with pytest.raises(SparseGPTError, match="must be a 1-D list of integers, got dtype float64"):
        make_circuit(config, {"1.attn.v": [0.5]}, means)
    with pytest.raises(SparseGPTError, match=r"mean for '0.attn.act_in' has shape \[8\]; expected \[12\]"):
        make_circuit(config, {}, {**means, "0.attn.act_in": np.zeros(8)})  # act_in carries the 4 position channels
    with pytest.raises(SparseGPTError, match="mean for 'final_resid' is not a numeric array"):
        make_circuit(config, {}, {**means, "final_resid": ["a", "b"]})
    with pytest.raises(SparseGPTError, match="no mean for circuit location 'final_resid'"):
        make_circuit(config, {"final_resid": [0]}, {k: v for k, v in means.items() if k != "final_resid"})
    other = GPTConfig.from_dict(CONFIG_B)
    model = model_from_state_dict(other, _random_state(CONFIG_B))
    with pytest.raises(SparseGPTError, match="the circuit was built for a different model config"):
        logits(model.params, other, np.zeros((1, 3), dtype=np.int64), make_circuit(config, {}, means))


# ---------------------------------------------------------------------------------------------- eval

def test_eval_logits_writes_float64_logits(tmp_path):
    state = _random_state(CONFIG_B)
    folder = _model_dir(tmp_path, CONFIG_B, state)
    tokens = np.random.default_rng(6).integers(0, 13, size=(2 * SHAPE[0] - 1, SHAPE[1]))  # two chunks, one padded
    np.save(tmp_path / "tokens.npy", tokens)
    out = eval_logits(folder, tmp_path / "tokens.npy", tmp_path / "logits.npy", batch_size=SHAPE[0])
    written = np.load(tmp_path / "logits.npy")
    np.testing.assert_array_equal(written, out)
    assert written.dtype == np.float64 and written.shape == (*tokens.shape, 13)
    model = load_model(folder)
    padded = np.concatenate([tokens, tokens[-1:]])
    expected = np.concatenate([np.asarray(logits(model.params, model.config, padded[i:i + SHAPE[0]]))
                               for i in (0, SHAPE[0])])[:len(tokens)]
    np.testing.assert_allclose(written, expected, rtol=0, atol=1e-6)  # the weights went through float32
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("tokens, match", [
    (None, "tokens file not found"),
    (np.arange(5), r"tokens must be an integer array \[batch, positions\], got shape \[5\]"),
    (np.zeros((2, 3)), "tokens must be integers, got dtype float64"),
    (np.full((2, 3), 13), r"token id 13 is outside the vocabulary 0..12"),
    (np.zeros((1, 11), dtype=np.int64), "11 positions exceed the model's block_size 10"),
])
def test_eval_logits_rejects_bad_tokens(tmp_path, tokens, match):
    folder = _model_dir(tmp_path, CONFIG_B, _random_state(CONFIG_B))
    if tokens is not None:
        np.save(tmp_path / "tokens.npy", tokens)
    with pytest.raises(SparseGPTError, match=match):
        eval_logits(folder, tmp_path / "tokens.npy", tmp_path / "out.npy")
    assert not (tmp_path / "out.npy").exists()


def test_eval_logits_argument_errors(tmp_path):
    folder = _model_dir(tmp_path, CONFIG_B, _random_state(CONFIG_B))
    np.save(tmp_path / "tokens.npy", np.zeros((1, 2), dtype=np.int64))
    with pytest.raises(SparseGPTError, match="give both --viz .* and --means"):
        eval_logits(folder, tmp_path / "tokens.npy", tmp_path / "out.npy", viz=tmp_path / "viz.pt")
    np.savez(tmp_path / "tokens.npz", tokens=np.zeros((1, 2), dtype=np.int64))
    with pytest.raises(SparseGPTError, match="is an .npz archive; save one int array with numpy.save"):
        eval_logits(folder, tmp_path / "tokens.npz", tmp_path / "out.npy")
    with pytest.raises(SparseGPTError, match="output folder not found"):
        eval_logits(folder, tmp_path / "tokens.npy", tmp_path / "no" / "out.npy")


# ------------------------------------------------------------------------------------------ templates

TEMPLATE = {"alphabet": {"x": 3, "y": 5, "z": 7}, "prefix": [1], "suffix": [2], "target": 4, "alternative": 9,
            "class_names": ["nine", "four"], "min_len": 1, "max_len": 5}


def test_template_circuit_returns_alternative_and_target_logits_at_the_last_position(tmp_path):
    (tmp_path / "template.json").write_text(json.dumps(TEMPLATE))
    template = load_template(tmp_path / "template.json")
    assert template.alphabet == ("x", "y", "z") and template.class_names == ("nine", "four")
    config = GPTConfig.from_dict(CONFIG_A)
    model = model_from_state_dict(config, _random_state(CONFIG_A))
    domain = np.random.default_rng(7).integers(0, 3, size=(SHAPE[0], SHAPE[1] - 2))
    prompts = np.concatenate([np.ones((SHAPE[0], 1), int), np.array([3, 5, 7])[domain], np.full((SHAPE[0], 1), 2)],
                             axis=1)
    circuit = make_circuit(config, *_random_circuit(config))
    wrapped = sparse_gpt_circuit(model, circuit, template, batch_size=3)  # a full chunk and a padded one
    assert wrapped.class_names == ("nine", "four")
    expected = np.asarray(logits(model.params, config, prompts, circuit))[:, -1, [9, 4]]
    np.testing.assert_allclose(wrapped.forward(domain), expected, rtol=0, atol=1e-12)
    assert sparse_gpt_circuit(model, None, template).fingerprint != wrapped.fingerprint
    with pytest.raises(SparseGPTError, match=r"domain token ids must be in 0..2"):
        wrapped.forward(np.array([[0, 3]]))


@pytest.mark.parametrize("change, match", [
    ({"alphabet": {"x": 3}}, "alphabet must map at least 2 token names"),
    ({"alphabet": {"x": 3, "y": 3}}, "alphabet maps two names to the same model token id"),
    ({"target": 9}, "target and alternative are both token 9"),
    ({"prefix": [1, -2]}, r"prefix\[1\] must be a model token id"),
    ({"class_names": ["only"]}, "class_names must list 2 names"),
    ({"min_len": 4, "max_len": 2}, "lengths must satisfy 1 <= min_len <= max_len"),
    ({"colour": "blue"}, r"unknown keys \['colour'\]"),
    ({"target": None}, "target must be a model token id"),
])
def test_template_errors(change, match):
    with pytest.raises(SparseGPTError, match=match):
        template_from_dict({**TEMPLATE, **change})


def test_template_must_fit_the_model(tmp_path):
    with pytest.raises(SparseGPTError, match="template file not found"):
        load_template(tmp_path / "missing.json")
    with pytest.raises(SparseGPTError, match=r"missing keys \['max_len'\]"):
        template_from_dict({k: v for k, v in TEMPLATE.items() if k != "max_len"})
    model = model_from_state_dict(GPTConfig.from_dict(CONFIG_A), _random_state(CONFIG_A))
    with pytest.raises(SparseGPTError, match=r"template token id 11 is outside the model's vocabulary 0..10"):
        sparse_gpt_circuit(model, None, template_from_dict({**TEMPLATE, "target": 11}))
    with pytest.raises(SparseGPTError, match="prefix \\+ max_len \\+ suffix = 11 positions exceed block_size 10"):
        sparse_gpt_circuit(model, None, template_from_dict({**TEMPLATE, "max_len": 9}))


def test_max_len_lowers_the_template_own_and_is_what_is_checked(tmp_path):
    # the template's own max_len was checked against the block size even when --max-len lowered it
    from jaxscd.circuits.sources import resolve
    from jaxscd.domain import DomainError
    from jaxscd.pipeline import choose_domain

    folder = _model_dir(tmp_path, CONFIG_A, _random_state(CONFIG_A))
    (tmp_path / "t.json").write_text(json.dumps({**TEMPLATE, "max_len": 9}))  # 1 + 9 + 1 = 11 > block_size 10
    model = load_model(folder)
    template = load_template(tmp_path / "t.json")
    assert sparse_gpt_circuit(model, None, template, max_len=8).forward.max_positions == 8
    with pytest.raises(SparseGPTError, match="prefix \\+ max_len \\+ suffix = 11 positions .*lower max_len to 8"):
        sparse_gpt_circuit(model, None, template, max_len=9)
    source = resolve({"kind": "circuit_sparsity", "model_dir": str(folder), "template": str(tmp_path / "t.json"),
                      "viz": None, "means": None})
    assert source.max_positions == 8 and choose_domain(source, None, 4, None, None).max_len == 4
    with pytest.raises(DomainError, match="has max_len 9, more than the 8 positions its circuit accepts; pass "
                                          "--max-len 8 or less"):
        choose_domain(source, None, None, None, None)
    with pytest.raises(DomainError, match="--max-len 9 exceeds the 8 positions"):
        choose_domain(source, None, 9, None, None)
    assert source.circuit.forward(np.zeros((2, SHAPE[1] - 2), dtype=np.int64)).shape == (2, 2)
    with pytest.raises(SparseGPTError, match="the template fits sequences of at most 8"):
        source.circuit.forward(np.zeros((1, 9), dtype=np.int64))


@pytest.mark.parametrize("text, match", [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),  # was RecursionError
    ('{"alphabet": {"x": 3, "y": 5}, "target": 4, "alternative": 9, "max_len": ' + "9" * 5000 + "}",
     "not valid JSON: Exceeds the limit"),
    (b"\xff\xfe{}", "not valid JSON"),
])
def test_hostile_template_files_are_one_line(tmp_path, text, match):
    path = tmp_path / "t.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(SparseGPTError, match=match) as info:
        load_template(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("change, match", [
    ({"target": 10**400}, "template token id 1{400} is outside the model's vocabulary"),  # 400 digits: an int
    ({"prefix": [1, 10**400]}, "template token id 1{400} is outside"),
    ({"max_len": 10**400}, "positions exceed block_size 10; lower max_len to 8"),
])
def test_a_400_digit_integer_in_a_template_is_one_line(change, match):
    model = model_from_state_dict(GPTConfig.from_dict(CONFIG_A), _random_state(CONFIG_A))
    with pytest.raises(SparseGPTError, match=match.replace("1{400}", "10{400}")):
        sparse_gpt_circuit(model, None, template_from_dict({**TEMPLATE, **change}))


def test_a_config_larger_than_its_weights_is_refused_before_its_key_table(tmp_path):
    folder = _model_dir(tmp_path, CONFIG_B, _random_state(CONFIG_B))
    (folder / "beeg_config.json").write_text(json.dumps({**CONFIG_B, "n_layer": 10**12}))  # a loop of 10**12
    with pytest.raises(SparseGPTError, match="declares 1,000,000,000,000 layers, at least .* tensors, but "
                                             "weights.npz holds 25; check n_layer"):
        load_model(folder)
    (folder / "beeg_config.json").write_text(json.dumps({**CONFIG_B, "d_model": 10**9, "n_head": 1, "d_head": 1}))
    with pytest.raises(SparseGPTError, match="declares a model of .* parameters, about .* GiB as float64, more "
                                             "than the .* GiB of this machine"):
        load_model(folder)


def test_circuit_files_go_together(tmp_path):
    # distill --circuit-sparsity --viz without --means used to reach Path(None): now one clear error
    config = load_model(_model_dir(tmp_path, CONFIG_B, _random_state(CONFIG_B))).config
    assert load_circuit(config, None, None) is None
    for viz, means in ((tmp_path / "viz.pt", None), (None, tmp_path / "means.pt")):
        with pytest.raises(SparseGPTError, match="give both --viz .* and --means"):
            load_circuit(config, viz, means)
