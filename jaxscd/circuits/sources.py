"""Circuit sources: from the description a certificate stores under ``circuit.source`` to the circuit.

One resolver serves ``jaxscd distill`` (which builds the description from its options), ``jaxscd verify`` and
``jaxscd report`` (which read it from a bundle). Four kinds::

    {"kind": "task", "name": "quote_close"}                       a built-in task (jaxscd.tasks)
    {"kind": "graph", "path": "/abs/circuit.json"}                a JSON circuit graph
    {"kind": "circuit_sparsity", "model_dir": ..., "template": ..., "viz": ..., "means": ...}
                                                                  a checkpoint, read with torch weights_only
    {"kind": "callable", "target": "/abs/file.py:fn"}             Python code

A description is data: tasks, graphs and checkpoints are rebuilt from it. Python code is imported only from
``circuit_file``, the FILE:FN the user passes, never from a path the description names; given the certificate's
``certified_sha256``, the file's bytes are hashed first and imported only when they match.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from jaxscd.circuits.base import Circuit, CircuitError, sha256_bytes
from jaxscd.domain import Domain, DomainError
from jaxscd.errors import InputError


class NotRerun(CircuitError):
    """Python code not imported (no --circuit, another function, other bytes than certified); ``check`` names the
    verify line it fails."""

    def __init__(self, check: str, message: str):
        super().__init__(message)
        self.check = check


class CircuitOptionError(InputError):
    """The user's --circuit FILE:FN cannot be used with this source (unreadable, or the source is not Python)."""


@dataclass(frozen=True, eq=False)
class CircuitSource:
    """A resolved circuit and what its source says about it: token names, default domain, spec, a graph to draw.

    Has a built-in ``Task``'s fields, so it goes wherever a task does (``jaxscd.long_context``)."""

    ref: dict  # the description, as certificates store it
    label: str  # names the source in errors: "task 'quote_close'"
    circuit: Circuit
    description: str
    alphabet: tuple | None  # the circuit's own token names; None: it names none (--alphabet gives them)
    min_len: int = 1
    max_len: int = 6
    max_positions: int | None = None  # longest sequence the circuit accepts
    precondition: object = None
    precondition_text: str = ""
    spec: object = None  # intended behaviour on token ids
    spec_label: str = "its spec"
    prefix_alphabet: bool = False  # a domain may use the first tokens of ``alphabet`` (a callable's ALPHABET)
    graph: dict | None = None  # the circuit as a circuit-graph dict, to draw

    @property
    def name(self) -> str:
        return self.circuit.name

    def domain(self, min_len: int | None = None, max_len: int | None = None, names: tuple | None = None,
               exhaustive: bool = True) -> Domain:
        """The domain with the user's overrides (None: the source's default), checked against the circuit;
        ``exhaustive=False``: a domain proved beyond enumeration (no size cap)."""
        given, max_len = max_len is not None, self.max_len if max_len is None else max_len
        if self.max_positions is not None and max_len > self.max_positions:
            if not given:  # the source's own default
                raise DomainError(f"{self.label} has max_len {max_len}, more than the {self.max_positions} positions "
                                  f"its circuit accepts; pass --max-len {self.max_positions} or less")
            raise DomainError(f"--max-len {max_len} exceeds the {self.max_positions} positions of {self.label}'s "
                              f"circuit; use --max-len {self.max_positions} or less")
        return Domain(self._names(names), self.min_len if min_len is None else min_len, max_len, self.precondition,
                      self.precondition_text, exhaustive=exhaustive)

    def _names(self, names: tuple | None) -> tuple:
        own = self.alphabet
        if names is None or names == own:
            if own is None:
                raise DomainError(f"{self.label} defines no ALPHABET; pass --alphabet a,b,c")
            return own
        if not self.prefix_alphabet:
            raise DomainError(f"{self.label} has a fixed alphabet {list(own)}; drop --alphabet")
        if own is not None and names != own[:len(names)]:
            raise DomainError(f"--alphabet {','.join(names)} does not match the ALPHABET {list(own)} of {self.label} "
                              f"(token ids are positions in it); drop --alphabet, or give its first tokens in order "
                              f"to restrict the domain to them")
        return names


def as_source(value) -> CircuitSource:
    """A CircuitSource for what ``jaxscd.distill`` accepts: a CircuitSource, a built-in ``Task`` (or one built
    like it), or a bare ``Circuit`` (its domain then given by the caller)."""
    if isinstance(value, CircuitSource):
        return value
    if isinstance(value, Circuit):
        return CircuitSource({"kind": "circuit", "name": value.name}, f"circuit {value.name!r}", value, value.name,
                             None)
    from jaxscd.tasks import Task

    if isinstance(value, Task):
        return CircuitSource({"kind": "task", "name": value.name}, f"task {value.name!r}", value.circuit,
                             value.description, value.alphabet, value.min_len, value.max_len, value.max_positions,
                             value.precondition, value.precondition_text, value.spec, "the task's intended behaviour")
    raise InputError(f"distill takes a task, a circuit source or a Circuit, got {type(value).__name__}; e.g. "
                     f"jaxscd.distill(jaxscd.get_task('quote_close'), max_len=32)")


def resolve(ref: Mapping, circuit_file: str | None = None) -> CircuitSource:
    """The circuit the user's own options describe (``jaxscd distill``: a callable is ``circuit_file`` itself)."""
    return _resolve(ref, circuit_file, None)


