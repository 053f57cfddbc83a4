"""Host latencies re-timed side by side at the end of an experiment: ratios hold, and a spread figure is flagged."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np

from edgeopt import host_timing
from edgeopt.report import BaselineResult, ExperimentInfo, LatencyStats, Report, RunResult


def _busy(ms: float) -> None:
    end = time.perf_counter() + ms / 1000.0
    while time.perf_counter() < end:
        pass


class FakeBackend:
    """Artifacts whose run time is known: a name in the file decides how long one inference takes."""

    def artifact_predictor(self, artifact: Path, output: object):  # noqa: ANN201 - the backend protocol's shape
        name = artifact.stem
        counter = itertools.count()
        if name == "jittery":
            return lambda x: _busy(2.0 if next(counter) % 4 == 0 else 0.2)
        return lambda x: _busy({"baseline": 0.6, "fast": 0.2}[name])


def _report(tmp_path: Path) -> Report:
    for name in ("baseline", "fast", "jittery"):
        (tmp_path / f"{name}.pte").write_bytes(b"x")
    stale = LatencyStats(host=9.0, host_p90=9.5)  # as if timed while the host was busy with something else
    run = lambda name: RunResult(  # noqa: E731
        technique={"fast": "ptq_int8", "jittery": "ptq_int4"}[name],
        status="completed",
        artifact=f"{name}.pte",
        latency_ms=stale,
        precision="int8",
    )
    return Report(
        experiment=ExperimentInfo(id="x", framework="pytorch", dataset="digits", device="rpi4", goal="balanced"),
        baseline=BaselineResult(
            accuracy=1.0,
            size_bytes=1,
            compressed_size_bytes=1,
            params=1,
            flops=1,
            latency_ms=stale,
            artifact="baseline.pte",
        ),
        runs=[run("fast"), run("jittery"), RunResult(technique="distillation", status="failed", error="no")],
    )


def test_retime_replaces_stale_figures_with_comparable_ones(tmp_path: Path) -> None:
    report = _report(tmp_path)
    timer = host_timing.in_this_process(FakeBackend(), np.zeros((1, 1)))  # type: ignore[arg-type]
    noisy = host_timing.retime(report, tmp_path, timer)
    base, fast, jittery = report.baseline.latency_ms, report.runs[0].latency_ms, report.runs[1].latency_ms
    assert base.method == fast.method == jittery.method == "interleaved"
    assert 2.0 < base.host / fast.host < 4.5  # 0.6 ms vs 0.2 ms of work
    assert jittery.noisy and "ptq_int4" in noisy  # a quarter of its calls take 10x: p90 far above the median
    assert report.runs[2].latency_ms is None  # a failed run has nothing to time
