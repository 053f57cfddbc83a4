"""Reads a PyTorch model's operator graph for the board estimator by running it once at batch 1.

Why a dispatch trace rather than leaf-module hooks alone: residual adds, concatenations and functional calls
(``x + identity``, ``torch.cat``, ``F.relu``) live in ``forward`` code, not in leaf modules, and a model can have
Python control flow that ``torch.fx`` cannot trace. A ``TorchDispatchMode`` sees every ATen operator the forward
pass really executes (the same view an ``ExportedProgram`` has), so one code path covers ``nn.Module`` and
``torch.export`` programs alike. Forward hooks on modules only supply readable layer names.

Data flow is followed through tensor storages: a view shares its base's storage, so reshapes and flattens need no
special case, and an in-place operator (``relu_``) re-labels the storage it writes.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from edgeopt.errors import InvalidInput
from edgeopt.estimate.graph import INPUT, LayerSpec, ModelProfile, build_profile

_CONV = {"convolution", "_convolution", "conv2d", "conv1d", "mkldnn_convolution", "_slow_conv2d_forward"}
_MATMUL = {"addmm", "mm", "bmm", "matmul", "linear", "baddbmm"}
_POOL = {
    "max_pool2d",
    "max_pool2d_with_indices",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "_adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "mean",
    "amax",
}
_ACTIVATION = {
    "relu",
    "relu6",
    "hardtanh",
    "clamp",
    "clamp_min",
    "clamp_max",
    "silu",
    "sigmoid",
    "hardswish",
    "hardsigmoid",
    "gelu",
    "tanh",
    "leaky_relu",
    "elu",
    "softmax",
    "_softmax",
    "log_softmax",
    "_log_softmax",
}
_ADD = {"add", "sub"}
_CONCAT = {"cat", "concat"}
# Operators that only copy or relabel data; the board runtime plans them away (or they are layout glue).
_ALIAS = {
    "clone",
    "contiguous",
    "_to_copy",
    "to",
    "copy",
    "_unsafe_view",
    "reshape",
    "flatten",
    "dropout",
    "native_dropout",
    "alias",
    "lift_fresh",
    "lift_fresh_copy",
    "detach",
}
_ALIAS_NAMESPACES = {"quantized_decomposed", "torchao"}


def _op_name(func: Any) -> tuple[str, str]:
    """(namespace, base name without the in-place underscore) of an ATen operator overload."""
    qualified = func._schema.name  # e.g. "aten::relu_"
    namespace, _, name = qualified.partition("::")
    return namespace, name[:-1] if name.endswith("_") and not name.startswith("_") else name


def _bind(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    bound = {arg.name: value for arg, value in zip(func._schema.arguments, args, strict=False)}
    bound.update(kwargs)
    return bound


def _first_tensor(value: Any) -> torch.Tensor | None:
    for leaf in tree_flatten(value)[0]:
        if isinstance(leaf, torch.Tensor):
            return leaf
    return None


class _Recorder(TorchDispatchMode):
    """Turns each executed ATen operator on an activation into a ``LayerSpec``."""

    def __init__(self, module_stack: list[str], leaves: set[str]) -> None:
        super().__init__()
        self.module_stack = module_stack
        self.leaves = leaves
        self.producer: dict[int, str] = {}  # storage address -> name of the layer that wrote it last
        self.keep: list[torch.Tensor] = []  # keeps storages alive so addresses are never reused mid-trace
        self.layers: list[LayerSpec] = []
        self.weights: dict[int, torch.Tensor] = {}  # conv/linear weights, for sparsity
        self.counts: dict[str, int] = {}

    @staticmethod
    def _key(tensor: torch.Tensor) -> int:
        return tensor.untyped_storage().data_ptr()

    def mark_input(self, tensor: torch.Tensor) -> None:
        self.producer[self._key(tensor)] = INPUT
        self.keep.append(tensor)

    def _name(self, base: str) -> str:
        scope = self.module_stack[-1] if self.module_stack else ""
        stem = scope if scope in self.leaves else (f"{scope}.{base}" if scope else base)
        count = self.counts.get(stem, 0)
        self.counts[stem] = count + 1
        return stem if count == 0 else f"{stem}_{count}"

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        try:
            self._record(func, args, kwargs, out)
        except Exception as exc:  # noqa: BLE001 - a profiling gap must never break the model's own forward
            raise InvalidInput(f"Could not profile operator {func}: {exc}") from exc
        return out

    def _record(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        sources: list[str] = []
        activation_inputs: list[torch.Tensor] = []
        for tensor in inputs:
            name = self.producer.get(self._key(tensor))
            if name is not None:
                activation_inputs.append(tensor)
                if name not in sources:
                    sources.append(name)
        result = _first_tensor(out)
        if not sources or result is None:
            return  # operates on weights or constants only: folded at export time
        namespace, name = _op_name(func)
        key = self._key(result)
        self.keep.append(result)
        aliases_input = any(key == self._key(t) for t in activation_inputs)
        schema_returns = func._schema.returns
        writes = (
            bool(schema_returns) and schema_returns[0].alias_info is not None and schema_returns[0].alias_info.is_write
        )
        if namespace in _ALIAS_NAMESPACES or name in _ALIAS or (aliases_input and not writes):
            self.producer[key] = sources[0]
            return
        layer = self._layer(name, _bind(func, args, kwargs), activation_inputs, result, tuple(sources))
        self.layers.append(layer)
        self.producer[key] = layer.name

    def _layer(
        self,
        name: str,
        bound: dict[str, Any],
        activation_inputs: list[torch.Tensor],
        result: torch.Tensor,
        sources: tuple[str, ...],
    ) -> LayerSpec:
        in_elems = sum(t.numel() for t in activation_inputs)
        out_elems = result.numel()
        common: dict[str, Any] = {"input_elems": in_elems, "output_elems": out_elems, "inputs": sources, "kind": name}
        if name in _CONV:
            return self._conv(bound, result, common)
        if name in _MATMUL:
            return self._matmul(name, bound, result, common)
        if "batch_norm" in name or name in {"layer_norm", "group_norm", "native_layer_norm"}:
            params = sum(t.numel() for key in ("weight", "bias") if isinstance(t := bound.get(key), torch.Tensor))
            kind = "batch_norm" if "batch_norm" in name else name
            return LayerSpec(self._name(kind), "other", 0, params, **{**common, "kind": kind})
        if name in _POOL:
            pool_kernel = bound.get("kernel_size")
            kernel = tuple(int(k) for k in pool_kernel) if isinstance(pool_kernel, list | tuple) else None
            return LayerSpec(self._name(name), "pool", 0, 0, kernel=kernel, **common)
        if name in _ACTIVATION:
            kind = (
                "relu6" if name == "hardtanh" and bound.get("min_val") == 0.0 and bound.get("max_val") == 6.0 else name
            )
            return LayerSpec(self._name(kind), "activation", 0, 0, **{**common, "kind": kind})
        if name in _ADD and len(activation_inputs) >= 2:
            return LayerSpec(self._name(name), "add", 0, 0, **common)
        if name in _CONCAT:
            return LayerSpec(self._name(name), "concat", 0, 0, **common)
        if name in ("constant_pad_nd", "pad"):
            return LayerSpec(self._name("pad"), "other", 0, 0, **{**common, "kind": "pad"})
        return LayerSpec(self._name(name), "other", 0, 0, **common)

    def _conv(self, bound: dict[str, Any], result: torch.Tensor, common: dict[str, Any]) -> LayerSpec:
        x, weight, bias = bound["input"], bound["weight"], bound.get("bias")
        groups = int(bound.get("groups", 1))
        transposed = bool(bound.get("transposed", False))
        in_ch = int(x.shape[1])
        kernel = tuple(int(k) for k in weight.shape[2:])
        taps = math.prod(kernel)
        if transposed:
            out_ch = int(weight.shape[1]) * groups
            macs = x.numel() * (out_ch // groups) * taps
        else:
            out_ch = int(weight.shape[0])
            macs = result.numel() * (in_ch // groups) * taps
        self.weights[self._key(weight)] = weight
        bias_elems = bias.numel() if isinstance(bias, torch.Tensor) else 0
        depthwise = groups > 1 and groups == in_ch
        op = "depthwise_conv" if depthwise else "conv"
        return LayerSpec(
            self._name("conv"),
            op,
            int(macs),
            weight.numel() + bias_elems,
            kernel=kernel,
            groups=groups,
            in_channels=in_ch,
            out_channels=out_ch,
            weight_elems=weight.numel(),
            **common,
        )

    def _matmul(self, name: str, bound: dict[str, Any], result: torch.Tensor, common: dict[str, Any]) -> LayerSpec:
        tensors = [v for k, v in bound.items() if isinstance(v, torch.Tensor) and k not in ("self", "input", "bias")]
        if name in ("addmm", "baddbmm"):
            a, b, bias = (
                bound["mat1" if name == "addmm" else "batch1"],
                bound["mat2" if name == "addmm" else "batch2"],
                bound["self"],
            )
        elif name == "linear":
            a, b, bias = bound["input"], bound["weight"], bound.get("bias")
        else:
            a, b, bias = bound.get("self", bound.get("input")), tensors[-1] if tensors else None, None
        if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
            return LayerSpec(self._name(name), "other", 0, 0, **common)
        inner = int(a.shape[-1])
        macs = result.numel() * inner
        weight_is_param = self.producer.get(self._key(b)) is None
        weight_elems = b.numel() if weight_is_param else 0
        if weight_is_param:
            self.weights[self._key(b)] = b
        bias_elems = bias.numel() if isinstance(bias, torch.Tensor) and weight_is_param else 0
        return LayerSpec(
            self._name("linear"),
            "dense",
            int(macs),
            weight_elems + bias_elems,
            in_channels=inner,
            out_channels=int(result.shape[-1]),
            weight_elems=weight_elems,
            **common,
        )


def _as_module(model: Any) -> torch.nn.Module:
    if isinstance(model, torch.nn.Module):
        return model
    if hasattr(model, "module") and hasattr(model, "graph_signature"):  # torch.export.ExportedProgram
        return model.module()
    raise InvalidInput(
        f"profile_torch needs a torch.nn.Module or a torch.export.ExportedProgram, got {type(model).__name__}."
    )


def _set_eval(module: torch.nn.Module) -> dict[torch.nn.Module, bool]:
    modes = {m: m.training for m in module.modules()}
    with contextlib.suppress(NotImplementedError):  # ExportedProgram.module() refuses eval() in some versions
        module.eval()
    return modes


def profile_torch(module: Any, input_shape_hwc: tuple[int, int, int]) -> ModelProfile:
    """Profiles a model at batch 1 with an NCHW input of ``input_shape_hwc`` = (height, width, channels)."""
    if len(input_shape_hwc) != 3 or min(int(v) for v in input_shape_hwc) <= 0:
        raise InvalidInput(
            f"input_shape_hwc must be (height, width, channels) of positive sizes, got {input_shape_hwc}."
        )
    height, width, channels = (int(v) for v in input_shape_hwc)
    model = _as_module(module)
    stack: list[str] = []
    handles = []

    def enter(qualified: str) -> Any:
        def hook(_module: torch.nn.Module, _args: Any) -> None:
            stack.append(qualified)

        return hook

    def leave(_module: torch.nn.Module, _args: Any, _output: Any) -> None:
        stack.pop()

    for qualified, sub in model.named_modules():
        if qualified:
            handles.append(sub.register_forward_pre_hook(enter(qualified)))
            handles.append(sub.register_forward_hook(leave))
    modes = _set_eval(model)
    leaves = {q for q, sub in model.named_modules() if q and not any(True for _ in sub.children())}
    recorder = _Recorder(stack, leaves)
    example = torch.rand(1, channels, height, width)
    try:
        with torch.no_grad():
            recorder.mark_input(example)
            with recorder:
                model(example)
    except InvalidInput:
        raise
    except Exception as exc:
        raise InvalidInput(
            f"The model did not run on a 1x{channels}x{height}x{width} input ({type(exc).__name__}: {exc}); "
            "pass the (height, width, channels) the model was trained on."
        ) from exc
    finally:
        for handle in handles:
            handle.remove()
        for sub, training in modes.items():
            sub.training = training
    params = sum(p.numel() for p in model.parameters())
    weights = list(recorder.weights.values())
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    return build_profile(
        recorder.layers,
        (height, width, channels),
        params=params,
        sparsity=zeros / total if total else 0.0,
        source="torch dispatch trace",
    )
