"""Calibration data, cached profiles and the fit, without any framework (profiles come from the CSV cache)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgeopt.catalog import DEVICE_NAMES
from edgeopt.estimate import calibrate
from edgeopt.estimate.estimator import PRECISIONS, Params, estimate_device, get_board, load_params
from edgeopt.estimate.graph import ModelProfile


@pytest.fixture(scope="session")
def profiles() -> dict[str, ModelProfile]:
    return calibrate.load_profiles()


@pytest.fixture(scope="session")
def measurements() -> list[calibrate.Measurement]:
    return calibrate.load_measurements()


def test_every_row_has_a_source_and_known_names(
    measurements: list[calibrate.Measurement], profiles: dict[str, ModelProfile]
) -> None:
    assert len(measurements) >= 90
    for m in measurements:
        assert m.source and m.url.startswith("https://"), m
        assert m.use in ("fit", "check", "bound")
        assert m.board in DEVICE_NAMES
        if m.precision == "fp16":  # ncnn computes FP32 models in FP16 only on cores with FP16 arithmetic
            board = get_board(m.board)
            assert m.runtime == "ncnn" and board.fp16_macs_per_cycle > board.fp32_macs_per_cycle, m
        else:
            assert m.precision in PRECISIONS, m
        assert m.network in profiles and m.network in calibrate.NETWORKS
        assert m.latency_ms > 0 and 1 <= m.threads <= 4
    assert {m.board for m in measurements if m.use == "fit"} == set(DEVICE_NAMES)  # every board has fitted rows


def test_cached_profiles_match_published_counts(profiles: dict[str, ModelProfile]) -> None:
    expected = {  # torchvision / keras.applications model cards: parameters, GMACs at the listed input
        "resnet18": (11.69e6, 1.81e9),
        "resnet50": (25.56e6, 4.09e9),
        "mobilenet_v2": (3.50e6, 0.30e9),
        "vgg16": (138.36e6, 15.47e9),
        "mobilenet_v1": (4.25e6, 0.569e9),
    }
    for name, (params, macs) in expected.items():
        assert profiles[name].params == pytest.approx(params, rel=0.01), name
        assert profiles[name].macs == pytest.approx(macs, rel=0.01), name


def test_fitted_parameters_are_the_ones_in_use() -> None:
    fitted = load_params()
    assert fitted != Params()  # fitted.toml exists and differs from the preliminary defaults
    for name, (low, high) in calibrate.BOUNDS.items():
        assert low * 0.999 <= getattr(fitted, name) <= high * 1.001, name


def test_in_sample_error_beats_flops_only(measurements: list[calibrate.Measurement]) -> None:
    rows = calibrate.fit_rows(measurements)
    params = load_params()
    model = calibrate.error_summary([r.estimate(params) / r.measurement.latency_ms for r in rows])
    share = calibrate.fit_flops(rows)
    flops = calibrate.error_summary([r.flops_unit() / share / r.measurement.latency_ms for r in rows])
    assert model["median_factor"] <= 1.25 and model["worst_factor"] <= 2.0
    assert flops["median_factor"] > model["median_factor"] and flops["worst_factor"] > model["worst_factor"]


def test_fit_recovers_known_parameters_from_synthetic_measurements(
    measurements: list[calibrate.Measurement], profiles: dict[str, ModelProfile]
) -> None:
    truth = dataclasses.replace(load_params(), eff_conv=0.5, overhead_us_ghz=20.0, mt_eff=0.7, int8_eff=0.9)
    rows = calibrate.prepare([m for m in measurements if m.use == "fit"], profiles)
    synthetic = [
        calibrate.Prepared(dataclasses.replace(r.measurement, latency_ms=r.estimate(truth)), r.arrays, r.macs)
        for r in rows
    ]
    fitted = calibrate.fit(synthetic, start=Params())
    errors = [f.estimate(fitted) / f.measurement.latency_ms for f in synthetic]
    assert max(max(e, 1 / e) for e in errors) < 1.02
    assert fitted.mt_eff == pytest.approx(0.7, rel=0.05)
    assert fitted.int8_eff == pytest.approx(0.9, rel=0.05)


def test_pi5_estimate_respects_the_published_end_to_end_bound(
    measurements: list[calibrate.Measurement], profiles: dict[str, ModelProfile]
) -> None:
    bounds = calibrate.prepare([m for m in measurements if m.use == "bound"], profiles)
    assert bounds
    for row in bounds:
        assert row.estimate(load_params()) < row.measurement.latency_ms


def test_int8_faster_than_fp32_where_the_published_data_says_so(
    measurements: list[calibrate.Measurement], profiles: dict[str, ModelProfile]
) -> None:
    fp32 = {(m.network, m.board, m.clock_ghz, m.threads): m.latency_ms for m in measurements if m.precision == "fp32"}
    pairs = 0
    for m in measurements:
        key = (m.network, m.board, m.clock_ghz, m.threads)
        if m.precision == "int8" and m.runtime == "ncnn" and key in fp32 and m.latency_ms < fp32[key]:
            pairs += 1
            int8 = estimate_device(profiles[m.network], m.board, "int8", threads=m.threads)
            float32 = estimate_device(profiles[m.network], m.board, "fp32", threads=m.threads)
            assert int8.latency_ms < float32.latency_ms, key
    assert pairs >= 20


def test_board_ordering_and_sparsity_on_every_calibration_network(profiles: dict[str, ModelProfile]) -> None:
    for name, profile in profiles.items():
        for precision in ("fp32", "int8"):
            ms = {d: estimate_device(profile, d, precision).latency_ms for d in DEVICE_NAMES}
            assert ms["rpi5"] < ms["rpi4"] < ms["rpi_zero_2w"], (name, precision)
        sparse = dataclasses.replace(profile, sparsity=0.9)
        assert estimate_device(sparse, "rpi4", "fp32") == estimate_device(profile, "rpi4", "fp32")


def test_error_summary_known_answer() -> None:
    summary = calibrate.error_summary([1.0, 2.0, 0.5, 1.2])
    assert summary["median_factor"] == pytest.approx(np.median([1.0, 2.0, 2.0, 1.2]))
    assert summary["worst_factor"] == 2.0
    assert summary["within_1_5"] == 0.5 and summary["within_2"] == 1.0
