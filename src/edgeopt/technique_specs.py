"""Every fact about each technique, once: one ``TechniqueSpec`` per technique in ``SPECS``.

A spec holds what the rest of the engine used to restate in its own table: the catalog's title and summary, the
typed config (its defaults, fine-tuning epochs included) and the strength knob the accuracy-budget search turns,
the precision the board runtime executes, the ETA cost model, the outcome a result is expected to reach and the
implementation on each framework. The registry (``techniques.get_technique`` / ``make_config``), the catalog
(``catalog.TECHNIQUES``), the ETA (``eta.EtaModel``), the shortfall notes (``expectations.EXPECTATIONS``), the
search's knobs (``strength_search.KNOBS``) and the table in docs/techniques.md (``edgeopt.technique_docs``) are
views of it. This module imports neither torch nor TensorFlow: implementations are named, imported on use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from edgeopt.techniques import (
    DistillationConfig,
    HybridPruneInt8Config,
    PruneStructuredConfig,
    PruneUnstructuredConfig,
    PtqInt4Config,
    PtqInt8Config,
    QatInt8Config,
    TechniqueConfig,
)


@dataclass(frozen=True)
class Knob:
    """A technique's strength knob: the config field and the settings tried, mildest first."""

    field: str
    ladder: tuple[float, ...]
    label: str  # how a note names one setting, formatted with the value: "{:.0%} of the channels removed"
    # Judge the settings within budget by the FLOPs they leave rather than by the setting: a milder share of
    # channels can remove more compute than a stronger one when the two are shared among layers differently
    # (``prune_scored`` keeps whichever way does better at each share).
    fewest_flops: bool = False

    def describe(self, value: float) -> str:
        return self.label.format(value)

    def span(self) -> str:
        """The settings the search may choose, for a sentence: "5-60 %"; empty when the model decides the ladder."""
        if not self.ladder:
            return ""
        low, high = min(self.ladder), max(self.ladder)
        return f"{100 * low:.0f}-{100 * high:.0f} %"


# One plain fine-tuning epoch of the demo CNN in units of the baseline's export-and-measure time (about 0.1 on a
# quiet host; a loaded host slows training more than export); the run's own correction factor rescales the whole
# model as techniques finish (edgeopt.eta).
EPOCH_UNITS = 0.1


@dataclass(frozen=True)
class CostModel:
    """Wall time in baseline units: a fixed part (export, lowering, measurement) plus fine-tuning epochs.

    ``epoch_weight`` is the cost of one of this technique's epochs relative to a plain epoch. One fixed unit is the
    time the baseline took to load, export and measure (for TensorFlow it includes importing it). Fitted on full runs
    of each demo model on a quiet 2-core host (benchmarks/results/eta.md).
    """

    fixed: float
    epoch_weight: float = 0.0

    def units(self, epochs: int) -> float:
        return self.fixed + epochs * self.epoch_weight * EPOCH_UNITS


@dataclass(frozen=True)
class Expectation:
    """A technique's usual outcome (checked by ``expectations.shortfalls``); ``None`` means "nothing promised"."""

    min_compression: float | None = None  # baseline size / artifact size
    max_drop_points: float | None = None  # accuracy points below the baseline
    min_gzip_ratio: float | None = None  # baseline gzip size / artifact gzip size
    dense_file: bool = False  # the file keeps its size (unstructured zeros are stored densely)
    sparsity: tuple[float, float] | None = None  # (low, high) fraction of zero weights
    min_flops_ratio: float | None = None  # baseline FLOPs / result FLOPs
    max_params_fraction: float | None = None  # result params / baseline params


