"""The command line: JSON contract, bundles, exit codes, one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from jaxscd.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_tasks_lists_the_seed_tasks():
    out = _run(["tasks"]).output
    assert "quote_close" in out and "bracket_depth" in out


def test_distill_json_contract_and_bundle(tmp_path):
    result = _run(["distill", "bracket_depth", "--max-len", "6", "--json", "--out", str(tmp_path / "b")])
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert payload["verdict"] == "PROVED"
    assert set(payload["domain"]) == {"alphabet", "min_len", "max_len", "size", "precondition", "exhaustive", "valid",
                                      "restriction"}
    assert payload["domain"]["exhaustive"] and payload["domain"]["valid"] > 0
    assert payload["domain"]["size"] == 3 + 9 + 27 + 81 + 243 + 729
    assert payload["candidates"]["survivors"] >= 1 and payload["candidates"]["generated"] > 1000
    assert payload["margin"] > 0 and set(payload["timings"]) >= {"circuit", "surrogate", "search", "prove"}
    namespace = {}
    exec(payload["program"], namespace)
    assert namespace["program"](list("[[a")) == 1 and namespace["program"](list("[]a[aa")) == 0
    files = {p.name for p in (tmp_path / "b").iterdir()}
    assert files == {"program.py", "certificate.json", "surrogate.npz", "query.smt2"}
    cert = json.loads((tmp_path / "b" / "certificate.json").read_text())
    assert cert["verdict"] == "PROVED"
    assert {o["claim"] for o in cert["obligations"]} >= {"circuit == surrogate", "surrogate == program"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging directory left


def test_callable_circuit_from_the_readme_example():
    result = _run(["distill", "--circuit", str(ROOT / "experiments/example_circuit.py:majority"), "--max-len", "5",
                   "--json"])
    payload = json.loads(result.stdout)
    assert result.exit_code == 0 and payload["verdict"] == "PROVED"
    assert payload["spec_mismatches"] == 0
    assert "tokens.count('a') - tokens.count('b')" in payload["program"]


def test_callable_circuit_with_no_exact_program_is_no_program(tmp_path):
    # "is the sequence a palindrome": no counter, toggle, recency motif or 3-state DFA computes it
    (tmp_path / "pal.py").write_text(
        "import numpy as np\nALPHABET = ('a', 'b')\nLENGTHS = (1, 5)\n"
        "def palindrome(tokens):\n    t = np.asarray(tokens)\n    return (t == t[:, ::-1]).all(axis=1).astype(int)\n")
    result = _run(["distill", "--circuit", f"{tmp_path}/pal.py:palindrome", "--json", "--synth-states", "3",
                   "--no-learn"])
    assert result.exit_code == 3
    payload = json.loads(result.stdout)
    assert payload["verdict"] == "NO_PROGRAM"
    misses = payload["near_misses"]
    assert misses and all(0 < m["agreement"] < 1 and m["patterns"] for m in misses)
    assert [m["agreement"] for m in misses] == sorted((m["agreement"] for m in misses), reverse=True)
    assert len({m["program"] for m in misses}) == len(misses)
    assert any("synthesis" in note for note in payload["notes"])


@pytest.mark.parametrize("args, message", [
    (["distill", "no_such_task"], "unknown task 'no_such_task'"),
    (["distill", "bracket_depth", "--max-len", "200"], "exceeds the 128 positions"),
    (["distill", "for_while", "--max-len", "40"], "exceeds the 16 positions"),
    (["distill", "bracket_depth", "--min-len", "5", "--max-len", "3"], "1 <= min_len <= max_len"),
    (["distill", "--circuit", "missing.py:f"], "circuit file not found"),
    (["distill", "--circuit", "experiments/example_circuit.py:nope"], "has no callable named 'nope'"),
    (["distill", "--circuit", "experiments/example_circuit.py"], "path/to/file.py:function"),
    (["distill", "--circuit", "experiments/example_circuit.py:majority", "--alphabet", "a"], "at least 2 tokens"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    proc = subprocess.run([sys.executable, "-m", "jaxscd.cli", *args], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr


def test_circuit_returning_nan_is_a_clear_error(tmp_path):
    (tmp_path / "nan.py").write_text("import numpy as np\nALPHABET = ('a', 'b')\n"
                                     "def f(tokens):\n    return np.full((len(tokens), 2), np.nan)\n")
    proc = subprocess.run([sys.executable, "-m", "jaxscd.cli", "distill", "--circuit", f"{tmp_path}/nan.py:f"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "non-finite logits" in proc.stderr and "Traceback" not in proc.stderr


def test_ctrl_c_mid_run_exits_130_and_writes_nothing(tmp_path):
    import signal
    import time

    # a shell that started us in the background may have set SIGINT to "ignore", which children inherit:
    # the child turns Python's Ctrl-C handler back on, as an interactive terminal would have it
    launcher = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                "sys.argv = ['jaxscd'] + sys.argv[1:]; runpy.run_module('jaxscd.cli', run_name='__main__')")
    proc = subprocess.Popen([sys.executable, "-c", launcher, "distill", "bracket_depth", "--max-len", "13", "--out",
                             str(tmp_path / "bundle")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)
    time.sleep(5)  # inside the pipeline (JAX is up, stages are running)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert stderr.strip().splitlines() == ["jaxscd: error: interrupted; nothing was written"]
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_a_solver_call_is_not_a_timeout(monkeypatch):
    # z3 catches SIGINT itself and answers unknown: that must surface as KeyboardInterrupt, not UNKNOWN/PROVED
    import z3

    from jaxscd.dsl import Toggle
    from jaxscd.surrogates import IntegerSurrogate
    from jaxscd.domain import Domain
    from jaxscd.verify import cubes, prove

    monkeypatch.setattr(z3.Solver, "check", lambda self, *a: z3.unknown)
    monkeypatch.setattr(z3.Solver, "reason_unknown", lambda self: "interrupted from keyboard")
    s = IntegerSurrogate(np.zeros((2, 2, 0), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                         np.ones((2, 2), np.int64), 0)
    with pytest.raises(KeyboardInterrupt):
        prove.prove_equivalent(s, Toggle({0}, 0), Domain(("a", "b"), 1, 2), strategy="single")
    with pytest.raises(KeyboardInterrupt):
        cubes.solve_text("(set-logic QF_LIA)\n(assert true)", 1.0)


def test_killed_solver_process_is_unknown_never_proved(monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    from jaxscd.dsl import MostRecent
    from jaxscd.kernels.enumerate import precondition_mask
    from jaxscd.surrogates import IntegerSurrogate
    from jaxscd.tasks import get_task
    from jaxscd.verify import cubes

    def dies(*args, **kwargs):
        raise BrokenProcessPool("killed")

    monkeypatch.setattr(cubes, "solve_text", dies)
    domain = get_task("quote_close").domain(max_len=3)
    rng = np.random.default_rng(0)
    s = IntegerSurrogate(rng.integers(-3, 4, (3, 4, 2)), rng.integers(-2, 3, 2), rng.integers(-3, 4, 2),
                         rng.integers(-3, 4, (3, 4)), 1)
    run = cubes.prove_by_cubes(s, MostRecent({2}, {3}, 0), domain, precondition_mask(domain), workers=1)
    assert run.answer == "unknown" and "died" in run.reason
