"""Pruning for PyTorch: global L1 unstructured (zeros in place) and torch-pruning structured (channels removed).

``prune_channels`` is the one structural-pruning function: ``prune_structured`` uses it on the model, the hybrid
technique reuses ``prune_and_fine_tune`` before INT8, and distillation uses it to cut its student out of the
teacher, so every architecture torch-pruning can trace works for all three with no hand-written variant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

import numpy as np
import torch
from torch import nn

from edgeopt.errors import EdgeOptError, TechniqueFailed, Unsupported
from edgeopt.frameworks.pytorch.export import export_program, save_pt2, to_pte
from edgeopt.frameworks.pytorch.graph_modules import editable_module
from edgeopt.frameworks.pytorch.layout import example_input, iterate_batches
from edgeopt.frameworks.pytorch.training import fine_tune
from edgeopt.progress import StageReporter
from edgeopt.report import StrengthSearch
from edgeopt.strength_search import (
    KNOBS,
    Candidate,
    accuracy_floor,
    pick_allocation,
    recovery_subset,
    search_note,
)
from edgeopt.techniques import (
    PruneStructuredConfig,
    PruneUnstructuredConfig,
    TechniqueConfig,
    TechniqueContext,
    TechniqueOutput,
)

PRUNABLE_TYPES = (nn.Conv2d, nn.Linear)
UPLOAD_ADVICE = "Upload a .pt2 from torch.export.export, or a state dict together with its architecture name."


def trainable_copy(loaded: object, technique: str) -> nn.Module:
    """A deep copy of the user's model made of real layers, ready to prune and train; the original stays intact.

    TorchScript keeps no editable graph, so techniques that rewrite the network skip it with a sentence saying
    what to upload instead.
    """
    if not getattr(loaded, "transformable", True):
        reason = getattr(loaded, "not_transformable_reason", "") or "this model format keeps no editable graph."
        advice = "" if ".pt2" in reason else f" {UPLOAD_ADVICE}"
        raise Unsupported(f"{technique} cannot run on this model: {reason}{advice}")
    return editable_module(loaded.model)  # type: ignore[attr-defined]


def prunable_weights(module: nn.Module) -> list[tuple[nn.Module, str]]:
    """Every convolution and linear weight: what unstructured pruning ranks globally."""
    return [(layer, "weight") for layer in module.modules() if isinstance(layer, PRUNABLE_TYPES)]


def classifier_layer(module: nn.Module, example: torch.Tensor | None = None) -> nn.Module:
    """The layer producing the logits: pruning its outputs would remove classes, so it is never pruned.

    With an ``example`` it is the last convolution or linear layer the forward pass runs: a model of the user's
    may declare its head before its body (``self.fc`` first in ``__init__``), and the last layer declared would then
    be a feature layer, leaving the logits' layer prunable. Without one, or if that pass fails, the last declared.
    """
    layers = [layer for layer in module.modules() if isinstance(layer, PRUNABLE_TYPES)]
    if not layers:
        raise TechniqueFailed("The model has no convolution or linear layer to prune.")
    if example is None:
        return layers[-1]
    ran: list[nn.Module] = []
    hooks = [layer.register_forward_hook(lambda layer, _inputs, _output: ran.append(layer)) for layer in layers]
    try:
        with torch.no_grad():
            module(example)
    except Exception:  # noqa: BLE001 - the pruner's own pass reports a model that does not run
        ran = []
    finally:
        for hook in hooks:
            hook.remove()
    return ran[-1] if ran else layers[-1]


@dataclass(frozen=True)
class PruneSummary:
    """Parameter and multiply-add counts (torch-pruning's counter) before and after removing channels."""

    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    kept_whole: tuple[str, ...] = ()  # layers left at full width: their channels feed a reshape (channel shuffle)
    ranking: str = ""  # how channels were ranked, for a sentence: "batch-norm scale"
    allocation: str = "global"  # how the removal was shared among layers (ALLOCATIONS)

    def how(self) -> str:
        """How the channels were chosen, for a note: ranked across layers, or the same share from each."""
        if self.allocation == "uniform":
            return (
                f"the same share from every layer, ranked within each by {self.ranking} (that kept more accuracy "
                "after a short recovery than a ranking across layers)"
            )
        return (
            f"ranked across layers by {self.ranking} so the layers whose channels matter less lose more (at most "
            f"{MAX_LAYER_RATIO:.0%} of any layer)"
        )

    def describe(self) -> str:
        text = (
            f"parameters {self.params_before:,} -> {self.params_after:,} "
            f"({self.params_before / max(1, self.params_after):.1f}x fewer), multiply-adds "
            f"{self.macs_before:,} -> {self.macs_after:,} ({self.macs_before / max(1, self.macs_after):.1f}x fewer)"
        )
        if self.kept_whole:
            text += (
                f"; {len(self.kept_whole)} layer(s) kept all their channels because those feed a reshape that "
                f"regroups channels (such as a channel shuffle), which torch-pruning cannot follow: "
                f"{_names(self.kept_whole)}"
            )
        return text


def _names(layers: tuple[str, ...], shown: int = 3) -> str:
    more = f" and {len(layers) - shown} more" if len(layers) > shown else ""
    return ", ".join(layers[:shown]) + more


@contextmanager
def _reshapes_it_cannot_follow() -> Iterator[set[Any]]:
    """Collects the reshape nodes torch-pruning fails to map, instead of letting it crash on them.

    torch-pruning maps channel indices through a reshape only when it flattens channels into features; a reshape
    that splits the channel dimension (ShuffleNet's ``view(b, groups, c // groups, h, w)``, attention heads) makes
    its index mapping divide by zero while the dependency graph is built. The nodes it could not map are recorded
    so the channel groups passing through them are left whole.
    """
    from torch_pruning.dependency import index_mapping

    original = index_mapping.update_reshape_index_mapping
    unfollowable: set[Any] = set()

    def guarded(graph: Any, node: Any) -> None:
        try:
            original(graph, node)
        except Exception:  # noqa: BLE001 - any failure here means "cannot follow this reshape"
            unfollowable.add(node)

    with mock.patch.object(index_mapping, "update_reshape_index_mapping", guarded):
        yield unfollowable


def _layers_feeding(module: nn.Module, example: torch.Tensor, ignored: list[nn.Module]) -> list[nn.Module]:
    """The layers whose output channels reach a reshape torch-pruning cannot follow: pruning them is unsafe.

    Each layer's channel group is traced on its own; a group that passes through such a reshape, or that
    torch-pruning cannot even trace (its concat and split bookkeeping around a channel shuffle), is left whole.
    """
    import torch_pruning as tp

    unsafe: list[nn.Module] = []
    # torch-pruning maps indices again for every group it builds, so the guard stays on while groups are traced.
    with _reshapes_it_cannot_follow() as unfollowable:
        graph = tp.DependencyGraph().build_dependency(module, example_inputs=example, ignored_layers=ignored)
        if not unfollowable:
            return []
        for layer in list(graph.module2node):
            pruner = graph.get_pruner_of_module(layer)
            if layer in ignored or not isinstance(layer, PRUNABLE_TYPES) or pruner is None:
                continue
            channels = pruner.get_out_channels(layer)
            try:
                group = graph.get_pruning_group(layer, pruner.prune_out_channels, list(range(channels)))
            except Exception:  # noqa: BLE001 - torch-pruning cannot trace this group: leave it whole
                unsafe.append(layer)
                continue
            if any(dep.source in unfollowable or dep.target in unfollowable for dep, _ in group):
                unsafe.append(layer)
    return unsafe


def _layers_feeding_regrouped_channels(module: nn.Module) -> list[nn.Module]:
    """In a rebuilt ``.pt2``, the layers whose channels reach a reshape that regroups the channel dimension.

    torch-pruning maps channel indices through a reshape only when it flattens channels into features; it reads
    ShuffleNet's ``view(b, groups, c // groups, h, w)`` as a plain pass-through and would prune the channels it
    regroups, leaving a view that no longer fits. The graph's recorded shapes show which reshapes do that: any that
    changes dimension 1 other than by flattening everything after the batch.
    """
    from torch.fx import GraphModule

    graph_module = getattr(module, "graph_module", None)
    if not isinstance(graph_module, GraphModule):
        return []
    layers: list[nn.Module] = []
    for node in graph_module.graph.nodes:
        if node.op != "call_function" or node.target not in _RESHAPE_OPS or not node.args:
            continue
        source = node.args[0]
        before = source.meta.get("val") if isinstance(source, torch.fx.Node) else None
        after = node.meta.get("val")
        if before is None or after is None or before.dim() < 2 or _keeps_channels(before.shape, after.shape):
            continue
        layers += [layer for layer in _producers(graph_module, source) if layer not in layers]
    return layers


_RESHAPE_OPS = (
    torch.ops.aten.view.default,
    torch.ops.aten.reshape.default,
    torch.ops.aten._unsafe_view.default,
    torch.ops.aten.unflatten.int,
)


def _keeps_channels(before: torch.Size, after: torch.Size) -> bool:
    """Channels stay at dimension 1 (only later dimensions merged or split), or are flattened into features."""
    import math

    try:
        if len(after) >= 2 and int(after[1]) == int(before[1]):
            return True
        return len(after) == 2 and int(after[1]) == math.prod(int(d) for d in before[1:])
    except (TypeError, RuntimeError):  # a symbolic size that cannot be compared: assume it regroups
        return False


def _producers(graph_module: torch.fx.GraphModule, start: torch.fx.Node) -> list[nn.Module]:
    """The convolution and linear layers whose outputs flow, through any non-weighted ops, into ``start``."""
    found: list[nn.Module] = []
    stack, seen = [start], set()
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.op == "call_module":
            layer = graph_module.get_submodule(str(node.target))
            if isinstance(layer, PRUNABLE_TYPES):
                found.append(layer)
                continue
        if node.op in ("call_module", "call_function", "call_method"):
            stack += [arg for arg in node.all_input_nodes if arg.op != "get_attr"]
    return found


def prune_channels(
    module: nn.Module, example: torch.Tensor, ratio: float, technique: str = "", allocation: str = "global"
) -> PruneSummary:
    """Removes ``ratio`` of the network's channels, ranked across layers, in place, keeping the network consistent.

    ``allocation="uniform"`` takes ``ratio`` of every layer's channels instead (ranked within the layer);
    ``prune_scored`` tries both.

    The allocation is global: every prunable channel group is scored by torch-pruning's own importance
    (``channel_ranking``: batch-norm scale when the network has batch norms, L2 magnitude otherwise), all scores are
    ranked together and the lowest ``ratio`` of all channels go, so layers whose channels matter less lose more. No
    layer loses more than ``MAX_LAYER_RATIO`` of its channels (``_GuardedImportance`` protects the rest), so none is
    emptied. On MobileNetV2 trained on digits, half of the channels removed this way (1.50x fewer multiply-adds)
    kept 99.1 % validation accuracy after recalibration, where 20 % from every layer (1.53x) kept 44.9 %
    (benchmarks/results/pruning_ranking.md).

    torch-pruning's dependency graph couples layers that must lose the same channels (a residual add, a depthwise
    convolution and its batch norm), so ResNet and MobileNet stay valid. Channels that flow into a reshape
    torch-pruning cannot follow keep their full width, and so do the channel groups it cannot rank or whose pruned
    network no longer runs (Swin's patch merging concatenates strided slices along the last dimension, which it maps
    wrongly): those layers are found by running the pruned copy, kept whole, and the pruning is redone. If that
    leaves nothing to remove, the technique is ``Unsupported`` with the layers named.
    """
    import copy

    import torch_pruning as tp

    module.eval()
    names = {layer: name.removeprefix("graph_module.") for name, layer in module.named_modules()}
    what = technique or "Structured pruning"
    pristine = copy.deepcopy(module)
    try:
        macs_before, params_before = tp.utils.count_ops_and_params(module, example)
        ignored = [classifier_layer(module, example)]
        kept_whole = _layers_feeding_regrouped_channels(module)
        kept_whole += [layer for layer in _layers_feeding(module, example, ignored) if layer not in kept_whole]
        ranking = channel_ranking(module)
        kept_names: list[str] = []
        for attempt in range(MAX_PRUNING_ATTEMPTS):
            if attempt:
                _restore(module, pristine)
                layers = dict(module.named_modules())
                kept_whole = [layers[name] for name in kept_names]
                ignored = [classifier_layer(module, example)]
            unrankable: list[nn.Module] = []
            with _reshapes_it_cannot_follow():
                pruner = tp.pruner.MetaPruner(
                    module,
                    example,
                    importance=_GuardedImportance(unrankable, ranking),
                    pruning_ratio=ratio,
                    global_pruning=allocation == "global",
                    ignored_layers=ignored + kept_whole,
                )
                pruner.step()
            kept_whole += [layer for layer in unrankable if layer not in kept_whole]
            broken = _layers_breaking(module, example)
            if broken is None:
                break
            more = [layer for layer in broken if layer not in kept_whole]
            if not more or attempt + 1 == MAX_PRUNING_ATTEMPTS:
                current = {layer: name.removeprefix("graph_module.") for name, layer in module.named_modules()}
                breaking = _names(tuple(current.get(layer, type(layer).__name__) for layer in broken))
                raise Unsupported(
                    f"{what} cannot remove channels from this model consistently: after keeping "
                    f"{len(kept_whole)} layers whole, pruning still breaks the operation after "
                    f"{breaking or 'an unnamed layer'}"
                    ", whose channel mapping torch-pruning follows wrongly. Use prune_unstructured or ptq_int8 "
                    "for this model, or prune those layers' channels by hand before exporting."
                )
            current = {layer: name for name, layer in module.named_modules()}
            kept_names = [current[layer] for layer in kept_whole + more]
        names = {layer: name.removeprefix("graph_module.") for name, layer in module.named_modules()}
        # Counting runs the pruned network once: a wrongly pruned graph fails here rather than at export.
        macs_after, params_after = tp.utils.count_ops_and_params(module, example)
    except EdgeOptError:
        raise
    except Exception as exc:  # torch-pruning raises assorted types on graphs it cannot follow
        raise TechniqueFailed(
            f"{what} failed: torch-pruning could not remove channels consistently from this model (the details are "
            "in EdgeOpt's log). Use prune_unstructured or ptq_int8 for this model, or prune its channels by hand "
            "before exporting."
        ) from exc
    summary = PruneSummary(
        int(params_before),
        int(params_after),
        int(macs_before),
        int(macs_after),
        kept_whole=tuple(names.get(layer, type(layer).__name__) for layer in kept_whole),
        ranking=RANKING_NAMES[ranking],
        allocation=allocation,
    )
    if summary.params_after >= summary.params_before:
        raise Unsupported(
            f"{what} found no channel it can remove: every layer's channels feed the classifier or a reshape that "
            f"regroups channels, which torch-pruning cannot follow ({_names(summary.kept_whole) or 'none named'}). "
            "Use prune_unstructured or ptq_int8 for this model."
        )
    return summary


ALLOCATIONS = ("global", "uniform")
# Images that score the two allocations when the technique has no validation split (a fixed strength): train images,
# which flatter both alike; the comparison, not the figure, is what counts.
ALLOCATION_SCORE_IMAGES = 512


@dataclass
class Scored:
    """One pruned candidate as ``prune_scored`` kept it."""

    module: nn.Module
    summary: PruneSummary
    accuracy: float  # ``recovered_score`` on the scoring images


def prune_scored(
    fresh: Callable[[], nn.Module],
    example: torch.Tensor,
    ratio: float,
    technique: str,
    recalibration: np.ndarray,
    score: tuple[np.ndarray, np.ndarray],
    recover: Callable[[nn.Module], None] | None = None,
    floor: float | None = None,
) -> Scored:
    """``ratio`` of the channels removed both ways, ranked across layers and the same share from every layer, each
    from a ``fresh()`` copy, recalibrated, scored on ``score`` before and after ``recover`` (``recovered_score``);
    the better is kept, and where both score alike (within one image) the one with fewer multiply-adds. With a
    ``floor`` (the lowest accuracy the user's budget allows, ``acceptance_floor``), the one with fewer multiply-adds
    among those that reach it: the strongest compression within the budget, as the search itself chooses.

    Neither wins everywhere. Ranked across layers, MobileNetV2 (digits) kept its accuracy with half of its channels
    removed where a fifth from every layer broke it; but the ranking takes most from wide, parameter-heavy late
    layers, and on the demo CNN and ResNet18 the search then settled on fewer FLOPs removed than before (demo
    1.26x against 1.58x: benchmarks/results/pytorch_budget_global.md). The same rule serves Keras
    (``frameworks/tensorflow/filter_pruning.prune_scored``). An allocation torch-pruning cannot carry out on this
    model is left out; if neither can, the ranking's error is raised.
    """
    from edgeopt.frameworks.pytorch.training import accuracy

    x_score, y_score = score
    candidates: list[Scored] = []
    failure: EdgeOptError | None = None
    for allocation in ALLOCATIONS:
        module = fresh()
        try:
            summary = prune_channels(module, example, ratio, technique, allocation=allocation)
        except EdgeOptError as exc:
            failure = failure or exc
            continue
        recalibrate_batch_norm(module, recalibration)
        before = accuracy(module, x_score, y_score)
        after = before
        if recover is not None:
            recover(module)
            after = accuracy(module, x_score, y_score)
        candidates.append(Scored(module, summary, recovered_score(before, after)))
    if not candidates:
        assert failure is not None
        raise failure
    return pick_allocation([(c.accuracy, c.summary.macs_after, c) for c in candidates], len(y_score), floor)


def acceptance_floor(ctx: TechniqueContext, original: nn.Module) -> float | None:
    """The lowest validation accuracy the user's budget allows (``SearchContext.budget``), or None without a search."""
    from edgeopt.frameworks.pytorch.search import val_accuracy

    return accuracy_floor(ctx.search, lambda: val_accuracy(original, ctx.search))  # type: ignore[arg-type]


def scoring_images(ctx: TechniqueContext) -> tuple[np.ndarray, np.ndarray]:
    """What ``prune_scored`` scores on: the search's validation split, else ``ALLOCATION_SCORE_IMAGES`` train images."""
    if ctx.search is not None:
        return ctx.search.x_val, ctx.search.y_val
    order = np.random.default_rng(ctx.seed).permutation(len(ctx.data.x_train))[:ALLOCATION_SCORE_IMAGES]
    return ctx.data.x_train[order], ctx.data.y_train[order]


def short_recovery(
    ctx: TechniqueContext, *, learning_rate: float, batch_size: int, reporter: StageReporter, stage: str, **loss: Any
) -> Callable[[nn.Module], None]:
    """A search candidate's recovery: one pass over ``recovery_subset`` (a fraction of an epoch) at ``learning_rate``;
    ``loss`` may carry distillation's ``loss_fn``."""
    recovery = recovery_subset(ctx.data, ctx.seed, ctx.search.recovery_images if ctx.search else None)

    def recover(module: nn.Module) -> None:
        fine_tune(module, recovery, epochs=1, lr=learning_rate, batch_size=batch_size, reporter=reporter,
                  stage=stage, seed=ctx.seed, **loss)  # fmt: skip

    return recover


MAX_PRUNING_ATTEMPTS = 6  # prune, run, keep the layers of the operation that broke whole, prune again
# The most of one channel group's channels the global ranking may take. torch-pruning's own ``max_pruning_ratio``
# is only checked between iterative steps (base_pruner's ``_check_pruning_ratio``), not within a one-shot global
# step, so the cap is applied in the importance (``_GuardedImportance``). 0.8 as in
# benchmarks/pruning_recalibration.py; the search's ladders stop below it (technique_specs.py).
MAX_LAYER_RATIO = 0.8
RANKING_NAMES = {"bn_scale": "batch-norm scale", "magnitude": "L2 magnitude"}
_PROTECTED = 1e6  # added to the scores of the channels the cap keeps: above any real score, so never ranked out


def channel_ranking(module: nn.Module) -> str:
    """How channels are ranked across layers: ``"bn_scale"`` when the network has batch norms, else ``"magnitude"``.

    A batch norm's scale is how much each channel's normalised output counts downstream (network slimming); without
    batch norms (LayerNorm models, plain convolution stacks) the weights' L2 magnitude is used. Either is normalised
    per channel group by LAMP (``_GuardedImportance``). First-order Taylor ranked MobileNetV2 about as well as
    batch-norm scale (benchmarks/results/pruning_recalibration.md) but needs gradients on training images, which
    ``prune_channels`` is not given.
    """
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine for m in module.modules())
    return "bn_scale" if has_bn else "magnitude"


