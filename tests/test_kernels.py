"""Enumeration kernel: index <-> tokens bijection, fixed chunk shapes, one compilation per shape."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxscd.domain import Domain, DomainError
from jaxscd.kernels import enumerate as enum


def test_decoding_enumerates_every_sequence_once_in_order():
    domain = Domain(("a", "b", "c"), 2, 4)
    tokens, lengths = enum.all_tokens(domain)
    expected = [seq for n in domain.lengths for seq in itertools.product(range(3), repeat=n)]
    got = [tuple(tokens[i, :lengths[i]]) for i in range(domain.size)]
    assert got == expected
    assert (tokens[lengths[:, None] <= np.arange(4)[None]] == -1).all()  # padding beyond the length
    assert [domain.index_of(s) for s in expected] == list(range(domain.size))


def test_chunks_cover_the_domain_with_one_shape():
    domain = Domain(("a", "b"), 1, 6)
    seen, shapes = [], set()
    for first, tokens, lengths, real in enum.chunks(domain, 16):
        shapes.add(tokens.shape)
        seen.extend(range(first, first + real))
    assert seen == list(range(domain.size)) and shapes == {(16, 6)}


@settings(max_examples=40, deadline=None)
@given(n_tokens=st.integers(2, 6), min_len=st.integers(0, 4), extra=st.integers(0, 4), seed=st.integers(0, 2**32 - 1))
def test_host_decode_is_the_jitted_decode_and_inverts_index_of(n_tokens, min_len, extra, seed):
    domain = Domain(tuple("abcdef"[:n_tokens]), max(1, min_len), max(1, min_len) + extra)
    indices = np.random.default_rng(seed).integers(0, domain.size, 64)
    indices[:2] = 0, domain.size - 1
    host = domain.decode(indices)
    jitted = enum.decode(indices, domain.starts, n_tokens=domain.n_tokens, min_len=domain.min_len,
                         max_len=domain.max_len)
    assert all(np.array_equal(h, np.asarray(j)) and h.dtype == np.int32 for h, j in zip(host, jitted))
    tokens, lengths = host
    assert [domain.index_of(row[:n].tolist()) for row, n in zip(tokens, lengths)] == indices.tolist()


def test_decode_compiles_once_per_shape(monkeypatch):
    monkeypatch.setattr(enum, "HOST_ROWS", 0)  # every decode through the jitted kernel
    domain = Domain(("a", "b", "c"), 1, 5)
    list(enum.chunks(domain, 32))
    before = enum.decode._cache_size()
    list(enum.chunks(domain, 32))
    list(enum.chunks(domain, 32, start=5, stop=200))
    assert enum.decode._cache_size() == before


@pytest.mark.parametrize("kwargs, message", [
    (dict(alphabet=("a",), min_len=1, max_len=3), "at least 2 tokens"),
    (dict(alphabet=("a", "a"), min_len=1, max_len=3), "repeated tokens"),
    (dict(alphabet=("a", "b"), min_len=0, max_len=3), "1 <= min_len <= max_len"),
    (dict(alphabet=("a", "b"), min_len=4, max_len=3), "1 <= min_len <= max_len"),
    (dict(alphabet=tuple("abcdefgh"), min_len=1, max_len=12), "above the exhaustive limit"),
])
def test_bad_domains_say_what_and_how_to_fix(kwargs, message):
    with pytest.raises(DomainError, match=message):
        Domain(**kwargs)


@pytest.mark.parametrize("target_kind", ["count_based", "order_based", "random"])
def test_count_table_filter_equals_the_per_input_filter(target_kind):
    from jaxscd.dsl import CountThreshold, MostRecent
    from jaxscd.dsl.batch import evaluate_program, linear_count_family, toggle_family
    from jaxscd.kernels.filter import count_table, filter_family

    domain = Domain(("a", "b", "c"), 1, 5)
    tokens, lengths = enum.all_tokens(domain)
    rng = np.random.default_rng(0)
    if target_kind == "random":
        target = rng.integers(0, 2, domain.size).astype(np.int8)
    else:
        program = CountThreshold({0}, {1}, 1) if target_kind == "count_based" else MostRecent({0}, {1}, 0)
        target = np.asarray(evaluate_program(program, tokens.astype(np.int32), lengths.astype(np.int32), 3),
                            dtype=np.int8)
    valid = rng.random(domain.size) < 0.8
    table = count_table(domain, target, valid)
    assert int(np.asarray(table.weight).sum()) == valid.sum()
    for family in (linear_count_family(3, 5), toggle_family(3)):
        plain = filter_family(family, domain, target, valid, chunk_size=64)
        grouped = filter_family(family, domain, target, valid, counts=table)
        np.testing.assert_array_equal(plain, grouped)
        if target_kind == "count_based" and family.name == "signed_count":
            assert grouped.any()


@pytest.mark.parametrize("family_name", ["signed_count", "state_machine_2", "state_machine_3", "saturated_depth_2"])
def test_statistic_mismatches_equal_direct_decisions(family_name):
    """The fused kernel (statistic histogram x head table) counts exactly what the [P, K, N] decisions give."""
    import jax.numpy as jnp

    from jaxscd.dsl.batch import default_families
    from jaxscd.kernels.filter import mismatches

    domain = Domain(("a", "b", "c"), 1, 5)
    family = next(f for f in default_families(3, 5) if f.name == family_name)
    rows = np.arange(min(64, family.n_params))
    params = {k: jnp.asarray(v[rows]) for k, v in family.params.items()}
    heads = {k: jnp.asarray(v) for k, v in family.heads.items()}
    tokens, lengths = enum.decode_indices(domain, np.arange(domain.size))
    rng = np.random.default_rng(0)
    target, weight = rng.integers(0, 2, domain.size), rng.integers(0, 3, domain.size)
    fused = np.asarray(mismatches(family.evaluate, params, heads, tokens, lengths, jnp.asarray(target),
                                  jnp.asarray(weight)))
    decisions = np.asarray(family.evaluate(params, heads, tokens, lengths))  # [P, K, N]
    direct = ((decisions != (target == 1)) * weight).sum(axis=-1)
    assert np.array_equal(fused, direct)


# ------------------------------------------------------------------------------------------------------------
# The purity check run after every truth table (jaxscd.circuits.purity)


def _last_token_is_a(tokens):
    return (np.asarray(tokens)[:, -1] == 0).astype(int)


def test_every_truth_table_carries_fresh_purity_evidence():
    from jaxscd.circuits.base import Circuit
    from jaxscd.circuits.purity import PurityEvidence
    from jaxscd.kernels.evaluate import evaluate_circuit

    domain = Domain(("a", "b"), 1, 4)
    valid = np.arange(domain.size) % 5 != 0  # 24 of 30 valid: only valid inputs are re-run
    first, second = (evaluate_circuit(Circuit("last", _last_token_is_a), domain, valid).purity for _ in range(2))
    assert first.seed != second.seed and first.seed.bit_length() > 64
    assert (first.inputs, first.alone, first.ladder, first.rebatched) == (24, 24, 24, 24)
    assert first.every_input_alone and first.every_input_rebatched and first.batch_sizes == (1, 3, 7, 13, 31)
    assert PurityEvidence.from_json(first.to_json()) == first
    assert PurityEvidence.from_json(first.to_json() | {"seed": "zz"}) is None  # not a block jaxscd writes


def test_purity_decodes_without_tracing_and_skips_the_ladder_for_jitted_circuits():
    from jaxscd.circuits.purity import CALLS_PER_LENGTH, PRIMES, batch_size_for
    from jaxscd.kernels.evaluate import evaluate_circuit
    from jaxscd.tasks import get_task

    task = get_task("bracket_depth")
    domain = Domain(task.alphabet, 1, 3)
    before = enum.decode._cache_size()
    purity = evaluate_circuit(task.circuit, domain, np.ones(domain.size, bool)).purity
    assert enum.decode._cache_size() == before  # small domains decode in numpy: nothing traced
    assert purity.ladder == 0 and purity.batch_sizes == (1, 3) and purity.every_input_rebatched
    assert all(p % 2 and all(p % q for q in range(2, p)) for p in PRIMES)  # odd primes
    assert [batch_size_for(n) for n in (1, 192, 193, 4096, 10**7)] == [3, 3, 7, 127, 8191]
    assert all(-(-n // batch_size_for(n)) <= CALLS_PER_LENGTH for n in range(1, 8191 * CALLS_PER_LENGTH, 997))
