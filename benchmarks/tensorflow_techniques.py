"""Benchmark: all seven TensorFlow techniques on two Keras models trained on digits, through ``edgeopt.optimize``.

Models: the demo Keras CNN (``edgeopt demo-model``) and ``keras.applications`` MobileNetV2 (alpha 0.35, 32x32,
``weights=None``) trained here on digits first. Every figure comes from the pipeline's own measurement of the
artifact file (LiteRT with XNNPACK on this machine); the table compares each technique with the FP32 ``.tflite``
baseline and checks the issue's targets. Writes ``benchmarks/results/tensorflow.md``; with ``--append`` adds the
run as a new section at its end instead (the table of each searched technique then shows the strength chosen).

    .venv/bin/python benchmarks/tensorflow_techniques.py [--models demo,mobilenet_v2] [--out FILE]
        [--max-accuracy-drop POINTS] [--time-budget SECONDS] [--work DIR] [--append]

With ``--work`` a source model already trained there is reused, so runs with different budgets start from the
same model.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from edgeopt.expectations import EXPECTATIONS, shortfalls  # noqa: E402
from edgeopt.report import Report, RunResult  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "tensorflow.md"
MOBILENET_EPOCHS = 30
# Keras' 0.99 leaves the running statistics untrained after a few hundred steps (docs/library-notes.md).
BN_MOMENTUM = 0.9


def misses(run: RunResult, report: Report) -> list[str]:
    """The targets this run misses, as short phrases; empty when it meets them all.

    The issue's table is ``edgeopt.expectations`` (the same check writes shortfalls into a result's notes); the
    two relative targets (structured pruning runs faster, QAT within 0.3 points of PTQ) need the other runs.
    """
    base = report.baseline
    found = shortfalls(EXPECTATIONS["tensorflow"][run.technique], base, run)
    if run.technique == "prune_structured" and run.latency_ms and run.latency_ms.host >= base.latency_ms.host:
        found.append(f"latency {run.latency_ms.host:.3f} ms not below {base.latency_ms.host:.3f} ms")
    if run.technique == "qat_int8":
        ptq = next((r for r in report.runs if r.technique == "ptq_int8" and r.status == "completed"), None)
        if ptq is not None and run.accuracy is not None and ptq.accuracy is not None:
            drop, ptq_drop = (100.0 * (base.accuracy - r.accuracy) for r in (run, ptq))
            if drop > ptq_drop + 0.3:
                found.append(f"drop {drop:.2f} > ptq_int8's {ptq_drop:.2f} + 0.3")
    return found


# ------------------------------------------------------------------------------------------------- models


def demo_model(work: Path) -> Path:
    from edgeopt.frameworks.tensorflow.demo import train_demo_model

    path = work / "demo_cnn.keras"
    return path if path.is_file() else train_demo_model(path, seed=0)


def mobilenet_v2_model(work: Path) -> Path:
    """MobileNetV2 (alpha 0.35, 32x32, random init) trained on digits, adapted exactly as the pipeline adapts it."""
    path = work / "mobilenet_v2_035.keras"
    if path.is_file():
        return path
    import tf_keras

    from edgeopt.data.adapt import adapt
    from edgeopt.data.presets import load_preset
    from edgeopt.frameworks.tensorflow.training import fine_tune
    from edgeopt.progress import silent_reporter
    from edgeopt.settings import get_settings

    data = adapt(load_preset("digits", get_settings(), seed=0), 32, 32, 3)
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10)
    for layer in model.layers:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    fine_tune(
        model,
        data,
        epochs=MOBILENET_EPOCHS,
        lr=2e-3,
        batch_size=32,
        reporter=silent_reporter("mobilenet_v2"),
        stage="Training MobileNetV2",
    )
    model.save(path)
    return path


MODELS: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "demo": ("demo Keras CNN (conv 32/64/128 + BN, GAP, dense)", demo_model),
    "mobilenet_v2": (
        f"keras.applications MobileNetV2 alpha 0.35, 32x32, random init, {MOBILENET_EPOCHS} epochs",
        mobilenet_v2_model,
    ),
}


# ------------------------------------------------------------------------------------------------- table


def _kb(size: int | None) -> str:
    return f"{size / 1000:.1f}" if size else "-"


def table(report: Report) -> list[str]:
    base = report.baseline
    lines = [
        "| technique | status | accuracy | drop (pts) | size KB | size ratio | gzip ratio | sparsity | FLOPs ratio "
        "| params | host ms (p50 / p90) | wall s | strength | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| baseline FP32 .tflite | measured | {base.accuracy:.4f} | 0.00 | {_kb(base.size_bytes)} | 1.00 | 1.00 | "
        f"{base.sparsity:.3f} | 1.00 | {base.params} | {base.latency_ms.host:.3f} / {base.latency_ms.host_p90:.3f} "
        "| - | - | - |",
    ]
    for run in report.runs:
        if run.status != "completed":
            reason = (run.error or "").replace("|", "/")[:160]
            lines.append(
                f"| {run.technique} | {run.status} | - | - | - | - | - | - | - | - | - | "
                f"{run.duration_s or 0:.1f} | - | {reason} |"
            )
            continue
        found = misses(run, report)
        lines.append(
            f"| {run.technique} | completed | {run.accuracy:.4f} | {100 * (base.accuracy - run.accuracy):.2f} | "
            f"{_kb(run.size_bytes)} | {base.size_bytes / run.size_bytes:.2f} | "
            f"{base.compressed_size_bytes / run.compressed_size_bytes:.2f} | {run.sparsity:.3f} | "
            f"{base.flops / run.flops if run.flops else float('nan'):.2f} | {run.params} | "
            f"{run.latency_ms.host:.3f} / {run.latency_ms.host_p90:.3f} | {run.duration_s:.1f} | {_strength(run)} | "
            f"{'met' if not found else 'MISS: ' + '; '.join(found)} |"
        )
    return lines


def _strength(run: RunResult) -> str:
    """The setting the run used: searched (knob = value, trials, validation accuracy) or the config's fixed one."""
    if run.search is None:
        return "fixed"
    final = run.search.chosen_val_accuracy
    scored = f", final val {100 * final:.1f} %" if final is not None else ""
    return f"{run.search.knob}={run.search.chosen:g} (searched, {len(run.search.trials)} trials{scored})"


