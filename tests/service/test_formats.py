"""Content sniffing without a framework: archive safety and the messages of refused files."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgeopt.errors import InvalidInput
from edgeopt.formats import ACCEPTED_FORMATS, check_dataset_archive, detect_model_format


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name), data)
    return path


@pytest.mark.parametrize("entry", ["../evil.py", "model/../../evil", "/etc/cron.d/x", "C:/x", "\\\\server\\x"])
def test_archive_with_unsafe_entry_names_is_refused(tmp_path: Path, entry: str) -> None:
    archive = _zip(tmp_path / "m.keras", {"config.json": b"{}", "model.weights.h5": b"", entry: b"x"})
    with pytest.raises(InvalidInput, match="unsafe entry name") as refused:
        detect_model_format(archive)
    assert refused.value.status_code == 400
    with pytest.raises(InvalidInput, match="unsafe entry name"):
        check_dataset_archive(archive)


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ({"config.json": b"not json", "model.weights.h5": b"\x89HDF\r\n\x1a\n"}, "not valid JSON"),
        ({"config.json": b"[1, 2]", "model.weights.h5": b"\x89HDF\r\n\x1a\n"}, "describes no model"),
        ({"config.json": b'{"class_name": "Sequential"}', "model.weights.h5": b"text"}, "not an HDF5 file"),
    ],
)
def test_keras_lookalike_archives_are_refused(tmp_path: Path, entries: dict[str, bytes], reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        detect_model_format(_zip(tmp_path / "m.keras", entries), framework="tensorflow")


def test_zip_with_a_corrupt_entry_is_refused(tmp_path: Path) -> None:
    path = _zip(tmp_path / "m.keras", {"config.json": b"{" * 1000, "model.weights.h5": b"w" * 1000})
    data = bytearray(path.read_bytes())
    offset = data.index(b"{" * 100)
    data[offset : offset + 10] = b"}" * 10  # same length, wrong checksum
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidInput, match="fails its checksum"):
        detect_model_format(path, framework="tensorflow")


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow", None])
def test_refusal_lists_the_accepted_formats(tmp_path: Path, framework: str | None) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(InvalidInput) as refused:
        detect_model_format(path, framework=framework)
    expected = [ACCEPTED_FORMATS[framework]] if framework else list(ACCEPTED_FORMATS.values())
    assert all(text in str(refused.value) for text in expected)
    assert refused.value.field == "file"


def test_dataset_archive_kinds(tmp_path: Path) -> None:
    npz = tmp_path / "d.npz"
    np.savez(npz, x_train=np.zeros((2, 2)))
    assert check_dataset_archive(npz) == "npz"
    images = _zip(tmp_path / "d.zip", {"cats/1.png": b"png", "dogs/1.png": b"png"})
    assert check_dataset_archive(images) == "zip"
    empty = tmp_path / "empty.zip"
    zipfile.ZipFile(empty, "w").close()
    with pytest.raises(InvalidInput, match="empty"):
        check_dataset_archive(empty)
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    raw = tmp_path / "x.npy"
    raw.write_bytes(buffer.getvalue())
    with pytest.raises(InvalidInput, match=r"not a \.zip or \.npz"):
        check_dataset_archive(raw)


def test_archive_inflating_beyond_the_bound_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edgeopt.formats as formats

    monkeypatch.setattr(formats, "MAX_UNCOMPRESSED_BYTES", 1_000_000)  # the real bound (16 GiB) is slow to build
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", b"{}")
        archive.writestr("model.weights.h5", b"\0" * 5_000_000)
    assert path.stat().st_size < 50_000
    with pytest.raises(InvalidInput, match="would inflate"):
        detect_model_format(path)
    with pytest.raises(InvalidInput, match="would inflate"):
        check_dataset_archive(path)


# --- Keras architectures are parsed as JSON and every class checked (no TensorFlow needed) --------------------


def _sequential(*layers: dict[str, object]) -> dict[str, object]:
    return {"class_name": "Sequential", "config": {"name": "m", "layers": list(layers)}}


def _layer(class_name: str, name: str = "x", **config: object) -> dict[str, object]:
    return {"class_name": class_name, "config": {"name": name, **config}}


DENSE = _layer("Dense", "dense", units=10, kernel_initializer={"class_name": "GlorotUniform", "config": {}})


def test_builtin_keras_names_come_from_the_installed_packages() -> None:
    from edgeopt.keras_config import builtin_names

    names = builtin_names()
    assert {"Conv2D", "Dense", "BatchNormalization", "InputLayer", "Functional", "Sequential"} <= names.layers
    assert {"Convolution2D", "BatchNormalizationV1"} <= names.layers  # aliases tf_keras still reads
    assert {"GlorotUniform", "DTypePolicy"} <= names.objects
    assert "MyScale" not in names.objects


def test_plain_builtin_model_passes() -> None:
    from edgeopt.keras_config import check_config

    check_config(_sequential(_layer("InputLayer", "in"), _layer("Conv2D", "c", filters=4), DENSE), "m.h5", trust=False)


@pytest.mark.parametrize(
    "spelling",
    [
        '{"class_name": "Lambda"',
        '{"class_name" :"Lambda"',
        '{"class_name":"Lambd\\u0061"',
        '{"class_nam\\u0065": "Lambda"',
    ],
)
def test_lambda_is_found_however_the_json_spells_it(spelling: str) -> None:
    from edgeopt.keras_config import check_config

    text = json.dumps(_sequential(DENSE, _layer("Lambda", "double"))).replace('{"class_name": "Lambda"', spelling)
    assert spelling in text
    with pytest.raises(InvalidInput, match=r"layer 'double' \(Lambda\).*EDGEOPT_TRUST_PICKLES=1"):
        check_config(json.loads(text), "m.h5", trust=False)
    check_config(json.loads(text), "m.h5", trust=True)  # trusted files may carry code


def test_lambda_in_nested_models_and_wrappers_is_found() -> None:
    from edgeopt.keras_config import check_config

    nested = {"class_name": "Functional", "config": {"name": "inner", "layers": [DENSE, _layer("Lambda", "deep")]}}
    wrapped = _layer("TimeDistributed", "td", layer=_layer("Lambda", "wrapped"))
    rnn = _layer("RNN", "rnn", cell={"class_name": "StackedRNNCells", "config": {"cells": [_layer("Lambda", "cell")]}})
    for model, name in [
        (_sequential(DENSE, nested), "deep"),
        (_sequential(wrapped), "wrapped"),
        (_sequential(rnn), "cell"),
    ]:
        with pytest.raises(InvalidInput, match=f"'{name}' \\(Lambda\\)"):
            check_config(model, "m.keras", trust=False)


@pytest.mark.parametrize(
    "model",
    [
        _sequential(DENSE, _layer("MyScale", "scale")),
        _sequential({"module": "my_package.layers", "class_name": "Dense", "config": {"name": "fake"}}),
        _sequential({"class_name": "Dense", "registered_name": "Custom>Dense", "config": {"name": "fake"}}),
        _sequential(_layer("Dense", "d", kernel_initializer={"class_name": "MyInit", "config": {}})),
        _sequential(_layer("GlorotUniform", "not_a_layer")),
        {"class_name": "MyModel", "config": {"layers": []}},
    ],
    ids=["custom-layer", "foreign-module", "registered-custom", "custom-initializer", "non-layer-as-layer", "model"],
)
def test_classes_keras_does_not_define_are_refused_even_when_trusted(model: dict[str, object]) -> None:
    from edgeopt.keras_config import check_config

    with pytest.raises(InvalidInput, match="not a built-in Keras|not part of Keras"):
        check_config(model, "m.h5", trust=True)


def test_tf_op_layers_may_call_only_pure_tensor_functions() -> None:
    from edgeopt.keras_config import check_config

    check_config(_sequential(_layer("TFOpLambda", "div", function="math.truediv")), "m.h5", trust=False)
    with pytest.raises(InvalidInput, match="'io.write_file'"):
        check_config(_sequential(_layer("TFOpLambda", "w", function="io.write_file")), "m.h5", trust=False)


def _length_delimited(field: int, data: bytes) -> bytes:
    """One protobuf length-delimited field (enough of the wire format to write a test's keras_metadata.pb)."""
    size, varint = len(data), b""
    while True:
        byte, size = size & 0x7F, size >> 7
        varint += bytes([byte | (0x80 if size else 0)])
        if not size:
            return bytes([field << 3 | 2]) + varint + data


def _keras_metadata(*nodes: dict[str, object]) -> bytes:
    return b"".join(_length_delimited(1, _length_delimited(5, json.dumps(node).encode())) for node in nodes)


def test_every_keras_metadata_in_a_savedmodel_zip_is_checked(tmp_path: Path) -> None:
    from edgeopt.keras_config import check_model_file, saved_model_zip_configs

    harmless = _keras_metadata(_sequential(DENSE))
    hostile = _keras_metadata(_sequential(DENSE), _layer("Lambda", "hidden"))
    path = _zip(
        tmp_path / "sm.zip",
        {
            "a/saved_model.pb": b"",
            "a/keras_metadata.pb": harmless,
            "b/c/saved_model.pb": b"",
            "b/c/keras_metadata.pb": hostile,
        },
    )
    assert [node["class_name"] for node in saved_model_zip_configs(path)] == ["Sequential", "Sequential", "Lambda"]
    with pytest.raises(InvalidInput, match=r"'hidden' \(Lambda\)"):
        check_model_file(path, "savedmodel_zip", trust=False)


@pytest.mark.parametrize("order", ["custom class first", "lambda first"])
def test_a_savedmodel_with_a_custom_class_and_a_lambda_is_refused_whatever_the_order(
    tmp_path: Path, order: str
) -> None:
    """A class Keras does not define alone makes a SavedModel load as its graph; a layer carrying code still refuses
    it at upload, even when the custom class comes first in its metadata."""
    from edgeopt.keras_config import check_model_file

    custom, code = _layer("MyScale", "scale"), _layer("Lambda", "hidden")
    layers = (custom, code) if order == "custom class first" else (code, custom)
    path = _zip(
        tmp_path / "sm.zip", {"a/saved_model.pb": b"", "a/keras_metadata.pb": _keras_metadata(_sequential(*layers))}
    )
    with pytest.raises(InvalidInput, match=r"'hidden' \(Lambda\)"):
        check_model_file(path, "savedmodel_zip", trust=False)
    only_custom = _zip(
        tmp_path / "c.zip", {"a/saved_model.pb": b"", "a/keras_metadata.pb": _keras_metadata(_sequential(custom))}
    )
    check_model_file(only_custom, "savedmodel_zip", trust=False)  # no refusal: the loader uses the graph instead


def _functional(*layers: dict[str, object], output: str) -> dict[str, object]:
    return {
        "class_name": "Functional",
        "config": {
            "name": "m", "layers": list(layers), "input_layers": [["in", 0, 0]], "output_layers": [[output, 0, 0]]
        },  # fmt: skip
    }


def _called(class_name: str, name: str, *calls: tuple[str, int], **config: object) -> dict[str, object]:
    """A legacy (tf_keras) functional layer entry called once on each of ``calls`` (layer, call index)."""
    entry = _layer(class_name, name, **config)
    return {**entry, "name": name, "inbound_nodes": [[[layer, index, 0, {}]] for layer, index in calls]}


def test_a_layer_called_on_a_call_that_does_not_exist_is_refused_instead_of_hanging_keras() -> None:
    """tf_keras re-queues such a call forever while it rebuilds the model: the check replays the order first."""
    from edgeopt.keras_config import check_config

    inputs = {"class_name": "InputLayer", "name": "in", "config": {"name": "in"}, "inbound_nodes": []}
    good = _functional(inputs, _called("Dense", "a", ("in", 0), units=4), _called("Dense", "b", ("a", 0), units=2),
                       output="b")  # fmt: skip
    check_config(good, "m.h5", trust=False)
    dangling = _functional(inputs, _called("Dense", "a", ("in", 0), units=4), _called("Dense", "b", ("a", 3), units=2),
                           output="b")  # fmt: skip
    with pytest.raises(InvalidInput, match=r"layer 'b' is called on the output of a layer call that does not exist"):
        check_config(dangling, "m.h5", trust=False)
    loop = _functional(inputs, _called("Add", "a", ("in", 0), ("b", 0)), _called("Dense", "b", ("a", 0), units=2),
                       output="b")  # fmt: skip
    loop["config"]["layers"][1]["inbound_nodes"] = [[["in", 0, 0, {}], ["b", 0, 0, {}]]]  # a single call on both
    with pytest.raises(InvalidInput, match="cannot be rebuilt"):
        check_config(loop, "m.h5", trust=False)


def test_layers_of_keras_applications_and_tensorflow_initializers_are_built_in() -> None:
    """A stock ConvNeXt (LayerScale) and EfficientNetV2 (tf.constant_initializer) saved the usual way pass; a
    TensorFlow class that is not an initializer, or an initializer from another module, does not."""
    from edgeopt.keras_config import NotBuiltIn, check_config

    scale = {"module": "tf_keras.src.applications.convnext", "class_name": "LayerScale",
             "registered_name": "LayerScale",
             "config": {"name": "scale", "init_values": 1e-6, "projection_dim": 4}}  # fmt: skip
    constant = {"module": "tensorflow.python.ops.init_ops_v2", "class_name": "Constant", "config": {"value": 0},
                "registered_name": "Constant"}  # fmt: skip
    check_config(_sequential(_layer("Dense", "d", units=4, bias_initializer=constant), scale), "m.keras", trust=False)
    for bad in (
        {**constant, "class_name": "GFile", "registered_name": "GFile"},
        {**constant, "module": "tensorflow.python.platform.gfile"},
    ):
        with pytest.raises(NotBuiltIn):
            check_config(_sequential(_layer("Dense", "d", units=4, bias_initializer=bad)), "m.keras", trust=False)
