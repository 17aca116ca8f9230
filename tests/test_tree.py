"""Tree proofs: the abstract DSL meaning, interval-bounded trees, the tree == program query, and tree bundles."""

import itertools
import json

import numpy as np
import pytest
from bundles import copy_bundle, failed_checks, rehash, task_bundle
from cases import CASES
from hypothesis import given, settings
from hypothesis import strategies as st
from jaxscd.dsl import CountThreshold, DensityThreshold, MostRecent, Toggle, run
from jaxscd.dsl.abstract import outputs
from jaxscd.dsl.programs import Both

from jaxscd.domain import Domain
from jaxscd.surrogates import IntegerSurrogate
from jaxscd.verify.prove import Verdict, in_domain, prove_equivalent, surrogate_class
from jaxscd.verify.tree import (
    VOID,
    build_tree,
    check_tree,
    leaf_class,
    tree_query,
    tree_stats,
)


def _cube_sequences(allowed):
    return itertools.product(*[np.flatnonzero(row).tolist() for row in allowed])


@settings(max_examples=200, deadline=None)
@given(case=st.sampled_from(CASES), data=st.data())
def test_abstract_outputs_are_exactly_the_outputs_on_the_cube(case, data):
    n = data.draw(st.integers(1, case.max_len))
    allowed = np.array([[data.draw(st.booleans()) for _ in range(case.n_tokens)] for _ in range(n)])
    allowed[np.arange(n), data.draw(st.lists(st.integers(0, case.n_tokens - 1), min_size=n, max_size=n))] = True
    concrete = {run(case.program, seq) for seq in _cube_sequences(allowed)}
    abstract = outputs(case.program, allowed)
    assert concrete <= abstract  # sound for every program
    if not isinstance(case.program, Both):
        assert concrete == abstract  # exact for every base motif


def _random_surrogate(rng, max_len, n_tokens, width, scale=4):
    return IntegerSurrogate(rng.integers(-scale, scale + 1, (max_len, n_tokens, width)),
                            rng.integers(-scale, scale + 1, width), rng.integers(-scale, scale + 1, width),
                            rng.integers(-scale, scale + 1, (max_len, n_tokens)), int(rng.integers(-3, 4)))


def _leaves(node, allowed, n):
    if isinstance(node, list):
        i, group, then, other = node
        yes, no = allowed.copy(), allowed.copy()
        yes[i] = False
        yes[i, group] = True
        no[i, group] = False
        yield from _leaves(then, yes, n)
        yield from _leaves(other, no, n)
    else:
        yield node, allowed


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), width=st.integers(0, 5), max_len=st.integers(1, 4),
       precondition=st.sampled_from([None, CountThreshold({0}, set(), 1), Toggle({1}, 0)]))
def test_tree_leaves_match_the_surrogate_on_every_sequence(seed, width, max_len, precondition):
    rng = np.random.default_rng(seed)
    domain = Domain(("a", "b", "c"), 1, max_len, precondition, "pre" if precondition else "")
    surrogate = _random_surrogate(rng, max_len, 3, width)
    trees = build_tree(surrogate, domain)
    assert check_tree(trees, surrogate, domain) == ([], [])  # partition + plain-integer bounds agree
    seen = 0
    for n, root in trees.items():
        for leaf, allowed in _leaves(root, np.ones((n, 3), bool), n):
            for seq in _cube_sequences(allowed):
                seen += 1
                if leaf is VOID:
                    assert not in_domain(domain, seq)
                else:
                    assert surrogate_class(surrogate, seq) == leaf
    assert seen == sum(3 ** n for n in domain.lengths)  # the leaves partition the domain


def test_leaf_class_is_none_when_bounds_cannot_decide():
    surrogate = IntegerSurrogate(np.zeros((2, 2, 0), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                                 np.array([[1, -1], [1, -1]]), 0)  # score = w[t0] + w[t1]: sign depends on both
    assert leaf_class(surrogate, 2, [{0, 1}, {0, 1}]) is None
    assert leaf_class(surrogate, 2, [{0}, {0}]) == 1 and leaf_class(surrogate, 2, [{1}, {0, 1}]) == 0


def test_node_budget_gives_up_instead_of_growing():
    rng = np.random.default_rng(1)
    domain = Domain(("a", "b", "c"), 1, 6)
    assert build_tree(_random_surrogate(rng, 6, 3, 6, scale=50), domain, max_nodes=10) is None


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), width=st.integers(0, 4),
       program=st.sampled_from([Toggle({0}, 0), MostRecent({0}, {1}, 1), CountThreshold({1}, {2}, 0),
                                DensityThreshold({0}, {1}, 1, 3)]))
