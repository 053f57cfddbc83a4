"""Structured (filter) pruning of Keras models by rebuilding them with fewer filters, and ``prune_structured``.

No maintained library removes filters from a Keras model (tfmot only zeroes weights), so this is ours. The
model's layer graph is read from its config; the channel axis of every tensor is described as segments of
*channel spaces*, one per layer that creates channels (Conv2D filters, Dense units, SeparableConv2D pointwise
filters). Layers that keep channels (BatchNorm, activations, pooling, depthwise convolutions) pass the description
on; element-wise merges (Add, Multiply) unite the spaces that meet there (union-find), so every branch of a
residual block keeps the same channels; Concatenate lays spaces side by side; Flatten remembers the spatial
positions so the next Dense keeps rows ``position * C + channel``. Each filter is scored by the summed L2 norm of
its space's producers' filters (a following BatchNorm folded in, as in the deployed filter); spaces that reach the
model's input or output, or touch a layer this module does not understand, stay whole. How many channels each free
space loses is planned once per call, globally (``_global_removals``): the scores are normalised per space with
LAMP and one threshold removes the requested share of all prunable channels, at most ``MAX_SPACE_SHARE`` of any
space, so the spaces whose filters matter less lose more. On MobileNetV2 alpha 0.35 trained on digits, taking 5 %
from every layer lost 3.24 validation points (benchmarks/results/tensorflow.md); the global plan's figures are in
benchmarks/results/tensorflow_budget_global.md. Each space keeps its largest scores. A third plan, kept for
comparison, weighs the ranking by what each channel costs in multiply-adds (every layer a space touches, at its
output resolution), which takes the same share of channels more from high-resolution layers.
The config is then rewritten with the new widths, the model rebuilt and every weight sliced to the kept channels,
so the result is a plain, smaller Keras model.
"""

from __future__ import annotations  # noqa: I001 - keras_compat must run before TensorFlow loads

import copy
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from edgeopt.frameworks.tensorflow import keras_compat  # noqa: F401 - sets TF_USE_LEGACY_KERAS first

import numpy as np  # noqa: E402
import tf_keras  # noqa: E402

from edgeopt.errors import Unsupported  # noqa: E402
from edgeopt.frameworks.tensorflow.failures import readable_failures  # noqa: E402
from edgeopt.progress import StageReporter  # noqa: E402
from edgeopt.report import StrengthSearch  # noqa: E402
from edgeopt.strength_search import (  # noqa: E402
    KNOBS,
    Candidate,
    accuracy_floor,
    pick_allocation,
    recovery_subset,
    search_note,
)
from edgeopt.techniques import (  # noqa: E402
    FineTuneConfig,
    PruneStructuredConfig,
    TechniqueConfig,
    TechniqueContext,
    TechniqueOutput,
)

# Layers whose output has the input's channels, and which hold no per-channel weights.
_PASS_THROUGH = frozenset(
    {
        "ReLU", "Activation", "Softmax", "LeakyReLU", "ELU", "ThresholdedReLU",
        "Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization",
        "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
        "ZeroPadding2D", "Cropping2D", "UpSampling2D", "Identity",
    }
)  # fmt: skip
_ELEMENTWISE = frozenset({"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"})
_ACTIVATIONS = frozenset({"ReLU", "Activation", "Softmax", "LeakyReLU", "PReLU", "ELU", "ThresholdedReLU"})
_ADDITIVE = frozenset({"Add", "Subtract", "Average"})  # a residual stream meets its block's output here
_PER_CHANNEL = frozenset({"BatchNormalization", "LayerNormalization"})  # every weight is a (C,) vector
_NESTED = frozenset({"Functional", "Sequential", "Model"})
# TFOpLambda layers (``x + y``, ``x * gate``, ``tf.nn.relu(x)`` written in a Functional model) by their function.
_TF_BINARY = frozenset(
    {
        "__operators__.add", "math.add", "math.add_n", "math.subtract", "math.multiply", "math.truediv",
        "math.divide", "math.maximum", "math.minimum",
    }
)  # fmt: skip
_TF_ADDITIVE = frozenset({"__operators__.add", "math.add", "math.add_n", "math.subtract"})
_TF_UNARY = frozenset(
    {
        "nn.relu", "nn.relu6", "nn.silu", "nn.swish", "nn.gelu", "nn.elu", "nn.selu", "nn.softplus",
        "nn.leaky_relu", "math.sigmoid", "math.tanh", "math.abs", "math.negative", "math.square", "math.exp",
        "identity",
    }
)  # fmt: skip

Segments = tuple[tuple[int, int], ...]  # (space id, original width) along the channel axis, in order


@dataclass(frozen=True)
class _Flat:
    """A flattened (H, W, C) tensor: Dense rows are indexed ``position * C + channel`` (channels-last order)."""

    positions: int
    channels: Segments


Desc = Segments | _Flat


