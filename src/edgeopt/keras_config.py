"""A Keras model's architecture read from its file as data, and every layer in it checked against Keras's own.

tf_keras's ``.h5`` and SavedModel loaders ignore ``safe_mode``: a Lambda layer's marshalled bytecode runs while the
model is built. So the architecture is read without any Keras code (the ``model_config`` attribute of an ``.h5`` via
h5py, ``config.json`` of a ``.keras`` zip, the node metadata of a SavedModel's ``keras_metadata.pb``), parsed as
JSON, and walked whole: every object that names a class must name one defined by the installed ``keras`` /
``tf_keras`` packages, layers (nested models' layers and wrapped layers included) must name a layer or model class,
and the layers that carry code or reach outside the model (Lambda and its kin) are refused unless the user trusts
the file. A byte pattern over the file is no defence: JSON allows other spacing and ``\\u`` escapes.

The allow-list is derived from the installed packages' source files (their top-level classes and aliases), parsed
with ``ast`` rather than imported: the API process checks uploads and must not import TensorFlow to do it.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from edgeopt.errors import InvalidInput

MAX_CONFIG_BYTES = 64 * 1024 * 1024
TRUST_HINT = (
    "Set EDGEOPT_TRUST_PICKLES=1 to load it, but only for files you trust: such layers run Python code stored "
    "in the file."
)
# Package -> folders (inside the package) whose classes are Keras layers and models. keras.applications defines a
# few layers of its own (ConvNeXt's LayerScale, InceptionResNetV2's CustomScaleLayer): library code, saved under
# their module's name like any built-in, so a stock ConvNeXt uploaded the usual way loads.
LAYER_SOURCES: dict[str, tuple[str, ...]] = {
    "keras": ("src/layers", "src/models", "src/applications"),
    "tf_keras": ("src/layers", "src/engine", "src/applications"),
}
# Package -> folders whose classes may appear inside a layer's config (initializers, dtype policies, ...).
OBJECT_SOURCES: dict[str, tuple[str, ...]] = {
    "keras": (
        "src/initializers", "src/regularizers", "src/constraints", "src/activations", "src/dtype_policies",
        "src/losses", "src/metrics", "src/optimizers", "src/saving",
    ),
    "tf_keras": (
        "src/initializers", "src/regularizers", "src/constraints", "src/activations", "src/mixed_precision",
        "src/losses", "src/metrics", "src/optimizers", "src/saving", "src/dtensor",
    ),
}  # fmt: skip
# TensorFlow's own initializers, which tf_keras saves under their TensorFlow module (keras.applications
# EfficientNetV2 sets ``tf.constant_initializer(0)`` as a bias initializer): classes that only fill a weight with
# numbers, allowed by exact module and name (a TensorFlow module in general could name a class that opens files).
TF_INITIALIZERS: dict[str, frozenset[str]] = {
    "tensorflow.python.ops.init_ops_v2": frozenset(
        {"Zeros", "Ones", "Constant", "RandomUniform", "RandomNormal", "TruncatedNormal", "VarianceScaling",
         "Orthogonal", "Identity", "GlorotUniform", "GlorotNormal"}
    ),
}  # fmt: skip
# Keras 3's serialization markers for values that are not classes (tensors, tuples, functions by name).
VALUE_MARKERS = frozenset(
    {"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__ellipsis__", "__slice__", "__tuple__",
     "__typespec__", "function", "TensorShape", "TypeSpec", "CompositeTensor"}
)  # fmt: skip
# Built-in layers that run Python code stored in the file, or load files / modules named in their config.
CODE_LAYERS = frozenset(
    {"Lambda", "__lambda__", "TFSMLayer", "TorchModuleWrapper", "JaxLayer", "FlaxLayer", "ClassMethod",
     "InstanceMethod", "InstanceProperty"}
)  # fmt: skip
# tf_keras records ``tf.*`` calls in a functional model as these layers, naming the TensorFlow function to call.
TF_OP_LAYERS = frozenset({"TFOpLambda", "SlicingOpLambda"})
# Only pure tensor maths may be called that way: not ``io.write_file``, ``print`` or other side effects.
SAFE_TF_NAMESPACES = frozenset({"math", "nn", "__operators__", "image", "linalg", "signal", "bitwise", "dtypes"})
SAFE_TF_FUNCTIONS = frozenset(
    {"reshape", "concat", "stack", "unstack", "transpose", "expand_dims", "squeeze", "cast", "identity", "split",
     "pad", "tile", "gather", "gather_nd", "clip_by_value", "shape", "ones_like", "zeros_like", "where", "slice",
     "strided_slice", "broadcast_to", "reverse", "einsum", "matmul", "add", "multiply", "subtract", "divide",
     "maximum", "minimum", "reduce_mean", "reduce_sum", "reduce_max", "reduce_min", "abs", "sqrt", "square",
     "exp", "pow", "sigmoid", "tanh", "one_hot", "range", "argmax", "argmin", "rank", "size", "fill"}
)  # fmt: skip
# Keys under which a layer's config holds other layers (wrappers, RNN cells).
NESTED_LAYER_KEYS = frozenset({"layer", "forward_layer", "backward_layer", "cell"})
NESTED_LAYER_LIST_KEYS = frozenset({"layers", "cells"})


@dataclass(frozen=True)
class BuiltinNames:
    layers: frozenset[str]
    objects: frozenset[str]


def _top_level_names(source: Path) -> set[str]:
    """Classes defined at module level in ``source`` and the names they are also known by.

    Those names are exported names (``@keras_export("keras.layers.GroupQueryAttention")``), aliases
    (``Convolution2D = Conv2D``, also inside ``if`` blocks: ``GRUV1 = GRU``), imports under
    another name (``from ...gru_v1 import GRU as GRUV1``) and names registered with a string key
    (``LOCAL.ALL_OBJECTS["BatchNormalizationV1"] = ...`` in tf_keras's layer registry).
    """
    try:
        tree = ast.parse(source.read_bytes(), filename=str(source))
    except (SyntaxError, ValueError, OSError):
        return set()
    names = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):  # exported under another name: @keras_export("keras.layers.Name")
            for decorator in node.decorator_list:
                for constant in ast.walk(decorator):
                    if isinstance(constant, ast.Constant) and isinstance(constant.value, str):
                        package, _, exported = constant.value.rpartition(".")
                        if package.startswith("keras") and exported.isidentifier():
                            names.add(exported)
        elif isinstance(node, ast.ImportFrom):
            names |= {alias.asname for alias in node.names if alias.asname and alias.asname[:1].isupper()}
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Name) and node.value.id[:1].isupper():
            names |= {t.id for t in node.targets if isinstance(t, ast.Name) and t.id[:1].isupper()}
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Attribute | ast.Name)
            and getattr(node.value, "attr", getattr(node.value, "id", "")) == "ALL_OBJECTS"
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
            and node.slice.value.isidentifier()
        ):
            names.add(node.slice.value)
    return {name for name in names if name and not name.startswith("_")}


def _names_in(sources: dict[str, tuple[str, ...]]) -> set[str]:
    names: set[str] = set()
    for package, folders in sources.items():
        spec = importlib.util.find_spec(package)  # finds the package without importing it (nor TensorFlow)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(next(iter(spec.submodule_search_locations)))
        for folder in folders:
            for source in (root / folder).rglob("*.py"):
                if not source.name.endswith("_test.py"):
                    names |= _top_level_names(source)
    return names


@lru_cache(maxsize=1)
def builtin_names() -> BuiltinNames:
    """Every layer/model class and every config object class the installed Keras packages define."""
    layers = _names_in(LAYER_SOURCES)
    if not layers:
        raise InvalidInput(
            "Neither keras nor tf_keras is installed in this service, so a Keras model cannot be checked; "
            "install the ml extra (make install).",
            field="file",
        )
    return BuiltinNames(layers=frozenset(layers), objects=frozenset(_names_in(OBJECT_SOURCES) | layers))


# ------------------------------------------------------------------------------------------- reading configs


def _parse(blob: bytes | str, where: str) -> Any:
    try:
        return json.loads(blob)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"The model's architecture ({where}) is not valid JSON ({exc}).", field="file") from exc


def h5_config(path: Path) -> Any:
    """The ``model_config`` attribute of a legacy Keras HDF5 file, parsed; its size is checked before reading."""
    try:
        import h5py
    except ImportError as exc:  # fail closed: an unchecked architecture is never accepted
        raise InvalidInput(
            "h5py is not installed in this service, so an HDF5 model cannot be checked; install the ml extra.",
            field="file",
        ) from exc

    try:
        with h5py.File(path, "r") as handle:
            if "model_config" not in handle.attrs:
                raise InvalidInput(
                    f"{path.name} holds weights only (no model config); save the whole model with model.save().",
                    field="file",
                )
            if handle.attrs.get_id("model_config").get_storage_size() > MAX_CONFIG_BYTES:
                raise InvalidInput("The HDF5 file's model config is implausibly large.", field="file")
            blob = handle.attrs["model_config"]
    except OSError as exc:
        raise InvalidInput(f"{path.name} is not a readable HDF5 file ({exc}).", field="file") from exc
    if not isinstance(blob, bytes | str):
        raise InvalidInput("The HDF5 file's model config is not text.", field="file")
    return _parse(blob, "model_config of the HDF5 file")


def _read_bounded(archive: zipfile.ZipFile, name: str) -> bytes:
    info = archive.getinfo(name)
    if info.file_size > MAX_CONFIG_BYTES:
        raise InvalidInput(f"{name} in the archive is implausibly large.", field="file")
    with archive.open(info) as handle:
        return handle.read(MAX_CONFIG_BYTES + 1)[:MAX_CONFIG_BYTES]


def keras_zip_config(path: Path) -> Any:
    """``config.json`` of a Keras v3 (``.keras``) zip, parsed."""
    with zipfile.ZipFile(path) as archive:
        return _parse(_read_bounded(archive, "config.json"), "config.json")


def saved_metadata_configs(blob: bytes) -> list[Any]:
    """The JSON metadata of every node in a SavedModel's ``keras_metadata.pb``, parsed.

    The message (``SavedMetadata``: repeated ``SavedObject nodes = 1``, each with ``string metadata = 5``) is
    decoded with protobuf's own wire decoder as unknown fields of an empty message: the generated class lives in
    tf_keras, whose import would import TensorFlow.
    """
    from google.protobuf import empty_pb2
    from google.protobuf.message import DecodeError
    from google.protobuf.unknown_fields import UnknownFieldSet

    length_delimited = 2
    try:
        outer = empty_pb2.Empty.FromString(blob)
        configs = []
        for node in UnknownFieldSet(outer):
            if node.field_number != 1 or node.wire_type != length_delimited:
                continue
            inner = empty_pb2.Empty.FromString(node.data)
            for field in UnknownFieldSet(inner):
                if field.field_number == 5 and field.wire_type == length_delimited and field.data:
                    configs.append(_parse(field.data, "keras_metadata.pb"))
    except DecodeError as exc:
        raise InvalidInput(f"The SavedModel's keras_metadata.pb is damaged ({exc}).", field="file") from exc
    return configs


def saved_model_zip_configs(path: Path) -> list[Any]:
    """Keras metadata of every ``keras_metadata.pb`` in a zipped SavedModel ([] for a bare graph).

    All of them, not only the one beside the ``saved_model.pb`` the loader will pick: an archive holding a harmless
    copy next to a hostile one must not pass because the check looked at the other.
    """
    configs: list[Any] = []
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.filename.rsplit("/", 1)[-1] == "keras_metadata.pb":
                if info.file_size > MAX_CONFIG_BYTES:
                    raise InvalidInput(f"{info.filename} in the archive is implausibly large.", field="file")
                with archive.open(info) as handle:
                    configs.extend(saved_metadata_configs(handle.read(MAX_CONFIG_BYTES)))
    return configs


# --------------------------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class _Found:
    class_name: str
    layer_name: str | None
    is_layer: bool
    module: str | None
    registered_name: str | None
    config: Any


def _walk(root: Any) -> Iterator[_Found]:
    """Every object in the JSON tree that names a class; ``is_layer`` where Keras would build a layer from it."""
    stack: list[tuple[Any, bool]] = [(root, True)]
    while stack:
        value, is_layer = stack.pop()
        if isinstance(value, list):
            stack.extend((item, is_layer) for item in value)
            continue
        if not isinstance(value, dict):
            continue
        class_name = value.get("class_name")
        config = value.get("config")
        if class_name is not None:
            name = config.get("name") if isinstance(config, dict) else None
            yield _Found(
                str(class_name),
                str(name) if name is not None else value.get("name"),
                is_layer,
                value.get("module") if isinstance(value.get("module"), str) else None,
                value.get("registered_name") if isinstance(value.get("registered_name"), str) else None,
                config,
            )
        # A value is a layer where Keras builds one from it: the items of a model's ``layers``, a wrapper's
        # ``layer``, an RNN's ``cell``; everything else inside a layer (initializers, dtypes, tensors) is not.
        stack.extend((item, key in NESTED_LAYER_KEYS or key in NESTED_LAYER_LIST_KEYS) for key, item in value.items())


def _layer_label(found: _Found) -> str:
    return f"layer {found.layer_name!r} ({found.class_name})" if found.layer_name else f"a {found.class_name} layer"


def _tf_op_is_pure(config: Any) -> bool:
    function = config.get("function") if isinstance(config, dict) else None
    if not isinstance(function, str):
        return False
    head, _, rest = function.partition(".")
    return (head in SAFE_TF_NAMESPACES and bool(rest)) or function in SAFE_TF_FUNCTIONS


def _is_keras_module(module: str | None) -> bool:
    return module is None or module.split(".", 1)[0] in ("keras", "tf_keras", "builtins")


class NotBuiltIn(InvalidInput):
    """The config names a class or function Keras does not define: its code is not in the file, so the Keras model
    cannot be rebuilt without importing it. A SavedModel is then used as its serving graph instead (that graph
    needs none of that code); any other Keras file is refused."""


def _call_refs(node: Any, names: set[str]) -> list[tuple[str, int]]:
    """The (layer, call index) pairs a legacy node reads: its inputs, and tensors passed as keyword arguments."""
    refs: list[tuple[str, int]] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            if len(item) >= 3 and isinstance(item[0], str) and item[0] in names and isinstance(item[1], int):
                refs.append((item[0], item[1]))
                stack.extend(item[3:])  # a kwargs dict
            else:
                stack.extend(item)
    return refs


def _first_calls(layer: dict[str, Any]) -> tuple[int, ...]:
    """Where tf_keras starts numbering a layer's calls: 1 for a nested model that has a call of its own (built from an
    input), else 0; either for a Sequential (its first layer may declare its input shape in several ways) or a
    "Model" entry."""
    class_name = layer.get("class_name")
    if class_name == "Functional":
        return (1,)
    if class_name in ("Sequential", "Model"):  # "Model": a functional config, or a subclassed model's
        return (0, 1)
    return (0,)


def _stuck_call(entries: list[dict[str, Any]]) -> str | None:
    """Replay tf_keras's rebuild of one functional model's layer calls; the first layer left waiting, or None."""
    names = {str(layer.get("name")) for layer in entries}
    pending = {str(layer.get("name")): list(layer.get("inbound_nodes") or []) for layer in entries}
    starts = {str(layer.get("name")): _first_calls(layer) for layer in entries}
    inputs = {str(layer.get("name")) for layer in entries if layer.get("class_name") == "InputLayer"}
    made = dict.fromkeys(pending, 0)

    def ready(ref: tuple[str, int]) -> bool:
        name, index = ref
        return name in inputs or any(0 <= index - start < made[name] for start in starts[name])

    progress = True
    while progress and any(pending.values()):
        progress = False
        for name, nodes in pending.items():
            while nodes and all(ready(ref) for ref in _call_refs(nodes[0], names)):
                nodes.pop(0)
                made[name] += 1
                progress = True
    return next((name for name, nodes in pending.items() if nodes), None)


def legacy_graph_problem(model: Any) -> str | None:
    """The first layer of a tf_keras (legacy) functional config whose call can never be rebuilt, or None.

    tf_keras rebuilds a functional model by making each layer's calls once their inputs exist, re-queueing the rest
    with no end: a call on a layer or call that does not exist (or a loop) makes it spin forever. This replays that
    order on the config alone, for the model and every model nested in it.
    """
    for found in _walk(model):
        config = found.config if isinstance(found.config, dict) else {}
        layers = config.get("layers")
        if found.class_name == "Sequential" or not isinstance(layers, list) or "input_layers" not in config:
            continue
        entries = [layer for layer in layers if isinstance(layer, dict)]
        if any(not isinstance(node, list) for layer in entries for node in layer.get("inbound_nodes") or []):
            continue  # Keras 3 nodes: Keras 3 stops by itself on a graph it cannot rebuild
        stuck = _stuck_call(entries)
        if stuck is not None:
            return stuck
    return None


def check_config(config: Any, source: str, *, trust: bool) -> None:
    """Refuse (``InvalidInput``) a model config naming any class Keras does not define, or a layer carrying code.

    ``source`` names the file in messages; ``trust`` (EDGEOPT_TRUST_PICKLES) lets code-carrying built-in layers
    through, never unknown classes (their code is not in the file: loading them could only fail or import
    something).
    """
    if not isinstance(config, dict) or "class_name" not in config:
        raise InvalidInput(f"{source} describes no Keras model (its architecture has no class_name).", field="file")
    names = builtin_names()
    not_built_in: NotBuiltIn | None = None
    for found in _walk(config):
        label = _layer_label(found)
        if found.class_name in CODE_LAYERS or (found.class_name in TF_OP_LAYERS and not _tf_op_is_pure(found.config)):
            if trust:
                continue
            what = (
                f"calls the TensorFlow function {found.config.get('function')!r}"
                if found.class_name in TF_OP_LAYERS and isinstance(found.config, dict)
                else "runs Python code stored in the file (or loads code or files named in it)"
            )
            raise InvalidInput(
                f"{source} contains {label}, which {what}; EdgeOpt does not run code from uploads. Replace it with "
                f"built-in Keras layers and save the model again. {TRUST_HINT}",
                field="file",
            )
        if found.class_name in VALUE_MARKERS and not found.is_layer:
            if found.class_name == "function" and not _is_keras_module(found.module):
                not_built_in = not_built_in or NotBuiltIn(
                    f"{source} refers to the function {found.config!r} from module {found.module!r}, which is not "
                    "part of Keras; use a built-in activation or save the model without custom functions.",
                    field="file",
                )
            continue
        allowed = names.layers if found.is_layer else names.objects
        custom = found.class_name not in allowed or not _is_keras_module(found.module)
        if not found.is_layer and found.class_name in TF_INITIALIZERS.get(found.module or "", ()):
            custom = False
        if found.registered_name not in (None, found.class_name) and not found.registered_name.startswith("keras"):
            custom = True
        if custom:
            kind = label if found.is_layer else f"the object {found.class_name!r}"
            not_built_in = not_built_in or NotBuiltIn(
                f"{source} contains {kind}, which is not a built-in Keras "
                f"{'layer' if found.is_layer else 'class'}: its code is not part of Keras, and EdgeOpt never runs "
                "code from uploads. Rebuild the model from built-in Keras layers (keras.layers) and save it again.",
                field="file",
            )
    if not_built_in is not None:  # raised after the whole walk: a layer carrying code is refused whatever the order
        raise not_built_in
    stuck = legacy_graph_problem(config)
    if stuck is not None:
        raise InvalidInput(
            f"{source}'s layer graph cannot be rebuilt: layer {stuck!r} is called on the output of a layer call that "
            "does not exist (a damaged or hand-edited architecture). Save the model again from Keras.",
            field="file",
        )


def check_model_file(path: Path, kind: str, *, trust: bool) -> None:
    """Read the architecture of a Keras file of ``kind`` (``h5``, ``keras``, ``savedmodel_zip``) and check it.

    Code-carrying layers are refused in every kind; classes Keras does not define only in ``h5`` and ``keras``
    files (a SavedModel carrying them is loaded as its serving graph, see ``NotBuiltIn``).
    """
    path = Path(path)
    if kind in ("h5", "keras"):
        # A file can be a zip and an HDF5 file at once, and which one Keras reads depends on its name: check both.
        checked = False
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                has_config = "config.json" in archive.namelist()
            if has_config or kind == "keras":
                check_config(keras_zip_config(path), path.name, trust=trust)
                checked = True
        if kind == "h5" or _is_hdf5(path):
            check_config(h5_config(path), path.name, trust=trust)
            checked = True
        if not checked:
            raise InvalidInput(f"{path.name} holds no Keras model architecture.", field="file")
    elif kind == "savedmodel_zip":
        # A class Keras does not define is no refusal here: the loader uses the serving graph (op allow-list) instead.
        with contextlib.suppress(NotBuiltIn):
            check_saved_model_configs(saved_model_zip_configs(path), path.name, trust=trust)
    else:
        raise ValueError(f"not a Keras file kind: {kind}")


def _is_hdf5(path: Path) -> bool:
    from edgeopt.formats import has_hdf5_signature

    return has_hdf5_signature(path)


def check_saved_model_configs(configs: list[Any], source: str, *, trust: bool) -> None:
    """Every node of a SavedModel's Keras metadata: the model node with its layers, and each layer node."""
    not_built_in: NotBuiltIn | None = None
    for node in configs:
        if isinstance(node, dict) and "class_name" in node:
            try:
                check_config(node, source, trust=trust)
            except NotBuiltIn as exc:  # every node is still checked for layers carrying code
                not_built_in = not_built_in or exc
    if not_built_in is not None:
        raise not_built_in
