"""Correct a board's latency estimates by the user's own measurements on that board (``edgeopt agent``).

The estimator (``edgeopt.estimate``) is calibrated on published figures; a user's Pi, cooling, OS and runtime build
differ from those. Once agents have measured some artifacts on a real board of one catalog device, each pair
(estimate, measurement) gives a ratio measured / estimated. The correction factor of a precision is the geometric
median of its ratios (the median in log space: one thermal-throttled figure cannot drag it), falling back to all
precisions' median when a precision has no measurement yet. Every estimate for that device is then shown next to
``estimate x factor``.

The error figures say how far off the estimator was on this user's board, before the correction and after it.
"After" is leave-one-out: each measurement is predicted by the factor fitted on the *other* measurements, so a
single measurement (which its own factor would predict exactly) reports no corrected error at all.

Pure: no database, no framework. ``edgeopt.service.messages`` gathers the pairs and applies the result.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from edgeopt.report import BoardCorrection

ALL_PRECISIONS = "all"
MAX_MEASUREMENTS = 200  # the most recent measurements of one device that a correction is fitted on


@dataclass(frozen=True)
class MeasuredEstimate:
    """One artifact measured on a real board of the device, with the estimate made for it at the same threads."""

    estimated_ms: float
    measured_ms: float
    precision: str


def _log_ratio(pair: MeasuredEstimate) -> float:
    return math.log(pair.measured_ms / pair.estimated_ms)


def _factors(pairs: Sequence[MeasuredEstimate]) -> dict[str, float]:
    """precision -> geometric median of measured / estimated; ``ALL_PRECISIONS`` -> the same over every pair."""
    by_precision: dict[str, list[float]] = {}
    for pair in pairs:
        by_precision.setdefault(pair.precision, []).append(_log_ratio(pair))
    factors = {precision: math.exp(statistics.median(logs)) for precision, logs in by_precision.items()}
    factors[ALL_PRECISIONS] = math.exp(statistics.median(_log_ratio(pair) for pair in pairs))
    return factors


def factor_for(correction: BoardCorrection, precision: str | None) -> float:
    """The factor an estimate of ``precision`` is multiplied by."""
    return correction.factors.get(precision or "", correction.factors[ALL_PRECISIONS])


def _error(estimated: float, measured: float) -> float:
    """How far off, as a factor >= 1 whichever side the estimate missed on."""
    ratio = measured / estimated
    return max(ratio, 1.0 / ratio)


def fit_correction(device: str, pairs: Sequence[MeasuredEstimate]) -> BoardCorrection | None:
    """The correction for ``device`` from its measured pairs (most recent last); None when there are none."""
    usable = [p for p in pairs if p.estimated_ms > 0 and p.measured_ms > 0][-MAX_MEASUREMENTS:]
    if not usable:
        return None
    errors = [_error(p.estimated_ms, p.measured_ms) for p in usable]
    corrected: list[float] = []
    if len(usable) > 1:
        for i, pair in enumerate(usable):
            others = _factors(usable[:i] + usable[i + 1 :])
            factor = others.get(pair.precision, others[ALL_PRECISIONS])
            corrected.append(_error(pair.estimated_ms * factor, pair.measured_ms))
    return BoardCorrection(
        device=device,
        measurements=len(usable),
        factors=_factors(usable),
        median_error=statistics.median(errors),
        worst_error=max(errors),
        corrected_median_error=statistics.median(corrected) if corrected else None,
        corrected_worst_error=max(corrected) if corrected else None,
    )
