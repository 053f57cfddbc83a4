"""Fits the estimator's free parameters on published latency measurements of real boards, and validates the fit.

Data (all in this package, so the fit is reproducible offline):

* ``calibration.csv``: one row per published measurement (network, board, clock, threads, precision, runtime,
  latency, the statistic reported, and the source document with its URL). ``use`` says how a row serves:
  ``fit`` rows train and validate the model; ``check`` rows (another runtime class, or an unstated clock) and
  ``bound`` rows (end-to-end figures that only bound the model time from above) are reported, never fitted.
* ``calibration_layers.csv``: the per-layer profiles of those networks, computed once from torchvision and
  keras.applications architectures built with random weights (``weights=None``) by ``python -m
  edgeopt.estimate.calibrate profiles``, so tests and the benchmark need no framework.

The fit minimises the squared log ratio of estimate to measurement (``scipy.optimize.least_squares``); the
validation is leave-one-model-out: every network's rows are predicted by a fit that never saw that network.
A FLOPs-only model (one fitted sustained rate per MAC, scaled by each board's peak, clock and threads) is fitted
and validated the same way as the baseline to beat. ``benchmarks/estimator_calibration.py`` writes the report.
"""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

import numpy as np

from edgeopt.errors import InvalidInput
from edgeopt.estimate.estimator import LayerArrays, Params, get_board, latency_ms, with_clock
from edgeopt.estimate.graph import LayerSpec, ModelProfile, build_profile

MEASUREMENTS_FILE = "calibration.csv"
LAYERS_FILE = "calibration_layers.csv"
FITTED_FILE = "fitted.toml"

# Bounds keep every fitted parameter physically meaningful (a share of peak is at most 1, and so on).
BOUNDS: dict[str, tuple[float, float]] = {
    "eff_conv": (0.05, 1.0),
    "eff_depthwise": (0.01, 1.0),
    "eff_dense": (0.01, 1.0),
    "m_half": (1.0e3, 1.0e8),
    "overhead_us_ghz": (0.1, 50.0),  # a compiled runtime dispatches an operator in microseconds, not milliseconds
    "sublinear_slots": (1.0, 1.0e6),
    "mt_eff": (0.2, 1.0),
    "int8_eff": (0.1, 1.5),
    "cache_speedup": (1.0, 10.0),
    "single_core_bw": (0.2, 1.0),
    "winograd_gain": (1.0, 5.0),
}


@dataclass(frozen=True)
class NetworkSpec:
    """How to build a calibration network with random weights, and how it relates to the measured one."""

    framework: str  # "torch" or "keras"
    builder: str  # torchvision.models / keras.applications function name
    input_hwc: tuple[int, int, int]
    note: str = ""


NETWORKS: dict[str, NetworkSpec] = {
    "resnet18": NetworkSpec("torch", "resnet18", (224, 224, 3)),
    "resnet50": NetworkSpec("torch", "resnet50", (224, 224, 3)),
    "mobilenet_v2": NetworkSpec("torch", "mobilenet_v2", (224, 224, 3)),
    "mobilenet_v1": NetworkSpec("keras", "MobileNet", (224, 224, 3), "keras.applications MobileNet, alpha 1.0"),
    "vgg16": NetworkSpec("torch", "vgg16", (224, 224, 3)),
    "efficientnet_b0": NetworkSpec("torch", "efficientnet_b0", (224, 224, 3)),
    "shufflenet_v2_x1_0": NetworkSpec("torch", "shufflenet_v2_x1_0", (224, 224, 3)),
    "squeezenet1_1": NetworkSpec("torch", "squeezenet1_1", (227, 227, 3), "ncnn benchmarks SqueezeNet v1.1 at 227"),
    "googlenet": NetworkSpec(
        "torch",
        "googlenet",
        (224, 224, 3),
        "torchvision's GoogLeNet (batch norm, 3x3 where the Caffe original has 5x5); ncnn runs the Caffe model",
    ),
    "alexnet": NetworkSpec(
        "torch",
        "alexnet",
        (227, 227, 3),
        "torchvision's single-tower AlexNet; ncnn runs the Caffe model with grouped convolutions",
    ),
    "mobilenet_v3_large": NetworkSpec("torch", "mobilenet_v3_large", (224, 224, 3)),
}


