"""hybrid_prune_int8 for Keras: structured filter pruning and fine-tune, then post-training full-integer INT8.

The two compound: pruning removes half the filters (about 4x fewer weights between pruned layers), INT8 stores
each remaining weight in one byte instead of four. Post-training INT8 is used rather than pruning-preserving QAT
because the pruned model is physically smaller (no zeros to preserve) and PTQ of the fine-tuned model loses well
under a point on the reference models (benchmarks/results/tensorflow.md), at no extra training.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from edgeopt.frameworks.tensorflow.failures import readable_failures
from edgeopt.frameworks.tensorflow.filter_pruning import describe, prune_and_fine_tune
from edgeopt.frameworks.tensorflow.ptq_int8 import int8_output
from edgeopt.techniques import HybridPruneInt8Config, TechniqueConfig, TechniqueContext, TechniqueOutput


class HybridPruneInt8:
    name: ClassVar[str] = "hybrid_prune_int8"
    framework: ClassVar[str] = "tensorflow"
    config_class: ClassVar[type[TechniqueConfig]] = HybridPruneInt8Config

    @readable_failures
    def apply(self, ctx: TechniqueContext, config: TechniqueConfig) -> TechniqueOutput:
        if not isinstance(config, HybridPruneInt8Config):
            config = HybridPruneInt8Config.model_validate(config.model_dump())
        pruned = prune_and_fine_tune(ctx, config.channel_sparsity, config, ctx.reporter.sub(0.0, 0.85))
        samples = min(config.calibration_samples, len(ctx.data.x_train))
        notes = (
            describe(pruned, config.epochs)
            + f" Then post-training full-integer INT8 calibrated on {samples} train images (int8 input and output);"
            " PTQ rather than pruning-preserving QAT, since the pruned model has no zeros to keep."
        )
        return int8_output(
            pruned.model,
            replace(ctx, reporter=ctx.reporter.sub(0.85, 1.0)),
            ctx.work_dir / f"{self.name}.tflite",
            samples,
            notes=notes,
            seed=config.seed,
        )
