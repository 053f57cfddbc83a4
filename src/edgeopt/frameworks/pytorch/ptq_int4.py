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

import copy
import operator
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.export import ExportedProgram
from torch.fx import GraphModule, Node

from edgeopt.frameworks.pytorch.export import drop_unused_attributes, export_program, save_pt2, to_pte
from edgeopt.frameworks.pytorch.layout import example_input
from edgeopt.report import StrengthSearch
from edgeopt.strength_search import Candidate, int8_ladder, search_note
from edgeopt.techniques import PtqInt4Config, TechniqueConfig, TechniqueContext, TechniqueOutput

QMIN, QMAX = -8, 7
CLIP_RATIOS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7)  # per-row clipping searched to minimise rounding error
WEIGHTED_OPS = (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default)
SENSITIVITY_IMAGES = 128  # train images whose logits rank the layers' sensitivity to 4 bits


def quantize_rows(
    weight: torch.Tensor, group_size: int | None, qmin: int = QMIN, qmax: int = QMAX
) -> tuple[torch.Tensor, torch.Tensor]:
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
    best_scale = amax / qmax
    for ratio in CLIP_RATIOS:
        scale = amax * ratio / qmax
        codes = torch.clamp(torch.round(grouped / scale), qmin, qmax)
        err = ((codes * scale - grouped) ** 2).sum(dim=2, keepdim=True)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_scale = torch.where(better, scale, best_scale)
    codes = torch.clamp(torch.round(grouped / best_scale), qmin, qmax).to(torch.int8)
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


