"""Latency, memory and power of a profiled model on a Raspberry Pi board, without the board.

The latency model is a per-operator roofline of an XNNPACK runtime (ExecuTorch ``.pte`` or LiteRT ``.tflite``):

    t(op) = max(compute time, memory time) + fixed overhead / clock + sublinear_slots x sqrt(work) / FP32 peak

* compute time = MACs / (per-core peak x operator efficiency x size factor x thread speed-up). Peaks come from
  ``devices.toml`` (NEON width and issue rate, dot-product for INT8 on the Cortex-A76). Efficiencies differ by
  operator kind: depthwise convolutions do few MACs per byte moved and reach a small share of peak; the
  size factor ``m / (m + m_half)`` (m = MACs per thread) models small layers that never fill the pipelines.
* memory time = bytes read and written / sustained bandwidth (one core draws only part of it; cache bandwidth
  when the operator's working set fits in the last-level cache). Batch-1 dense layers and elementwise operators
  are memory-bound.
* per-operator costs: a small fixed dispatch overhead, plus MAC slots wasted in proportion to the square root of
  the operator's work (max of MACs and activation elements), which stands for thread partitioning, tile edges and
  pipeline warm-up; charged at the core's FP32 peak rate whatever the precision, it matters for mid-sized layers
  and vanishes for tiny ones.
* operators that XNNPACK folds away (batch norm, ReLU/ReLU6 clamps) cost nothing; see ``graph.mark_fusions``.

The free parameters (efficiencies, per-operator costs, multi-thread efficiency, INT8 kernel efficiency, bandwidth
shares) are fitted on published board measurements by ``calibrate.py`` and stored in ``fitted.toml``; docs/estimator.md
reports the fit's error. Unstructured sparsity is deliberately ignored: XNNPACK runs dense kernels, so zeros cost
the same as any other weight.

INT4 is not a faster INT8. EdgeOpt's INT4 artifacts run XNNPACK's 4-bit-weight GEMMs with dynamic activation
quantization (qd8-f32-qc4w on ExecuTorch, dynamic-range kernels on LiteRT): weights stay packed two per byte, but
activations travel between operators in FP32, each operator quantizes its input on the fly (a pass over it: read 4
bytes, write 1), and the kernels spend extra instructions unpacking nibbles (``int4_kernel_share`` of the INT8
kernels' efficiency). No published Raspberry Pi INT4 measurement was found to fit that share, so it is set from
this host's XNNPACK, where INT4 artifacts ran 1.8x to 2.3x slower than INT8 on the demo CNN, ResNet18 and
MobileNetV2 (benchmarks/results/pytorch.md); docs/estimator.md says so.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from edgeopt.catalog import DEVICE_NAMES
from edgeopt.errors import InvalidInput
from edgeopt.estimate.graph import LayerSpec, ModelProfile
from edgeopt.report import DeviceEstimate

PRECISIONS: tuple[str, ...] = ("fp32", "int8", "int4")
RUNTIMES: tuple[str, ...] = ("xnnpack",)
WINOGRAD = frozenset({"ncnn"})  # calibration-only runtimes that run 3x3 stride-1 convolutions with Winograd
MB = 1_000_000
MIB = 1 << 20


@dataclass(frozen=True)
class Board:
    """The numbers of one board the model uses (all sourced in devices.toml)."""

    name: str
    title: str
    cores: int
    clock_ghz: float
    dotprod: bool
    fp32_macs_per_cycle: float
    int8_macs_per_cycle: float
    fp16_macs_per_cycle: float
    mem_bandwidth_gbs: float
    llc_kb: int
    ram_mib: int
    os_reserved_mib: int
    idle_w: float
    loaded_w: float

    @property
    def budget_mb(self) -> float:
        """Memory left for the model process after the OS, in MB (10^6 bytes)."""
        return (self.ram_mib - self.os_reserved_mib) * MIB / MB

    def macs_per_cycle(self, precision: str) -> float:
        if precision == "fp32":
            return self.fp32_macs_per_cycle
        if precision == "fp16":  # calibration only: ncnn computes FP32 models in FP16 where the core has it
            return self.fp16_macs_per_cycle
        return self.int8_macs_per_cycle


@dataclass(frozen=True)
class Params:
    """The estimator's free parameters; defaults are the preliminary values used before any fit."""

    eff_conv: float = 0.55  # share of peak a large convolution reaches
    eff_depthwise: float = 0.15  # share of peak a large depthwise convolution reaches
    eff_dense: float = 0.5  # share of peak of a fully connected layer when compute-bound
    m_half: float = 3.0e5  # MACs per thread at which a layer reaches half its operator efficiency
    overhead_us_ghz: float = 5.0  # fixed per-operator cost in microseconds at 1 GHz (scales with 1/clock)
    mt_eff: float = 0.8  # speed-up per extra thread: speed-up(n) = 1 + (n - 1) * mt_eff
    int8_eff: float = 0.7  # share of the INT8 peak XNNPACK's QS8 kernels reach, relative to FP32's share
    # Share of the INT8 kernels' efficiency that 4-bit-weight GEMMs reach (nibble unpacking); not fitted: no published
    # board rows exist; set from INT4 vs INT8 latency on this host (module docstring).
    int4_kernel_share: float = 0.5
    cache_speedup: float = 3.0  # bandwidth multiplier when an operator's working set fits in the last-level cache
    single_core_bw: float = 0.5  # share of the board's sustained bandwidth one core can draw alone
    sublinear_slots: float = 1000.0  # wasted MAC slots per sqrt(work) of an operator: partitioning, tile edges
    winograd_gain: float = 2.0  # MAC reduction of Winograd 3x3 kernels; only runtimes that use them (not XNNPACK)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True)
