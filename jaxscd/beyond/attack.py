"""A counterexample search at length, for circuits whose structure no bounds cover (a checkpoint with position
embeddings or several layers, a graph of another shape, a Python callable): it can refute a program, never prove
one.

For each candidate program the search walks a ladder of lengths upward (every length just past the enumerated
ones, then spaced out to ``max_len``). At each length a population of sequences (uniform ones, and "distractor"
ones: a short random sequence with one token repeated before or after it, the way a counting circuit is diluted)
is scored by how far the circuit's logit difference leans away from the program's class, and improved by
mutation for a few generations. The first disagreement (margin above the circuit's float-error bound) is then
shortened: sequences of every shorter length down to the previous rung are made by deleting positions from it.
The shortest disagreement found is re-run alone on the float64 circuit; it refutes only if the circuit gives the
same class again, with margin.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from jaxscd.domain import Domain
from jaxscd.dsl import reference as dsl
from jaxscd.dsl.programs import Program

POPULATION = 256  # sequences per evaluation (one compiled shape per length)
GENERATIONS = 12
ELITE = 32
RUNGS = 24  # lengths tried at most per program (all of them when the domain has fewer)
SECONDS_PER_PROGRAM = 90.0


def classes(program, rows: list) -> np.ndarray:
    """int8 [B]: a DSL program's class (the reference interpreter), or a spec callable's, of each sequence."""
    decide = (lambda r: dsl.run(program, r)) if isinstance(program, Program) else (lambda r: int(program(r)))
    return np.array([decide(r) for r in rows], dtype=np.int8)


@dataclass
class Found:
    tokens: list
    circuit: int  # the circuit's class (re-run alone)
    margin: float


@dataclass
class Searched:
    """What one program's search did: the disagreement found (or None), sequences scored, lengths tried."""

    found: Found | None
    sequences: int = 0  # scored, the precondition's valid ones only
    lengths: list = field(default_factory=list)
    seconds: float = 0.0
    stopped: str = ""  # why it stopped early ("" when it ran its whole ladder)

    def describe(self) -> str:
        span = f"lengths {self.lengths[0]}..{self.lengths[-1]}" if self.lengths else "no lengths"
        return (f"{self.sequences:,} valid sequences searched at {len(self.lengths)} {span}"
                + (f" ({self.stopped})" if self.stopped else ""))


def ladder(lengths: range, after: int, rungs: int = RUNGS) -> list[int]:
    """Lengths to search: those above ``after`` (the enumerated ones), every one while few, else the first eight
    then geometrically spaced, always ending at the longest."""
    todo = [n for n in lengths if n > after] or list(lengths)
    if len(todo) <= rungs:
        return todo
    head, rest = todo[:8], todo[8:]
    picks = np.unique(np.geomspace(rest[0], rest[-1], rungs - len(head)).round().astype(int))
    return head + [int(n) for n in picks if n in set(rest)] + ([rest[-1]] if rest[-1] not in picks else [])


