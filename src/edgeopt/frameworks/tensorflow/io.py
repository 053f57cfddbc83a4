"""Loading Keras/TensorFlow models: ``.keras``, ``.h5``, zipped SavedModel folders and named architectures.

Every Keras model comes back as a ``tf_keras`` model where possible (see ``keras_compat`` for the policy). Python
code stored in a file (Lambda layers) is refused unless the user trusts the file, including in legacy HDF5 and
SavedModel files, whose loaders would otherwise unmarshal it without asking. A SavedModel without Keras metadata
is a bare TensorFlow graph: it is converted, evaluated and measured, never transformed.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras

from edgeopt import keras_config, saved_model_ops
from edgeopt.errors import InvalidInput
from edgeopt.frameworks import LoadedModel, ModelSource
from edgeopt.frameworks.tensorflow import keras_compat
from edgeopt.settings import Settings

MAX_SAVEDMODEL_BYTES = 4 * 1024**3  # uncompressed; a larger "model" is a zip bomb, not a classifier


# ----------------------------------------------------------------------------------------------- files


def _shape_of(model: Any, source: ModelSource) -> tuple[int, int, int]:
    shape = model.input_shape
    if isinstance(shape, list):
        raise InvalidInput("The model has several inputs; EdgeOpt optimizes image classifiers with one image input.")
    if len(shape) != 4:
        raise InvalidInput(f"The model's input shape {shape} is not an image batch (batch, height, width, channels).")
    height, width, channels = shape[1:]
    if height is None or width is None:
        if source.input_size is None:
            raise InvalidInput("The model accepts any image size; give the size to use with the input size option.")
        height, width = source.input_size
    return int(height), int(width), int(channels)


def _classes_of(model: Any) -> int:
    shape = model.output_shape
    if isinstance(shape, list) or len(shape) != 2:
        raise InvalidInput(f"The model's output shape {shape} is not (batch, classes); is it an image classifier?")
    return int(shape[-1])


def _keras_loaded(model: Any, kind: str, flavor: str, note: str, source: ModelSource) -> LoadedModel:
    info: dict[str, Any] = {"keras": flavor, "source_file": source.path.name if source.path else None}
    if note:
        info["note"] = note
    return LoadedModel(
        framework="tensorflow",
        model=model,
        kind=kind,
        input_shape=_shape_of(model, source),
        num_classes=_classes_of(model),
        info=info,
    )


def load_keras(path: Path, source: ModelSource, trust: bool) -> LoadedModel:
    """``.keras`` (zip) or ``.h5``: tf_keras when possible, else Keras 3 rebuilt as tf_keras (``keras_compat``)."""
    # Checked here again, right before Keras reads it, whatever the upload route checked (fail closed).
    keras_config.check_model_file(path, "keras" if zipfile.is_zipfile(path) else "h5", trust=trust)
    model, flavor, note = keras_compat.load_keras_file(path, trust=trust)
    return _keras_loaded(model, "keras", flavor, note, source)


# ------------------------------------------------------------------------------------------ SavedModel


def _extract_safely(archive: Path, target: Path) -> None:
    """Unzip with the rules an upload must follow: relative names without ``..``, bounded inflated size.

    The bound is on the sizes the entries declare, which ``zipfile`` enforces while inflating (it stops at each
    entry's declared size), so a small, highly compressed archive cannot fill the disk.
    """
    from edgeopt.formats import check_entry_names, check_inflation

    try:
        with zipfile.ZipFile(archive) as handle:
            check_entry_names(handle.namelist())
            check_inflation(handle, archive.stat().st_size, max_bytes=MAX_SAVEDMODEL_BYTES)
            handle.extractall(target)
    except zipfile.BadZipFile as exc:
        raise InvalidInput(f"{archive.name} is a damaged zip archive ({exc}).", field="file") from exc


def _saved_model_root(folder: Path) -> Path:
    found = sorted(folder.rglob("saved_model.pb"), key=lambda p: len(p.parts))
    if not found:
        raise InvalidInput("The archive holds no saved_model.pb; zip the SavedModel folder itself.", field="file")
    return found[0].parent


@dataclass
class SavedModelGraph:
    """A SavedModel without Keras metadata: its serving signature, and the folder the converter reads."""

    directory: Path
    signature: Any
    input_name: str
    output_name: str

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = self.signature(**{self.input_name: tf.constant(x, tf.float32)})
        return np.asarray(out[self.output_name])


def _signature_graph(directory: Path, source: ModelSource) -> tuple[SavedModelGraph, tuple[int, int, int], int]:
    loaded = tf.saved_model.load(str(directory))
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise InvalidInput("The SavedModel has no 'serving_default' signature; export it with one image input.")
    _, inputs = signature.structured_input_signature
    outputs = signature.structured_outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise InvalidInput("The SavedModel's serving signature must take one image tensor and return one tensor.")
    (input_name, spec), (output_name, out_spec) = next(iter(inputs.items())), next(iter(outputs.items()))
    shape = spec.shape.as_list()
    if len(shape) != 4 or shape[3] is None:
        raise InvalidInput(f"The SavedModel's input {shape} is not an image batch (batch, height, width, channels).")
    height, width = shape[1:3]
    if height is None or width is None:
        if source.input_size is None:
            raise InvalidInput(
                "The SavedModel accepts any image size; give the size to use with the input size option."
            )
        height, width = source.input_size
    classes = out_spec.shape.as_list()[-1]
    if classes is None:
        raise InvalidInput("The SavedModel's output has no fixed number of classes.")
    graph = SavedModelGraph(directory, signature, input_name, output_name)
    graph._keep = loaded  # type: ignore[attr-defined]  # the signature needs its trackable object alive
    return graph, (int(height), int(width), int(shape[3])), int(classes)


def load_saved_model(path: Path, source: ModelSource, trust: bool) -> LoadedModel:
    """A zipped (or local) SavedModel folder: a Keras model when it carries Keras metadata, else a bare graph.

    A zip is extracted to a temporary folder that is removed on every path out of here except the bare graph's,
    whose signature reads it lazily: that folder goes when the graph object is collected.
    """
    if path.is_dir():
        return _load_saved_model_dir(_saved_model_root(path), path, source, trust, cleanup=None)
    cleanup = Path(tempfile.mkdtemp(prefix="edgeopt-savedmodel-"))
    try:
        _extract_safely(path, cleanup)
        return _load_saved_model_dir(_saved_model_root(cleanup), path, source, trust, cleanup=cleanup)
    except BaseException:
        shutil.rmtree(cleanup, ignore_errors=True)
        raise


def _load_saved_model_dir(
    directory: Path, path: Path, source: ModelSource, trust: bool, cleanup: Path | None
) -> LoadedModel:
    # Whatever the upload route checked, the graph is checked here again before TensorFlow reads it (fail closed):
    # a SavedModel with Keras metadata is restored with its graph functions too.
    graph_file = directory / "saved_model.pb"
    if graph_file.is_file():
        saved_model_ops.check_graph(graph_file.read_bytes(), path.name)
    metadata = directory / "keras_metadata.pb"
    if metadata.is_file():
        if metadata.stat().st_size > keras_config.MAX_CONFIG_BYTES:
            raise InvalidInput("The SavedModel's keras_metadata.pb is implausibly large.", field="file")
        # Checked here again, right before tf_keras reads it, whatever the upload route checked (fail closed).
        configs = keras_config.saved_metadata_configs(metadata.read_bytes())
        try:
            keras_config.check_saved_model_configs(configs, path.name, trust=trust)
        except keras_config.NotBuiltIn as refused:
            # A class Keras does not define (a subclassed model, a custom layer): the Keras model is never rebuilt,
            # but the serving graph needs none of that code (its operations were checked above).
            reason = (
                f"{refused} Until then EdgeOpt uses its serving graph as it is: converted, quantized by the "
                "techniques that need no editable model (ptq_int8, ptq_int4), evaluated and measured."
            )
            return _graph_loaded(path, directory, cleanup, source, reason)
        model = tf_keras.models.load_model(directory, compile=False, safe_mode=not trust)
        if getattr(model, "_is_graph_network", False) or isinstance(model, tf_keras.Sequential):
            if cleanup is not None:
                shutil.rmtree(cleanup, ignore_errors=True)
            return _keras_loaded(model, "savedmodel", "tf_keras", "SavedModel with Keras metadata", source)
        # A subclassed model comes back as a revived object without its Python class: no layer graph, often no
        # input shape. Its serving signature is still a complete graph to convert, quantize, evaluate and measure.
        reason = (
            f"This SavedModel holds a subclassed Keras model ({model.name}): its layers are connected by Python "
            "code in its call method, which the file does not carry, so the techniques cannot rewrite it. EdgeOpt "
            "converts, quantizes (ptq_int8, ptq_int4), evaluates and measures its serving graph; rebuild it as a "
            "Functional or Sequential model to use the other techniques."
        )
        return _graph_loaded(path, directory, cleanup, source, reason)
    return _graph_loaded(path, directory, cleanup, source, None)


def _graph_loaded(
    path: Path, directory: Path, cleanup: Path | None, source: ModelSource, reason: str | None
) -> LoadedModel:
    """The SavedModel's serving signature as a fixed graph: converted, evaluated and measured, never transformed."""
    graph, shape, classes = _signature_graph(directory, source)
    if cleanup is not None:
        weakref.finalize(graph, shutil.rmtree, cleanup, True)
    return LoadedModel(
        framework="tensorflow",
        model=graph,
        kind="savedmodel",
        input_shape=shape,
        num_classes=classes,
        transformable=False,
        not_transformable_reason=reason
        or (
            "This SavedModel has no Keras metadata (it was written by tf.saved_model.save or model.export), so it "
            "is a fixed graph: EdgeOpt converts, quantizes (ptq_int8, ptq_int4), evaluates and measures it, but the "
            "other techniques need the Keras model. Save it with model.save('model.keras') to use them."
        ),
        info={"source_file": path.name},
    )


# -------------------------------------------------------------------------------------- architectures

# The keras.applications weight files (include_top=False) and where Keras keeps them.
MOBILENET_V2_ROWS = (96, 128, 160, 192, 224)


def keras_cache_dir() -> Path:
    import os

    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "models"


def weights_file_name(arch: str, input_size: tuple[int, int]) -> str:
    if arch in ("vgg16", "vgg19"):
        return f"{arch}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    if arch == "mobilenet_v2":
        rows = input_size[0] if input_size[0] in MOBILENET_V2_ROWS else 224
        return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"
    raise InvalidInput(f"No keras.applications weights exist for {arch!r}.")


def _residual_block(x: Any, filters: int, stride: int, name: str) -> Any:
    layers = tf_keras.layers
    shortcut = x
    y = layers.Conv2D(filters, 3, stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, stride, use_bias=False, name=f"{name}_down")(shortcut)
        shortcut = layers.BatchNormalization(name=f"{name}_down_bn")(shortcut)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


def resnet18_backbone(input_shape: tuple[int, int, int]) -> Any:
    """ResNet-18 (He et al. 2016, BasicBlock x [2, 2, 2, 2]) in Keras: keras.applications has no ResNet-18.

    There is no official Keras weight file for it, so it starts from random weights (only when asked) or from a
    weights file the user saved from this same definition.
    """
    layers = tf_keras.layers
    inputs = tf_keras.Input(input_shape, name="image")
    x = layers.Conv2D(64, 7, 2, padding="same", use_bias=False, name="conv1")(inputs)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)
    x = layers.MaxPooling2D(3, 2, padding="same", name="pool1")(x)
    for stage, filters in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if stage > 1 and block == 0 else 1
            x = _residual_block(x, filters, stride, f"layer{stage}_{block}")
    return tf_keras.Model(inputs, x, name="resnet18")


