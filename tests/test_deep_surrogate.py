"""Deep integer surrogates (a DAG of ReLU units): exact JAX scores == plain-Python integers == z3 terms on every
input; folding keeps every score; tree bounds are sound; every proof strategy proves a hand-built deep net equal
to its program and refutes a perturbed one with a real counterexample."""

import io
import itertools

import jax.numpy as jnp
import numpy as np
import pytest
import z3
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxscd.domain import Domain
from jaxscd.dsl import CountThreshold, run
from jaxscd.dsl.programs import Both, TokenAt
from jaxscd.kernels.enumerate import all_tokens
from jaxscd.surrogates import IntegerSurrogate, exhaustive_decisions, fold_stable_neurons
from jaxscd.surrogates.network import _deep_preactivations, _deep_scores, _sparse_deep
from jaxscd.verify.cubes import prove_by_cubes
from jaxscd.verify.encode import surrogate_score, symbolic_sequence
from jaxscd.verify.prove import Verdict, in_domain, prove_equivalent, surrogate_class
from jaxscd.verify.tree import build_tree, check_tree, leaf_class
from mutants import MutationBase, surrogate_mutants

TINY = Domain(("a", "b", "c"), 1, 3)


def random_deep(seed: int, max_len: int = 3, n_tokens: int = 3, width: int = 5, scale: int = 3,
                stable: bool = False) -> IntegerSurrogate:
    """A random DAG of units; ``stable`` adds always-active and never-active units (large biases)."""
    rng = np.random.default_rng(seed)
    units = np.triu(rng.integers(-scale, scale + 1, (width, width)) * (rng.random((width, width)) < 0.6), 1)
    bias = rng.integers(-scale, scale + 1, width)
    if stable:
        bias = np.where(rng.random(width) < 0.5, rng.choice([-1, 1], width) * 200, bias)
    weights = rng.integers(-scale, scale + 1, (max_len, n_tokens, width + 1))
    return IntegerSurrogate(weights[:, :, :width], bias, rng.integers(-scale, scale + 1, width), weights[:, :, width],
                            int(rng.integers(-3, 4)), units)


def python_score(surrogate: IntegerSurrogate, tokens) -> int:
    """The oracle: units in index order, plain Python integers."""
    relus = []
    for j in range(surrogate.n_neurons):
        pre = int(surrogate.hidden_b[j]) + sum(int(surrogate.hidden_w[i, t, j]) for i, t in enumerate(tokens))
        relus.append(max(0, pre + sum(int(surrogate.unit_w[k, j]) * relus[k] for k in range(j))))
    return (surrogate.out_b + sum(int(o) * r for o, r in zip(surrogate.out_w, relus))
            + sum(int(surrogate.skip_w[i, t]) for i, t in enumerate(tokens)))


def _domain_inputs(domain: Domain):
    tokens, lengths = all_tokens(domain)
    return tokens.astype(np.int32), lengths.astype(np.int32)


def _sequences(domain: Domain):
    tokens, lengths = all_tokens(domain)
    return [tuple(int(t) for t in row[:n]) for row, n in zip(tokens, lengths)]


def z3_scores(surrogate: IntegerSurrogate, domain: Domain) -> list[int]:
    seq = symbolic_sequence(domain)
    score, _ = surrogate_score(surrogate, seq)
    solver = z3.Solver()
    solver.add(*seq.constraints)
    values = []
    for tokens in _sequences(domain):
        solver.push()
        solver.add(seq.length == len(tokens), *[seq.tokens[i] == t for i, t in enumerate(tokens)])
        assert solver.check() == z3.sat
        values.append(solver.model().eval(score, model_completion=True).as_long())
        solver.pop()
    return values


# --------------------------------------------------------------------------------------------------------------
# Exact evaluation


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), width=st.integers(1, 6))
def test_jax_scores_equal_python_integers_and_z3_terms(seed, width):
    surrogate = random_deep(seed, width=width)
    jax_scores = np.asarray(surrogate.scores(*_domain_inputs(TINY))).tolist()
    assert jax_scores == [python_score(surrogate, t) for t in _sequences(TINY)]
    assert jax_scores == z3_scores(surrogate, TINY)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), width=st.integers(20, 120))