@dataclass(frozen=True)
class Measurement:
    network: str
    board: str
    clock_ghz: float
    threads: int
    precision: str
    runtime: str
    latency_ms: float
    statistic: str
    use: str  # fit | check | bound
    source: str
    url: str
    notes: str = ""


def _data_path(name: str) -> Path:
    return Path(str(resources.files("edgeopt.estimate").joinpath(name)))


def load_measurements(path: Path | None = None) -> list[Measurement]:
    with (path or _data_path(MEASUREMENTS_FILE)).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [
        Measurement(
            network=row["network"],
            board=row["board"],
            clock_ghz=float(row["clock_ghz"]),
            threads=int(row["threads"]),
            precision=row["precision"],
            runtime=row["runtime"],
            latency_ms=float(row["latency_ms"]),
            statistic=row["statistic"],
            use=row["use"],
            source=row["source"],
            url=row["url"],
            notes=row.get("notes", ""),
        )
        for row in rows
    ]


# ---------------------------------------------------------------------------------------------------------------------
# Profiles of the calibration networks (built with random weights; cached as CSV)

_LAYER_FIELDS = [f.name for f in fields(LayerSpec) if f.name != "fused"]


def profile_network(name: str) -> ModelProfile:
    """Builds ``name`` with random weights in its framework and profiles it (imports that framework)."""
    spec = NETWORKS[name]
    if spec.framework == "torch":
        import torchvision

        from edgeopt.estimate.torch_profile import profile_torch

        extra = {"aux_logits": False, "init_weights": False} if spec.builder in ("googlenet", "inception_v3") else {}
        model = getattr(torchvision.models, spec.builder)(weights=None, **extra)
        return profile_torch(model, spec.input_hwc)
    import keras

    from edgeopt.estimate.keras_profile import profile_keras

    model = getattr(keras.applications, spec.builder)(weights=None, input_shape=spec.input_hwc)
    return profile_keras(model)


def _profile_in_subprocess(name: str) -> ModelProfile:
    """Keras networks are profiled in a child process: TensorFlow and torch must not share one.

    See docs/library-notes.md.
    """
    result = subprocess.run(
        [sys.executable, "-m", "edgeopt.estimate.calibrate", "profile-json", name],
        capture_output=True,
        text=True,
        check=True,
    )
    return ModelProfile.from_dict(json.loads(result.stdout.strip().splitlines()[-1]))


def write_layer_cache(profiles: dict[str, ModelProfile], path: Path | None = None) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["network", "net_params", "net_sparsity", "input_h", "input_w", "input_c", *_LAYER_FIELDS])
    for network, profile in sorted(profiles.items()):
        for layer in profile.layers:
            values = []
            for name in _LAYER_FIELDS:
                value = getattr(layer, name)
                if name == "kernel":
                    value = "x".join(str(k) for k in value) if value else ""
                elif name == "inputs":
                    value = "|".join(value)
                values.append(value)
            writer.writerow([network, profile.params, profile.sparsity, *profile.input_shape, *values])
    (path or _data_path(LAYERS_FILE)).write_text(buffer.getvalue(), encoding="utf-8")


def load_profiles(path: Path | None = None) -> dict[str, ModelProfile]:
    """The cached calibration profiles (fusions and activation peaks recomputed by the current graph code)."""
    grouped: dict[str, list[dict[str, str]]] = {}
    with (path or _data_path(LAYERS_FILE)).open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            grouped.setdefault(row["network"], []).append(row)
    profiles = {}
    for network, rows in grouped.items():
        layers = [
            LayerSpec(
                name=row["name"],
                op=row["op"],
                macs=int(row["macs"]),
                params=int(row["params"]),
                input_elems=int(row["input_elems"]),
                output_elems=int(row["output_elems"]),
                kernel=tuple(int(k) for k in row["kernel"].split("x")) if row["kernel"] else None,
                groups=int(row["groups"]),
                in_channels=int(row["in_channels"]),
                out_channels=int(row["out_channels"]),
                weight_elems=int(row["weight_elems"]),
                inputs=tuple(row["inputs"].split("|")) if row["inputs"] else (),
                kind=row["kind"],
            )
            for row in rows
        ]
        first = rows[0]
        shape = (int(first["input_h"]), int(first["input_w"]), int(first["input_c"]))
        profiles[network] = build_profile(
            layers, shape, int(first["net_params"]), float(first["net_sparsity"]), "calibration cache"
        )
    return profiles


