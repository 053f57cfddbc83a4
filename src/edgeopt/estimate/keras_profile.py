"""Reads a Keras model's layer graph for the board estimator (Keras 3 and tf_keras alike).

Why the layer graph rather than a run: Keras models carry static output shapes and explicit inbound connections,
so MACs, parameters, residual adds and the activation peak follow without executing anything. Layers are matched
by class name, which both Keras 3 and tf_keras share, so this module never imports either library itself: the
caller's model brings its own. A ``SeparableConv2D`` becomes two operators (depthwise then pointwise) and a layer
with a built-in activation gets a separate activation operator, because that is how the TFLite converter lowers
them for XNNPACK.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from edgeopt.errors import InvalidInput
from edgeopt.estimate.graph import INPUT, LayerSpec, ModelProfile, build_profile

_CONV = {"Conv1D", "Conv2D", "Convolution2D", "QuantizeWrapperV2:Conv2D"}
_CONV_T = {"Conv2DTranspose", "Convolution2DTranspose"}
_DEPTHWISE = {"DepthwiseConv2D"}
_SEPARABLE = {"SeparableConv2D", "SeparableConvolution2D"}
_DENSE = {"Dense", "EinsumDense"}
_POOL = {
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "MaxPool2D",
    "AvgPool2D",
    "GlobalAvgPool2D",
    "GlobalMaxPool2D",
}
_ADD = {"Add", "Subtract"}
_CONCAT = {"Concatenate"}
_ACTIVATION = {"ReLU", "Activation", "Softmax", "LeakyReLU", "PReLU", "ELU"}
_NORM = {"BatchNormalization", "LayerNormalization", "GroupNormalization"}
# Layers that move no data on the board (or only at training time).
_ALIAS = {
    "Flatten",
    "Reshape",
    "Dropout",
    "SpatialDropout2D",
    "GaussianNoise",
    "GaussianDropout",
    "ActivityRegularization",
    "Identity",
    "Permute",
}


def _shape(tensor: Any) -> tuple[int, ...]:
    return tuple(int(d) if d is not None else 1 for d in tensor.shape)


def _elems(tensor: Any) -> int:
    return math.prod(_shape(tensor)[1:])  # drop the batch axis: profiles are batch 1


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _activation_name(layer: Any) -> str:
    """The activation a layer applies, as a lower-case name ("linear" when none)."""
    kind = type(layer).__name__
    if kind == "ReLU":
        max_value = getattr(layer, "max_value", None)
        return "relu6" if max_value is not None and float(max_value) == 6.0 else "relu"
    if kind == "Softmax":
        return "softmax"
    if kind in ("LeakyReLU", "PReLU", "ELU"):
        return kind.lower()
    activation = getattr(layer, "activation", None)
    while activation is not None and hasattr(activation, "activation"):  # tfmot's QuantizeAwareActivation
        activation = activation.activation
    if activation is None:
        return "linear"
    name = getattr(activation, "__name__", str(activation)).lower()
    return {"swish": "silu", "hard_swish": "hardswish", "hard_silu": "hardswish"}.get(name, name)


def _kernel_elems(layer: Any, attribute: str = "kernel") -> int:
    weight = getattr(layer, attribute, None)
    return math.prod(int(d) for d in weight.shape) if weight is not None else 0


_WRAPPERS = {"QuantizeWrapper", "QuantizeWrapperV2", "PruneLowMagnitude", "TimeDistributed"}


_QUANTIZER_STATE = {"QuantizeLayer", "DequantizeLayer"}  # tfmot's input quantizer holds only ranges and a step
_WEIGHT_NAMES = {
    "kernel",
    "bias",
    "depthwise_kernel",
    "pointwise_kernel",
    "gamma",
    "beta",
    "moving_mean",
    "moving_variance",
    "embeddings",
    "alpha",
}


def _layer_params(outer: Any, inner: Any) -> int:
    """Model weights of a layer; for a tfmot wrapper, the wrapped layer's weights without masks or quantizer ranges."""
    if type(outer).__name__ in _QUANTIZER_STATE:
        return 0
    if outer is inner:
        return int(inner.count_params())
    names = (str(w.name).split("/")[-1].split(":")[0] for w in outer.weights)
    return sum(
        math.prod(int(d) for d in w.shape) for w, n in zip(outer.weights, names, strict=True) if n in _WEIGHT_NAMES
    )


def _unwrap(layer: Any) -> Any:
    """The layer a tfmot wrapper (quantization-aware training, pruning) computes with; the layer itself otherwise."""
    while type(layer).__name__ in _WRAPPERS and getattr(layer, "layer", None) is not None:
        layer = layer.layer
    return layer


