"""One re-check binds every file of a bundle to its certificate, on both paths (exhaustive and beyond
enumeration): edits a forger makes with every hash recomputed are caught, each by a named check."""

from __future__ import annotations

import json
import re

import pytest
from bundles import copy_bundle, failed_checks, forge, rehash
from click.testing import CliRunner

from jaxscd.circuits.sources import as_source
from jaxscd.cli import main
from jaxscd.domain import Domain
from jaxscd.dsl.programs import Both, Constant, CountThreshold, to_json
from jaxscd.pipeline import DistillConfig, distill
from jaxscd.tasks import get_task
from jaxscd.verify.certificate import write_bundle
from jaxscd.verify.recheck import recheck

CONFIG = DistillConfig(synth_states=0)
RENDERS = "program.py renders the certified program"
OWN = "precondition is the circuit source's own"
POSITIONS = "domain lengths within the circuit's positions"
NONEMPTY = "domain has at least one valid input"


def _bundle(tmp_path_factory, name: str, max_len: int, exhaustive: bool):
    task = get_task(name)
    domain = as_source(task).domain(1, max_len, exhaustive=exhaustive)
    result = distill(task, domain, CONFIG)
    assert result.verdict.value == "PROVED"
    out = tmp_path_factory.mktemp("binding") / f"{name}_{max_len}"
    write_bundle(result, out, {"kind": "task", "name": name}, task.circuit.fingerprint)
    return out


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """An exhaustive bundle, and one per beyond-enumeration strategy (orbits; cube tree)."""
    return {"exhaustive": _bundle(tmp_path_factory, "bracket_depth", 5, True),
            "orbits": _bundle(tmp_path_factory, "bracket_depth", 16, False),
            "cubes": _bundle(tmp_path_factory, "quote_close", 10, False)}


KINDS = ("exhaustive", "orbits", "cubes")


def test_every_bundle_verifies_and_prints_its_domain(bundles):
    for kind in KINDS:
        report = recheck(bundles[kind])
        assert report.verified, (kind, failed_checks(report))
        assert report.domain[0].startswith("alphabet") and report.domain[1].startswith("precondition")
    cert = json.loads((bundles["orbits"] / "certificate.json").read_text())
    assert cert["obligations"][0]["method"] == "orbit bounds" and cert["long_context"]["strategy"] == "orbits"
    cert = json.loads((bundles["cubes"] / "certificate.json").read_text())
    assert cert["obligations"][0]["method"] == "cube bounds + smt-tree" and "tree.json" in cert["files"]
    output = CliRunner().invoke(main, ["verify", str(bundles["orbits"])]).output
    assert "domain  alphabet [ ] a; lengths 1..16" in output and "orbits (counts+last-token)" in output


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("edit", [
    lambda text: re.sub(r"(\d+)(\D*)$", lambda m: f"{int(m[1]) + 1}{m[2]}", text),  # the last number moved
    lambda text: text.replace("return 1", "return @").replace("return 0", "return 1").replace("return @", "return 0"),
    lambda text: text + "\n# a comment is an edit too\n",
], ids=["threshold", "returns swapped", "comment"])
def test_edited_program_source_fails(bundles, tmp_path, kind, edit):
    bundle = copy_bundle(bundles[kind], tmp_path)
    text = (bundle / "program.py").read_text()
    assert edit(text) != text
    (bundle / "program.py").write_text(edit(text))
    rehash(bundle, "program.py")
    assert RENDERS in failed_checks(recheck(bundle))


@pytest.mark.parametrize("kind", KINDS)
def test_domain_longer_than_the_circuit_fails(bundles, tmp_path, kind):
    """max_len above the circuit's 128 positions, with a program that would pass any skipped check."""
    bundle = copy_bundle(bundles[kind], tmp_path)

    def edit(cert):
        cert["domain"].update(max_len=200, exhaustive=False)
        cert["domain"]["size"] = Domain(tuple(cert["domain"]["alphabet"]), 1, 200, exhaustive=False).size
        cert["program"] = to_json(Constant(1))

    forge(bundle, edit)
    failed = failed_checks(recheck(bundle))
    assert POSITIONS in failed


@pytest.mark.parametrize("kind", KINDS)
def test_precondition_admitting_nothing_fails(bundles, tmp_path, kind):
    bundle = copy_bundle(bundles[kind], tmp_path)
    empty = {"motif": "CountThreshold", "plus": [0], "minus": [], "threshold": 999}
    forge(bundle, lambda cert: cert["domain"].update(precondition=empty))
    failed = failed_checks(recheck(bundle))
    assert OWN in failed
    assert (NONEMPTY if kind != "exhaustive" else "domain has the recorded number of valid inputs") in failed


@pytest.mark.parametrize("kind", KINDS)
def test_narrower_precondition_with_the_old_text_fails(bundles, tmp_path, kind):
    bundle = copy_bundle(bundles[kind], tmp_path)
    cert = json.loads((bundle / "certificate.json").read_text())
    narrower = dict(cert["domain"]["precondition"], threshold=cert["domain"]["precondition"]["threshold"] + 1)
    forge(bundle, lambda cert: cert["domain"].update(precondition=narrower))
    report = recheck(bundle)
    assert OWN in failed_checks(report)
    assert "threshold=" in report.domain[1]  # the precondition verified is printed as the program, not its text


@pytest.mark.parametrize("kind", KINDS)
def test_restriction_flag_alone_does_not_change_the_precondition(bundles, tmp_path, kind):
    """Declaring a restriction needs the source's precondition AND another condition."""
    bundle = copy_bundle(bundles[kind], tmp_path)
    cert = json.loads((bundle / "certificate.json").read_text())
    other = dict(cert["domain"]["precondition"], threshold=cert["domain"]["precondition"]["threshold"] + 1)
    forge(bundle, lambda cert: cert["domain"].update(precondition=other, restriction=True))
    assert "precondition restricts the circuit source's own" in failed_checks(recheck(bundle))


