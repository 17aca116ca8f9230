"""Soundness by mutation: every mutant of a proved (surrogate, program) pair gets the verdict exhaustive
enumeration says it should (PROVED iff still equivalent; else REFUTED with a counterexample that really
disagrees).

    python experiments/mutation_suite.py --surrogate-mutants 200     # >= 1,000 mutants in all
    python experiments/mutation_suite.py --strategy tree             # every mutant through the tree proof
"""

import argparse
import collections
import sys
import time
from pathlib import Path

from jaxscd.verify.prove import STRATEGIES

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the mutation generator is test code
from mutants import standard_bases  # noqa: E402


def run(surrogate_mutants: int, seed: int = 0, log=print, strategy: str = "auto") -> list:
    outcomes = []
    for base in standard_bases(seed):
        start = time.perf_counter()
        found = [base.check(kind, s, p, strategy=strategy) for kind, s, p in base.mutants(surrogate_mutants, seed)]
        outcomes += [(base.name, o) for o in found]
        log(f"{base.name:<14} {len(found):>5} mutants, {sum(not o.equivalent for o in found):>5} non-equivalent, "
            f"{sum(not o.sound for o in found)} unsound, {time.perf_counter() - start:.1f} s")
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--surrogate-mutants", type=int, default=200, help="surrogate mutants per base")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategy", choices=("auto", *STRATEGIES), default="auto",
                        help="proof strategy every mutant goes through")
    args = parser.parse_args()
    outcomes = run(args.surrogate_mutants, args.seed, strategy=args.strategy)
    kinds = collections.Counter(o.kind for _, o in outcomes)
    print("\nby kind: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    verdicts = collections.Counter(o.verdict.value for _, o in outcomes)
    bad = [(b, o) for b, o in outcomes if not o.sound]
    print(f"total {len(outcomes)} mutants: {dict(verdicts)}; unsound or undecided: {len(bad)}")
    for base, o in bad[:10]:
        print(f"  {base}: {o}")
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
