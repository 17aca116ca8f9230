"""distill(): circuit -> truth table -> DSL search -> surrogate for the survivors -> z3 proof, stage by stage.

The search needs only the truth table, so it runs first; a surrogate is fitted for the programs that survive (the
cheapest exact method first, see ``jaxscd.witness``). A program that matches the circuit on every input is reported
even when no surrogate is found: the verdict is then UNKNOWN (z3 certified nothing), with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from jaxscd import progress
from jaxscd.circuits.base import Circuit
from jaxscd.describe import CountDescription, count_description
from jaxscd.domain import Domain
from jaxscd.dsl.batch import composition_family
from jaxscd.dsl.programs import Program
from jaxscd.dsl.source import render
from jaxscd.kernels.enumerate import chunks, decode_indices, precondition_mask, program_decisions
from jaxscd.kernels.evaluate import TruthTable, evaluate_circuit
from jaxscd.kernels.filter import CountTable, count_table
from jaxscd.nearmiss import disagreement_patterns, nearest_misses, one_sided_parts, one_sided_scores
from jaxscd.search import candidate_families, probe_indices, search
from jaxscd.surrogate import IntegerSurrogate, SurrogateConfig
from jaxscd.synth import synthesize
from jaxscd.verify.prove import ProofResult, Verdict, prove_equivalent
from jaxscd.witness import METHODS, Witness, Witnesses


@dataclass(frozen=True)
class DistillConfig:
    seed: int = 0
    surrogate: SurrogateConfig = SurrogateConfig()
    max_states: int = 3
    probe_size: int = 512
    proof_timeout_s: float = 60.0
    proof_strategy: str = "auto"  # auto | tree | single | cubes (see jaxscd.verify.prove.prove_equivalent)
    max_proof_attempts: int = 5
    prune: bool = True  # skip families that cannot hold a simpler program than one already found
    synth_states: int = 8  # when no DSL candidate is exact, synthesize a DFA with up to this many states (0: off)
    synth_timeout_s: float = 60.0
    surrogate_methods: tuple = METHODS  # tried in order for each program (see jaxscd.witness)

    def __post_init__(self):
        unknown = [m for m in self.surrogate_methods if m not in METHODS]
        if unknown or not self.surrogate_methods:
            raise ValueError(f"unknown surrogate methods {unknown or list(self.surrogate_methods)}; use some of "
                             f"{','.join(METHODS)}, e.g. --surrogate lp,compiled")


@dataclass
class DistillResult:
    verdict: Verdict
    domain: Domain
    class_names: tuple
    n_valid: int
    margin: float
    margin_bound: float
    generated: int = 0
    survivors: list = field(default_factory=list)
    per_family: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)  # families not searched: they hold no simpler program
    program: Program | None = None
    source: str | None = None
    surrogate: IntegerSurrogate | None = None
    surrogate_method: str | None = None  # how the surrogate was obtained: lp | features | compiled | trained
    surrogate_attempts: list = field(default_factory=list)  # every fitting attempt: method, seconds, found, reason
    proof: ProofResult | None = None
    refuted: list = field(default_factory=list)  # (program, counterexample) pairs ruled out by the solver
    spec_mismatches: list | None = None  # domain inputs (token ids) where the circuit differs from the spec
    spec_mismatch_count: int = 0
    circuit_program_mismatches: int | None = None  # exhaustive C vs P cross-check of the final program
    spec_patterns: list = field(default_factory=list)  # readable groups of the spec mismatches
    near_misses: list = field(default_factory=list)  # NearMiss values when no program is exact
    exact_description: CountDescription | None = None  # NO_PROGRAM: the decision as a table over token counts
    timings: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


class _Stages:
    def __init__(self, log: Callable[[str], None]):
        self.timings: dict[str, float] = {}
        self.log = log

    @contextmanager
    def __call__(self, name: str):
        progress.stage(name)  # a display names the stage that runs now
        start = time.perf_counter()
        yield
        self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 3)
        self.log(f"{name}: {self.timings[name]:.2f} s")


@dataclass(eq=False)
class Problem:
    """The circuit's truth table on its domain, with what the search reads from it: every stage after the circuit
    takes this one value. Nothing of size |domain| x max_len is kept; token arrays are decoded chunk by chunk."""

    domain: Domain
    table: TruthTable
    config: DistillConfig

    @property
    def target(self) -> np.ndarray:
        return self.table.decisions

    @property
    def valid(self) -> np.ndarray:
        return self.table.valid

    @cached_property
    def probe(self) -> np.ndarray:
        return probe_indices(self.valid, self.config.probe_size, self.config.seed)

    @cached_property
    def counts(self) -> CountTable:
        return count_table(self.domain, self.target, self.valid)

    @cached_property
    def families(self) -> list:
        return candidate_families(self.domain, self.config.max_states)

    @cached_property
    def scored(self) -> list:
        """One-sided scores of every family, read by the compositions and by the near misses."""
        return one_sided_scores(self.domain, self.target, self.valid, self.families, self.probe, self.counts)


def spec_decisions(spec: Callable, domain: Domain, valid: np.ndarray) -> np.ndarray:
    """int8 [size]: the intended class of every valid input (0 elsewhere). A spec that carries a DSL ``program`` is
    evaluated in batches; any other callable is called on one sequence at a time, chunk by chunk."""
    program = getattr(spec, "program", None)
    if program is not None:
        return program_decisions(program, domain)
    intended = np.zeros(domain.size, dtype=np.int8)
    for first, tokens, lengths, real in chunks(domain, 1 << 14):
        tokens, lengths = np.asarray(tokens), np.asarray(lengths)
        intended[first:first + real] = [int(spec(tokens[i, :lengths[i]].tolist())) if valid[first + i] else 0
                                        for i in range(real)]
    return intended


def compare_with_spec(spec: Callable, problem: Problem, class_names) -> tuple[int, list, list]:
    """(count, up to 5 examples, readable patterns) of valid inputs where the circuit differs from ``spec``.

    Exhaustive: every valid input is compared, so the count is exact on the domain (see ``spec_decisions``).
    """
    domain, decisions, valid = problem.domain, problem.target, problem.valid
    intended = spec_decisions(spec, domain, valid)
    wrong = np.flatnonzero(valid & (intended != decisions))
    tokens, lengths = (np.asarray(a) for a in decode_indices(domain, wrong[:5]))
    examples = [tokens[i, :lengths[i]].tolist() for i in range(len(tokens))]
    patterns = disagreement_patterns(domain, wrong, decisions[wrong], intended[wrong], class_names, what="spec")
    return len(wrong), examples, patterns


def distill(circuit: Circuit, domain: Domain, config: DistillConfig = DistillConfig(), spec: Callable | None = None,
            log: Callable[[str], None] = lambda _: None) -> DistillResult:
    """Truth table, then the loop: search -> surrogate for each survivor -> prove (counterexamples back into
    the search), then the exhaustive C == P cross-check of the answer."""
    stage = _Stages(log)
    with stage("domain"):
        valid = precondition_mask(domain)
    if not valid.any():
        raise ValueError(f"no sequence of the domain satisfies the precondition {domain.precondition_text!r}")
    with stage("circuit"):
        problem = Problem(domain, evaluate_circuit(circuit, domain, valid), config)
    table = problem.table
    result = DistillResult(Verdict.UNKNOWN, domain, circuit.class_names, int(valid.sum()), table.min_margin(),
                           table.margin_bound, timings=stage.timings)
    if spec is not None:
        with stage("spec"):
            result.spec_mismatch_count, result.spec_mismatches, result.spec_patterns = compare_with_spec(
                spec, problem, circuit.class_names)
    if result.margin <= result.margin_bound:
        result.notes.append(f"circuit decision margin {result.margin:.3g} is not above the float bound "
                            f"{result.margin_bound:g}: its truth table is not trusted")
        return result
    witnesses = Witnesses(domain, problem.target, valid, config.surrogate_methods, config.surrogate, config.seed, log)
    for survivors in _candidates(problem, result, stage):  # simplest first, batch by batch
        if _prove_survivors(result, survivors, witnesses, stage, config):
            break
    result.surrogate_attempts = witnesses.attempts
    if result.program is not None:  # the direct cross-check C == P on every input (independent of S and z3)
        differs = int((valid & (program_decisions(result.program, domain) != problem.target)).sum())
        result.circuit_program_mismatches = differs
        if differs:
            result.notes.append(f"the program differs from the circuit on {differs} inputs: not proved")
            result.verdict = Verdict.UNKNOWN
    if not result.survivors:
        result.verdict = Verdict.NO_PROGRAM
        with stage("near misses"):
            result.near_misses = nearest_misses(domain, problem.target, valid, problem.scored,
                                                circuit.class_names)
            result.exact_description = count_description(domain, problem.counts)
    return result


def _candidates(problem: Problem, result: DistillResult, stage: _Stages) -> Iterator[list]:
    """Batches of exact programs, simplest first: the DSL families (those the MDL bound skips only while nothing
    is proved), then AND / OR / XOR compositions of one-sided near misses, then the smallest DFA (SAT).

    CEGIS: every solver counterexample joins the probe set, so later searches check it first. (Survivors match
    the circuit on every input already, so a refutation means the surrogate and the circuit disagree, which the
    exhaustive check rules out: the loop guards against bugs rather than driving the search.)
    """
    families = problem.families
    while families:
        found = _search(problem, result, stage, families)
        families = found.skipped
        yield found.survivors
    if not result.survivors:
        with stage("compose"):  # scores every family once; the near misses read them again
            parts = one_sided_parts(problem.scored)
        if len(parts) >= 2:
            yield _search(problem, result, stage, [composition_family(parts, problem.domain.n_tokens)]).survivors
    if not result.survivors and problem.config.synth_states:
        with stage("synthesis"):
            synthesis = synthesize(problem.domain, problem.target, problem.valid, problem.config.synth_states,
                                   problem.config.synth_timeout_s, seed=problem.config.seed)
        if synthesis.machine is None:
            result.notes.append(f"state-machine synthesis: {synthesis.reason}")
            return
        result.survivors.append(synthesis.machine)
        result.generated += 1
        result.per_family["synthesized_state_machine"] = (1, 1)
        yield [synthesis.machine]


def _search(problem: Problem, result: DistillResult, stage: _Stages, families: list):
    counterexamples = [problem.domain.index_of(cex) for _, cex in result.refuted]
    must_match = np.union1d(problem.probe, counterexamples).astype(np.int64) if counterexamples else problem.probe
    with stage("search"):
        found = search(problem.domain, problem.target, problem.valid, families, must_match, problem.counts,
                       prune=problem.config.prune)
    result.generated += found.generated
    result.per_family |= found.per_family
    result.skipped = [f.name for f in found.skipped]
    result.survivors += found.survivors
    return found


def _prove_survivors(result: DistillResult, survivors: list, witnesses: Witnesses, stage: _Stages,
                     config: DistillConfig) -> bool:
    """Try survivors simplest first, each with the first exact surrogate found for it: PROVED ends (True);
    REFUTED drops the candidate; otherwise the first UNKNOWN (a solver give-up, or no surrogate) is kept."""
    for program in survivors[:config.max_proof_attempts]:
        with stage("surrogate"):
            witness = witnesses.for_program(program)
        if witness is None:
            result.notes.append(f"{program!r}: no exact surrogate ({'; '.join(witnesses.reasons())}); the program "
                                f"matches the circuit on every input, but z3 has certified nothing")
            _keep(result, program, None, None)
            continue
        with stage("prove"):
            proof = prove_equivalent(witness.surrogate, program, result.domain, config.proof_timeout_s,
                                     config.proof_strategy, witnesses.valid)
        if proof.verdict == Verdict.REFUTED:
            result.refuted.append((program, proof.counterexample))
        else:
            if proof.verdict == Verdict.UNKNOWN:
                result.notes.append(f"{program!r}: {proof.reason}")
            _keep(result, program, witness, proof)
            if proof.verdict == Verdict.PROVED:
                return True
    if result.program is None and result.refuted:
        result.verdict = Verdict.REFUTED
    return result.verdict == Verdict.PROVED


def _keep(result: DistillResult, program: Program, witness: Witness | None, proof: ProofResult | None) -> None:
    """Record ``program`` as the answer if it is the first one kept or the first PROVED."""
    proved = proof is not None and proof.verdict == Verdict.PROVED
    if result.program is not None and not proved:
        return
    result.program, result.proof = program, proof
    result.surrogate = witness.surrogate if witness else None
    result.surrogate_method = witness.method if witness else None
    result.source = render(program, result.domain.alphabet, result.class_names)
    result.verdict = proof.verdict if proof is not None else Verdict.UNKNOWN
