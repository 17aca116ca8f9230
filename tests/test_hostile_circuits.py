"""Hostile circuits: each gets the verdict it must get, never PROVED where the claim would be false, one line on
stderr, the documented exit code and nothing written. Tiny domains (tokens a, b; lengths 1..4) keep every case
fast; domains that cannot finish are refused from an up-front estimate (jaxscd.budget)."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from jaxscd.cli import main

ROOT = Path(__file__).resolve().parents[1]
HEADER = "import numpy as np\nALPHABET = ('a', 'b')\nLENGTHS = (1, 4)\n"
NOT_A_FUNCTION = "is not a function of its input"
REFERENCE = ("from jaxscd.circuits.reference import bracket_depth_circuit\nALPHABET = ('[', ']', 'a')\n"
             "f = bracket_depth_circuit()\n")  # OneLayerCircuit, 128 positions; short search on HEADER's lengths 1..4

# name: (module text after HEADER, extra CLI arguments, exit status, words the one stderr line must contain)
HOSTILE = {
    "normalises by the batch mean": ("""
def f(tokens):
    count = (tokens == 0).sum(1).astype(float)
    score = count - count.mean() + 0.25
    return np.stack([np.zeros_like(score), score], 1)
""", [], 2, [NOT_A_FUNCTION, "alone"]),
    "branches on the batch size": ("""
def f(tokens):
    if len(tokens) > 1:
        return ((tokens == 0).sum(1) > (tokens == 1).sum(1)).astype(int)
    return (tokens[:, 0] == 0).astype(int)
""", [], 2, [NOT_A_FUNCTION, "alone"]),
    "branches on the row index": ("""
def f(tokens):
    return ((tokens == 0).sum(1) % 2 ^ (np.arange(len(tokens)) % 3 == 1)).astype(int)
""", [], 2, [NOT_A_FUNCTION]),
    "depends on the order of its batch": ("""
def f(tokens):
    keys = [tuple(row) for row in tokens.tolist()]
    honest = (tokens[:, -1] == 0).astype(int)
    return honest if keys == sorted(keys) else 1 - honest
""", [], 2, [NOT_A_FUNCTION, "shuffled"]),
    "counts its own calls": ("""
CALLS = [0]
def f(tokens):
    CALLS[0] += 1
    return (tokens[:, -1 if CALLS[0] <= 4 else 0] == 0).astype(int)
""", [], 2, [NOT_A_FUNCTION]),
    "overflows in int32": ("""
def f(tokens):
    return (((tokens + 1) * 2**30).sum(1) > 0).astype(int)