def quantize_int4_xnnpack(
    module: nn.Module, input_shape: tuple[int, int, int], keep_int8: Sequence[str] = ()
) -> tuple[ExportedProgram, dict]:
    """Convs as Linears, then 8-bit dynamic activations x 4-bit per-channel weights on every Linear (XNNPACK).

    The layers named in ``keep_int8`` (eager module names, see ``int4_layers``) get 8-bit per-channel weights
    instead (XNNPACK's qd8-f32-qc8w kernels): mixed precision for the layers 4 bits hurt most.
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.composable_quantizer import ComposableQuantizer

    example = example_input(input_shape)
    graph_module = _folded_graph(module, example)
    counts = convs_to_linears(graph_module)
    drop_unused_attributes(graph_module)
    linears = sum(1 for n in graph_module.graph.nodes if n.op == "call_function" and n.target == WEIGHTED_OPS[1])
    linears += counts["converted"]  # conv_as_linear nodes hold their Linear inside
    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True, weight_qmin=QMIN, weight_qmax=QMAX)
    quantizer: Any = XNNPACKQuantizer().set_operator_type(torch.ops.aten.linear.default, config)
    if keep_int8:
        # The graph names a converted convolution's weight "<layer>_weight_as_linear" (dots as underscores) and a
        # Linear's "<layer>.weight": both are matched to the eager names.
        wanted = {f"{name.replace('.', '_')}_weight_as_linear" for name in keep_int8}
        wanted |= {f"{name}.weight" for name in keep_int8}

        def is_int8(node: Node) -> bool:
            weight = node.args[1] if len(node.args) > 1 else None
            return isinstance(weight, Node) and weight.op == "get_attr" and str(weight.target) in wanted

        config8 = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True)
        quantizer = ComposableQuantizer(
            [
                XNNPACKQuantizer()
                .set_operator_type(torch.ops.aten.linear.default, config8)
                .set_filter_function(is_int8),
                quantizer.set_filter_function(lambda node: not is_int8(node)),
            ]
        )
    captured = torch.export.export(graph_module, (example,), strict=False).module()
    prepared = prepare_pt2e(captured, quantizer)  # type: ignore[arg-type]
    prepared(example)  # dynamic activations need no calibration; one run initialises the weight observers
    converted = convert_pt2e(prepared)
    drop_unused_attributes(converted)
    counts["layers"] = linears
    counts["int8_layers"] = len(keep_int8)
    return torch.export.export(converted, (example,), strict=False), counts


def int4_layers(module: nn.Module) -> list[str]:
    """Eager names of the layers the XNNPACK path gives 4-bit weights: Linears and groups=1 convolutions but the first.

    Mirrors ``convs_to_linears`` and ``pack_weights``: the layer that reads the image keeps FP32, and XNNPACK has no
    4-bit grouped or depthwise convolution.
    """
    weighted = [(name, layer) for name, layer in module.named_modules() if isinstance(layer, nn.Conv2d | nn.Linear)]
    return [
        name
        for position, (name, layer) in enumerate(weighted)
        if position > 0 and (isinstance(layer, nn.Linear) or layer.groups == 1)
    ]


def fake_quantized(module: nn.Module, int4: Sequence[str], int8: Sequence[str]) -> nn.Module:
    """A copy whose named layers hold their weights rounded to 4 or 8 bits per output channel, as the .pte will.

    Per-output-channel scales make this exact before batch-norm folding too: folding scales each row, and the
    symmetric codes of a scaled row are the same.
    """
    copy_ = copy.deepcopy(module)
    layers = dict(copy_.named_modules())
    for names, (qmin, qmax) in ((int4, (QMIN, QMAX)), (int8, (-127, 127))):
        for name in names:
            weight = layers[name].weight
            codes, scales = quantize_rows(weight, None, qmin, qmax)
            values = codes[:, : weight[0].numel()].float() * scales
            with torch.no_grad():
                weight.copy_(values.reshape(weight.shape))
    return copy_.eval()


@torch.no_grad()
def sensitivity_order(module: nn.Module, layers: Sequence[str], images: Any) -> list[str]:
    """``layers`` ordered from most to least sensitive to 4-bit weights: logit error with that layer alone at 4 bits.

    Needs no labels, so train images serve: the ranking is the same whether or not the strength is searched.
    """
    from edgeopt.frameworks.pytorch.layout import to_nchw

    x = to_nchw(images)
    reference = module.eval()(x)
    error = {name: float(((fake_quantized(module, [name], [])(x) - reference) ** 2).mean()) for name in layers}
    return sorted(layers, key=lambda name: -error[name])


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
        f"{counts['layers'] - counts.get('int8_layers', 0)} conv/linear layers (batch norm folded; convolutions "
        "run as patch extraction + Linear) "
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
    searches_strength: ClassVar[bool] = True

    def apply(self, ctx: TechniqueContext, config: TechniqueConfig) -> TechniqueOutput:
        from edgeopt.errors import Unsupported
        from edgeopt.frameworks.pytorch.io import require_module

        assert isinstance(config, PtqInt4Config)
        if not config.symmetric:
            raise Unsupported("ptq_int4 implements symmetric 4-bit weights only; set symmetric=true.")
        module = require_module(ctx.model, self.name)
        record = None
        if config.group_size:
            ctx.reporter.stage("Quantizing weights to 4 bits", 0.1)
            program, counts = quantize_int4_grouped(module, ctx.data.image_shape, config.group_size)
            precision, notes = "fp32", _notes_grouped(counts, config.group_size)
        else:
            keep, record = self._mixed_precision(ctx, config, module)
            ctx.reporter.stage("Quantizing weights to 4 bits" + (" and 8 bits" if keep else ""), 0.45)
            program, counts = quantize_int4_xnnpack(module, ctx.data.image_shape, keep_int8=keep)
            precision, notes = "int4", _notes_xnnpack(counts)
            if keep:
                notes += (
                    f" Mixed precision: the {len(keep)} layer(s) most sensitive to 4 bits keep 8-bit per-channel "
                    f"weights (XNNPACK qd8-f32-qc8w): {', '.join(keep)}."
                )
            if record is not None:
                notes = f"{search_note(record)} {notes}"
        ctx.reporter.stage("Lowering to ExecuTorch (XNNPACK)", 0.6)
        example = example_input(ctx.data.image_shape)
        pte = to_pte(program, example, ctx.work_dir / f"{self.name}.pte")
        pt2 = save_pt2(program, ctx.work_dir / f"{self.name}.pt2")
        extra: dict[str, Any] = {"int4_layers": counts["layers"] - counts.get("int8_layers", 0)}
        return TechniqueOutput(
            artifact=pte,
            precision=precision,
            model=module,
            formats={"pt2": pt2},
            notes=notes,
            extra=extra,
            search=record,
        )

    def _mixed_precision(
        self, ctx: TechniqueContext, config: PtqInt4Config, module: nn.Module
    ) -> tuple[list[str], StrengthSearch | None]:
        """Which layers keep 8-bit weights: ``int8_layers`` of the most sensitive, or as many as the budget needs."""
        from edgeopt.frameworks.pytorch.search import choose_strength, val_accuracy

        layers = int4_layers(module)
        fixed = config.int8_layers or 0
        if not layers or (ctx.search is None and not fixed):
            return [], None
        reporter = ctx.reporter.sub(0.0, 0.4)
        reporter.stage("Ranking the layers by their sensitivity to 4 bits", 0.0)
        ranked = sensitivity_order(module, layers, ctx.data.x_train[:SENSITIVITY_IMAGES])
        sizes = {name: layer.weight.numel() for name, layer in module.named_modules() if name in layers}
        total = sum(p.numel() for p in module.parameters())

        def evaluate(k: float) -> Candidate:
            keep = ranked[: int(k)]
            candidate = fake_quantized(module, ranked[int(k) :], keep)
            at8 = sum(sizes[name] for name in keep)
            at4 = sum(sizes.values()) - at8
            weight_bytes = 4 * (total - at8 - at4) + at8 + at4 / 2  # FP32 rest, one byte, half a byte
            return Candidate(
                val_accuracy=val_accuracy(candidate, ctx.search),  # type: ignore[arg-type]
                params=total,
                size_ratio=4 * total / max(1.0, weight_bytes),
            )

        ladder = [float(k) for k in int8_ladder(len(layers))]
        chosen, record = choose_strength(ctx, self.name, float(fixed), module, evaluate, reporter, ladder=ladder)
        if record is not None:  # no training follows: the chosen trial's score is the final model's
            scores = {trial.setting: trial.val_accuracy for trial in record.trials}
            record.chosen_val_accuracy = scores.get(chosen)
        return ranked[: int(chosen)], record