class _Spaces:
    """Union-find over channel spaces; each root holds its width, summed filter norms and whether it stays whole."""

    def __init__(self) -> None:
        self._parent: list[int] = []
        self._width: list[int] = []
        self._frozen: list[bool] = []
        self._score: list[np.ndarray] = []
        self._scale: list[float] = []  # share of the pruning ratio a space takes: 1 normally, 0 when protected
        self._cost: list[float] = []  # multiply-adds one channel of the space costs, over every layer it touches
        self._removed: dict[int, int] = {}  # the plan: channels each root loses (``allocate``)

    def new(self, width: int, *, frozen: bool = False, score: np.ndarray | None = None) -> int:
        self._parent.append(len(self._parent))
        self._width.append(width)
        self._frozen.append(frozen)
        self._score.append(np.zeros(width) if score is None else score.astype(np.float64))
        self._scale.append(1.0)
        self._cost.append(0.0)
        return len(self._parent) - 1

    def find(self, i: int) -> int:
        while self._parent[i] != i:
            self._parent[i] = self._parent[self._parent[i]]
            i = self._parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self._parent[rb] = ra
            self._frozen[ra] = self._frozen[ra] or self._frozen[rb]
            self._scale[ra] = min(self._scale[ra], self._scale[rb])
            self._score[ra] = self._score[ra] + self._score[rb]
            self._cost[ra] += self._cost[rb]

    def charge(self, space: int, macs: float) -> None:
        """Add ``macs`` to what one channel of ``space`` costs (removing the channel saves them)."""
        self._cost[self.find(space)] += macs

    def rescale(self, space: int, factor: np.ndarray) -> None:
        """Scale the scores of a space not yet united with others (its own filters only)."""
        if self.find(space) == space:
            self._score[space] = self._score[space] * factor

    def freeze(self, desc: Desc) -> None:
        for space, _ in desc.channels if isinstance(desc, _Flat) else desc:
            self._frozen[self.find(space)] = True

    def protect(self, space: int, scale: float) -> None:
        """Prune ``space`` at ``scale`` times the ratio from now on (0: keep it whole)."""
        root = self.find(space)
        self._scale[root] = min(self._scale[root], scale)

    def width(self, space: int) -> int:
        return self._width[self.find(space)]

    def is_free(self, space: int) -> bool:
        return not self._frozen[self.find(space)]

    def allocate(self, producers: list[int], sparsity: float, allocation: str = "global") -> None:
        """Decide once how many channels each space loses (the plan ``kept`` reads), for ``sparsity``.

        ``"global"`` (``_global_removals``): ``sparsity`` is the share of all prunable channels removed, ranked
        across spaces by LAMP-normalised scores, so spaces whose channels matter less lose more. ``"compute"``: the
        same share and ranking, each channel's score divided by the square root of its relative compute cost, so
        channels that cost many multiply-adds go sooner. ``"uniform"``: every free space loses ``sparsity`` times
        its protection scale of its own channels.
        """
        if allocation not in ALLOCATIONS:
            raise ValueError(f"allocation must be one of {ALLOCATIONS}, got {allocation!r}")
        roots = sorted({self.find(s) for s in producers if self.is_free(s) and self._scale[self.find(s)] > 0})
        if allocation == "uniform":
            self._removed = {
                r: self._width[r] - max(1, int(round(self._width[r] * (1.0 - sparsity * self._scale[r]))))
                for r in roots
            }
        else:
            costs = {r: self._cost[r] for r in roots} if allocation == "compute" else None
            self._removed = _global_removals(
                {r: self._score[r] for r in roots}, {r: self._scale[r] for r in roots}, sparsity, costs
            )

    def prunable(self, producers: list[int]) -> int:
        """Channels in the spaces pruning may narrow (free and not protected): what the global share is of."""
        roots = {self.find(s) for s in producers if self.is_free(s) and self._scale[self.find(s)] > 0}
        return sum(self._width[r] for r in roots)

    def kept(self, space: int) -> np.ndarray:
        """Sorted indices the space keeps under the plan: its largest summed norms, or all when it stays whole."""
        root = self.find(space)
        width = self._width[root]
        removed = self._removed.get(root, 0)
        if self._frozen[root] or removed <= 0:
            return np.arange(width)
        return np.sort(np.argsort(-self._score[root], kind="stable")[: width - removed])


# How ``prune_filters`` shares the removal among spaces: one ranking across all of them (the default), the same
# share of each, or the ranking weighed by each channel's compute. ``prune_scored`` compares the first two
# (``SCORED_ALLOCATIONS``). The compute-weighed ranking is kept to compare against, not tried by the techniques: on
# keras.applications MobileNetV2 it removes more FLOPs for the same channels (1.57x against 1.31x at half of them)
# but, after the search's short recovery, keeps 86.9 % where the plain ranking keeps 94.4 %, so the search never
# chose it and it only made each trial longer (benchmarks/results/tensorflow_budget_global.md).
ALLOCATIONS = ("global", "uniform", "compute")
SCORED_ALLOCATIONS = ("global", "uniform")
# The most of one space the global ranking may remove (times its protection scale); one channel always stays. The
# same cap as PyTorch's structured pruning; the channel knob's ladder stops below it (technique_specs.py).
MAX_SPACE_SHARE = 0.8


def lamp(scores: np.ndarray) -> np.ndarray:
    """LAMP scores of one space (layer-adaptive magnitude): sorted ascending, ``s_i^2 / sum_{j >= i} s_j^2``.

    Each space's weakest channel scores near 1 / width and its strongest exactly 1, whatever the space's scale,
    so one threshold can rank spaces of different widths and norms together (Lee et al., "Layer-adaptive sparsity
    for the magnitude-based pruning"). A space whose filters are all scaled alike scores as before: what ranks a
    filter low is being small next to the stronger filters of its own space. Returned in the input's order; a space
    of zeros scores 0.
    """
    order = np.argsort(scores, kind="stable")
    squared = np.square(scores[order].astype(np.float64))
    tails = np.cumsum(squared[::-1])[::-1]
    out = np.zeros(len(scores))
    out[order] = np.divide(squared, tails, out=np.zeros_like(squared), where=tails > 0)
    return out


def _global_removals(
    scores: dict[int, np.ndarray], scales: dict[int, float], sparsity: float, costs: dict[int, float] | None = None
) -> dict[int, int]:
    """How many channels each space loses when ``sparsity`` of all their channels go by one LAMP threshold.

    Channels are taken in ascending LAMP order (a protection scale below 1 divides a space's LAMP scores by it, so
    its channels rank as more important), skipping those of a space already at its cap: ``MAX_SPACE_SHARE`` times
    its scale of its width, and never its last channel. LAMP grows with the raw score inside a space, so each space
    loses its smallest summed norms, as under uniform removal. Ties (equal scores) go in space order. With
    ``costs`` (multiply-adds per channel of each space), each space's LAMP scores are also divided by the square
    root of its cost over the mean cost per channel: a compromise between importance alone and importance per
    multiply-add, which would strip every high-resolution layer to its cap first.
    """
    total = sum(len(s) for s in scores.values())
    target = int(round(total * sparsity))
    if target <= 0:
        return {}
    spaces, values = [], []
    for root, s in scores.items():
        spaces.append(np.full(len(s), root))
        values.append(lamp(s) / scales[root] / _relative_cost(costs, scores, root))
    space_of = np.concatenate(spaces)
    order = np.argsort(np.concatenate(values), kind="stable")
    caps = {r: min(len(s) - 1, int(np.floor(len(s) * MAX_SPACE_SHARE * scales[r]))) for r, s in scores.items()}
    removed = dict.fromkeys(scores, 0)
    left = target
    for root in space_of[order]:
        if removed[root] < caps[root]:
            removed[root] += 1
            left -= 1
            if not left:
                break
    return removed