@dataclass(frozen=True)
class TechniqueSpec:
    """One technique's facts; its fine-tuning epochs and other defaults are its config class's field defaults."""

    name: str
    title: str
    summary: str  # "{span}" is replaced by the knob's searched range (``Knob.span``)
    config_class: type[TechniqueConfig]
    knob: Knob | None  # the strength the accuracy-budget search turns; None: the technique has no strength
    precision: str  # what the board runtime executes with the default config: one of the estimator's PRECISIONS
    needs_training_data: bool
    # Per framework: the implementation ("module:Class", imported lazily), its ETA cost model, its usual outcome.
    implementations: dict[str, str]
    cost: dict[str, CostModel]
    expected: dict[str, Expectation]

    def __post_init__(self) -> None:
        if self.knob is not None and self.knob.field not in self.config_class.model_fields:
            raise TypeError(f"{self.name}: knob {self.knob.field!r} is not a field of {self.config_class.__name__}")
        if set(self.cost) != set(self.implementations) or set(self.expected) != set(self.implementations):
            raise TypeError(f"{self.name}: cost model and expectation needed for each implemented framework")

    @property
    def frameworks(self) -> tuple[str, ...]:
        return tuple(self.implementations)

    @property
    def fine_tunes(self) -> bool:
        return "epochs" in self.config_class.model_fields

    @property
    def default_epochs(self) -> int:
        epochs = self.config_class.model_fields.get("epochs")
        return int(epochs.default) if epochs is not None else 0

    def fixed_strength(self) -> float | None:
        """The knob's config default: the strength applied when no search runs."""
        if self.knob is None:
            return None
        default = self.config_class.model_fields[self.knob.field].default
        return None if default is None else float(default)

    def catalog_summary(self) -> str:
        return self.summary.format(span=self.knob.span() if self.knob else "")

    def units(self, framework: str, epochs: int | None = None) -> float:
        """Predicted wall time in baseline units on ``framework`` (PyTorch's model for an unknown framework)."""
        cost = self.cost.get(framework) or self.cost["pytorch"]
        return cost.units(self.default_epochs if epochs is None else epochs)


PYTORCH, TENSORFLOW = "pytorch", "tensorflow"


def _both(expected: Expectation) -> dict[str, Expectation]:
    return {PYTORCH: expected, TENSORFLOW: expected}


# Ladders: channel_sparsity is the share of all the network's prunable channels removed, and FLOPs follow how that
# share is spread rather than the share itself, so each trial and the result record their FLOPs, which the issue's
# target reads. PyTorch ranks channels across layers (``prune_channels``: LAMP-normalised scores, none more than 80 %
# of a layer, so the ladder stops below that): 20 % of MobileNetV2's channels removed 1.12x of its multiply-adds
# ranked globally, 1.53x taken uniformly from every layer; the global ranking needs 50 % for 1.50x and then keeps
# 99 % of validation accuracy before fine-tuning (benchmarks/results/pruning_ranking.md). TensorFlow prunes both ways,
# ranked across layers (``filter_pruning._global_removals``, the same LAMP rule and cap) and the same share of every
# layer, and keeps the one that scores better after a short recovery (``filter_pruning.prune_scored``). Distillation:
# the student keeps ``width_ratio`` of the channels, the rest removed the same way. The strongest ends are the former
# fixed strengths and beyond.
_CHANNELS = Knob(
    "channel_sparsity", (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6), "{:.0%} of the channels removed", fewest_flops=True
)

