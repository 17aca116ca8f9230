"""Task registry: a circuit, its default domain, and the behaviour it is meant to have (its spec)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from jaxscd.circuits import reference
from jaxscd.circuits.base import Circuit
from jaxscd.circuits.graph import export_graph, read_graph
from jaxscd.circuits.reference import as_circuit, bracket_depth_circuit, quote_close_circuit
from jaxscd.domain import Domain
from jaxscd.dsl import reference as dsl
from jaxscd.dsl.programs import CountThreshold, MostRecent, Program
from jaxscd.errors import InputError


class UnknownTaskError(InputError, KeyError):
    """A task name not in the registry; a KeyError too, which verify and report catch: the circuit is not rebuilt."""

    def __str__(self) -> str:  # the message itself, not KeyError's repr of it
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True, eq=False)
class Task:
    name: str
    description: str
    circuit: Circuit
    alphabet: tuple
    min_len: int
    max_len: int
    max_positions: int  # longest sequence the circuit accepts
    spec: Callable[[Sequence[int]], int] | None = None  # intended behaviour on token ids
    precondition: Program | None = None
    precondition_text: str = ""

    def domain(self, min_len: int | None = None, max_len: int | None = None) -> Domain:
        return Domain(self.alphabet, self.min_len if min_len is None else min_len,
                      self.max_len if max_len is None else max_len, self.precondition, self.precondition_text)


@dataclass(frozen=True)
class ProgramSpec:
    """A spec written as a DSL program: callable on one sequence like any spec, and evaluated in batches over the
    whole domain by the pipeline (``program``)."""

    program: Program

    def __call__(self, tokens: Sequence[int]) -> int:
        return dsl.run(self.program, tokens)


# Close with the type of the most recent (unclosed) quote: 0 = '"', 1 = "'".
_quote_spec = ProgramSpec(MostRecent({2}, {3}, 0))
# Predict ']]' (1) when the nesting depth at the end is at least 2, else ']' (0).
_bracket_spec = ProgramSpec(CountThreshold({0}, {1}, 2))


LONG_POSITIONS = 128  # the one-layer circuits accept long contexts (proved by jaxscd.long_context, not enumerated)


def _quote_close() -> Task:
    return Task(
        "quote_close", "which quote closes the open string (Gao et al. 2025, Fig. 4)",
        as_circuit("quote_close", quote_close_circuit(LONG_POSITIONS), ('"', "'")),
        ("a", "b", '"', "'"), 1, 8, LONG_POSITIONS, _quote_spec,
        CountThreshold({2, 3}, set(), 1), "at least one quote")


def _bracket_depth() -> Task:
    return Task(
        "bracket_depth", "close one or two brackets, from bracket depth carried as a density (Fig. 5)",
        as_circuit("bracket_depth", bracket_depth_circuit(LONG_POSITIONS), ("]", "]]")),
        ("[", "]", "a"), 1, 8, LONG_POSITIONS, _bracket_spec,
        CountThreshold({0}, {1}, 1), "at least one unclosed '['")


# --------------------------------------------------------------------------------------------------------------
# Multi-layer tasks: circuits written as circuit graphs (jaxscd.circuits.reference.*_graph); alphabet, default
# lengths and precondition come from the graph's "domain" block, so a graph file exported from them is complete.


def _graph_task(name: str) -> Task:
    graph, spec = _GRAPH_TASKS[name]
    g = read_graph(graph())
    return Task(g.name, g.description, g.circuit(), g.vocab, g.min_len, g.max_len, g.max_positions, spec,
                g.precondition, g.precondition_text)


# Each default domain below is restricted where the unrestricted behaviour is beyond the DSL or an exact
# surrogate; the comment above each spec says how.

# The domain fixes the query to x and x keeps one type (tracking the latest of changing types needs a 4-state DFA,
# beyond the DSL's 3), so the decision is 'x is initialised with set()', a 3-state DFA; y's initialisers are
# distractors that a most-recent-initialiser shortcut gets wrong.
def _set_or_string_spec(tokens: Sequence[int]) -> int:
    """'+=' (1) if the final variable's latest initialiser is '' , '.add' (0) if set() (or none)."""
    var = tokens[-1]
    kinds = [tokens[j + 1] for j in range(len(tokens) - 2) if tokens[j] == var and tokens[j + 1] in (2, 3)]
    return int(bool(kinds) and kinds[-1] == 3)




