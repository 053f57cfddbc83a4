"""Sizes, accuracies and host latencies of the FP32, INT8, INT4 (and QAT) .pte files of one model, measured for real.

    .venv/bin/python benchmarks/pytorch_quant_smoke.py --model demo --qat
    .venv/bin/python benchmarks/pytorch_quant_smoke.py --model resnet18 --epochs 1

``demo`` trains the demo CNN; ``resnet18`` is torchvision's, randomly initialised and trained for ``--epochs`` on
digits at 32x32 RGB. Every number comes from running the .pte files in ExecuTorch (XNNPACK, 1 thread).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgeopt.data.adapt import adapt
from edgeopt.data.presets import load_preset
from edgeopt.frameworks import ModelSource
from edgeopt.frameworks.pytorch.backend import PyTorchBackend
from edgeopt.frameworks.pytorch.ptq_int4 import PtqInt4
from edgeopt.frameworks.pytorch.ptq_int8 import PtqInt8
from edgeopt.frameworks.pytorch.qat import QatInt8
from edgeopt.frameworks.pytorch.training import fine_tune
from edgeopt.progress import silent_reporter
from edgeopt.settings import get_settings
from edgeopt.techniques import PtqInt4Config, PtqInt8Config, QatInt8Config, TechniqueContext

RUNS = 50


def latency_ms(predict, sample: np.ndarray) -> tuple[float, float]:
    for _ in range(5):
        predict(sample)
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        predict(sample)
        times.append(1000 * (time.perf_counter() - start))
    times.sort()
    return statistics.median(times), times[int(0.9 * len(times))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=["demo", "resnet18"], default="demo")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--qat", action="store_true", help="also run qat_int8 (default config)")
    parser.add_argument("--train-images", type=int, default=None, help="train resnet18 on this many images only")
    args = parser.parse_args()
    backend = PyTorchBackend()
    work = Path(tempfile.mkdtemp(prefix="edgeopt_quant_"))
    digits = load_preset("digits", get_settings(), seed=0)
    if args.model == "demo":
        data = adapt(digits, 32, 32, 1)
        loaded = backend.load(ModelSource(path=backend.demo_model(work / "demo.pt2")), data)
    else:
        data = adapt(digits, 32, 32, 3)
        loaded = backend.load(ModelSource(arch="resnet18", input_size=(32, 32), random_init=True), data)
        start = time.perf_counter()
        count = args.train_images
        subset = dataclasses.replace(data, x_train=data.x_train[:count], y_train=data.y_train[:count])
        fine_tune(loaded.model, subset, epochs=args.epochs, lr=1e-3, batch_size=64, reporter=silent_reporter(), seed=0)
        print(f"trained resnet18 for {args.epochs} epoch(s) in {time.perf_counter() - start:.0f} s")
    outputs = {"fp32": backend.export_baseline(loaded, data, work)}
    techniques = (
        ("ptq_int8", PtqInt8(), PtqInt8Config()),
        ("ptq_int4", PtqInt4(), PtqInt4Config()),
        ("qat_int8", QatInt8(), QatInt8Config()),
    )
    for name, technique, config in techniques[: 3 if args.qat else 2]:
        start = time.perf_counter()
        outputs[name] = technique.apply(TechniqueContext(loaded, data, work, silent_reporter(name)), config)
        print(f"{name} took {time.perf_counter() - start:.0f} s")
    base_size = outputs["fp32"].artifact.stat().st_size
    base_acc = None
    print(f"| {args.model} | size (bytes) | ratio vs FP32 .pte | accuracy | drop (points) | host ms (median) | p90 |")
    print("|---|---|---|---|---|---|---|")
    for name, output in outputs.items():
        predict = backend.artifact_predictor(output.artifact, output)
        accuracy = float(np.mean(predict(data.x_test).argmax(1) == data.y_test))
        base_acc = accuracy if base_acc is None else base_acc
        median, p90 = latency_ms(predict, data.x_test[:1])
        size = output.artifact.stat().st_size
        print(
            f"| {name} | {size} | {base_size / size:.2f} | {accuracy:.4f} | {100 * (base_acc - accuracy):.2f} "
            f"| {median:.3f} | {p90:.3f} |"
        )
    print(f"threads: {get_settings().threads}; torch {torch.__version__}")


if __name__ == "__main__":
    main()
