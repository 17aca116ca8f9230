"""Where a circuit departs from a counting spec beyond enumeration, exact over the whole long domain: per
(statistic value, length), how many sequences the circuit decides differently from the spec (orbit sizes are
multinomials, exact Python integers), and a few readable lines of it."""

from __future__ import annotations

import numpy as np

from jaxscd.domain import Domain
from jaxscd.dsl.programs import CountThreshold, DensityThreshold, Program
from jaxscd.beyond.symmetry import Orbits, program_on_orbits


def spec_departures(spec: Program | None, orb: Orbits, classes: np.ndarray, valid: np.ndarray,
                    domain: Domain) -> dict | None:
    """Where the circuit departs from a counting spec (CountThreshold / DensityThreshold, e.g. bracket depth), exact
    over the whole long domain: per (statistic value, length), the number of sequences whose decided class differs
    from the spec's, and how many there are (orbit sizes are multinomials, exact Python integers). None when the
    task has no such spec."""
    if not isinstance(spec, (CountThreshold, DensityThreshold)):
        return None
    plus, minus = sorted(spec.plus), sorted(spec.minus)
    statistic = orb.counts[:, plus].sum(axis=1) - orb.counts[:, minus].sum(axis=1)
    intended = program_on_orbits(spec, orb)
    departs = valid & (classes >= 0) & (intended != classes)
    factorial = [1]
    for n in range(1, domain.max_len + 1):
        factorial.append(factorial[-1] * n)
    cells: dict = {}
    for row in np.flatnonzero(valid).tolist():
        rest = orb.counts[row].tolist()
        rest[int(orb.last[row])] -= 1
        size = factorial[sum(rest)]
        for c in rest:
            size //= factorial[c]
        key = (int(statistic[row]), int(orb.length[row]))
        total, wrong, circuit_class = cells.get(key, (0, 0, None))
        if departs[row]:
            wrong, circuit_class = wrong + size, int(classes[row])
        cells[key] = (total + size, wrong, circuit_class)
    names = domain.alphabet
    label = " + ".join(f"#{names[t]}" for t in plus) + "".join(f" − #{names[t]}" for t in minus)
    if isinstance(spec, CountThreshold):
        text = f"{label} ≥ {spec.threshold}"
    else:
        text = f"({label}) / length ≥ {spec.num}/{spec.den}"
    return {"statistic": label, "spec": text,
            "cells": [[value, length, total, wrong, circuit_class] for (value, length), (total, wrong, circuit_class)
                      in sorted(cells.items())]}


def departure_lines(departures: dict, class_names) -> list[str]:
    """A few readable lines: per statistic value, the lengths at which the circuit departs from the spec."""
    by_value: dict = {}
    for value, length, _, wrong, circuit_class in departures["cells"]:
        if wrong:
            by_value.setdefault((value, circuit_class), []).append(length)
    wrong = sum(c[3] for c in departures["cells"])
    total = sum(c[2] for c in departures["cells"])
    if not wrong:
        return [f"spec       the circuit matches {departures['spec']} on every input (exact, by orbits)"]
    lines = [f"spec       the circuit departs from {departures['spec']} on {wrong:.3g} of {total:.3g} inputs "
             f"(exact, by orbits):"]
    for (value, circuit_class), lengths in sorted(by_value.items())[:8]:
        span = f"{lengths[0]}..{lengths[-1]}" if lengths == list(range(lengths[0], lengths[-1] + 1)) else \
            ", ".join(map(str, lengths[:6])) + (", ..." if len(lengths) > 6 else "")
        lines.append(f"             {departures['statistic']} = {value}: circuit {class_names[circuit_class]!s} at "
                     f"lengths {span}")
    if len(by_value) > 8:
        lines.append(f"             ... and {len(by_value) - 8} more values")
    return lines