class Runtime:
    name: str
    overhead_mb: float


def _read_toml(name: str) -> dict[str, Any]:
    return tomllib.loads(resources.files("edgeopt.estimate").joinpath(name).read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def load_boards() -> dict[str, Board]:
    data = _read_toml("devices.toml")["boards"]
    wanted = {f.name for f in fields(Board)} - {"name"}
    return {name: Board(name=name, **{k: v for k, v in spec.items() if k in wanted}) for name, spec in data.items()}


@lru_cache(maxsize=1)
def load_runtimes() -> dict[str, Runtime]:
    data = _read_toml("devices.toml")["runtimes"]
    return {name: Runtime(name=name, overhead_mb=float(spec["overhead_mb"])) for name, spec in data.items()}


@lru_cache(maxsize=1)
def load_params() -> Params:
    """Fitted parameters from fitted.toml; the preliminary defaults when no fit has been stored yet."""
    try:
        data = _read_toml("fitted.toml").get("params", {})
    except FileNotFoundError:
        return Params()
    return Params(**{k: float(v) for k, v in data.items() if k in Params.names()})


def get_board(device: str) -> Board:
    boards = load_boards()
    if device not in boards:
        raise InvalidInput(f"Unknown device {device!r}; choose one of {', '.join(DEVICE_NAMES)}.", field="device")
    return boards[device]


def _check(precision: str, runtime: str) -> None:
    if precision not in PRECISIONS:
        raise InvalidInput(
            f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.", field="precision"
        )
    if runtime not in RUNTIMES:
        raise InvalidInput(f"Unknown runtime {runtime!r}; the estimator models {', '.join(RUNTIMES)}.", field="runtime")


def _threads(board: Board, threads: int | None) -> int:
    if threads is None:
        return board.cores
    if not 1 <= int(threads) <= board.cores:
        raise InvalidInput(
            f"threads={threads} is not possible on {board.title}: it has {board.cores} cores; pass 1..{board.cores}.",
            field="threads",
        )
    return int(threads)


def _act_bytes(precision: str) -> float:
    """Bytes per activation element between operators: INT4 artifacts keep FP32 activations (module docstring)."""
    return {"int8": 1.0, "fp16": 2.0}.get(precision, 4.0)


def _weight_bytes(precision: str) -> float:
    """Bytes per weight at run time: INT4 stays packed two per byte in the 4-bit GEMM kernels."""
    return {"fp32": 4.0, "fp16": 2.0, "int8": 1.0, "int4": 0.5}[precision]


# Dynamic activation quantization in INT4 kernels: about half of an operator's activation elements are its input,
# read as FP32 (4 bytes) and written as INT8 (1 byte) before the GEMM runs.
DYNAMIC_QUANT_BYTES_PER_ACT = 0.5 * (4.0 + 1.0)


@dataclass(frozen=True)
class LayerArrays:
    """A profile's operators as numpy columns, so a latency is one vectorised expression (and a fit is fast)."""

    macs: np.ndarray
    act_elems: np.ndarray  # input + output activation elements
    weight_elems: np.ndarray
    depthwise: np.ndarray  # bool
    dense: np.ndarray  # bool
    winograd: np.ndarray  # bool: 3x3 stride-1 dense convolution (Winograd-eligible in runtimes that have it)
    active: np.ndarray  # bool: False for operators the runtime folds away

    @classmethod
    def of(cls, layers: Sequence[LayerSpec]) -> LayerArrays:
        return cls(
            macs=np.array([layer.macs for layer in layers], dtype=np.float64),
            act_elems=np.array([layer.input_elems + layer.output_elems for layer in layers], dtype=np.float64),
            weight_elems=np.array([layer.weight_elems for layer in layers], dtype=np.float64),
            depthwise=np.array([layer.op == "depthwise_conv" for layer in layers], dtype=bool),
            dense=np.array([layer.op == "dense" for layer in layers], dtype=bool),
            winograd=np.array([_winograd_eligible(layer) for layer in layers], dtype=bool),
            active=np.array([not layer.fused for layer in layers], dtype=bool),
        )


def _winograd_eligible(layer: LayerSpec) -> bool:
    if layer.op != "conv" or layer.kernel != (3, 3) or layer.groups != 1 or not layer.in_channels:
        return False
    return layer.input_elems * layer.out_channels == layer.output_elems * layer.in_channels  # same H x W: stride 1


def layer_times_s(
    arrays: LayerArrays, board: Board, precision: str, threads: int, params: Params, runtime: str = "xnnpack"
) -> np.ndarray:
    """Seconds each operator takes on ``board`` (0 for operators the runtime folds away).

    ``runtime`` other than XNNPACK exists only for calibration rows measured with another runtime: ncnn runs 3x3
    stride-1 convolutions with Winograd transforms (fewer multiplications), which XNNPACK does not. Likewise
    ``precision="fp16"`` is only for ncnn rows on cores with FP16 arithmetic (the Pi 5's A76), where ncnn computes
    FP32 models in FP16: the board's FP16 peak, FP32 operator efficiencies, 2 bytes per value.
    """
    moved = arrays.act_elems * _act_bytes(precision) + arrays.weight_elems * _weight_bytes(precision)
    if precision == "int4":
        moved = moved + np.where(arrays.macs > 0, arrays.act_elems * DYNAMIC_QUANT_BYTES_PER_ACT, 0.0)
    in_cache = moved <= board.llc_kb * 1024
    share = params.single_core_bw + (1.0 - params.single_core_bw) * (threads - 1) / max(board.cores - 1, 1)
    bandwidth = board.mem_bandwidth_gbs * 1e9 * share * np.where(in_cache, params.cache_speedup, 1.0)
    memory = moved / bandwidth
    efficiency = np.where(
        arrays.depthwise, params.eff_depthwise, np.where(arrays.dense, params.eff_dense, params.eff_conv)
    )
    if precision in ("int8", "int4"):
        efficiency = efficiency * params.int8_eff
    if precision == "int4":
        efficiency = efficiency * params.int4_kernel_share
    macs = (
        np.where(arrays.winograd, arrays.macs / params.winograd_gain, arrays.macs)
        if runtime in WINOGRAD
        else arrays.macs
    )
    per_thread = macs / threads
    efficiency = efficiency * per_thread / (per_thread + params.m_half)
    speedup = 1.0 + (threads - 1) * params.mt_eff
    peak = board.macs_per_cycle(precision) * board.clock_ghz * 1e9
    with np.errstate(divide="ignore", invalid="ignore"):
        compute = np.where(macs > 0, macs / (peak * efficiency * speedup), 0.0)
    work = np.maximum(macs, arrays.act_elems)
    # Wasted slots are float vector slots: FP32 ones, or FP16 ones (twice the lanes) where the kernels compute in FP16.
    float_peak = board.macs_per_cycle("fp16" if precision == "fp16" else "fp32") * board.clock_ghz * 1e9
    overhead = params.overhead_us_ghz * 1e-6 / board.clock_ghz + params.sublinear_slots * np.sqrt(work) / float_peak
    return np.where(arrays.active, np.maximum(compute, memory) + overhead, 0.0)


def layer_time_s(layer: LayerSpec, board: Board, precision: str, threads: int, params: Params) -> float:
    """Seconds one operator takes on ``board`` (0 for operators the runtime folds away)."""
    return float(layer_times_s(LayerArrays.of([layer]), board, precision, threads, params)[0])


def latency_ms(
    profile: ModelProfile | LayerArrays,
    board: Board,
    precision: str,
    threads: int,
    params: Params | None = None,
    runtime: str = "xnnpack",
) -> float:
    arrays = profile if isinstance(profile, LayerArrays) else LayerArrays.of(profile.layers)
    return 1000.0 * float(layer_times_s(arrays, board, precision, threads, params or load_params(), runtime).sum())


def memory_mb(profile: ModelProfile, precision: str, runtime: str = "xnnpack") -> float:
    """Weights at run-time precision + peak live activations + runtime overhead, in MB (10^6 bytes).

    Biases stay 32-bit in every precision (INT8 kernels accumulate in INT32), so only weight tensors shrink.
    """
    weights = profile.weight_elems * _weight_bytes(precision) + max(profile.params - profile.weight_elems, 0) * 4
    activations = profile.peak_activation_elems * _act_bytes(precision)
    return (weights + activations) / MB + load_runtimes()[runtime].overhead_mb


def estimate_on_board(
    profile: ModelProfile,
    board: Board,
    precision: str,
    runtime: str = "xnnpack",
    threads: int | None = None,
    params: Params | None = None,
) -> DeviceEstimate:
    _check(precision, runtime)
    used = _threads(board, threads)
    latency = latency_ms(profile, board, precision, used, params)
    memory = memory_mb(profile, precision, runtime)
    utilisation = used / board.cores  # the runtime keeps its threads busy for the whole inference
    power = board.idle_w + (board.loaded_w - board.idle_w) * utilisation
    height, width, channels = profile.input_shape
    return DeviceEstimate(
        latency_ms=round(latency, 4),
        memory_mb=round(memory, 3),
        power_w=round(power, 3),
        energy_mj=round(power * latency, 4),
        fits=memory <= board.budget_mb,
        runtime=runtime,
        threads=used,
        precision=precision,
        input_shape=[1, height, width, channels],
    )


def estimate_device(
    profile: ModelProfile, device: str, precision: str, runtime: str = "xnnpack", threads: int | None = None
) -> DeviceEstimate:
    """Latency, peak memory, power and energy of one inference (batch 1) on ``device``."""
    return estimate_on_board(profile, get_board(device), precision, runtime, threads)


def estimate_all(
    profile: ModelProfile, precision: str, runtime: str = "xnnpack", threads: int | None = None
) -> dict[str, DeviceEstimate]:
    """``estimate_device`` for every board in the catalog, in catalog order."""
    return {device: estimate_device(profile, device, precision, runtime, threads) for device in DEVICE_NAMES}


def with_clock(board: Board, clock_ghz: float | None) -> Board:
    return (
        board if clock_ghz is None or math.isclose(clock_ghz, board.clock_ghz) else replace(board, clock_ghz=clock_ghz)
    )
