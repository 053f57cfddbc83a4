"""The report's host latencies are taken in a fresh process that loads only the artifacts (issue 16)."""

from __future__ import annotations

import logging

import pytest

from edgeopt import host_timing
from edgeopt.data.dataset import Dataset
from edgeopt.techniques import TechniqueOutput


def test_artifacts_are_timed_in_a_fresh_process(
    torch_baseline: TechniqueOutput, digits32: Dataset, caplog: pytest.LogCaptureFixture
) -> None:
    timer = host_timing.in_fresh_process("pytorch", digits32.x_test[:1], threads=1)
    artifacts = {"baseline": (torch_baseline.artifact, "fp32"), "ptq_int8": (torch_baseline.artifact, "fp32")}
    with caplog.at_level(logging.WARNING, logger="edgeopt.host_timing"):
        timed = timer(artifacts, 10, 5)
    assert set(timed) == {"baseline", "ptq_int8"}
    assert all(stats.host > 0 and stats.host_p90 >= stats.host for stats in timed.values())
    assert not caplog.records  # the child answered: no fallback to the experiment's process


def test_a_failed_child_falls_back_to_timing_here_and_says_so(
    torch_baseline: TechniqueOutput, digits32: Dataset, caplog: pytest.LogCaptureFixture, monkeypatch
) -> None:
    monkeypatch.setattr(host_timing.sys, "executable", "/bin/false")  # the child exits 1 at once
    timer = host_timing.in_fresh_process("pytorch", digits32.x_test[:1], threads=1)
    with caplog.at_level(logging.WARNING, logger="edgeopt.host_timing"):
        timed = timer({"baseline": (torch_baseline.artifact, "fp32")}, 10, 5)
    assert timed["baseline"].host > 0
    assert any("fresh process failed" in record.getMessage() for record in caplog.records)
