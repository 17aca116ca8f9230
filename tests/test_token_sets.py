"""Token sets in circuit_sparsity templates (a name standing for several model tokens): the template's values and
their one-line errors, the forward over every member combination (the smallest gap, the largest logit kept), the
refusal of a set the model treats differently, the combination cap, the fingerprint, orbit bounds over
sets (each orbit's class holds for every member choice), and distill over a set equal to distill over one member."""

import json

import numpy as np
import pytest

from jaxscd.beyond import model_of
from jaxscd.circuits.sparse_gpt import GPTConfig, SparseGPTError, model_from_state_dict, sparse_gpt_circuit
from jaxscd.circuits.sparse_gpt import template as template_module
from jaxscd.circuits.sparse_gpt.template import _with_scale, expand_members, template_from_dict, worst_member
from jaxscd.kernels.evaluate import float_error_bound, run_circuit
from test_long_checkpoint import A, ALT, B, BOS, COUNTING, TARGET, counting_state

A2, B2 = 5, 6  # copies of A and B: the same embedding row
SETS = {"alphabet": {"a": [A, A2], "b": B}, "prefix": [BOS], "target": TARGET, "alternative": ALT,
        "class_names": ["b", "a"], "min_len": 1, "max_len": 5}
ONE = {**SETS, "alphabet": {"a": A, "b": B}}
RAW = {**COUNTING, "vocab_size": 7}


def twin_state() -> dict:
    """The counting model (class a iff #a >= #b) over 7 tokens: A2 embeds as A, B2 as B."""
    base = counting_state()
    state = {}
    for key, value in base.items():
        if value.shape[:1] == (COUNTING["vocab_size"],):  # wte and lm_head rows: one per token
            value = np.concatenate([value, np.zeros((2, *value.shape[1:]))])
        state[key] = value
    state["transformer.wte.weight"][[A2, B2]] = state["transformer.wte.weight"][[A, B]]
    return state


def circuit_for(template: dict, state: dict | None = None, max_len: int | None = None):
    model = model_from_state_dict(GPTConfig.from_dict(RAW), twin_state() if state is None else state, "tiny")
    return sparse_gpt_circuit(model, None, template_from_dict(template), max_len=max_len)


# ------------------------------------------------------------------------------------------ the template

def test_a_set_is_members_and_its_first_is_the_token_id():
    template = template_from_dict(SETS)
    assert template.members == ((A, A2), (B,)) and template.token_ids == (A, B) and template.has_sets
    assert template_from_dict(ONE).members == ((A,), (B,)) and not template_from_dict(ONE).has_sets
    from jaxscd.circuits.sparse_gpt.template import PromptTemplate
    with pytest.raises(SparseGPTError, match=r"token_ids \[1, 2\] must be the first member of each set"):
        PromptTemplate(("a", "b"), (A, B), members=((A2, A), (B,)))


@pytest.mark.parametrize("alphabet, match", [
    ({"a": [], "b": B}, r"alphabet\['a'\] is an empty token set; list at least one model token id"),
    ({"a": [A, A], "b": B}, r"alphabet\['a'\] lists a token id twice: \[1, 1\]; list each member once"),
    ({"a": [A, A2], "b": [B, A2]}, r"alphabet maps two names to the same model token id 5 \('a' and 'b'\)"),
    ({"a": [A, -1], "b": B}, r"alphabet\['a'\]\[1\] must be a model token id \(a non-negative integer\), got -1"),
    ({"a": [A, True], "b": B}, r"alphabet\['a'\]\[1\] must be a model token id"),
    ({"a": "A", "b": B}, r"alphabet\['a'\] must be a model token id \(a non-negative integer\) or a list of them "
                         r"\(a token set\), e.g. 11 or \[11, 12\]; got 'A'"),
    ({"a": [[A]], "b": B}, r"alphabet\['a'\]\[0\] must be a model token id"),
])
def test_bad_sets_are_one_line_errors(alphabet, match):
    with pytest.raises(SparseGPTError, match=match) as info:
        template_from_dict({**SETS, "alphabet": alphabet})
    assert "\n" not in str(info.value)


def test_a_member_outside_the_vocabulary_is_refused():
    with pytest.raises(SparseGPTError, match="template token id 7 is outside the model's vocabulary 0..6"):
        circuit_for({**SETS, "alphabet": {"a": [A, 7], "b": B}})