def build_cache(names: Iterable[str] | None = None) -> dict[str, ModelProfile]:
    """Profiles every calibration network (torch here, Keras in a child process) and rewrites the cache."""
    profiles = {}
    for name in names or NETWORKS:
        spec = NETWORKS[name]
        profiles[name] = profile_network(name) if spec.framework == "torch" else _profile_in_subprocess(name)
    write_layer_cache(profiles)
    return profiles


# ---------------------------------------------------------------------------------------------------------------------
# Fitting and validation


@dataclass(frozen=True)
class Prepared:
    """A measurement joined with its network's layer arrays and the board at the measured clock."""

    measurement: Measurement
    arrays: LayerArrays
    macs: int

    def estimate(self, params: Params) -> float:
        m = self.measurement
        board = with_clock(get_board(m.board), m.clock_ghz)
        return latency_ms(self.arrays, board, m.precision, m.threads, params, m.runtime)

    def flops_unit(self) -> float:
        """FLOPs-only baseline at a sustained rate of 1 MAC per cycle of peak: MACs / (peak x clock x threads)."""
        m = self.measurement
        board = get_board(m.board)
        return 1000.0 * self.macs / (board.macs_per_cycle(m.precision) * m.clock_ghz * 1e9 * m.threads)


def prepare(measurements: Sequence[Measurement], profiles: dict[str, ModelProfile]) -> list[Prepared]:
    missing = sorted({m.network for m in measurements} - set(profiles))
    if missing:
        raise InvalidInput(
            f"No cached profile for {', '.join(missing)}; run `python -m edgeopt.estimate.calibrate profiles`."
        )
    arrays = {name: LayerArrays.of(profile.layers) for name, profile in profiles.items()}
    return [Prepared(m, arrays[m.network], profiles[m.network].macs) for m in measurements]


def _vector(params: Params, names: Sequence[str]) -> np.ndarray:
    return np.log([getattr(params, name) for name in names])


def fit(rows: Sequence[Prepared], start: Params | None = None) -> Params:
    """Least squares on log(estimate / measurement) over the fitted parameters, within ``BOUNDS``."""
    from scipy.optimize import least_squares

    start = start or Params()
    names = list(BOUNDS)
    measured = np.log([row.measurement.latency_ms for row in rows])

    def build(x: np.ndarray) -> Params:
        return Params(**{**vars(start), **{name: float(math.exp(v)) for name, v in zip(names, x, strict=True)}})

    def residuals(x: np.ndarray) -> np.ndarray:
        params = build(x)
        return np.log([row.estimate(params) for row in rows]) - measured

    low = np.log([BOUNDS[n][0] for n in names])
    high = np.log([BOUNDS[n][1] for n in names])
    x0 = np.clip(_vector(start, names), low + 1e-9, high - 1e-9)
    result = least_squares(residuals, x0, bounds=(low, high), x_scale=1.0, max_nfev=400)
    return build(result.x)


def fit_flops(rows: Sequence[Prepared]) -> float:
    """The FLOPs-only model's one parameter (sustained share of peak), closed form in log space."""
    return float(np.exp(np.mean([math.log(r.flops_unit() / r.measurement.latency_ms) for r in rows])))


@dataclass(frozen=True)
class Validation:
    measurement: Measurement
    estimate_ms: float
    flops_ms: float

    @property
    def ratio(self) -> float:
        return self.estimate_ms / self.measurement.latency_ms

    @property
    def flops_ratio(self) -> float:
        return self.flops_ms / self.measurement.latency_ms


def leave_one_model_out(rows: Sequence[Prepared], start: Params | None = None) -> list[Validation]:
    """Each network's rows predicted by parameters fitted without that network."""
    out: list[Validation] = []
    for network in sorted({row.measurement.network for row in rows}):
        train = [row for row in rows if row.measurement.network != network]
        params = fit(train, start)
        share = fit_flops(train)
        for row in rows:
            if row.measurement.network == network:
                out.append(Validation(row.measurement, row.estimate(params), row.flops_unit() / share))
    return out


