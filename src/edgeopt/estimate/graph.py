"""The framework-neutral layer graph the board estimator works on.

Both framework profilers (``torch_profile``, ``keras_profile``) reduce a model to a list of ``LayerSpec`` in
execution order, with the names of the layers each one reads from. Everything the estimator needs (MACs per
operator, bytes moved, which operators the runtime fuses away, the peak of live activations) is computed here
once, in plain Python, so the estimator never imports a framework and a profile can travel between processes as
JSON (``ModelProfile.to_dict``/``from_dict``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from edgeopt.errors import InvalidInput

OPS: tuple[str, ...] = ("conv", "depthwise_conv", "dense", "pool", "add", "activation", "concat", "other")
INPUT = "input"  # the name every profile uses for the model's input tensor

# Activations XNNPACK (and the TFLite converter) fold into the producing operator as an output clamp.
_CLAMP_ACTIVATIONS = frozenset({"relu", "relu6", "hardtanh", "clamp", "clamp_min", "clamp_max", "linear"})
_WEIGHTED = frozenset({"conv", "depthwise_conv", "dense"})
_FUSING_PRODUCERS = _WEIGHTED | {"add"}


@dataclass(frozen=True)
class LayerSpec:
    """One operator as the board runtime executes it.

    ``kind`` keeps the framework's own operator name (``batch_norm``, ``relu6``, ``hardswish``...) because the
    runtime treats some of them differently (batch norm and clamp activations are folded into the producer).
    ``fused`` marks operators that cost nothing on the board for that reason; they still count in ``params``.
    """

    name: str
    op: str
    macs: int
    params: int
    input_elems: int
    output_elems: int
    kernel: tuple[int, ...] | None = None
    groups: int = 1
    in_channels: int = 0
    out_channels: int = 0
    weight_elems: int = 0  # elements of weight tensors the operator reads (params minus biases and BN stats)
    inputs: tuple[str, ...] = ()  # names of the layers (or ``INPUT``) whose outputs this operator reads
    kind: str = ""
    fused: bool = False

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise InvalidInput(f"Layer {self.name!r} has op {self.op!r}; expected one of {', '.join(OPS)}.")
        if min(self.macs, self.params, self.input_elems, self.output_elems, self.weight_elems) < 0:
            raise InvalidInput(f"Layer {self.name!r} has a negative size; profiles count elements, never < 0.")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kernel"] = list(self.kernel) if self.kernel is not None else None
        data["inputs"] = list(self.inputs)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerSpec:
        values = dict(data)
        kernel = values.get("kernel")
        values["kernel"] = tuple(int(k) for k in kernel) if kernel is not None else None
        values["inputs"] = tuple(values.get("inputs") or ())
        return cls(**values)


@dataclass
class ModelProfile:
    """A model as the estimator sees it: its operators, totals and peak of live activations (batch 1)."""

    layers: list[LayerSpec]
    params: int
    macs: int
    flops: int
    input_shape: tuple[int, int, int]  # (height, width, channels)
    sparsity: float
    peak_activation_elems: int
    source: str = ""  # how the graph was read, e.g. "torch dispatch trace" or "keras layer graph"
    notes: list[str] = field(default_factory=list)

    @property
    def weight_elems(self) -> int:
        return sum(layer.weight_elems for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": [layer.to_dict() for layer in self.layers],
            "params": self.params,
            "macs": self.macs,
            "flops": self.flops,
            "input_shape": list(self.input_shape),
            "sparsity": self.sparsity,
            "peak_activation_elems": self.peak_activation_elems,
            "source": self.source,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelProfile:
        try:
            shape = tuple(int(v) for v in data["input_shape"])
            if len(shape) != 3:
                raise ValueError("input_shape needs three values")
            return cls(
                layers=[LayerSpec.from_dict(layer) for layer in data["layers"]],
                params=int(data["params"]),
                macs=int(data["macs"]),
                flops=int(data["flops"]),
                input_shape=(shape[0], shape[1], shape[2]),
                sparsity=float(data["sparsity"]),
                peak_activation_elems=int(data["peak_activation_elems"]),
                source=str(data.get("source", "")),
                notes=list(data.get("notes", [])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(
                f"Not a valid model profile ({exc}); pass the output of ModelProfile.to_dict()."
            ) from exc


def _consumers(layers: Sequence[LayerSpec]) -> dict[str, list[int]]:
    users: dict[str, list[int]] = {}
    for index, layer in enumerate(layers):
        for source in layer.inputs:
            users.setdefault(source, []).append(index)
    return users


def mark_fusions(layers: Sequence[LayerSpec]) -> list[LayerSpec]:
    """Marks what XNNPACK folds away: batch norm after a conv/dense, clamp activations after conv/dense/add,
    and zero padding read only by convolutions (it becomes the convolution's own padding).

    Both the TFLite converter and ExecuTorch's XNNPACK partitioner fold an inference-mode batch norm into the
    preceding convolution's weights and turn ReLU/ReLU6 into the output clamp of the producing operator, but only
    when the producer's output has no other reader. Folded operators take no time on the board.
    """
    by_name = {layer.name: layer for layer in layers}
    users = _consumers(layers)
    result: list[LayerSpec] = []
    fused_into: dict[str, str] = {}  # fused layer name -> the real producer that absorbed it
    for layer in layers:
        producer_name = fused_into.get(layer.inputs[0], layer.inputs[0]) if len(layer.inputs) == 1 else None
        producer = by_name.get(producer_name) if producer_name else None
        sole_reader = len(layer.inputs) == 1 and len(users.get(layer.inputs[0], [])) == 1
        folds_bn = layer.kind == "batch_norm" and producer is not None and producer.op in _WEIGHTED
        folds_clamp = layer.kind in _CLAMP_ACTIVATIONS and producer is not None and producer.op in _FUSING_PRODUCERS
        readers = [layers[i] for i in users.get(layer.name, [])]
        folds_pad = layer.kind == "pad" and bool(readers) and all(r.op in ("conv", "depthwise_conv") for r in readers)
        fusable = folds_pad or (sole_reader and (folds_bn or folds_clamp))
        if fusable and producer_name is not None:
            fused_into[layer.name] = producer_name
            result.append(replace(layer, fused=True))
        else:
            result.append(layer)
    return result


def peak_live_elems(layers: Sequence[LayerSpec], input_elems: int) -> int:
    """Largest sum of activation elements alive at once when the operators run in order.

    A tensor is alive from the operator that writes it to the last operator that reads it (the model's output to
    the end), which is what the runtimes' arena planners achieve: the input and output of the running operator
    plus any branch held for a later residual add or concat. Fused operators write in place (no new tensor).
    """
    alias: dict[str, str] = {}
    size: dict[str, int] = {INPUT: input_elems}
    for layer in layers:
        if layer.fused and layer.inputs:  # written in place (or folded into its reader's padding)
            alias[layer.name] = alias.get(layer.inputs[0], layer.inputs[0])
        else:
            size[layer.name] = layer.output_elems
    last_use: dict[str, int] = {INPUT: 0}
    for index, layer in enumerate(layers):
        for source in layer.inputs:
            last_use[alias.get(source, source)] = index
    if layers:
        final = alias.get(layers[-1].name, layers[-1].name)
        last_use[final] = len(layers)
    peak = input_elems
    live: dict[str, int] = {INPUT: input_elems}
    for index, layer in enumerate(layers):
        if not layer.fused:
            live[layer.name] = layer.output_elems
        peak = max(peak, sum(live.values()))
        for name in [n for n in live if last_use.get(n, index) <= index]:
            del live[name]
    return peak


def chain_inputs(layers: Iterable[LayerSpec]) -> list[LayerSpec]:
    """Connects layers that carry no inputs into a chain (for profiles read without a graph)."""
    result: list[LayerSpec] = []
    previous = INPUT
    for layer in layers:
        result.append(layer if layer.inputs else replace(layer, inputs=(previous,)))
        previous = layer.name
    return result


def build_profile(
    layers: Sequence[LayerSpec],
    input_shape: tuple[int, int, int],
    params: int,
    sparsity: float,
    source: str,
    notes: Iterable[str] = (),
) -> ModelProfile:
    """Totals, fusions and the activation peak from a list of layers in execution order."""
    if not layers:
        raise InvalidInput("The model has no operators the estimator recognises; is it an image classifier?")
    h, w, c = input_shape
    if min(h, w, c) <= 0:
        raise InvalidInput(f"Input shape {input_shape} must be three positive numbers (height, width, channels).")
    marked = mark_fusions(chain_inputs(layers) if all(not layer.inputs for layer in layers) else list(layers))
    macs = sum(layer.macs for layer in marked)
    return ModelProfile(
        layers=marked,
        params=int(params),
        macs=int(macs),
        flops=int(2 * macs),
        input_shape=(int(h), int(w), int(c)),
        sparsity=float(sparsity),
        peak_activation_elems=peak_live_elems(marked, h * w * c),
        source=source,
        notes=list(notes),
    )
