"""Structured pruning then INT8: the pruned network has fewer channels, and each remaining weight takes one byte.

Both halves are the same code as ``prune_structured`` and ``ptq_int8``; only their composition lives here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from edgeopt.frameworks.pytorch.pruning import prune_and_fine_tune
from edgeopt.frameworks.pytorch.ptq_int8 import quantize_int8, write_quantized
from edgeopt.techniques import HybridPruneInt8Config, TechniqueConfig, TechniqueContext, TechniqueOutput


class HybridPruneInt8:
    name: ClassVar[str] = "hybrid_prune_int8"
    framework: ClassVar[str] = "pytorch"
    config_class: ClassVar[type[TechniqueConfig]] = HybridPruneInt8Config

    def apply(self, ctx: TechniqueContext, config: TechniqueConfig) -> TechniqueOutput:
        assert isinstance(config, HybridPruneInt8Config)
        pruned, summary = prune_and_fine_tune(
            ctx,
            channel_sparsity=config.channel_sparsity,
            epochs=config.epochs,
            learning_rate=config.learning_rate,
            batch_size=config.batch_size,
            reporter=ctx.reporter.sub(0.0, 0.7),
        )
        program = quantize_int8(
            pruned,
            ctx.data,
            calibration_samples=config.calibration_samples,
            reporter=ctx.reporter.sub(0.7, 0.85),
        )
        pte, pt2 = write_quantized(program, replace(ctx, reporter=ctx.reporter.sub(0.85, 1.0)), self.name)
        return TechniqueOutput(
            artifact=pte,
            precision="int8",
            model=pruned,
            formats={"pt2": pt2},
            notes=(
                f"{config.channel_sparsity:.0%} of the channels removed (torch-pruning, L2 magnitude; "
                f"{summary.describe()}) and fine-tuned {config.epochs} epoch(s), then INT8 weights (per-channel) "
                f"and activations calibrated on {min(config.calibration_samples, len(ctx.data.x_train))} train "
                "images; the .pte runs XNNPACK's INT8 kernels."
            ),
        )
