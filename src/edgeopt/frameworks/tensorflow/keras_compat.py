"""One Keras for the whole engine: ``tf_keras`` (Keras 2), because tensorflow-model-optimization needs it.

Policy (docs/library-notes.md explains why):

* The engine's TensorFlow code always works on ``tf_keras`` models. ``TF_USE_LEGACY_KERAS=1`` is set here, before
  TensorFlow is imported, so ``tf.keras`` inside tfmot resolves to ``tf_keras`` too. Every module of this package
  imports this one first.
* Files written by ``tf_keras`` load directly. ``tf_keras`` cannot read files written by Keras 3 (its configs use
  ``batch_shape``, DTypePolicy objects and a new node format), so those are loaded with Keras 3 and rebuilt as a
  ``tf_keras`` model from their config, with every layer's weights copied over; the rebuilt model is checked to give
  the same outputs as the original before it is used.
* A Keras 3 model that cannot be rebuilt (Lambda layers, custom layer classes) is kept as a Keras 3 model: it still
  converts to ``.tflite`` (baseline, post-training quantization), and the techniques that need ``tf_keras``
  (tfmot pruning and QAT) refuse it with :func:`require_tf_keras`'s sentence.
* Loading is always in Keras safe mode (no Python bytecode from a file) unless the user trusts pickles.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import re  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402,F401  - imported after the environment is set, on purpose
import tf_keras  # noqa: E402

from edgeopt.errors import InvalidInput, Unsupported  # noqa: E402
from edgeopt.keras_config import TRUST_HINT, legacy_graph_problem  # noqa: E402

# Keys that Keras 3 writes into layer configs and tf_keras does not know; dropped when they hold their default.
_KERAS3_ONLY_KEYS = frozenset(
    {"optional", "lora_rank", "lora_alpha", "quantization_config", "gptq", "rms_scaling"}  # rms_scaling: LayerNorm
)


@tf_keras.saving.register_keras_serializable(package="edgeopt")
def hard_silu(x: Any) -> Any:
    """Keras 3's ``hard_silu`` (``hard_swish``), ``x * relu6(x + 3) / 6``, which tf_keras has no name for: a Keras 3
    MobileNetV3 uses it in every block. Registered, so the rebuilt model's config names it wherever it is rebuilt."""
    return x * tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


# Keras 3 activations tf_keras does not define, by the names Keras 3 saves them under.
KERAS3_ACTIVATIONS = {"hard_silu": hard_silu, "hard_swish": hard_silu}


def registered_name(fn: Any) -> str:
    """The name a function registered above is saved under in a tf_keras config (``edgeopt>hard_silu``)."""
    return tf_keras.saving.get_registered_name(fn)


def is_tf_keras_model(model: Any) -> bool:
    return isinstance(model, tf_keras.Model)


def is_keras3_model(model: Any) -> bool:
    try:
        import keras

        return isinstance(model, keras.Model) and not isinstance(model, tf_keras.Model)
    except ImportError:  # pragma: no cover - Keras 3 is a TensorFlow dependency
        return False


def require_tf_keras(model: Any, technique: str) -> Any:
    """Return ``model`` if tfmot can work on it, else raise ``Unsupported`` with a reason a user understands."""
    if is_tf_keras_model(model):
        return model
    raise Unsupported(
        f"{technique} needs a tf_keras (Keras 2) model for TensorFlow Model Optimization, and this Keras 3 model "
        "could not be rebuilt as one (it has Lambda or custom layers). Rebuild it without them, or save it with "
        "tf_keras."
    )


def clone_tf_keras(model: Any) -> Any:
    """A tf_keras copy with the same weights, so a technique never trains the model other techniques start from.

    tfmot's wrappers keep the original layer objects, so wrapping without cloning would change the shared model.
    Subclassed models cannot be cloned from their config: ``Unsupported`` says so.
    """
    if type(model).__name__ not in ("Sequential", "Functional") and not isinstance(model, tf_keras.Sequential):
        raise Unsupported(
            f"This is a subclassed Keras model ({type(model).__name__}): its layers and connections live in Python "
            "code, so TensorFlow Model Optimization cannot rewrite it. Build it as a Sequential or Functional model."
        )
    clone = tf_keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def _clean_object(value: Any) -> Any:
    """Translate a Keras 3 serialized object (initializer, regularizer, dtype policy) to what tf_keras reads."""
    if isinstance(value, dict) and "class_name" in value and "config" in value:
        if value["class_name"] in ("DTypePolicy", "FloatDTypePolicy"):
            return value["config"].get("name", "float32")
        config = {k: v for k, v in (value["config"] or {}).items() if v is not None}
        return {"class_name": value["class_name"], "config": config}
    return value