def test_a_declared_restriction_verifies_and_is_printed(tmp_path):
    task = get_task("bracket_depth")
    extra = CountThreshold({2}, set(), 1)  # at least one filler token
    domain = Domain(task.alphabet, 1, 5, Both(task.precondition, extra, "and"), "an unclosed '[' and a filler")
    result = distill(task, domain, CONFIG)
    assert result.restriction and result.verdict.value == "PROVED"
    write_bundle(result, tmp_path / "b", {"kind": "task", "name": task.name}, task.circuit.fingerprint)
    report = recheck(tmp_path / "b")
    assert report.verified, failed_checks(report)
    assert "declared a restriction" in report.domain[1]
    assert ("precondition restricts the circuit source's own", "ok") in {(n, s) for n, s, _ in report.checks}
    forge(tmp_path / "b", lambda cert: cert["domain"].pop("restriction"))  # the same domain, undeclared
    assert OWN in failed_checks(recheck(tmp_path / "b"))


def test_library_and_cli_agree_beyond_enumeration():
    """jaxscd.distill is the one entry: the library call gives the CLI's verdict and program at length 32."""
    import jaxscd

    library = jaxscd.distill(jaxscd.get_task("bracket_depth"), max_len=32)
    run = CliRunner().invoke(main, ["distill", "bracket_depth", "--max-len", "32", "--json"])
    cli = json.loads(run.stdout)
    assert not library.domain.exhaustive and library.to_json()["verdict"] == cli["verdict"] == "PROVED"
    assert library.source == cli["program"] and cli["proof"]["method"] == "orbit bounds"


# Forged fields of odd types: a FAILED check or a corrupt bundle, never an internal error (exit 70) or a hang.
ODD = [
    ("orbits", lambda c: c["long_context"].update(symmetry="counts+last-token"), 6,
     "symmetry counts+last-token from the circuit's arrays"),
    ("orbits", lambda c: c["long_context"].update(symmetry=["counts+last-token"]), 6,
     "symmetry counts+last-token from the circuit's arrays"),
    ("orbits", lambda c: c["long_context"].update(float_margin=float("inf")), 6, "float margin at least 1e-9"),
    ("cubes", lambda c: c["long_context"].update(float_margin="1/1000000000"), 6, "float margin at least 1e-9"),
    ("exhaustive", lambda c: c["circuit"]["source"].update(name=["bracket_depth"]), 6, "circuit available"),
    ("exhaustive", lambda c: c.update(schema_version=True), 9, "schema_version is True"),
    ("exhaustive", lambda c: c["domain"].update(min_len=1.7), 7, "domain lengths must be integers"),
    ("exhaustive", lambda c: c["circuit"].update(source={"kind": "graph", "path": "/bin/ls"}), 6, "not UTF-8 text"),
    ("exhaustive", lambda c: c.update(program={"motif": "WindowCount", "tokens": [0], "window": 1 << 20,
                                               "threshold": 1}), 7, "exceeds the domain's longest sequence"),
]


@pytest.mark.parametrize("kind, edit, code, text", ODD, ids=[f"{row[0]}-{i}" for i, row in enumerate(ODD)])
def test_forged_fields_of_odd_types(bundles, tmp_path, kind, edit, code, text):
    bundle = copy_bundle(bundles[kind], tmp_path)
    cert = json.loads((bundle / "certificate.json").read_text())
    edit(cert)
    (bundle / "certificate.json").write_text(json.dumps(cert))
    run = CliRunner().invoke(main, ["verify", str(bundle)])
    assert run.exit_code == code, run.output
    assert text in (run.stdout if code == 6 else run.stderr)


def test_unreadable_surrogate_and_linked_files_are_corrupt(bundles, tmp_path):
    bundle = copy_bundle(bundles["exhaustive"], tmp_path)
    (bundle / "surrogate.npz").write_bytes(b"PK\x03\x04 not a zip archive")
    rehash(bundle, "surrogate.npz")
    run = CliRunner().invoke(main, ["verify", str(bundle)])
    assert run.exit_code == 7 and "surrogate.npz is unreadable" in run.stderr
    bundle = copy_bundle(bundles["exhaustive"], tmp_path / "linked")
    outside = tmp_path / "program.py"
    outside.write_bytes((bundle / "program.py").read_bytes())
    (bundle / "program.py").unlink()
    (bundle / "program.py").symlink_to(outside)
    run = CliRunner().invoke(main, ["verify", str(bundle)])
    assert run.exit_code == 7 and "program.py is a link" in run.stderr


def test_count_proof_rests_on_position_independent_weights(bundles, tmp_path):
    """The exhaustive bundle's surrogate == program is proved over count vectors; a surrogate weight nudged at one
    position breaks the symmetry that proof rests on, and verify says so."""
    import io

    import numpy as np

    bundle = copy_bundle(bundles["exhaustive"], tmp_path)
    cert = json.loads((bundle / "certificate.json").read_text())
    assert next(o for o in cert["obligations"] if o["claim"] == "surrogate == program")["method"] == "count-orbits"
    arrays = dict(np.load(io.BytesIO((bundle / "surrogate.npz").read_bytes())))
    arrays["skip_w"] = arrays["skip_w"].copy()
    arrays["skip_w"][-1, 0] += 1  # the last position only: far from any decision boundary or not, not symmetric
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    (bundle / "surrogate.npz").write_bytes(buffer.getvalue())
    rehash(bundle, "surrogate.npz")
    assert "surrogate, program and precondition are functions of the token counts" in failed_checks(recheck(bundle))
