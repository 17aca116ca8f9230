"""Every meaning of a DSL program (batch JAX, rendered source, z3) agrees with the reference interpreter.

Also: family parameter layouts decode to the programs they evaluate, each family's min_cost bounds its members'
description lengths, programs round-trip through JSON, canonical DFA tables are one per isomorphism class,
invalid programs are rejected with clear messages, and candidate filtering keeps exactly the right programs
without recompiling.
"""

from __future__ import annotations

import functools
import itertools
import json
import zlib
from fractions import Fraction

import jax.numpy as jnp
import numpy as np
import pytest
import z3
from hypothesis import given, settings
from hypothesis import strategies as st

from cases import ALPHABETS, CASES, Case
from jaxscd.domain import Domain
from jaxscd.dsl.batch import (
    PAD,
    canonical_transition_tables,
    composition_family,
    default_families,
    evaluate_program,
    linear_count_family,
    most_recent_family,
    saturated_depth_family,
    single_family,
    token_at_family,
    window_count_family,
)
from jaxscd.dsl.programs import (
    COMPOSITION_OPS,
    MOTIFS,
    Both,
    Constant,
    CountThreshold,
    DensityThreshold,
    FirstOccurrence,
    LengthThreshold,
    MostRecent,
    SaturatedDepth,
    StateMachine,
    Toggle,
    TokenAt,
    WindowCount,
    check_program,
    description_length,
    from_json,
    to_json,
)
from jaxscd.dsl.reference import run
from jaxscd.dsl.smt import encode
from jaxscd.dsl.source import load, render
from jaxscd.kernels.enumerate import all_tokens, decode_indices
from jaxscd.kernels.filter import filter_family, mismatches

Z3_SAMPLES = 300  # sequences per case checked through z3 (substitution is ~ms each)


# --------------------------------------------------------------------------------------------------------------
# Helpers: one decision vector per backend