def _node_to_legacy(node: dict[str, Any]) -> list[list[Any]]:
    """A Keras 3 inbound node ``{"args": [...], "kwargs": {}}`` -> tf_keras ``[[layer, node, tensor, kwargs]]``."""
    history: list[list[Any]] = []

    def walk(item: Any) -> None:
        if isinstance(item, dict) and item.get("class_name") == "__keras_tensor__":
            name, node_index, tensor_index = item["config"]["keras_history"]
            history.append([name, node_index, tensor_index, {}])
        elif isinstance(item, list | tuple):
            for sub in item:
                walk(sub)

    walk(node.get("args", []))
    kwargs = {k: v for k, v in node.get("kwargs", {}).items() if v is not None and not isinstance(v, dict | list)}
    if kwargs and history:
        history[0][3] = kwargs
    return history


# Keras 3 records ``x + 3.0`` on a Keras tensor as an Add layer called on (tensor, number) (MobileNetV3's hard
# sigmoid); tf_keras records it as the TensorFlow operator with the number as ``y``. Subtraction only with the tensor
# first (``3.0 - x`` is left to fail, and the model stays Keras 3).
_SCALAR_OPERATORS = {"Add": "__operators__.add", "Multiply": "math.multiply", "Subtract": "math.subtract"}


def _scalar_operand(node: dict[str, Any]) -> tuple[list[Any], float] | None:
    """(the tensor's Keras history, the number) of a Keras 3 merge-layer call on a tensor and a number, else None."""
    args = node.get("args") if isinstance(node, dict) else None
    if not isinstance(args, list | tuple) or len(args) != 2:
        return None
    tensor, number = args
    if not (isinstance(tensor, dict) and tensor.get("class_name") == "__keras_tensor__"):
        return None
    if isinstance(number, bool) or not isinstance(number, int | float):
        return None
    return list(tensor["config"]["keras_history"]), float(number)


def _scalar_operator_to_legacy(layer: dict[str, Any]) -> dict[str, Any] | None:
    function = _SCALAR_OPERATORS.get(layer["class_name"])
    nodes = layer.get("inbound_nodes") or []
    operands = [_scalar_operand(node) for node in nodes]
    if function is None or not nodes or any(operand is None for operand in operands):
        return None
    name = layer["config"]["name"]
    return {
        "class_name": "TFOpLambda",
        "config": {"name": name, "trainable": True, "dtype": "float32", "function": function},
        "name": layer.get("name", name),
        # One entry per call, not a list of entries: TFOpLambda keeps its input's structure, and a list would reach
        # the operator as x.
        "inbound_nodes": [[*history, {"y": number, "name": None}] for history, number in operands],  # type: ignore[misc]
    }


def _layer_to_legacy(layer: dict[str, Any]) -> dict[str, Any]:
    class_name = layer["class_name"]
    operator = _scalar_operator_to_legacy(layer)
    if operator is not None:
        return operator
    config = dict(layer["config"])
    if class_name in ("Functional", "Sequential", "Model"):
        config = _model_config_to_legacy(class_name, config)
    elif class_name == "Lambda" or layer.get("registered_name") not in (None, class_name):
        raise Unsupported(f"layer {config.get('name')!r} ({class_name}) has no tf_keras equivalent")
    else:
        if class_name == "InputLayer" and "batch_shape" in config:
            config["batch_input_shape"] = config.pop("batch_shape")
        for key in list(config):
            if key in _KERAS3_ONLY_KEYS and config[key] in (None, False, {}):
                del config[key]
            else:
                config[key] = _clean_object(config[key])
    out: dict[str, Any] = {"class_name": class_name, "config": config}
    if "name" in layer:
        out["name"] = layer["name"]
    if "inbound_nodes" in layer:
        out["inbound_nodes"] = [_node_to_legacy(node) for node in layer["inbound_nodes"]]
    return out


def _io_list(value: Any) -> list[list[Any]]:
    """Keras 3 writes a single input as ``[name, 0, 0]``; tf_keras wants a list of such triples."""
    if value and isinstance(value[0], str):
        return [list(value)]
    return [list(v) for v in value]


