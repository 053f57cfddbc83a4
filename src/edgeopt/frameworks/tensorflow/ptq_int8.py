"""ptq_int8 for Keras: TFLiteConverter full-integer INT8 (weights and activations) from a representative dataset.

Calibration images come from the train split. The input and output tensors are int8 as well, because the board
then feeds quantized pixels without a float conversion op; their scale and zero point are recorded in
``TechniqueOutput.extra`` and applied by ``runtime.load_tflite`` so evaluation sees the same numbers a board would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from edgeopt.frameworks.tensorflow.convert import to_tflite
from edgeopt.frameworks.tensorflow.failures import readable_failures
from edgeopt.frameworks.tensorflow.runtime import io_quantization
from edgeopt.techniques import PtqInt8Config, TechniqueConfig, TechniqueContext, TechniqueOutput


def int8_output(
    model: Any, ctx: TechniqueContext, artifact: Path, calibration_samples: int, *, notes: str = "", seed: int = 0
) -> TechniqueOutput:
    """Convert ``model`` to full-integer INT8 at ``artifact`` and describe it; shared by QAT and hybrid."""
    ctx.reporter.stage("Converting to full-integer INT8 (calibrating on the train split)", 0.3)
    to_tflite(model, artifact, int8_data=ctx.data, calibration_samples=calibration_samples, io_int8=True, seed=seed)
    quant = io_quantization(artifact)
    ctx.reporter.stage("Converted", 1.0)
    return TechniqueOutput(
        artifact=artifact,
        precision="int8",
        model=model,
        notes=notes,
        extra={"io_quantization": quant, "calibration_samples": min(calibration_samples, len(ctx.data.x_train))},
    )


class PtqInt8:
    name: ClassVar[str] = "ptq_int8"
    runs_on_fixed_graph: ClassVar[bool] = True  # the converter reads a bare SavedModel graph as well

    @readable_failures
    def apply(self, ctx: TechniqueContext, config: TechniqueConfig) -> TechniqueOutput:
        if not isinstance(config, PtqInt8Config):
            config = PtqInt8Config.model_validate(config.model_dump())
        samples = min(config.calibration_samples, len(ctx.data.x_train))
        notes = (
            f"Full-integer INT8 (weights per-channel, activations per-tensor) calibrated on {samples} train images; "
            "int8 input and output tensors (scale and zero point recorded), run by LiteRT with XNNPACK."
        )
        if not config.per_channel:
            notes += " per_channel=False is not offered by the TFLite converter; weights stay per-channel."
        return int8_output(
            ctx.model.model, ctx, ctx.work_dir / f"{self.name}.tflite", samples, notes=notes, seed=config.seed
        )
