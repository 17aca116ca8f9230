"""The integer surrogate is exact on every domain input, in integer arithmetic; folding keeps it exact; the method
registry: one entry per method, shared methods run once, and the verifier never loads the trainer."""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxscd.domain import Domain
from jaxscd.dsl import Toggle
from jaxscd.dsl.batch import evaluate_program
from jaxscd.kernels.enumerate import all_tokens, program_decisions
from jaxscd.pipeline import DistillConfig
from jaxscd.surrogates import (
    METHODS,
    IntegerSurrogate,
    SurrogateMethod,
    Witnesses,
    exhaustive_decisions,
    fold_stable_neurons,
)
from jaxscd.surrogates.trained import train

ROOT = Path(__file__).resolve().parents[1]


def test_fit_parity_needs_relus_and_is_exact_in_integers():
    domain = Domain(("x", "y"), 1, 5)
    tokens, lengths = all_tokens(domain)
    target = np.asarray(evaluate_program(Toggle({0}, 0), tokens.astype(np.int32), lengths.astype(np.int32), 2))
    target = target.astype(np.int8)
    valid = np.ones(domain.size, dtype=bool)
    result = train(domain, target, valid)
    surrogate = result.surrogate
    assert surrogate.n_neurons > 0  # parity is not linearly separable
    assert all(a.dtype == np.int64 for a in surrogate.arrays().values())
    decisions, _ = exhaustive_decisions(surrogate, domain)
    np.testing.assert_array_equal(decisions, target)


def test_folding_stable_neurons_keeps_every_decision():
    rng = np.random.default_rng(1)
    domain = Domain(("a", "b", "c"), 1, 4)
    hidden_w = rng.integers(-3, 4, (4, 3, 6))
    hidden_b = np.array([50, -50, 1, 0, 2, -1])  # neuron 0 always on, neuron 1 always off
    surrogate = IntegerSurrogate(hidden_w, hidden_b, rng.integers(-5, 6, 6), rng.integers(-3, 4, (4, 3)), 1)
    decisions, active = exhaustive_decisions(surrogate, domain)
    folded = fold_stable_neurons(surrogate, active)
    assert folded.n_neurons <= 4
    folded_decisions, _ = exhaustive_decisions(folded, domain)
    np.testing.assert_array_equal(decisions, folded_decisions)
    tokens, lengths = all_tokens(domain)
    np.testing.assert_array_equal(np.asarray(surrogate.scores(tokens.astype(np.int32), lengths.astype(np.int32))),
                                  np.asarray(folded.scores(tokens.astype(np.int32), lengths.astype(np.int32))))


def test_round_trip_through_npz_bytes():
    import io

    rng = np.random.default_rng(2)
    s = IntegerSurrogate(rng.integers(-9, 9, (3, 2, 2)), rng.integers(-9, 9, 2), rng.integers(-9, 9, 2),
                         rng.integers(-9, 9, (3, 2)), -4)
    back = IntegerSurrogate.from_arrays(np.load(io.BytesIO(s.to_bytes())))
    for name, value in s.arrays().items():
        np.testing.assert_array_equal(value, back.arrays()[name])


# --------------------------------------------------------------------------------------------------------------
# The method registry


def _modules_after(code: str) -> list:
    """Which of flax, optax and scipy a fresh interpreter has loaded after running ``code``."""
    check = code + "; import sys; print([m for m in ('flax', 'optax', 'scipy') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])


def test_verify_and_the_registry_load_no_trainer():
    assert _modules_after("import jaxscd.surrogates") == []
    loaded = _modules_after("from jaxscd.verify.recheck import recheck; import jaxscd.cli")
    assert "flax" not in loaded and "optax" not in loaded


def test_a_method_is_one_registry_entry_and_shared_methods_run_once(monkeypatch):
    domain = Domain(("x", "y"), 1, 3)
    decisions = program_decisions(Toggle({0}, 0), domain)
    calls = []

    def fit(problem, program):
        calls.append(program)
        return None, "never fits"

    monkeypatch.setitem(METHODS, "never", SurrogateMethod("never", per_program=False, fit=fit, summary="test"))
    witnesses = Witnesses(domain, decisions, np.ones(domain.size, dtype=bool), ("never", "compiled"))
    for _ in range(2):
        assert witnesses.for_program(Toggle({0}, 0)).method == "compiled"
    assert len(calls) == 1  # not per_program: one attempt serves every program
    # per_program: one attempt per program, asked for again without refitting
    assert [(a["method"], a["found"]) for a in witnesses.attempts] == [("never", False), ("compiled", True)]
    assert witnesses.reasons() == ["never: never fits"]


def test_unknown_method_names_are_refused_with_the_registry():
    with pytest.raises(ValueError, match=r"unknown surrogate methods \['sgd'\]; use some of lp,features,compiled"):
        DistillConfig(surrogate_methods=("lp", "sgd"))
    with pytest.raises(ValueError, match=r"unknown surrogate methods \['sgd'\]"):
        Witnesses(Domain(("x", "y"), 1, 1), np.zeros(2, np.int8), np.ones(2, bool), ("sgd",))
    assert DistillConfig().surrogate_methods == tuple(METHODS) == ("lp", "features", "compiled", "trained")