""", [], 2, [NOT_A_FUNCTION, "int32", "int64"]),
    "calls sys.exit(0) on import": ("import sys\nsys.exit(0)\ndef f(tokens):\n    return tokens[:, 0]\n",
                                    [], 2, ["could not import", "SystemExit"]),
    "calls sys.exit(0) when run": ("import sys\ndef f(tokens):\n    sys.exit(0)\n", [], 2, ["SystemExit"]),
    "raises": ("def f(tokens):\n    raise RuntimeError('boom\\nsecond line')\n", [], 2, ["raised RuntimeError: boom"]),
    "returns huge Python ints": ("def f(tokens):\n    return [[10**400, 0]] * len(tokens)\n", [], 2,
                                 ["dtype object"]),
    "returns complex logits": ("def f(tokens):\n    return np.ones((len(tokens), 2)) * 1j + np.arange(2)\n", [], 2,
                               ["complex128"]),
    "LENGTHS = 5": ("LENGTHS = 5\ndef f(tokens):\n    return tokens[:, 0]\n", [], 2, ["LENGTHS", "got 5"]),
    "LENGTHS = (1.9, 3.7)": ("LENGTHS = (1.9, 3.7)\ndef f(tokens):\n    return tokens[:, 0]\n", [], 2,
                             ["LENGTHS", "(1.9, 3.7)"]),
    "CLASS_NAMES = None": ("CLASS_NAMES = None\ndef f(tokens):\n    return tokens[:, 0]\n", [], 2, ["CLASS_NAMES"]),
    "--alphabet reorders ALPHABET": ("def f(tokens):\n    return tokens[:, 0]\n", ["--alphabet", "b,a"], 2,
                                     ["does not match the ALPHABET"]),
    "SPEC calls sys.exit(0)": ("import sys\ndef SPEC(tokens):\n    sys.exit(0)\n"
                               "def f(tokens):\n    return (tokens[:, 0] == 0).astype(int)\n", [], 2,
                               ["SPEC", "SystemExit"]),
    "12 tokens x max_len 7 (39M inputs, 1.3G candidates)": (
        "ALPHABET = tuple('abcdefghijkl')\nLENGTHS = (1, 7)\ndef f(tokens):\n    return tokens[:, 0] < 3\n",
        [], 2, ["39,089,244 sequences", "would take about", "--time-limit"]),
    "2 tokens x max_len 25 (67M inputs)": ("LENGTHS = (1, 25)\ndef f(tokens):\n    return tokens[:, 0]\n", [], 2,
                                           ["67,108,862 sequences", "would take about", "--time-limit"]),
    "runs past --time-limit": ("import time\ndef f(tokens):\n    time.sleep(1)\n    return tokens[:, 0]\n",
                               ["--time-limit", "4"], 4, ["--time-limit of 4 s ran out", "nothing was written"]),
    # a built-in reference circuit instance as the callable: its structure is known to the bounds up to its positions
    "a reference circuit instance, --max-len 700 (a size past float range)": (
        REFERENCE, ["--max-len", "700"], 2, ["1.45e+334 sequences", "beyond enumeration", "its 128 positions"]),
    "a reference circuit instance, --max-len 129": (REFERENCE, ["--max-len", "129"], 2,
                                                     ["(lengths 1..129)", "its 128 positions", "lower --max-len"]),
    "a reference circuit instance, --max-len of 81 digits": (REFERENCE, ["--max-len", str(10**80)], 2,
                                                             ["(a 81-digit number)", "2,048", "lower --max-len"]),
    "a reference circuit instance, --max-len 30 (the control)": (REFERENCE, ["--max-len", "30"], 0, []),
    "LENGTHS = (1, 10**400)": ("LENGTHS = (1, 10**400)\ndef f(tokens):\n    return tokens[:, 0]\n", [], 2,
                               ["(a 401-digit number)", "2,048"]),
    # purity beyond one seeded sample (issue 18): each evades a check that re-runs a fixed sample alone and the first
    # batch shuffled (every table batch here is a power of two: 2, 4, 8, ... inputs per length)
    "differs alone on one input outside any fixed sample": ("""LENGTHS = (1, 12)
def f(tokens):
    honest = (tokens[:, -1] == 0).astype(int)
    if len(tokens) == 1 and tokens[0].tolist() == [0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1]:
        return 1 - honest
    return honest
""", [], 2, [NOT_A_FUNCTION, "'abbabaabbbab'", "alone"]),
    "flips on batch sizes that are not powers of two": ("""
def f(tokens):
    honest = (tokens[:, -1] == 0).astype(int)
    return honest if len(tokens) & (len(tokens) - 1) == 0 else 1 - honest
""", [], 2, [NOT_A_FUNCTION, "shuffled batch of 3"]),
    "differs only in a batch of 7": ("""
def f(tokens):
    honest = (tokens[:, -1] == 0).astype(int)
    return 1 - honest if len(tokens) == 7 else honest
""", [], 2, [NOT_A_FUNCTION, "shuffled batch of 7"]),
    "differs only in odd batches above 100 (every input re-batched)": ("""LENGTHS = (1, 12)
def f(tokens):
    honest = (tokens[:, -1] == 0).astype(int)
    return 1 - honest if len(tokens) > 100 and len(tokens) % 2 else honest
""", [], 2, [NOT_A_FUNCTION, "shuffled batch of 127"]),
    "differs only on its 2nd call": ("""
CALLS = [0]
def f(tokens):
    CALLS[0] += 1
    honest = (tokens[:, -1] == 0).astype(int)
    return 1 - honest if CALLS[0] == 2 else honest
