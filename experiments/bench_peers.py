"""Peers benchmark: jaxscd against AALpy (KV and L*, each with an exhaustive and a random-word equivalence oracle)
on the same circuits and domains, in one process.

For each circuit (the examples of ``jaxscd.circuits.examples``, the quote_close task, a random 40-state automaton
and a random truth table; domains of 729 to 131,070 inputs):

- jaxscd: ``distill(circuit, domain)``, wall time of a first (cold) and a second (warm) run; its answer (a named
  program or an automaton), exact on the domain (the exhaustive circuit == program cross-check), certificate
  (verdict PROVED: surrogate + proof);
- AALpy, exhaustive oracle: jaxscd's truth table answers the membership queries (``TableSUL``) and the
  equivalence oracle checks the hypothesis on every valid input (``DomainOracle``); its wall time includes the
  exhaustive evaluation of the circuit the oracle needs (column "table");
- AALpy, random-word oracle: the circuit itself answers every membership query (one call per new word, cached);
  ``RandomWordEqOracle`` walks ``--walks`` random words of the domain's lengths.

"MQ" counts membership queries (AALpy's own count, its cache excluded), "EQ" equivalence queries; "states" is the
learned automaton's size (jaxscd: the program's motif, or its states for a state machine); "exact" is checked on
every valid input of the domain; AALpy certifies nothing. A warm-up distill on a small domain runs first (imports and
the kernels every run compiles); "cold" then counts what compiling this circuit's shapes adds.

    python experiments/bench_peers.py
    python experiments/bench_peers.py --only parity_of_count,random_table --walks 500
"""

from __future__ import annotations

import argparse
import os
import random
import time

import numpy as np
from aalpy.base import SUL
from aalpy.learning_algs import run_KV, run_Lstar
from aalpy.oracles import RandomWordEqOracle

from jaxscd.circuits.base import Circuit
from jaxscd.circuits.examples import example
from jaxscd.domain import Domain
from jaxscd.dsl.programs import StateMachine
from jaxscd.kernels.enumerate import precondition_mask
from jaxscd.kernels.evaluate import evaluate_circuit, run_circuit
from jaxscd.pipeline import distill
from jaxscd.search.automata import DomainOracle, TableSUL, machine_decisions, to_state_machine
from jaxscd.tasks import get_task
from jaxscd.verify.prove import Verdict


def _random_machine(n_states: int, n_tokens: int, seed: int) -> StateMachine:
    rng = np.random.default_rng(seed)
    return StateMachine(rng.integers(0, n_states, (n_states, n_tokens)).tolist(),
                        frozenset(np.flatnonzero(rng.random(n_states) < 0.5).tolist()))


def _machine_circuit(name: str, machine: StateMachine) -> Circuit:
    table = np.array(machine.transitions)
    accepting = np.array([s in machine.accepting for s in range(machine.n_states)])

    def forward(tokens):
        state = np.zeros(len(tokens), dtype=np.int64)
        for column in np.asarray(tokens).T:
            state = table[state, column]
        return accepting[state].astype(np.int8)

    return Circuit(name, forward, ("no", "yes"))


def _random_table(seed: int = 0) -> tuple[Circuit, Domain]:
    """A random class for each of the 729 sequences of length 6 over a, b, c."""
    domain = Domain(("a", "b", "c"), 6, 6)
    labels = np.random.default_rng(seed).integers(0, 2, domain.size).astype(np.int8)

    def forward(tokens):
        tokens = np.asarray(tokens, dtype=np.int64)
        return labels[(tokens * 3 ** np.arange(tokens.shape[1] - 1, -1, -1)).sum(axis=1)]

    return Circuit("random_table", forward, ("no", "yes")), domain


def _with_len(pair, max_len: int):
    circuit, domain = pair
    return circuit, Domain(domain.alphabet, domain.min_len, max_len)


CIRCUITS = {
    "parity_of_count": lambda: example("parity_of_count"),
    "automaton_3_states": lambda: example("automaton_3_states"),
    "difference_mod_3": lambda: example("difference_mod_3"),
    "saturating_counter": lambda: example("saturating_counter"),
    "most_recent": lambda: _with_len(example("most_recent_long"), 10),
    "count_a_ge_2": lambda: _with_len(example("count_a_ge_2_long"), 16),
    "quote_close": lambda: (get_task("quote_close").circuit, get_task("quote_close").domain(max_len=8)),
    "random_automaton_40": lambda: (_machine_circuit("random_automaton_40", _random_machine(40, 3, 7)),
                                    Domain(("a", "b", "c"), 1, 10)),
    "random_table": _random_table,
}


