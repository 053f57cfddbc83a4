"""Turns a ``torch.export`` program back into a model made of real layers, so it can be pruned and trained.

``ExportedProgram.module()`` returns a GraphModule whose convolutions, batch norms and linears are functional ATen
calls reading loose parameters, and which refuses ``.train()``. torch-pruning finds prunable layers by their module
type (``nn.Conv2d``, ``nn.BatchNorm2d``, ``nn.Linear``, ``nn.LayerNorm``) and cannot see any in such a graph; batch
norm could not
learn its statistics either. This rewrite puts each such call back into the module it came from (the same
parameter objects, the same names), so torch-pruning builds its dependency graph on it like on any eager model and
``fine_tune`` trains it with batch statistics. Everything else in the graph (adds, activations, pooling) is kept.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.export import ExportedProgram
from torch.fx import GraphModule, Node

from edgeopt.errors import Unsupported

aten = torch.ops.aten


class EditableModel(nn.Module):
    """Holds the rebuilt graph behind a plain ``nn.Module`` so ``train()``/``eval()`` reach every layer.

    A bare GraphModule with function calls is taken for an exported graph by the training loop, which would then
    switch modes with torchao's graph rewrites instead of the layers' own flags.
    """

    def __init__(self, graph_module: GraphModule) -> None:
        super().__init__()
        self.graph_module = graph_module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph_module(x)


def editable_module(model: nn.Module | ExportedProgram) -> nn.Module:
    """A trainable, prunable deep copy of ``model``; eager modules are only copied, the original is never touched.

    Accepts an ExportedProgram or the GraphModule its ``.module()`` returns.
    """
    if isinstance(model, ExportedProgram):
        model = model.module()
    if isinstance(model, GraphModule) and any(
        node.op == "call_function" and node.target in _BUILDERS for node in model.graph.nodes
    ):
        rebuilt = _rebuild_layers(model).eval()  # eval: the batch check must not move BatchNorm statistics
        _free_batch(rebuilt)
        _require_free_batch(rebuilt)
        return EditableModel(rebuilt)
    return copy.deepcopy(model)


def _rebuild_layers(exported: GraphModule) -> GraphModule:
    graph = copy.deepcopy(exported.graph)
    root = nn.Module()
    image = next((node for node in graph.nodes if node.op == "placeholder"), None)
    batch = image.meta.get("val").shape[0] if image is not None and image.meta.get("val") is not None else None
    for node in list(graph.nodes):
        if node.op == "call_module" and str(node.target).startswith("_guards") and not node.users:
            # torch.export's input guards pin the example's batch size; training needs other batch sizes.
            graph.erase_node(node)
            continue
        builder = _BUILDERS.get(node.target) if node.op == "call_function" else None
        layer = builder(node, exported) if builder else None
        if layer is not None:
            _replace_with_layer(graph, node, layer, root)
        elif node.op == "call_function" and node.target in _RESHAPES:
            _generalise_flatten(graph, node, batch)
    for node in list(graph.nodes):
        if node.op == "get_attr":
            if node.users:
                _set_path(root, str(node.target), _copy(_get_path(exported, str(node.target))))
            else:
                graph.erase_node(node)
    rebuilt = GraphModule(root, graph)
    # The graph keeps torch.export's pytree calling convention, which reads these two specs from its module.
    for spec in ("_in_spec", "_out_spec"):
        if hasattr(exported, spec):
            setattr(rebuilt, spec, getattr(exported, spec))
    rebuilt.recompile()
    return rebuilt


def _require_free_batch(module: GraphModule) -> None:
    """Runs a batch of two through the rebuilt graph; a shape it still pins is named with the user's source line.

    Training and calibration feed batches, so a program whose batch could not be freed (a size computed from the
    batch by an operation other than a reshape) cannot be transformed; the user can re-export it.
    """
    image = next((node for node in module.graph.nodes if node.op == "placeholder"), None)
    value = image.meta.get("val") if image is not None else None
    if value is None or value.dim() == 0:
        return
    example = torch.zeros(2, *(int(d) for d in value.shape[1:]))
    interpreter = _NodeTracking(module)
    try:
        with torch.no_grad():
            output = interpreter.run(example)
        outputs = [t for t in torch.utils._pytree.tree_leaves(output) if isinstance(t, torch.Tensor)]
        if any(t.dim() == 0 or t.shape[0] != len(example) for t in outputs):
            interpreter.current = interpreter.lost_batch
            shapes = [tuple(t.shape) for t in outputs]
            raise ValueError(f"a batch of {len(example)} images gave outputs of shape {shapes}")
    except Exception as exc:
        raise _pinned(interpreter.current, _first_line(exc)) from exc


class _NodeTracking(torch.fx.Interpreter):
    """Remembers the node being run, and the first reshape that turned a batch-leading tensor into another size."""

    current: Node | None = None
    lost_batch: Node | None = None
    batch = 2

    def run_node(self, n: Node) -> Any:
        self.current = n
        result = super().run_node(n)
        if self.lost_batch is None and n.op == "call_function" and n.target in _RESHAPES:
            source = self.env.get(n.args[0]) if isinstance(n.args[0], Node) else None
            if (
                isinstance(source, torch.Tensor)
                and isinstance(result, torch.Tensor)
                and source.dim() > 0
                and source.shape[0] == self.batch
                and (result.dim() == 0 or result.shape[0] != self.batch)
            ):
                self.lost_batch = n
        return result


def _source_line(node: Node | None) -> str:
    """`` at model.py:32 `x = x.view(...)``` from the node's recorded stack trace, or nothing."""
    trace = (node.meta.get("stack_trace") or "") if node is not None else ""
    lines = [line.strip() for line in trace.strip().splitlines() if line.strip()]
    if len(lines) >= 2 and lines[-2].startswith("File "):
        return f" ({lines[-2]}: {lines[-1]})"
    return ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _replace_with_layer(graph: torch.fx.Graph, node: Node, layer: nn.Module, root: nn.Module) -> None:
    weight_node = next(a for a in node.args[1:] if isinstance(a, Node) and a.op == "get_attr")  # the layer's weight
    name = _unique_name(root, str(weight_node.target).rpartition(".")[0] or node.name)
    _set_path(root, name, layer)
    with graph.inserting_before(node):
        call = graph.call_module(name, (node.args[0],))
    call.meta = dict(node.meta)
    if node.target is aten._native_batch_norm_legit_no_training.default:
        # This op returns (out, mean, rstd); only out is ever used in an inference graph.
        for user in list(node.users):
            user.replace_all_uses_with(call)
            graph.erase_node(user)
    else:
        node.replace_all_uses_with(call)
    graph.erase_node(node)


