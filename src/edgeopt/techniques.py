"""The technique interface, each technique's typed config, and the registry ``(technique, framework) -> impl``.

The registry reads ``edgeopt.technique_specs``, where each technique's facts (config class, implementation per
framework, ...) are stated once.

A technique receives a loaded model and the adapted dataset, writes its deployable artifact (and any other formats)
into a work folder and returns them. It does not measure: the pipeline measures every artifact the same way, so
no technique can grade its own homework.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

from edgeopt.data.dataset import Dataset
from edgeopt.errors import InvalidInput, Unsupported
from edgeopt.progress import StageReporter

if TYPE_CHECKING:
    from edgeopt.report import StrengthSearch
    from edgeopt.strength_search import SearchContext

# The most fine-tuning epochs a run may ask for, from the API, the CLI or a technique config alike.
MAX_EPOCHS = 100


class TechniqueConfig(BaseModel):
    """Base of every technique's config: frozen, unknown fields refused, stored with every result."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    seed: int = 0


class FineTuneConfig(TechniqueConfig):
    epochs: int = Field(default=3, ge=0, le=MAX_EPOCHS)
    learning_rate: float = Field(default=1e-3, gt=0)
    batch_size: int = Field(default=64, ge=1)

    # Techniques that default to ``learning_rate=None`` take their rate from here: the two frameworks' fine-tuning
    # loops (Adam + cosine in PyTorch; tfmot's wrappers in Keras) recover best at different rates.
    framework_learning_rates: ClassVar[dict[str, float]] = {}

    def learning_rate_for(self, framework: str) -> float:
        """The rate the user set, else this technique's measured default for ``framework``."""
        if self.learning_rate is not None:
            return self.learning_rate
        return self.framework_learning_rates[framework]


class PtqInt8Config(TechniqueConfig):
    calibration_samples: int = Field(default=256, ge=1, le=5000)
    per_channel: bool = True


class PtqInt4Config(TechniqueConfig):
    group_size: int | None = Field(default=None, ge=8, description="None = per output channel")
    symmetric: bool = True
    int8_layers: int | None = Field(
        default=None,
        ge=0,
        description="How many of the most sensitive layers keep 8-bit weights; None = searched for the accuracy "
        "budget (0 when no search runs).",
    )


class PruneUnstructuredConfig(FineTuneConfig):
    sparsity: float = Field(default=0.5, gt=0.0, lt=1.0)
    epochs: int = Field(default=2, ge=0, le=MAX_EPOCHS)
    learning_rate: float | None = Field(  # type: ignore[assignment]
        default=None, gt=0, description="None = the framework's default"
    )
    # Recovery, not retraining: in PyTorch 5e-4 knocked a converged ResNet18 2.5 points down where 1e-4 recovered
    # fully; Keras' pruning wrappers at 1e-4 left the demo CNN 3.9 points down where 5e-4 recovered.
    framework_learning_rates: ClassVar[dict[str, float]] = {"pytorch": 1e-4, "tensorflow": 5e-4}


class PruneStructuredConfig(FineTuneConfig):
    channel_sparsity: float = Field(default=0.5, gt=0.0, lt=1.0)
    epochs: int = Field(default=4, ge=0, le=MAX_EPOCHS)


class DistillationConfig(FineTuneConfig):
    width_ratio: float = Field(default=0.5, gt=0.0, lt=1.0, description="Fraction of channels the student keeps")
    temperature: float = Field(default=4.0, gt=0.0)
    alpha: float = Field(default=0.7, ge=0.0, le=1.0, description="Weight of the KL term; 1 - alpha on CE")
    epochs: int = Field(default=8, ge=0, le=MAX_EPOCHS)


class QatInt8Config(FineTuneConfig):
    epochs: int = Field(default=2, ge=0, le=MAX_EPOCHS)
    learning_rate: float | None = Field(  # type: ignore[assignment]
        default=None, gt=0, description="None = the framework's default"
    )
    # QAT starts from calibrated observers and only nudges weights to the INT8 grid: in PyTorch 1e-4 and 3e-5 cost
    # a converged ResNet18 0.6 points that PTQ did not lose, 1e-5 lost none; Keras meets its targets at 1e-4.
    framework_learning_rates: ClassVar[dict[str, float]] = {"pytorch": 1e-5, "tensorflow": 1e-4}