class _Reader:
    """Walks (possibly nested) Keras models in topological order, emitting LayerSpecs."""

    def __init__(self) -> None:
        self.layers: list[LayerSpec] = []
        self.params = 0  # parameters of the computing layers (tfmot wrappers' masks and quantizer state excluded)
        self.kernels: list[np.ndarray] = []
        self.output_of: dict[int, str] = {}  # id(keras layer) -> name of the spec holding its output

    def source(self, tensor: Any, inputs_alias: dict[int, str]) -> str:
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            return INPUT
        producer = history[0]
        if id(producer) in inputs_alias:
            return inputs_alias[id(producer)]
        if type(producer).__name__ == "InputLayer":
            return inputs_alias.get(-1, INPUT)
        return self.output_of.get(id(producer), INPUT)

    def read(self, model: Any, prefix: str = "", outer_input: str = INPUT) -> str:
        """Emits ``model``'s layers; returns the name of the spec that holds the model's output."""
        inputs_alias = {-1: outer_input}
        for layer in model.layers:
            kind = type(layer).__name__
            if kind == "InputLayer":
                self.output_of[id(layer)] = outer_input
                continue
            try:
                in_tensors = _as_list(layer.input)
                output = layer.output
            except (AttributeError, ValueError) as exc:
                raise InvalidInput(
                    f"Layer {layer.name!r} has no single input/output (shared layer or unbuilt model: {exc}); "
                    "build the model on an Input of the image size before estimating."
                ) from exc
            sources = tuple(dict.fromkeys(self.source(t, inputs_alias) for t in in_tensors))
            name = f"{prefix}{layer.name}"
            if hasattr(layer, "layers") and getattr(layer, "inputs", None):  # a nested model
                self.output_of[id(layer)] = self.read(layer, prefix=f"{name}/", outer_input=sources[0])
                continue
            inner = _unwrap(layer)
            params = _layer_params(layer, inner)
            self.params += params
            self.output_of[id(layer)] = self._emit(
                inner, type(inner).__name__, name, in_tensors, output, sources, params
            )
        return self.source(_as_list(model.outputs)[0], inputs_alias)

    def _emit(
        self,
        layer: Any,
        kind: str,
        name: str,
        in_tensors: list[Any],
        output: Any,
        sources: tuple[str, ...],
        params: int,
    ) -> str:
        if kind in _ALIAS:
            return sources[0]
        in_elems = sum(_elems(t) for t in in_tensors)
        out_elems = _elems(output)
        common: dict[str, Any] = {"input_elems": in_elems, "output_elems": out_elems, "inputs": sources}
        in_ch = _shape(in_tensors[0])[-1]
        out_ch = _shape(output)[-1]
        if kind in _SEPARABLE:
            return self._separable(layer, name, in_tensors[0], output, sources, params)
        if kind in _CONV | _CONV_T | _DEPTHWISE:
            kernel = tuple(int(k) for k in layer.kernel_size)
            taps = math.prod(kernel)
            groups = int(getattr(layer, "groups", 1) or 1)
            if kind in _DEPTHWISE:
                spec = LayerSpec(
                    name,
                    "depthwise_conv",
                    out_elems * taps,
                    params,
                    kernel=kernel,
                    groups=in_ch,
                    in_channels=in_ch,
                    out_channels=out_ch,
                    weight_elems=_kernel_elems(layer, "kernel") or _kernel_elems(layer, "depthwise_kernel"),
                    kind=kind,
                    **common,
                )
            elif kind in _CONV_T:
                spec = LayerSpec(
                    name,
                    "conv",
                    in_elems * (out_ch // groups) * taps,
                    params,
                    kernel=kernel,
                    groups=groups,
                    in_channels=in_ch,
                    out_channels=out_ch,
                    weight_elems=_kernel_elems(layer),
                    kind=kind,
                    **common,
                )
            else:
                spec = LayerSpec(
                    name,
                    "conv",
                    out_elems * (in_ch // groups) * taps,
                    params,
                    kernel=kernel,
                    groups=groups,
                    in_channels=in_ch,
                    out_channels=out_ch,
                    weight_elems=_kernel_elems(layer),
                    kind=kind,
                    **common,
                )
            self._kernel(layer)
            return self._with_activation(layer, spec)
        if kind in _DENSE:
            weight = _kernel_elems(layer)
            spec = LayerSpec(
                name,
                "dense",
                out_elems * in_ch,
                params,
                in_channels=in_ch,
                out_channels=out_ch,
                weight_elems=weight,
                kind=kind,
                **common,
            )
            self._kernel(layer)
            return self._with_activation(layer, spec)
        if kind in _NORM:
            spec = LayerSpec(
                name, "other", 0, params, kind="batch_norm" if kind == "BatchNormalization" else kind, **common
            )
        elif kind in _POOL:
            pool = getattr(layer, "pool_size", None)
            spec = LayerSpec(
                name, "pool", 0, 0, kernel=tuple(int(k) for k in pool) if pool else None, kind=kind, **common
            )
        elif kind in _ADD:
            spec = LayerSpec(name, "add", 0, 0, kind=kind.lower(), **common)
        elif kind in _CONCAT:
            spec = LayerSpec(name, "concat", 0, 0, kind="concat", **common)
        elif kind in _ACTIVATION:
            activation = _activation_name(layer)
            if activation == "linear":
                return sources[0]
            spec = LayerSpec(name, "activation", 0, params, kind=activation, **common)
        else:
            spec = LayerSpec(name, "other", 0, params, kind="pad" if kind == "ZeroPadding2D" else kind, **common)
        self.layers.append(spec)
        return spec.name

    def _with_activation(self, layer: Any, spec: LayerSpec) -> str:
        self.layers.append(spec)
        activation = _activation_name(layer)
        if activation == "linear":
            return spec.name
        act = LayerSpec(
            f"{spec.name}/{activation}",
            "activation",
            0,
            0,
            spec.output_elems,
            spec.output_elems,
            inputs=(spec.name,),
            kind=activation,
        )
        self.layers.append(act)
        return act.name

    def _separable(self, layer: Any, name: str, x: Any, output: Any, sources: tuple[str, ...], params: int) -> str:
        kernel = tuple(int(k) for k in layer.kernel_size)
        in_ch = _shape(x)[-1]
        multiplier = int(getattr(layer, "depth_multiplier", 1) or 1)
        out_hw = math.prod(_shape(output)[1:-1])
        mid = out_hw * in_ch * multiplier
        dw_weights = _kernel_elems(layer, "depthwise_kernel")
        pw_weights = _kernel_elems(layer, "pointwise_kernel")
        out_ch = _shape(output)[-1]
        bias = params - dw_weights - pw_weights
        self.layers.append(
            LayerSpec(
                f"{name}/depthwise",
                "depthwise_conv",
                mid * math.prod(kernel),
                dw_weights,
                _elems(x),
                mid,
                kernel=kernel,
                groups=in_ch,
                in_channels=in_ch,
                out_channels=in_ch * multiplier,
                weight_elems=dw_weights,
                inputs=sources,
                kind="SeparableConv2D",
            )
        )
        spec = LayerSpec(
            f"{name}/pointwise",
            "conv",
            _elems(output) * in_ch * multiplier,
            pw_weights + bias,
            mid,
            _elems(output),
            kernel=(1, 1),
            in_channels=in_ch * multiplier,
            out_channels=out_ch,
            weight_elems=pw_weights,
            inputs=(f"{name}/depthwise",),
            kind="SeparableConv2D",
        )
        for attribute in ("depthwise_kernel", "pointwise_kernel"):
            weight = getattr(layer, attribute, None)
            if weight is not None:
                self._add_kernel(weight)
        return self._with_activation(layer, spec)

    def _kernel(self, layer: Any) -> None:
        for attribute in ("kernel", "depthwise_kernel"):
            weight = getattr(layer, attribute, None)
            if weight is not None:
                self._add_kernel(weight)
                return

    def _add_kernel(self, weight: Any) -> None:
        """Records a kernel's values for sparsity; symbolic kernels (tfmot fake-quant wrappers) have none."""
        try:
            self.kernels.append(np.asarray(weight))
        except (NotImplementedError, TypeError, ValueError):
            return


def _sparsity(kernels: Iterable[np.ndarray]) -> float:
    arrays = list(kernels)
    total = sum(a.size for a in arrays)
    return float(sum(int(np.count_nonzero(a == 0)) for a in arrays) / total) if total else 0.0


def profile_keras(model: Any) -> ModelProfile:
    """Profiles a built Keras (3 or tf_keras) image classifier with an (H, W, C) input at batch 1."""
    if not hasattr(model, "layers") or not hasattr(model, "count_params"):
        raise InvalidInput(f"profile_keras needs a Keras model, got {type(model).__name__}.")
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise InvalidInput("The Keras model is not built; call it on an Input of the image size first.")
    shape = _shape(inputs[0])
    if len(shape) != 4:
        raise InvalidInput(f"Expected an image input (batch, height, width, channels), got {tuple(inputs[0].shape)}.")
    reader = _Reader()
    reader.read(model)
    return build_profile(
        reader.layers,
        (shape[1], shape[2], shape[3]),
        params=reader.params,
        sparsity=_sparsity(reader.kernels),
        source="keras layer graph",
    )