def _generalise_flatten(graph: torch.fx.Graph, node: Node, batch: Any) -> bool:
    """``x.view(1, 512)`` recorded with the export's batch and channel count -> ``flatten(x, 1)``.

    Pruning changes the channel count and training changes the batch, so a reshape frozen at export time would
    break both; a reshape that flattens all but the batch dimension means exactly ``flatten(x, 1)``. Only a
    leading size equal to the input's batch is that batch: attention's ``(tokens, batch * heads, dim)`` reshaped
    to ``(tokens, features)`` keeps its literal (``batch_free`` places the batch in it).
    """
    source, shape = node.args[0], node.args[1]
    value = source.meta.get("val") if isinstance(source, Node) else None
    if node.target is aten.expand.default or value is None or len(shape) != 2 or value.dim() <= 2:
        return False
    if not all(isinstance(d, int) for d in shape) or not all(isinstance(d, int) for d in value.shape):
        return False  # a dynamic-batch export already reads the batch from its input
    features = math.prod(int(d) for d in value.shape[1:])
    if not isinstance(batch, int) or int(value.shape[0]) != batch:
        return False
    if int(shape[0]) in (batch, -1) and int(shape[1]) in (features, -1):
        with graph.inserting_before(node):
            flat = graph.call_function(aten.flatten.using_ints, (source, 1))
        flat.meta = dict(node.meta)
        node.replace_all_uses_with(flat)
        graph.erase_node(node)
        return True
    return False


def _free_batch(module: GraphModule) -> None:
    """Makes the literal sizes that hold the export's batch follow the input's batch (``batch_free``).

    A program exported with a batch-1 example (the usual ``torch.export.export(model, (x[:1],))``) writes the batch
    into its reshapes as a literal, so ShuffleNet's channel shuffle, a ViT's class-token ``expand`` or its attention
    heads break as soon as fine-tuning or calibration feeds a batch of 64. A program with a dynamic batch is left
    as it is; one whose batch cannot be freed is refused with the operation named.
    """
    from edgeopt.frameworks.pytorch.batch_free import BatchNotFound, free_literal_batch

    image = next((node for node in module.graph.nodes if node.op == "placeholder"), None)
    value = image.meta.get("val") if image is not None else None
    if value is None or value.dim() == 0 or not isinstance(value.shape[0], int):
        return
    try:
        free_literal_batch(module, torch.zeros(*(int(d) for d in value.shape)))
    except BatchNotFound as exc:
        raise _pinned(exc.node, str(exc)) from exc


def _pinned(node: Node | None, detail: str) -> Unsupported:
    where = f"operation {node.name} ({node.target})" if node is not None else "the graph"
    return Unsupported(
        f"The exported program fixes its batch size in {where}{_source_line(node)}, so it cannot be fine-tuned or "
        f"calibrated on batches ({detail}). Export it with a dynamic batch dimension: "
        "torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim('batch')},))."
    )


def _tensor(module: GraphModule, node: Any) -> torch.Tensor | None:
    if node is None:
        return None
    if not isinstance(node, Node) or node.op != "get_attr":
        raise _NotALayer
    return _get_path(module, str(node.target))


class _NotALayer(Exception):
    """The call reads a computed tensor, not a stored parameter: it stays a function call."""


def _as_parameter(tensor: torch.Tensor) -> nn.Parameter:
    """A copy: ``ExportedProgram.module()`` shares its tensors with the program, which must stay untouched."""
    return nn.Parameter(tensor.detach().clone())


