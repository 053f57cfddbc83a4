"""Which channel scores the global allocation in ``prune_channels`` ranks by: the figures behind its LAMP choice.

For each model (a baseline file from ``benchmarks/pytorch_techniques.py``'s work folder, trained there if absent)
and each ratio, a fresh copy is pruned, its batch norms recalibrated (``recalibrate_batch_norm``), and it is scored
on the validation split the strength search uses (``carve_validation``; the test split is not read), with no
fine-tuning:

- **engine**: ``prune_channels`` as the techniques call it (global, batch-norm scale with LAMP normalisation when
  the network has batch norms, capped per layer);
- **global BN raw / BN mean / L2 LAMP**: the same engine code with another torch-pruning importance in its guard
  (raw batch-norm scales, scales over their group's mean, L2 magnitude with LAMP);
- **uniform L2**: torch-pruning's ``MetaPruner`` with the same share from every layer (L2 magnitude), what
  ``prune_channels`` did before global allocation.

    .venv/bin/python benchmarks/pruning_ranking.py [--models mobilenet_v2] [--ratios 0.1,0.2,0.3,0.4,0.5,0.6]

Writes ``benchmarks/results/pruning_ranking.md``.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import torch._dynamo  # noqa: F401 - before anything that might import TensorFlow (docs/library-notes.md)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.pruning_bench import parse_args, validation_split, write_results  # noqa: E402
from benchmarks.pytorch_techniques import BASELINE_EPOCHS, train_baseline  # noqa: E402

VARIANTS = ("engine", "global BN raw", "global BN mean", "global L2 LAMP", "uniform L2")


def main(argv: list[str] | None = None) -> None:

    from edgeopt.frameworks import ModelSource
    from edgeopt.frameworks.pytorch.backend import PyTorchBackend

    args = parse_args(__doc__.splitlines()[0], argv, "mobilenet_v2", "0.1,0.2,0.3,0.4,0.5,0.6", "pruning_ranking.md")
    ratios, models = args.ratios, args.models
    split = validation_split()
    data, train, y_val, example, score = split.data, split.train, split.y_val, split.example, split.score

    rows: list[str] = []
    for name in models:
        model_file = train_baseline(name, args.work_dir, BASELINE_EPOCHS[name], seed=0)
        loaded = PyTorchBackend().load(ModelSource(path=model_file), data)
        for ratio in ratios:
            for variant in VARIANTS:
                macs, params, accuracy = _pruned(loaded, variant, ratio, example, train.x_train, score)
                rows.append(f"| {name} | {ratio:.0%} | {variant} | {macs:.2f}x | {params:.2f}x | {accuracy:.1f} |")
                print(rows[-1], file=sys.stderr, flush=True)

    command = "python benchmarks/pruning_ranking.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# Structured pruning: which channel scores the global allocation ranks by",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `{command.strip()}` (load average "
        f"{os.getloadavg()[0]:.1f} when it finished; accuracy does not depend on load). Validation accuracy (%) on "
        f"the {len(y_val)} images the strength search carves from the train split, after batch-norm recalibration "
        "and no fine-tuning. Ratios are before / after (multiply-adds, parameters).",
        "",
        "| model | channels removed | ranking | MACs ratio | params ratio | recalibrated |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    write_results(args.out, lines)


def _pruned(loaded: Any, variant: str, ratio: float, example: Any, images: Any, score: Any) -> tuple[float, ...]:
    """Prunes a fresh copy one way; returns (MACs ratio, params ratio, recalibrated validation accuracy)."""
    import torch_pruning as tp

    from edgeopt.frameworks.pytorch import pruning

    module = pruning.trainable_copy(loaded, "prune_structured").eval()
    if variant == "uniform L2":
        macs_before, params_before = tp.utils.count_ops_and_params(module, example)
        tp.pruner.MetaPruner(
            module,
            example,
            importance=tp.importance.GroupMagnitudeImportance(p=2),
            pruning_ratio=ratio,
            global_pruning=False,
            ignored_layers=[pruning.classifier_layer(module)],
        ).step()
        macs_after, params_after = tp.utils.count_ops_and_params(module, example)
    else:
        inner = {
            "global BN raw": lambda: tp.importance.BNScaleImportance(normalizer=None),
            "global BN mean": lambda: tp.importance.BNScaleImportance(normalizer="mean"),
            "global L2 LAMP": lambda: tp.importance.GroupMagnitudeImportance(p=2, normalizer="lamp"),
        }.get(variant)

        class Variant(pruning._GuardedImportance):
            def __init__(self, unrankable: list[Any], ranking: str = "magnitude") -> None:
                super().__init__(unrankable, ranking)
                if inner is not None:
                    self.inner = inner()

        with mock.patch.object(pruning, "_GuardedImportance", Variant):
            summary = pruning.prune_channels(module, example, ratio, "prune_structured")
        macs_before, macs_after = summary.macs_before, summary.macs_after
        params_before, params_after = summary.params_before, summary.params_after
    pruning.recalibrate_batch_norm(module, images)
    return macs_before / macs_after, params_before / params_after, score(module)


if __name__ == "__main__":
    main()
