"""Orbit bounds for circuit_sparsity checkpoints (jaxscd.beyond.checkpoint, checkpoint_exact): the interval orbit
classes agree with the exhaustive truth table of the circuit on every input (for a counting model, random models
and mutants), the arb second implementation agrees, structures without the symmetry are refused in one line, and
distill at length 32 ends PROVED or REFUTED with a bundle that verifies, tampering fails."""

import json
import shutil

import numpy as np
import pytest

from jaxscd.beyond import model_of
from jaxscd.beyond.checkpoint import CheckpointModel, orbit_classes
from jaxscd.beyond.symmetry import orbits
from jaxscd.circuits.sparse_gpt import (GPTConfig, hook_widths, make_circuit, model_from_state_dict,
                                        sparse_gpt_circuit, state_dict_shapes, template_from_dict)
from jaxscd.kernels.evaluate import run_circuit
from jaxscd.verify.prove import Verdict

BOS, A, B, TARGET, ALT = 0, 1, 2, 3, 4
TEMPLATE = {"alphabet": {"a": A, "b": B}, "prefix": [BOS], "target": TARGET, "alternative": ALT,
            "class_names": ["b", "a"], "min_len": 1, "max_len": 6}
COUNTING = {"block_size": 40, "vocab_size": 5, "n_layer": 1, "n_head": 1, "d_head": 4, "d_model": 4, "d_mlp": 4,
            "bias": False, "ln_bias": False, "rms_norm": True, "activation_type": "relu", "afrac": None,
            "tied_unembed": False}


def counting_state(bos_value: float = 0.5) -> dict:
    """a - b + bos_value over n + 1 positions (uniform attention) into channel 3: class a iff #a - #b >= 0 (for
    bos_value in (0, 1))."""
    state = {key: np.zeros(shape) for key, shape in state_dict_shapes(GPTConfig.from_dict(COUNTING)).items()}
    state["transformer.wte.weight"][[A, B, BOS], [0, 1, 2]] = 1.0
    for key in ("transformer.h.0.ln_1.weight", "transformer.h.0.ln_2.weight", "transformer.ln_f.weight"):
        state[key][:] = 1.0
    c_attn = state["transformer.h.0.attn.c_attn.weight"]  # q = 0: uniform weights; v = the normalised input
    c_attn[8:12, :] = np.eye(4)
    proj = state["transformer.h.0.attn.c_proj.weight"]  # channel 3 += 4 (v_a - v_b + bos_value v_bos) (v = 2 e_i)
    proj[3, 0], proj[3, 1], proj[3, 2] = 4.0, -4.0, 4.0 * bos_value
    state["lm_head.weight"][TARGET, 3] = 1.0
    return state


def random_config(**changes) -> dict:
    raw = {"block_size": 12, "vocab_size": 6, "n_layer": 1, "n_head": 2, "d_head": 3, "d_model": 8, "d_mlp": 12,
           "bias": True, "ln_bias": True, "rms_norm": False, "activation_type": "gelu", "afrac": 0.5,
           "afrac_loctypes": "attn_in,attn_out,mlp_in,mlp_neuron", "tied_unembed": False, "sink": True,
           "enable_bigram_table": True}
    return {**raw, **changes}


