"""One error hierarchy (jaxscd.errors), and only the command line maps it to exit statuses (jaxscd.cli)."""

import importlib
import pkgutil

import pytest
from click.testing import CliRunner

import jaxscd
import jaxscd.dsl
import jaxscd.kernels
from jaxscd.budget import TimeLimitExceeded
from jaxscd.cli import EXIT_CODES, main
from jaxscd.errors import BundleError, CircuitError, InputError, JaxscdError


def _modules() -> list:
    names = {info.name for package in (jaxscd, jaxscd.dsl, jaxscd.kernels)
             for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")}
    return [importlib.import_module(name) for name in sorted(names)]


def test_every_error_class_is_a_jaxscd_error():
    defined = [value for module in _modules() for value in vars(module).values()
               if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == module.__name__]
    assert {InputError, CircuitError, BundleError} <= set(defined)
    strays = [f"{cls.__module__}.{cls.__name__}" for cls in defined
              if not issubclass(cls, JaxscdError) and cls is not TimeLimitExceeded]
    assert not strays, f"exception classes outside jaxscd.errors.JaxscdError: {strays}"
    assert not issubclass(TimeLimitExceeded, Exception)  # a BaseException, like KeyboardInterrupt


def test_every_command_reports_its_errors():
    assert [name for name, command in main.commands.items() if not getattr(command.callback, "reported", False)] == []


def _invoke(args, env=None):
    result = CliRunner().invoke(main, args, env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.mark.parametrize("args, message", [
    (["distill", "no_such_task"], "unknown task 'no_such_task'; known tasks: quote_close"),
    (["export-graph", "no_such_task"], "unknown task 'no_such_task'; known tasks: quote_close"),
    (["distill", "bracket_depth", "--surrogate", "oracle"], "unknown surrogate methods ['oracle']"),
    (["sweep", "--tasks", "quote_close", "--max-len", "6,x", "--out", "unused"],
     "--max-len '6,x' is not a comma-separated list of integers"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = _invoke(args)
    assert result.exit_code == EXIT_CODES["bad input"] == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxscd: error: ") and message in lines[0], result.stderr


def test_unwritable_output_is_bad_input(tmp_path):
    result = _invoke(["export-graph", "quote_close", "-o", str(tmp_path / "missing" / "graph.json")])
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1, result.output
    assert "No such file or directory; check the path" in result.stderr


def _raising(monkeypatch, module, name: str, error: BaseException):
    """``module.name`` raises ``error``; the commands import what they call when they run, so they get this."""
    def raises(*args, **kwargs):
        raise error

    monkeypatch.setattr(importlib.import_module(module), name, raises)


@pytest.mark.parametrize("error", [ValueError("boom"), KeyError("boom")])
def test_a_bug_is_an_internal_error_not_bad_input(monkeypatch, error):
    _raising(monkeypatch, "jaxscd.pipeline", "distill", error)  # a bug deep in the pipeline
    result = _invoke(["distill", "bracket_depth", "--max-len", "2"], env={"JAXSCD_DEBUG": ""})
    assert result.exit_code == EXIT_CODES["internal error"] == 70, result.output
    name = type(error).__name__
    assert result.stderr.splitlines() == [
        f"jaxscd: internal error ({name}: {error}); this is a bug in jaxscd: please report it with the command line "
        f"that caused it (rerun with JAXSCD_DEBUG=1 for the traceback)"]


def test_jaxscd_debug_prints_the_traceback(monkeypatch):
    _raising(monkeypatch, "jaxscd.pipeline", "distill", ValueError("boom"))
    result = _invoke(["distill", "bracket_depth", "--max-len", "2"], env={"JAXSCD_DEBUG": "1"})
    assert result.exit_code == 70
    lines = result.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):" and "ValueError: boom" in lines
    assert lines[-1].startswith("jaxscd: internal error (ValueError: boom)")


def test_an_error_outside_the_families_is_internal(monkeypatch):
    from jaxscd.search.synth import SynthesisError

    _raising(monkeypatch, "jaxscd.circuits.sources", "resolve", SynthesisError("synthesized machine disagrees"))
    result = _invoke(["distill", "bracket_depth"])
    assert result.exit_code == 70 and "internal error (SynthesisError: synthesized" in result.stderr


@pytest.mark.parametrize("error, outcome", [
    (InputError("bad option"), "bad input"), (CircuitError("NaN logits"), "bad input"),
    (BundleError("corrupt", "corrupt"), "corrupt bundle"), (BundleError("gone", "missing"), "missing file"),
    (BundleError("old", "schema"), "unsupported schema"), (BundleError("--circuit", "input"), "bad input"),
    (PermissionError(13, "Permission denied", "out.json"), "bad input"),
])
def test_each_family_has_its_exit_status(monkeypatch, error, outcome):
    _raising(monkeypatch, "jaxscd.circuits.sources", "resolve", error)
    result = _invoke(["distill", "bracket_depth"])
    assert result.exit_code == EXIT_CODES[outcome], result.output
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("jaxscd: error: ")


def test_ctrl_c_is_130_with_the_command_s_line(monkeypatch, tmp_path):
    _raising(monkeypatch, "jaxscd.circuits.sources", "resolve", KeyboardInterrupt())
    result = _invoke(["distill", "bracket_depth"])
    assert result.exit_code == EXIT_CODES["interrupted"] == 130
    assert result.stderr.splitlines() == ["jaxscd: error: interrupted; nothing was written"]
    _raising(monkeypatch, "jaxscd.sweep", "grid", KeyboardInterrupt())
    result = _invoke(["sweep", "--tasks", "quote_close", "--max-len", "6", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 130 and result.stderr.splitlines() == [
        f"jaxscd: error: interrupted; finished runs are in {tmp_path / 'runs'}/results.jsonl (run again to resume)"]


def test_verify_missing_bundle_is_exit_8(tmp_path):
    result = _invoke(["verify", str(tmp_path / "nothing")])
    assert result.exit_code == EXIT_CODES["missing file"] == 8
    assert result.stderr.splitlines() == [f"jaxscd: error: bundle directory not found: {str(tmp_path / 'nothing')!r}"]


def test_bundle_error_kinds_are_checked():
    with pytest.raises(ValueError, match="BundleError kind 7 is not one of"):
        BundleError("corrupt", 7)