class _GuardedImportance:
    """torch-pruning's importance for the global ranking, capped per group; a group it cannot rank is left whole.

    Scores: torch-pruning's ``BNScaleImportance`` with ``"bn_scale"``, its ``GroupMagnitudeImportance`` (L2) with
    ``"magnitude"`` and for any group without a batch norm (a hidden Linear, a convolution with a bias and no norm),
    each with torch-pruning's LAMP normaliser: a channel's squared score over the sum of the scores in its group not
    below it, which makes groups of different scale and width comparable in one global ranking (Lee et al., "Layer-
    adaptive sparsity for the magnitude-based pruning"). On MobileNetV2 trained on digits, half of all channels
    removed this way (batch-norm scale) kept 99.1 % validation accuracy after recalibration at 1.50x fewer
    multiply-adds; ranked by raw batch-norm scales, 20 % removed (1.46x) kept 58.3 %, by scales over their group's
    mean (1.37x) 70.8 % (benchmarks/results/pruning_ranking.md). LAMP takes most from wide, parameter-heavy late
    layers, so per share of channels it removes more parameters than multiply-adds. Equal scores (an untrained
    network's batch norms are all 1) are told apart by L2 magnitude over its group's mean, a millionth of its
    weight, so the threshold does not take every tied channel at once.

    The cap: in each group the ``1 - MAX_LAYER_RATIO`` best channels (at least one) get ``_PROTECTED`` added, so the
    global threshold never reaches them and no layer is emptied while the global ratio stays below the cap.

    torch-pruning skips a group whose importance is ``None``; without this guard, one group it maps wrongly (an index
    past the end of a concatenation along the last dimension) stopped the whole technique.
    """

    def __init__(self, unrankable: list[nn.Module], ranking: str = "magnitude") -> None:
        import torch_pruning as tp

        self.magnitude = tp.importance.GroupMagnitudeImportance(p=2, normalizer="lamp")
        self.inner = tp.importance.BNScaleImportance(normalizer="lamp") if ranking == "bn_scale" else self.magnitude
        self.tiebreak = tp.importance.GroupMagnitudeImportance(p=2, normalizer="mean")
        self.unrankable = unrankable

    def __call__(self, group: Any) -> torch.Tensor | None:
        try:
            scores = self.inner(group)
            if scores is None and self.inner is not self.magnitude:  # a group without a batch norm
                scores = self.magnitude(group)
            tiebreak = self.tiebreak(group)
        except Exception:  # noqa: BLE001 - this group's index mapping is wrong: leave it whole
            for dep, _ in group:
                for layer in (dep.source.module, dep.target.module):
                    if isinstance(layer, PRUNABLE_TYPES) and layer not in self.unrankable:
                        self.unrankable.append(layer)
            return None
        if scores is None or tiebreak is None:
            return None
        # float64: the millionth must not vanish in rounding; an all-zero group's LAMP scores are NaN, so 0
        scores = torch.nan_to_num(scores.double(), nan=0.0)
        return _capped(scores + 1e-6 * torch.nan_to_num(tiebreak.double(), nan=0.0))


