"""Certificate bundles: re-checked from scratch; any edit is caught; bad bundles give one line and a code."""

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from bundles import copy_bundle, failed_checks, task_bundle
from click.testing import CliRunner

from jaxscd.cli import main
from jaxscd.pipeline import distill
from jaxscd.tasks import get_task
from jaxscd.verify import certificate as cert_module
from jaxscd.verify.certificate import write_bundle
from jaxscd.verify.recheck import recheck


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return task_bundle(tmp_path_factory, "bracket_depth", 6, "single")[0]  # the SMT path; counts: test_bundle_binding


def test_fresh_bundle_verifies_with_every_check(bundle):
    report = recheck(bundle)
    assert report.verified
    names = {name for name, status, _ in report.checks if status == "ok"}
    assert {"circuit == program (exhaustive)", "circuit == surrogate (exhaustive)", "z3: query.smt2 is unsat",
            "query.smt2 encodes surrogate != program on the domain", "circuit fingerprint"} <= names
    cert = json.loads((bundle / "certificate.json").read_text())
    smt = [o for o in cert["obligations"] if o["method"] == "smt"][0]
    assert smt["solver"].startswith("z3 ") and smt["verdict"] == "PROVED"
    assert set(cert["files"]) == {"program.py", "surrogate.npz", "query.smt2"}


def test_cvc5_rechecks_the_same_query_when_installed(bundle):
    pytest.importorskip("cvc5")
    statuses = {name: status for name, status, _ in recheck(bundle).checks}
    assert statuses["cvc5: query.smt2 is unsat"] == "ok"


def test_edited_program_source_fails(bundle, tmp_path):
    b = copy_bundle(bundle, tmp_path)
    text = (b / "program.py").read_text()
    (b / "program.py").write_text(text.replace(">=", ">"))
    assert failed_checks(recheck(b)) >= {"sha256 program.py", "program.py renders the certified program"}


def test_edited_program_in_certificate_fails(bundle, tmp_path):
    b = copy_bundle(bundle, tmp_path)
    cert = json.loads((b / "certificate.json").read_text())
    cert["program"]["num"], cert["program"]["den"] = 1, 4
    (b / "certificate.json").write_text(json.dumps(cert))
    failed = failed_checks(recheck(b))
    assert "circuit == program (exhaustive)" in failed and "z3: query.smt2 is unsat" not in failed
    assert "query.smt2 encodes surrogate != program on the domain" in failed


def test_edited_surrogate_weights_fail(bundle, tmp_path):
    b = copy_bundle(bundle, tmp_path)
    arrays = dict(np.load(io.BytesIO((b / "surrogate.npz").read_bytes())))
    arrays["out_b"] = arrays["out_b"] + 1000
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    (b / "surrogate.npz").write_bytes(buffer.getvalue())
    assert failed_checks(recheck(b)) >= {"sha256 surrogate.npz", "circuit == surrogate (exhaustive)"}


def test_edited_domain_fails(bundle, tmp_path):
    b = copy_bundle(bundle, tmp_path)
    cert = json.loads((b / "certificate.json").read_text())
    cert["domain"]["max_len"] = 5
    (b / "certificate.json").write_text(json.dumps(cert))
    assert "domain hash" in failed_checks(recheck(b))


@pytest.mark.parametrize("damage, code, message", [
    (lambda b: (b / "certificate.json").write_text("{not json"), 7, "not valid JSON"),
    (lambda b: (b / "query.smt2").unlink(), 8, "query.smt2 is missing"),
    (lambda b: (b / "certificate.json").unlink(), 8, "certificate.json' is missing"),
    (lambda b: (b / "certificate.json").write_text(json.dumps({"schema_version": 99})), 9, "schema_version is 99"),
    (lambda b: (b / "surrogate.npz").write_bytes(b"garbage"), 7, "surrogate.npz is unreadable"),
])
def test_bad_bundles_give_one_line_and_a_distinct_code(bundle, tmp_path, damage, code, message):
    b = copy_bundle(bundle, tmp_path)
    damage(b)
    result = CliRunner().invoke(main, ["verify", str(b)])
    assert result.exit_code == code, result.output
    if message:
        assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def test_missing_bundle_directory(tmp_path):
    result = CliRunner().invoke(main, ["verify", str(tmp_path / "nope")])
    assert result.exit_code == 8 and "bundle directory not found" in result.stderr


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    task = get_task("bracket_depth")
    result = distill(task.circuit, task.domain(max_len=4))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cert_module, "certificate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_bundle(result, tmp_path / "out", {"kind": "task", "name": "bracket_depth"}, "x")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def cube_bundle(tmp_path_factory):
    return task_bundle(tmp_path_factory, "quote_close", 4, "cubes")[0]


