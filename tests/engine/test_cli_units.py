"""Accuracy limits on the command line read like the web form's: percentage points with a %, or a fraction."""

from __future__ import annotations

import re

import pytest

from edgeopt.cli import parse_accuracy, parse_duration
from edgeopt.errors import InvalidInput


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2%", 0.02), ("0.5 %", 0.005), ("0.02", 0.02), ("0", 0.0), ("100%", 1.0), ("90%", 0.9), (None, None)],
)
def test_percentages_and_fractions_mean_the_same_points(text: str | None, expected: float | None) -> None:
    value = parse_accuracy("--max-accuracy-drop", text)
    assert value == pytest.approx(expected) if expected is not None else value is None


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("1", "write 1% for 1 percentage points"),
        ("90", "write 90%"),
        ("-0.1", "cannot be negative"),
        ("150%", "cannot exceed 100%"),
        ("two", "percentage like 2%"),
    ],
)
def test_ambiguous_or_impossible_figures_are_refused_with_the_unit(text: str, needle: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(needle)):
        parse_accuracy("--max-accuracy-drop", text)


def test_summary_table_names_techniques_by_title_and_signs_losses(capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    from edgeopt.cli import _print_summary
    from edgeopt.report import BaselineResult, ExperimentInfo, LatencyStats, Recommendation, Report, RunResult

    latency = LatencyStats(host=1.0, host_p90=1.1)
    report = Report(
        experiment=ExperimentInfo(id="x", framework="pytorch", dataset="digits", device="rpi4", goal="balanced"),
        baseline=BaselineResult(
            accuracy=0.95, size_bytes=4_000_000, compressed_size_bytes=3_000_000, params=1, flops=1,
            latency_ms=latency, artifact="baseline.pte",
        ),
        runs=[
            RunResult(
                technique="ptq_int8", status="completed", accuracy=0.93, accuracy_drop=0.02, size_bytes=1_000_000,
                compression_ratio=4.0, latency_ms=latency,
            ),
            RunResult(technique="distillation", status="failed", error="no"),
        ],
        recommendation=Recommendation(technique="ptq_int8", goal="balanced", reasoning="It is smallest."),
    )
    _print_summary(report, "rpi4", Path("out"))
    printed = capsys.readouterr().out
    assert "Original model" in printed and "95.0 %" in printed
    assert "-2.0 pt" in printed and "4.0x" in printed and "failed" in printed
    assert "ptq_int8" not in printed  # titles, not internal ids
    assert "It is smallest." in printed


@pytest.mark.parametrize("epochs", [-1, 101])
def test_epochs_outside_the_one_limit_are_refused_by_name(epochs: int, tmp_path: object) -> None:
    """The CLI, the API and the technique configs share one bound (edgeopt.techniques.MAX_EPOCHS)."""
    from pathlib import Path

    from edgeopt.pipeline import ExperimentSpec
    from edgeopt.techniques import MAX_EPOCHS

    spec = ExperimentSpec(
        framework="pytorch", dataset="digits", device="rpi4", out_dir=Path(str(tmp_path)), arch="resnet18",
        epochs=epochs,
    )
    with pytest.raises(InvalidInput, match=re.escape(f"--epochs must be from 0 to {MAX_EPOCHS}")):
        spec.validate()


@pytest.mark.parametrize(("text", "seconds"), [("300", 300.0), ("300s", 300.0), ("5m", 300.0), ("1.5h", 5400.0)])
def test_time_budget_reads_seconds_minutes_and_hours(text: str, seconds: float) -> None:
    assert parse_duration("--time-budget", text) == seconds


@pytest.mark.parametrize("text", ["0", "-5m", "soon", "inf"])
def test_time_budget_refuses_what_is_not_a_positive_time(text: str) -> None:
    with pytest.raises(InvalidInput, match="--time-budget"):
        parse_duration("--time-budget", text)
