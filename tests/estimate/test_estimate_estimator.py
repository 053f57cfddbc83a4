"""Board estimates: orderings the published data shows, memory budget, sparsity, and input errors."""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from edgeopt.catalog import DEVICE_NAMES  # noqa: E402
from edgeopt.errors import InvalidInput  # noqa: E402
from edgeopt.estimate.estimator import (  # noqa: E402
    estimate_all,
    estimate_device,
    get_board,
    layer_time_s,
    load_params,
)
from edgeopt.estimate.graph import ModelProfile  # noqa: E402
from edgeopt.estimate.torch_profile import profile_torch  # noqa: E402


@pytest.fixture(scope="session")
def profiles() -> dict[str, ModelProfile]:
    return {
        name: profile_torch(getattr(torchvision.models, name)(weights=None), (224, 224, 3))
        for name in ("resnet18", "mobilenet_v2", "vgg16")
    }


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_pi5_faster_than_pi4_faster_than_zero(profiles: dict[str, ModelProfile], name: str, precision: str) -> None:
    estimates = estimate_all(profiles[name], precision)
    assert list(estimates) == list(DEVICE_NAMES)
    assert estimates["rpi5"].latency_ms < estimates["rpi4"].latency_ms < estimates["rpi_zero_2w"].latency_ms


@pytest.mark.parametrize("device", DEVICE_NAMES)
def test_int8_faster_than_fp32(profiles: dict[str, ModelProfile], device: str) -> None:
    fp32 = estimate_device(profiles["resnet18"], device, "fp32")
    int8 = estimate_device(profiles["resnet18"], device, "int8")
    assert int8.latency_ms < fp32.latency_ms


def test_int8_gains_most_with_dot_product(profiles: dict[str, ModelProfile]) -> None:
    gain = {
        device: estimate_device(profiles["resnet18"], device, "fp32").latency_ms
        / estimate_device(profiles["resnet18"], device, "int8").latency_ms
        for device in DEVICE_NAMES
    }
    assert get_board("rpi5").dotprod and not get_board("rpi4").dotprod
    assert gain["rpi5"] > gain["rpi4"]
    assert gain["rpi5"] > 1.5


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_int4_estimates_follow_its_kernels(profiles: dict[str, ModelProfile], name: str) -> None:
    """4-bit weight GEMMs with FP32 activations and on-the-fly quantization: smaller than INT8, not faster."""
    for device in DEVICE_NAMES:
        fp32 = estimate_device(profiles[name], device, "fp32")
        int8 = estimate_device(profiles[name], device, "int8")
        int4 = estimate_device(profiles[name], device, "int4")
        assert int8.latency_ms < int4.latency_ms, device
        assert int4.precision == "int4" and int8.precision == "int8"
        weights_mb = profiles[name].weight_elems / 1e6
        # Weights half of INT8's, activations FP32 (four times INT8's): memory sits between the two.
        assert int4.memory_mb < fp32.memory_mb and int4.memory_mb != int8.memory_mb
        assert fp32.memory_mb - int4.memory_mb > 3 * weights_mb


def test_every_estimate_states_its_assumptions(profiles: dict[str, ModelProfile]) -> None:
    estimate = estimate_device(profiles["resnet18"], "rpi5", "int8", threads=2)
    assert estimate.input_shape == [1, 224, 224, 3]
    assert (estimate.precision, estimate.runtime, estimate.threads) == ("int8", "xnnpack", 2)


def test_unstructured_sparsity_gives_identical_estimates(profiles: dict[str, ModelProfile]) -> None:
    sparse = dataclasses.replace(profiles["resnet18"], sparsity=0.5)
    for precision in ("fp32", "int8"):
        assert estimate_all(sparse, precision) == estimate_all(profiles["resnet18"], precision)


def test_fits_never_above_board_budget(profiles: dict[str, ModelProfile]) -> None:
    seen_not_fitting = False
    for profile in profiles.values():
        for precision in ("fp32", "int8"):
            for device, estimate in estimate_all(profile, precision).items():
                board = get_board(device)
                if estimate.fits:
                    assert estimate.memory_mb <= board.budget_mb < board.ram_mib * 1.05
                else:
                    seen_not_fitting = True
    # VGG-16 in FP32 (553 MB of weights) cannot fit the Zero 2 W's 512 MB.
    assert not estimate_device(profiles["vgg16"], "rpi_zero_2w", "fp32").fits
    assert seen_not_fitting


def test_memory_counts_weights_at_runtime_precision(profiles: dict[str, ModelProfile]) -> None:
    fp32 = estimate_device(profiles["vgg16"], "rpi4", "fp32").memory_mb
    int8 = estimate_device(profiles["vgg16"], "rpi4", "int8").memory_mb
    assert fp32 > 138e6 * 4 / 1e6  # 138 M weights at 4 bytes
    assert int8 == pytest.approx(fp32 / 4, rel=0.1)


def test_depthwise_runs_far_below_peak(profiles: dict[str, ModelProfile]) -> None:
    board, params = get_board("rpi4"), load_params()
    layers = profiles["mobilenet_v2"].layers
    rate = {}
    for op in ("conv", "depthwise_conv"):
        chosen = [layer for layer in layers if layer.op == op]
        seconds = sum(layer_time_s(layer, board, "fp32", 4, params) for layer in chosen)
        rate[op] = sum(layer.macs for layer in chosen) / seconds
    peak = board.fp32_macs_per_cycle * board.clock_ghz * 1e9 * board.cores
    assert rate["depthwise_conv"] < 0.5 * rate["conv"]
    assert rate["depthwise_conv"] < 0.25 * peak


def test_threads_power_and_energy(profiles: dict[str, ModelProfile]) -> None:
    one = estimate_device(profiles["resnet18"], "rpi4", "fp32", threads=1)
    four = estimate_device(profiles["resnet18"], "rpi4", "fp32", threads=4)
    assert four.latency_ms < one.latency_ms < 4 * four.latency_ms
    assert one.power_w < four.power_w
    assert (one.threads, four.threads) == (1, 4)
    board = get_board("rpi4")
    assert board.idle_w < one.power_w < four.power_w <= board.loaded_w
    assert four.energy_mj == pytest.approx(four.power_w * four.latency_ms, rel=1e-3)


def test_bad_arguments_are_clear_errors(profiles: dict[str, ModelProfile]) -> None:
    profile = profiles["resnet18"]
    with pytest.raises(InvalidInput, match="rpi4"):
        estimate_device(profile, "jetson", "fp32")
    with pytest.raises(InvalidInput, match="precision"):
        estimate_device(profile, "rpi4", "fp16")
    with pytest.raises(InvalidInput, match="4 cores"):
        estimate_device(profile, "rpi4", "fp32", threads=8)
    with pytest.raises(InvalidInput, match="runtime"):
        estimate_device(profile, "rpi4", "fp32", runtime="onnx")
