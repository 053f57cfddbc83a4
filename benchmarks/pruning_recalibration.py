"""How much structured pruning costs before any fine-tuning, and what batch-norm recalibration and the channel
ranking change: the figures behind ``recalibrate_batch_norm`` and the next step for per-layer pruning (issue 14).

For each model (a baseline file from ``benchmarks/pytorch_techniques.py``'s work folder, trained there if absent)
and each ratio, channels are removed from a fresh copy and the copy is scored on the validation split the strength
search uses (``carve_validation``: carved from the train split; the test split is not read):

- **engine**: ``prune_channels`` as the techniques call it (uniform per-layer L2 magnitude until commit ea5d104, then
  global allocation ranked by batch-norm scale with a per-layer cap: ``channel_ranking``), scored with the
  statistics the batch norms kept from training, then after ``recalibrate_batch_norm``, then after the search's
  short recovery fine-tune (``recovery_subset``, one pass, Adam at the technique's rate) without and with the
  recalibration first;
- **ranking**: torch-pruning's ``MetaPruner`` directly with other channel rankings (first-order Taylor on 256 train
  images, batch-norm scale) and global instead of per-layer allocation (at most 80 % of a layer), scored after
  recalibration. Their ``max_pruning_ratio`` of 0.8 caps nothing in one-shot global pruning (torch-pruning checks it
  only between iterative steps); the engine applies its cap in the importance instead (``_GuardedImportance``).

    .venv/bin/python benchmarks/pruning_recalibration.py [--models mobilenet_v2,resnet18] [--ratios 0.05,0.1,0.2]

Writes ``benchmarks/results/pruning_recalibration.md``.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import torch._dynamo  # noqa: F401 - before anything that might import TensorFlow (docs/library-notes.md)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.pruning_bench import parse_args, validation_split, write_results  # noqa: E402
from benchmarks.pytorch_techniques import BASELINE_EPOCHS, train_baseline  # noqa: E402

RANKINGS = ("uniform L2", "uniform Taylor", "global Taylor", "global BN scale")


def main(argv: list[str] | None = None) -> None:

    from edgeopt.frameworks import ModelSource
    from edgeopt.frameworks.pytorch.backend import PyTorchBackend
    from edgeopt.frameworks.pytorch.pruning import prune_channels, recalibrate_batch_norm, trainable_copy
    from edgeopt.frameworks.pytorch.training import fine_tune
    from edgeopt.progress import silent_reporter
    from edgeopt.strength_search import recovery_subset
    from edgeopt.techniques import PruneStructuredConfig

    args = parse_args(
        __doc__.splitlines()[0], argv, "mobilenet_v2,resnet18", "0.05,0.1,0.2", "pruning_recalibration.md"
    )
    ratios, models = args.ratios, args.models
    lr = PruneStructuredConfig().learning_rate
    split = validation_split()
    data, train, y_val, example, score = split.data, split.train, split.y_val, split.example, split.score
    recovery = recovery_subset(train, seed=0)

    engine_rows: list[str] = []
    ranking_rows: list[str] = []
    for name in models:
        model_file = train_baseline(name, args.work_dir, BASELINE_EPOCHS[name], seed=0)
        loaded = PyTorchBackend().load(ModelSource(path=model_file), data)
        original = score(trainable_copy(loaded, "prune_structured"))
        for ratio in ratios:
            pruned = trainable_copy(loaded, "prune_structured")
            summary = prune_channels(pruned, example, ratio, "prune_structured")
            stale = score(pruned)
            recalibrated = copy.deepcopy(pruned)
            recalibrate_batch_norm(recalibrated, train.x_train)
            fresh = score(recalibrated)
            for module in (pruned, recalibrated):
                fine_tune(module, recovery, epochs=1, lr=lr, batch_size=64, reporter=silent_reporter())
            engine_rows.append(
                f"| {name} | {original:.1f} | {ratio:.0%} | {summary.macs_before / summary.macs_after:.2f}x | "
                f"{stale:.1f} | {fresh:.1f} | {score(pruned):.1f} | {score(recalibrated):.1f} |"
            )
            for ranking in RANKINGS:
                macs_ratio, accuracy = _ranked(loaded, ranking, ratio, example, train, score)
                ranking_rows.append(f"| {name} | {ratio:.0%} | {ranking} | {macs_ratio:.2f}x | {accuracy:.1f} |")
            print(engine_rows[-1], file=sys.stderr, flush=True)

    command = "python benchmarks/pruning_recalibration.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    load = os.getloadavg()[0]
    lines = [
        "# Structured pruning before fine-tuning: batch-norm recalibration and channel ranking",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `{command.strip()}` (load average {load:.1f} "
        "when it finished; accuracy does not depend on load). Models trained on digits at 32x32 as in "
        "`benchmarks/pytorch_techniques.py`; validation accuracy (%) on the "
        f"{len(y_val)} images the strength search carves from the train split. MACs ratio = before / after.",
        "",
        "## What the engine does (`prune_channels`), with and without `recalibrate_batch_norm`",
        "",
        "| model | original | channels removed | MACs ratio | stale statistics | recalibrated | stale + short "
        "recovery | recalibrated + short recovery |",
        "|---|---|---|---|---|---|---|---|",
        *engine_rows,
        "",
        "## Other channel rankings (torch-pruning `MetaPruner`, recalibrated, no fine-tuning; not in the engine)",
        "",
        "| model | ratio | ranking | MACs ratio | recalibrated |",
        "|---|---|---|---|---|",
        *ranking_rows,
        "",
    ]
    write_results(args.out, lines)


def _ranked(loaded: Any, ranking: str, ratio: float, example: Any, train: Any, score: Any) -> tuple[float, float]:
    """Prunes a fresh copy with torch-pruning's own ranking and allocation; returns (MACs ratio, accuracy)."""
    import torch
    import torch_pruning as tp

    from edgeopt.frameworks.pytorch.layout import to_nchw
    from edgeopt.frameworks.pytorch.pruning import classifier_layer, recalibrate_batch_norm, trainable_copy

    module = trainable_copy(loaded, "prune_structured").eval()
    before = tp.utils.count_ops_and_params(module, example)[0]
    allocation, criterion = ranking.split(" ", 1)
    importance = {
        "L2": tp.importance.GroupMagnitudeImportance(p=2),
        "Taylor": tp.importance.GroupTaylorImportance(),
        "BN scale": tp.importance.BNScaleImportance(),
    }[criterion]
    pruner = tp.pruner.MetaPruner(
        module,
        example,
        importance=importance,
        pruning_ratio=ratio,
        global_pruning=allocation == "global",
        max_pruning_ratio=0.8,
        ignored_layers=[classifier_layer(module)],
    )
    if criterion == "Taylor":
        module.zero_grad()
        images, labels = to_nchw(train.x_train[:256]), torch.as_tensor(train.y_train[:256]).long()
        torch.nn.functional.cross_entropy(module(images), labels).backward()
    pruner.step()
    after = tp.utils.count_ops_and_params(module, example)[0]
    recalibrate_batch_norm(module, train.x_train)
    return before / after, score(module)


if __name__ == "__main__":
    main()
