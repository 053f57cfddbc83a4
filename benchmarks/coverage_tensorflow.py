"""Coverage benchmark: every keras.applications family (and two models users write) through all seven techniques.

The question is whether each technique *completes* on each model, not how accurate it is: models are random-init
and trained one epoch on digits, every technique runs at minimal epochs on a slice of digits. A run counts as
completed only when its ``.tflite`` reloads in LiteRT and classifies the test images. Each model runs in its own
subprocess with a timeout, so one model that hangs or crashes TensorFlow cannot take the others down. The table goes
into ``benchmarks/results/coverage.md`` under "TensorFlow / Keras" (the PyTorch side writes its own section).

    python -m benchmarks.coverage_tensorflow [--models regnetx002,densenet121] [--jobs 1] [--timeout 1200]
        [--techniques qat_int8]  # rerun some cells: their runs replace those in the model's saved row
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.results_file import replace_section
from edgeopt.catalog import TECHNIQUE_NAMES

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RESULTS = Path(__file__).parent / "results" / "coverage.md"
# Raw rows of the latest run of each model: a rerun of some models (--models) replaces only their rows.
ROWS = Path(__file__).parent / "results" / "coverage_tensorflow.json"
SECTION = "## TensorFlow / Keras"
TITLE = "Coverage: every model through every technique"
TECHNIQUES = TECHNIQUE_NAMES  # the catalog's order, the report's columns
# Share of models each technique must complete (the targets); and no run may fail.
TARGETS = {
    "ptq_int8": 0.95,
    "ptq_int4": 0.95,
    "qat_int8": 0.95,
    "prune_unstructured": 0.85,
    "prune_structured": 0.85,
    "distillation": 0.85,
    "hybrid_prune_int8": 0.85,
}
# Minimal training everywhere: coverage, not accuracy.
CONFIGS: dict[str, dict[str, Any]] = {
    "ptq_int8": {"calibration_samples": 32},
    "ptq_int4": {},
    "prune_unstructured": {"epochs": 1},
    "prune_structured": {"epochs": 1},
    "distillation": {"epochs": 1},
    "qat_int8": {"epochs": 1},
    "hybrid_prune_int8": {"epochs": 1, "calibration_samples": 32},
}
TRAIN_IMAGES = 256
TEST_IMAGES = 128
BN_MOMENTUM = 0.9  # Keras' 0.99 leaves the running statistics untrained after one short epoch (PITFALLS)


# ------------------------------------------------------------------------------------------------- models


@dataclass(frozen=True)
class Family:
    size: int  # square input side the model accepts (Xception needs at least 71)
    build: Callable[[tuple[int, int, int], int], Any]  # (input shape, classes) -> tf_keras model
    title: str


def _app(name: str, **kwargs: Any) -> Callable[[tuple[int, int, int], int], Any]:
    def build(shape: tuple[int, int, int], classes: int) -> Any:
        import tf_keras

        return getattr(tf_keras.applications, name)(input_shape=shape, weights=None, classes=classes, **kwargs)

    return build


def subclassed_model(shape: tuple[int, int, int], classes: int) -> Any:
    """A model written as a Python class (its graph lives in ``call``), as many users write them."""
    import tf_keras

    class DigitsNet(tf_keras.Model):
        def __init__(self) -> None:
            super().__init__(name="digits_net")
            self.conv1 = tf_keras.layers.Conv2D(16, 3, padding="same", activation="relu")
            self.pool = tf_keras.layers.MaxPooling2D()
            self.conv2 = tf_keras.layers.Conv2D(32, 3, padding="same", activation="relu")
            self.gap = tf_keras.layers.GlobalAveragePooling2D()
            self.head = tf_keras.layers.Dense(classes)

        def call(self, x: Any, training: bool = False) -> Any:
            return self.head(self.gap(self.conv2(self.pool(self.conv1(x)))))

    import numpy as np

    model = DigitsNet()
    model(np.zeros((1, *shape), np.float32))  # called once, so Keras knows the input to save a signature for
    return model


def custom_layer_model(shape: tuple[int, int, int], classes: int) -> Any:
    """A Functional model with a user's own layer class (a learned per-channel scale) between convolutions."""
    import tf_keras

    class ChannelScale(tf_keras.layers.Layer):
        def build(self, input_shape: Any) -> None:
            self.gamma = self.add_weight(name="gamma", shape=(input_shape[-1],), initializer="ones")

        def call(self, x: Any) -> Any:
            return x * self.gamma

    layers = tf_keras.layers
    inputs = tf_keras.Input(shape, name="image")
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = ChannelScale(name="channel_scale")(x)
    x = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return tf_keras.Model(inputs, layers.Dense(classes, name="logits")(x), name="custom_layer_net")