def test_tree_verdict_equals_single_query_and_enumeration(seed, width, program):
    rng = np.random.default_rng(seed)
    domain = Domain(("a", "b", "c"), 1, 4)
    surrogate = _random_surrogate(rng, 4, 3, width, scale=3)
    equivalent = all(run(program, s) == surrogate_class(surrogate, s)
                     for n in domain.lengths for s in itertools.product(range(3), repeat=n))
    tree = prove_equivalent(surrogate, program, domain, strategy="tree")
    single = prove_equivalent(surrogate, program, domain, strategy="single")
    assert tree.verdict == single.verdict == (Verdict.PROVED if equivalent else Verdict.REFUTED)
    if not equivalent:
        cex = tree.counterexample
        assert in_domain(domain, cex) and run(program, cex) != surrogate_class(surrogate, cex)


def test_tree_query_is_satisfiable_when_a_void_leaf_holds_valid_inputs():
    domain = Domain(("a", "b"), 1, 2, CountThreshold({0}, set(), 1), "an a")
    program = CountThreshold({0}, set(), 1)
    # claim "no valid input" for all of length 2, which holds "aa": the query must find it
    from jaxscd.verify.solver import solve_text
    from jaxscd.verify.tree import TREE_LOGIC

    answer, tokens, _ = solve_text(tree_query({1: [0, [0], 1, VOID], 2: VOID}, program, domain), 10, TREE_LOGIC)
    assert answer == "sat" and len(tokens) == 2 and 0 in tokens
    answer, _, _ = solve_text(tree_query({1: [0, [0], 1, VOID], 2: [0, [0], 1, [1, [0], 1, VOID]]},
                                         program, domain), 10, TREE_LOGIC)
    assert answer == "unsat"


# ------------------------------------------------------------------------------------------------------------
# Bundles proved by a tree


@pytest.fixture(scope="module")
def tree_bundle(tmp_path_factory):
    out, result = task_bundle(tmp_path_factory, "quote_close", 5, "tree")
    assert result.verdict.value == "PROVED" and result.proof.method == "smt-tree"
    return out


def test_tree_bundle_verifies(tree_bundle):
    from jaxscd.verify.recheck import recheck

    cert = json.loads((tree_bundle / "certificate.json").read_text())
    smt = next(o for o in cert["obligations"] if o["claim"] == "surrogate == program")
    assert smt["method"] == "smt-tree" and smt["file"] == "tree_query.smt2" and smt["tree"]["leaves"] >= 2
    report = recheck(tree_bundle)
    assert report.verified, report.checks
    names = {name for name, status, _ in report.checks if status == "ok"}
    assert {"tree partitions the domain", "interval bounds prove every decided leaf of the tree",
            "z3: tree_query.smt2 is unsat"} <= names


def _edit_tree(bundle, edit):
    trees = json.loads((bundle / "tree.json").read_text())
    edit(trees)
    (bundle / "tree.json").write_text(json.dumps(trees))
    rehash(bundle, "tree.json")


def _first_leaf_path(node):
    path = []
    while isinstance(node, list):
        path.append(2)
        node = node[2]
    return path


def test_flipped_tree_leaf_fails_its_bounds(tree_bundle, tmp_path):
    from jaxscd.verify.recheck import recheck

    b = copy_bundle(tree_bundle, tmp_path)

    def flip(trees):
        longest = max(trees, key=int)
        node = trees[longest]
        *path, last = _first_leaf_path(node)
        for step in path:
            node = node[step]
        node[last] = 1 - node[last] if node[last] in (0, 1) else 0

    _edit_tree(b, flip)
    assert "interval bounds prove every decided leaf of the tree" in failed_checks(recheck(b))


def test_dropped_length_breaks_the_partition(tree_bundle, tmp_path):
    from jaxscd.verify.recheck import recheck

    b = copy_bundle(tree_bundle, tmp_path)
    _edit_tree(b, lambda trees: trees.pop(max(trees, key=int)))
    assert "tree partitions the domain" in failed_checks(recheck(b))


