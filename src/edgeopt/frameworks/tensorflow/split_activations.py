"""Give fused activations that TFLite computes in several ops a layer of their own, before QAT annotation.

``Conv2D(activation="swish")`` becomes ``Conv2D`` + ``Activation("swish")``. TFLite has no single swish kernel: it
runs ``x * sigmoid(x)``, so the convolution's own output ``x`` is an int8 tensor that needs a quantization range.
tfmot fake-quantizes a fused swish only after it, so that tensor had none, the converter wrote it with scale 0,
and XNNPACK refused the file ("failed to create XNNPACK runtime": keras.applications EfficientNet's
squeeze-and-excite). Split off, tfmot quantizes the convolution's output and the activation's.
"""

from __future__ import annotations

from typing import Any

import tf_keras

# Activations TFLite lowers to more than one op (tfmot quantizes them only after the activation).
MULTI_OP_ACTIVATIONS = frozenset({"swish", "silu"})
# Layers whose fused activation is split off (those tfmot quantizes with a weight rule).
SPLIT_LAYERS = frozenset({"Conv2D", "DepthwiseConv2D", "Dense"})
SUFFIX = "_activation_split"


def _activation_name(layer: dict[str, Any]) -> str:
    activation = layer["config"].get("activation")
    if isinstance(activation, dict):  # a serialized function: {"class_name": "function", "config": "swish", ...}
        activation = activation.get("config")
    return str(activation)


def split_multi_op_activations(model: Any, custom_objects: dict[str, type]) -> tuple[Any, list[str]]:
    """A copy of the Functional ``model`` with each multi-op fused activation as its own layer, same weights.

    Returns the model (``model`` itself when nothing is split) and the names of the layers that were split.
    """
    if type(model).__name__ != "Functional":
        return model, []
    config = model.get_config()
    layers = []
    renamed: dict[str, str] = {}
    for layer in config["layers"]:
        layers.append(layer)
        if (
            layer["class_name"] not in SPLIT_LAYERS
            or _activation_name(layer) not in MULTI_OP_ACTIVATIONS
            or len(layer.get("inbound_nodes", [])) != 1  # a shared layer: its calls would need one split each
        ):
            continue
        name = layer["config"]["name"]
        activation = layer["config"]["activation"]
        layer["config"]["activation"] = "linear"
        split = f"{name}{SUFFIX}"
        renamed[name] = split
        dtype = layer["config"].get("dtype")
        layers.append(
            {
                "class_name": "Activation",
                "name": split,
                "config": {"name": split, "trainable": True, "dtype": dtype, "activation": activation},
                "inbound_nodes": [[[name, 0, 0, {}]]],
            }
        )
    if not renamed:
        return model, []

    def reroute(item: Any) -> Any:
        # A reference [layer_name, node_index, tensor_index, (kwargs)] to a split layer now points at its activation.
        if isinstance(item, list) and len(item) >= 3 and isinstance(item[0], str) and isinstance(item[1], int):
            if item[0] in renamed:
                return [renamed[item[0]], *item[1:]]
            return item
        if isinstance(item, list):
            return [reroute(sub) for sub in item]
        if isinstance(item, dict):  # a TFOpLambda's call kwargs can hold tensor references too
            return {key: reroute(value) for key, value in item.items()}
        return item

    for layer in layers:
        if not layer["name"].endswith(SUFFIX):
            layer["inbound_nodes"] = reroute(layer.get("inbound_nodes", []))
    config["layers"] = layers
    config["output_layers"] = reroute(config["output_layers"])
    rebuilt = tf_keras.Model.from_config(config, custom_objects=custom_objects)
    for layer in model.layers:
        rebuilt.get_layer(layer.name).set_weights(layer.get_weights())
    return rebuilt, sorted(renamed)