@functools.lru_cache(maxsize=None)
def _domain_arrays(alphabet: tuple, max_len: int) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Padded tokens, lengths and the plain sequences of every input of lengths 1..max_len."""
    tokens, lengths = all_tokens(Domain(alphabet, 1, max_len))
    sequences = tuple(tuple(int(t) for t in row[:n]) for row, n in zip(tokens, lengths))
    return tokens, lengths, sequences


def reference_decisions(program, sequences) -> np.ndarray:
    return np.array([run(program, s) for s in sequences], dtype=np.int8)


def batch_decisions(program, tokens, lengths, n_tokens: int) -> np.ndarray:
    return np.asarray(evaluate_program(program, tokens, lengths, n_tokens)).astype(np.int8)


def source_decisions(program, sequences, alphabet) -> np.ndarray:
    function = load(render(program, alphabet, class_names=("reject", "accept")))
    return np.array([function([alphabet[t] for t in s]) for s in sequences], dtype=np.int8)


def z3_decisions(program, sequences, max_len: int) -> np.ndarray:
    """Decisions of the z3 term with the tokens and length fixed by substitution.

    Padding positions stay symbolic, so a term that reads padding does not simplify to a constant and fails.
    """
    symbols = [z3.Int(f"token_{i}") for i in range(max_len)]
    length = z3.Int("length")
    term = encode(program, symbols, length)
    out = []
    for seq in sequences:
        pairs = [(length, z3.IntVal(len(seq)))] + [(symbols[i], z3.IntVal(t)) for i, t in enumerate(seq)]
        value = z3.simplify(z3.substitute(term, *pairs))
        assert z3.is_true(value) or z3.is_false(value), (
            f"z3 term of {program} on {list(seq)} did not reduce to a constant (reads padding?): {value}")
        out.append(int(z3.is_true(value)))
    return np.array(out, dtype=np.int8)


def assert_agree(backend: str, program, sequences, expected: np.ndarray, got: np.ndarray) -> None:
    bad = np.flatnonzero(expected != got)
    assert not len(bad), (f"{backend} disagrees with the reference for {program} on {len(bad)} sequences, first "
                          f"{list(sequences[bad[0]])}: reference {expected[bad[0]]}, {backend} {got[bad[0]]}")


def pad(sequences, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    tokens = np.full((len(sequences), max_len), PAD, dtype=np.int32)
    for row, seq in zip(tokens, sequences):
        row[:len(seq)] = seq
    return tokens, np.array([len(s) for s in sequences], dtype=np.int32)


# --------------------------------------------------------------------------------------------------------------
# Named cases: exhaustive agreement


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_backend_agrees_with_reference_on_every_sequence(case: Case):
    check_program(case.program, case.n_tokens)
    tokens, lengths, sequences = _domain_arrays(case.alphabet, case.max_len)
    expected = reference_decisions(case.program, sequences)

    assert_agree("batch", case.program, sequences, expected,
                 batch_decisions(case.program, tokens, lengths, case.n_tokens))
    assert_agree("source", case.program, sequences, expected,
                 source_decisions(case.program, sequences, case.alphabet))

    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    sample = np.sort(rng.choice(len(sequences), size=min(Z3_SAMPLES, len(sequences)), replace=False))
    sampled = [sequences[i] for i in sample]
    assert_agree("z3", case.program, sampled, expected[sample], z3_decisions(case.program, sampled, case.max_len))


def test_cases_cover_every_motif_and_both_classes():
    motifs = {type(c.program) for c in CASES}
    assert motifs == set(MOTIFS)
    assert {c.program.n_states for c in CASES if isinstance(c.program, StateMachine)} >= {2, 3, 4}
    assert {c.program.op for c in CASES if isinstance(c.program, Both)} == set(COMPOSITION_OPS)
    for case in CASES:
        if not isinstance(case.program, Constant) and "unreachable_accepting" not in case.name:
            decisions = reference_decisions(case.program, _domain_arrays(case.alphabet, case.max_len)[2])
            assert 0 < decisions.sum() < len(decisions), f"case {case.name} is constant on its domain"


# --------------------------------------------------------------------------------------------------------------
# Random programs on random sequences (hypothesis)

MAX_LEN = 6
N_SEQUENCES = 12  # fixed chunk shape, so the batch evaluator compiles once per family shape


@st.composite
def signed_split(draw, n_tokens: int) -> tuple[frozenset, frozenset]:
    signs = draw(st.lists(st.sampled_from((-1, 0, 1)), min_size=n_tokens, max_size=n_tokens))
    return (frozenset(t for t, s in enumerate(signs) if s > 0), frozenset(t for t, s in enumerate(signs) if s < 0))


def token_subsets(n_tokens: int):
    return st.frozensets(st.integers(0, n_tokens - 1))


@st.composite
def density_program(draw, n_tokens: int) -> DensityThreshold:
    plus, minus = draw(signed_split(n_tokens))
    den = draw(st.integers(1, 7))
    fraction = Fraction(draw(st.integers(-den - 1, den + 1)), den)  # reduced, den > 0
    return DensityThreshold(plus, minus, fraction.numerator, fraction.denominator)


@st.composite
def state_machine_program(draw, n_tokens: int) -> StateMachine:
    n_states = draw(st.integers(2, 4))
    row = st.lists(st.integers(0, n_states - 1), min_size=n_tokens, max_size=n_tokens)
    table = draw(st.lists(row, min_size=n_states, max_size=n_states))
    return StateMachine(table, draw(st.frozensets(st.integers(0, n_states - 1))))


@st.composite
def window_count_program(draw, n_tokens: int) -> WindowCount:
    window = draw(st.integers(1, MAX_LEN + 1))  # up to a window longer than every sequence
    return WindowCount(draw(token_subsets(n_tokens)), window, draw(st.integers(1, window)))


@st.composite
def saturated_depth_program(draw, n_tokens: int) -> SaturatedDepth:
    open_, close = draw(signed_split(n_tokens))
    cap = draw(st.integers(1, 4))
    return SaturatedDepth(open_, close, cap, draw(st.integers(1, cap)))


BASE_STRATEGIES = {
    "constant": lambda n: st.builds(Constant, st.integers(0, 1)),
    "count_threshold": lambda n: st.builds(lambda split, c: CountThreshold(*split, c), signed_split(n),
                                           st.integers(-MAX_LEN - 1, MAX_LEN + 1)),
    "density_threshold": density_program,
    "toggle": lambda n: st.builds(Toggle, token_subsets(n), st.integers(0, 1)),
    "most_recent": lambda n: st.builds(lambda split, d: MostRecent(*split, d), signed_split(n), st.integers(0, 1)),
    "state_machine": state_machine_program,
    "token_at": lambda n: st.builds(TokenAt, st.integers(0, MAX_LEN), token_subsets(n), st.booleans()),
    "length_threshold": lambda n: st.builds(LengthThreshold, st.integers(1, MAX_LEN + 1)),
    "first_occurrence": lambda n: st.builds(lambda split, d: FirstOccurrence(*split, d), signed_split(n),
                                            st.integers(0, 1)),
    "window_count": window_count_program,
    "saturated_depth": saturated_depth_program,
}


@st.composite
def both_program(draw, n_tokens: int) -> Both:
    left, right = (draw(st.sampled_from(sorted(BASE_STRATEGIES)).flatmap(lambda m: BASE_STRATEGIES[m](n_tokens)))
                   for _ in range(2))
    return Both(left, right, draw(st.sampled_from(COMPOSITION_OPS)))


MOTIF_STRATEGIES = BASE_STRATEGIES | {"both": both_program}


@st.composite
def program_and_sequences(draw, motif: str):
    n_tokens = draw(st.integers(2, 4))
    program = draw(MOTIF_STRATEGIES[motif](n_tokens))
    sequence = st.lists(st.integers(0, n_tokens - 1), min_size=1, max_size=MAX_LEN).map(tuple)
    return n_tokens, program, draw(st.lists(sequence, min_size=N_SEQUENCES, max_size=N_SEQUENCES))


@pytest.mark.parametrize("motif", sorted(MOTIF_STRATEGIES))
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_random_programs_agree_on_random_sequences(motif: str, data):
    n_tokens, program, sequences = data.draw(program_and_sequences(motif))
    alphabet = ALPHABETS[n_tokens]
    expected = reference_decisions(program, sequences)
    tokens, lengths = pad(sequences, MAX_LEN)
    assert_agree("batch", program, sequences, expected, batch_decisions(program, tokens, lengths, n_tokens))
    assert_agree("source", program, sequences, expected, source_decisions(program, sequences, alphabet))
    assert_agree("z3", program, sequences, expected, z3_decisions(program, sequences, MAX_LEN))


# --------------------------------------------------------------------------------------------------------------
# Families: parameter layout and decode agree


FAMILY_TOKENS, FAMILY_MAX_LEN = 3, 4
# the first four use tokens 0 and 1 only, so they also fit 2-token alphabets
COMPOSITION_PARTS = [TokenAt(0, {0}, False), TokenAt(1, {1}, True), LengthThreshold(3), CountThreshold({0}, {1}, 1),
                     Toggle({2}, 0), StateMachine(((0, 1, 0), (1, 1, 1)), {1})]


def families_under_test(n_tokens: int = FAMILY_TOKENS, max_len: int = FAMILY_MAX_LEN):
    return default_families(n_tokens, max_len) + [composition_family(COMPOSITION_PARTS, n_tokens)]


@pytest.mark.parametrize("family", families_under_test(), ids=lambda f: f.name)
def test_family_rows_decode_to_the_programs_they_evaluate(family):
    domain = Domain(ALPHABETS[FAMILY_TOKENS], 1, FAMILY_MAX_LEN)
    tokens, lengths = decode_indices(domain, np.arange(domain.size))
    sequences = [tuple(int(t) for t in row[:n]) for row, n in zip(np.asarray(tokens), np.asarray(lengths))]
    rng = np.random.default_rng(0)
    picks = {(0, 0), (family.n_params - 1, family.n_heads - 1)}
    picks |= {(int(rng.integers(family.n_params)), int(rng.integers(family.n_heads))) for _ in range(6)}
    heads = {name: jnp.asarray(value) for name, value in family.heads.items()}
    for p, k in sorted(picks):
        params = {name: jnp.asarray(value[p:p + 1]) for name, value in family.params.items()}
        own = np.asarray(family.evaluate(params, heads, tokens, lengths))[0, k].astype(np.int8)
        program = family.program(p, k)
        assert_agree(f"{family.name}[{p}, {k}] (single_family)", program, sequences, own,
                     batch_decisions(program, tokens, lengths, FAMILY_TOKENS))
        assert_agree(f"{family.name}[{p}, {k}] (reference)", program, sequences, own,
                     reference_decisions(program, sequences))
        assert single_family(program, FAMILY_TOKENS).program(0, 0) == program


@pytest.mark.parametrize("n_tokens, max_len", [(3, 4), (2, 6), (4, 8)])
def test_min_cost_is_a_tight_lower_bound_of_description_length(n_tokens, max_len):
    """Search prunes a family once a program at most as long as its min_cost is found: min_cost must never
    exceed a member's description length (checked on every member, or a sample of the large families)."""
    rng = np.random.default_rng(n_tokens * 100 + max_len)
    max_raw_tables = 2_000_000 if n_tokens < 4 else 10_000  # the 4-token 3-state DFAs take long to enumerate
    families = default_families(n_tokens, max_len, max_raw_tables=max_raw_tables)
    for family in families + [composition_family(COMPOSITION_PARTS[:4], n_tokens)]:
        if len(family) <= 4000:
            picks = list(itertools.product(range(family.n_params), range(family.n_heads)))
        else:
            picks = list(zip(rng.integers(family.n_params, size=4000), rng.integers(family.n_heads, size=4000)))
        costs = [description_length(family.program(int(p), int(k))) for p, k in picks]
        assert min(costs) >= family.min_cost - 1e-9, f"{family.name}: a member costs {min(costs)} < {family.min_cost}"
        if len(family) <= 4000:
            assert min(costs) == pytest.approx(family.min_cost), f"{family.name}: min_cost is not attained"