def _backbone(arch: str, input_shape: tuple[int, int, int], weights: str | None) -> Any:
    apps = tf_keras.applications
    if arch == "vgg16":
        return apps.VGG16(include_top=False, weights=weights, input_shape=input_shape)
    if arch == "vgg19":
        return apps.VGG19(include_top=False, weights=weights, input_shape=input_shape)
    if arch == "mobilenet_v2":
        return apps.MobileNetV2(include_top=False, weights=weights, input_shape=input_shape)
    return resnet18_backbone(input_shape)


# (mean, std) on [0, 1] pixels that reproduce each application's own preprocessing (VGG: caffe mode, whose
# BGR order is handled by flipping the first convolution's input channels instead).
_NORMALIZATION: dict[str, tuple[list[float], list[float]]] = {
    "vgg16": ([123.68 / 255, 116.779 / 255, 103.939 / 255], [1 / 255] * 3),
    "vgg19": ([123.68 / 255, 116.779 / 255, 103.939 / 255], [1 / 255] * 3),
    "mobilenet_v2": ([0.5] * 3, [0.5] * 3),
    "resnet18": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
}


def _flip_first_conv_to_rgb(model: Any) -> None:
    conv = next(layer for layer in model.layers if isinstance(layer, tf_keras.layers.Conv2D))
    kernel, *rest = conv.get_weights()
    conv.set_weights([kernel[:, :, ::-1, :], *rest])


