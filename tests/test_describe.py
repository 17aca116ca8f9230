"""Exact descriptions beyond the DSL: a NO_PROGRAM circuit that reads only token counts gets its decision as a
table over count vectors, exact on every input; one that reads order gets none."""

from __future__ import annotations

import numpy as np

from jaxscd.circuits.base import Circuit
from jaxscd.domain import Domain
from jaxscd.kernels.enumerate import all_tokens
from jaxscd.pipeline import DistillConfig, distill
from jaxscd.verify.prove import Verdict

DOMAIN = Domain(("a", "b", "c"), 1, 5)
CONFIG = DistillConfig(synth_states=0)


def _residue(tokens):  # a function of the counts that no DSL motif (or composition of two) expresses
    t = np.asarray(tokens)
    a, b = (t == 0).sum(1), (t == 1).sum(1)
    return ((a * a + 3 * b) % 5 == 1).astype(np.int8)


def _palindrome(tokens):  # reads order, not counts
    t = np.asarray(tokens)
    return (t == t[:, ::-1]).all(axis=1).astype(np.int8)


def test_count_function_gets_an_exact_table_checked_on_every_input():
    result = distill(Circuit("residue", _residue, ("no", "yes")), DOMAIN, CONFIG)
    assert result.verdict == Verdict.NO_PROGRAM and result.near_misses
    described = result.exact_description
    assert described is not None and described.inputs == DOMAIN.size
    ones = set(described.ones)
    tokens, lengths = all_tokens(DOMAIN)
    for row, n in zip(tokens, lengths):
        sequence = row[:n]
        counts = tuple(int((sequence == v).sum()) for v in range(3))
        assert (counts in ones) == bool(_residue(sequence[None])[0])
    namespace: dict = {}
    exec(described.source(DOMAIN, ("no", "yes")), namespace)  # the rendered program is the same table
    assert namespace["program"](["a", "b", "b"]) == _residue(np.array([[0, 1, 1]]))[0]


def test_order_dependent_circuit_gets_no_count_table():
    result = distill(Circuit("palindrome", _palindrome, ("no", "yes")), DOMAIN, CONFIG)
    assert result.verdict == Verdict.NO_PROGRAM and result.exact_description is None


def test_report_page_shows_the_exact_description(tmp_path):
    from jaxscd.report import render_report
    from jaxscd.verify.certificate import write_bundle

    result = distill(Circuit("residue", _residue, ("no", "yes"), "f" * 64), DOMAIN, CONFIG)
    write_bundle(result, tmp_path / "B", {"kind": "callable", "target": str(tmp_path / "residue.py:residue")},
                 "f" * 64)
    page = render_report(tmp_path / "B")
    assert 'id="exact-description"' in page and f"{len(result.exact_description.ones)} of" in page