def test_default_family_sizes_stay_small():
    sizes = {f.name: len(f) for f in default_families(4, 8)}
    new = {name: size for name, size in sizes.items() if name.startswith(
        ("token_at", "length_threshold", "first_occurrence", "window_count", "saturated_depth"))}
    assert new == {"token_at": 224, "length_threshold": 7, "first_occurrence": 100, "window_count_2": 28,
                   "window_count_3": 42, "window_count_4": 56, "window_count_5": 70, "window_count_6": 84,
                   "window_count_7": 98, "saturated_depth_2": 100, "saturated_depth_3": 150}
    assert sum(new.values()) < 100_000


# --------------------------------------------------------------------------------------------------------------
# JSON form


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_json_form_round_trips(case: Case):
    text = json.dumps(to_json(case.program))
    assert from_json(json.loads(text)) == case.program


# --------------------------------------------------------------------------------------------------------------
# Canonical transition tables: one per isomorphism class of initially-connected DFAs


def _relabel(table: tuple, perm: tuple) -> tuple:
    """The same automaton with state s renamed perm[s] (perm[0] == 0 keeps the start state)."""
    out = [None] * len(table)
    for s, row in enumerate(table):
        out[perm[s]] = tuple(perm[nxt] for nxt in row)
    return tuple(out)


