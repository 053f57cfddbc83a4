"""Conformance over a model zoo: does every technique complete (or skip with a reason) on every architecture?

PyTorch: walks ``torchvision.models.list_models(module=torchvision.models)``. Each architecture is built with 10
classes, run at the smallest input in ``SIZES`` it accepts, briefly trained on digits (``--train-batches``; 0 keeps
the random initialisation), exported both ways a user would (``torch.export.export(model, (x[:1],))`` at static
batch 1, and with a dynamic batch dimension) and put through the engine's own pipeline with every technique at
minimal epochs on a slice of digits (``--train-images``, ``--test-images``) and a minimal strength search (one
setting per searched technique unless ``--time-budget`` gives more). Each (architecture, export style)
runs in its own subprocess with a timeout, so one model that hangs or crashes costs only its own row. The
baseline-at-chance check is off here (a briefly trained model may still be near chance): this measures whether
the techniques run, not how accurate the models are.

    .venv/bin/python -m benchmarks.coverage --framework pytorch [--models a,b] [--jobs 1] [--timeout 1800]
    .venv/bin/python -m benchmarks.coverage --framework tensorflow ...   (benchmarks/coverage_tensorflow.py)

Results accumulate in ``benchmarks/results/coverage_pytorch.json`` (a rerun skips what is already there unless
``--rerun``) and the table is rewritten to ``benchmarks/results/coverage.md`` after every architecture.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.results_file import replace_section
from edgeopt.catalog import TECHNIQUE_NAMES

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TECHNIQUES = TECHNIQUE_NAMES  # the catalog's order, the report's columns
QUANTIZATION = ("ptq_int8", "ptq_int4", "qat_int8")
TARGETS = {"quantization": 0.95, "other": 0.85}  # share of architectures completed (issue 12)
STYLES = ("static", "dynamic")
SIZES = (32, 64, 96, 128, 160, 224)
MINIMAL_CONFIGS: dict[str, dict[str, Any]] = {
    "ptq_int8": {"calibration_samples": 32},
    "hybrid_prune_int8": {"calibration_samples": 32},
}


# ------------------------------------------------------------------------------------------------ worker side


def build_at_smallest_size(arch: str) -> tuple[Any, int]:
    """The architecture at the smallest square size in SIZES it runs at, and that size.

    Vision transformers fix their input size when built (``image_size``), so they are built for each size tried;
    other architectures are built once and tried at each size (some want at least 64, MaxViT exactly 224).
    """
    import inspect

    import torch
    import torchvision

    builder = torchvision.models.get_model_builder(arch)
    model = torchvision.models.get_model(arch, weights=None, num_classes=10).eval()
    # vit_b_16(**kwargs) passes image_size on without naming it: the built model says it holds one
    sized = "image_size" in inspect.signature(builder).parameters or hasattr(model, "image_size")
    for size in SIZES:
        try:
            if sized:
                model = torchvision.models.get_model(arch, weights=None, num_classes=10, image_size=size).eval()
            with torch.no_grad():
                model(torch.rand(1, 3, size, size))
        except Exception:  # noqa: BLE001 - too small for this architecture: try the next size
            continue
        return model, size
    raise RuntimeError(f"runs at none of the sizes {SIZES}")


def digits_subset(path: Path, train: int, test: int) -> Path:
    """The first images of the digits splits as a custom ``.npz`` dataset: coverage asks whether techniques run,
    and the full train split would make every fine-tuning epoch several times longer without changing that answer."""
    import numpy as np

    from edgeopt.data import load_dataset

    data = load_dataset("digits", seed=0)
    np.savez(
        path,
        x_train=data.x_train[:train],
        y_train=data.y_train[:train],
        x_test=data.x_test[:test],
        y_test=data.y_test[:test],
    )
    return path


def run_worker(
    arch: str,
    style: str,
    out: Path,
    train_batches: int,
    epochs: int,
    train_images: int,
    test_images: int,
    time_budget_s: float | None = None,
) -> dict[str, Any]:
    """One architecture, one export style, every technique; returns (and writes) its row as JSON."""
    import torch
    import torch._dynamo  # noqa: F401 - before anything that might import TensorFlow

    from edgeopt.data import adapt, load_dataset
    from edgeopt.frameworks.pytorch.layout import iterate_batches
    from edgeopt.pipeline import ExperimentSpec, Pipeline
    from edgeopt.settings import Settings

    torch.manual_seed(0)
    row: dict[str, Any] = {"arch": arch, "style": style, "runs": {}}
    started = time.perf_counter()
    model, size = build_at_smallest_size(arch)
    row["size"] = size
    data = adapt(load_dataset("digits", seed=0), size, size, 3)
    if train_batches:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()
        batches = iterate_batches(data.x_train, data.y_train, batch_size=32, shuffle=True)
        for _, (x, y) in zip(range(train_batches), batches, strict=False):
            optimizer.zero_grad()
            logits = model(x)
            logits = logits.logits if hasattr(logits, "logits") else logits  # Inception/GoogLeNet aux outputs
            torch.nn.functional.cross_entropy(logits, y).backward()
            optimizer.step()
        model.eval()
    x = torch.rand(2, 3, size, size)
    path = out.parent / f"{arch}-{style}.pt2"
    try:
        if style == "static":
            program = torch.export.export(model, (x[:1],))
        else:
            program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
        torch.export.save(program, str(path))
    except Exception as exc:  # noqa: BLE001 - recorded: the model itself is not capturable this way
        row["export_error"] = _first_line(exc)
        return _write(out, row, started)
    spec = ExperimentSpec(
        framework="pytorch",
        dataset=str(digits_subset(out.parent / "digits-subset.npz", train_images, test_images)),
        dataset_label="digits",
        device="rpi4",
        out_dir=out.parent / f"{arch}-{style}",
        model=path,
        epochs=epochs,
        technique_configs=MINIMAL_CONFIGS,
        check_baseline=False,
        time_budget_s=time_budget_s,
    )
    settings = Settings(latency_seconds=0.0)
    try:
        report = Pipeline(spec, settings=settings).run()
    except Exception as exc:  # noqa: BLE001 - the experiment as a whole stopped: recorded as its message
        row["experiment_error"] = _first_line(exc)
        return _write(out, row, started)
    row["baseline_accuracy"] = report.baseline.accuracy if report.baseline else None
    for run in report.runs:
        row["runs"][run.technique] = {"status": run.status, "message": run.error or ""}
    return _write(out, row, started)


def _write(out: Path, row: dict[str, Any], started: float) -> dict[str, Any]:
    row["seconds"] = round(time.perf_counter() - started, 1)
    out.write_text(json.dumps(row))
    return row


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


# ------------------------------------------------------------------------------------------------ parent side


def all_models() -> list[str]:
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def run_one(arch: str, style: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    folder = work / f"{arch}-{style}"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "row.json"
    command = [
        sys.executable, "-m", "benchmarks.coverage", "--worker", arch, "--style", style, "--row", str(out),
        "--train-batches", str(args.train_batches), "--epochs", str(args.epochs),
        "--train-images", str(args.train_images), "--test-images", str(args.test_images),
        *(["--time-budget", str(args.time_budget)] if args.time_budget is not None else []),
    ]  # fmt: skip
    env = {**os.environ, "EDGEOPT_OFFLINE": "1", "EDGEOPT_LATENCY_SECONDS": "0"}
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return partial_row(folder, arch, style, timeout=args.timeout)
    if out.is_file():
        return json.loads(out.read_text())
    tail = (done.stderr or "").strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
    return {**partial_row(folder, arch, style), "crash": tail[0][:300]}


def partial_row(folder: Path, arch: str, style: str, timeout: int | None = None) -> dict[str, Any]:
    """What a worker that was stopped had finished: the runs already in its experiment's report.json."""
    row: dict[str, Any] = {"arch": arch, "style": style, "runs": {}}
    if timeout is not None:
        row["timeout"] = timeout
    report = folder / f"{arch}-{style}" / "report.json"
    if report.is_file():
        data = json.loads(report.read_text())
        row["runs"] = {r["technique"]: {"status": r["status"], "message": r.get("error") or ""} for r in data["runs"]}
    return row


