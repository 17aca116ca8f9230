"""Surrogate benchmark: seconds to an exact integer surrogate by each method, against the gradient trainer, same
process; and the surrogate stage's share of `distill` wall time.

For every built-in task (default domain) and every example circuit of ``jaxscd.circuits.examples``: the truth table
is computed once, `distill` runs once (its program is the one the compiler compiles; its timings give the share),
then each method is timed alone on the same truth table:

- lp: ``jaxscd.surrogates.lp`` (HiGHS, cutting planes);
- compiled: ``jaxscd.surrogates.compiled`` on distill's program;
- trained: ``jaxscd.surrogates.trained`` (flax nnx + optax, quantized), the baseline.

Each is the registry's ``fit``, exhaustive integer check included.

A failed method shows "-" with its time to give up in brackets. "speed-up" is trained time over the fastest exact
method's time (a lower bound when the trainer failed).

    python experiments/bench_surrogate.py                  # every task and example
    python experiments/bench_surrogate.py --only parity_of_count,quote_close --train-widths 0,4,8
"""

import argparse
import time

from jaxscd.circuits.examples import EXAMPLES, example
from jaxscd.kernels.enumerate import precondition_mask
from jaxscd.kernels.evaluate import evaluate_circuit
from jaxscd.pipeline import DistillConfig, distill
from jaxscd.surrogates import METHODS, SurrogateConfig, Witnesses
from jaxscd.tasks import get_task, task_names


def _cases(only):
    for name in task_names():
        if not only or name in only:
            task = get_task(name)
            yield name, task.circuit, task.domain()
    for name in EXAMPLES:
        if not only or name in only:
            yield (name, *example(name))


def _timed(fn):
    start = time.perf_counter()
    found = fn()
    return found, time.perf_counter() - start


def _fitted(method: str, problem: Witnesses, program):
    """(surrogate or None, seconds) of one method alone."""
    return _timed(lambda: METHODS[method].fit(problem, program)[0])


def _cell(found, seconds) -> str:
    return f"{seconds:8.2f}" if found is not None else f"  - ({seconds:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated case names")
    parser.add_argument("--train-widths", default="0,4,8,16,32", help="widths the trainer tries (baseline)")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    widths = tuple(int(w) for w in args.train_widths.split(","))
    print(f"{'case':<20} {'inputs':>9} {'lp s':>10} {'compiled s':>10} {'trained s':>10} {'speed-up':>9} "
          f"{'distill s':>9} {'surrogate share':>15}  program / method")
    for name, circuit, domain in _cases(only):
        valid = precondition_mask(domain)
        table = evaluate_circuit(circuit, domain, valid)
        target = table.decisions
        result, distill_s = _timed(lambda: distill(circuit, domain, DistillConfig()))
        problem, program = Witnesses(domain, target, valid, training=SurrogateConfig(widths=widths)), result.program
        lp, lp_s = _fitted("lp", problem, program)
        compiled, compiled_s = _fitted("compiled", problem, program) if program else (None, 0.0)
        trained, trained_s = _fitted("trained", problem, program)
        exact = [s for found, s in ((lp, lp_s), (compiled, compiled_s)) if found is not None]
        ratio = f"{trained_s / min(exact):8.1f}x" + ("" if trained is not None else "+") if exact else "      n/a"
        share = result.timings.get("surrogate", 0.0) / distill_s
        print(f"{name:<20} {int(valid.sum()):>9,} {_cell(lp, lp_s):>10} {_cell(compiled, compiled_s):>10} "
              f"{_cell(trained, trained_s):>10} {ratio:>9} {distill_s:9.1f} {share:14.0%}   "
              f"{result.verdict.value} {program!r} by {result.surrogate_method}", flush=True)


if __name__ == "__main__":
    main()
