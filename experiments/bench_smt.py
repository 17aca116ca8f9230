"""SMT proof benchmark: jaxscd's proof of surrogate == program against a plain encoding, same process.

Baseline: the textbook encoding of the *same* quantized network — Real-sorted one-hot inputs (each in {0, 1},
one per real position), every ReLU as If(pre > 0, pre, 0) including neurons that never change phase, one query;
its time is z3's check() alone (building the query is not counted).
jaxscd: stable neurons folded away, then its proof strategy ("auto"), timed from the first attempt to the verdict,
every attempt counted: for wide surrogates an interval-bounded decision tree (numpy) and one tree == program
query in z3's SAT core (tree building, query text and solving all counted); for narrow ones one integer query
(0/1 one-hot view) first. Columns "tree" and "single" time each strategy alone.

    python experiments/bench_smt.py                      # seed tasks at L=10, width-16 surrogates at L=8 and 9
    python experiments/bench_smt.py --baseline-timeout 600
"""

import argparse
import time
from fractions import Fraction

import z3

from jaxscd.dsl import smt
from jaxscd.kernels.enumerate import precondition_mask
from jaxscd.kernels.evaluate import evaluate_circuit
from jaxscd.pipeline import distill
from jaxscd.surrogates import SurrogateConfig
from jaxscd.surrogates.trained import SurrogateError, train
from jaxscd.tasks import get_task
from jaxscd.verify.encode import symbolic_sequence
from jaxscd.verify.prove import Verdict, prove_equivalent


def baseline_query(surrogate, program, domain) -> z3.Solver:
    """The plain encoding: Real one-hot inputs, If per ReLU (units in order, for deep nets), no folding, no
    integers."""
    seq = symbolic_sequence(domain)  # the same token/length variables, so the program term is shared
    solver = z3.Solver()
    solver.add(*seq.constraints)
    onehot = {}
    for i in range(domain.max_len):
        row = [z3.Real(f"x_{i}_{v}") for v in range(domain.n_tokens)]
        for v, x in enumerate(row):
            solver.add(z3.Or(x == 0, x == 1), (x == 1) == z3.And(seq.length > i, seq.tokens[i] == v))
        solver.add(z3.Sum(row) == z3.If(seq.length > i, 1, 0))
        onehot[i] = row
    q = lambda w: z3.RealVal(Fraction(int(w)))  # noqa: E731 - exact rationals, as a careful baseline would
    score = [q(surrogate.out_b)]
    score += [q(surrogate.skip_w[i, v]) * onehot[i][v] for i in onehot for v in range(domain.n_tokens)]
    relus = []
    for j in range(surrogate.n_neurons):
        pre = q(surrogate.hidden_b[j]) + z3.Sum([q(surrogate.hidden_w[i, v, j]) * onehot[i][v]
                                                 for i in onehot for v in range(domain.n_tokens)]
                                                + [q(surrogate.unit_w[k, j]) * relus[k] for k in range(j)])
        relus.append(z3.If(pre > 0, pre, 0))
        score.append(q(surrogate.out_w[j]) * relus[j])
    solver.add((z3.Sum(score) > 0) != smt.encode(program, seq.tokens, seq.length))
    return solver


def timed_baseline(surrogate, program, domain, timeout_s: float) -> tuple[str, float]:
    solver = baseline_query(surrogate, program, domain)
    solver.set(timeout=int(timeout_s * 1000))
    start = time.perf_counter()
    answer = solver.check()
    return str(answer), time.perf_counter() - start


def cubes_fresh_vs_assumptions(surrogate, program, domain, timeout_s: float) -> tuple[float, float, int]:
    """Same cubes two ways, one process: a fresh solver per cube query (with phase fixing, as jaxscd does)
    against one incremental solver asked check(assumptions) per cube (push/pop-style reuse, no phase fixing)."""
    from jaxscd.surrogates import exhaustive_decisions
    from jaxscd.verify.cubes import cube_phases, cube_query, initial_cubes
    from jaxscd.verify.encode import equivalence_query
    from jaxscd.verify.solver import solve_text

    valid = precondition_mask(domain)
    _, active = exhaustive_decisions(surrogate, domain)
    cubes = initial_cubes(domain, active, valid, max_unstable=2, max_cubes=64)
    start = time.perf_counter()
    for cube in cubes:
        text = cube_query(surrogate, program, domain, cube, cube_phases(active, valid, *cube.index_range(domain)))
        assert solve_text(text, timeout_s)[0] == "unsat"
    fresh = time.perf_counter() - start
    start = time.perf_counter()
    solver, seq = equivalence_query(surrogate, program, domain)
    solver.set(timeout=int(timeout_s * 1000))
    for n, cube in enumerate(cubes):
        literal = z3.Bool(f"cube{n}")
        solver.add(z3.Implies(literal, z3.And([seq.length == cube.length] +
                                              [seq.tokens[i] == t for i, t in enumerate(cube.prefix)])))
        assert solver.check(literal) == z3.unsat
    return fresh, time.perf_counter() - start, len(cubes)