def test_the_fingerprint_holds_the_sets_and_stays_without_them():
    fingerprints = {circuit_for(t).fingerprint for t in (SETS, ONE, {**SETS, "alphabet": {"a": [A, A2], "b": [B, B2]}},
                                                       {**SETS, "alphabet": {"a": [A2, A], "b": B}})}
    assert len(fingerprints) == 4
    # without sets the spec is what it was before sets existed (certificates written then still verify)
    template = template_from_dict(ONE)
    legacy = {f: getattr(template, f) for f in ("alphabet", "token_ids", "prefix", "suffix", "target", "alternative",
                                                "class_names", "min_len", "max_len")}
    from jaxscd.circuits.base import sha256_bytes
    model = model_from_state_dict(GPTConfig.from_dict(RAW), twin_state(), "tiny")
    expected = sha256_bytes(model.fingerprint.encode() + json.dumps(legacy, sort_keys=True).encode())
    assert circuit_for(ONE).fingerprint == expected


# ------------------------------------------------------------------------------------------ the forward

def test_expansion_lists_every_member_sequence_of_each_row():
    choices, sizes = np.array([[1, 5, 1], [2, 6, 7]]), np.array([2, 3])
    middle, row, per_row = expand_members(np.array([[0, 1], [1, 1]]), choices, sizes)
    assert per_row.tolist() == [6, 9] and row.tolist() == [0] * 6 + [1] * 9
    assert [tuple(m) for m in middle[:6]] == [(a, b) for a in (1, 5) for b in (2, 6, 7)]
    assert [tuple(m) for m in middle[6:]] == [(a, b) for a in (2, 6, 7) for b in (2, 6, 7)]


def test_the_forward_answers_with_the_smallest_gap_and_the_largest_logit():
    state = twin_state()
    state["transformer.wte.weight"][A2, 3] = 0.3  # a slightly weaker a, read directly at the last position too
    sets = circuit_for(SETS, state)
    three = circuit_for({**ONE, "alphabet": {"a": A, "b": B, "c": A2}}, state)  # each member its own letter
    domain = np.array(np.meshgrid(*[[0, 1]] * 4, indexing="ij")).reshape(4, -1).T.astype(np.int32)
    logits = np.asarray(sets.forward(domain))
    decision, gap, _ = run_circuit(sets, domain)
    moved = 0
    for r, letters in enumerate(domain):
        choices = [[0, 2] if a == 0 else [1] for a in letters]
        combos = np.asarray(three.forward(np.array(np.meshgrid(*choices, indexing="ij")).reshape(4, -1).T))
        gaps = np.abs(combos[:, 1] - combos[:, 0])
        assert np.all((combos[:, 1] > combos[:, 0]) == bool(decision[r]))  # the same decision for every member
        assert gap[r] <= gaps.min() and np.isclose(gap[r], gaps.min(), rtol=0, atol=1e-12)
        assert np.abs(logits[r]).max() >= np.abs(combos).max()
        moved += not np.any(np.all(np.isclose(combos, logits[r], rtol=0, atol=1e-12), axis=1))
    assert moved > 0  # some rows carry a larger logit than their smallest-gap combination has


def test_a_disagreement_within_the_float_bound_is_an_untrusted_row_not_an_error():
    template = template_from_dict(SETS)
    logits = np.array([[0.0, 1e-17], [1e-17, 0.0], [3.0, 1.0], [2.0, 1.5]])  # row 0: a float tie; row 1: two clear
    middle, row, per_row = np.array([[A], [A2], [A], [A2]]), np.array([0, 0, 1, 1]), np.array([2, 2])
    out = worst_member(logits, middle, row, per_row, np.array([[0], [0]]), template)
    gaps = np.abs(out[:, 1] - out[:, 0])
    assert gaps[0] <= float_error_bound(out) and out[1, 1] < out[1, 0] and gaps[1] <= 0.5
    assert np.abs(out[1]).max() >= 3.0  # the largest logit of row 1's combinations is kept
    logits[2] = [0.0, 1.0]  # row 1: now two clear opposite decisions
    with pytest.raises(SparseGPTError, match="depends on which member of 'a' appears"):
        worst_member(logits, middle, row, per_row, np.array([[0], [0]]), template)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_moving_to_the_largest_logit_keeps_the_decision_and_never_widens_the_gap(dtype):
    rng = np.random.default_rng(1)
    chosen = (rng.normal(size=(500, 2)) * 10.0 ** rng.integers(-8, 4, size=(500, 1))).astype(dtype)
    chosen[:20, 1] = chosen[:20, 0]  # ties
    scale = (np.abs(chosen).max(axis=1) * rng.uniform(1, 1e6, size=500)).astype(dtype)
    out = _with_scale(chosen, scale)
    wide, before = out.astype(np.float64), chosen.astype(np.float64)
    assert out.dtype == chosen.dtype and np.all(np.abs(wide).max(axis=1) >= scale)
    assert np.array_equal(wide[:, 1] > wide[:, 0], before[:, 1] > before[:, 0])
    gap, old = np.abs(wide[:, 1] - wide[:, 0]), np.abs(before[:, 1] - before[:, 0])
    assert np.all((gap <= old) | (gap <= float_error_bound(out)))


