"""Post-training INT4 weights, packed two per byte inside the deployable ``.pte``.

Per output channel (the default), the runtime executes real 4-bit kernels:
- every Conv2d (groups=1, all but the first, batch norm folded in) is rewritten as patch extraction (pad, strided
  slices, concatenation) followed by a Linear on the patches, so that XNNPACK's 4-bit GEMM can run it;
- every Linear then gets symmetric 4-bit per-channel weights with dynamic 8-bit activations (PT2E with the XNNPACK
  quantizer, "8da4w"); the XNNPACK delegate stores those weights packed two per byte (qc4w) in the ``.pte`` and
  runs its qd8-f32-qc4w GEMM kernels;
- the first convolution (reading the image, a negligible share of the weights) and grouped/depthwise convolutions
  (XNNPACK has no 4-bit convolution) stay FP32.
With ``group_size`` the weights need a scale per group of inputs, which the XNNPACK path does not take for
convolutions here; then each weight is stored as a packed uint8 buffer (two 4-bit codes per byte) plus FP32
scales and unpacked to FP32 inside the graph at every inference: the same small file, but FP32 compute and
slower than the FP32 model. No library on this stack offers more: torchao's int4 layouts need CUDA and
``IntxWeightOnlyConfig`` stores int4 values in int8 bytes (~4x only; docs/library-notes.md).
"""

from __future__ import annotations

import operator
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.export import ExportedProgram
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