def test_wide_deep_nets_are_evaluated_level_by_level_to_the_same_integers(seed, width):
    """The level-by-level numpy evaluator (``sparse_deep`` nets: depth x units above ``SPARSE_DEEP_MIN_WORK``, a
    compiled state machine) equals the JAX passes and plain Python integers exactly."""
    rng = np.random.default_rng(seed)
    units = np.triu(rng.integers(-2, 3, (width, width)) * (rng.random((width, width)) < 2 / width), 1)
    weights = rng.integers(-2, 3, (3, 3, width + 1)) * (rng.random((3, 3, width + 1)) < 0.3)
    surrogate = IntegerSurrogate(weights[:, :, :width], rng.integers(-2, 3, width), rng.integers(-2, 3, width),
                                 weights[:, :, width], 1, units)
    tokens, lengths = _domain_inputs(TINY)
    pre, scores = _sparse_deep(surrogate, tokens, lengths)
    w = {k: jnp.asarray(v) for k, v in surrogate.arrays().items()}
    if surrogate.deep:
        np.testing.assert_array_equal(scores, np.asarray(_deep_scores(w, surrogate.depth, tokens, lengths)))
        np.testing.assert_array_equal(pre, np.asarray(_deep_preactivations(w["hidden_w"], w["hidden_b"], w["unit_w"],
                                                                           surrogate.depth, tokens, lengths)))
    assert scores.tolist() == [python_score(surrogate, t) for t in _sequences(TINY)]
    assert np.array_equal(surrogate.scores(tokens, lengths), scores)  # whichever evaluator the net gets


def test_depth_is_the_longest_chain_of_units():
    chain = np.diag([1, 1, 1], k=1)  # 0 -> 1 -> 2 -> 3
    surrogate = IntegerSurrogate(np.zeros((2, 2, 4)), np.zeros(4), np.ones(4), np.zeros((2, 2)), 0, chain)
    assert surrogate.depth == 4 and surrogate.deep
    assert surrogate.unit_depths.tolist() == [1, 2, 3, 4]
    one_layer = IntegerSurrogate(np.zeros((2, 2, 3)), np.zeros(3), np.ones(3), np.zeros((2, 2)), 0)
    assert one_layer.depth == 1 and not one_layer.deep
    assert IntegerSurrogate(np.zeros((2, 2, 0)), np.zeros(0), np.zeros(0), np.zeros((2, 2)), 0).depth == 0


@pytest.mark.parametrize("unit_w, message", [
    (np.array([[0, 1], [1, 0]]), r"strictly upper triangular .* unit_w\[1, 0\] = 1"),
    (np.eye(2, dtype=int), r"strictly upper triangular .* unit_w\[0, 0\] = 1"),
    (np.zeros((2, 3)), r"unit_w \[2, 3\] must be \[neurons, neurons\] = \[2, 2\]"),
    (np.full((2, 2), 0.5), "unit_w must hold integers"),
])
def test_bad_unit_weights_are_refused(unit_w, message):
    with pytest.raises(ValueError, match=message):
        IntegerSurrogate(np.zeros((2, 2, 2)), np.zeros(2), np.ones(2), np.zeros((2, 2)), 0, unit_w)


def test_values_beyond_int64_are_refused():
    big = IntegerSurrogate(np.zeros((2, 2, 3)), np.array([1 << 40, 0, 0]), np.ones(3), np.zeros((2, 2)), 0,
                           np.array([[0, 1 << 20, 0], [0, 0, 1 << 20], [0, 0, 0]]))
    with pytest.raises(ValueError, match="beyond exact int64"):
        big.scores(*_domain_inputs(TINY))
    with pytest.raises(ValueError, match="beyond exact int64"):  # a bundle's surrogate.npz: corrupt
        IntegerSurrogate.from_arrays(np.load(io.BytesIO(big.to_bytes())))


def test_deep_scores_compile_once_per_shape():
    first, second = random_deep(1, width=4), random_deep(2, width=4)
    first.scores(*_domain_inputs(TINY))
    compiled = _deep_scores._cache_size()
    deeper = IntegerSurrogate(*(second.arrays()[k] for k in ("hidden_w", "hidden_b", "out_w", "skip_w", "out_b")),
                              np.diag([1, 1, 1], k=1))
    for surrogate in (second, deeper):
        surrogate.scores(*_domain_inputs(TINY))
    assert _deep_scores._cache_size() == compiled