def _own_first_node(layer: dict[str, Any]) -> bool:
    """Whether tf_keras rebuilds this (converted) nested model with a call of its own as node 0, as it does for a
    Functional model and a Sequential one that starts from an input: tf_keras then numbers the calls made in the
    outer model from 1. Keras 3 numbers them from 0."""
    if layer["class_name"] in ("Functional", "Model"):
        return True
    if layer["class_name"] != "Sequential":
        return False
    inner = layer["config"].get("layers") or []
    return bool(inner) and (inner[0]["class_name"] == "InputLayer" or "batch_input_shape" in inner[0]["config"])


def _shift_calls(entries: list[Any], shifted: set[str]) -> list[Any]:
    """A node's entries (or a TFOpLambda node's single entry) with calls of ``shifted`` layers numbered from 1."""
    if entries and isinstance(entries[0], str):
        name, index, *rest = entries
        return [name, index + 1 if name in shifted else index, *rest]
    return [_shift_calls(entry, shifted) for entry in entries]


def _model_config_to_legacy(class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in config.items() if k not in ("layers", "dtype", "trainable")}
    out["layers"] = [_layer_to_legacy(layer) for layer in config["layers"]]
    # Calls of a nested model renumbered as tf_keras counts them: left at Keras 3's numbers, tf_keras waits
    # forever for a call that never comes (its rebuild loop re-queues a node whose input does not exist).
    shifted = {layer["config"]["name"] for layer in out["layers"] if _own_first_node(layer)}
    for layer in out["layers"]:
        if "inbound_nodes" in layer:
            layer["inbound_nodes"] = [_shift_calls(node, shifted) for node in layer["inbound_nodes"]]
    if class_name != "Sequential":
        out["input_layers"] = _io_list(config["input_layers"])
        out["output_layers"] = _shift_calls(_io_list(config["output_layers"]), shifted)
    return out


def _copy_weights(source: Any, target: Any) -> None:
    for layer in source.layers:
        counterpart = target.get_layer(layer.name)
        if hasattr(layer, "layers") and hasattr(counterpart, "layers"):
            _copy_weights(layer, counterpart)
        else:
            counterpart.set_weights(layer.get_weights())


def keras3_to_tf_keras(model: Any) -> Any:
    """Rebuild a Keras 3 Sequential/Functional model as a tf_keras model with the same weights and outputs.

    Raises ``Unsupported`` when a layer has no tf_keras twin or the rebuilt model computes something else.
    """
    class_name = "Sequential" if type(model).__name__ == "Sequential" else "Functional"
    if type(model).__name__ not in ("Sequential", "Functional"):
        raise Unsupported(f"a subclassed Keras 3 model ({type(model).__name__}) cannot be rebuilt from its config")
    legacy = _model_config_to_legacy(class_name, model.get_config())
    stuck = legacy_graph_problem({"class_name": class_name, "config": legacy})
    if stuck is not None:  # tf_keras would re-queue that call forever
        raise Unsupported(f"tf_keras could not rebuild the call of layer {stuck!r} in the Keras 3 graph")
    try:
        if class_name == "Sequential":
            rebuilt = tf_keras.Sequential.from_config(legacy, custom_objects=_rebuild_objects())
        else:
            rebuilt = tf_keras.Model.from_config(legacy, custom_objects=_rebuild_objects())
        _copy_weights(model, rebuilt)
    except (TypeError, ValueError, KeyError) as exc:
        raise Unsupported(f"tf_keras could not rebuild the Keras 3 config: {exc}") from exc
    probe = np.random.default_rng(0).random((2, *model.input_shape[1:]), dtype=np.float32)
    expected = np.asarray(model(probe, training=False))
    got = np.asarray(rebuilt(probe, training=False))
    if expected.shape != got.shape or not np.allclose(expected, got, atol=1e-4, rtol=1e-3):
        raise Unsupported("the tf_keras rebuild of the Keras 3 model does not compute the same outputs")
    return rebuilt


def _is_keras3_format_error(exc: Exception) -> bool:
    text = str(exc)
    return "batch_shape" in text or "DTypePolicy" in text or "keras_history" in text or "__keras_tensor__" in text


def _unsafe_refusal(exc: Exception) -> bool:
    text = str(exc).lower()
    return "safe_mode" in text or "lambda" in text and "arbitrary code" in text