def _capped(scores: torch.Tensor) -> torch.Tensor:
    """``scores`` with the best ``1 - MAX_LAYER_RATIO`` of them (at least one, the best twice) lifted out of reach."""
    import math

    keep = max(1, math.ceil(len(scores) * (1 - MAX_LAYER_RATIO)))
    order = torch.argsort(scores, descending=True)
    lifted = scores.clone()
    lifted[order[:keep]] += _PROTECTED
    lifted[order[0]] += _PROTECTED  # should the ratio exceed the cap, the best channel still goes last
    return lifted


def _restore(module: nn.Module, pristine: nn.Module) -> None:
    """Puts ``module`` back to the unpruned copy's structure and weights, in place (callers hold ``module``)."""
    import copy

    module.__dict__.update(copy.deepcopy(pristine).__dict__)


def _layers_breaking(module: nn.Module, example: torch.Tensor) -> list[nn.Module] | None:
    """``None`` when the pruned network runs; else the layers around the operation that failed (empty if unknown).

    Those are the layer that failed (a Linear whose inputs lost channels elsewhere) and the convolution and linear
    layers feeding the failed operation: keeping them whole restores the sizes it expects.
    """
    from torch.fx import GraphModule, Interpreter

    graph_module = getattr(module, "graph_module", None)
    if not isinstance(graph_module, GraphModule):
        try:
            with torch.no_grad():
                module(example)
        except Exception:  # noqa: BLE001 - an eager module: the failing operation cannot be located
            return []
        return None
    current: list[torch.fx.Node] = []

    class Tracking(Interpreter):
        def run_node(self, n: torch.fx.Node) -> Any:
            current[:] = [n]
            return super().run_node(n)

    try:
        with torch.no_grad():
            Tracking(graph_module).run(example)
    except Exception:  # noqa: BLE001 - the operation that broke is what is wanted
        node = current[0] if current else None
        if node is None:
            return []
        layers = _producers(graph_module, node)
        if node.op == "call_module":
            layer = graph_module.get_submodule(str(node.target))
            if isinstance(layer, PRUNABLE_TYPES) and layer not in layers:
                layers.append(layer)
        return layers
    return None


