"""hybrid_prune_int8 for Keras: structured filter pruning and fine-tune, then post-training full-integer INT8.

The two compound: pruning removes a share of all prunable channels, allocated across layers (``filter_pruning``;
searched for the accuracy budget unless the config sets ``channel_sparsity``), INT8 stores each remaining
weight in one byte instead of four. Post-training INT8 is used rather than pruning-preserving QAT
because the pruned model is physically smaller (no zeros to preserve) and PTQ of the fine-tuned model loses well
under a point on the reference models (benchmarks/results/tensorflow.md), at no extra training.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from edgeopt.frameworks.tensorflow.failures import readable_failures
from edgeopt.frameworks.tensorflow.filter_pruning import describe, prune_and_fine_tune, search_filter_sparsity
from edgeopt.frameworks.tensorflow.ptq_int8 import int8_output
from edgeopt.strength_search import search_note
from edgeopt.techniques import HybridPruneInt8Config, TechniqueConfig, TechniqueContext, TechniqueOutput


class HybridPruneInt8:
    name: ClassVar[str] = "hybrid_prune_int8"
    searches_strength: ClassVar[bool] = True

    @readable_failures
    def apply(self, ctx: TechniqueContext, config: TechniqueConfig) -> TechniqueOutput:
        from edgeopt.frameworks.tensorflow.search import finish_record

        if not isinstance(config, HybridPruneInt8Config):
            config = HybridPruneInt8Config.model_validate(config.model_dump())

        # The budget is checked on the pruned FP32 candidates: INT8 afterwards costs about half a point or less
        # (ptq_int8's expectation), which the short recovery's pessimism covers.
        ratio, record = search_filter_sparsity(
            ctx, self.name, config.channel_sparsity, config, ctx.reporter.sub(0.0, 0.4)
        )
        rest = ctx.reporter.sub(0.4 if record else 0.0, 1.0)
        pruned = prune_and_fine_tune(ctx, ratio, config, rest.sub(0.0, 0.85))
        finish_record(record, pruned.model, ctx)
        samples = min(config.calibration_samples, len(ctx.data.x_train))
        notes = (
            (search_note(record) + " " if record else "")
            + describe(pruned, ratio, config.epochs)
            + f" Then post-training full-integer INT8 calibrated on {samples} train images (int8 input and output);"
            " PTQ rather than pruning-preserving QAT, since the pruned model has no zeros to keep."
        )
        output = int8_output(
            pruned.model,
            replace(ctx, reporter=rest.sub(0.85, 1.0)),
            ctx.work_dir / f"{self.name}.tflite",
            samples,
            notes=notes,
            seed=config.seed,
        )
        output.search = record
        return output