# Brackets do not nest on this domain, so the most recent opener is the open one.
def _bracket_brace_spec(tokens: Sequence[int]) -> int:
    """The closer of the most recent unclosed opener: ')' (0) or '}' (1); ')' when none is open."""
    stack = []
    for t in tokens:
        if t in (0, 1):
            stack.append(t)
        elif t in (2, 3) and stack:
            stack.pop()
    return int(bool(stack) and stack[-1] == 1)




# The domain ends inside the last 'if''s condition and holds at most two 'if' (with more, an exact integer surrogate
# needs position weights growing like 2^i); the decision is a 3-state DFA.
def _if_ternary_spec(tokens: Sequence[int]) -> int:
    """':' (1) when the most recent 'if' starts a line (first token or after a newline), else 'else' (0)."""
    ifs = [j for j, t in enumerate(tokens) if t == 1]
    return int(bool(ifs) and (ifs[-1] == 0 or tokens[ifs[-1] - 1] == 0))




# Fields nest up to 2 deep, so the most recent brace does not decide, the count does; the threshold sits below every
# positive density, so unlike bracket_depth no length dilutes it.
# '}' (1) while a replacement field is open (more '{' than '}'), else '"' (0).
_fstring_brace_spec = ProgramSpec(CountThreshold({0}, {1}, 1))




# The domain ends with a keyword and the loop variable and holds at most two keywords (as for if_ternary), so the
# decision is the most recent keyword.
# 'in' (1) when the most recent loop keyword is 'for', '<' (0) when it is 'while' (or there is none).
_for_while_spec = ProgramSpec(MostRecent({1}, {0}, 0))




SEED_TASKS = ("quote_close", "bracket_depth")  # the one-layer reference circuits
_SEED_NAMES = {"quote_close": (reference.QUOTE_CHANNELS, reference.QUOTE_NEURONS, "last_quote"),
               "bracket_depth": (reference.BRACKET_CHANNELS, reference.BRACKET_NEURONS, "uniform_mean")}
_GRAPH_TASKS = {  # name -> (circuit graph, intended spec)
    "set_or_string": (reference.set_or_string_graph, _set_or_string_spec),
    "bracket_brace": (reference.bracket_brace_graph, _bracket_brace_spec),
    "if_ternary": (reference.if_ternary_graph, _if_ternary_spec),
    "fstring_brace": (reference.fstring_brace_graph, _fstring_brace_spec),
    "for_while": (reference.for_while_graph, _for_while_spec),
}
_BUILDERS = {"quote_close": _quote_close, "bracket_depth": _bracket_depth} | \
    {name: partial(_graph_task, name) for name in _GRAPH_TASKS}


SPEC_EVERYWHERE = ("quote_close", "bracket_depth")  # tasks whose spec is defined on every sequence


def task_names() -> list[str]:
    return list(_BUILDERS)


def get_task(name: str) -> Task:
    if name not in _BUILDERS:
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(_BUILDERS)}")
    return _BUILDERS[name]()


def task_graph(name: str) -> dict:
    """A built-in task's circuit as a circuit-graph dict (schema 1) with its default domain; ``json.dump`` it."""
    if name in _GRAPH_TASKS:
        return _GRAPH_TASKS[name][0]()
    task = get_task(name)
    channels, neurons, head = _SEED_NAMES[name]
    return export_graph(task.circuit.forward, task.alphabet, task.circuit.class_names, name=name,
                        description=task.description, channels=channels, neurons=neurons, head_name=head,
                        lengths=(task.min_len, task.max_len), precondition=task.precondition,
                        precondition_text=task.precondition_text)