def flops_shares(rows: Sequence[Prepared]) -> dict[tuple[str, str], float]:
    """The FLOPs-only baseline fitted separately per (board, precision): the stronger baseline issue 16 asks for."""
    groups: dict[tuple[str, str], list[Prepared]] = {}
    for row in rows:
        groups.setdefault((row.measurement.board, row.measurement.precision), []).append(row)
    return {key: fit_flops(members) for key, members in groups.items()}


@dataclass(frozen=True)
class SourceValidation(Validation):
    held_out: str = ""
    flops_fallback: bool = False  # no training row shared the held-out row's board and precision: global share


def leave_one_source_out(
    rows: Sequence[Prepared], key: Callable[[Measurement], str], start: Params | None = None
) -> list[SourceValidation]:
    """Each source's rows predicted by parameters fitted on the other sources only (``key`` names the source).

    The FLOPs-only baseline is fitted on the same training rows, per board and precision (falling back to one share
    over all training rows where the held-out source is the only one for that board and precision).
    """
    out: list[SourceValidation] = []
    for source in sorted({key(row.measurement) for row in rows}):
        train = [row for row in rows if key(row.measurement) != source]
        if not train:
            continue
        params = fit(train, start)
        shares = flops_shares(train)
        overall = fit_flops(train)
        for row in rows:
            m = row.measurement
            if key(m) != source:
                continue
            share = shares.get((m.board, m.precision))
            out.append(
                SourceValidation(
                    m,
                    row.estimate(params),
                    row.flops_unit() / (share if share is not None else overall),
                    held_out=source,
                    flops_fallback=share is None,
                )
            )
    return out


def error_summary(ratios: Sequence[float]) -> dict[str, float]:
    """Median and worst error factor (max(r, 1/r)), median signed ratio, share within 1.5x and 2x."""
    factors = np.array([max(r, 1.0 / r) for r in ratios])
    return {
        "rows": float(len(factors)),
        "median_factor": float(np.median(factors)),
        "worst_factor": float(np.max(factors)),
        "median_ratio": float(np.median(ratios)),
        "within_1_5": float(np.mean(factors <= 1.5)),
        "within_2": float(np.mean(factors <= 2.0)),
    }


def write_fitted(params: Params, note: str, path: Path | None = None) -> None:
    lines = [
        "# Fitted free parameters of the board estimator. Written by `python -m edgeopt.estimate.calibrate fit`",
        "# from calibration.csv (fit rows) and calibration_layers.csv; see docs/estimator.md for the validation.",
        f"# {note}",
        "",
        "[params]",
        *(f"{name} = {getattr(params, name):.6g}" for name in Params.names()),
        "",
    ]
    (path or _data_path(FITTED_FILE)).write_text("\n".join(lines), encoding="utf-8")


def fit_rows(measurements: Sequence[Measurement] | None = None) -> list[Prepared]:
    measurements = measurements if measurements is not None else load_measurements()
    return prepare([m for m in measurements if m.use == "fit"], load_profiles())


def main(argv: Sequence[str]) -> int:
    command = argv[0] if argv else "fit"
    if command == "profile-json":
        print(json.dumps(profile_network(argv[1]).to_dict()))
        return 0
    if command == "profiles":
        for name, profile in build_cache(argv[1:] or None).items():
            print(f"{name}: {profile.params:,} params, {profile.macs / 1e9:.3f} GMACs, {len(profile.layers)} ops")
        return 0
    if command == "fit":
        rows = fit_rows()
        params = fit(rows)
        summary = error_summary([row.estimate(params) / row.measurement.latency_ms for row in rows])
        note = (
            f"In-sample on {len(rows)} rows: median error x{summary['median_factor']:.3f}, "
            f"worst x{summary['worst_factor']:.2f}"
        )
        write_fitted(params, note)
        print(note)
        print(params)
        return 0
    print("usage: python -m edgeopt.estimate.calibrate [profiles [NAME...] | fit | profile-json NAME]")
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
