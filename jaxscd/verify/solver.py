"""Solver helpers every proof strategy imports (a leaf: z3 and the standard library only).

Proving: one solver factory (``solve_text``: a fresh solver per SMT-LIB2 query), ``checked`` (Ctrl-C stays a
KeyboardInterrupt), ``smt2_text`` and ``model_tokens``. Re-checking a bundle: ``read_query`` parses a bundle's
SMT file only when it holds nothing but declarations, assertions and check-sat (z3 and cvc5 obey options that
write files), ``same_assertions`` compares it with the query verify regenerates, ``z3_unsat`` and ``cvc5_unsat``
re-run it.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import z3

SMT_COMMANDS = {"set-logic", "set-info", "declare-fun", "declare-const", "define-fun", "assert", "check-sat",
                "get-model", "exit"}  # what jaxscd writes; set-option and the rest are never run
_SMT_TOKEN = re.compile(r'\s+|;[^\n]*|"(?:[^"]|"")*"|\|[^|]*\||[()]|[^\s()";|]+')


def solver_name() -> str:
    return f"z3 {z3.get_version_string()}"


def checked(solver: z3.Solver, *assumptions) -> z3.CheckSatResult:
    """solver.check(), except that Ctrl-C stays a KeyboardInterrupt: z3 catches SIGINT during a check and
    returns unknown ("interrupted from keyboard"), which must stop the run, not read as a solver timeout."""
    answer = solver.check(*assumptions)
    if answer == z3.unknown and "interrupted" in solver.reason_unknown():
        raise KeyboardInterrupt
    return answer


def smt2_text(solver: z3.Solver) -> str:
    """SMT-LIB2 text of a query (quantifier-free linear integer arithmetic), readable by z3 and cvc5."""
    return "(set-logic QF_LIA)\n" + solver.to_smt2()


def solve_text(text: str, timeout_s: float, logic: str | None = None) -> tuple[str, tuple | None, float]:
    """(sat | unsat | unknown, tokens of a model if sat, seconds) for one SMT-LIB2 query, in a fresh solver:
    ``z3.SolverFor(logic)`` when given (when that solver declines the query other than by a timeout, z3's general
    solver gets the rest of the time), else z3's general solver."""
    solver = z3.SolverFor(logic) if logic else z3.Solver()
    solver.set(timeout=max(1, int(timeout_s * 1000)))
    solver.from_string(text)
    start = time.perf_counter()
    answer = checked(solver)
    if logic and answer == z3.unknown and solver.reason_unknown() not in ("timeout", "canceled"):
        solver = z3.Solver()
        solver.set(timeout=max(1, int((timeout_s - (time.perf_counter() - start)) * 1000)))
        solver.from_string(text)
        answer = checked(solver)
    seconds = time.perf_counter() - start
    if answer != z3.sat:
        return str(answer), None, seconds
    return "sat", model_tokens(solver.model()), seconds


def model_tokens(model: z3.ModelRef) -> tuple:
    """The token sequence of a model of either query encoding: Int tokens ``t{i}``, or Boolean indicators
    ``b{i}_{v}`` (no indicator set reads as token 0, as padding does), with the Int length ``len``."""
    ints, chosen = {}, {}
    for decl in model.decls():
        value, name = model[decl], decl.name()
        if z3.is_int_value(value):
            ints[name] = value.as_long()
        elif z3.is_true(value) and name.startswith("b") and "_" in name:
            position, token = name[1:].split("_", 1)
            chosen[int(position)] = int(token)
    return tuple(ints.get(f"t{i}", chosen.get(i, 0)) for i in range(ints.get("len", 0)))


# ------------------------------------------------------------------------------------------------------------
# Re-checking a bundle's SMT files (jaxscd verify); ``report`` is a ``recheck.Report``