BN_RECALIBRATION_IMAGES = 512


def recalibrate_batch_norm(module: nn.Module, images: np.ndarray) -> int:
    """Re-estimates every batch norm's running mean and variance on ``images`` (train images), in place.

    Removing channels changes what each following layer sums, so the statistics a batch norm kept from training no
    longer describe its input, and the pruned network is scored and fine-tuned from a needlessly broken start
    (batch-norm recalibration, as in AdaBN). Only the batch norms run in training mode, with a cumulative average
    over at most ``BN_RECALIBRATION_IMAGES`` images; weights are not touched. On MobileNetV2 trained on digits,
    5 % of the channels removed scored 77.8 % on validation before and 92.6 % after, with no fine-tuning
    (benchmarks/results/pruning_recalibration.md). Returns how many batch norms were recalibrated: 0 for a model
    without them (LayerNorm keeps no running statistics).
    """
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    batch = 64
    count = min(len(images), BN_RECALIBRATION_IMAGES)
    if count > batch:
        count -= count % batch  # whole batches only: the cumulative average weighs every batch alike
    images = images[:count]
    if not norms or count < 2:  # a batch of one has no variance on a 1x1 feature map
        return 0
    was_training = module.training
    momenta = [norm.momentum for norm in norms]
    module.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over every batch, not an exponential one
        norm.train()
    with torch.no_grad():
        for x, _ in iterate_batches(images, batch_size=batch):
            module(x)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    module.train(was_training)
    return len(norms)