# Reaches EdgeOpt as a model object through the Python API: its custom layer class's code cannot travel in a file
# (an upload naming it is refused). Every other family is saved as a .keras file and loaded as an upload is (from
# 2026-12-05 16:20 UTC; before, all were handed over in memory, which missed that a stock ConvNeXt or EfficientNetV2
# file was refused).
IN_MEMORY = frozenset({"custom_layer"})

FAMILIES: dict[str, Family] = {
    "mobilenet": Family(32, _app("MobileNet", alpha=0.25), "MobileNet alpha 0.25"),
    "mobilenet_v2": Family(32, _app("MobileNetV2", alpha=0.35), "MobileNetV2 alpha 0.35"),
    "mobilenet_v3_small": Family(32, _app("MobileNetV3Small", alpha=0.75), "MobileNetV3Small alpha 0.75"),
    "mobilenet_v3_large": Family(32, _app("MobileNetV3Large", alpha=0.75), "MobileNetV3Large alpha 0.75"),
    "efficientnet_b0": Family(32, _app("EfficientNetB0"), "EfficientNetB0"),
    "efficientnet_v2_b0": Family(32, _app("EfficientNetV2B0"), "EfficientNetV2B0"),
    "densenet121": Family(32, _app("DenseNet121"), "DenseNet121"),
    "nasnet_mobile": Family(32, _app("NASNetMobile"), "NASNetMobile"),
    "resnet50": Family(32, _app("ResNet50"), "ResNet50"),
    "resnet50_v2": Family(32, _app("ResNet50V2"), "ResNet50V2"),
    "convnext_tiny": Family(32, _app("ConvNeXtTiny"), "ConvNeXtTiny"),
    "xception": Family(71, _app("Xception"), "Xception (71x71, its minimum)"),
    "regnetx002": Family(32, _app("RegNetX002"), "RegNetX002"),
    "regnety002": Family(32, _app("RegNetY002"), "RegNetY002"),
    "subclassed_savedmodel": Family(32, subclassed_model, "subclassed tf_keras Model saved as a SavedModel"),
    "custom_layer": Family(32, custom_layer_model, "Functional model with a custom layer class"),
}


# --------------------------------------------------------------------------------------------- one model


def digits_at(size: int, train_images: int = TRAIN_IMAGES, test_images: int = TEST_IMAGES) -> Any:
    """Digits adapted to ``size`` x ``size`` x 3, cut to a slice (coverage needs few images)."""
    import dataclasses

    from edgeopt.data.adapt import adapt
    from edgeopt.data.presets import load_preset
    from edgeopt.settings import get_settings

    data = adapt(load_preset("digits", get_settings(), seed=0), size, size, 3)
    return dataclasses.replace(
        data,
        x_train=data.x_train[:train_images],
        y_train=data.y_train[:train_images],
        x_test=data.x_test[:test_images],
        y_test=data.y_test[:test_images],
    )


def prepare(key: str, work: Path, data: Any, train_epochs: int = 1) -> Any:
    """Build the family's model, train it briefly on ``data`` and load it the way the pipeline does."""
    import tf_keras

    from edgeopt.frameworks import LoadedModel, ModelSource
    from edgeopt.frameworks.tensorflow.backend import TensorFlowBackend
    from edgeopt.frameworks.tensorflow.training import fine_tune
    from edgeopt.progress import silent_reporter

    family = FAMILIES[key]
    tf_keras.utils.set_random_seed(0)
    model = family.build(data.image_shape, data.num_classes)
    for layer in model.submodules if hasattr(model, "submodules") else model.layers:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    if train_epochs > 0:
        fine_tune(model, data, epochs=train_epochs, lr=1e-3, batch_size=32, reporter=silent_reporter(key), stage=key)
    if key == "subclassed_savedmodel":  # the way such a model reaches EdgeOpt: a SavedModel folder
        folder = work / "savedmodel"
        model.save(folder, save_format="tf")
        return TensorFlowBackend().load(ModelSource(path=folder), data)
    if key not in IN_MEMORY:  # an upload: a .keras file, checked and loaded as the service loads it
        path = work / f"{key}.keras"
        model.save(path)
        return TensorFlowBackend().load(ModelSource(path=path), data)
    return LoadedModel(
        framework="tensorflow",
        model=model,
        kind="keras",
        input_shape=data.image_shape,
        num_classes=data.num_classes,
        info={"keras": "tf_keras"},
    )


