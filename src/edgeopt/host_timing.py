"""Host latency a user can compare: every artifact of an experiment re-timed side by side once all have been made.

Each artifact is first timed right after it is made (``pipeline.measure_output``), minutes apart from the others,
while a shared host's speed drifts: identical networks timed that way have differed by 1.5x, and one INT4 report
read 14.3 ms against an interleaved re-measurement of 1.55 ms. So when the techniques are done, the baseline and
every completed artifact are timed again in rotated, interleaved turns (``measure.interleaved_latency``): all of them
sample the same slow and fast phases, and their ratios hold. A figure whose p90 exceeds ``NOISY_SPREAD`` times its
median is timed once more; if it stays that spread it is marked ``noisy`` in the report.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeopt import measure
from edgeopt.frameworks import FrameworkBackend
from edgeopt.report import LatencyStats, Report
from edgeopt.techniques import TechniqueOutput

NOISY_SPREAD = 1.5  # p90 / median above which a figure is re-measured, then flagged
BASELINE = "baseline"


def is_noisy(stats: LatencyStats) -> bool:
    """p90 above ``NOISY_SPREAD`` times the median: the figure moved while it was taken."""
    return stats.host > 0 and stats.host_p90 > NOISY_SPREAD * stats.host


def _plan(stats: dict[str, LatencyStats], min_seconds: float) -> tuple[int, int]:
    """Rounds and calls per round: at least ``measure.MIN_TIMED_RUNS`` calls each, and ``min_seconds`` of work."""
    slowest_ms = max((s.host for s in stats.values()), default=0.0)
    calls = 5
    wanted = measure.MIN_TIMED_RUNS
    if slowest_ms > 0 and min_seconds > 0:
        wanted = max(wanted, math.ceil(min_seconds * 1000.0 / slowest_ms))
    return max(10, math.ceil(wanted / calls)), calls


def retime(
    backend: FrameworkBackend, report: Report, out_dir: Path, sample: np.ndarray, min_seconds: float = 0.0
) -> list[str]:
    """Replace every host latency in ``report`` by an interleaved re-measurement; returns the names left noisy."""
    predictors: dict[str, Callable[[], None]] = {}
    first: dict[str, LatencyStats] = {}
    if report.baseline is not None:
        predict = backend.artifact_predictor(
            out_dir / report.baseline.artifact,
            TechniqueOutput(artifact=out_dir / report.baseline.artifact, precision=report.baseline.precision),
        )
        predictors[BASELINE] = _bind(predict, sample)
        first[BASELINE] = report.baseline.latency_ms
    for run in report.runs:
        if run.status != "completed" or not run.artifact or run.latency_ms is None:
            continue
        path = out_dir / run.artifact
        if not path.is_file():
            continue
        predict = backend.artifact_predictor(path, TechniqueOutput(artifact=path, precision=run.precision or "fp32"))
        predictors[run.technique] = _bind(predict, sample)
        first[run.technique] = run.latency_ms
    if len(predictors) < 2:
        return []  # nothing to compare: the figure taken when the artifact was made stands
    rounds, calls = _plan(first, min_seconds)
    timed = measure.interleaved_latency(predictors, rounds=rounds, calls=calls)
    spread = [name for name, stats in timed.items() if is_noisy(stats)]
    if spread:
        again = measure.interleaved_latency({name: predictors[name] for name in spread}, rounds=rounds, calls=calls)
        for name, stats in again.items():
            if stats.host_p90 / max(stats.host, 1e-9) < timed[name].host_p90 / max(timed[name].host, 1e-9):
                timed[name] = stats
    noisy = [name for name, stats in timed.items() if is_noisy(stats)]
    for name, stats in timed.items():
        final = stats.model_copy(update={"noisy": name in noisy, "method": "interleaved"})
        if name == BASELINE and report.baseline is not None:
            report.baseline.latency_ms = final
        else:
            for run in report.runs:
                if run.technique == name:
                    run.latency_ms = final
    return noisy


def measure_checked(run_once: Callable[[], None], min_seconds: float = 0.0) -> LatencyStats:
    """One artifact timed alone (``edgeopt bench`` on a board) by the rule ``retime`` applies to a report's figures:
    a spread figure is timed once more, the steadier of the two kept, and marked ``noisy`` if it stays spread."""
    stats = measure.measure_latency(run_once, min_seconds=min_seconds)
    if is_noisy(stats):
        again = measure.measure_latency(run_once, warmup=0, min_seconds=min_seconds)
        if again.host_p90 / max(again.host, 1e-9) < stats.host_p90 / max(stats.host, 1e-9):
            stats = again
    return stats.model_copy(update={"noisy": is_noisy(stats)})


def _bind(predict: Callable[[np.ndarray], np.ndarray], sample: np.ndarray) -> Callable[[], None]:
    def run_once() -> None:
        predict(sample)

    return run_once