def recovered_score(recalibrated: float, after_recovery: float) -> float:
    """A search candidate's validation accuracy: the better of its recalibrated start and its short recovery.

    The recovery is a fraction of an epoch at the full fine-tune's learning rate with none of its schedule, and it
    sometimes knocks a network further down before the full fine-tune would bring it back: ResNet18 with 20 % of
    its channels removed scored 97.2 % recalibrated and 45.4 % after it, while MobileNetV2 went from 29.2 % to 63.0 %
    (benchmarks/results/pruning_recalibration.md). The recalibrated network is where the full fine-tune starts,
    so its score is one the search may count on.
    """
    return max(recalibrated, after_recovery)


def prune_and_fine_tune(
    ctx: TechniqueContext,
    *,
    channel_sparsity: float,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    reporter: StageReporter,
) -> tuple[nn.Module, PruneSummary]:
    """Structured pruning of the context's model followed by the fine-tune that recovers its accuracy."""
    technique = reporter.technique
    reporter.stage(f"Removing {channel_sparsity:.0%} of the channels, two ways", 0.02)
    recover = short_recovery(ctx, learning_rate=learning_rate, batch_size=batch_size, reporter=reporter.sub(0.02, 0.1),
                             stage="Comparing two ways to share the removal among layers")  # fmt: skip
    example = example_input(ctx.data.image_shape)
    floor = acceptance_floor(ctx, trainable_copy(ctx.model, technique))
    chosen = prune_scored(lambda: trainable_copy(ctx.model, technique), example, channel_sparsity, technique,
                          ctx.data.x_train, scoring_images(ctx), recover, floor)  # fmt: skip
    module = trainable_copy(ctx.model, technique)  # the chosen way again, untrained: the fine-tune starts from here
    summary = prune_channels(module, example, channel_sparsity, technique, allocation=chosen.summary.allocation)
    recalibrate_batch_norm(module, ctx.data.x_train)
    fine_tune(
        module,
        ctx.data,
        epochs=epochs,
        lr=learning_rate,
        batch_size=batch_size,
        reporter=reporter.sub(0.1, 1.0),
        stage="Fine-tuning the pruned model",
        seed=ctx.seed,
    )
    return module, summary