def _start_fixing_perms(n_states: int) -> list[tuple]:
    return [(0,) + rest for rest in itertools.permutations(range(1, n_states))]


def _all_reachable(table: tuple) -> bool:
    seen, frontier = {0}, [0]
    while frontier:
        for nxt in table[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return len(seen) == len(table)


def _as_tuples(tables: np.ndarray) -> list[tuple]:
    return [tuple(tuple(int(s) for s in row) for row in table) for table in tables]


@pytest.mark.parametrize("n_states, n_tokens", [(2, 2), (3, 2), (2, 3)])
def test_canonical_tables_are_connected_and_pairwise_non_isomorphic(n_states, n_tokens):
    tables = _as_tuples(canonical_transition_tables(n_states, n_tokens))
    assert len(set(tables)) == len(tables), "duplicate canonical tables"
    assert all(_all_reachable(t) for t in tables), "a canonical table has unreachable states"
    members = set(tables)
    for table in tables:
        for perm in _start_fixing_perms(n_states):
            image = _relabel(table, perm)
            assert image == table or image not in members, f"{table} and {image} are isomorphic (relabel {perm})"


@pytest.mark.parametrize("n_states, n_tokens", [(2, 2), (3, 2), (2, 3)])
def test_canonical_table_count_matches_brute_force_isomorphism_classes(n_states, n_tokens):
    perms = _start_fixing_perms(n_states)
    classes = set()
    for flat in itertools.product(range(n_states), repeat=n_states * n_tokens):
        table = tuple(flat[s * n_tokens:(s + 1) * n_tokens] for s in range(n_states))
        if _all_reachable(table):
            classes.add(min(_relabel(table, perm) for perm in perms))
    assert len(canonical_transition_tables(n_states, n_tokens)) == len(classes)


# --------------------------------------------------------------------------------------------------------------
# Invalid programs


@pytest.mark.parametrize("make, message", [
    (lambda: CountThreshold({0, 1}, {1}, 1), r"plus and minus must be disjoint, both contain \[1\]"),
    (lambda: DensityThreshold({0}, {0}, 1, 2), r"plus and minus must be disjoint, both contain \[0\]"),
    (lambda: DensityThreshold({0}, {1}, 1, 0), r"reduced fraction with den > 0, got 1/0"),
    (lambda: DensityThreshold({0}, {1}, 1, -2), r"reduced fraction with den > 0, got 1/-2"),
    (lambda: DensityThreshold({0}, {1}, 2, 4), r"reduced fraction with den > 0, got 2/4"),
    (lambda: Toggle({0}, 2), r"Toggle.flip must be 0 or 1, got 2"),
    (lambda: MostRecent({0}, {0, 1}, 0), r"first and second must be disjoint, both contain \[0\]"),
    (lambda: MostRecent({0}, {1}, 2), r"MostRecent.default must be 0 or 1, got 2"),
    (lambda: Constant(2), r"Constant.value must be 0 or 1, got 2"),
    (lambda: CountThreshold({-1}, set(), 0), r"token ids must be non-negative, got \[-1\]"),
    (lambda: StateMachine(((0, 2), (1, 0)), {1}), r"state ids must lie in 0..1, got \[2\]"),
    (lambda: StateMachine(((0, 1), (1, 0)), {3}), r"state ids must lie in 0..1, got \[3\]"),
    (lambda: StateMachine(((0, 1), (1,)), {1}), r"non-empty rectangular table"),
    (lambda: StateMachine((), set()), r"non-empty rectangular table"),
    (lambda: check_program(CountThreshold({0}, {3}, 1), 3), r"token ids \[3\] outside an alphabet of 3 tokens"),
    (lambda: check_program(MostRecent({5}, {0}, 1), 4), r"token ids \[5\] outside an alphabet of 4 tokens"),
    (lambda: check_program(StateMachine(((0, 1), (1, 0)), {1}), 3), r"2 token columns, alphabet has 3"),
    (lambda: single_family(Toggle({2}, 0), 2), r"token ids \[2\] outside an alphabet of 2 tokens"),
    (lambda: TokenAt(-1, {0}, False), r"TokenAt.position must be >= 0, got -1"),
    (lambda: TokenAt(1.5, {0}, False), r"TokenAt.position must be an integer, got 1.5"),
    (lambda: TokenAt(0, {0}, 2), r"TokenAt.from_end must be True or False, got 2"),
    (lambda: LengthThreshold(0), r"LengthThreshold.threshold must be >= 1, got 0"),
    (lambda: FirstOccurrence({0}, {0, 1}, 0), r"first and second must be disjoint, both contain \[0\]"),
    (lambda: FirstOccurrence({0}, {1}, 2), r"FirstOccurrence.default must be 0 or 1, got 2"),
    (lambda: WindowCount({0}, 0, 1), r"WindowCount.window must be >= 1, got 0"),
    (lambda: WindowCount({0}, 2, 3), r"WindowCount.threshold must be 1..2, got 3"),
    (lambda: WindowCount({0}, 2, 0), r"WindowCount.threshold must be 1..2, got 0"),
    (lambda: SaturatedDepth({0, 1}, {1}, 2, 1), r"open and close must be disjoint, both contain \[1\]"),
    (lambda: SaturatedDepth({0}, {1}, 0, 1), r"SaturatedDepth.cap must be >= 1, got 0"),
    (lambda: SaturatedDepth({0}, {1}, 2, 3), r"SaturatedDepth.threshold must be 1..2, got 3"),
    (lambda: Both(Both(Constant(0), Toggle({0}, 0), "or"), Toggle({1}, 0), "and"),
     r"Both.left must be a base motif, not another composition"),
    (lambda: Both(Toggle({0}, 0), TokenAt(0, {1}, True), "nand"), r"Both.op must be one of \['and', 'or', 'xor'\]"),
    (lambda: check_program(Both(Toggle({0}, 0), TokenAt(0, {3}, True), "or"), 3),
     r"token ids \[3\] outside an alphabet of 3 tokens"),
    (lambda: check_program(SaturatedDepth({0}, {4}, 2, 1), 4), r"token ids \[4\] outside an alphabet of 4 tokens"),
    (lambda: composition_family([Toggle({0}, 0), Toggle({0}, 0)], 2), r"at least 2 distinct parts, got 1"),
    (lambda: composition_family([Both(Toggle({0}, 0), Constant(1), "xor"), Toggle({1}, 0)], 2),
     r"compositions do not nest"),
    (lambda: from_json({"motif": "WindowCount", "tokens": [0], "window": "3", "threshold": 1}),
     r"WindowCount.window must be an integer, got '3'"),
    (lambda: CountThreshold({0}, {1}, 2.5), r"CountThreshold.threshold must be an integer, got 2.5"),
    (lambda: CountThreshold({0}, {1}, 2**31), r"threshold must be at most 1,048,576 in magnitude, got 2147483648"),
    (lambda: Constant(True), r"Constant.value must be an integer, got True"),
    (lambda: Toggle({0.5}, 0), r"Toggle.tokens must be an integer, got 0.5"),
    (lambda: StateMachine(((0, 1.0),), {0}), r"StateMachine.transitions must be an integer, got 1.0"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_invalid_programs_raise_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_check_program_rejects_non_programs():
    with pytest.raises(TypeError, match="not a DSL program"):
        check_program("count(a) >= 1", 2)
    with pytest.raises(TypeError, match="Both.right is not a DSL program"):
        Both(Toggle({0}, 0), "count(a) >= 1", "and")


# --------------------------------------------------------------------------------------------------------------
# Candidate filtering


def _index_of(family, program) -> tuple[int, int]:
    for p, k in itertools.product(range(family.n_params), range(family.n_heads)):
        if family.program(p, k) == program:
            return p, k
    raise AssertionError(f"{program} is not in family {family.name}")


FILTER_DOMAIN = Domain(ALPHABETS[3], 1, 4)  # 120 sequences; chunk 32 leaves a padded last chunk


@pytest.mark.parametrize("make_family, known, mutants", [
    (lambda: linear_count_family(3, FILTER_DOMAIN.max_len), CountThreshold({0}, {1}, 1),
     [CountThreshold({0}, {1}, 0), CountThreshold({0}, {1}, 2), CountThreshold({0, 2}, {1}, 1),
      CountThreshold({0}, {1, 2}, 1)]),
    (lambda: most_recent_family(3), MostRecent({1}, {0}, 1),
     [MostRecent({1}, {0}, 0), MostRecent({1, 2}, {0}, 1), MostRecent({1}, {0, 2}, 1)]),
    (lambda: token_at_family(3, FILTER_DOMAIN.max_len), TokenAt(1, {1}, True),
     [TokenAt(0, {1}, True), TokenAt(2, {1}, True), TokenAt(1, {1}, False), TokenAt(1, {0, 1}, True)]),
    (lambda: window_count_family(3, 3), WindowCount({0}, 3, 2),
     [WindowCount({0}, 3, 1), WindowCount({0}, 3, 3), WindowCount({0, 2}, 3, 2)]),
    (lambda: saturated_depth_family(3, 2), SaturatedDepth({0}, {1}, 2, 2),
     [SaturatedDepth({0}, {1}, 2, 1), SaturatedDepth({0}, {1, 2}, 2, 2), SaturatedDepth({1}, {0}, 2, 2)]),
    (lambda: composition_family(COMPOSITION_PARTS, 3), Both(COMPOSITION_PARTS[0], COMPOSITION_PARTS[1], "and"),
     [Both(COMPOSITION_PARTS[0], COMPOSITION_PARTS[1], "or"), Both(COMPOSITION_PARTS[0], COMPOSITION_PARTS[1], "xor"),
      Both(COMPOSITION_PARTS[0], COMPOSITION_PARTS[2], "and")]),
], ids=["signed_count", "most_recent", "token_at", "window_count", "saturated_depth", "composition"])
def test_filter_family_keeps_the_target_program_and_rejects_mutants(make_family, known, mutants):
    family = make_family()
    tokens, lengths, sequences = _domain_arrays(FILTER_DOMAIN.alphabet, FILTER_DOMAIN.max_len)
    target = reference_decisions(known, sequences)
    valid = np.ones(FILTER_DOMAIN.size, dtype=bool)
    probe = np.array([0, 5, 50, 119])
    alive = filter_family(family, FILTER_DOMAIN, target, valid, probe=probe, chunk_size=32)
    assert alive[_index_of(family, known)], f"{known} was discarded although it is the target"
    for mutant in mutants:
        assert not alive[_index_of(family, mutant)], f"{mutant} survived although it differs from {known}"
    for p, k in zip(*np.nonzero(alive)):  # every survivor really agrees everywhere
        np.testing.assert_array_equal(reference_decisions(family.program(p, k), sequences), target)


def test_mismatches_compiles_once_per_shape():
    family = linear_count_family(3, FILTER_DOMAIN.max_len)
    tokens, lengths = decode_indices(FILTER_DOMAIN, np.arange(64))
    heads = {k: jnp.asarray(v) for k, v in family.heads.items()}
    rng = np.random.default_rng(1)

    def call(rows):
        params = {k: jnp.asarray(v[rows]) for k, v in family.params.items()}
        target = jnp.asarray(rng.integers(0, 2, size=64))
        valid = jnp.asarray(rng.random(64) < 0.9)
        return mismatches(family.evaluate, params, heads, tokens, lengths, target, valid)

    call(np.arange(8))
    compiled = mismatches._cache_size()
    call(np.arange(8, 16))  # same shapes, new values
    call(np.arange(16, 24))
    assert mismatches._cache_size() == compiled, "mismatches recompiled for the same shapes"

    # a whole filter pass repeated on the same inputs reuses every compiled block size
    target = reference_decisions(CountThreshold({0}, {1}, 1), _domain_arrays(FILTER_DOMAIN.alphabet, 4)[2])
    valid = np.ones(FILTER_DOMAIN.size, dtype=bool)
    first = filter_family(family, FILTER_DOMAIN, target, valid, chunk_size=32)
    compiled = mismatches._cache_size()
    second = filter_family(family, FILTER_DOMAIN, target, valid, chunk_size=32)
    assert mismatches._cache_size() == compiled, "filter_family recompiled on a repeated pass"
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("n_states", [130, 200, 300])
def test_wide_state_machines_keep_their_state_ids_in_every_meaning(n_states):
    """State ids past int8 (a forged precondition of 200 states once read another state's acceptance in the batched
    meaning, alone and inside Both): batch == reference on every input, alone and composed."""
    from jaxscd.kernels.enumerate import program_decisions

    rng = np.random.default_rng(n_states)
    table = tuple(tuple(int(s) for s in rng.integers(0, n_states, 3)) for _ in range(n_states))
    table = ((1, 2, n_states - 1),) + table[1:]  # reach the high ids from the start
    machine = StateMachine(table, frozenset(int(s) for s in rng.choice(n_states, n_states // 2, replace=False)))
    domain = Domain(("a", "b", "c"), 1, 5)
    tokens, lengths = all_tokens(domain)
    sequences = [list(t[:n]) for t, n in zip(np.asarray(tokens).tolist(), np.asarray(lengths).tolist())]
    for program in (machine, Both(machine, CountThreshold({0}, set(), 1), "and")):
        expected = [run(program, s) for s in sequences]
        assert program_decisions(program, domain).tolist() == expected, program