def smt_commands(text: str) -> list | None:
    """The head of every top-level command of an SMT-LIB2 text, or None when it does not tokenize."""
    heads, depth, position, expect_head = [], 0, 0, False
    for match in _SMT_TOKEN.finditer(text):
        if match.start() != position:
            return None
        position, token = match.end(), match.group()
        if token[0].isspace() or token[0] == ";":
            continue
        if expect_head:
            heads.append(token)
            expect_head = False
        if token == "(":
            expect_head, depth = depth == 0, depth + 1
        elif token == ")":
            depth -= 1
            if depth < 0:
                return None
        elif depth == 0:
            return None
    return heads if position == len(text) and depth == 0 else None


def read_query(report, bundle: Path, name: str) -> str | None:
    """The text of a bundle's SMT file when it is plain SMT-LIB2 jaxscd could have written, else None and a
    FAILED line (solvers obey commands such as set-option :regular-output-channel, which writes a file)."""
    try:
        text = (bundle / name).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        report.add(f"{name} is plain SMT-LIB2", False, "not UTF-8 text")
        return None
    heads = smt_commands(text)
    unexpected = sorted(set(heads) - SMT_COMMANDS) if heads is not None else None
    if heads is None or unexpected:
        report.add(f"{name} is plain SMT-LIB2", False, "unbalanced parentheses or an unterminated string"
                   if heads is None else f"commands {unexpected} are not run; only {sorted(SMT_COMMANDS)}")
        return None
    return text


def same_assertions(text: str, expected: str) -> bool:
    """Both texts parse to structurally identical assertions (let-names and layout may differ)."""
    try:
        got, want = z3.parse_smt2_string(text), z3.parse_smt2_string(expected)
    except z3.Z3Exception:
        return False
    return len(got) == len(want) and all(a.eq(b) for a, b in zip(got, want))


def z3_unsat(text: str, timeout_s: float, logic: str | None = None) -> tuple[bool | None, str]:
    try:
        answer, _, _ = solve_text(text, timeout_s, logic)
    except z3.Z3Exception as err:
        return False, f"unparseable query: {err}"
    return (True if answer == "unsat" else None if answer == "unknown" else False), answer


def cvc5_unsat(text: str, timeout_s: float) -> tuple[bool | None, str]:
    """The same SMT-LIB2 text through cvc5, an independent second solver (optional extra ``jaxscd[cvc5]``)."""
    try:
        import cvc5
    except ImportError:
        return None, "cvc5 not installed (pip install jaxscd[cvc5])"
    solver = cvc5.Solver(cvc5.TermManager())
    solver.setOption("tlimit-per", str(int(timeout_s * 1000)))
    parser = cvc5.InputParser(solver)
    parser.setStringInput(cvc5.InputLanguage.SMT_LIB_2_6, text, "query.smt2")
    answer = ""
    try:
        while not (command := parser.nextCommand()).isNull():
            answer = command.invoke(solver, parser.getSymbolManager()).strip() or answer
    except Exception as err:  # cvc5 reports unreadable input as RuntimeError or its own API exception
        return False, f"cvc5 could not read it: {(str(err).strip().splitlines() or [type(err).__name__])[0]}"
    return (True if answer == "unsat" else None if answer in ("unknown", "") else False), f"cvc5 answered {answer}"


def query_encodes(report, bundle: Path, name: str, expected: str, of: str) -> str | None:
    """The bundle's query file ``name`` is the query verify regenerates (``expected``) for ``of`` != program; its
    text when it is plain SMT-LIB2 (a FAILED line either way when it is not the expected query)."""
    text = read_query(report, bundle, name)
    if text is None:
        return None
    same = same_assertions(text, expected)
    report.add(f"{name} encodes {of} != program on the domain", same,
               "" if same else f"{name} is not the query of this {of}, program and domain")
    return text


def recheck_query(report, bundle: Path, name: str, expected: str, of: str, timeout_s: float,
                  logic: str | None = None) -> None:
    """``query_encodes``, then z3 (and cvc5, when installed) must answer unsat."""
    text = query_encodes(report, bundle, name, expected, of)
    if text is None:
        return
    unsat, answer = z3_unsat(text, timeout_s, logic)
    report.add(f"z3: {name} is unsat", unsat is True, f"z3 answered {answer}")
    ok, answer = cvc5_unsat(text, timeout_s)
    report.add(f"cvc5: {name} is unsat", ok, answer)