def test_a_set_the_model_treats_differently_is_refused_in_one_line():
    state = twin_state()
    state["transformer.wte.weight"][A2] = state["transformer.wte.weight"][B]  # A2 counts as a b
    circuit = circuit_for(SETS, state)
    with pytest.raises(SparseGPTError, match=r"the circuit's decision depends on which member of 'a' appears: the "
                                             r"letters \['a'\] as tokens \[1\] give class 1 \('a', logit gap \+.*\) "
                                             r"but as \[5\] class 0 \('b', logit gap -.*\); split the set") as info:
        run_circuit(circuit, np.array([[0]], dtype=np.int32))
    assert "\n" not in str(info.value)


def test_identical_members_give_the_one_member_decisions_and_gaps():
    sets, one = circuit_for(SETS), circuit_for(ONE)
    domain = np.array(np.meshgrid(*[[0, 1]] * 4, indexing="ij")).reshape(4, -1).T.astype(np.int32)
    d_sets, g_sets, b_sets = run_circuit(sets, domain)
    d_one, g_one, b_one = run_circuit(one, domain)
    assert np.array_equal(d_sets, d_one) and np.allclose(g_sets, g_one, rtol=0, atol=1e-12) and b_sets == b_one


def test_rows_are_expanded_a_group_at_a_time_with_the_same_answers(monkeypatch):
    circuit = circuit_for(SETS)
    domain = np.array(np.meshgrid(*[[0, 1]] * 4, indexing="ij")).reshape(4, -1).T.astype(np.int32)
    whole = np.asarray(circuit.forward(domain))
    monkeypatch.setattr(template_module, "EXPANDED_PROMPTS", 5)  # rows of up to 16 combinations: one a group
    np.testing.assert_allclose(np.asarray(circuit.forward(domain)), whole, rtol=0, atol=1e-12)


def test_too_many_combinations_are_refused_before_running(monkeypatch):
    monkeypatch.setattr(template_module, "MAX_MEMBER_COMBINATIONS", 8)
    with pytest.raises(SparseGPTError, match=r"the token set of 'a' has 2 members: a sequence of 5 such letters "
                                             r"stands for 32 member sequences, above the 8 jaxscd runs per sequence; "
                                             r"lower --max-len to 3 or use smaller sets"):
        circuit_for(SETS)
    circuit = circuit_for(SETS, max_len=3)
    with pytest.raises(SparseGPTError, match="a sequence of 4 such letters"):
        circuit.forward(np.zeros((1, 4), dtype=np.int64))


# ------------------------------------------------------------------------------------------ distill

def write_model(folder, template: dict, state: dict | None = None) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "beeg_config.json").write_text(json.dumps(RAW))
    np.savez(folder / "weights.npz", **(twin_state() if state is None else state))
    (folder / "t.json").write_text(json.dumps(template))
    return {"kind": "circuit_sparsity", "model_dir": str(folder), "template": str(folder / "t.json")}


def test_distill_over_a_set_proves_what_one_member_does_and_the_bundle_verifies(tmp_path):
    from jaxscd.circuits.sources import resolve
    from jaxscd.pipeline import DistillConfig, distill
    from jaxscd.verify.certificate import write_bundle
    from jaxscd.verify.prove import Verdict
    from jaxscd.verify.recheck import recheck

    sources = {name: resolve(write_model(tmp_path / name, t)) for name, t in (("sets", SETS), ("one", ONE))}
    sets, one = (distill(s, s.domain(1, 5), DistillConfig(synth_states=0)) for s in sources.values())
    assert sets.verdict == one.verdict == Verdict.PROVED, sets.notes
    assert sets.program == one.program and sets.margin_bound == one.margin_bound
    source = sources["sets"]
    write_bundle(sets, tmp_path / "bundle", source.ref, source.circuit.fingerprint)
    report = recheck(tmp_path / "bundle")
    assert report.verified, [name for name, status, _ in report.checks if status == "FAILED"]