def _relative_cost(costs: dict[int, float] | None, scores: dict[int, np.ndarray], root: int) -> float:
    """The square root of ``root``'s cost per channel over the mean cost per channel (1 without costs)."""
    if costs is None:
        return 1.0
    channels = sum(len(s) for s in scores.values())
    mean = sum(costs[r] * len(s) for r, s in scores.items()) / max(1, channels)
    if mean <= 0:
        return 1.0
    return float(np.sqrt(max(costs[root], 1e-12 * mean) / mean))


@dataclass
class _Node:
    name: str
    class_name: str
    config: dict[str, Any]  # the layer's entry inside the (copied) model config; edited in place for the rebuild
    inputs: list[str]
    call: Any = None  # the serialized call (tensors, constants and kwargs), for TFOpLambda operands


@dataclass(frozen=True)
class PrunedModel:
    """The rebuilt model and what pruning did to it, for notes and tests."""

    model: Any
    filters_before: int  # Conv2D filters + Dense units (+ SeparableConv2D filters) of the original
    filters_after: int
    kept_whole: tuple[str, ...] = field(default=())  # layers whose unknown type kept their neighbours whole
    protected: dict[str, tuple[str, ...]] = field(default_factory=dict)  # PROTECTIONS reason -> layers kept whole
    allocation: str = "global"  # how the removal was shared among layers (ALLOCATIONS)


# What ``protect=True`` keeps whole, and why (the sentence a note gives). On MobileNetV2 alpha 0.35 (digits), keeping
# the residual streams whole reached 85.6 % after 4 fine-tuning epochs where removing half of every layer's filters
# reached 61 % (benchmarks/results/tensorflow.md): an inverted-residual block's Add ties its narrow 8-112-channel
# stream across the whole stage, and its linear projection is the only path from the block to that stream.
PROTECTIONS = {
    "residual": "residual streams (every channel that meets at an Add) kept whole",
    "bottleneck": "linear bottlenecks (1x1 projections right after a depthwise convolution) kept whole",
}


def _is_tensor_ref(item: Any, names: set[str]) -> bool:
    """``[layer, node, tensor]`` or ``[layer, node, tensor, kwargs]``: how tf_keras serializes a Keras tensor."""
    return (
        isinstance(item, list | tuple)
        and len(item) in (3, 4)
        and isinstance(item[0], str)
        and item[0] in names
        and isinstance(item[1], int)
        and isinstance(item[2], int)
    )


def _node_tensors(node: Any, names: set[str]) -> list[list[Any]]:
    """Every Keras tensor a call reads, in order: its first argument's, then those passed in its kwargs.

    tf_keras writes a layer called on a list as ``[[a, 0, 0, kw], [b, 0, 0, kw]]`` and a TFOpLambda called on one
    tensor as ``[a, 0, 0, {"y": [b, 0, 0]}]``: the second operand of ``x + y`` or ``x * gate`` lives in the kwargs.
    Constants (``["_CONSTANT_VALUE", -1, value]``, numbers in the kwargs) are not tensors and are skipped.
    """
    found: list[list[Any]] = []

    def walk(item: Any) -> None:
        if _is_tensor_ref(item, names):
            found.append(list(item[:3]))
            if len(item) == 4:
                walk(item[3])
        elif isinstance(item, dict):
            for value in item.values():
                walk(value)
        elif isinstance(item, list | tuple):
            for sub in item:
                walk(sub)

    walk(node)
    return found


def _scalar_constants_only(call: Any) -> bool:
    """True when every constant operand of a call is a number: ``x * 0.5`` keeps channels, ``x * [..]`` may not."""
    if isinstance(call, bool | int | float | str) or call is None:
        return True
    if isinstance(call, dict):
        return all(_scalar_constants_only(value) for value in call.values())
    if isinstance(call, list | tuple):
        if len(call) in (3, 4) and call[0] == "_CONSTANT_VALUE":
            value = call[2]
            return isinstance(value, int | float) and _scalar_constants_only(call[3] if len(call) == 4 else None)
        if len(call) in (3, 4) and isinstance(call[0], str) and isinstance(call[1], int):  # a tensor reference
            return _scalar_constants_only(call[3] if len(call) == 4 else None)
        # a list of operands holds tensor references; numbers directly inside a list are a vector constant
        return all(isinstance(item, list | tuple | dict) and _scalar_constants_only(item) for item in call)
    return False


def _graph(model: Any, cfg: dict[str, Any]) -> tuple[list[_Node], list[str]]:
    """Layers in topological order with their inbound layer names, and the names of the output layers."""
    if isinstance(model, tf_keras.Sequential):
        nodes: list[_Node] = []
        for entry in cfg["layers"]:
            name = entry["config"]["name"]
            nodes.append(_Node(name, entry["class_name"], entry["config"], [nodes[-1].name] if nodes else [], None))
        return nodes, [nodes[-1].name]
    names = {entry["name"] for entry in cfg["layers"]}
    unordered: dict[str, _Node] = {}
    for entry in cfg["layers"]:
        inbound = entry.get("inbound_nodes") or []
        if len(inbound) > 1:
            raise Unsupported(
                f"Layer {entry['name']!r} is used more than once (a shared layer); structured pruning cannot give "
                "each use its own channels. Use a separate layer per call to prune this model."
            )
        inputs: list[str] = []
        for tensor in _node_tensors(inbound[0], names) if inbound else []:
            # tensor = [layer, node index, tensor index]. The node index is not an output: a nested model's
            # first call in the outer graph is its node 1 (node 0 is its own construction), so only the tensor
            # index tells a second output apart.
            if tensor[2] != 0:
                raise Unsupported(f"Layer {entry['name']!r} reads a layer with several outputs; it cannot be pruned.")
            if tensor[0] not in inputs:
                inputs.append(tensor[0])
        call = inbound[0] if inbound else None
        unordered[entry["name"]] = _Node(entry["name"], entry["class_name"], entry["config"], inputs, call)
    order: list[_Node] = []
    pending = {name: set(node.inputs) for name, node in unordered.items()}
    ready = deque(name for name, deps in pending.items() if not deps)
    while ready:
        name = ready.popleft()
        order.append(unordered[name])
        for other, deps in pending.items():
            if name in deps:
                deps.discard(name)
                if not deps:
                    ready.append(other)
    return order, [out[0] for out in cfg["output_layers"]]


