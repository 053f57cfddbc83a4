"""What the pruning studies (``pruning_recalibration.py``, ``pruning_ranking.py``) share: their command line and
the digits split they score on (the strength search's validation split, carved from train; the test split unread)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.pytorch_techniques import BASELINE_EPOCHS, INPUT

ROOT = Path(__file__).resolve().parents[1]


def parse_args(description: str, argv: list[str] | None, models: str, ratios: str, out: str) -> argparse.Namespace:
    """``--models``, ``--ratios``, ``--work-dir``, ``--out``; ``models`` and ``ratios`` come back as lists."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--models", default=models, help="torchvision models of pytorch_techniques.py")
    parser.add_argument("--ratios", default=ratios)
    parser.add_argument("--work-dir", type=Path, default=ROOT / "benchmarks" / "out" / "pytorch")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / out)
    args = parser.parse_args(argv)
    args.ratios = [float(r) for r in args.ratios.split(",")]
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not set(args.models) <= set(BASELINE_EPOCHS):
        parser.error(f"--models takes the 3-channel torchvision baselines: {', '.join(BASELINE_EPOCHS)}")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    return args


@dataclass
class Split:
    data: Any  # digits at the baselines' input, 3 channels
    train: Any  # the train split minus the validation images
    x_val: Any
    y_val: Any
    example: Any  # one input of the right shape, for torch-pruning
    score: Callable[[Any], float]  # validation accuracy in % of an eager module


def validation_split() -> Split:
    import torch

    from edgeopt.data import adapt, load_dataset
    from edgeopt.frameworks.pytorch.layout import example_input, predict_module
    from edgeopt.strength_search import carve_validation

    torch.set_num_threads(1)
    data = adapt(load_dataset("digits", seed=0), *INPUT, 3)
    train, x_val, y_val = carve_validation(data, seed=0)

    def score(module: torch.nn.Module) -> float:
        return 100.0 * float((predict_module(module.eval(), x_val).argmax(1) == y_val).mean())

    return Split(data, train, x_val, y_val, example_input(data.image_shape), score)


def write_results(out: Path, lines: list[str]) -> None:
    """Write the study's results file (replacing the previous run's) and print it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print(out.read_text())
