"""Structured pruning then INT8: the pruned network has fewer channels, and each remaining weight takes one byte.

Both halves are the same code as ``prune_structured`` and ``ptq_int8``; only their composition lives here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from edgeopt.frameworks.pytorch.pruning import prune_and_fine_tune, search_channel_sparsity
from edgeopt.frameworks.pytorch.ptq_int8 import quantize_int8, write_quantized
from edgeopt.strength_search import search_note
from edgeopt.techniques import HybridPruneInt8Config, TechniqueConfig, TechniqueContext, TechniqueOutput


class HybridPruneInt8:
    name: ClassVar[str] = "hybrid_prune_int8"
    searches_strength: ClassVar[bool] = True

    def apply(self, ctx: TechniqueContext, config: TechniqueConfig) -> TechniqueOutput:
        from edgeopt.frameworks.pytorch.search import finish_record

        assert isinstance(config, HybridPruneInt8Config)
        # The budget is checked on the pruned FP32 candidates: INT8 afterwards costs well under half a point
        # (ptq_int8's expectation), which the short recovery's pessimism more than covers.
        ratio, record = search_channel_sparsity(
            ctx,
            self.name,
            config.channel_sparsity,
            learning_rate=config.learning_rate,
            batch_size=config.batch_size,
            reporter=ctx.reporter.sub(0.0, 0.4),
        )
        rest = ctx.reporter.sub(0.4 if record else 0.0, 1.0)
        pruned, summary = prune_and_fine_tune(
            ctx,
            channel_sparsity=ratio,
            epochs=config.epochs,
            learning_rate=config.learning_rate,
            batch_size=config.batch_size,
            reporter=rest.sub(0.0, 0.7),
        )
        finish_record(record, pruned, ctx)
        program = quantize_int8(
            pruned,
            ctx.data,
            calibration_samples=config.calibration_samples,
            reporter=rest.sub(0.7, 0.85),
        )
        pte, pt2 = write_quantized(program, replace(ctx, reporter=rest.sub(0.85, 1.0)), self.name)
        return TechniqueOutput(
            artifact=pte,
            precision="int8",
            model=pruned,
            formats={"pt2": pt2},
            search=record,
            notes=(
                (search_note(record) + " " if record else "")
                + f"{ratio:.0%} of the channels removed (torch-pruning, {summary.how()}; "
                f"{summary.describe()}) and fine-tuned {config.epochs} epoch(s), then INT8 weights (per-channel) "
                f"and activations calibrated on {min(config.calibration_samples, len(ctx.data.x_train))} train "
                "images; the .pte runs XNNPACK's INT8 kernels."
            ),
        )
