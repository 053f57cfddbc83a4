"""Host latency a user can compare: every artifact of an experiment re-timed side by side once all have been made.

Each artifact is first timed right after it is made (``pipeline.measure_output``), minutes apart from the others,
while a shared host's speed drifts: identical networks timed that way have differed by 1.5x, and one INT4 report
read 14.3 ms against an interleaved re-measurement of 1.55 ms. So when the techniques are done, the baseline and
every completed artifact are timed again in rotated, interleaved turns (``measure.interleaved_latency``): all of them
sample the same slow and fast phases, and their ratios hold. A figure whose p90 exceeds ``NOISY_SPREAD`` times its
median is timed once more; if it stays that spread it is marked ``noisy`` in the report.

The re-timing runs in a fresh process that loads only the artifacts (``in_fresh_process``): the experiment's own
process, after training, timed the same FP32 ``.pte`` 1.5x slower than a process that holds nothing else.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeopt import measure
from edgeopt.frameworks import FrameworkBackend
from edgeopt.report import LatencyStats, Report
from edgeopt.techniques import TechniqueOutput

log = logging.getLogger(__name__)

NOISY_SPREAD = 1.5  # p90 / median above which a figure is re-measured, then flagged
BASELINE = "baseline"
CHILD_TIMEOUT_S = 600.0  # start-up (a framework import) and every artifact's rounds; far above what they take


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


Timer = Callable[[dict[str, tuple[Path, str]], int, int], dict[str, LatencyStats]]


def retime(report: Report, out_dir: Path, timer: Timer, min_seconds: float = 0.0) -> list[str]:
    """Replace every host latency in ``report`` by an interleaved re-measurement; returns the names left noisy.

    ``timer`` times the artifacts it is given by name: ``in_fresh_process`` in an experiment, ``in_this_process``
    where the artifacts' predictors are fakes (tests).
    """
    artifacts: dict[str, tuple[Path, str]] = {}
    first: dict[str, LatencyStats] = {}
    if report.baseline is not None:
        artifacts[BASELINE] = (out_dir / report.baseline.artifact, report.baseline.precision)
        first[BASELINE] = report.baseline.latency_ms
    for run in report.runs:
        if run.status != "completed" or not run.artifact or run.latency_ms is None:
            continue
        path = out_dir / run.artifact
        if not path.is_file():
            continue
        artifacts[run.technique] = (path, run.precision or "fp32")
        first[run.technique] = run.latency_ms
    if len(artifacts) < 2:
        return []  # nothing to compare: the figure taken when the artifact was made stands
    rounds, calls = _plan(first, min_seconds)
    timed = timer(artifacts, rounds, calls)
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


def side_by_side(predictors: dict[str, Callable[[], None]], rounds: int, calls: int) -> dict[str, LatencyStats]:
    """Interleaved medians of ``predictors``; the spread ones are timed once more and the steadier figure kept."""
    timed = measure.interleaved_latency(predictors, rounds=rounds, calls=calls)
    spread = [name for name, stats in timed.items() if is_noisy(stats)]
    if spread:
        again = measure.interleaved_latency({name: predictors[name] for name in spread}, rounds=rounds, calls=calls)
        for name, stats in again.items():
            if stats.host_p90 / max(stats.host, 1e-9) < timed[name].host_p90 / max(timed[name].host, 1e-9):
                timed[name] = stats
    return timed


def in_this_process(backend: FrameworkBackend, sample: np.ndarray) -> Timer:
    """Times the artifacts with ``backend``'s predictors here, in the calling process."""

    def timer(artifacts: dict[str, tuple[Path, str]], rounds: int, calls: int) -> dict[str, LatencyStats]:
        predictors = {
            name: _bind(backend.artifact_predictor(path, TechniqueOutput(artifact=path, precision=precision)), sample)
            for name, (path, precision) in artifacts.items()
        }
        return side_by_side(predictors, rounds, calls)

    return timer


def in_fresh_process(framework: str, sample: np.ndarray, threads: int) -> Timer:
    """Times the artifacts in a new Python process (``python -m edgeopt.host_timing``) that loads only them.

    The process that just ran an experiment times the same ``.pte`` slower than a fresh one (ResNet18's FP32
    baseline 3.19 ms in the report against 2.15 ms re-timed apart, ``benchmarks/results/pytorch_budget.md``):
    training leaves thread pools, allocator state and gigabytes of tensors behind. A board runs the artifact alone,
    so the report's figure is taken in a process that holds nothing else. It is a subprocess, not a multiprocessing
    child, because Celery's prefork workers are daemonic and may not have children of their own.
    If that process fails, the artifacts are timed here instead and the log says why.
    """

    def timer(artifacts: dict[str, tuple[Path, str]], rounds: int, calls: int) -> dict[str, LatencyStats]:
        with tempfile.TemporaryDirectory(prefix="edgeopt-timing-") as tmp:
            folder = Path(tmp)
            np.save(folder / "sample.npy", np.ascontiguousarray(sample))
            job = {
                "framework": framework,
                "artifacts": {name: [str(path), precision] for name, (path, precision) in artifacts.items()},
                "rounds": rounds,
                "calls": calls,
            }
            (folder / "job.json").write_text(json.dumps(job))
            env = {**os.environ, "EDGEOPT_THREADS": str(threads)}
            try:
                done = subprocess.run(
                    [sys.executable, "-m", "edgeopt.host_timing", str(folder)],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=CHILD_TIMEOUT_S,
                    check=False,
                )
                result = folder / "result.json"
                if done.returncode == 0 and result.is_file():
                    figures = json.loads(result.read_text())
                    return {name: LatencyStats.model_validate(figures[name]) for name in artifacts}
                reason = f"exit code {done.returncode}: {done.stderr.strip()[-500:]}"
            except subprocess.TimeoutExpired:
                reason = f"no answer within {CHILD_TIMEOUT_S:.0f} s"
        log.warning("timing in a fresh process failed (%s); timing in the experiment's process instead", reason)
        from edgeopt.frameworks import get_backend

        return in_this_process(get_backend(framework), sample)(artifacts, rounds, calls)

    return timer


def _time_job(folder: Path) -> None:
    """The fresh process's side of ``in_fresh_process``: read the job, time it, write ``result.json``."""
    from edgeopt.frameworks import get_backend

    job = json.loads((folder / "job.json").read_text())
    sample = np.load(folder / "sample.npy", allow_pickle=False)
    artifacts = {name: (Path(path), precision) for name, (path, precision) in job["artifacts"].items()}
    timed = in_this_process(get_backend(job["framework"]), sample)(artifacts, job["rounds"], job["calls"])
    (folder / "result.json").write_text(json.dumps({name: stats.model_dump() for name, stats in timed.items()}))


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


if __name__ == "__main__":
    _time_job(Path(sys.argv[1]))