def search_channel_sparsity(
    ctx: TechniqueContext,
    technique: str,
    fixed: float,
    *,
    learning_rate: float,
    batch_size: int,
    reporter: StageReporter,
) -> tuple[float, StrengthSearch | None]:
    """The channel sparsity to prune at: ``fixed`` without a search, else the strongest within the budget.

    Each candidate is pruned both ways from fresh copies (``prune_scored``), its batch norms recalibrated, and scored
    on validation before and after recovering for a fraction of an epoch; the better of the two counts
    (``recovered_score``), and the better way is the candidate.
    """
    from edgeopt.frameworks.pytorch.search import choose_strength

    if ctx.search is None:
        return fixed, None
    example = example_input(ctx.data.image_shape)
    recovery = recovery_subset(ctx.data, ctx.seed, ctx.search.recovery_images)
    floor = acceptance_floor(ctx, trainable_copy(ctx.model, technique))

    def evaluate(ratio: float) -> Candidate:
        stage = f"Searching the strength: short recovery at {ratio:.0%} of the channels"
        recover = short_recovery(
            ctx, learning_rate=learning_rate, batch_size=batch_size, reporter=reporter, stage=stage
        )
        chosen = prune_scored(lambda: trainable_copy(ctx.model, technique), example, ratio, technique,
                              recovery.x_train, scoring_images(ctx), recover, floor)  # fmt: skip
        summary = chosen.summary
        return Candidate(
            val_accuracy=chosen.accuracy,
            params=summary.params_after,
            flops=2 * summary.macs_after,
            size_ratio=summary.params_before / max(1, summary.params_after),
        )

    original = trainable_copy(ctx.model, technique)
    ladder = [ratio for ratio in KNOBS[technique].ladder if removes_channels(original, ratio)]
    return choose_strength(ctx, technique, fixed, original, evaluate, reporter, ladder=ladder)