def test_round_trip_keeps_unit_weights_and_one_layer_bytes():
    deep = random_deep(3)
    back = IntegerSurrogate.from_arrays(np.load(io.BytesIO(deep.to_bytes())))
    np.testing.assert_array_equal(back.unit_w, deep.unit_w)
    assert back.to_bytes() == deep.to_bytes()
    one_layer = IntegerSurrogate(deep.hidden_w, deep.hidden_b, deep.out_w, deep.skip_w, deep.out_b)
    assert "unit_w" not in np.load(io.BytesIO(one_layer.to_bytes())).files
    assert not IntegerSurrogate.from_arrays(np.load(io.BytesIO(one_layer.to_bytes()))).unit_w.any()


# --------------------------------------------------------------------------------------------------------------
# Folding


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), width=st.integers(1, 7))
def test_folding_keeps_every_score_of_deep_nets(seed, width):
    surrogate = random_deep(seed, width=width, stable=True)
    _, active = exhaustive_decisions(surrogate, TINY)
    folded = fold_stable_neurons(surrogate, active)
    unstable = int((active.any(axis=0) & ~active.all(axis=0)).sum())
    assert folded.n_neurons == unstable
    inputs = _domain_inputs(TINY)
    np.testing.assert_array_equal(np.asarray(folded.scores(*inputs)), np.asarray(surrogate.scores(*inputs)))


def test_folding_a_chain_of_always_active_units_substitutes_through_every_link():
    # relu_0 = 5 + x, relu_1 = relu_0 + 1, relu_2 = relu(2 * relu_1 - 13 + y): units 0 and 1 always active
    hidden_w = np.zeros((1, 2, 3), dtype=int)
    hidden_w[0, 0, 0] = 1  # x = [t_0 == 0]
    hidden_w[0, 1, 2] = 1  # y = [t_0 == 1]
    units = np.array([[0, 1, 0], [0, 0, 2], [0, 0, 0]])
    surrogate = IntegerSurrogate(hidden_w, np.array([5, 1, -13]), np.array([1, -1, 3]), np.zeros((1, 2)), -2, units)
    domain = Domain(("x", "y"), 1, 1)
    _, active = exhaustive_decisions(surrogate, domain)
    folded = fold_stable_neurons(surrogate, active)
    assert folded.n_neurons == 1 and not folded.deep
    inputs = _domain_inputs(domain)
    np.testing.assert_array_equal(np.asarray(folded.scores(*inputs)), np.asarray(surrogate.scores(*inputs)))


# --------------------------------------------------------------------------------------------------------------
# Tree bounds


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), width=st.integers(1, 6))
def test_tree_leaves_of_deep_nets_are_sound_and_rechecked(seed, width):
    surrogate = random_deep(seed, width=width)
    trees = build_tree(surrogate, TINY)
    assert trees is not None
    assert check_tree(trees, surrogate, TINY) == ([], [])
    for n, root in trees.items():
        for allowed, value in _leaves(root, [set(range(TINY.n_tokens)) for _ in range(n)]):
            assert leaf_class(surrogate, n, allowed) == value
            for tokens in _cube(allowed):
                assert (python_score(surrogate, tokens) > 0) == value


def _leaves(node, allowed):
    if not isinstance(node, list):
        yield allowed, node
        return
    i, group, then, other = node
    yield from _leaves(then, allowed[:i] + [set(group)] + allowed[i + 1:])
    yield from _leaves(other, allowed[:i] + [allowed[i] - set(group)] + allowed[i + 1:])


def _cube(allowed):
    return itertools.product(*[sorted(a) for a in allowed])


def test_tree_declines_deep_nets_whose_bounds_could_overflow():
    units = np.diag(np.full(5, 3000), k=1)  # a chain of six units: values up to about 4 * 3000^5 ~ 2^60
    surrogate = IntegerSurrogate(np.ones((3, 3, 6)), np.ones(6), np.ones(6), np.zeros((3, 3)), 0, units)
    assert surrogate.magnitude < 1 << 62  # fine for exact evaluation, too close for the tree's bound sums
    assert build_tree(surrogate, TINY) is None


# --------------------------------------------------------------------------------------------------------------
# Proofs of hand-built deep nets


XOR_DOMAIN = Domain(("a", "b", "c"), 2, 4)
XOR_PROGRAM = Both(TokenAt(0, {0}, False), TokenAt(1, {0}, False), "xor")