def cell(row: dict[str, Any] | None, technique: str) -> str:
    if row is None:
        return "not run"
    if "timeout" in row and technique not in row["runs"]:
        return f"not finished (stopped after {row['timeout']} s)"
    for key, label in (("export_error", "not capturable"), ("experiment_error", "experiment stopped"),
                       ("crash", "worker crashed")):  # fmt: skip
        if key in row:
            return f"{label}: {row[key]}"
    run = row["runs"].get(technique)
    if run is None:
        return "not run"
    if run["status"] == "completed":
        return "completed"
    return f"{run['status']}: {_short(run['message'])}"


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split()).replace("|", "/")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def write_table(rows: dict[str, dict[str, Any]], models: list[str], command: str, path: Path) -> dict[str, Any]:
    """Markdown table (row per architecture, static / dynamic per cell when they differ) and the totals."""
    done = [m for m in models if all(f"{m}/{s}" in rows and "timeout" not in rows[f"{m}/{s}"] for s in STYLES)]
    lines = [
        "",
        "Every technique over the torchvision classification zoo.",
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC: `{command}`",
        "",
        f"{len(done)} of {len(models)} architectures finished both export styles so far"
        + (" (partial run: the other rows say `not run`)." if len(done) < len(models) else "."),
        "A cell reads `completed` when both export styles (static batch 1, dynamic batch) completed; otherwise it "
        "shows each style's result. Techniques run at minimal epochs and, from 2026-12-05, a minimal strength search "
        "(`--time-budget`, default 1 s: one setting per searched technique); earlier rows searched at the default "
        "budget.",
        "",
        "| architecture | input | " + " | ".join(TECHNIQUES) + " |",
        "|---|---|" + "---|" * len(TECHNIQUES),
    ]
    totals = {t: {"completed": 0, "skipped": 0, "failed": 0, "not capturable": 0} for t in TECHNIQUES}
    for model in models:
        cells = []
        for technique in TECHNIQUES:
            per_style = {s: cell(rows.get(f"{model}/{s}"), technique) for s in STYLES}
            if all(f"{model}/{s}" in rows for s in STYLES) and model in done:
                for value in per_style.values():
                    status = value.split(":")[0]
                    known = status in ("completed", "skipped", "not capturable")
                    totals[technique][status if known else "failed"] += 1  # a stop or crash counts as failed
            if len(set(per_style.values())) == 1:
                cells.append(per_style["static"])
            else:
                cells.append("; ".join(f"{s}: {v}" for s, v in per_style.items()))
        size = next((rows[f"{model}/{s}"].get("size") for s in STYLES if f"{model}/{s}" in rows), None)
        lines.append(f"| {model} | {f'{size}x{size}' if size else '-'} | " + " | ".join(cells) + " |")
    lines += ["", "### Totals over the finished architectures (both export styles counted)", ""]
    lines += [
        "A model torch.export cannot capture is not counted (the issue asks for every capturable classifier).",
        "",
        "| technique | completed | skipped | failed | not capturable | completed share | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for technique, count in totals.items():
        target = TARGETS["quantization" if technique in QUANTIZATION else "other"]
        runs = max(1, count["completed"] + count["skipped"] + count["failed"])
        share = count["completed"] / runs
        mark = "met" if share >= target and count["failed"] == 0 else "not met"
        lines.append(
            f"| {technique} | {count['completed']} | {count['skipped']} | {count['failed']} | "
            f"{count['not capturable']} | {share:.0%} | "
            f">= {target:.0%}, 0 failed: {mark} |"
        )
    lines += _runs_so_far(rows, models)
    replace_section(path, "## PyTorch", lines, "Coverage: every model through every technique")
    return totals


def _runs_so_far(rows: dict[str, dict[str, Any]], models: list[str]) -> list[str]:
    """Per technique, every (architecture, export style) run recorded so far, finished architecture or not: what a
    partial run has shown (a run stopped by the timeout before a technique started is `not finished`)."""
    counts = {t: {"completed": 0, "skipped": 0, "failed": 0, "not finished": 0} for t in TECHNIQUES}
    pairs = [rows[f"{m}/{s}"] for m in models for s in STYLES if f"{m}/{s}" in rows]
    captured = [row for row in pairs if "export_error" not in row]
    for row in captured:
        for technique in TECHNIQUES:
            status = cell(row, technique).split(":")[0]
            if status.startswith("not finished") or status == "not run":
                counts[technique]["not finished"] += 1
            else:
                counts[technique][status if status in ("completed", "skipped") else "failed"] += 1
    lines = [
        "",
        f"### Every run so far ({len(captured)} architecture and export-style pairs, finished or not)",
        "",
        "| technique | completed | skipped | failed | not finished |",
        "|---|---|---|---|---|",
    ]
    for technique, count in counts.items():
        lines.append(
            f"| {technique} | {count['completed']} | {count['skipped']} | {count['failed']} | {count['not finished']} |"
        )
    return lines


def _known_styles(text: str) -> list[str]:
    styles = [s for s in text.split(",") if s]
    unknown = sorted(set(styles) - set(STYLES))
    if unknown or not styles:
        raise argparse.ArgumentTypeError(f"styles are {', '.join(STYLES)}; got {text!r}")
    return styles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--framework", choices=("pytorch", "tensorflow"), default="pytorch")
    parser.add_argument("--models", help="comma-separated architecture names (default: the whole zoo)")
    parser.add_argument("--jobs", type=int, default=1, help="architectures run at once (each in its own process)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per architecture and export style")
    parser.add_argument("--train-batches", type=int, default=20, help="digits batches of training; 0 = random init")
    parser.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs of every technique")
    parser.add_argument("--train-images", type=int, default=320, help="digits images the techniques train on")
    parser.add_argument("--test-images", type=int, default=120, help="digits images every result is scored on")
    parser.add_argument(
        "--time-budget",
        type=float,
        default=1.0,
        help="seconds all strength searches of one experiment may take (the user's --time-budget): the default "
        "1 runs one setting per searched technique, the minimal search, as epochs are minimal; 0 = EdgeOpt's default",
    )
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/edgeopt-coverage"))
    parser.add_argument(
        "--styles",
        default=",".join(STYLES),
        type=lambda text: ",".join(_known_styles(text)),
        help="export styles to run now (static, dynamic); the table counts an architecture once both are in",
    )
    parser.add_argument("--rerun", action="store_true", help="run again what the results file already holds")
    parser.add_argument(
        "--collect",
        type=int,
        metavar="SECONDS",
        help="record the finished runs of workers stopped by hand after SECONDS (deadline), without running more",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--style", choices=STYLES, help=argparse.SUPPRESS)
    parser.add_argument("--row", type=Path, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.framework == "tensorflow":
        from benchmarks import coverage_tensorflow  # lazily: TensorFlow and torch.export in one process crash

        return int(coverage_tensorflow.main(argv if argv is not None else sys.argv[1:]) or 0)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.worker:
        run_worker(
            args.worker,
            args.style,
            args.row,
            args.train_batches,
            args.epochs,
            args.train_images,
            args.test_images,
            args.time_budget or None,
        )
        return 0
    models = all_models()
    chosen = args.models.split(",") if args.models else models
    unknown = sorted(set(chosen) - set(models))
    if unknown:
        parser.error(f"unknown architectures: {', '.join(unknown)}")
    store = RESULTS / "coverage_pytorch.json"
    rows: dict[str, dict[str, Any]] = json.loads(store.read_text()) if store.is_file() else {}
    styles = args.styles.split(",")
    todo = [(m, s) for m in chosen for s in styles if args.rerun or f"{m}/{s}" not in rows]
    command = "python -m benchmarks.coverage " + shlex.join(argv if argv is not None else sys.argv[1:])
    if args.collect is not None:
        for arch, style in todo:
            folder = args.work_dir / f"{arch}-{style}"
            if (folder / f"{arch}-{style}" / "report.json").is_file():
                rows[f"{arch}/{style}"] = partial_row(folder, arch, style, timeout=args.collect)
        store.write_text(json.dumps(rows, indent=1, sort_keys=True))
        write_table(rows, models, command, RESULTS / "coverage.md")
        return 0

    def one(item: tuple[str, str]) -> None:
        arch, style = item
        print(f"{arch} ({style}) ...", flush=True)
        row = run_one(arch, style, args, args.work_dir)
        rows[f"{arch}/{style}"] = row
        store.write_text(json.dumps(rows, indent=1, sort_keys=True))
        write_table(rows, models, command, RESULTS / "coverage.md")
        print(f"{arch} ({style}): " + ", ".join(f"{t}={cell(row, t).split(':')[0]}" for t in TECHNIQUES), flush=True)

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(one, todo))
    write_table(rows, models, command, RESULTS / "coverage.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
