"""Which layers of a Keras model tfmot can wrap, and sentences naming the ones it leaves alone.

tfmot's whole-model entry points (``quantize_model``, ``prune_low_magnitude`` on a model) refuse a model as soon
as one layer is unknown to them. EdgeOpt instead wraps the layers tfmot supports and leaves the rest as they are
(float for QAT, unpruned for pruning); :func:`left_out_sentence` names those layers in the run's notes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import tf_keras

# Input preprocessing that keras.applications (MobileNetV3, EfficientNet, RegNet, ConvNeXt) put inside the model.
PREPROCESSING = frozenset(
    {"Rescaling", "Normalization", "Resizing", "CenterCrop", "RandomFlip", "RandomRotation", "RandomZoom"}
)
# Layers with no tensor of their own: never worth naming as "left out".
PLUMBING = frozenset({"InputLayer", "Dropout", "SpatialDropout2D", "Reshape", "Flatten", "Permute"})
MAX_NAMES = 3


def all_layers(model: Any) -> Iterator[Any]:
    """Every layer, those of nested models included (the nested model itself too)."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, tf_keras.Model):
            yield from all_layers(layer)


def custom_objects(model: Any) -> dict[str, type]:
    """Every layer class of the model by name, so cloning can rebuild classes Keras does not know (LayerScale)."""
    return {type(layer).__name__: type(layer) for layer in all_layers(model)}


def is_nested_model(layer: Any) -> bool:
    return isinstance(layer, tf_keras.Model)


def left_out_sentence(left: dict[str, list[Any]], what: str) -> str:
    """`` Left {what}: AveragePooling2D x3 (pool2, pool3, pool4): reason; ...`` or "" when nothing was left out.

    ``left`` maps a reason to the layers it applies to; layers are grouped by class with a few names each.
    """
    parts = []
    for reason, layers in left.items():
        shown = [layer for layer in layers if type(layer).__name__ not in PLUMBING]
        if not shown:
            continue
        by_class: dict[str, list[str]] = {}
        for layer in shown:
            by_class.setdefault(type(layer).__name__, []).append(layer.name)
        groups = []
        for cls, names in by_class.items():
            more = len(names) - MAX_NAMES
            listed = ", ".join(names[:MAX_NAMES]) + (f" and {more} more" if more > 0 else "")
            groups.append(f"{cls} x{len(names)} ({listed})" if len(names) > 1 else f"{cls} ({listed})")
        parts.append(f"{'; '.join(groups)}: {reason}")
    return f" Left {what}: " + " | ".join(parts) + "." if parts else ""
