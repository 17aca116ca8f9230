"""Every dispatch on the motif type handles every motif, so a motif added to dsl/programs.py fails here until each
meaning has a case for it.

A new motif touches: dsl/programs.py (the class, BASE_MOTIFS, Program, description_length), dsl/reference.py,
dsl/batch.py (single_family, and a search family in default_families), dsl/smt.py, dsl/source.py, dsl/abstract.py,
the compiler (jaxscd/surrogates/compiled.py), jaxscd/beyond/symmetry.py (orbit_invariant, count_invariant;
program_on_orbits when invariant), tests/mutants.py (program_mutants) and tests/cases.py (named cases). Every dispatch raises on a motif it
has no case for; each test below names the cases a meaning fails on.
"""

from __future__ import annotations

import dataclasses
import functools
import typing

import numpy as np
import pytest
import z3

from cases import CASES, Case
from jaxscd.dsl import programs
from jaxscd.dsl.abstract import outputs
from jaxscd.dsl.batch import default_families, evaluate_program, single_family
from jaxscd.dsl.programs import (
    BASE_MOTIFS,
    MOTIFS,
    check_program,
    description_length,
    from_json,
    rank_key,
    to_json,
)
from jaxscd.dsl.reference import run
from jaxscd.dsl.smt import encode
from jaxscd.dsl.source import load, render
from jaxscd.kernels.enumerate import all_tokens
from jaxscd.surrogates import IntegerSurrogate
from jaxscd.surrogates.compiled import CompileError, compile_program
from jaxscd.beyond.symmetry import count_invariant, orbit_invariant, orbits, program_on_orbits
from mutants import program_mutants

# Motifs the compiler may refuse with a CompileError (none today: every motif compiles on the case domains).
NOT_COMPILED: dict = {}  # motif class -> why it has no exact network


@functools.lru_cache(maxsize=None)
def _inputs(case: Case) -> tuple[np.ndarray, np.ndarray, list, np.ndarray]:
    """Padded tokens, lengths, plain sequences and reference classes of every input of the case's domain."""
    tokens, lengths = all_tokens(case.domain)
    sequences = [row[:n].tolist() for row, n in zip(tokens, lengths)]
    return tokens, lengths, sequences, np.array([run(case.program, s) for s in sequences], dtype=np.int8)


# --------------------------------------------------------------------------------------------------------------
# One check per meaning: it must accept the case's program and give an answer of the right kind


def _reference(case: Case) -> None:
    assert set(_inputs(case)[3].tolist()) <= {0, 1}


def _programs(case: Case) -> None:
    check_program(case.program, case.n_tokens)
    assert description_length(case.program) > 0
    assert from_json(to_json(case.program)) == case.program
    rank_key(case.program)


def _batch(case: Case) -> None:
    assert single_family(case.program, case.n_tokens).program(0, 0) == case.program
    tokens, lengths, _, expected = _inputs(case)
    assert np.array_equal(np.asarray(evaluate_program(case.program, tokens, lengths, case.n_tokens)), expected)


def _smt(case: Case) -> None:
    term = encode(case.program, [z3.Int(f"token_{i}") for i in range(case.max_len)], z3.Int("length"))
    assert z3.is_bool(term)


def _source(case: Case) -> None:
    function = load(render(case.program, case.alphabet))
    _, _, sequences, expected = _inputs(case)
    assert function([case.alphabet[t] for t in sequences[0]]) == expected[0]


def _abstract(case: Case) -> None:
    _, lengths, _, expected = _inputs(case)
    for n in case.domain.lengths:  # the cube of every sequence of length n
        assert set(expected[lengths == n].tolist()) <= outputs(case.program, np.ones((n, case.n_tokens), bool))


def _compiler(case: Case) -> None:
    try:
        assert isinstance(compile_program(case.program, case.domain), IntegerSurrogate)
    except CompileError:
        if type(case.program) not in NOT_COMPILED:
            raise


def _mutants(case: Case) -> None:
    edits = list(program_mutants(case.program, case.n_tokens))
    assert edits, "no mutant at all"
    assert all(isinstance(mutant, MOTIFS) for _, mutant in edits)


def _symmetry(case: Case) -> None:
    if orbit_invariant(case.program):  # then its value on orbits must come from the counts alone
        orb = orbits(case.n_tokens, case.domain.lengths)
        predicted = program_on_orbits(case.program, orb)
        truth = [run(case.program, orb.representative(row)) for row in range(len(orb))]
        assert np.array_equal(predicted, truth)
    if count_invariant(case.program):  # then every reordering of a sequence gets its class (the counts strategy)
        rng = np.random.default_rng(0)
        for n in case.domain.lengths:
            sequence = rng.integers(0, case.n_tokens, n).tolist()
            assert run(case.program, sequence) == run(case.program, sorted(sequence))
    assert not count_invariant(case.program) or orbit_invariant(case.program)


MEANINGS = {"reference": _reference, "programs": _programs, "batch": _batch, "smt": _smt, "source": _source,
            "abstract": _abstract, "compiler": _compiler, "mutants": _mutants, "symmetry": _symmetry}


# --------------------------------------------------------------------------------------------------------------
# Tests


def test_every_class_in_programs_py_is_a_listed_motif():
    defined = {value for value in vars(programs).values()
               if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__module__ == programs.__name__}
    assert defined == set(MOTIFS), (f"dsl/programs.py defines {sorted(c.__name__ for c in defined - set(MOTIFS))} "
                                    f"outside BASE_MOTIFS / MOTIFS: add them there")
    assert set(typing.get_args(programs.Program)) == set(MOTIFS), "the Program union must list every motif"


def test_the_case_table_covers_every_motif():
    missing = set(MOTIFS) - {type(case.program) for case in CASES}
    assert not missing, f"no case in tests/cases.py for {sorted(c.__name__ for c in missing)}: add one"


@pytest.mark.parametrize("meaning", MEANINGS)
def test_every_meaning_handles_every_motif(meaning):
    failures = []
    for case in CASES:
        try:
            MEANINGS[meaning](case)
        except Exception as err:  # noqa: BLE001 - every failure is collected into one report
            failures.append(f"  {case.name} ({type(case.program).__name__}): {type(err).__name__}: {err}")
    assert not failures, f"{meaning} fails on {len(failures)} cases:\n" + "\n".join(failures)


def test_the_search_has_a_family_for_every_base_motif():
    searched = {type(family.program(0, k)) for family in default_families(n_tokens=3, max_len=5, max_states=2)
                for k in range(family.n_heads)}  # one signed counter's heads hold counts and densities
    assert searched == set(BASE_MOTIFS), (f"default_families has no family for "
                                          f"{sorted(c.__name__ for c in set(BASE_MOTIFS) - searched)}")
