"""A search at length: threshold programs of the short-domain candidates' families with the threshold fitted to the
circuit's complete orbit table (when every candidate from the short domain is refuted at length)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from jaxscd.dsl.programs import CountThreshold, DensityThreshold, LengthThreshold
from jaxscd.beyond.symmetry import Orbits


def _simplest_fraction_above(low: Fraction, high: Fraction, max_den: int = 1 << 12) -> Fraction | None:
    """The fraction with the smallest denominator in (low, high]."""
    for den in range(1, max_den + 1):
        num = (high * den).numerator // (high * den).denominator
        if Fraction(num, den) > low:
            return Fraction(num, den)
    return None


def refits(candidates: list, orb: Orbits, classes: np.ndarray, valid: np.ndarray) -> list:
    """Threshold programs of the candidates' families with the threshold fitted to the whole orbit table."""
    decided = valid & (classes >= 0)
    ones, zeros = decided & (classes == 1), decided & (classes == 0)
    found = []
    for program in candidates:
        match program:
            case CountThreshold(plus, minus, _) | DensityThreshold(plus, minus, _, _):
                weights = np.array([(v in plus) - (v in minus) for v in range(orb.counts.shape[1])])
                signed = orb.counts @ weights
                if isinstance(program, CountThreshold):
                    low = int(signed[zeros].max()) if zeros.any() else None
                    high = int(signed[ones].min()) if ones.any() else None
                    if low is not None and (high is None or low + 1 <= high):
                        found.append(CountThreshold(plus, minus, low + 1))
                    continue
                low = max((Fraction(int(s), int(n)) for s, n in _extreme(signed, orb.length, zeros, max)),
                          default=Fraction(-1))
                high = min((Fraction(int(s), int(n)) for s, n in _extreme(signed, orb.length, ones, min)),
                           default=Fraction(1))
                q = _simplest_fraction_above(low, high) if low < high else None
                if q is not None:
                    found.append(DensityThreshold(plus, minus, q.numerator, q.denominator))
            case LengthThreshold(_):
                low = int(orb.length[zeros].max()) if zeros.any() else 0
                found.append(LengthThreshold(low + 1))
    return [p for p in dict.fromkeys(found) if p not in candidates]


def _extreme(signed: np.ndarray, length: np.ndarray, mask: np.ndarray, pick) -> list:
    """The (signed, length) pair of extreme ratio among ``mask`` rows (exact comparison per length)."""
    out = []
    for n in np.unique(length[mask]):
        rows = mask & (length == n)
        out.append((pick(signed[rows]), n))
    return out
