"""What the pipeline needs from a framework, and the lazy lookup of each framework's backend.

Framework-neutral logic (the pipeline, metric definitions, the estimator, the recommender) calls only these methods;
each ``frameworks/<name>/backend.py`` holds what differs. Frameworks are imported only when first used, so the
service starts fast and a missing framework gives a clear error.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgeopt.data.dataset import Dataset
from edgeopt.errors import InvalidInput
from edgeopt.techniques import TechniqueOutput


@dataclass
class ModelSource:
    """Where a model comes from: a file, or a named architecture (optionally with a weights file)."""

    path: Path | None = None
    arch: str | None = None
    num_classes: int | None = None  # head size for named architectures; defaults to the dataset's classes
    input_size: tuple[int, int] | None = None  # (height, width) override for named architectures
    random_init: bool = False  # only when asked explicitly: no pretrained weights offline


@dataclass
class LoadedModel:
    """A model in memory plus what the engine must know about it."""

    framework: str
    model: Any  # torch.nn.Module / torch.export.ExportedProgram / ScriptModule / keras.Model
    kind: str  # "exported", "state_dict", "torchscript", "pickle", "keras", "savedmodel", "architecture"
    input_shape: tuple[int, int, int]  # (height, width, channels) the model expects
    num_classes: int
    transformable: bool = True  # False for TorchScript / SavedModel signatures: evaluated, not transformed
    not_transformable_reason: str = ""
    info: dict[str, Any] = field(default_factory=dict)  # normalisation, source file, arch, ...


Predict = Callable[[np.ndarray], np.ndarray]  # NHWC float32 batch -> logits (N, classes)


class FrameworkBackend(Protocol):
    framework: str
    artifact_suffix: str  # ".pte" or ".tflite"
    runtime: str  # what runs the artifact on the board, e.g. "executorch-xnnpack" / "litert-xnnpack"

    def load(self, source: ModelSource, dataset: Dataset | None = None) -> LoadedModel: ...

    def export_baseline(self, loaded: LoadedModel, data: Dataset, work_dir: Path) -> TechniqueOutput: ...

    def artifact_predictor(self, artifact: Path, output: TechniqueOutput) -> Predict:
        """Loads the deployable artifact in its board runtime; returns a batch-1-capable predict function."""
        ...

    def model_stats(self, loaded: LoadedModel, output: TechniqueOutput) -> dict[str, Any]:
        """params, flops, sparsity and the layer profile the estimator needs, for the model behind ``output``."""
        ...

    def runtime_note(self, artifact: Path) -> str:
        """A sentence for the result when the board runtime cannot run ``artifact`` its usual way ("" when it can)."""
        ...

    def demo_model(self, out: Path, seed: int = 0, tiny: bool = False) -> Path:
        """Trains the demo CNN on digits and saves it at ``out``; ``tiny``: the narrow one whose results show
        trade-offs."""
        ...


BACKENDS: dict[str, str] = {
    "pytorch": "edgeopt.frameworks.pytorch.backend:PyTorchBackend",
    "tensorflow": "edgeopt.frameworks.tensorflow.backend:TensorFlowBackend",
}


def get_backend(framework: str) -> FrameworkBackend:
    try:
        target = BACKENDS[framework]
    except KeyError as exc:
        raise InvalidInput(f"Unknown framework {framework!r}; choose one of {', '.join(BACKENDS)}.") from exc
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.startswith("edgeopt"):
            raise  # a bug in our own code, not a missing framework
        raise InvalidInput(
            f"The {framework} framework is not installed here (missing {exc.name}); run `make run` to install it."
        ) from exc
    return getattr(module, class_name)()