def _axis_is_last(axis: Any, rank: int) -> bool:
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    return len(axes) == 1 and int(axes[0]) % rank == rank - 1


def _filter_norms(kernel: np.ndarray) -> np.ndarray:
    """L2 norm of each output filter (last axis) of a Conv2D / Dense / pointwise kernel."""
    return np.sqrt(np.square(kernel.reshape(-1, kernel.shape[-1])).sum(axis=0))


def _indices(segments: Segments, spaces: _Spaces) -> np.ndarray:
    parts, offset = [], 0
    for space, width in segments:
        parts.append(spaces.kept(space) + offset)
        offset += width
    return np.concatenate(parts) if parts else np.arange(0)


def _rows(desc: Desc, spaces: _Spaces) -> np.ndarray:
    """Input indices a layer keeps along its input-channel axis (Dense rows after a Flatten included)."""
    if isinstance(desc, _Flat):
        channels = _indices(desc.channels, spaces)
        width = sum(w for _, w in desc.channels)
        return (np.arange(desc.positions)[:, None] * width + channels[None, :]).ravel()
    return _indices(desc, spaces)


class _Analysis:
    """Walks the graph once, giving every tensor its channel description and every producer its space."""

    def __init__(self, model: Any, nodes: list[_Node], outputs: list[str], protect: bool = False) -> None:
        self.model = model
        self.protect = protect
        self.spaces = _Spaces()
        # With ``protect``: the layers whose channels were kept whole, by reason (see ``PROTECTIONS``).
        self.protected: dict[str, list[str]] = {}
        self._after_depthwise: set[str] = set()  # layers whose output is a depthwise convolution's, unmixed
        self.out: dict[str, Desc] = {}
        self.ins: dict[str, list[Desc]] = {}
        self.produced: dict[str, int] = {}  # layer name -> the space of the channels it creates
        self.kept_whole: list[str] = []
        self.channel_reshapes: list[str] = []  # Reshapes that keep channels last: their target_shape follows them
        self._consumers: dict[str, list[_Node]] = {}
        for node in nodes:
            for name in node.inputs:
                self._consumers.setdefault(name, []).append(node)
        for node in nodes:
            self.ins[node.name] = [self.out[name] for name in node.inputs]
            self.out[node.name] = self._visit(node, self.ins[node.name])
            if protect:
                self._protect(node)
        for name in outputs:
            self.spaces.freeze(self.out[name])

    def _protect(self, node: _Node) -> None:
        """Keeps whole the channels the measured trials show narrow networks cannot lose (``PROTECTIONS``)."""
        cls, cfg = node.class_name, node.config
        if cls == "DepthwiseConv2D" or (
            node.inputs and node.inputs[0] in self._after_depthwise and (cls in _PER_CHANNEL or cls in _PASS_THROUGH)
        ):
            self._after_depthwise.add(node.name)
        additive = cls in _ADDITIVE or (cls == "TFOpLambda" and cfg.get("function") in _TF_ADDITIVE)
        if additive and len(node.inputs) > 1:
            self._keep_whole("residual", node.name, self.out[node.name])
        pointwise = tuple(cfg.get("kernel_size", ())) in ((1, 1), [1, 1])
        if (
            cls == "Conv2D"
            and pointwise
            and node.name in self.produced
            and node.inputs[0] in self._after_depthwise
            and self._stays_linear(node)
        ):
            self._keep_whole("bottleneck", node.name, ((self.produced[node.name], 0),))

    def _stays_linear(self, node: _Node) -> bool:
        """Whether ``node``'s output reaches no activation (through batch norms): a linear bottleneck, as in
        MobileNetV2's projections. MobileNet V1's pointwise convolutions also follow a depthwise one, but a ReLU
        follows them: they are ordinary layers, and protecting them left 2 of its 1,506 filters prunable."""
        if node.config.get("activation", "linear") != "linear":
            return False
        for consumer in self._consumers.get(node.name, []):
            cls, cfg = consumer.class_name, consumer.config
            if cls in _ACTIVATIONS and not (cls == "Activation" and cfg.get("activation") == "linear"):
                return False
            if cls == "TFOpLambda" and cfg.get("function") in _TF_UNARY - {"identity", "math.negative"}:
                return False
            if cls in _PER_CHANNEL and not self._stays_linear(consumer):
                return False
        return True

    def _keep_whole(self, reason: str, name: str, desc: Desc) -> None:
        for space, _ in desc.channels if isinstance(desc, _Flat) else desc:
            self.spaces.protect(space, 0.0)
        self.protected.setdefault(reason, []).append(name)

    def _layer(self, name: str) -> Any:
        return self.model.get_layer(name)

    def _fresh_frozen(self, width: int) -> Segments:
        return ((self.spaces.new(width, frozen=True), width),)

    def _produce(self, node: _Node, kernel: np.ndarray, first: Desc, per_out: float, per_in: float) -> Segments:
        """A new space for the layer's filters; ``per_out`` / ``per_in``: multiply-adds per output position that one
        filter / one input channel costs in this layer (``_charge``)."""
        width = int(kernel.shape[-1])
        self.produced[node.name] = self.spaces.new(width, score=_filter_norms(kernel))
        positions = self._charge(node, first, per_in)
        self.spaces.charge(self.produced[node.name], per_out * positions)
        return ((self.produced[node.name], width),)

    def _charge(self, node: _Node, first: Desc, per_in: float) -> float:
        """Charge each input space ``per_in`` multiply-adds per output position of ``node``; returns the positions
        (1 where the output's spatial size is unknown: the cost ranking then ignores resolution)."""
        try:
            shape = self._layer(node.name).output_shape
        except (AttributeError, RuntimeError):  # a layer called on several inputs has no single output shape
            shape = None
        spatial = shape[1:-1] if isinstance(shape, tuple) and len(shape) > 2 else ()
        positions = float(np.prod([d or 1 for d in spatial])) if spatial else 1.0
        for space, _ in first.channels if isinstance(first, _Flat) else first:
            self.spaces.charge(space, per_in * positions)
        return positions

    def _visit(self, node: _Node, ins: list[Desc]) -> Desc:  # noqa: C901 - one dispatch over layer kinds
        cls, cfg = node.class_name, node.config
        if cls in _NESTED:  # a model inside the model: kept whole, with the channels around it
            return self._unknown(node, ins)
        if cls == "InputLayer":
            return self._fresh_frozen(int(cfg["batch_input_shape"][-1]))
        if not ins:  # the first layer of a Sequential model built without an InputLayer entry
            ins = [self._fresh_frozen(int(self.model.input_shape[-1]))]
        first = ins[0]
        weights = self._layer(node.name).get_weights()
        rank = len(self._layer(node.name).input_shape) if len(ins) == 1 else 0
        if cls == "Conv2D" and cfg.get("groups", 1) == 1 and cfg.get("data_format") != "channels_first":
            taps = float(np.prod(weights[0].shape[:2]))
            return self._produce(node, weights[0], first, taps * weights[0].shape[2], taps * weights[0].shape[3])
        if cls == "Dense":
            units = weights[0].shape[1]
            per_in = units * first.positions if isinstance(first, _Flat) else units
            return self._produce(node, weights[0], first, weights[0].shape[0], per_in)
        if cls == "SeparableConv2D" and cfg.get("depth_multiplier") == 1 and cfg.get("data_format") != "channels_first":
            taps = float(np.prod(weights[0].shape[:2]))
            return self._produce(node, weights[1], first, weights[1].shape[2], taps + weights[1].shape[3])
        if cls == "DepthwiseConv2D" and cfg.get("depth_multiplier") == 1 and cfg.get("data_format") != "channels_first":
            self._charge(node, first, float(np.prod(weights[0].shape[:2])))
            return first
        if cls in _PER_CHANNEL and not isinstance(first, _Flat) and _axis_is_last(cfg.get("axis", -1), rank):
            if cls == "BatchNormalization" and node.inputs and node.inputs[0] in self.produced:
                self._fold_batchnorm(self.produced[node.inputs[0]], cfg, weights)
            return first
        if cls in _PASS_THROUGH and cfg.get("data_format") != "channels_first":
            return first
        if cls == "Flatten" and not isinstance(first, _Flat):
            shape = self._layer(node.name).input_shape
            return first if len(shape) == 2 else _Flat(int(np.prod(shape[1:-1])), first)
        if cls == "Concatenate" and all(not isinstance(d, _Flat) for d in ins):
            out_rank = len(self._layer(node.name).output_shape)
            if _axis_is_last(cfg.get("axis", -1), out_rank):
                return tuple(seg for desc in ins for seg in desc)  # type: ignore[union-attr]
            return self._merge(ins)
        if cls == "Reshape" and not isinstance(first, _Flat) and self._keeps_channels_last(node):
            self.channel_reshapes.append(node.name)  # (N, C) -> (N, 1, 1, C) before a squeeze-and-excite gate
            return first
        if cls in _ELEMENTWISE:
            return self._merge(ins)
        if cls == "TFOpLambda" and _scalar_constants_only(node.call):
            function = cfg.get("function")
            if function in _TF_BINARY:
                return self._merge(ins) if len(ins) > 1 else first  # x + 3.0 keeps x's channels
            if function in _TF_UNARY and len(ins) == 1:
                return first
        return self._unknown(node, ins)

    def _keeps_channels_last(self, node: _Node) -> bool:
        """A Reshape that only adds or merges spatial axes: channels stay the last axis, in order (EfficientNet's
        squeeze-and-excite reshapes the pooled (N, C) to (N, 1, 1, C)). Treated as unknown, it kept every channel
        feeding an excite gate whole: 3 % of EfficientNetB0's filters could go."""
        layer = self._layer(node.name)
        before, after = layer.input_shape, layer.output_shape
        target = node.config.get("target_shape")
        if isinstance(before, list) or isinstance(after, list) or not target or not before or not after:
            return False
        return before[-1] is not None and before[-1] == after[-1] == target[-1]

    def _fold_batchnorm(self, space: int, cfg: dict[str, Any], weights: list[np.ndarray]) -> None:
        """Rank a filter followed by BatchNorm by the norm of the filter as deployed (BatchNorm folded into it).

        BatchNorm rescales each channel by gamma / sqrt(variance + eps), which makes the raw filter norm meaningless:
        a large filter can be scaled to almost nothing, a small one amplified.
        """
        variance = weights[-1]
        gamma = weights[0] if cfg.get("scale", True) else np.ones_like(variance)
        self.spaces.rescale(space, np.abs(gamma) / np.sqrt(variance + float(cfg.get("epsilon", 1e-3))))

    def _merge(self, ins: list[Desc]) -> Desc:
        """All tensors meeting element-wise share channels: unite their spaces, or keep them whole if they differ."""
        shapes = {tuple(w for _, w in d) for d in ins if not isinstance(d, _Flat)}
        if len(shapes) == 1 and not any(isinstance(d, _Flat) for d in ins):
            for other in ins[1:]:
                for (a, _), (b, _) in zip(ins[0], other, strict=True):  # type: ignore[arg-type]
                    self.spaces.union(a, b)
        else:
            for desc in ins:
                self.spaces.freeze(desc)
        return ins[0]

    def _unknown(self, node: _Node, ins: list[Desc]) -> Desc:
        """A layer we cannot slice: its inputs and output keep every channel, so its weights stay valid as they are."""
        for desc in ins:
            self.spaces.freeze(desc)
        shape = self._layer(node.name).output_shape
        if isinstance(shape, list):
            raise Unsupported(f"Layer {node.name!r} ({node.class_name}) has several outputs; it cannot be pruned.")
        self.kept_whole.append(f"{node.name} ({node.class_name})")
        return self._fresh_frozen(int(shape[-1]) if shape and shape[-1] else 1)