class HybridPruneInt8Config(FineTuneConfig):
    channel_sparsity: float = Field(default=0.5, gt=0.0, lt=1.0)
    epochs: int = Field(default=4, ge=0, le=MAX_EPOCHS)
    calibration_samples: int = Field(default=256, ge=1, le=5000)


def make_config(
    technique: str, overrides: dict[str, Any] | None = None, epochs: int | None = None, seed: int | None = None
) -> TechniqueConfig:
    """Build a technique's config from user overrides; ``epochs`` (the CLI's ``--epochs``) applies where it fits.

    ``seed`` is the experiment's seed: every technique gets it, so one ``--seed`` reproduces every result. A seed
    set in a technique's own overrides is refused when it disagrees: two seeds for one result cannot both hold.
    """
    from edgeopt.technique_specs import technique_spec  # the specs import this module's config classes

    cls = technique_spec(technique).config_class
    values = dict(overrides or {})
    if epochs is not None and "epochs" in cls.model_fields:
        values.setdefault("epochs", epochs)
    if seed is not None:
        if "seed" in values and values["seed"] != seed:
            raise InvalidInput(
                f"Invalid settings for {technique}: its seed {values['seed']} differs from the experiment's seed "
                f"{seed}; set the seed once, for the experiment.",
                field=f"config.{technique}",
            )
        values["seed"] = seed
    try:
        return cls(**values)
    except ValueError as exc:
        raise InvalidInput(f"Invalid settings for {technique}: {exc}", field=f"config.{technique}") from exc


@dataclass
class TechniqueContext:
    """What a technique works with. ``model`` is the framework's ``LoadedModel``."""

    model: Any
    data: Dataset  # already adapted to the model's input (size, channels, normalisation)
    work_dir: Path  # write artifacts here, named after the technique
    reporter: StageReporter
    seed: int = 0
    # Set when the technique's strength is searched for the accuracy budget (edgeopt.strength_search); ``data``
    # then holds the train split minus the validation images in ``search``.
    search: SearchContext | None = None


@dataclass
class TechniqueOutput:
    artifact: Path  # the deployable file (.pte / .tflite) the user downloads and runs on the board
    precision: str  # "fp32", "int8" or "int4": what the board runtime executes, for the estimator
    model: Any = None  # the transformed framework model (for params, FLOPs, sparsity); None if only the artifact
    formats: dict[str, Path] = field(default_factory=dict)  # other downloads: "pt2", "keras"
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. input quantisation parameters for evaluation
    search: StrengthSearch | None = None  # the settings tried, when the strength was searched


class Technique(Protocol):
    """One technique on one framework; its spec (``edgeopt.technique_specs``) names it and holds its config class.

    ``searches_strength = True`` on an implementation means it honours ``TechniqueContext.search``;
    ``runs_on_fixed_graph = True`` that it needs no editable model (it converts the loaded graph as it is), so it
    runs on models loaded with ``transformable=False`` too.
    """

    name: ClassVar[str]

    def apply(self, ctx: TechniqueContext, config: TechniqueConfig) -> TechniqueOutput: ...


def check_applicable(technique: Technique, loaded: Any) -> None:
    """``Unsupported`` with the loader's reason when ``loaded`` cannot be rewritten and ``technique`` needs that."""
    if not getattr(loaded, "transformable", True) and not getattr(technique, "runs_on_fixed_graph", False):
        raise Unsupported(getattr(loaded, "not_transformable_reason", "") or "This model cannot be transformed.")


def get_technique(technique: str, framework: str) -> Technique:
    """The implementation of ``technique`` on ``framework`` named in its spec, imported only now.

    Lazily, so the service starts without torch or TensorFlow.
    """
    from edgeopt.technique_specs import technique_spec

    try:
        target = technique_spec(technique).implementations[framework]
    except KeyError as exc:
        raise InvalidInput(f"Unknown technique {technique!r} for framework {framework!r}.") from exc
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls()
