"""The capability manifest: every name a user can choose, as data.

The API schemas, the CLI options, the web app's dropdowns (through ``GET /api/catalog``), the recommender and the
docs all read these tables, so a name is added or described in exactly one place. Techniques are described in
``edgeopt.technique_specs``; their table here is a view of it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from edgeopt.technique_specs import SPECS, relative_cost

Framework = Literal["pytorch", "tensorflow"]
TechniqueName = Literal[
    "ptq_int8",
    "ptq_int4",
    "prune_unstructured",
    "prune_structured",
    "distillation",
    "qat_int8",
    "hybrid_prune_int8",
]
DeviceName = Literal["rpi4", "rpi5", "rpi_zero_2w"]
GoalName = Literal["maximize_accuracy", "minimize_size", "minimize_latency", "balanced"]
PresetDataset = Literal["digits", "mnist", "fashion_mnist", "cifar10", "cifar100"]
ArchitectureName = Literal["resnet18", "vgg16", "vgg19", "mobilenet_v2"]

FRAMEWORKS: tuple[Framework, ...] = ("pytorch", "tensorflow")


@dataclass(frozen=True)
class TechniqueInfo:
    name: TechniqueName
    title: str
    summary: str
    frameworks: tuple[Framework, ...]
    needs_training_data: bool
    fine_tunes: bool
    relative_cost: float  # expected wall time relative to ptq_int8 on the same model, from the ETA's cost model


# A view of the technique specs (edgeopt.technique_specs), where each technique's facts are stated once.
TECHNIQUES: tuple[TechniqueInfo, ...] = tuple(
    TechniqueInfo(
        spec.name,  # type: ignore[arg-type]  # checked against TechniqueName below
        spec.title,
        spec.catalog_summary(),
        tuple(fw for fw in FRAMEWORKS if fw in spec.implementations),
        needs_training_data=spec.needs_training_data,
        fine_tunes=spec.fine_tunes,
        relative_cost=relative_cost(spec.name),
    )
    for spec in SPECS
)
TECHNIQUE_NAMES: tuple[str, ...] = tuple(t.name for t in TECHNIQUES)
if get_args(TechniqueName) != TECHNIQUE_NAMES:  # the Literal is for type checkers and the API schema
    raise TypeError(f"TechniqueName {get_args(TechniqueName)} differs from the technique specs {TECHNIQUE_NAMES}")


@dataclass(frozen=True)
class DeviceInfo:
    name: DeviceName
    title: str
    summary: str


DEVICES: tuple[DeviceInfo, ...] = (
    DeviceInfo("rpi4", "Raspberry Pi 4 Model B", "4x Cortex-A72 at 1.5-1.8 GHz, NEON, no dot-product."),
    DeviceInfo("rpi5", "Raspberry Pi 5", "4x Cortex-A76 at 2.4 GHz with dot-product instructions."),
    DeviceInfo("rpi_zero_2w", "Raspberry Pi Zero 2 W", "4x Cortex-A53 at 1.0 GHz and 512 MB of RAM."),
)
DEVICE_NAMES: tuple[str, ...] = tuple(d.name for d in DEVICES)


@dataclass(frozen=True)
class GoalInfo:
    name: GoalName
    title: str
    summary: str


GOALS: tuple[GoalInfo, ...] = (
    GoalInfo("maximize_accuracy", "Maximize accuracy", "Keep as much accuracy as possible; ties go to the smaller."),
    GoalInfo("minimize_size", "Minimize size", "The smallest file that meets your limits."),
    GoalInfo("minimize_latency", "Minimize latency", "The fastest on the target board that meets your limits."),
    GoalInfo(
        "balanced",
        "Balanced",
        "The Pareto-optimal result closest to the ideal of accuracy, size and latency together.",
    ),
)
GOAL_NAMES: tuple[str, ...] = tuple(g.name for g in GOALS)


@dataclass(frozen=True)
class DatasetInfo:
    name: PresetDataset
    title: str
    summary: str
    num_classes: int
    image_shape: tuple[int, int, int]  # height, width, channels as stored
    always_available: bool


DATASETS: tuple[DatasetInfo, ...] = (
    DatasetInfo(
        "digits",
        "Digits (scikit-learn, bundled)",
        "1,797 handwritten 8x8 digits shipped with scikit-learn; always available offline.",
        10,
        (8, 8, 1),
        True,
    ),
    DatasetInfo("mnist", "MNIST", "70,000 handwritten 28x28 digits.", 10, (28, 28, 1), False),
    DatasetInfo("fashion_mnist", "Fashion-MNIST", "70,000 28x28 greyscale clothing images.", 10, (28, 28, 1), False),
    DatasetInfo("cifar10", "CIFAR-10", "60,000 32x32 colour images in 10 classes.", 10, (32, 32, 3), False),
    DatasetInfo("cifar100", "CIFAR-100", "60,000 32x32 colour images in 100 classes.", 100, (32, 32, 3), False),
)
DATASET_NAMES: tuple[str, ...] = tuple(d.name for d in DATASETS)


@dataclass(frozen=True)
class ArchitectureInfo:
    name: ArchitectureName
    title: str
    torchvision: str
    keras_application: str
    default_input: tuple[int, int, int]  # height, width, channels


ARCHITECTURES: tuple[ArchitectureInfo, ...] = (
    ArchitectureInfo("resnet18", "ResNet-18", "resnet18", "ResNet18", (224, 224, 3)),
    ArchitectureInfo("vgg16", "VGG-16", "vgg16", "VGG16", (224, 224, 3)),
    ArchitectureInfo("vgg19", "VGG-19", "vgg19", "VGG19", (224, 224, 3)),
    ArchitectureInfo("mobilenet_v2", "MobileNetV2", "mobilenet_v2", "MobileNetV2", (224, 224, 3)),
)
ARCHITECTURE_NAMES: tuple[str, ...] = tuple(a.name for a in ARCHITECTURES)


def technique_info(name: str) -> TechniqueInfo:
    for info in TECHNIQUES:
        if info.name == name:
            return info
    raise KeyError(name)


def dataset_info(name: str) -> DatasetInfo:
    for info in DATASETS:
        if info.name == name:
            return info
    raise KeyError(name)


@dataclass(frozen=True)
class PreprocessingPresetInfo:
    """A normalization a user can declare for the model's input (``edgeopt.preprocessing``); statistics in 0..1, RGB."""

    name: str
    title: str
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None


def preprocessing_presets() -> tuple[PreprocessingPresetInfo, ...]:
    """The normalization presets with their statistics, read from ``edgeopt.preprocessing``."""
    from edgeopt.preprocessing import PRESET_TITLES, PRESETS

    return tuple(
        PreprocessingPresetInfo(
            name,
            title,
            PRESETS[name][0] if name in PRESETS else None,
            PRESETS[name][1] if name in PRESETS else None,
        )
        for name, title in PRESET_TITLES.items()
    )


def as_dict() -> dict[str, Any]:
    """The whole manifest as JSON-ready data (what ``GET /api/catalog`` sends, before the service's own limits)."""
    return {
        "frameworks": list(FRAMEWORKS),
        "techniques": [asdict(t) for t in TECHNIQUES],
        "devices": [asdict(d) for d in DEVICES],
        "goals": [asdict(g) for g in GOALS],
        "datasets": [asdict(d) for d in DATASETS],
        "architectures": [asdict(a) for a in ARCHITECTURES],
        "preprocessing_presets": [asdict(p) for p in preprocessing_presets()],
    }