def removes_channels(module: nn.Module, ratio: float) -> bool:
    """Whether pruning ``ratio`` of the network's channels removes at least one (torch-pruning rounds down).

    Settings too mild for a narrow model would remove nothing; the search leaves them off its ladder. The count is
    over the convolution and linear layers but the classifier, as the global ranking counts them (coupled layers,
    such as the two sides of a residual add, share one group in torch-pruning, so this is an upper bound).
    """
    layers = [layer for layer in module.modules() if isinstance(layer, PRUNABLE_TYPES)][:-1]  # not the classifier
    total = sum(getattr(layer, "out_channels", getattr(layer, "out_features", 0)) for layer in layers)
    return int(total * ratio) >= 1


def export_fp32(module: nn.Module, ctx: TechniqueContext, name: str, reporter: StageReporter) -> tuple[Path, Path]:
    """Writes ``<name>.pte`` (XNNPACK FP32) and ``<name>.pt2`` from one export of ``module``."""
    example = example_input(ctx.data.image_shape)
    reporter.stage("Exporting the model", 0.0)
    program = export_program(module.eval(), example, strict=True)
    pt2 = save_pt2(program, ctx.work_dir / f"{name}.pt2")
    reporter.stage("Lowering to ExecuTorch (XNNPACK)", 0.4)
    pte = to_pte(program, example, ctx.work_dir / f"{name}.pte")
    return pte, pt2


def ranked_weights(weights: list[tuple[nn.Module, str]], sparsity: float) -> tuple[list[tuple[nn.Module, str]], float]:
    """The weights global magnitude pruning ranks, and the share of them to zero so ``sparsity`` of all is zero.

    Depthwise kernels are left out of the ranking (as tfmot does in Keras): trained small, they would be zeroed
    whole. The rest give up correspondingly more, so the model still ends with ``sparsity`` of its weights zero.
    """
    ranked = [(layer, name) for layer, name in weights if not _is_depthwise(layer)] or weights
    total = sum(getattr(layer, name).numel() for layer, name in weights)
    ranked_total = sum(getattr(layer, name).numel() for layer, name in ranked)
    return ranked, min(1.0, sparsity * total / max(1, ranked_total))


def _is_depthwise(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Conv2d) and layer.groups > 1 and layer.groups == layer.in_channels


def zero_fraction(weights: list[tuple[nn.Module, str]]) -> float:
    total = sum(getattr(layer, name).numel() for layer, name in weights)
    zeros = sum(int((getattr(layer, name) == 0).sum()) for layer, name in weights)
    return zeros / max(1, total)


