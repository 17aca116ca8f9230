"""The counterexample search at length (``jaxscd.beyond.attack``): circuits no bounds cover are refuted at the
length where they break, by a sequence the circuit really gives, and never proved."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from jaxscd.beyond.attack import Attack, ladder
from jaxscd.domain import Domain
from jaxscd.dsl import reference as dsl
from jaxscd.dsl.programs import CountThreshold

ROOT = Path(__file__).resolve().parents[1]

BREAKS = textwrap.dedent('''
    import numpy as np

    ALPHABET = ("a", "b", "c")
    LENGTHS = (1, 7)

    def at_least_two(tokens):
        """#a >= 2 up to length BREAK - 1; from BREAK on, #a >= 3 (a circuit that breaks at length BREAK)."""
        tokens = np.asarray(tokens)
        need = 2 if tokens.shape[1] < BREAK else 3
        score = (tokens == 0).sum(axis=1) - need + 0.5
        return np.stack([np.zeros_like(score, dtype=float), score.astype(float)], axis=1)

    def SPEC(tokens):
        return int(tokens.count(0) >= 2)
''')


def _circuit(tmp_path, brk: int) -> str:
    path = tmp_path / f"breaks_{brk}.py"
    path.write_text(BREAKS.replace("BREAK", str(brk)))
    return f"{path}:at_least_two"


def _distill(args):
    proc = subprocess.run([sys.executable, "-m", "jaxscd.cli", "distill", *args, "--json"], capture_output=True,
                          text=True, cwd=ROOT)
    return proc, (json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else None)


def test_ladder_starts_past_the_enumerated_lengths_and_ends_at_the_longest():
    assert ladder(range(1, 13), 7) == [8, 9, 10, 11, 12]
    rungs = ladder(range(1, 129), 8)
    assert rungs[:8] == list(range(9, 17)) and rungs[-1] == 128 and rungs == sorted(set(rungs)) and len(rungs) <= 25
    assert ladder(range(1, 6), 8) == [1, 2, 3, 4, 5]  # nothing past the enumerated lengths: all of them


@pytest.mark.parametrize("brk, max_len", [(13, 24), (40, 64)])
def test_a_circuit_that_breaks_is_refuted_at_its_first_broken_length(tmp_path, brk, max_len):
    proc, payload = _distill(["--circuit", _circuit(tmp_path, brk), "--max-len", str(max_len)])
    assert payload is not None, proc.stderr
    assert payload["verdict"] == "REFUTED"
    refuted = [t for t in payload["tried"] if t["outcome"] == "refuted"]
    assert refuted and all(t["length"] >= brk for t in refuted)
    exact = [t for t in refuted if t["program"].startswith("CountThreshold(plus=frozenset({0}), minus=frozenset(),"
                                                             " threshold=2)")]
    assert exact and exact[0]["length"] == brk  # the shortest: every shorter sequence agrees
    tokens = exact[0]["tokens"]
    assert tokens.count(0) == 2 and exact[0]["circuit"] == 0 and exact[0]["program_class"] == 1
    assert any(f"departs from" in note and f"at length {brk} " in note for note in payload["notes"])
    cells = payload["sampled_departures"]["cells"]  # [length, sampled, departed, untrusted]
    assert cells and all(departed == 0 for n, _, departed, _ in cells if n < brk)
    if brk == 13:  # #a == 2 in about 10% of the sequences of length 13
        assert [departed for n, _, departed, _ in cells if n == brk][0] > 0


def test_a_circuit_that_holds_is_unknown_never_proved(tmp_path):
    proc, payload = _distill(["--circuit", _circuit(tmp_path, 1000), "--max-len", "20"])
    assert payload is not None, proc.stderr
    assert payload["verdict"] == "UNKNOWN"
    assert any("can refute but not prove" in note for note in payload["notes"])
    assert any(t["outcome"] == "unknown" and t["searched"] > 0 for t in payload["tried"])


def test_search_finds_a_disagreement_the_float_circuit_gives(tmp_path):
    """A direct run: the disagreement is re-run alone and its class differs from the program's, with margin."""
    from jaxscd.circuits.base import Circuit

    def forward(tokens):
        tokens = np.asarray(tokens)
        # majority of a over b, except that a 'c' in the first position flips it
        score = (tokens == 0).sum(axis=1) - (tokens == 1).sum(axis=1) - 0.5
        score = np.where(tokens[:, 0] == 2, -score, score)
        return np.stack([np.zeros_like(score), score], axis=1).astype(float)

    circuit = Circuit("flip", forward, ("no", "yes"), "flip")
    domain = Domain(("a", "b", "c"), 1, 30, exhaustive=False)
    program = CountThreshold(frozenset({0}), frozenset({1}), 1)
    searched = Attack(circuit, domain, enumerated=0).search(program, seconds=30)
    assert searched.found is not None and searched.sequences > 0
    tokens = searched.found.tokens
    assert searched.found.circuit != dsl.run(program, tokens) and searched.found.margin > 0
    assert len(tokens) == 1 and tokens == [2]  # the shortest: 'c' alone (score -0.5 flipped to +0.5)


def test_sampled_departures_are_drawn_with_plots_and_in_the_report(tmp_path):
    proc, payload = _distill(["--circuit", _circuit(tmp_path, 13), "--max-len", "16", "--out", str(tmp_path / "b"),
                              "--plots", str(tmp_path / "figs")])
    assert payload is not None and payload["verdict"] == "REFUTED", proc.stderr
    assert (tmp_path / "figs" / "departures.png").stat().st_size > 1000
    report = subprocess.run([sys.executable, "-m", "jaxscd.cli", "report", str(tmp_path / "b"), "-o",
                             str(tmp_path / "r.html")], capture_output=True, text=True, cwd=ROOT)
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "r.html").read_text()
    assert "among uniform random sequences: an estimate" in page and "<svg" in page