def load_architecture(source: ModelSource, num_classes: int, settings: Settings) -> LoadedModel:
    """A named architecture with a new classification head for ``num_classes``.

    Backbone weights: a weights file the user gave (``source.path``, saved from this same definition), else the
    ImageNet file from the Keras cache, else random weights only when asked; otherwise one line saying which file
    to put where.
    """
    arch = (source.arch or "").lower()
    if arch not in _NORMALIZATION:
        raise InvalidInput(f"Unknown architecture {source.arch!r}; choose one of {', '.join(_NORMALIZATION)}.")
    height, width = source.input_size or (32, 32)
    if min(height, width) < 32:
        raise InvalidInput(f"{arch} needs an input of at least 32x32 pixels; got {height}x{width}.")
    input_shape = (int(height), int(width), 3)
    user_weights = source.path
    weights: str | None = None
    note = "random initialisation (asked for explicitly)"
    if user_weights is None and arch != "resnet18":
        cached = keras_cache_dir() / weights_file_name(arch, (height, width))
        if cached.is_file():
            weights, note = str(cached), f"ImageNet backbone weights from {cached}"
        elif not (source.random_init or settings.allow_random_init):
            raise InvalidInput(
                f"Pretrained weights for {arch} are not available offline: put {cached.name} in {cached.parent} "
                "(keras.applications' standard file), or ask for random initialisation explicitly."
            )
    elif user_weights is None and not (source.random_init or settings.allow_random_init):
        raise InvalidInput(
            "keras.applications has no ResNet-18, so there is no standard pretrained Keras weight file: pass a "
            "weights file saved from EdgeOpt's resnet18 definition, or ask for random initialisation explicitly."
        )
    backbone = _backbone(arch, input_shape, weights)
    if weights is not None and arch.startswith("vgg"):
        _flip_first_conv_to_rgb(backbone)
    layers = tf_keras.layers
    x = layers.GlobalAveragePooling2D(name="head_pool")(backbone.output)
    outputs = layers.Dense(num_classes, name="head_logits")(x)
    model = tf_keras.Model(backbone.input, outputs, name=f"{arch}_{num_classes}")
    if user_weights is not None:
        try:
            model.load_weights(user_weights)
        except (ValueError, OSError) as exc:
            raise InvalidInput(
                f"{user_weights.name} does not hold weights for EdgeOpt's {arch} with {num_classes} classes at "
                f"{height}x{width} ({str(exc).splitlines()[0][:200]})."
            ) from exc
        note = f"weights from {user_weights.name}"
    mean, std = _NORMALIZATION[arch]
    return LoadedModel(
        framework="tensorflow",
        model=model,
        kind="architecture",
        input_shape=input_shape,
        num_classes=num_classes,
        info={"arch": arch, "keras": "tf_keras", "weights": note, "normalization": (mean, std)},
    )


# ----------------------------------------------------------------------------------------------- entry


def load_tensorflow(source: ModelSource, num_classes_hint: int | None, settings: Settings) -> LoadedModel:
    """Load what ``source`` names; ``InvalidInput`` with a fix for anything EdgeOpt cannot use."""
    trust = bool(settings.trust_pickles)
    if source.arch:
        classes = source.num_classes or num_classes_hint
        if not classes:
            raise InvalidInput("Named architectures need the number of classes (taken from the dataset).")
        return load_architecture(source, int(classes), settings)
    if source.path is None:
        raise InvalidInput("Give a model file, or an architecture name.")
    path = Path(source.path)
    if path.is_dir():
        return load_saved_model(path, source, trust)
    if not path.is_file():
        raise InvalidInput(f"The model file {path} does not exist.", field="file")
    from edgeopt.formats import detect_model_format

    detected = detect_model_format(path, framework="tensorflow")
    if detected.framework != "tensorflow":
        raise InvalidInput(
            f"{path.name} is a {detected.description}, a {detected.framework} model; choose that framework.",
            field="file",
        )
    if detected.kind == "savedmodel_zip":
        return load_saved_model(path, source, trust)
    return load_keras(path, source, trust)