def application_layers() -> dict[str, type]:
    """The layer classes keras.applications defines in its own modules (ConvNeXt's LayerScale, ...), by name.

    Library code that ``keras_config`` allows; tf_keras's ``.keras`` loader finds them by module, but its HDF5 loader
    only by name, so they are passed to it as custom objects.
    """
    import importlib
    import pkgutil

    from tf_keras.src import applications

    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(applications.__path__):
        if info.name.endswith("_test"):
            continue
        module = importlib.import_module(f"{applications.__name__}.{info.name}")
        for name, value in vars(module).items():
            layer_class = isinstance(value, type) and issubclass(value, tf_keras.layers.Layer)
            if layer_class and value.__module__ == module.__name__:
                found[name] = value
    return found


def _rebuild_objects() -> dict[str, Any]:
    return {**application_layers(), **KERAS3_ACTIVATIONS}


def load_keras_file(path: Path, *, trust: bool) -> tuple[Any, str, str]:
    """Load a ``.keras``/``.h5`` file as a tf_keras model when at all possible.

    Returns ``(model, flavor, note)`` with flavor ``"tf_keras"`` or ``"keras3"`` (kept as Keras 3 because it
    could not be rebuilt; ``note`` says why).
    """
    try:
        model = tf_keras.models.load_model(
            path, compile=False, safe_mode=not trust, custom_objects=application_layers()
        )
        return model, "tf_keras", ""
    except Exception as exc:  # noqa: BLE001 - Keras raises many types; sorted out below
        if _unsafe_refusal(exc):
            raise InvalidInput(f"{path.name} contains a Lambda layer (Python code). {TRUST_HINT}") from exc
        if not _is_keras3_format_error(exc):
            _refuse_custom_class(path, exc)
            raise InvalidInput(f"{path.name} is not a readable Keras model file ({_first_line(exc)}).") from exc
    import keras

    try:
        original = keras.saving.load_model(path, compile=False, safe_mode=not trust)
    except Exception as exc:  # noqa: BLE001
        if _unsafe_refusal(exc):
            raise InvalidInput(f"{path.name} contains a Lambda layer (Python code). {TRUST_HINT}") from exc
        _refuse_custom_class(path, exc)
        raise InvalidInput(f"{path.name} is not a readable Keras model file ({_first_line(exc)}).") from exc
    try:
        return keras3_to_tf_keras(original), "tf_keras", "written by Keras 3, rebuilt as a tf_keras model"
    except Unsupported as exc:
        return original, "keras3", f"kept as a Keras 3 model: {exc}"


_UNKNOWN_CLASS = re.compile(r"Unknown (?:layer|object type|class)[^'\"]*['\"]([^'\"]+)['\"]", re.I)
_MODEL_CLASSES = frozenset({"Functional", "Sequential", "Model", "TFOpLambda", "SlicingOpLambda"})


def _layer_classes(config: Any) -> set[str]:
    """Every layer ``class_name`` in a saved model config (the entries of its ``layers`` lists, nested models too)."""
    found: set[str] = set()
    if isinstance(config, dict):
        for layer in (config.get("config") or {}).get("layers") or []:
            if isinstance(layer, dict) and "class_name" in layer:
                found.add(str(layer["class_name"]))
                found |= _layer_classes(layer)
    return found


def _custom_classes(path: Path) -> list[str]:
    """Layer classes in a ``.keras`` file that neither Keras defines (read from config.json, nothing executed)."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return []
    import keras

    known = _MODEL_CLASSES | set(dir(tf_keras.layers)) | set(dir(keras.layers))
    return sorted(name for name in _layer_classes(config) if name not in known)


def _refuse_custom_class(path: Path, exc: Exception) -> None:
    """A layer class defined in the user's own code: name it, and say how to make the model loadable."""
    match = _UNKNOWN_CLASS.search(str(exc))
    names = [match.group(1)] if match else _custom_classes(path)
    if names:
        raise InvalidInput(
            f"{path.name} uses the custom layer class {', '.join(repr(n) for n in names)}, whose Python code is "
            "not in the file (and EdgeOpt never runs code from an upload). Rebuild the model with built-in Keras "
            "layers, or export it with tf.saved_model.save to convert and measure it as a fixed graph."
        ) from exc


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(exc).__name__