def test_distill_over_a_set_the_model_splits_is_a_one_line_error(tmp_path):
    from click.testing import CliRunner

    from jaxscd.cli import main

    state = twin_state()
    state["transformer.wte.weight"][A2] = state["transformer.wte.weight"][B]
    ref = write_model(tmp_path / "model", SETS, state)
    result = CliRunner().invoke(main, ["distill", "--circuit-sparsity", ref["model_dir"], "--template",
                                       ref["template"], "--max-len", "3"])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "depends on which member of 'a' appears" in lines[0], result.output


def _member_truth(state: dict, n: int):
    """Every model-token sequence of length n over {A, A2, B}: (letter counts [a, b], last letter, decision, gap)
    of the float64 forward (a template naming each model token)."""
    three = {**ONE, "alphabet": {"a": A, "a2": A2, "b": B}}
    circuit = circuit_for(three, state)
    tokens = np.array(np.meshgrid(*[[0, 1, 2]] * n, indexing="ij")).reshape(n, -1).T.astype(np.int32)
    decision, gap, _ = run_circuit(circuit, tokens)
    letters = np.where(tokens == 2, 1, 0)  # a and a2 are the letter a
    counts = np.stack([(letters == 0).sum(1), (letters == 1).sum(1)], axis=1)
    return counts, letters[:, -1], decision, gap


@pytest.mark.parametrize("b_share", [0.0, 0.5, 0.9])
def test_set_orbits_hold_for_every_member_choice(b_share):
    """A2 embeds as A + b_share x B (half an a, half a b): each orbit of the letters the hull bounds decide (float
    and arb) has that class, with margin, on every member sequence; members the model treats alike decide every
    orbit, members it splits leave some orbits undecided."""
    from jaxscd.beyond.symmetry import orbits

    state = twin_state()
    wte = state["transformer.wte.weight"]
    wte[A2] = wte[A] + b_share * wte[B]
    model = model_of(circuit_for(SETS, state))
    assert model.refusal(6) is None and model.symmetry(6) is not None
    orb = orbits(2, range(1, 7))
    classes = model.orbit_classes(model.float_tables(6), orb)
    exact = model.exact(6)
    assert exact.symmetry_holds(6)
    for n in range(1, 7):
        counts, last, decision, gap = _member_truth(state, n)
        for (a, b), end in {(tuple(c), int(t)) for c, t in zip(counts.tolist(), last)}:
            row = np.flatnonzero((orb.length == n) & (orb.last == end) & (orb.counts == [a, b]).all(axis=1))[0]
            members = (counts == [a, b]).all(axis=1) & (last == end)
            arb_class = exact.orbit_classes(n, end, model.margin)[(a, b)]
            for cls in (classes[row], -1 if arb_class is None else arb_class):
                if cls >= 0:
                    assert np.all(decision[members] == cls) and np.all(gap[members] > model.margin)
    decided = (classes >= 0).mean()
    assert decided == 1.0 if b_share == 0.0 else 0 < decided < 1.0


def test_distill_over_a_set_at_length_is_proved_by_orbits_and_a_changed_set_fails_verify(tmp_path):
    import shutil

    from jaxscd.circuits.sources import resolve
    from jaxscd.pipeline import DistillConfig, distill
    from jaxscd.verify.certificate import write_bundle
    from jaxscd.verify.prove import Verdict
    from jaxscd.verify.recheck import recheck

    sources = {name: resolve(write_model(tmp_path / name, t)) for name, t in (("sets", SETS), ("one", ONE))}
    sets, one = (distill(s, s.domain(1, 24, exhaustive=False), DistillConfig(synth_states=0))
                 for s in sources.values())
    assert sets.verdict == one.verdict == Verdict.PROVED and sets.proof.method == "orbit bounds", sets.notes
    assert sets.program == one.program
    source = sources["sets"]
    write_bundle(sets, tmp_path / "bundle", source.ref, source.circuit.fingerprint)
    report = recheck(tmp_path / "bundle")
    assert report.verified, [name for name, status, _ in report.checks if status == "FAILED"]
    template = tmp_path / "sets" / "t.json"
    saved = template.read_text()
    for alphabet in ({"a": A, "b": B}, {"a": [A, A2], "b": [B, B2]}):  # a set dropped, a set widened
        template.write_text(json.dumps({**SETS, "alphabet": alphabet}))
        assert not recheck(tmp_path / "bundle").verified
    template.write_text(saved)
    assert recheck(tmp_path / "bundle").verified