def random_state(raw: dict, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    state = {key: rng.normal(scale=0.8, size=shape) for key, shape in state_dict_shapes(GPTConfig.from_dict(raw)).items()}
    state["transformer.wpe.weight"][:] = 0.0
    return state


def circuit_of(raw: dict, state: dict, node=None, template: dict = TEMPLATE):
    config = GPTConfig.from_dict(raw)
    model = model_from_state_dict(config, state, "tiny")
    return sparse_gpt_circuit(model, node, template_from_dict(template), max_len=1)


def exhaustive_agreement(circuit, max_len: int) -> tuple[int, int]:
    """(decided orbits, sequences checked): every sequence of every decided orbit has the orbit's class as its
    float64 decision, with a margin above the float bound."""
    model = model_of(circuit)
    orb = orbits(2, range(1, max_len + 1))
    classes = orbit_classes(model, orb)
    checked = 0
    for n in range(1, max_len + 1):
        tokens = np.array(np.meshgrid(*[[0, 1]] * n, indexing="ij")).reshape(n, -1).T.astype(np.int32)
        decision, gap, _ = run_circuit(circuit, tokens)
        counts = np.stack([(tokens == 0).sum(1), (tokens == 1).sum(1)], axis=1)
        for row, (c, last) in enumerate(zip(counts, tokens[:, -1])):
            match = np.flatnonzero((orb.length == n) & (orb.last == last) & (orb.counts == c).all(axis=1))
            assert len(match) == 1
            cls = classes[match[0]]
            if cls >= 0:
                assert decision[row] == cls and gap[row] > model.margin, (tokens[row], cls, decision[row], gap[row])
                checked += 1
    return int((classes >= 0).sum()), checked


def test_counting_model_orbits_equal_the_truth_table():
    circuit = circuit_of(COUNTING, counting_state())
    decided, checked = exhaustive_agreement(circuit, 7)
    assert decided == len(orbits(2, range(1, 8))) and checked == 2 ** 8 - 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_models_and_mutants_agree_with_the_truth_table(seed):
    raw = random_config()
    state = random_state(raw, seed)
    if seed == 2:  # sharp attention: scores of hundreds (exp of an absent token's score would overflow)
        state["transformer.h.0.attn.c_attn.weight"][:6] *= 40
    rng = np.random.default_rng(10 + seed)
    widths = hook_widths(GPTConfig.from_dict(raw))
    kept = {loc: np.flatnonzero(rng.random(w) < 0.7) for loc, w in widths.items() if rng.random() < 0.5}
    node = make_circuit(GPTConfig.from_dict(raw), kept, {loc: rng.normal(size=widths[loc]) for loc in kept})
    decided, _ = exhaustive_agreement(circuit_of(raw, state, node), 7)
    assert decided > 0
    mutant = {k: v.copy() for k, v in state.items()}
    mutant["transformer.h.0.mlp.c_proj.weight"] += rng.normal(scale=0.3, size=mutant[
        "transformer.h.0.mlp.c_proj.weight"].shape)
    exhaustive_agreement(circuit_of(raw, mutant, node), 7)


def test_counting_mutant_flips_the_ties_and_stays_exact():
    """bos_value -0.5: ties (#a == #b) flip to class b; the bounds follow the truth table."""
    circuit = circuit_of(COUNTING, counting_state(-0.5))
    decided, _ = exhaustive_agreement(circuit, 7)
    assert decided == len(orbits(2, range(1, 8)))
    orb = orbits(2, range(1, 8))
    classes = orbit_classes(model_of(circuit), orb)
    assert np.array_equal(classes, (orb.counts[:, 0] > orb.counts[:, 1]).astype(np.int8))


@pytest.mark.parametrize("seed", [0, 3])
def test_ball_second_implementation_agrees_with_the_intervals(seed):
    raw = random_config()
    circuit = circuit_of(raw, random_state(raw, seed))
    model = model_of(circuit)
    exact = model.exact(6)
    assert exact.symmetry_holds(6)
    orb = orbits(2, range(1, 7))
    classes = orbit_classes(model, orb)
    both = 0
    for n in range(1, 7):
        for last in range(2):
            for counts, cls in exact.orbit_classes(n, last, model.margin).items():
                row = np.flatnonzero((orb.length == n) & (orb.last == last) & (orb.counts == counts).all(axis=1))[0]
                if cls is not None and classes[row] >= 0:
                    assert cls == classes[row]
                    both += 1
    assert both > 0


@pytest.mark.parametrize("change, match", [
    (lambda raw, state: state["transformer.wpe.weight"].__setitem__((3, 0), 0.25),
     "position embeddings are not zero \\(position 3 of the prompt\\)"),
    (lambda raw, state: raw.update(n_layer=2), "it has 2 layers"),
    (lambda raw, state: raw.update(d_pos_emb=2), "concatenated"),
])
def test_structures_without_the_symmetry_get_no_orbit_proof(change, match, tmp_path):
    """No symmetry claimed; at length the run is a counterexample search, which never proves."""
    raw, state = dict(COUNTING), counting_state()
    change(raw, state)
    if raw["n_layer"] == 2 or raw.get("d_pos_emb"):
        state = random_state(raw, 0)
    model = model_of(circuit_of(raw, state))
    assert isinstance(model, CheckpointModel) and model.symmetry(32) is None
    assert model.refusal(32) is not None and __import__("re").search(match, model.refusal(32))
    folder = write_checkpoint(tmp_path, raw, state)
    from jaxscd.circuits.sources import resolve
    from jaxscd.pipeline import DistillConfig, distill

    source = resolve({"kind": "circuit_sparsity", "model_dir": str(folder), "template": str(folder / "t.json")})
    result = distill(source, source.domain(1, 32, exhaustive=False), DistillConfig(synth_states=0,
                                                                                   bounds_deadline_s=4))
    assert result.verdict != Verdict.PROVED and result.proof is None
    assert any(__import__("re").search(match, note) and "can refute but not prove" in note for note in result.notes)


def test_prompts_beyond_the_block_size_are_refused():
    model = model_of(circuit_of(COUNTING, counting_state()))
    assert "exceed block_size 40" in model.refusal(40)
    assert model.refusal(39) is None


def write_checkpoint(tmp_path, raw: dict, state: dict):
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    (folder / "beeg_config.json").write_text(json.dumps(raw))
    np.savez(folder / "weights.npz", **state)
    (folder / "t.json").write_text(json.dumps(TEMPLATE))
    return folder


def _failed(report) -> list:
    return [name for name, status, _ in report.checks if status == "FAILED"]


def test_distill_at_length_32_proves_and_the_bundle_verifies(tmp_path):
    from jaxscd.circuits.sources import resolve
    from jaxscd.pipeline import DistillConfig, distill
    from jaxscd.verify.certificate import write_bundle
    from jaxscd.verify.prove import Verdict
    from jaxscd.verify.recheck import recheck

    folder = write_checkpoint(tmp_path, COUNTING, counting_state())
    ref = {"kind": "circuit_sparsity", "model_dir": str(folder), "template": str(folder / "t.json")}
    source = resolve(ref)
    result = distill(source, source.domain(1, 32, exhaustive=False), DistillConfig(synth_states=0))
    assert result.verdict == Verdict.PROVED and result.proof.method == "orbit bounds", result.notes
    bundle = tmp_path / "bundle"
    write_bundle(result, bundle, source.ref, source.circuit.fingerprint)
    report = recheck(bundle)
    assert report.verified, _failed(report)

    tampered = tmp_path / "tampered"
    shutil.copytree(bundle, tampered)
    cert = json.loads((tampered / "certificate.json").read_text())
    cert["long_context"]["orbits"] = cert["long_context"]["orbits"] - 1
    (tampered / "certificate.json").write_text(json.dumps(cert))
    assert not recheck(tampered).verified

    state = counting_state(-0.5)  # the same files, other weights: the ties flip
    np.savez(folder / "weights.npz", **state)
    assert not recheck(bundle).verified


def test_distill_at_length_32_refutes_with_a_rerun_counterexample(tmp_path):
    """A model whose counting breaks at long lengths: a constant offset at the last position outweighs
    #a - #b = -1 from length 20 on. The short search finds #a - #b >= 0, the orbits refute it at length 32."""
    from jaxscd.circuits.sources import resolve
    from jaxscd.pipeline import DistillConfig, distill
    from jaxscd.verify.prove import Verdict

    state = counting_state(0.5)
    state["transformer.wte.weight"][[A, B], 3] = 0.2  # D ~ 0.2 + 8 (#a - #b + 0.5) / (n + 1): -1 flips from n = 20
    folder = write_checkpoint(tmp_path, COUNTING, state)
    source = resolve({"kind": "circuit_sparsity", "model_dir": str(folder), "template": str(folder / "t.json")})
    result = distill(source, source.domain(1, 32, exhaustive=False), DistillConfig(synth_states=0))
    refuted = [t for t in result.tried if t["outcome"] == "refuted"]
    assert refuted, result.tried
    cex = refuted[0]
    logits = np.asarray(source.circuit.forward(np.array([cex["tokens"]], dtype=np.int32)))[0]
    assert int(logits[1] > logits[0]) == cex["circuit"] != cex["program_class"]
    assert result.verdict in (Verdict.REFUTED, Verdict.PROVED, Verdict.UNKNOWN, Verdict.NO_PROGRAM)
