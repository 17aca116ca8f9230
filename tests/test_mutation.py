"""Soundness by mutation (reduced count; `python experiments/mutation_suite.py` runs >= 1,000)."""

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxscd.domain import Domain
from jaxscd.dsl import CountThreshold, MostRecent, Toggle
from jaxscd.dsl.programs import (
    Both,
    FirstOccurrence,
    LengthThreshold,
    SaturatedDepth,
    TokenAt,
    WindowCount,
    check_program,
)
from jaxscd.surrogates import IntegerSurrogate
from jaxscd.verify.prove import Verdict
from mutants import MutationBase, program_mutants, standard_bases

SURROGATE_MUTANTS = int(os.environ.get("JAXSCD_SURROGATE_MUTANTS", "6"))


@pytest.fixture(scope="module")
def bases():
    return standard_bases()


@pytest.mark.parametrize("strategy", ["auto", "tree"])
def test_every_mutant_gets_the_exhaustive_verdict(bases, strategy):
    outcomes = [base.check(kind, s, p, strategy=strategy) for base in bases
                for kind, s, p in base.mutants(SURROGATE_MUTANTS)]
    assert len(outcomes) >= 60
    unsound = [o for o in outcomes if not o.sound]
    assert not unsound, unsound[:3]
    kinds = {o.kind for o in outcomes}
    assert {"skip weight pushed", "output bias pushed", "transition changed", "token set changed"} <= kinds
    assert any(o.verdict == Verdict.REFUTED for o in outcomes)


@pytest.mark.parametrize("strategy", ["auto", "tree", "single"])
def test_base_pairs_are_proved(bases, strategy):
    for base in bases:
        outcome = base.check("unchanged", base.surrogate, base.program, strategy=strategy)
        assert outcome.equivalent and outcome.verdict == Verdict.PROVED, base.name


@settings(max_examples=40, deadline=None)
@given(weights=st.lists(st.integers(-1, 1), min_size=3, max_size=3), threshold=st.integers(-3, 4),
       skew=st.integers(-2, 2), max_len=st.integers(1, 4), strategy=st.sampled_from(["single", "tree"]))
def test_z3_verdict_equals_enumeration_on_linear_surrogates(weights, threshold, skew, max_len, strategy):
    # score = sum_i w[t_i] - threshold + 1 + skew > 0; equivalent to the counter exactly when skew == 0
    domain = Domain(("a", "b", "c"), 1, max_len)
    skip = np.tile(np.array(weights, dtype=np.int64), (max_len, 1))
    surrogate = IntegerSurrogate(np.zeros((max_len, 3, 0), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                                 skip, 1 - threshold + skew)
    plus = {t for t, w in enumerate(weights) if w > 0}
    minus = {t for t, w in enumerate(weights) if w < 0}
    base = MutationBase("linear", surrogate, CountThreshold(plus, minus, threshold), domain)
    outcome = base.check("random", surrogate, base.program, strategy=strategy)
    assert outcome.sound, outcome


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), width=st.integers(1, 4), program=st.sampled_from(
    [Toggle({0}, 0), Toggle({0, 1}, 1), MostRecent({0}, {1}, 1), CountThreshold({1}, {2}, 0)]),
    strategy=st.sampled_from(["single", "tree"]))
def test_z3_verdict_equals_enumeration_on_random_relu_surrogates(seed, width, program, strategy):
    rng = np.random.default_rng(seed)
    domain = Domain(("a", "b", "c"), 1, 3)
    surrogate = IntegerSurrogate(rng.integers(-3, 4, (3, 3, width)), rng.integers(-2, 3, width),
                                 rng.integers(-3, 4, width), rng.integers(-2, 3, (3, 3)), int(rng.integers(-2, 3)))
    base = MutationBase("random", surrogate, program, domain)
    outcome = base.check("random", surrogate, program, strategy=strategy)
    assert outcome.sound, outcome


@pytest.mark.parametrize("program, kinds", [
    (TokenAt(1, {0}, True), {"position -1", "position +1", "direction flipped", "token set changed"}),
    (LengthThreshold(3), {"threshold -1", "threshold +1"}),
    (FirstOccurrence({0}, {1}, 0), {"default flipped", "groups swapped", "first became most recent",
                                    "token set changed"}),
    (WindowCount({0}, 3, 2), {"window -1", "window +1", "threshold -1", "threshold +1", "token set changed"}),
    (SaturatedDepth({0}, {1}, 2, 1), {"cap -1", "cap +1", "threshold +1", "token set changed"}),
    (Both(TokenAt(0, {0}, False), LengthThreshold(2), "and"),
     {"op changed", "left part: position +1", "left part: direction flipped", "left part: token set changed",
      "right part: threshold -1", "right part: threshold +1"}),
], ids=lambda v: type(v).__name__ if not isinstance(v, set) else "")
def test_program_mutants_of_newer_motifs_are_valid_single_edits(program, kinds):
    mutants = list(program_mutants(program, 3))
    assert {kind for kind, _ in mutants} == kinds
    assert len({m for _, m in mutants}) == len(mutants) and program not in {m for _, m in mutants}
    for _, mutant in mutants:
        check_program(mutant, 3)
    # invalid edits are skipped, not raised: threshold 1 - 1 and cap 1 - 1 do not exist
    assert "threshold -1" not in {k for k, _ in program_mutants(LengthThreshold(1), 3)}
    assert "cap -1" not in {k for k, _ in program_mutants(SaturatedDepth({0}, {1}, 1, 1), 3)}