def test_all_void_tree_is_caught_by_the_solver(tree_bundle, tmp_path):
    # a tree that claims no valid input anywhere: no leaf bound to check, so only the solver can object
    from jaxscd.dsl.programs import from_json

    from jaxscd.verify.certificate import domain_from_json
    from jaxscd.verify.recheck import recheck

    b = copy_bundle(tree_bundle, tmp_path)
    _edit_tree(b, lambda trees: trees.update({k: None for k in trees}))
    cert = json.loads((b / "certificate.json").read_text())
    trees = {int(k): None for k in json.loads((b / "tree.json").read_text())}
    (b / "tree_query.smt2").write_text(tree_query(trees, from_json(cert["program"]), domain_from_json(cert["domain"])))
    rehash(b, "tree_query.smt2")
    failed = failed_checks(recheck(b))
    assert "z3: tree_query.smt2 is unsat" in failed
    assert "interval bounds prove every decided leaf of the tree" not in failed


def test_malformed_tree_is_corrupt_not_a_traceback(tree_bundle, tmp_path):
    from jaxscd.verify.recheck import recheck

    b = copy_bundle(tree_bundle, tmp_path)
    (b / "tree.json").write_text('[1, 2, 3]')
    rehash(b, "tree.json")
    from jaxscd.errors import BundleError

    with pytest.raises(BundleError):
        recheck(b)


def test_tree_stats_counts_every_leaf():
    assert tree_stats({1: [0, [0], 1, None], 2: 0}) == {"leaves": 3, "void": 1, "splits": 1, "depth": 1}


def test_tree_query_with_no_valid_input_is_decided():
    # QF_FD declines contradictory length bounds; the general solver then decides the query
    from jaxscd.dsl.programs import Constant, LengthThreshold

    from jaxscd.verify.solver import solve_text
    from jaxscd.verify.tree import TREE_LOGIC

    domain = Domain(("a", "b", "c"), 1, 1, LengthThreshold(2), "longer than any length")
    answer, _, _ = solve_text(tree_query({1: [0, [2], VOID, VOID]}, Constant(1), domain), 10, TREE_LOGIC)
    assert answer == "unsat"


def test_extreme_weights_make_the_builder_decline():
    weights = np.zeros((1, 2, 1), np.int64)
    weights[0, 0, 0] = np.iinfo(np.int64).min  # |min| does not fit int64: np.abs would report it as negative
    surrogate = IntegerSurrogate(weights, np.zeros(1, np.int64), np.ones(1, np.int64), np.zeros((1, 2), np.int64), 1)
    assert build_tree(surrogate, Domain(("a", "b"), 1, 1)) is None


@pytest.mark.parametrize("arrays, message", [
    ((np.zeros((1, 2, 3)), np.zeros(1), np.zeros(1), np.zeros((1, 2)), 0), "shapes do not fit"),
    ((np.full((1, 2, 1), 0.5), np.zeros(1), np.zeros(1), np.zeros((1, 2)), 0), "must hold integers"),
])
def test_malformed_surrogate_arrays_are_rejected(arrays, message):
    with pytest.raises(ValueError, match=message):
        IntegerSurrogate(*arrays)


def test_narrow_integer_arrays_are_widened_to_int64():
    surrogate = IntegerSurrogate(np.full((1, 1, 1), 50_000, np.int32), np.zeros(1, np.int32),
                                 np.full(1, 50_000, np.int32), np.zeros((1, 1), np.int32), -1)
    assert {a.dtype for a in surrogate.arrays().values()} == {np.dtype(np.int64)}
    assert surrogate_class(surrogate, (0,)) == 1  # 50,000 * 50,000 - 1 overflows int32, not int64


def test_deeply_nested_tree_file_is_corrupt_not_a_traceback(tree_bundle, tmp_path):
    from jaxscd.errors import BundleError
    from jaxscd.verify.recheck import recheck

    b = copy_bundle(tree_bundle, tmp_path)
    (b / "tree.json").write_text("[" * 100_000 + "]" * 100_000)
    rehash(b, "tree.json")
    with pytest.raises(BundleError):
        recheck(b)