def resolve_certified(circuit: Mapping, circuit_file: str | None = None) -> CircuitSource:
    """The circuit a certificate's ``circuit`` block names (``source``, ``sha256``): rebuilt from data, or Python
    code imported only from the user's ``circuit_file`` once its bytes hash to ``sha256``."""
    sha256 = circuit["sha256"]
    return _resolve(circuit["source"], circuit_file, sha256 if isinstance(sha256, str) else "")


def _resolve(ref: Mapping, circuit_file: str | None, certified_sha256: str | None) -> CircuitSource:
    """Raises CircuitError (KeyError: unknown task) when the circuit cannot be rebuilt, NotRerun when Python code
    is not imported, CircuitOptionError when ``circuit_file`` cannot be used."""
    kind = ref.get("kind")
    if not all(isinstance(v, str) or v is None for v in ref.values()):
        raise CircuitError(f"circuit source {dict(ref)!r:.120} holds a value that is not a string; the certificate "
                           f"is malformed")
    if circuit_file is not None and kind != "callable":
        raise CircuitOptionError(f"--circuit re-runs a Python circuit, but this bundle's circuit is a {kind} "
                                 f"({ref.get('name') or ref.get('path') or ref.get('model_dir')!r}); drop --circuit")
    if kind == "callable":
        return _callable(dict(ref), circuit_file, certified_sha256)
    if kind not in _FROM_DATA:
        raise CircuitError(f"unknown circuit source {dict(ref)!r}")
    return _FROM_DATA[kind](dict(ref))


def _task(ref: dict) -> CircuitSource:
    from jaxscd.tasks import get_task, task_graph

    task = get_task(ref["name"])
    return replace(as_source(task), ref=ref, graph=task_graph(task.name))


def _graph(ref: dict) -> CircuitSource:
    from jaxscd.circuits.graph import GraphError, read_graph

    try:
        graph = read_graph(Path(ref["path"]))
    except GraphError as err:
        raise CircuitError(err.summary) from None
    return CircuitSource(ref, f"graph {graph.name!r}", graph.circuit(), graph.description or graph.name, graph.vocab,
                         graph.min_len or 1, graph.max_len or 6, graph.max_positions, graph.precondition,
                         graph.precondition_text, graph=graph.to_json())


def _circuit_sparsity(ref: dict) -> CircuitSource:
    from jaxscd.circuits.sparse_gpt import load_sparse_circuit

    # the lengths are checked when the domain is chosen (max_positions), so --max-len may lower the template's own
    circuit, template = load_sparse_circuit(ref["model_dir"], ref["template"], ref.get("viz"), ref.get("means"),
                                            max_len=1)
    spec = _trained_task_spec(ref["model_dir"], template)
    return CircuitSource(ref, f"the template {ref['template']!r}", circuit,
                         f"circuit_sparsity checkpoint {ref['model_dir']}", template.alphabet, template.min_len,
                         template.max_len, circuit.forward.max_positions,
                         spec=spec, spec_label="the trained task's intended behaviour (jaxscd_train.json)")


def _trained_task_spec(model_dir, template):
    """The spec of the built-in task a model ``jaxscd train`` wrote was trained on (its ``jaxscd_train.json`` names
    it), when the template reads that task's alphabet and classes in the task's order; else None. The file is read
    as data: only a built-in task's name is taken from it."""
    import json
    from pathlib import Path

    from jaxscd.tasks import SPEC_EVERYWHERE, get_task, task_names

    try:
        info = json.loads((Path(model_dir) / "jaxscd_train.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    name = info.get("task") if isinstance(info, dict) else None
    if not isinstance(name, str) or name not in task_names():
        return None
    task = get_task(name)
    same = tuple(task.alphabet) == tuple(template.alphabet) and \
        tuple(task.circuit.class_names) == tuple(template.class_names)
    return task.spec if same and (name in SPEC_EVERYWHERE or task.precondition is None) else None


def _callable(ref: dict, circuit_file: str | None, certified_sha256: str | None) -> CircuitSource:
    from jaxscd.circuits.callable import load_callable

    recorded = ref["target"]
    if circuit_file is None:
        raise NotRerun("circuit available", f"the circuit is Python code ({recorded}); verify never runs code a "
                       f"bundle names: pass --circuit FILE.py:FN, the file it was distilled from, to re-run it")
    path, _, name = circuit_file.rpartition(":")
    if name != recorded.rpartition(":")[2]:
        raise NotRerun("circuit available", f"--circuit names function {name!r}, the certificate records "
                       f"{recorded.rpartition(':')[2]!r}")
    if certified_sha256 is not None:  # from a bundle: hash the bytes first, import only if they match
        try:
            digest = sha256_bytes(Path(path).read_bytes())
        except OSError as err:
            raise CircuitOptionError(f"--circuit {circuit_file!r}: cannot read {path!r} ({err.strerror}); check "
                                     f"the path") from None
        if digest != certified_sha256:
            raise NotRerun("circuit fingerprint", f"sha256 of {path} differs from the certificate's; not imported")
    source = load_callable(circuit_file)
    doc = (getattr(source.circuit.forward, "__doc__", None) or "a Python callable").strip().splitlines()[0]
    return CircuitSource(ref, repr(circuit_file), source.circuit, doc, source.alphabet, *(source.lengths or (1, 6)),
                         spec=source.spec, spec_label="the circuit file's SPEC", prefix_alphabet=True)


_FROM_DATA = {"task": _task, "graph": _graph, "circuit_sparsity": _circuit_sparsity}