@dataclass(eq=False)
class Attack:
    """The circuit on ``domain`` by search (a program: a DSL term or a spec callable on token lists). Has ``domain``, ``margin`` and ``rerun`` like ``AtLength``, so the
    pipeline's candidates table reads either."""

    circuit: object
    domain: Domain
    enumerated: int = 0  # lengths up to this were checked on every input (the short search)
    seed: int = 0
    margin: float = 1e-9

    def rerun(self, tokens: list[int]) -> tuple[int, float]:
        from jaxscd.kernels.evaluate import run_circuit

        decision, gap, _ = run_circuit(self.circuit, np.asarray([tokens], dtype=np.int32))
        return int(decision[0]), float(gap[0])

    def _lean(self, program, tokens: np.ndarray) -> np.ndarray:
        """float64 [B]: the circuit's logit difference signed toward the class the program does not give (> margin:
        a disagreement); -inf on rows the precondition excludes."""
        from jaxscd.kernels.evaluate import run_circuit

        decision, gap, bound = run_circuit(self.circuit, tokens)
        self.margin = max(self.margin, float(bound))
        signed = np.where(decision == 1, gap, -gap)
        rows = tokens.tolist()
        expected = classes(program, rows)
        lean = np.where(expected == 1, -signed, signed)
        pre = self.domain.precondition
        if pre is not None:
            valid = np.array([dsl.run(pre, r) == 1 for r in rows])
            lean = np.where(valid, lean, -np.inf)
        return lean

    def _population(self, n: int, rng: np.random.Generator) -> np.ndarray:
        v = self.domain.n_tokens
        tokens = rng.integers(0, v, (POPULATION, n))
        for row in range(POPULATION // 2, POPULATION):  # distractors: a short core with one token repeated
            core = int(rng.integers(1, min(n, 8) + 1))
            filler = int(rng.integers(0, v))
            tokens[row] = filler
            if row % 2:
                tokens[row, n - core:] = rng.integers(0, v, core)
            else:
                tokens[row, :core] = rng.integers(0, v, core)
                tokens[row, -1] = rng.integers(0, v)
        return tokens.astype(np.int32)

    def _mutate(self, parents: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        n, v = parents.shape[1], self.domain.n_tokens
        children = parents[rng.integers(0, len(parents), count)].copy()
        for child in children:
            changes = int(rng.choice([1, 1, 2, 4]))
            child[rng.integers(0, n, changes)] = rng.integers(0, v, changes)
        return children

    def _at(self, program, n: int, rng, stats: Searched, deadline: float) -> list | None:
        """A disagreement of length ``n`` (by evolution), or None."""
        tokens = self._population(n, rng)
        for _ in range(GENERATIONS + 1):
            lean = self._lean(program, tokens)
            stats.sequences += int(np.isfinite(lean).sum())
            best = int(np.argmax(lean))
            if lean[best] > self.margin:
                return tokens[best].tolist()
            if time.monotonic() > deadline:
                return None
            elite = tokens[np.argsort(-lean)[:ELITE]]
            tokens = np.concatenate([elite, self._mutate(elite, POPULATION - ELITE, rng)])
        return None

    def _shorter(self, program, tokens: list, n: int, rng, stats: Searched, deadline: float) -> list | None:
        """A disagreement of length ``n`` made by deleting positions from ``tokens``, or None."""
        long = np.asarray(tokens)
        cut = len(long) - n
        rows = []
        for row in range(POPULATION):
            if row % 2:  # a contiguous block
                start = int(rng.integers(0, len(long) - cut)) if row > 1 else len(long) - cut - 1
                keep = np.r_[0:start, start + cut:len(long)]
            else:  # scattered positions, never the last
                keep = np.sort(np.r_[rng.choice(len(long) - 1, n - 1, replace=False), len(long) - 1])
            rows.append(long[keep])
        candidates = np.asarray(rows, dtype=np.int32)
        lean = self._lean(program, candidates)
        stats.sequences += int(np.isfinite(lean).sum())
        best = int(np.argmax(lean))
        if lean[best] > self.margin:
            return candidates[best].tolist()
        return self._at(program, n, rng, stats, deadline) if time.monotonic() < deadline else None

    def departure_rates(self, program, samples: int = POPULATION, seconds: float = 30.0) -> list:
        """Per ladder length, uniform random sequences: [length, valid sampled, departing from ``program`` with
        margin, within the float bound]: an unbiased estimate of the share of the length's sequences where the
        circuit departs (not a bound)."""
        from jaxscd.kernels.evaluate import run_circuit

        rng = np.random.default_rng(self.seed + 1)
        deadline, cells = time.monotonic() + seconds, []
        for n in ladder(self.domain.lengths, self.enumerated):
            if time.monotonic() > deadline:
                break
            tokens = rng.integers(0, self.domain.n_tokens, (samples, n)).astype(np.int32)
            rows = tokens.tolist()
            pre = self.domain.precondition
            valid = np.array([pre is None or dsl.run(pre, r) == 1 for r in rows])
            decision, gap, bound = run_circuit(self.circuit, tokens)
            expected = classes(program, rows)
            trusted = gap > max(self.margin, float(bound))
            cells.append([n, int(valid.sum()), int((valid & trusted & (decision != expected)).sum()),
                          int((valid & ~trusted).sum())])
        return cells

    def search(self, program, seconds: float = SECONDS_PER_PROGRAM) -> Searched:
        start = time.monotonic()
        deadline = start + seconds
        rng = np.random.default_rng(self.seed)
        stats = Searched(None)
        previous, found = self.enumerated, None
        for n in ladder(self.domain.lengths, self.enumerated):
            if time.monotonic() > deadline:
                stats.stopped = f"time limit {seconds:g} s"
                break
            stats.lengths.append(n)
            found = self._at(program, n, rng, stats, deadline)
            if found is not None:
                break
            previous = n
        if found is not None:  # the shortest rung with a disagreement; fill in the lengths below it
            for m in range(max(previous + 1, self.domain.min_len), len(found)):
                if time.monotonic() > deadline:
                    break
                shorter = self._shorter(program, found, m, rng, stats, deadline)
                if shorter is not None:
                    found = shorter
                    break
        stats.seconds = time.monotonic() - start
        if found is None:
            return stats
        decision, gap = self.rerun(found)
        if gap > self.margin and decision != classes(program, [found])[0]:
            stats.found = Found(found, decision, gap)
        return stats