def notes(report: Report) -> list[str]:
    return [f"- `{run.technique}`: {(run.notes or run.error or '').strip()}" for run in report.runs]


def run(
    models: list[str],
    out: Path,
    work: Path,
    max_drop_points: float | None = None,
    time_budget_s: float | None = None,
    append: bool = False,
) -> None:
    from edgeopt.pipeline import optimize

    command = "python " + " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    budget = f"{max_drop_points:g}-point" if max_drop_points is not None else "default (1-point)"
    sections = [
        "# TensorFlow techniques benchmark" if not append else "## Run with the strength search",
        "",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Command: `{command}`",
        f"- Machine: {platform.machine()}, {os.cpu_count()} CPU cores visible (shared with other work), "
        f"Python {platform.python_version()}; load average at the start {_load()}",
        "- Dataset: scikit-learn digits (1437 train / 360 test images), adapted to each model's input by the "
        "pipeline; accuracy is top-1 on the 360 test images (differences below ~0.5 points are noise).",
        "- Every figure is measured by `edgeopt.optimize` on the artifact file: size in bytes, gzip -9 size, "
        "accuracy and batch-1 latency in LiteRT with XNNPACK (median and p90 of at least 50 runs). Ratios are "
        "against the FP32 `.tflite` of the same model. FLOPs and params come from the Keras layer graph.",
        f"- Accuracy budget: {budget}; search time budget: "
        + (f"{time_budget_s:g} s for all searches" if time_budget_s else "default (about each technique's own time)")
        + ". Technique configs are otherwise the defaults (`edgeopt.techniques`), the way a user runs them.",
        "",
    ]
    for key in models:
        title, build = MODELS[key]
        started = time.perf_counter()
        model_path = build(work)
        trained_s = time.perf_counter() - started
        started = time.perf_counter()
        report = optimize(
            model_path,
            framework="tensorflow",
            dataset="digits",
            device="rpi4",
            out_dir=work / f"{key}_{budget.split()[0]}",
            seed=0,
            constraints={"max_accuracy_drop": max_drop_points / 100} if max_drop_points is not None else None,
            time_budget_s=time_budget_s,
        )
        pipeline_s = time.perf_counter() - started
        sections += [
            f"{'#' if append else ''}## {title}, {budget} budget",
            "",
            f"Source model ready in {trained_s:.0f} s (reused when already trained in the work folder); whole "
            f"pipeline (baseline + 7 techniques, each measured) {pipeline_s:.0f} s wall; load average at the end "
            f"{_load()}.",
            "",
            *table(report),
            "",
            "Notes per run:",
            "",
            *notes(report),
            "",
        ]
        print(f"{key}: pipeline {pipeline_s:.0f} s", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    if append and out.is_file():
        out.write_text(out.read_text().rstrip("\n") + "\n\n" + "\n".join(sections))
    else:
        out.write_text("\n".join(sections))
    print(out.read_text())


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f} (1 / 5 / 15 min)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--work", type=Path, default=None, help="keep artifacts here (default: a temp folder)")
    parser.add_argument(
        "--max-accuracy-drop", type=float, default=None, help="accuracy budget in points (default: the engine's, 1)"
    )
    parser.add_argument("--time-budget", type=float, default=None, help="seconds for all strength searches")
    parser.add_argument("--append", action="store_true", help="add the run at the end of --out instead of replacing")
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        run(models, args.out, args.work, args.max_accuracy_drop, args.time_budget, args.append)
    else:
        with tempfile.TemporaryDirectory(prefix="edgeopt_tf_bench_") as tmp:
            run(models, args.out, Path(tmp), args.max_accuracy_drop, args.time_budget, args.append)


if __name__ == "__main__":
    main()