class PruneUnstructured:
    """Global L1 magnitude pruning: the smallest weights of all layers together become exact zeros."""

    name: ClassVar[str] = "prune_unstructured"
    searches_strength: ClassVar[bool] = True

    def apply(self, ctx: TechniqueContext, config: TechniqueConfig) -> TechniqueOutput:
        from torch.nn.utils import prune

        from edgeopt.frameworks.pytorch.search import choose_strength, finish_record, val_accuracy

        assert isinstance(config, PruneUnstructuredConfig)
        lr = config.learning_rate_for("pytorch")
        recovery = recovery_subset(ctx.data, ctx.seed, ctx.search.recovery_images) if ctx.search else ctx.data
        search_reporter = ctx.reporter.sub(0.0, 0.4)

        def evaluate(sparsity: float) -> Candidate:
            module, _, _ = self._pruned(ctx, sparsity)
            stage = f"Searching the strength: short recovery at {sparsity:.0%} sparsity"
            fine_tune(module, recovery, epochs=1, lr=lr, batch_size=config.batch_size, reporter=search_reporter,
                      stage=stage, seed=ctx.seed)  # fmt: skip
            return Candidate(val_accuracy=val_accuracy(module, ctx.search))  # type: ignore[arg-type]

        original = trainable_copy(ctx.model, self.name) if ctx.search is not None else None
        sparsity, record = choose_strength(ctx, self.name, config.sparsity, original, evaluate, search_reporter)  # type: ignore[arg-type]
        rest = ctx.reporter.sub(0.4 if record else 0.0, 1.0)
        rest.stage(f"Zeroing the {sparsity:.0%} smallest weights", 0.02)
        module, weights, ranked = self._pruned(ctx, sparsity)
        # The masks stay attached while fine-tuning: each forward multiplies by them, so pruned weights stay 0.
        fine_tune(
            module,
            ctx.data,
            epochs=config.epochs,
            lr=lr,
            batch_size=config.batch_size,
            reporter=rest.sub(0.05, 0.8),
            stage="Fine-tuning with the pruning mask",
            seed=ctx.seed,
        )
        finish_record(record, module, ctx)
        for layer, name in ranked:
            prune.remove(layer, name)
        sparsity = zero_fraction(weights)
        dense = sum(layer.weight.numel() for layer, _ in weights) - sum(layer.weight.numel() for layer, _ in ranked)
        kept_dense = (
            f" Depthwise kernels ({dense:,} weights) stay dense and the other layers give up correspondingly more: "
            "a depthwise channel has only k x k weights, and ranking them with the rest zeroed whole channels "
            "(MobileNetV2 fell to chance in a trial)."
            if dense
            else ""
        )
        pte, pt2 = export_fp32(module, ctx, self.name, rest.sub(0.8, 1.0))
        return TechniqueOutput(
            artifact=pte,
            precision="fp32",
            model=module,
            formats={"pt2": pt2},
            search=record,
            notes=(
                (search_note(record) + " " if record else "")
                + f"{sparsity:.1%} of the convolution and linear weights are exact zeros (global L1 magnitude, "
                f"then {config.epochs} fine-tuning epoch(s) with the mask kept). The .pte stores weights densely, "
                "so the file is no smaller and XNNPACK runs no faster; the zeros only make the file compress "
                f"better (see the gzip size). No speed-up is claimed.{kept_dense}"
            ),
            extra={"sparsity": sparsity},
        )

    def _pruned(
        self, ctx: TechniqueContext, sparsity: float
    ) -> tuple[nn.Module, list[tuple[nn.Module, str]], list[tuple[nn.Module, str]]]:
        """A fresh copy with the masks of global L1 pruning at ``sparsity`` attached (the weights, those ranked)."""
        from torch.nn.utils import prune

        module = trainable_copy(ctx.model, self.name)
        weights = prunable_weights(module)
        if not weights:
            raise TechniqueFailed("The model has no convolution or linear layer to prune.")
        ranked, amount = ranked_weights(weights, sparsity)
        prune.global_unstructured(ranked, pruning_method=prune.L1Unstructured, amount=amount)
        return module, weights, ranked


class PruneStructured:
    """Channel pruning with torch-pruning: the network physically loses half its channels, then fine-tunes."""

    name: ClassVar[str] = "prune_structured"
    searches_strength: ClassVar[bool] = True

    def apply(self, ctx: TechniqueContext, config: TechniqueConfig) -> TechniqueOutput:
        from edgeopt.frameworks.pytorch.search import finish_record

        assert isinstance(config, PruneStructuredConfig)
        ratio, record = search_channel_sparsity(
            ctx,
            self.name,
            config.channel_sparsity,
            learning_rate=config.learning_rate,
            batch_size=config.batch_size,
            reporter=ctx.reporter.sub(0.0, 0.4),
        )
        rest = ctx.reporter.sub(0.4 if record else 0.0, 1.0)
        module, summary = prune_and_fine_tune(
            ctx,
            channel_sparsity=ratio,
            epochs=config.epochs,
            learning_rate=config.learning_rate,
            batch_size=config.batch_size,
            reporter=rest.sub(0.0, 0.8),
        )
        finish_record(record, module, ctx)
        pte, pt2 = export_fp32(module, ctx, self.name, rest.sub(0.8, 1.0))
        return TechniqueOutput(
            artifact=pte,
            precision="fp32",
            model=module,
            formats={"pt2": pt2},
            search=record,
            notes=(
                (search_note(record) + " " if record else "")
                + f"{ratio:.0%} of the channels removed by torch-pruning's dependency graph, {summary.how()} "
                "(the classifier's outputs are kept), residual and depthwise "
                f"groups kept consistent; fine-tuned {config.epochs} epoch(s) on the train split. The network is "
                f"really smaller: {summary.describe()}."
            ),
        )