class CircuitSUL(SUL):
    """Membership queries answered by running the circuit on the word (once per word; words outside the domain
    are rejected): how AALpy is used without jaxscd's truth table."""

    def __init__(self, circuit: Circuit, domain: Domain, valid: np.ndarray):
        super().__init__()
        self.circuit, self.domain, self.valid = circuit, domain, valid
        self.letter = {name: token for token, name in enumerate(domain.alphabet)}
        self.answers: dict = {}
        self.calls = 0
        self.word: list = []

    def pre(self):
        self.word = []

    def post(self):
        pass

    def step(self, letter):
        if letter is not None:
            self.word.append(self.letter[letter])
        return self._member(tuple(self.word))

    def _member(self, word: tuple) -> bool:
        domain = self.domain
        if not domain.min_len <= len(word) <= domain.max_len or not self.valid[domain.index_of(word)]:
            return False
        if word not in self.answers:
            self.calls += 1
            self.answers[word] = bool(run_circuit(self.circuit, np.array([word], dtype=np.int32))[0][0])
        return self.answers[word]


def _exact(machine: StateMachine, domain: Domain, decisions: np.ndarray, valid: np.ndarray) -> bool:
    return not np.any(valid & (machine_decisions(machine, domain) != decisions))


def _jaxscd(circuit: Circuit, domain: Domain) -> dict:
    """Two runs: the first compiles what this circuit's shapes need (cold), the second reuses it (warm)."""
    times = []
    for _ in range(2):
        start = time.perf_counter()
        result = distill(circuit, domain)
        times.append(time.perf_counter() - start)
    program = result.program
    answer = "-" if program is None else f"{program.n_states} states" if isinstance(program, StateMachine) else \
        type(program).__name__
    return {"cold": times[0], "s": times[1], "answer": answer, "exact": result.circuit_program_mismatches == 0,
            "certificate": result.verdict == Verdict.PROVED, "verdict": result.verdict.value}


def _aalpy(learner, sul, oracle, domain: Domain, decisions: np.ndarray, valid: np.ndarray, extra_s: float = 0.0):
    start = time.perf_counter()
    dfa, info = learner(list(domain.alphabet), sul, oracle, "dfa", return_data=True, print_level=0)
    seconds = time.perf_counter() - start + extra_s
    machine = to_state_machine(dfa, domain)
    return {"s": seconds, "mq": info["queries_learning"], "eq": info["learning_rounds"], "states": machine.n_states,
            "exact": _exact(machine, domain, decisions, valid)}


def _row(name: str, walks: int, seed: int) -> dict:
    circuit, domain = CIRCUITS[name]()
    row = {"name": name, "inputs": domain.size, "jaxscd": _jaxscd(circuit, domain)}
    start = time.perf_counter()
    valid = precondition_mask(domain)
    table = evaluate_circuit(circuit, domain, valid)
    row["table_s"] = table_s = time.perf_counter() - start
    for label, learner in (("KV", run_KV), ("L*", run_Lstar)):
        sul = TableSUL(domain, table.decisions, valid)
        row[f"{label} exhaustive"] = _aalpy(learner, sul, DomainOracle(sul), domain, sul.decisions, valid, table_s)
        random.seed(seed)  # RandomWordEqOracle draws from Python's random
        sul = CircuitSUL(circuit, domain, valid)
        oracle = RandomWordEqOracle(list(domain.alphabet), sul, num_walks=walks, min_walk_len=domain.min_len,
                                    max_walk_len=domain.max_len)
        row[f"{label} random"] = _aalpy(learner, sul, oracle, domain, table.decisions, valid)
    return row


def _print(rows: list) -> None:
    print("| circuit | inputs | jaxscd s cold / warm | jaxscd answer | exact | cert | table s | "
          "KV exhaustive: s / MQ / EQ / states / exact | L* exhaustive | KV random-word | L* random-word |")
    print("|---|---:|---:|---|---|---|---:|---|---|---|---|")
    yes = {True: "yes", False: "**no**"}
    for row in rows:
        j = row["jaxscd"]
        answer = j["answer"] if j["certificate"] else f"{j['answer']} ({j['verdict']})"
        cells = [row["name"], f"{row['inputs']:,}", f"{j['cold']:.2f} / {j['s']:.2f}", answer, yes[j["exact"]],
                 yes[j["certificate"]], f"{row['table_s']:.2f}"]
        for key in ("KV exhaustive", "L* exhaustive", "KV random", "L* random"):
            a = row[key]
            cells.append(f"{a['s']:.2f} / {a['mq']:,} / {a['eq']} / {a['states']} / {yes[a['exact']]}")
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated circuit names: " + ",".join(CIRCUITS))
    parser.add_argument("--walks", type=int, default=1000, help="random words per equivalence query (random oracle)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(CIRCUITS)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; warming up jaxscd ...", flush=True)
    warm, domain = example("parity_of_count")
    distill(warm, Domain(domain.alphabet, 1, 4))
    rows = []
    for name in names:
        rows.append(_row(name, args.walks, args.seed))
        j = rows[-1]["jaxscd"]
        print(f"{name}: jaxscd {j['cold']:.2f} s cold, {j['s']:.2f} s warm, {j['verdict']} {j['answer']}",
              flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}")
    _print(rows)


if __name__ == "__main__":
    main()
