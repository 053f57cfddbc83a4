"""Post-training INT8: PT2E static quantization with the XNNPACK quantizer, lowered to an ExecuTorch ``.pte``.

Weights are symmetric INT8 per output channel, activations INT8 per tensor, calibrated on at most a few hundred
train images; XNNPACK then runs real INT8 kernels on the board.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch import nn
from torch.export import ExportedProgram

from edgeopt.data.dataset import Dataset
from edgeopt.frameworks.pytorch.export import drop_unused_attributes, export_program, save_pt2, to_pte
from edgeopt.frameworks.pytorch.layout import example_input, iterate_batches
from edgeopt.progress import StageReporter
from edgeopt.techniques import PtqInt8Config, TechniqueConfig, TechniqueContext, TechniqueOutput

CALIBRATION_BATCH = 32


def xnnpack_quantizer(*, per_channel: bool = True, is_qat: bool = False):  # type: ignore[no-untyped-def]
    """The XNNPACK quantizer with symmetric INT8 weights (per channel by default), shared by PTQ, QAT and hybrid."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    config = get_symmetric_quantization_config(is_per_channel=per_channel, is_qat=is_qat)
    return XNNPACKQuantizer().set_global(config)


def calibrate(prepared: nn.Module, data: Dataset, samples: int, reporter: StageReporter) -> int:
    """Runs at most ``samples`` train images through the observers; returns how many were used."""
    images = data.x_train[: max(1, min(samples, len(data.x_train)))]
    seen = 0
    with torch.no_grad():
        for x, _ in iterate_batches(images, batch_size=CALIBRATION_BATCH):
            prepared(x)
            seen += len(x)
            reporter.stage("Calibrating", 0.1 + 0.5 * seen / len(images))
    return seen


def finish_quantized(converted: torch.fx.GraphModule, example: torch.Tensor) -> ExportedProgram:
    """Drops the leftover FP32 weights and re-exports, so the program holds INT8 weights only."""
    drop_unused_attributes(converted)
    return torch.export.export(converted, (example,), strict=False)


def quantize_int8(
    module: nn.Module,
    data: Dataset,
    *,
    calibration_samples: int,
    reporter: StageReporter,
    per_channel: bool = True,
) -> ExportedProgram:
    """export -> prepare_pt2e (XNNPACK quantizer) -> calibrate on train images -> convert_pt2e -> re-export."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    example = example_input(data.image_shape)
    reporter.stage("Capturing the graph", 0.02)
    captured = export_program(module, example, strict=True, dynamic_batch=True).module()
    prepared = prepare_pt2e(captured, xnnpack_quantizer(per_channel=per_channel))  # type: ignore[arg-type]
    calibrate(prepared, data, calibration_samples, reporter)
    reporter.stage("Converting to INT8", 0.65)
    converted = convert_pt2e(prepared)
    return finish_quantized(converted, example)


def write_quantized(program: ExportedProgram, ctx: TechniqueContext, name: str) -> tuple[Path, Path]:
    """Writes ``<name>.pte`` (the deployable artifact) and ``<name>.pt2`` into the work folder."""
    example = example_input(ctx.data.image_shape)
    ctx.reporter.stage("Lowering to ExecuTorch (XNNPACK)", 0.75)
    pte = to_pte(program, example, ctx.work_dir / f"{name}.pte")
    pt2 = save_pt2(program, ctx.work_dir / f"{name}.pt2")
    return pte, pt2


class PtqInt8:
    name: ClassVar[str] = "ptq_int8"

    def apply(self, ctx: TechniqueContext, config: TechniqueConfig) -> TechniqueOutput:
        from edgeopt.frameworks.pytorch.io import require_module

        assert isinstance(config, PtqInt8Config)
        module = require_module(ctx.model, self.name)
        program = quantize_int8(
            module,
            ctx.data,
            calibration_samples=config.calibration_samples,
            reporter=ctx.reporter,
            per_channel=config.per_channel,
        )
        pte, pt2 = write_quantized(program, ctx, self.name)
        granularity = "per-channel" if config.per_channel else "per-tensor"
        return TechniqueOutput(
            artifact=pte,
            precision="int8",
            model=module,
            formats={"pt2": pt2},
            notes=(
                f"INT8 weights ({granularity}, symmetric) and INT8 activations calibrated on "
                f"{min(config.calibration_samples, len(ctx.data.x_train))} train images; "
                "the .pte runs XNNPACK's INT8 kernels."
            ),
        )
