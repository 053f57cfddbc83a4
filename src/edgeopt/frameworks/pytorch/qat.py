"""Quantization-aware training: PT2E ``prepare_qat_pt2e`` with the XNNPACK quantizer, a short fine-tune at a small
learning rate with simulated INT8 rounding, then convert and lower to an INT8 ``.pte`` like ``ptq_int8``.
"""

from __future__ import annotations

from typing import ClassVar

from edgeopt.frameworks.pytorch.export import export_program
from edgeopt.frameworks.pytorch.layout import example_input
from edgeopt.frameworks.pytorch.ptq_int8 import calibrate, finish_quantized, write_quantized, xnnpack_quantizer
from edgeopt.frameworks.pytorch.training import fine_tune, set_train_mode
from edgeopt.techniques import QatInt8Config, TechniqueConfig, TechniqueContext, TechniqueOutput

CALIBRATION_SAMPLES = 256  # observers see these train images before the first step, so training starts calibrated


class QatInt8:
    name: ClassVar[str] = "qat_int8"

    def apply(self, ctx: TechniqueContext, config: TechniqueConfig) -> TechniqueOutput:
        import copy

        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

        from edgeopt.frameworks.pytorch.io import require_module

        assert isinstance(config, QatInt8Config)
        module = require_module(ctx.model, self.name)
        lr = config.learning_rate_for("pytorch")
        example = example_input(ctx.data.image_shape)
        ctx.reporter.stage("Capturing the graph for quantization-aware training", 0.02)
        # A copy: the loaded model is shared with the techniques that run after this one.
        set_train_mode(module, False)
        captured = export_program(copy.deepcopy(module), example, strict=True, dynamic_batch=True).module()
        prepared = prepare_qat_pt2e(captured, xnnpack_quantizer(per_channel=True, is_qat=True))  # type: ignore[arg-type]
        calibrate(prepared, ctx.data, CALIBRATION_SAMPLES, ctx.reporter.sub(0.0, 0.1))
        fine_tune(
            prepared,
            ctx.data,
            epochs=config.epochs,
            lr=lr,
            batch_size=config.batch_size,
            reporter=ctx.reporter.sub(0.1, 0.75),
            stage="Quantization-aware fine-tuning",
            seed=config.seed,
        )
        ctx.reporter.stage("Converting to INT8", 0.76)
        set_train_mode(prepared, False)
        program = finish_quantized(convert_pt2e(prepared), example)
        pte, pt2 = write_quantized(program, ctx, self.name)
        return TechniqueOutput(
            artifact=pte,
            precision="int8",
            model=module,
            formats={"pt2": pt2},
            notes=(
                f"PT2E quantization-aware training: {config.epochs} epoch(s) at learning rate {lr:g} "
                "with simulated INT8 (per-channel symmetric weights, per-tensor activations); the .pte runs "
                "XNNPACK's INT8 kernels."
            ),
        )