def _conv(node: Node, module: GraphModule) -> nn.Module | None:
    args = list(node.args) + [None] * (9 - len(node.args))
    if node.target is aten.convolution.default:
        _, weight, bias, stride, padding, dilation, transposed, _, groups = args
        if transposed:
            return None
    else:
        _, weight, bias, stride, padding, dilation, groups = args[:7]
    w, b = _tensor(module, weight), _tensor(module, bias)
    if w is None or w.dim() != 4 or isinstance(padding, str):
        return None
    groups = int(groups or 1)
    layer = nn.Conv2d(
        w.shape[1] * groups,
        w.shape[0],
        tuple(w.shape[2:]),
        stride=tuple(stride or (1, 1)),
        padding=tuple(padding or (0, 0)),
        dilation=tuple(dilation or (1, 1)),
        groups=groups,
        bias=b is not None,
    )
    layer.weight = _as_parameter(w)
    if b is not None:
        layer.bias = _as_parameter(b)
    return layer


def _batch_norm(node: Node, module: GraphModule) -> nn.Module | None:
    if node.target is aten.batch_norm.default:
        _, weight, bias, mean, var, _, momentum, eps = node.args[:8]
    else:  # _native_batch_norm_legit_no_training(input, weight, bias, mean, var, momentum, eps)
        _, weight, bias, mean, var, momentum, eps = node.args[:7]
    w, b, m, v = (_tensor(module, n) for n in (weight, bias, mean, var))
    if w is None or b is None or m is None or v is None:
        return None
    layer = nn.BatchNorm2d(w.shape[0], eps=float(eps), momentum=float(momentum))
    layer.weight, layer.bias = _as_parameter(w), _as_parameter(b)
    layer.running_mean.copy_(m)
    layer.running_var.copy_(v)
    return layer


def _linear(node: Node, module: GraphModule) -> nn.Module | None:
    w = _tensor(module, node.args[1])
    b = _tensor(module, node.args[2] if len(node.args) > 2 else None)
    if w is None or w.dim() != 2:
        return None
    layer = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    layer.weight = _as_parameter(w)
    if b is not None:
        layer.bias = _as_parameter(b)
    return layer


def _layer_norm(node: Node, module: GraphModule) -> nn.Module | None:
    """``layer_norm(x, [C], w, b, eps)`` over the last dimension -> ``nn.LayerNorm``, so pruning resizes it too."""
    args = list(node.args) + [None] * (5 - len(node.args))
    _, shape, weight, bias, eps = args[:5]
    w, b = _tensor(module, weight), _tensor(module, bias)
    if w is None or len(shape) != 1:  # type: ignore[arg-type]
        return None
    layer = nn.LayerNorm(int(shape[0]), eps=float(eps if eps is not None else 1e-5), bias=b is not None)  # type: ignore[index]
    layer.weight = _as_parameter(w)
    if b is not None:
        layer.bias = _as_parameter(b)
    return layer


def _safe(build: Callable[[Node, GraphModule], nn.Module | None]) -> Callable[[Node, GraphModule], nn.Module | None]:
    def wrapper(node: Node, module: GraphModule) -> nn.Module | None:
        try:
            return build(node, module)
        except _NotALayer:
            return None

    return wrapper


_RESHAPES = (aten.view.default, aten.reshape.default, aten._unsafe_view.default, aten.expand.default)

_BUILDERS: dict[Any, Callable[[Node, GraphModule], nn.Module | None]] = {
    aten.conv2d.default: _safe(_conv),
    aten.convolution.default: _safe(_conv),
    aten.batch_norm.default: _safe(_batch_norm),
    aten._native_batch_norm_legit_no_training.default: _safe(_batch_norm),
    aten.linear.default: _safe(_linear),
    aten.layer_norm.default: _safe(_layer_norm),
}


def _copy(value: Any) -> Any:
    if isinstance(value, nn.Parameter):
        return _as_parameter(value)
    return copy.deepcopy(value)


def _get_path(module: nn.Module, path: str) -> Any:
    owner, _, attr = path.rpartition(".")
    return getattr(module.get_submodule(owner) if owner else module, attr)


def _set_path(root: nn.Module, path: str, value: Any) -> None:
    """Sets ``root.a.b.c = value``, creating plain container modules for missing parents."""
    parts = path.split(".")
    owner = root
    for part in parts[:-1]:
        child = getattr(owner, part, None)
        if not isinstance(child, nn.Module):
            child = nn.Module()
            owner.add_module(part, child)
        owner = child
    leaf = parts[-1]
    if isinstance(value, nn.Module):
        owner.add_module(leaf, value)
    elif isinstance(value, nn.Parameter):
        owner.register_parameter(leaf, value)
    else:
        owner.register_buffer(leaf, value)


def _unique_name(root: nn.Module, name: str) -> str:
    candidate, index = name, 1
    while _has_path(root, candidate):
        candidate, index = f"{name}_{index}", index + 1
    return candidate


def _has_path(root: nn.Module, path: str) -> bool:
    try:
        _get_path(root, path)
    except AttributeError:
        return False
    return True
