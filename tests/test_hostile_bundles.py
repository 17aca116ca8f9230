"""Hostile bundles: a forger edits a bundle (hashes recomputed, program.py re-rendered) or hands over a directory;
``jaxscd verify`` must never say VERIFIED for a false claim, never run code the bundle names, and ``--out`` must
never delete what is not a jaxscd bundle. Each row of the tables is an edit and the verdict it must get."""

import json
import shutil
from pathlib import Path

import pytest
from bundles import copy_bundle, forge, rehash, task_bundle
from cases import CASES
from click.testing import CliRunner

from jaxscd.cli import main
from jaxscd.circuits.base import sha256_bytes
from jaxscd.dsl.programs import from_json
from jaxscd.dsl.reference import run
from jaxscd.dsl.source import load, render
from jaxscd.verify import certificate as cert_module
from jaxscd.verify.certificate import write_bundle

ROOT = Path(__file__).resolve().parents[1]
VERIFIED, FAILED, BAD_INPUT, CORRUPT = 0, 6, 2, 7
PLANT = "import pathlib; pathlib.Path({marker!r}).write_text('ran')\n"  # a file that must never be imported


@pytest.fixture(scope="module")
def task_bundle_and_result(tmp_path_factory):
    return task_bundle(tmp_path_factory, "bracket_depth", 4, "single")  # the SMT path, attacked


@pytest.fixture(scope="module")
def bundle(task_bundle_and_result):
    return task_bundle_and_result[0]