def _one_line(exc: BaseException) -> str:
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def run_technique(name: str, loaded: Any, data: Any, work: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """One technique, classified as the pipeline classifies it, plus a LiteRT reload of its artifact."""
    from edgeopt.errors import EdgeOptError, Unsupported
    from edgeopt.frameworks.tensorflow.runtime import accuracy, load_tflite, runtime_note
    from edgeopt.progress import silent_reporter
    from edgeopt.techniques import TechniqueContext, check_applicable, get_technique, make_config

    started = time.perf_counter()
    out: dict[str, Any] = {"technique": name}
    try:
        technique = get_technique(name, "tensorflow")
        check_applicable(technique, loaded)  # as the pipeline does: a fixed graph is measured, not rewritten
        output = technique.apply(
            TechniqueContext(model=loaded, data=data, work_dir=work, reporter=silent_reporter(name)),
            make_config(name, overrides),
        )
        predict = load_tflite(Path(output.artifact), threads=1)
        notes = output.notes + runtime_note(Path(output.artifact))  # as the pipeline adds it (measure_output)
        out.update(status="completed", accuracy=accuracy(predict, data.x_test, data.y_test), notes=notes)
    except Unsupported as exc:
        out.update(status="skipped", message=str(exc))
    except EdgeOptError as exc:
        out.update(status="failed", message=str(exc))
    except Exception as exc:  # noqa: BLE001 - the point of this benchmark is to find these
        out.update(status="failed", message=f"unexpected {_one_line(exc)}")
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def run_model(
    key: str,
    work: Path,
    techniques: tuple[str, ...] = TECHNIQUES,
    train_epochs: int = 1,
    save: Callable[[dict[str, Any]], None] = lambda result: None,
) -> dict:
    """Every technique on one family; the dict is what the child process writes as JSON.

    ``save`` gets the row after the baseline and after every technique, so a model stopped by the timeout keeps the
    techniques it finished (the rest read "not finished")."""
    from edgeopt.frameworks.tensorflow.backend import TensorFlowBackend
    from edgeopt.frameworks.tensorflow.runtime import accuracy, load_tflite

    started = time.perf_counter()
    data = digits_at(FAMILIES[key].size)
    result: dict[str, Any] = {"model": key, "runs": []}
    try:
        loaded = prepare(key, work, data, train_epochs)
        baseline = TensorFlowBackend().export_baseline(loaded, data, work)
        result["baseline_accuracy"] = accuracy(load_tflite(baseline.artifact, threads=1), data.x_test, data.y_test)
    except Exception as exc:  # noqa: BLE001 - reported as the model's row, every technique marked failed
        result["error"] = _one_line(exc)
        return result
    save(result)
    for name in techniques:
        result["runs"].append(run_technique(name, loaded, data, work, CONFIGS[name]))
        result["seconds"] = round(time.perf_counter() - started, 1)
        save(result)
    return result


# ------------------------------------------------------------------------------------------------- table


def _cell(run: dict[str, Any] | None, notes: list[str], stopped: str = "") -> str:
    if run is None:
        return f"not finished ({stopped})" if stopped else "not run"
    if run["status"] == "completed":
        return "completed"
    note = f"{run['status']}: {run['message']}"
    if note not in notes:  # one footnote per distinct message (a skip often repeats across techniques)
        notes.append(note)
    return f"{run['status']} [{notes.index(note) + 1}]"


def table(results: list[dict[str, Any]], command: str, partial: str) -> list[str]:
    notes: list[str] = []
    lines = [
        SECTION,
        "",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Command (latest): `{command}`; each row gives the time it ran, the commit it measured and the host's "
        "15-minute load average when it finished (reruns of some models replace their rows; a rerun of some "
        "techniques replaces only those cells, so the rest of such a row is older: see the json's per-run dates).",
        f"- Models random-init, trained 1 epoch on {TRAIN_IMAGES} digits images (3 channels), each technique at "
        f"minimal epochs ({', '.join(f'{k} {v}' for k, v in CONFIGS.items() if v)}); completed means the "
        f".tflite reloaded in LiteRT and classified {TEST_IMAGES} test images. Accuracy is not the point here.",
    ]
    if partial:
        lines.append(f"- **Partial run**: {partial}")
    lines += ["", "| model | " + " | ".join(TECHNIQUES) + " | s | run |", "|---" * (len(TECHNIQUES) + 3) + "|"]
    for result in results:
        if _refused(result):
            cell = _cell({"status": "refused", "message": f"at load, as at upload: {result['error']}"}, notes)
            cells = [cell] * len(TECHNIQUES)
        elif "error" in result:
            cell = _cell({"status": "failed", "message": f"before any technique: {result['error']}"}, notes)
            cells = [cell] * len(TECHNIQUES)
        else:
            runs = {run["technique"]: run for run in result["runs"]}
            cells = [_cell(runs.get(name), notes, result.get("stopped", "")) for name in TECHNIQUES]
        title = FAMILIES[result["model"]].title if result["model"] in FAMILIES else result["model"]
        measured = f" on {result['code']}, load {result['load']}" if "code" in result else ""
        timing = f" | {result.get('seconds', '-')} | {result.get('date', '')}{measured} |"
        lines.append(f"| {title} | " + " | ".join(cells) + timing)
    lines += ["", *totals(results), ""]
    if notes:
        lines += ["Skips and failures:", ""] + [f"{i}. {note.replace('|', '/')}" for i, note in enumerate(notes, 1)]
        lines.append("")
    return lines


def _refused(result: dict[str, Any]) -> bool:
    """Refused as bad input before any technique (a class Keras does not define, say): the user is told at upload
    with a 4xx; not a technique's failure, so such models are listed but not counted."""
    return str(result.get("error", "")).startswith("InvalidInput")


def totals(results: list[dict[str, Any]]) -> list[str]:
    refused = [r for r in results if _refused(r)]
    results = [r for r in results if not _refused(r)]
    count = len(results)
    if not count:
        return ["No model ran."]
    failed = 0
    lines = [
        "| technique | completed | skipped | failed | not finished | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in TECHNIQUES:
        statuses = []
        for result in results:
            run = next((r for r in result.get("runs", []) if r["technique"] == name), None)
            # A model stopped by its timeout leaves the techniques it had not reached unfinished, not failed.
            statuses.append(run["status"] if run else "not finished" if "stopped" in result else "failed")
        done, skipped, bad, open_ = (statuses.count(s) for s in ("completed", "skipped", "failed", "not finished"))
        failed += bad
        finished = done + skipped + bad
        share = done / finished if finished else 0.0
        lines.append(
            f"| {name} | {done}/{finished} ({share:.0%}) | {skipped} | {bad} | {open_} | >= {TARGETS[name]:.0%} | "
            f"{'yes' if finished and share >= TARGETS[name] and not bad else 'NO'} |"
        )
    not_counted = f"; {len(refused)} refused at load as bad input, not counted" if refused else ""
    lines.insert(
        0,
        f"Totals over {count} models: {failed} failed runs (target 0){not_counted}; shares are over the runs that "
        "finished (a model stopped by its timeout counts only the techniques it finished).",
    )
    lines.insert(1, "")
    return lines


def write_section(lines: list[str], path: Path = RESULTS) -> None:
    """Replace (or add) this section of ``coverage.md``, leaving the other frameworks' sections alone."""
    body = lines[1:] if lines and lines[0] == SECTION else lines
    replace_section(path, SECTION, body, TITLE)


# -------------------------------------------------------------------------------------------- processes


def _child(key: str, timeout: int, train_epochs: int, techniques: tuple[str, ...] = TECHNIQUES) -> dict[str, Any]:
    """Run one model in a fresh Python (own TensorFlow, own memory); a timeout or crash becomes its row."""
    with tempfile.TemporaryDirectory(prefix=f"coverage-{key}-") as work:
        result_file = Path(work) / "result.json"
        command = [
            sys.executable,
            "-m",
            "benchmarks.coverage_tensorflow",
            "--child",
            key,
            "--result",
            str(result_file),
            "--train-epochs",
            str(train_epochs),
            "--techniques",
            ",".join(techniques),
        ]
        started = time.perf_counter()
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            saved = json.loads(result_file.read_text()) if result_file.exists() else {"model": key, "runs": []}
            saved.pop("error", None)
            return {**saved, "stopped": f"stopped after {timeout} s", "seconds": timeout}
        if result_file.exists():
            result = json.loads(result_file.read_text())
        else:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
            result = {"model": key, "error": f"process died: {tail[0][:300]}", "runs": []}
        print(f"{key}: {time.perf_counter() - started:.0f} s", flush=True)
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(FAMILIES), help="comma-separated: " + ", ".join(FAMILIES))
    parser.add_argument("--jobs", type=int, default=1, help="models run at once, each in its own process")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per model")
    parser.add_argument("--train-epochs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--rewrite", action="store_true", help="only rewrite the table from the saved rows")
    parser.add_argument(
        "--techniques",
        default=",".join(TECHNIQUES),
        help="comma-separated subset to rerun; their runs replace those in each model's saved row (the rest are kept)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    # `python -m benchmarks.coverage --framework tensorflow ...` hands its whole command line over to this parser.
    parser.add_argument("--framework", choices=("tensorflow",), default="tensorflow", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        with tempfile.TemporaryDirectory(prefix="coverage-work-") as work:
            result = run_model(
                args.child,
                Path(work),
                _names(args.techniques),
                train_epochs=args.train_epochs,
                save=lambda row: _write_atomically(args.result, json.dumps(row)),
            )
        _write_atomically(args.result, json.dumps(result))
        return 0
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in FAMILIES] + [t for t in _names(args.techniques) if t not in TECHNIQUES]
    if unknown:
        parser.error(f"unknown model(s) or technique(s) {unknown}; choose from {', '.join((*FAMILIES, *TECHNIQUES))}")
    techniques = _names(args.techniques)
    command = "python -m benchmarks.coverage_tensorflow " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    rows: dict[str, dict[str, Any]] = json.loads(ROWS.read_text()) if ROWS.exists() and args.out == RESULTS else {}
    if args.rewrite:
        models = []
    lines = _section(rows, command)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        # The section is rewritten after every model, so a run stopped early still leaves an honest partial table.
        for result in pool.map(lambda key: _child(key, args.timeout, args.train_epochs, techniques), models):
            result["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
            result["command"] = command.strip()
            result["code"] = code_version()
            result["load"] = round(os.getloadavg()[2], 1)  # 15-minute average: the host is shared
            rows[result["model"]] = _merge(rows.get(result["model"]), result, techniques)
            lines = _section(rows, command)
            write_section(lines, args.out)
            if args.out == RESULTS:
                ROWS.write_text(json.dumps(rows, indent=1))
    if args.rewrite:
        write_section(lines, args.out)
    print("\n".join(lines))
    return 0


def code_version() -> str:
    """The commit the measured code is at, ``-dirty`` when the code (not the results files) differs from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent
        ).stdout.strip()

    try:
        changed = git(
            "status", "--porcelain", "--untracked-files=no", "--", "src", "benchmarks", ":!benchmarks/results"
        )
        return git("rev-parse", "--short", "HEAD") + ("-dirty" if changed else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _write_atomically(path: Path, text: str) -> None:
    """A timeout may kill the child mid-write: the parent reads the previous row or the new one, never half."""
    part = path.with_suffix(".part")
    part.write_text(text)
    part.replace(path)


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _merge(old: dict[str, Any] | None, new: dict[str, Any], techniques: tuple[str, ...]) -> dict[str, Any]:
    """A rerun of some techniques replaces their runs in the saved row and keeps the others (with their own date);
    a rerun of all of them, or one that failed before any technique, replaces the row."""
    if old is None or "error" in new or "error" in old or set(techniques) == set(TECHNIQUES):
        return new
    kept = [run for run in old["runs"] if run["technique"] not in techniques]
    for run in kept:
        run.setdefault("date", old.get("date", ""))
    runs = {run["technique"]: run for run in kept + new["runs"]}
    merged = {**old, "runs": [runs[name] for name in TECHNIQUES if name in runs], "date": new["date"]}
    for key in ("code", "load"):  # the rerun's; the kept runs keep their own date and, where recorded, code
        merged[key] = new.get(key)
        for run in kept:
            if key in old:
                run.setdefault(key, old[key])
    merged["command"] = "; ".join(dict.fromkeys(filter(None, (old.get("command"), new["command"]))))
    merged["seconds"] = round(sum(run.get("seconds", 0) for run in merged["runs"]), 1)
    return merged


def _section(rows: dict[str, dict[str, Any]], command: str) -> list[str]:
    results = [rows[key] for key in FAMILIES if key in rows]
    missing = [key for key in FAMILIES if key not in rows]
    partial = f"families not run (yet): {', '.join(missing)}." if missing else ""
    commands = sorted({r.get("command", command.strip()) for r in results}) or [command.strip()]
    return table(results, "`; `".join(commands), partial)


if __name__ == "__main__":
    sys.exit(main())