# Cost models, (fixed units, epoch weight) per framework. PyTorch: exporting and lowering dominate and a QAT epoch runs
# a graph full of fake-quantize nodes (about 12x a plain epoch). TensorFlow: conversion is cheap next to its import,
# so the fine-tuning techniques dominate, and the strength searches' short recoveries (structured pruning compares
# two or three ways to share the removal per setting) outweigh the final fine-tuning. Refitted 2026-12-05 on the quiet
# runs of benchmarks/results/eta.md (both demo models) and the one-worker run of benchmarks/results/scale.md, whose
# technique tasks took the same shares of the baseline's time; the workers queue techniques by these predictions.
# Expectations: the techniques' acceptance table; against an FP32 .tflite, whose flatbuffer overhead differs from a
# .pte's, the TensorFlow issue asks for less compression. The techniques
# with a knob search their strength, so theirs are issue 14's floors for a searched result within a 1-point budget
# (at least 30 % sparsity, 1.5x fewer FLOPs, 0.6x the parameters, 5x smaller), not the old fixed-50 % figures.
SPECS: tuple[TechniqueSpec, ...] = (
    TechniqueSpec(
        name="ptq_int8",
        title="Post-training INT8",
        summary="Converts weights and activations to 8-bit integers using a few hundred calibration images; "
        "no training.",
        config_class=PtqInt8Config,
        knob=None,
        precision="int8",
        needs_training_data=True,
        implementations={
            PYTORCH: "edgeopt.frameworks.pytorch.ptq_int8:PtqInt8",
            TENSORFLOW: "edgeopt.frameworks.tensorflow.ptq_int8:PtqInt8",
        },
        cost={PYTORCH: CostModel(0.63), TENSORFLOW: CostModel(0.35)},
        expected={
            PYTORCH: Expectation(min_compression=3.8, max_drop_points=0.5),
            TENSORFLOW: Expectation(min_compression=3.5, max_drop_points=0.5),
        },
    ),
    TechniqueSpec(
        name="ptq_int4",
        title="Post-training INT4 weights",
        summary="Stores weights as 4-bit integers packed two per byte; the smallest file. The layers most "
        "sensitive to 4 bits keep 8 bits when your accuracy budget needs it.",
        config_class=PtqInt4Config,
        # The ladder depends on the model (how many layers it has): the technique builds it.
        knob=Knob("int8_layers", (), "{:.0f} most sensitive layer(s) kept at 8 bits"),
        precision="int4",
        needs_training_data=True,  # sensitivity ranking and the search read train images; no training
        implementations={
            PYTORCH: "edgeopt.frameworks.pytorch.ptq_int4:PtqInt4",
            TENSORFLOW: "edgeopt.frameworks.tensorflow.ptq_int4:PtqInt4",
        },
        cost={PYTORCH: CostModel(0.5), TENSORFLOW: CostModel(0.33)},
        expected=_both(Expectation(min_compression=5.0, max_drop_points=1.5)),
    ),
    TechniqueSpec(
        name="prune_unstructured",
        title="Unstructured pruning",
        summary="Zeroes the smallest weights, as many as your accuracy budget allows ({span}), and fine-tunes; "
        "the file compresses well but does not run faster.",
        config_class=PruneUnstructuredConfig,
        knob=Knob("sparsity", (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), "{:.0%} of the weights zeroed"),
        precision="fp32",
        needs_training_data=True,
        implementations={
            PYTORCH: "edgeopt.frameworks.pytorch.pruning:PruneUnstructured",
            TENSORFLOW: "edgeopt.frameworks.tensorflow.pruning:PruneUnstructured",
        },
        cost={PYTORCH: CostModel(0.3, 1.0), TENSORFLOW: CostModel(2.45, 4.0)},
        expected=_both(Expectation(max_drop_points=1.0, min_gzip_ratio=1.2, dense_file=True, sparsity=(0.3, 0.95))),
    ),
    TechniqueSpec(
        name="prune_structured",
        title="Structured pruning",
        summary="Removes channels, as many as your accuracy budget allows ({span}), so the network is really "
        "smaller and faster, then fine-tunes.",
        config_class=PruneStructuredConfig,
        knob=_CHANNELS,
        precision="fp32",
        needs_training_data=True,
        implementations={
            PYTORCH: "edgeopt.frameworks.pytorch.pruning:PruneStructured",
            TENSORFLOW: "edgeopt.frameworks.tensorflow.filter_pruning:PruneStructured",
        },
        cost={PYTORCH: CostModel(0.67, 0.35), TENSORFLOW: CostModel(3.3, 1.05)},
        expected=_both(Expectation(min_compression=1.4, max_drop_points=1.5, min_flops_ratio=1.5)),
    ),
    TechniqueSpec(
        name="distillation",
        title="Knowledge distillation",
        summary="Trains a narrower copy of the model, as narrow as your accuracy budget allows ({span} of the "
        "width), to imitate the original's outputs.",
        config_class=DistillationConfig,
        knob=Knob("width_ratio", (0.9, 0.8, 0.75, 0.7, 0.6, 0.5, 0.4, 0.3), "a student of {:.0%} width"),
        precision="fp32",
        needs_training_data=True,
        implementations={
            PYTORCH: "edgeopt.frameworks.pytorch.distillation:Distillation",
            TENSORFLOW: "edgeopt.frameworks.tensorflow.distillation:Distillation",
        },
        cost={PYTORCH: CostModel(0.4, 0.9), TENSORFLOW: CostModel(2.4, 1.45)},
        expected=_both(Expectation(min_compression=1.6, max_drop_points=2.0, max_params_fraction=0.6)),
    ),
    TechniqueSpec(
        name="qat_int8",
        title="Quantization-aware training",
        summary="Fine-tunes with simulated INT8 rounding so the 8-bit model keeps more accuracy.",
        config_class=QatInt8Config,
        knob=None,
        precision="int8",
        needs_training_data=True,
        implementations={
            PYTORCH: "edgeopt.frameworks.pytorch.qat:QatInt8",
            TENSORFLOW: "edgeopt.frameworks.tensorflow.qat:QatInt8",
        },
        cost={PYTORCH: CostModel(1.05, 12.0), TENSORFLOW: CostModel(1.55, 5.9)},
        expected={
            PYTORCH: Expectation(min_compression=3.8, max_drop_points=1.0),
            TENSORFLOW: Expectation(min_compression=3.5, max_drop_points=1.0),
        },
    ),
    TechniqueSpec(
        name="hybrid_prune_int8",
        title="Prune then quantize",
        summary="Structured pruning ({span} of the channels, within your accuracy budget) and fine-tuning, then "
        "INT8: the smallest and fastest, with the most accuracy risk.",
        config_class=HybridPruneInt8Config,
        knob=_CHANNELS,
        precision="int8",
        needs_training_data=True,
        implementations={
            PYTORCH: "edgeopt.frameworks.pytorch.hybrid:HybridPruneInt8",
            TENSORFLOW: "edgeopt.frameworks.tensorflow.hybrid:HybridPruneInt8",
        },
        cost={PYTORCH: CostModel(0.88, 0.3), TENSORFLOW: CostModel(3.6, 0.9)},
        expected=_both(Expectation(min_compression=5.0, max_drop_points=2.0)),
    ),
)
SPEC_NAMES: tuple[str, ...] = tuple(spec.name for spec in SPECS)
_BY_NAME: dict[str, TechniqueSpec] = {spec.name: spec for spec in SPECS}
# Techniques without a measured cost model (never one in SPECS) are predicted at one unit plus plain epochs.
UNKNOWN_COST = CostModel(1.0, 1.0)


def technique_spec(name: str) -> TechniqueSpec:
    """The spec of technique ``name``; ``KeyError`` for a name that is not one."""
    return _BY_NAME[name]


def relative_cost(name: str, reference: str = "ptq_int8") -> float:
    """Expected wall time relative to ``reference`` at the default epochs: the frameworks' geometric mean."""
    spec, ref = technique_spec(name), technique_spec(reference)
    ratios = [spec.units(fw) / ref.units(fw) for fw in spec.frameworks if fw in ref.implementations]
    return round(math.exp(sum(math.log(r) for r in ratios) / len(ratios)), 1)


def searched_techniques(techniques: list[str], technique_configs: dict[str, dict[str, Any]]) -> frozenset[str]:
    """Which of ``techniques`` search their strength for the accuracy budget: those with a knob the user left unset.

    Every implementation of a technique with a knob searches (``searches_strength``); the pipeline decides the same
    way from the implementation itself (``pipeline._searches``), this answer is for estimates made without importing
    a framework (the ETA).
    """
    return frozenset(
        name
        for name in techniques
        if name in SPEC_NAMES
        and (knob := technique_spec(name).knob) is not None
        and knob.field not in technique_configs.get(name, {})
    )