def conv_as_linear(
    x: torch.Tensor,
    weight_2d: torch.Tensor,
    bias: torch.Tensor | None,
    kernel: list[int],
    stride: list[int],
    padding: list[int],
    dilation: list[int],
) -> torch.Tensor:
    """A groups=1 convolution as patch extraction + Linear (im2col in ops ExecuTorch runs); traced into the graph.

    ``weight_2d`` is the convolution weight laid out (out, kh, kw, in) and flattened, matching the patch order.
    """
    kh, kw = kernel
    x = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))
    oh = (x.shape[2] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (x.shape[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    patches = [
        x[
            :,
            :,
            i * dilation[0] : i * dilation[0] + (oh - 1) * stride[0] + 1 : stride[0],
            j * dilation[1] : j * dilation[1] + (ow - 1) * stride[1] + 1 : stride[1],
        ]
        for i in range(kh)
        for j in range(kw)
    ]
    columns = torch.cat(patches, dim=1) if len(patches) > 1 else patches[0]
    rows = columns.permute(0, 2, 3, 1).reshape(-1, weight_2d.shape[1])  # 2-D so XNNPACK's GEMM takes it
    out = F.linear(rows, weight_2d, bias)
    return out.reshape(x.shape[0], oh, ow, weight_2d.shape[0]).permute(0, 3, 1, 2)


def convs_to_linears(graph_module: GraphModule) -> dict[str, int]:
    """Rewrites every groups=1 convolution but the first as ``conv_as_linear``; returns what was converted."""
    counts = {"converted": 0, "kept_fp32_weights": 0}
    convs = [n for n in graph_module.graph.nodes if n.op == "call_function" and n.target == WEIGHTED_OPS[0]]
    for position, node in enumerate(convs):
        x, weight_node, bias, stride, padding, dilation, groups = (list(node.args) + [None] * 7)[:7]
        target = _weight_owner(graph_module, node)
        weight = operator.attrgetter(target)(graph_module) if target else None
        if position == 0 or weight is None or (groups or 1) != 1:
            counts["kept_fp32_weights"] += weight.numel() if weight is not None else 0
            continue
        name = f"{target.replace('.', '_')}_as_linear"
        flat = weight.detach().permute(0, 2, 3, 1).reshape(weight.shape[0], -1).contiguous()
        graph_module.register_parameter(name, nn.Parameter(flat, requires_grad=False))
        with graph_module.graph.inserting_before(node):
            weight_2d = graph_module.graph.get_attr(name)
            args = (x, weight_2d, bias, list(weight.shape[2:]), list(stride or [1, 1]), list(padding or [0, 0]),
                    list(dilation or [1, 1]))  # fmt: skip
            replacement = graph_module.graph.call_function(conv_as_linear, args)
        node.replace_all_uses_with(replacement)
        graph_module.graph.erase_node(node)
        counts["converted"] += 1
    graph_module.graph.lint()
    graph_module.recompile()
    return counts


def _folded_graph(module: nn.Module, example: torch.Tensor) -> GraphModule:
    from torchao.quantization.pt2e.utils import _fuse_conv_bn_

    graph_module = export_program(module, example, strict=True).module()
    _fuse_conv_bn_(graph_module)  # fold batch norm first: the folded weights are what gets quantized
    return graph_module  # type: ignore[return-value]


def quantize_int4_xnnpack(module: nn.Module, input_shape: tuple[int, int, int]) -> tuple[ExportedProgram, dict]:
    """Convs as Linears, then 8-bit dynamic activations x 4-bit per-channel weights on every Linear (XNNPACK)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    example = example_input(input_shape)
    graph_module = _folded_graph(module, example)
    counts = convs_to_linears(graph_module)
    drop_unused_attributes(graph_module)
    linears = sum(1 for n in graph_module.graph.nodes if n.op == "call_function" and n.target == WEIGHTED_OPS[1])
    linears += counts["converted"]  # conv_as_linear nodes hold their Linear inside
    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True, weight_qmin=QMIN, weight_qmax=QMAX)
    quantizer = XNNPACKQuantizer().set_operator_type(torch.ops.aten.linear.default, config)
    captured = torch.export.export(graph_module, (example,), strict=False).module()
    prepared = prepare_pt2e(captured, quantizer)  # type: ignore[arg-type]
    prepared(example)  # dynamic activations need no calibration; one run initialises the weight observers
    converted = convert_pt2e(prepared)
    drop_unused_attributes(converted)
    counts["layers"] = linears
    return torch.export.export(converted, (example,), strict=False), counts


def quantize_int4_grouped(
    module: nn.Module, input_shape: tuple[int, int, int], group_size: int
) -> tuple[ExportedProgram, dict]:
    """Packed uint8 buffers + per-group scales, unpacked to FP32 inside the graph at every inference."""
    example = example_input(input_shape)
    graph_module = _folded_graph(module, example)
    counts = pack_weights(graph_module, group_size)
    graph_module.graph.lint()
    drop_unused_attributes(graph_module)
    return torch.export.export(graph_module, (example,), strict=False), counts


def _notes_xnnpack(counts: dict[str, int]) -> str:
    return (
        f"{counts['layers']} conv/linear layers (batch norm folded; convolutions run as patch extraction + Linear) "
        "hold symmetric 4-bit per-channel weights that the XNNPACK delegate stores packed two per byte; at run time "
        "XNNPACK quantizes each activation to 8 bits on the fly and runs its 4-bit-weight GEMM kernels "
        f"(qd8-f32-qc4w). The first convolution and any grouped/depthwise ones ({counts['kept_fp32_weights']} "
        "weights) keep FP32 weights, as XNNPACK has no 4-bit convolution."
    )


def _notes_grouped(counts: dict[str, int], group_size: int) -> str:
    return (
        f"{counts['weights']} weights of {counts['layers']} conv/linear layers (batch norm folded) stored as "
        f"symmetric 4-bit codes packed two per byte with one FP32 scale per group of {group_size} inputs. At every "
        "inference the .pte unpacks them to FP32 inside the graph and runs FP32 convolutions on ExecuTorch's "
        f"portable kernels (XNNPACK takes only constant weights): smaller, but slower than FP32. The first layer "
        f"({counts['fp32_weights']} weights) keeps FP32 weights. Leave group_size unset for XNNPACK's 4-bit kernels."
    )


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
        if config.group_size:
            program, counts = quantize_int4_grouped(module, ctx.data.image_shape, config.group_size)
            precision, notes = "fp32", _notes_grouped(counts, config.group_size)
        else:
            program, counts = quantize_int4_xnnpack(module, ctx.data.image_shape)
            precision, notes = "int4", _notes_xnnpack(counts)
        ctx.reporter.stage("Lowering to ExecuTorch (XNNPACK)", 0.5)
        example = example_input(ctx.data.image_shape)
        pte = to_pte(program, example, ctx.work_dir / f"{self.name}.pte")
        pt2 = save_pt2(program, ctx.work_dir / f"{self.name}.pt2")
        extra: dict[str, Any] = {"int4_layers": counts["layers"]}
        return TechniqueOutput(
            artifact=pte, precision=precision, model=module, formats={"pt2": pt2}, notes=notes, extra=extra
        )
