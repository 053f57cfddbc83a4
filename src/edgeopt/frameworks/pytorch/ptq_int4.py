"""Post-training INT4 weights, packed two per byte inside the deployable ``.pte``.

What the artifact holds and what the runtime executes (also written to the result's ``notes``):
- every Conv2d / Linear weight but the first layer's (batch norm folded in first) is stored as a uint8 buffer
  holding two signed 4-bit values per byte (offset by 8), plus one float32 scale per output channel, or per group
  of ``group_size`` inputs;
- at every inference the graph itself unpacks them (byte to float, split into high/low nibble with floor division
  by 16, subtract 8, multiply by the scale) to FP32
  weights and runs FP32 convolutions; activations stay FP32.
No library on this stack writes 4-bit convolution weights that ExecuTorch runs: torchao's int4 layouts need CUDA,
``IntxWeightOnlyConfig`` stores int4 values in int8 bytes (only ~4x), and XNNPACK's 4-bit path covers Linear only
(shared/PITFALLS.md). So the file is ~8x smaller, but the run is not faster than FP32: unpacking costs time.
"""

from __future__ import annotations

import operator
from typing import ClassVar

import torch
from torch import nn
from torch.fx import GraphModule, Node

from edgeopt.frameworks.pytorch.export import drop_unused_attributes, export_program, save_pt2, to_pte
from edgeopt.frameworks.pytorch.layout import example_input
from edgeopt.techniques import PtqInt4Config, TechniqueConfig, TechniqueContext, TechniqueOutput

QMIN, QMAX = -8, 7
CLIP_RATIOS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7)  # per-row clipping searched to minimise rounding error
WEIGHTED_OPS = (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default)