def xor_net(and_weight: int = -2) -> IntegerSurrogate:
    """x = [t_0 == a], y = [t_1 == a]; and = relu(x + y - 1); xor = relu(x + y - 2 and); score = 2 xor - 1."""
    hidden_w = np.zeros((4, 3, 2), dtype=int)
    hidden_w[0, 0, :] = hidden_w[1, 0, :] = 1
    return IntegerSurrogate(hidden_w, np.array([-1, 0]), np.array([0, 2]), np.zeros((4, 3)), -1,
                            np.array([[0, and_weight], [0, 0]]))


COUNT_DOMAIN = Domain(("a", "b", "c"), 1, 4)
COUNT_PROGRAM = Both(CountThreshold({0}, set(), 2), CountThreshold({1}, set(), 1), "and")


def count_and_net() -> IntegerSurrogate:
    """[count(a) >= 2] = relu(ca - 1) - relu(ca - 2), [count(b) >= 1] = relu(cb) - relu(cb - 1);
    and = relu(first + second - 1); score = 2 and - 1."""
    hidden_w = np.zeros((4, 3, 5), dtype=int)
    hidden_w[:, 0, :2] = 1
    hidden_w[:, 1, 2:4] = 1
    units = np.zeros((5, 5), dtype=int)
    units[:4, 4] = [1, -1, 1, -1]
    return IntegerSurrogate(hidden_w, np.array([-1, -2, 0, -1, -1]), np.array([0, 0, 0, 0, 2]), np.zeros((4, 3)),
                            -1, units)


NETS = [("xor", xor_net(), XOR_PROGRAM, XOR_DOMAIN), ("count_and", count_and_net(), COUNT_PROGRAM, COUNT_DOMAIN)]


@pytest.mark.parametrize("name, surrogate, program, domain", NETS, ids=[n[0] for n in NETS])
def test_hand_built_nets_compute_their_programs(name, surrogate, program, domain):
    assert surrogate.depth == 2
    decisions, _ = exhaustive_decisions(surrogate, domain)
    assert decisions.tolist() == [run(program, t) for t in _sequences(domain)]


@pytest.mark.parametrize("strategy", ["single", "tree", "cubes", "auto"])
@pytest.mark.parametrize("name, surrogate, program, domain", NETS, ids=[n[0] for n in NETS])
def test_every_strategy_proves_a_deep_net(name, surrogate, program, domain, strategy):
    result = prove_equivalent(surrogate, program, domain, timeout_s=30, strategy=strategy)
    assert result.verdict == Verdict.PROVED, result.reason


@pytest.mark.parametrize("strategy", ["single", "tree", "cubes"])
def test_every_strategy_refutes_a_perturbed_unit_weight(strategy):
    perturbed = xor_net(and_weight=-1)  # "a a ...": and = 1, xor unit = 2 - 1 = 1, score 1: class 1, xor 0
    result = prove_equivalent(perturbed, XOR_PROGRAM, XOR_DOMAIN, timeout_s=30, strategy=strategy)
    assert result.verdict == Verdict.REFUTED
    cex = list(result.counterexample)
    assert in_domain(XOR_DOMAIN, cex) and run(XOR_PROGRAM, cex) != surrogate_class(perturbed, cex)


def test_cubes_fix_phases_of_deep_units_and_stay_sound():
    surrogate, program, domain = count_and_net(), COUNT_PROGRAM, COUNT_DOMAIN
    run_ = prove_by_cubes(surrogate, program, domain, np.ones(domain.size, dtype=bool), workers=1)
    assert run_.answer == "unsat"
    assert sum(c["fixed"] for c in run_.cubes) > 0  # some deep unit's phase was fixed on some cube


def test_mutants_of_a_deep_net_edit_unit_weights_and_every_verdict_is_sound():
    base = MutationBase("count_and", count_and_net(), COUNT_PROGRAM, COUNT_DOMAIN)
    mutants = list(surrogate_mutants(base.surrogate, base.domain, base.valid, 8, seed=1))
    assert "unit weight changed" in {kind for kind, _ in mutants}
    for kind, surrogate in mutants:
        outcome = base.check(kind, surrogate, base.program, timeout_s=30)
        assert outcome.sound, (kind, outcome)
