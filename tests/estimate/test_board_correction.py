"""Estimates corrected by the user's own board measurements (edgeopt.board_correction)."""

from __future__ import annotations

import pytest

from edgeopt.board_correction import ALL_PRECISIONS, MeasuredEstimate, factor_for, fit_correction


def test_no_measurement_means_no_correction() -> None:
    assert fit_correction("rpi5", []) is None


def test_one_measurement_sets_the_factor_and_claims_no_corrected_error() -> None:
    correction = fit_correction("rpi5", [MeasuredEstimate(estimated_ms=8.0, measured_ms=2.0, precision="int8")])
    assert correction is not None
    assert correction.factors["int8"] == pytest.approx(0.25)
    assert correction.median_error == pytest.approx(4.0)  # 4x too slow, reported as a factor >= 1
    assert correction.corrected_median_error is None  # its own factor predicts it exactly: no honest figure


def test_the_error_after_correction_is_leave_one_out_and_a_throttled_outlier_does_not_drag_the_factor() -> None:
    pairs = [MeasuredEstimate(10.0, m, "int8") for m in (4.0, 5.0, 6.0, 40.0)]  # the last one throttled
    correction = fit_correction("rpi5", pairs)
    assert correction is not None
    assert correction.factors["int8"] == pytest.approx((0.5 * 0.6) ** 0.5)  # geometric median of 0.4, 0.5, 0.6, 4
    assert correction.median_error == pytest.approx(2.25)  # errors 2.5, 2.0, 1.67 and 4.0
    assert correction.corrected_median_error is not None
    assert correction.corrected_median_error < correction.median_error
    assert correction.corrected_worst_error is not None and correction.corrected_worst_error > 5  # the outlier stays


def test_each_precision_gets_its_own_factor_and_an_unmeasured_one_the_overall_median() -> None:
    pairs = [MeasuredEstimate(4.0, 2.0, "int8"), MeasuredEstimate(4.0, 2.0, "int8"), MeasuredEstimate(2.0, 4.0, "fp32")]
    correction = fit_correction("rpi4", pairs)
    assert correction is not None
    assert factor_for(correction, "int8") == pytest.approx(0.5)
    assert factor_for(correction, "fp32") == pytest.approx(2.0)
    assert factor_for(correction, "int4") == correction.factors[ALL_PRECISIONS] == pytest.approx(0.5)


def test_unusable_figures_are_ignored() -> None:
    assert fit_correction("rpi4", [MeasuredEstimate(0.0, 2.0, "int8"), MeasuredEstimate(3.0, 0.0, "int8")]) is None