def case_seed_task(name: str, max_len: int):
    """The pipeline's own surrogate and program for a seed task (unfolded network for the baseline)."""
    task = get_task(name)
    domain = task.domain(max_len=max_len)
    result = distill(task.circuit, domain)
    valid = precondition_mask(domain)
    table = evaluate_circuit(task.circuit, domain, valid)
    fitted = train(domain, table.decisions, valid)
    return f"{name} L<={max_len}", domain, result.program, fitted.surrogate, fitted.unfolded


def case_wide(max_len: int, width: int):
    """A deliberately wide surrogate (many unstable neurons) of quote_close: where solver cost shows."""
    task = get_task("quote_close")
    domain = task.domain(max_len=max_len)
    valid = precondition_mask(domain)
    table = evaluate_circuit(task.circuit, domain, valid)
    fitted = train(domain, table.decisions, valid, SurrogateConfig(widths=(width,), l1=0.0))
    from jaxscd.dsl import MostRecent

    return f"quote_close L<={max_len} width {width}", domain, MostRecent({2}, {3}, 0), fitted.surrogate, fitted.unfolded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-len", type=int, default=10)
    parser.add_argument("--wide-len", type=int, nargs="+", default=[8, 9])
    parser.add_argument("--wide-width", type=int, default=16)
    parser.add_argument("--baseline-timeout", type=float, default=300.0)
    parser.add_argument("--cubes", action="store_true", help="also time cube solving: fresh solver vs assumptions")
    args = parser.parse_args()
    cases = [case_seed_task("quote_close", args.max_len), case_seed_task("bracket_depth", args.max_len)]
    for n in args.wide_len:
        try:
            cases.append(case_wide(n, args.wide_width))
        except SurrogateError as err:
            print(f"skipped quote_close L<={n} width {args.wide_width}: {err}")
    print(f"z3 {z3.get_version_string()}; baseline timeout {args.baseline_timeout:.0f} s\n")
    header = (f"{'case':<34} {'neurons':>8} {'baseline':>10} {'jaxscd auto':>26} {'speed-up':>9} "
              f"{'tree':>14} {'single':>8}")
    print(header + "\n" + "-" * len(header))
    timings = []
    for label, domain, program, folded, unfolded in cases:
        base_answer, base_s = timed_baseline(unfolded, program, domain, args.baseline_timeout)
        proof = prove_equivalent(folded, program, domain, timeout_s=args.baseline_timeout)
        assert proof.verdict == Verdict.PROVED, proof
        how = proof.summary or "one query"
        tree = prove_equivalent(folded, program, domain, timeout_s=args.baseline_timeout, strategy="tree")
        tree_col = f"{tree.seconds:.3f} s" if tree.verdict == Verdict.PROVED else "over budget"
        if tree.record.get("tree"):
            tree_col += f" {tree.record['tree']['leaves']}L"
        single = prove_equivalent(folded, program, domain, timeout_s=args.baseline_timeout, strategy="single")
        base = f"{base_s:.3f} s" + ("" if base_answer == "unsat" else f" ({base_answer})")
        ratio = f"{base_s / proof.seconds:.1f}x" + (" (>=)" if base_answer != "unsat" else "")
        print(f"{label:<34} {f'{unfolded.n_neurons}->{folded.n_neurons}':>8} {base:>10} "
              f"{f'{proof.seconds:.3f} s ({how})':>26} {ratio:>9} {tree_col:>14} {single.seconds:>6.3f} s")
        if args.cubes:
            timings.append((label, cubes_fresh_vs_assumptions(folded, program, domain, args.baseline_timeout)))
    if not timings:
        return
    print("\ncube solving, same cubes: fresh solver per cube (phase-fixed) vs one solver with check(assumptions)")
    for label, (fresh, incremental, n) in timings:
        print(f"{label:<34} {n:>4} cubes   fresh {fresh:7.2f} s   assumptions {incremental:7.2f} s")


if __name__ == "__main__":
    main()