def _sliced_weights(node: _Node, weights: list[np.ndarray], ins: list[Desc], analysis: _Analysis):
    """The layer's weights restricted to its kept input channels and kept output filters (the spaces' plan)."""
    spaces, cls = analysis.spaces, node.class_name
    if not weights or not ins:
        return weights
    rows = _rows(ins[0], spaces)
    if node.name in analysis.produced:
        cols = spaces.kept(analysis.produced[node.name])
        if cls == "Dense":
            return [weights[0][rows][:, cols], *(w[cols] for w in weights[1:])]
        if cls == "Conv2D":
            return [weights[0][:, :, rows, :][..., cols], *(w[cols] for w in weights[1:])]
        depthwise, pointwise, *bias = weights  # SeparableConv2D
        return [depthwise[:, :, rows, :], pointwise[:, :, rows, :][..., cols], *(b[cols] for b in bias)]
    if cls == "DepthwiseConv2D":
        return [weights[0][:, :, rows, :], *(w[rows] for w in weights[1:])]
    if cls in _PER_CHANNEL:
        return [w[rows] for w in weights]
    return weights  # an unknown layer: every channel around it was kept


def _model_config(model: Any) -> dict[str, Any]:
    if not isinstance(model, tf_keras.Model):
        raise Unsupported(
            f"Structured pruning works on tf_keras models; got {type(model).__name__}. Load the model as a Keras "
            "(.keras or .h5) model to use it."
        )
    if not getattr(model, "_is_graph_network", False):
        raise Unsupported(
            f"{type(model).__name__} is a subclassed Keras model (a custom `call`), which has no layer graph to "
            "rebuild with fewer filters. Save it as a Functional or Sequential model to prune it structurally."
        )
    try:
        cfg = copy.deepcopy(model.get_config())
    except NotImplementedError as exc:
        raise Unsupported(
            f"A custom layer in this model does not implement get_config(), so it cannot be rebuilt with fewer "
            f"filters ({exc})."
        ) from exc
    for entry in cfg["layers"]:
        entry.pop("build_config", None)  # recorded input shapes would rebuild the old widths
    return cfg