def test_cube_proof_bundle_verifies(cube_bundle):
    cert = json.loads((cube_bundle / "certificate.json").read_text())
    smt = [o for o in cert["obligations"] if o["claim"] == "surrogate == program"][0]
    assert smt["method"] == "smt-cubes" and smt["verdict"] == "PROVED" and len(smt["cubes"]) >= 4
    report = recheck(cube_bundle)
    assert report.verified
    assert {"cubes partition the domain", "z3: every cube query is unsat"} <= {n for n, st, _ in report.checks
                                                                              if st == "ok"}


def test_dropped_cube_breaks_the_partition(cube_bundle, tmp_path):
    b = copy_bundle(cube_bundle, tmp_path)
    cert = json.loads((b / "certificate.json").read_text())
    smt = [o for o in cert["obligations"] if o["claim"] == "surrogate == program"][0]
    smt["cubes"].pop()
    (b / "certificate.json").write_text(json.dumps(cert))
    assert "cubes partition the domain" in failed_checks(recheck(b))


def test_weakened_cube_query_fails(cube_bundle, tmp_path):
    b = copy_bundle(cube_bundle, tmp_path)
    cube_file = sorted((b / "cubes").iterdir())[-1]
    text = cube_file.read_text()
    (cube_file).write_text(text + "\n(assert false)\n")  # trivially unsat: must not pass as the cube's query
    failed = failed_checks(recheck(b))
    assert "each cube file is the query of its cube" in failed


def test_malformed_cubes_do_not_count_as_a_partition():
    from jaxscd.domain import Domain
    from jaxscd.verify.cubes import covers_domain

    domain = Domain(("a", "b", "c"), 3, 3)
    good = [{"length": 3, "prefix": [t]} for t in range(3)]
    assert covers_domain(domain, good)
    # same index ranges, but a length outside the domain / a token outside the alphabet
    assert not covers_domain(domain, [{"length": 1, "prefix": []}] + good[1:])
    assert not covers_domain(domain, good[:2] + [{"length": 3, "prefix": [0, 5]}])


def test_malformed_certificate_is_corrupt_not_a_traceback(bundle, tmp_path):
    b = copy_bundle(bundle, tmp_path)
    cert = json.loads((b / "certificate.json").read_text())
    del cert["circuit"]
    (b / "certificate.json").write_text(json.dumps(cert))
    result = CliRunner().invoke(main, ["verify", str(b)])
    assert result.exit_code == 7 and result.exception.__class__ is SystemExit
    assert len(result.stderr.splitlines()) == 1 and "malformed bundle" in result.stderr


def test_emptied_domain_fails_even_with_a_consistent_hash(bundle, tmp_path):
    from jaxscd.verify.certificate import (
        canonical_sha256,
        domain_from_json,
        domain_json,
    )

    b = copy_bundle(bundle, tmp_path)
    cert = json.loads((b / "certificate.json").read_text())
    cert["domain"]["precondition"] = {"motif": "CountThreshold", "plus": [0], "minus": [], "threshold": 99}
    cert["domain"]["sha256"] = canonical_sha256(domain_json(domain_from_json(cert["domain"])))
    (b / "certificate.json").write_text(json.dumps(cert))
    assert "domain has the recorded number of valid inputs" in failed_checks(recheck(b))


# ------------------------------------------------------------------------------------------------------------
# Proof strategies: one protocol, one registry; bundles written before it keep verifying

OLD_BUNDLES = Path(__file__).parent / "data" / "bundles_v1"  # written by jaxscd before the strategy protocol
OLD_METHODS = {"single": "smt", "cubes": "smt-cubes", "tree": "smt-tree", "long_quote_close": "cube bounds + smt-tree",
               "long_bracket_depth": "orbit bounds"}


@pytest.mark.parametrize("name", sorted(OLD_METHODS))
def test_bundles_written_before_the_strategy_protocol_verify(name, tmp_path):
    bundle = shutil.copytree(OLD_BUNDLES / name, tmp_path / name)
    methods = {o["method"] for o in json.loads((bundle / "certificate.json").read_text())["obligations"]}
    assert OLD_METHODS[name] in methods
    report = recheck(bundle)
    assert report.verified, failed_checks(report)


def test_each_strategy_has_one_name_and_one_certificate_method():
    from jaxscd.verify.prove import STRATEGIES, SURROGATE_STRATEGIES, by_method

    distill_proof = next(p for p in main.commands["distill"].params if p.name == "proof_strategy")
    assert list(distill_proof.type.choices) == ["auto", *SURROGATE_STRATEGIES]  # from the registry
    surrogate_methods = {"smt", "smt-cubes", "smt-tree", "count-orbits", "automaton-product"}
    assert {s.method for s in SURROGATE_STRATEGIES.values()} == surrogate_methods
    assert {s.method for s in STRATEGIES.values()} - surrogate_methods == \
        {"orbit bounds", "cube bounds + smt-tree"}  # beyond enumeration: strategies of the same protocol
    assert all(by_method(s.method) is s and STRATEGIES[s.name] is s for s in STRATEGIES.values())
    assert by_method("oracle") is None and by_method(["smt"]) is None