""", [], 2, [NOT_A_FUNCTION, "alone"]),
    "CLASS_NAMES = ('x', 'x')": ("CLASS_NAMES = ('x', 'x')\ndef f(tokens):\n    return tokens[:, 0]\n", [], 2,
                                 ["CLASS_NAMES", "must be unique, repeated: ['x']"]),
    "pure (the control)": ("def f(tokens):\n    return (tokens[:, -1] == 0).astype(int)\n", [], 0, []),
}
PURE = HOSTILE["pure (the control)"][0]


def _distill(path, extra=(), env=None, out=None):
    args = ["distill", "--circuit", f"{path}:f", "--json", *extra] + (["--out", str(out)] if out else [])
    return CliRunner().invoke(main, args, catch_exceptions=False, env=env)


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_circuit_gets_its_verdict(name, tmp_path):
    body, extra, status, words = HOSTILE[name]
    (tmp_path / "circuit.py").write_text(HEADER + body)
    result = _distill(tmp_path / "circuit.py", extra, out=tmp_path / "bundle")
    assert result.exit_code == status, result.output
    assert (tmp_path / "bundle").exists() == (status == 0)
    if status == 0:
        assert json.loads(result.stdout)["verdict"] == "PROVED"
        return
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert all(word in lines[0] for word in words), lines[0]
    assert "PROVED" not in result.stdout


def test_verify_fails_when_the_circuit_turns_impure(tmp_path):
    # same file (same sha256), impure only when asked: a batch of one answers differently
    (tmp_path / "circuit.py").write_text(HEADER + """import os
def f(tokens):
    honest = (tokens[:, -1] == 0).astype(int)
    return 1 - honest if os.environ.get("HOSTILE") and len(tokens) == 1 else honest
""")
    assert _distill(tmp_path / "circuit.py", out=tmp_path / "bundle").exit_code == 0
    args = ["verify", str(tmp_path / "bundle"), "--circuit", f"{tmp_path / 'circuit.py'}:f"]
    assert CliRunner().invoke(main, args, catch_exceptions=False).exit_code == 0
    result = CliRunner().invoke(main, args, catch_exceptions=False, env={"HOSTILE": "1"})
    assert result.exit_code == 6 and "VERIFIED" not in result.stdout
    assert NOT_A_FUNCTION in result.stdout


def test_each_run_draws_its_own_purity_seed_and_records_the_evidence(tmp_path):
    (tmp_path / "circuit.py").write_text(HEADER + PURE)
    recorded = []
    for run in ("one", "two"):
        assert _distill(tmp_path / "circuit.py", out=tmp_path / run).exit_code == 0
        recorded.append(json.loads((tmp_path / run / "certificate.json").read_text())["purity"])
    assert recorded[0]["seed"] != recorded[1]["seed"] and len(recorded[0]["seed"]) == 32
    for purity in recorded:  # 30 inputs: every one alone and in a second batching; sizes 1 and odd primes
        assert purity["inputs"] == purity["alone"] == purity["rebatched"] == 30
        assert purity["every_input_alone"] and purity["every_input_rebatched"]
        assert {1, 3, 7, 13, 31} <= set(purity["batch_sizes"])
    args = ["verify", str(tmp_path / "one"), "--circuit", f"{tmp_path / 'circuit.py'}:f"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0 and "VERIFIED" in result.stdout
    line = next(line for line in result.stdout.splitlines() if "purity re-run" in line)
    assert line.split()[0] == "ok" and "every one of 30 inputs" in line
    this_run, recorded_part = line.split("recorded: ")
    assert f"seed {recorded[0]['seed'][:8]}" in recorded_part  # the certificate's evidence ...
    assert recorded[0]["seed"][:8] not in this_run  # ... beside verify's own, under a fresh seed


def test_a_bundle_without_purity_evidence_still_verifies(tmp_path):
    bundle = shutil.copytree(ROOT / "tests" / "data" / "bundles_v1" / "single", tmp_path / "single")
    result = CliRunner().invoke(main, ["verify", str(bundle)], catch_exceptions=False)
    assert result.exit_code == 0 and "VERIFIED" in result.stdout
    assert "recorded: none (written before purity evidence was recorded)" in result.stdout


@pytest.mark.parametrize("delay", [0.3, 1.0, 2.0, 4.0])
def test_ctrl_c_at_any_moment_exits_130_and_writes_nothing(delay, tmp_path):
    # the console script's module (jaxscd_main) handles SIGINT from its first line, before JAX is imported
    # a run of about 15 s on 2 CPU cores, so every delay lands inside it
    proc = subprocess.Popen([sys.executable, "-m", "jaxscd_main", "distill", "bracket_depth", "--max-len", "14",
                             "--out", str(tmp_path / "bundle")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["jaxscd: error: interrupted; nothing was written"]
    assert list(tmp_path.iterdir()) == []