def _unrebuildable(exc: Exception) -> str:
    detail = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)[:200]
    return (
        "This Keras model cannot be rebuilt from its config with fewer filters, usually because a custom layer's "
        f"get_config() does not list its constructor arguments ({detail})."
    )


def _analyse(model: Any, protect: bool = False) -> tuple[dict[str, Any], list[_Node], _Analysis]:
    """The model's (copied) config, its layers in order and their channel analysis.

    With ``protect``, the channels ``PROTECTIONS`` names are kept whole, unless that leaves no filter to remove
    (a network made only of residual blocks with no inner width): then nothing is protected.
    """
    cfg = _model_config(model)
    try:
        nodes, outputs = _graph(model, cfg)
        analysis = _Analysis(model, nodes, outputs, protect)
        if protect and not _removes_any(analysis, 0.5):
            cfg = _model_config(model)
            nodes, outputs = _graph(model, cfg)
            analysis = _Analysis(model, nodes, outputs)
        return cfg, nodes, analysis
    except (KeyError, TypeError, ValueError) as exc:  # a config that does not describe the model's own layers
        raise Unsupported(_unrebuildable(exc)) from exc


def _removes_any(analysis: _Analysis, sparsity: float, allocation: str = "global") -> bool:
    """Whether the plan for ``sparsity`` narrows any space (it is left in ``analysis.spaces``)."""
    spaces, producers = analysis.spaces, list(analysis.produced.values())
    spaces.allocate(producers, sparsity, allocation)
    return any(len(spaces.kept(space)) < spaces.width(space) for space in producers)


def removes_filters(model: Any, sparsity: float, protect: bool = True, allocation: str = "global") -> bool:
    """Whether pruning at ``sparsity`` removes at least one filter; milder settings leave a narrow model whole.

    The strength search leaves settings that would remove nothing off its ladder.
    """
    return _removes_any(_analyse(model, protect)[2], sparsity, allocation)