def quantize_rows(weight: torch.Tensor, group_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric 4-bit codes (int8 in [-8, 7], shape (rows, padded cols)) and scales (rows, groups).

    Each row is the flattened weight of one output channel; with ``group_size`` each run of that many inputs gets
    its own scale. The clipping ratio with the smallest squared error is chosen per row/group, which keeps more
    accuracy than scaling to the absolute maximum when a few weights are outliers.
    """
    rows = weight.detach().reshape(weight.shape[0], -1).float()
    cols = rows.shape[1]
    group = group_size if group_size and group_size < cols else cols
    padded = -(-cols // group) * group
    grouped = nn.functional.pad(rows, (0, padded - cols)).reshape(rows.shape[0], -1, group)
    amax = grouped.abs().amax(dim=2, keepdim=True).clamp_min(1e-12)
    best_err = torch.full(amax.shape, float("inf"))
    best_scale = amax / QMAX
    for ratio in CLIP_RATIOS:
        scale = amax * ratio / QMAX
        codes = torch.clamp(torch.round(grouped / scale), QMIN, QMAX)
        err = ((codes * scale - grouped) ** 2).sum(dim=2, keepdim=True)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_scale = torch.where(better, scale, best_scale)
    codes = torch.clamp(torch.round(grouped / best_scale), QMIN, QMAX).to(torch.int8)
    return codes.reshape(rows.shape[0], padded), best_scale.squeeze(2)


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """int8 codes in [-8, 7], shape (rows, cols) -> uint8 (rows, ceil(cols / 2)): element 2i low nibble, 2i+1 high."""
    if codes.shape[1] % 2:
        codes = nn.functional.pad(codes, (0, 1))
    nibbles = (codes.to(torch.int16) + 8).to(torch.uint8)
    return nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)


def unpack_int4(packed: torch.Tensor, scales: torch.Tensor, shape: list[int], group: int) -> torch.Tensor:
    """The inverse of ``pack_int4`` times the scales, in ops ExecuTorch's kernels run (traced into the graph)."""
    as_float = packed.to(torch.float32)  # exact for 0..255; the split below stays in core ATen float ops
    high = torch.floor(as_float / 16.0)
    low = as_float - high * 16.0
    codes = torch.stack((low, high), dim=2).reshape(packed.shape[0], -1)[:, : scales.shape[1] * group] - 8.0
    values = (codes.reshape(packed.shape[0], -1, group) * scales.unsqueeze(2)).reshape(packed.shape[0], -1)
    cols = 1
    for size in shape[1:]:
        cols *= size
    return values[:, :cols].reshape(shape)


def _weight_owner(graph_module: GraphModule, node: Node) -> str | None:
    weight = node.args[1]
    return weight.target if isinstance(weight, Node) and weight.op == "get_attr" else None  # type: ignore[return-value]


def pack_weights(graph_module: GraphModule, group_size: int | None) -> dict[str, int]:
    """Replaces each conv/linear weight read by an in-graph unpack of a packed INT4 buffer; returns counts.

    The first layer (the one that reads the image) keeps FP32 weights: it holds a negligible share of the weights
    (0.07 % of the demo CNN, 0.08 % of ResNet18) but 4-bit codes for its few-input filters cost the demo CNN
    1.7 accuracy points, against 0.3 without it.
    """
    counts = {"layers": 0, "weights": 0, "fp32_weights": 0}
    weighted = [n for n in graph_module.graph.nodes if n.op == "call_function" and n.target in WEIGHTED_OPS]
    for position, node in enumerate(weighted):
        target = _weight_owner(graph_module, node)
        if target is None:
            continue
        if position == 0:
            counts["fp32_weights"] += operator.attrgetter(target)(graph_module).numel()
            continue
        weight = operator.attrgetter(target)(graph_module)
        codes, scales = quantize_rows(weight, group_size)
        group = codes.shape[1] // scales.shape[1]
        stem = target.replace(".", "_")
        graph_module.register_buffer(f"{stem}_int4", pack_int4(codes))
        graph_module.register_buffer(f"{stem}_scale", scales.contiguous())
        with graph_module.graph.inserting_before(node):
            packed_node = graph_module.graph.get_attr(f"{stem}_int4")
            scale_node = graph_module.graph.get_attr(f"{stem}_scale")
            unpacked = graph_module.graph.call_function(
                unpack_int4, (packed_node, scale_node, list(weight.shape), group)
            )
        node.replace_input_with(node.args[1], unpacked)
        counts["layers"] += 1
        counts["weights"] += weight.numel()
    return counts


def quantize_int4(module: nn.Module, input_shape: tuple[int, int, int], group_size: int | None) -> tuple:
    """Returns (ExportedProgram with packed INT4 weights, counts)."""
    from torchao.quantization.pt2e.utils import _fuse_conv_bn_

    example = example_input(input_shape)
    graph_module = export_program(module, example, strict=True).module()
    _fuse_conv_bn_(graph_module)  # fold batch norm first: the folded weights are what gets quantized
    counts = pack_weights(graph_module, group_size)
    graph_module.graph.lint()
    drop_unused_attributes(graph_module)
    return torch.export.export(graph_module, (example,), strict=False), counts


class PtqInt4:
    name: ClassVar[str] = "ptq_int4"
    framework: ClassVar[str] = "pytorch"
    config_class: ClassVar[type[TechniqueConfig]] = PtqInt4Config

    def apply(self, ctx: TechniqueContext, config: TechniqueConfig) -> TechniqueOutput:
        from edgeopt.errors import Unsupported
        from edgeopt.frameworks.pytorch.io import require_module

        assert isinstance(config, PtqInt4Config)
        if not config.symmetric:
            raise Unsupported("ptq_int4 implements symmetric 4-bit weights only; set symmetric=true.")
        module = require_module(ctx.model, self.name)
        ctx.reporter.stage("Quantizing weights to 4 bits", 0.1)
        program, counts = quantize_int4(module, ctx.data.image_shape, config.group_size)
        ctx.reporter.stage("Lowering to ExecuTorch", 0.5)
        example = example_input(ctx.data.image_shape)
        pte = to_pte(program, example, ctx.work_dir / f"{self.name}.pte")
        pt2 = save_pt2(program, ctx.work_dir / f"{self.name}.pt2")
        scales = f"groups of {config.group_size} inputs" if config.group_size else "output channel"
        return TechniqueOutput(
            artifact=pte,
            precision="fp32",
            model=module,
            formats={"pt2": pt2},
            notes=(
                f"{counts['weights']} weights of {counts['layers']} conv/linear layers (batch norm folded) stored as "
                f"symmetric 4-bit codes packed two per byte, one FP32 scale per {scales}. At every inference the "
                ".pte unpacks them to FP32 inside the graph (byte to float, nibble split by floor division, scale) and "
                "runs FP32 convolutions (XNNPACK where it accepts non-constant weights, portable kernels "
                "otherwise); activations stay FP32. The first layer "
                f"({counts['fp32_weights']} weights, reading the image) keeps FP32 weights. Smaller file, not "
                "faster: ExecuTorch has no 4-bit convolution kernel."
            ),
            extra={"int4_layers": counts["layers"], "int4_weights": counts["weights"]},
        )