@pytest.fixture(scope="module")
def callable_bundle(tmp_path_factory):
    """(bundle, circuit file) distilled from a copy of the README's example circuit (a Python callable)."""
    folder = tmp_path_factory.mktemp("callable")
    circuit = folder / "majority.py"
    shutil.copy(ROOT / "experiments/example_circuit.py", circuit)
    out = folder / "bundle"
    result = CliRunner().invoke(main, ["distill", "--circuit", f"{circuit}:majority", "--max-len", "4", "--json",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, circuit


def _verify(bundle, *args):
    result = CliRunner().invoke(main, ["verify", str(bundle), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception  # no traceback
    return result


def _failed(result) -> str:
    return "\n".join(line for line in result.stdout.splitlines() if "FAILED" in line)


def _program(cert, **fields):
    cert["program"] = {"motif": "CountThreshold", "plus": [0], "minus": [1], "threshold": 2} | fields


def _drop(cert, *names):
    for name in names:
        del cert["files"][name]


def _swap_alphabet(cert):
    cert["domain"]["alphabet"][:2] = cert["domain"]["alphabet"][1::-1]


def _obligation(cert, claim):
    return next(o for o in cert["obligations"] if o["claim"] == claim)


# (name, edit of certificate.json before forging, files deleted, expected exit, text in the failing output)
CERT_EDITS = [
    ("alphabet swapped", _swap_alphabet, (), FAILED, "alphabet is the circuit's"),
    ("alphabet renamed", lambda c: c["domain"]["alphabet"].__setitem__(2, "b"), (), FAILED,
     "alphabet is the circuit's"),
    ("classes swapped", lambda c: c["circuit"]["classes"].reverse(), (), FAILED, "class names are the circuit's"),
    ('""" in a class name', lambda c: c["circuit"].__setitem__("classes", ['x"""\nimport os\n"""', "y"]), (), FAILED,
     "class names are the circuit's"),
    ("one class name", lambda c: c["circuit"].__setitem__("classes", ["x"]), (), CORRUPT,
     "circuit.classes must be 2 class names"),
    ("SMT proof dropped from files", lambda c: _drop(c, "surrogate.npz", "query.smt2"),
     ("surrogate.npz", "query.smt2"), FAILED, "obligation surrogate == program (smt) re-checked"),
    ("query.smt2 dropped from files", lambda c: _drop(c, "query.smt2"), ("query.smt2",), FAILED,
     "SMT files are listed with their sha256"),
    ("threshold 2.5, SMT proof dropped", lambda c: (_program(c, threshold=2.5), _drop(c, "surrogate.npz",
                                                                                      "query.smt2")),
     ("surrogate.npz", "query.smt2"), CORRUPT, "CountThreshold.threshold must be an integer, got 2.5"),
    ("threshold 2^31, SMT proof dropped", lambda c: (_program(c, threshold=2**31), _drop(c, "surrogate.npz",
                                                                                         "query.smt2")),
     ("surrogate.npz", "query.smt2"), CORRUPT, "threshold must be at most 1,048,576 in magnitude, got 2147483648"),
    ("threshold 2^70, SMT proof dropped", lambda c: (_program(c, threshold=2**70), _drop(c, "surrogate.npz",
                                                                                         "query.smt2")),
     ("surrogate.npz", "query.smt2"), CORRUPT, "got 1180591620717411303424"),
    ("precondition threshold 1.5", lambda c: c["domain"]["precondition"].__setitem__("threshold", 1.5), (), CORRUPT,
     "CountThreshold.threshold must be an integer, got 1.5"),
    ("token id 2.0 in the program", lambda c: c["program"].__setitem__("plus", [2.0]), (), CORRUPT,
     "must be an integer, got 2.0"),
    ("SMT obligation removed", lambda c: c["obligations"].remove(_obligation(c, "surrogate == program")), (), FAILED,
     "obligation surrogate == program is PROVED"),
    ("SMT obligation UNKNOWN", lambda c: _obligation(c, "surrogate == program").__setitem__("verdict", "UNKNOWN"), (),
     FAILED, "obligation surrogate == program is PROVED"),
    ("SMT method renamed", lambda c: _obligation(c, "surrogate == program").__setitem__("method", "oracle"), (),
     FAILED, "obligation surrogate == program (oracle) re-checked"),
    ("unknown obligation", lambda c: c["obligations"].append({"claim": "program == truth", "method": "faith"}), (),
     FAILED, "obligation program == truth (faith) re-checked"),
    ("obligation listed twice", lambda c: c["obligations"].append(c["obligations"][0]), (), CORRUPT,
     "lists an obligation twice"),
    ("spec claimed met", lambda c: c["obligations"].append({"claim": "circuit == spec", "method": "exhaustive",
                                                            "verdict": "PROVED", "mismatches": 0}), (), FAILED,
     "circuit == spec (exhaustive)"),
    ("verdict NO_PROGRAM", lambda c: c.__setitem__("verdict", "NO_PROGRAM"), (), FAILED,
     "certificate verdict is PROVED"),
    ("file outside the bundle", lambda c: c["files"].__setitem__("../outside.txt", "0" * 64), (), CORRUPT,
     "not a relative path inside the bundle"),
    ("hash not hex", lambda c: c["files"].__setitem__("program.py", "x"), (), CORRUPT, "is not 64 hex digits"),
]


@pytest.mark.parametrize("name, edit, deleted, code, text", CERT_EDITS, ids=[row[0] for row in CERT_EDITS])
def test_forged_certificate_gets_its_verdict(bundle, tmp_path, name, edit, deleted, code, text):
    b = copy_bundle(bundle, tmp_path)
    for file in deleted:
        (b / file).unlink()
    if code == CORRUPT:  # unreadable certificates are refused before anything is rendered
        cert = json.loads((b / "certificate.json").read_text())
        edit(cert)
        (b / "certificate.json").write_text(json.dumps(cert))
    else:
        forge(b, edit)
    result = _verify(b)
    assert result.exit_code == code, result.output
    if code == CORRUPT:
        assert len(result.stderr.strip().splitlines()) == 1 and text in result.stderr
    else:
        assert "VERIFIED" not in result.stdout and text in _failed(result), result.stdout


@pytest.mark.parametrize("query, text", [
    ("(assert (and true", "query.smt2 is plain SMT-LIB2"),  # unbalanced
    ('(assert "unterminated)', "query.smt2 is plain SMT-LIB2"),
    ("(declare-fun x () Int)\n(assert (frobnicate x))\n(check-sat)\n", "query.smt2 encodes surrogate"),
    ("(assert false)\n(check-sat)\n", "query.smt2 encodes surrogate"),  # trivially unsat, not the query
    ("\xff\xfe", "query.smt2 is plain SMT-LIB2"),
])
def test_malformed_query_is_a_failed_check(bundle, tmp_path, query, text):
    b = copy_bundle(bundle, tmp_path)
    (b / "query.smt2").write_bytes(query.encode("latin-1"))
    rehash(b, "query.smt2")
    result = _verify(b)
    assert result.exit_code == FAILED and text in _failed(result), result.output


def test_query_commands_that_write_files_are_never_run(bundle, tmp_path, monkeypatch):
    b = copy_bundle(bundle, tmp_path)
    text = (b / "query.smt2").read_text()
    (b / "query.smt2").write_text(f'(set-option :regular-output-channel "{tmp_path}/written")\n' + text)
    rehash(b, "query.smt2")
    monkeypatch.chdir(tmp_path)
    result = _verify(b)
    assert result.exit_code == FAILED and "set-option" in _failed(result)
    assert not (tmp_path / "written").exists()


def test_bundle_naming_a_circuit_inside_itself_runs_nothing(bundle, tmp_path):
    b = copy_bundle(bundle, tmp_path)
    marker = tmp_path / "imported"
    (b / "evil.py").write_text(PLANT.format(marker=str(marker)) + "def fn(tokens):\n    return tokens[:, 0] * 0\n")

    def edit(cert):
        cert["circuit"]["source"] = {"kind": "callable", "target": f"{b / 'evil.py'}:fn"}
        cert["circuit"]["sha256"] = sha256_bytes((b / "evil.py").read_bytes())
        cert["files"]["evil.py"] = ""

    forge(b, edit)
    result = _verify(b)
    assert result.exit_code == FAILED and "pass --circuit" in result.stdout
    assert not marker.exists()
    # the user's own copy of a different file is hashed, refused and not imported either
    other = tmp_path / "other.py"
    other.write_text(PLANT.format(marker=str(marker)) + "def fn(tokens):\n    return tokens[:, 0] * 0\n# changed\n")
    result = _verify(b, "--circuit", f"{other}:fn")
    assert result.exit_code == FAILED and "circuit fingerprint" in _failed(result) and not marker.exists()


def test_circuit_option_refused_for_a_task_bundle(bundle):
    result = _verify(bundle, "--circuit", "x.py:fn")
    assert result.exit_code == BAD_INPUT and "drop --circuit" in result.stderr


def test_callable_bundle_verifies_only_with_its_circuit(callable_bundle):
    b, circuit = callable_bundle
    result = _verify(b)
    assert result.exit_code == FAILED and "pass --circuit FILE.py:FN" in _failed(result)
    assert "obligation circuit == program (exhaustive) re-checked" in _failed(result)
    result = _verify(b, "--circuit", f"{circuit}:majority")
    assert result.exit_code == VERIFIED and "VERIFIED" in result.stdout, result.stdout


def test_callable_bundle_with_another_circuit_file(callable_bundle, tmp_path):
    b, circuit = callable_bundle
    marker = tmp_path / "imported"
    changed = tmp_path / "majority.py"
    changed.write_text(PLANT.format(marker=str(marker)) + circuit.read_text())
    result = _verify(b, "--circuit", f"{changed}:majority")
    assert result.exit_code == FAILED and "circuit fingerprint" in _failed(result) and not marker.exists()
    result = _verify(b, "--circuit", f"{circuit}:SPEC")
    assert result.exit_code == FAILED and "the certificate records 'majority'" in _failed(result)
    result = _verify(b, "--circuit", f"{tmp_path}/missing.py:majority")
    assert result.exit_code == BAD_INPUT and "cannot read" in result.stderr


def test_callable_bundle_alphabet_swapped(callable_bundle, tmp_path):
    b, circuit = callable_bundle
    b = copy_bundle(b, tmp_path)
    forge(b, _swap_alphabet)
    result = _verify(b, "--circuit", f"{circuit}:majority")
    assert result.exit_code == FAILED and "alphabet is the circuit's" in _failed(result)


HOSTILE_NAMES = ('"""; __import__("pathlib").Path(MARK).touch() #', "'''\n__import__('os')", "back\\slash\\",
                 "nul\x00\u2028end")
HOSTILE_CLASSES = ('"""\n__import__("pathlib").Path(MARK).touch()\n"""', "\\")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rendered_program_with_hostile_names_runs_no_code(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = [n.replace("MARK", repr(str(tmp_path / "ran"))) for n in HOSTILE_NAMES[:case.n_tokens]]
    classes = [n.replace("MARK", repr(str(tmp_path / "ran"))) for n in HOSTILE_CLASSES]
    program = load(render(case.program, names, classes))
    assert not (tmp_path / "ran").exists()
    for length in range(1, 4):
        for index in range(case.n_tokens**length):
            ids = [index // case.n_tokens**p % case.n_tokens for p in range(length)]
            assert program([names[t] for t in ids]) == run(case.program, ids)
    assert all(repr(c) in program.__doc__ for c in classes)


# --out: a new or empty directory, or a previous bundle recognised completely; anything else untouched

def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _write(folder: Path, **files):
    for name, text in files.items():
        (folder / name.replace("_", ".")).write_text(text)


@pytest.mark.parametrize("from_bundle, prepare, reason", [
    (False, lambda d: _write(d, certificate_json="{}", notes_txt="mine"), "not a jaxscd certificate"),
    (False, lambda d: _write(d, notes_txt="mine"), "no readable certificate.json"),
    (True, lambda d: _write(d, extra_txt="mine"), "does not list (extra.txt)"),
    (True, lambda d: _write(d, program_py="# my edits\n"), "changed since jaxscd wrote them (program.py)"),
    (True, lambda d: (d / "query.smt2").unlink(), "missing (query.smt2)"),
], ids=["certificate.json beside a user file", "user directory", "bundle plus a file", "edited bundle",
        "bundle missing a file"])
def test_out_refuses_what_it_cannot_recognise(bundle, tmp_path, from_bundle, prepare, reason):
    target = tmp_path / "out"
    if from_bundle:
        shutil.copytree(bundle, target)
    else:
        target.mkdir()
    prepare(target)
    before = _snapshot(target)
    result = CliRunner().invoke(main, ["distill", "bracket_depth", "--max-len", "4", "--out", str(target)])
    assert result.exit_code == BAD_INPUT and len(result.stderr.strip().splitlines()) == 1, result.output
    assert reason in result.stderr
    assert _snapshot(target) == before and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_out_refuses_a_file_or_a_link(bundle, tmp_path):
    (tmp_path / "out").write_text("mine")
    result = CliRunner().invoke(main, ["distill", "bracket_depth", "--out", str(tmp_path / "out")])
    assert result.exit_code == BAD_INPUT and "is a file" in result.stderr
    assert (tmp_path / "out").read_text() == "mine"
    (tmp_path / "link").symlink_to(bundle)
    with pytest.raises(cert_module.OutputDirError, match="it is a link"):
        cert_module.check_output_dir(tmp_path / "link")


def test_out_replaces_a_previous_bundle_atomically(task_bundle_and_result, tmp_path, monkeypatch):
    bundle, result = task_bundle_and_result
    target = tmp_path / "out"
    shutil.copytree(bundle, target)
    before = _snapshot(target)
    ref = {"kind": "task", "name": "bracket_depth"}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:  # interrupted while writing: the previous bundle stays as it was
        patch.setattr(cert_module, "certificate", interrupted)
        with pytest.raises(KeyboardInterrupt):
            write_bundle(result, target, ref, "fingerprint")
    assert _snapshot(target) == before and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    write_bundle(result, target, ref, "fingerprint")  # a recognised bundle is replaced
    assert json.loads((target / "certificate.json").read_text())["circuit"]["sha256"] == "fingerprint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing left beside it


def test_forged_program_still_renders_the_certified_program(bundle, tmp_path):
    """The forge helper itself: a forged bundle passes every check that does not consult the circuit."""
    b = copy_bundle(bundle, tmp_path)
    forge(b, lambda cert: None)
    assert _verify(b).exit_code == VERIFIED
    cert = json.loads((b / "certificate.json").read_text())
    assert (b / "program.py").read_text() == render(from_json(cert["program"]), cert["domain"]["alphabet"],
                                                    cert["circuit"]["classes"])


def test_circuit_that_exits_on_import_is_a_failed_check(callable_bundle, tmp_path):
    """A hash-matching --circuit file that calls sys.exit(0) on import: FAILED, not a silent exit 0."""
    b, _ = callable_bundle
    b = copy_bundle(b, tmp_path)
    exits = tmp_path / "exits.py"
    exits.write_text("import sys\nsys.exit(0)\ndef majority(tokens):\n    return tokens[:, 0] * 0\n")

    def edit(cert):
        cert["circuit"]["source"]["target"] = f"{exits}:majority"
        cert["circuit"]["sha256"] = sha256_bytes(exits.read_bytes())

    forge(b, edit)
    result = _verify(b, "--circuit", f"{exits}:majority")
    assert result.exit_code == FAILED and "could not import" in _failed(result), result.output


@pytest.fixture(scope="module", params=["tree", "cubes"])
def split_proof_bundle(request, tmp_path_factory):
    return task_bundle(tmp_path_factory, "quote_close", 3, request.param)[0]


def test_split_proof_file_dropped_from_files(split_proof_bundle, tmp_path):
    b = copy_bundle(split_proof_bundle, tmp_path)
    cert = json.loads((b / "certificate.json").read_text())
    smt = _obligation(cert, "surrogate == program")
    assert smt["method"] in ("smt-tree", "smt-cubes")
    dropped = smt["file"] if smt["method"] == "smt-tree" else smt["cubes"][0]["file"]
    forge(b, lambda c: _drop(c, dropped))
    result = _verify(b)
    assert result.exit_code == FAILED and f"{dropped} not in the certificate's files" in result.stdout, result.output
    assert "obligation surrogate == program" in _failed(result)