def prune_filters(model: Any, sparsity: float, protect: bool = False, allocation: str = "global") -> PrunedModel:
    """Rebuild ``model`` without ``sparsity`` of its prunable channels, weights carried.

    With ``allocation="global"`` (the techniques' choice) ``sparsity`` is the share of all channels in free,
    unprotected spaces, allocated across spaces by one threshold over LAMP-normalised filter norms
    (``_global_removals``), at most ``MAX_SPACE_SHARE`` of any space; with ``"uniform"`` each space loses that share
    of its own channels. The plan is computed once here and every weight slice reads it. ``sparsity=0`` rebuilds an
    identical model (same outputs), which is how the weight slicing is tested.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    from tf_keras.src.saving.serialization_lib import SafeModeScope

    cfg, nodes, analysis = _analyse(model, protect)
    analysis.spaces.allocate(list(analysis.produced.values()), sparsity, allocation)
    if sparsity > 0 and not any(analysis.spaces.is_free(s) for s in analysis.produced.values()):
        raise Unsupported(
            "No filter of this model can be removed: every convolution or dense layer feeds the output or a layer "
            f"structured pruning does not understand ({', '.join(analysis.kept_whole) or 'none'})."
        )
    before = after = 0
    for node in nodes:
        if node.name in analysis.produced:
            width = len(analysis.spaces.kept(analysis.produced[node.name]))
            before += int(node.config["units" if node.class_name == "Dense" else "filters"])
            after += width
            node.config["units" if node.class_name == "Dense" else "filters"] = width
    for node in nodes:
        if node.name in analysis.channel_reshapes:
            kept = len(_rows(analysis.ins[node.name][0], analysis.spaces))
            node.config["target_shape"] = [*node.config["target_shape"][:-1], kept]
    custom = {type(layer).__name__: type(layer) for layer in model.layers}
    try:
        # The model is already in memory, so its own Lambda functions are rebuilt without a new trust decision.
        with SafeModeScope(False):
            rebuilt = type(model).from_config(cfg, custom_objects=custom)
    except (KeyError, TypeError, ValueError) as exc:
        raise Unsupported(_unrebuildable(exc)) from exc
    lost = {layer.name for layer in model.layers} - {layer.name for layer in rebuilt.layers}
    if lost:
        raise Unsupported(_unrebuildable(ValueError(f"layers {sorted(lost)} came back under other names")))
    for node in nodes:
        if node.class_name == "InputLayer":
            continue
        weights = model.get_layer(node.name).get_weights()
        rebuilt.get_layer(node.name).set_weights(_sliced_weights(node, weights, analysis.ins[node.name], analysis))
    protected = {reason: tuple(names) for reason, names in analysis.protected.items()}
    return PrunedModel(rebuilt, before, after, tuple(analysis.kept_whole), protected, allocation)


# Images that score the two allocations when the technique has no validation split (a fixed strength): train images,
# which flatter both alike; the comparison, not the figure, is what counts.
ALLOCATION_SCORE_IMAGES = 512


def prune_scored(
    model: Any,
    sparsity: float,
    x_train: np.ndarray,
    seed: int,
    score: tuple[np.ndarray, np.ndarray],
    recover: Callable[[PrunedModel], None] | None = None,
    floor: float | None = None,
) -> PrunedModel:
    """``prune_filters`` (protected) with the allocation that keeps more accuracy on ``score``: the ranking across
    layers or the same share of every layer (``SCORED_ALLOCATIONS``), each scored after BatchNorm recalibration and
    ``recover`` (a short fine-tune, when given). Where both keep the same accuracy (within one scored image), the
    one that leaves fewer FLOPs wins; with a ``floor`` (the lowest accuracy the user's budget allows,
    ``acceptance_floor``), the one with fewer FLOPs among those that reach it. Returns the winner as scored
    (recovered, when ``recover`` is given). An allocation that cannot be carried out on this model (``Unsupported``)
    is left out; if none can, the first one's reason is raised.

    Neither wins everywhere. On keras.applications MobileNetV2 (digits) 5 % of every layer lost 3.24 validation
    points while the ranking across layers kept its accuracy at 50 % of the channels. On the demo CNN the ranking
    keeps more right after pruning (72 % against 62 % at 50 %), but it takes most of the widest layer: it removes
    less compute and, once fine-tuned, lost 1.67 test points where the same share of every layer lost 0.56
    (benchmarks/results/tensorflow_budget_global.md). A short recovery shows that: both candidates are then back
    near the original, and the one with fewer FLOPs is kept.
    """
    from edgeopt.estimate import profile_keras
    from edgeopt.frameworks.tensorflow.training import recalibrate_batchnorm

    x_score, y_score = score
    scored: list[tuple[float, int, PrunedModel]] = []
    failure: Unsupported | None = None
    for allocation in SCORED_ALLOCATIONS:
        try:
            pruned = prune_filters(model, sparsity, protect=True, allocation=allocation)
        except Unsupported as exc:  # this allocation cannot be carried out here: the other may
            failure = failure or exc
            continue
        recalibrate_batchnorm(pruned.model, x_train, seed)
        if sparsity <= 0.0:
            return pruned  # nothing removed: both allocations rebuild the same model
        if recover is not None:
            recover(pruned)
        outputs = pruned.model.predict(x_score, batch_size=256, verbose=0)
        accuracy = float(np.mean(np.argmax(outputs, axis=1) == y_score))
        scored.append((accuracy, int(profile_keras(pruned.model).flops), pruned))
    if not scored:
        assert failure is not None
        raise failure
    return pick_allocation(scored, len(y_score), floor)


def acceptance_floor(ctx: TechniqueContext, original: Any) -> float | None:
    """The lowest validation accuracy the user's budget allows (``SearchContext.budget``), or None without a search."""
    from edgeopt.frameworks.tensorflow.search import val_accuracy

    return accuracy_floor(ctx.search, lambda: val_accuracy(original, ctx.search))  # type: ignore[arg-type]


def short_recovery(
    ctx: TechniqueContext, config: FineTuneConfig, reporter: StageReporter, stage: str
) -> Callable[[PrunedModel], None]:
    """The search's recovery for one candidate (a fraction of an epoch on ``recovery_subset``), then recalibration."""
    from edgeopt.frameworks.tensorflow.training import fine_tune, recalibrate_batchnorm

    recovery = recovery_subset(ctx.data, ctx.seed, ctx.search.recovery_images if ctx.search else None)

    def recover(pruned: PrunedModel) -> None:
        fine_tune(pruned.model, recovery, epochs=1, lr=config.learning_rate, batch_size=config.batch_size,
                  reporter=reporter, stage=stage, seed=config.seed)  # fmt: skip
        recalibrate_batchnorm(pruned.model, ctx.data.x_train, config.seed)

    return recover


