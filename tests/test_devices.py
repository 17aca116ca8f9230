"""Every device, one code path: 8 forced host devices give the same truth table, surrogate check and survivors as one.

Each side runs in a fresh interpreter, since XLA_FLAGS must be set before JAX initialises.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = r"""
import json, sys
import numpy as np
from jaxscd import devices
from jaxscd.kernels.evaluate import evaluate_circuit
from jaxscd.kernels.enumerate import precondition_mask
from jaxscd.kernels.filter import filter_family
from jaxscd.problem import Problem
from jaxscd.search import search
from jaxscd.surrogates import exhaustive_decisions, wrong_inputs
from jaxscd.surrogates.lp import fit_linear
from jaxscd.tasks import get_task

out, arrays = {"devices": devices.describe()}, {}
for name, max_len in (("quote_close", 5), ("bracket_depth", 6)):
    task = get_task(name)
    domain = task.domain(None, max_len)
    valid = precondition_mask(domain)
    problem = Problem(domain, evaluate_circuit(task.circuit, domain, valid))
    found = search(domain, problem.decisions, valid, problem.families, problem.probe, problem.counts)
    for family in problem.families:  # the per-input statistic kernels too (no count table, no pruning)
        if family.name in ("signed_count", "state_machine_2"):
            alive = filter_family(family, domain, problem.decisions, valid, problem.probe)
            arrays[f"{name}_{family.name}_alive"] = alive
    fit = fit_linear(domain, problem.decisions, valid)
    arrays[name + "_decisions"], arrays[name + "_margins"] = problem.table.decisions, problem.table.margins
    arrays[name + "_count_weight"] = np.asarray(problem.counts.weight)
    if fit.surrogate is not None:
        arrays[name + "_surrogate"] = exhaustive_decisions(fit.surrogate, domain)[0]
        # a deliberately wrong target: the check must find the same inputs on any device count
        count, wrong = wrong_inputs(fit.surrogate, domain, 1 - problem.decisions, valid, limit=64)
        arrays[name + "_wrong"] = np.concatenate([[count], wrong])
    out[name] = {"survivors": [repr(p) for p in found.survivors], "per_family": found.per_family,
                 "surrogate": fit.surrogate is not None}
np.savez(sys.argv[1] + ".npz", **arrays)
open(sys.argv[1] + ".json", "w").write(json.dumps(out))
"""


def _run(tmp_path, n_devices: int):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n_devices}", JAX_PLATFORMS="cpu")
    stem = str(tmp_path / f"devices{n_devices}")
    done = subprocess.run([sys.executable, "-c", SCRIPT, stem], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(open(stem + ".json").read()), dict(np.load(stem + ".npz"))


@pytest.mark.slow
def test_eight_devices_match_one(tmp_path):
    one, one_arrays = _run(tmp_path, 1)
    eight, eight_arrays = _run(tmp_path, 8)
    assert one["devices"]["count"] == 1 and eight["devices"]["count"] == 8
    assert eight["devices"]["platform"] == "cpu"
    for name in ("quote_close", "bracket_depth"):
        assert one[name] == eight[name], name
        assert one[name]["survivors"] and one[name]["surrogate"], name
    assert one_arrays.keys() == eight_arrays.keys()
    for key in one_arrays:
        assert one_arrays[key].dtype == eight_arrays[key].dtype
        assert np.array_equal(one_arrays[key], eight_arrays[key]), f"{key} differs on 8 devices"  # bit-identical


def test_describe_names_the_devices():
    from jaxscd import devices

    described = devices.describe()
    assert described["count"] >= 1 and described["platform"] and described["kind"]


def test_rows_split_or_replicate():
    from jaxscd import devices

    split = devices.rows(np.arange(8 * devices.count()))
    assert split.sharding.spec[0] == devices.AXIS
    odd = devices.rows(np.arange(devices.count() + 1)) if devices.count() > 1 else None
    assert odd is None or odd.sharding.is_fully_replicated


def test_distill_json_reports_eight_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-m", "jaxscd.cli", "distill", "bracket_depth", "--max-len", "4", "--json"],
                          env=env, capture_output=True, text=True, timeout=300)
    summary = json.loads(done.stdout)
    assert done.returncode == 0 and summary["verdict"] == "PROVED", done.stderr[-2000:]
    assert summary["devices"] == {"count": 8, "kind": "cpu", "platform": "cpu"}