def scoring_images(ctx: TechniqueContext, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """What ``prune_scored`` scores on: the search's validation split, else ``ALLOCATION_SCORE_IMAGES`` train images."""
    if ctx.search is not None:
        return ctx.search.x_val, ctx.search.y_val
    order = np.random.default_rng(seed).permutation(len(ctx.data.x_train))[:ALLOCATION_SCORE_IMAGES]
    return ctx.data.x_train[order], ctx.data.y_train[order]


class PruneStructured:
    """``prune_structured``: filters removed physically, fine-tuned, exported to FP32 ``.tflite``.

    The share of filters removed is searched for the accuracy budget unless the config sets ``channel_sparsity``.
    """

    name: ClassVar[str] = "prune_structured"
    searches_strength: ClassVar[bool] = True

    @readable_failures
    def apply(self, ctx: TechniqueContext, config: TechniqueConfig) -> TechniqueOutput:
        from edgeopt.frameworks.tensorflow.convert import keras_download_note, save_keras, to_tflite
        from edgeopt.frameworks.tensorflow.search import finish_record

        if not isinstance(config, PruneStructuredConfig):
            config = PruneStructuredConfig.model_validate(config.model_dump())
        ratio, record = search_filter_sparsity(
            ctx, self.name, config.channel_sparsity, config, ctx.reporter.sub(0.0, 0.4)
        )
        rest = ctx.reporter.sub(0.4 if record else 0.0, 1.0)
        pruned = prune_and_fine_tune(ctx, ratio, config, rest.sub(0.0, 0.9))
        finish_record(record, pruned.model, ctx)
        rest.stage("Exporting the pruned model to .tflite", 0.92)
        artifact = to_tflite(pruned.model, ctx.work_dir / f"{self.name}.tflite")
        keras_file = save_keras(pruned.model, ctx.work_dir / f"{self.name}.keras")
        rest.stage("Exported", 1.0)
        return TechniqueOutput(
            artifact=artifact,
            precision="fp32",
            model=pruned.model,
            formats={"keras": keras_file},
            search=record,
            notes=(search_note(record) + " " if record else "") + describe(pruned, ratio, config.epochs)
            + keras_download_note(pruned.model),
        )


def search_filter_sparsity(
    ctx: TechniqueContext, technique: str, fixed: float, config: FineTuneConfig, reporter: StageReporter
) -> tuple[float, StrengthSearch | None]:
    """The share of prunable channels to remove (``prune_filters``' global allocation): ``fixed`` without a search,
    else the strongest within the accuracy budget. Each trial records its FLOPs, which a share does not fix.

    Each candidate is pruned from the user's model, recovers for a fraction of an epoch and is scored on the
    validation split; shared by prune_structured and hybrid_prune_int8.
    """
    from edgeopt.estimate import profile_keras
    from edgeopt.frameworks.tensorflow.search import choose_strength, val_accuracy

    if ctx.search is None:
        return fixed, None
    _require_transformable(ctx)
    model = ctx.model.model
    search = ctx.search
    params_before = int(model.count_params())
    floor = acceptance_floor(ctx, model)

    def evaluate(ratio: float) -> Candidate:
        stage = f"Searching the strength: short recovery at {ratio:.0%} of the prunable filters removed"
        recover = short_recovery(ctx, config, reporter, stage)
        pruned = prune_scored(model, ratio, ctx.data.x_train, config.seed, scoring_images(ctx, config.seed), recover,
                              floor)  # fmt: skip
        params = int(pruned.model.count_params())
        return Candidate(
            val_accuracy=val_accuracy(pruned.model, search),
            params=params,
            flops=int(profile_keras(pruned.model).flops),
            size_ratio=params_before / max(1, params),
        )

    ladder = [ratio for ratio in KNOBS[technique].ladder if removes_filters(model, ratio)]
    return choose_strength(ctx, technique, fixed, model, evaluate, reporter, ladder=ladder)


def _require_transformable(ctx: TechniqueContext) -> None:
    if not getattr(ctx.model, "transformable", True):
        raise Unsupported(ctx.model.not_transformable_reason or "This model can be evaluated but not transformed.")


def allocation_phrase(pruned: PrunedModel) -> str:
    """How the removal was shared among layers, for a note (``prune_scored`` chose it)."""
    if pruned.allocation == "uniform":
        return (
            "the same share from every prunable layer (it kept more accuracy right after pruning than a ranking "
            "across layers)"
        )
    return (
        "ranked across layers so the layers whose filters matter less lose more "
        f"(at most {MAX_SPACE_SHARE:.0%} of any layer)"
    )


def describe(pruned: PrunedModel, sparsity: float, epochs: int) -> str:
    """Sentences for a run's notes: how many filters remain, what kept some layers whole, how it was trained."""
    return (
        f"{sparsity:.0%} of the prunable channels removed, {allocation_phrase(pruned)}: filters rebuilt from "
        f"{pruned.filters_before} to {pruned.filters_after} (Conv2D filters and Dense units scored by the L2 norm of "
        "the BatchNorm-folded filter, normalised per layer with LAMP; the classifier's outputs are never pruned), "
        f"BatchNorm statistics recalibrated on train images, then fine-tuned for {epochs} epoch(s)."
        + protected_note(pruned)
        + kept_whole_note(pruned)
    )


def protected_note(pruned: PrunedModel) -> str:
    """A sentence naming what ``protect=True`` kept whole, or "" when nothing was."""
    if not pruned.protected:
        return ""
    parts = [f"{PROTECTIONS[reason]} ({_listed(names)})" for reason, names in pruned.protected.items()]
    return f" Protected from pruning: {'; '.join(parts)}."


def _listed(names: tuple[str, ...], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{len(names)}: {', '.join(names[:shown])}{more}"


def kept_whole_note(pruned: PrunedModel) -> str:
    """A sentence naming the layers that kept their neighbours' channels whole, or "" when none did.

    Layers are grouped by type with a few names each: RegNet alone has a dozen grouped convolutions.
    """
    if not pruned.kept_whole:
        return ""
    by_type: dict[str, list[str]] = {}
    for entry in pruned.kept_whole:
        name, _, kind = entry.rpartition(" (")
        by_type.setdefault(kind.rstrip(")"), []).append(name)
    groups = []
    for kind, names in by_type.items():
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        listed = f"{kind} x{len(names)} ({', '.join(names[:3])}{more})"
        groups.append(listed if len(names) > 1 else f"{names[0]} ({kind})")
    return f" Channels kept whole around layers structured pruning cannot slice: {'; '.join(groups)}."


def prune_and_fine_tune(
    ctx: TechniqueContext, sparsity: float, config: FineTuneConfig, reporter: StageReporter
) -> PrunedModel:
    """Prune ``ctx.model`` structurally, then fine-tune the smaller model; shared by prune_structured and hybrid.

    ``reporter`` covers this step's share of the technique's progress bar.
    """
    from edgeopt.frameworks.tensorflow.training import fine_tune, recalibrate_batchnorm

    _require_transformable(ctx)
    reporter.stage(f"Removing {sparsity:.0%} of the prunable filters and rebuilding the model", 0.0)
    recover = short_recovery(ctx, config, reporter.sub(0.0, 0.05), "Comparing two ways to share the removal")
    floor = acceptance_floor(ctx, ctx.model.model)
    chosen = prune_scored(ctx.model.model, sparsity, ctx.data.x_train, config.seed, scoring_images(ctx, config.seed),
                          recover, floor)  # fmt: skip
    pruned = prune_filters(ctx.model.model, sparsity, protect=True, allocation=chosen.allocation)  # untrained again
    recalibrate_batchnorm(pruned.model, ctx.data.x_train, config.seed)
    fine_tune(
        pruned.model,
        ctx.data,
        epochs=config.epochs,
        lr=config.learning_rate,
        batch_size=config.batch_size,
        reporter=reporter.sub(0.05, 1.0),
        stage="Fine-tuning the pruned model",
        seed=config.seed,
    )
    recalibrate_batchnorm(pruned.model, ctx.data.x_train, config.seed)
    return pruned
