"""Loading every TensorFlow model format EdgeOpt accepts, from real files, and every refusal rule."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from edgeopt.errors import InvalidInput
from edgeopt.frameworks import LoadedModel, ModelSource
from edgeopt.frameworks.tensorflow import keras_compat
from edgeopt.frameworks.tensorflow.io import keras_cache_dir, load_tensorflow, weights_file_name
from edgeopt.settings import Settings

SAFE = Settings(trust_pickles=False)
TRUSTING = Settings(trust_pickles=True)


def _load(path: Path, settings: Settings = SAFE, **source: Any) -> LoadedModel:
    return load_tensorflow(ModelSource(path=path, **source), 10, settings)


def _probe(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(1).random((3, *shape), dtype=np.float32)


def _keras3_residual() -> Any:
    """A Keras 3 Functional model with a residual Add and BatchNorm with non-trivial statistics."""
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    y = keras.layers.Conv2D(8, 1, activation="relu")(x)
    x = keras.layers.Add()([x, y])
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(x))
    bn = model.layers[2]
    gamma, beta, mean, var = bn.get_weights()
    bn.set_weights([gamma * 1.5, beta + 0.1, mean + 0.2, var * 2.0])
    return model


def _tf_keras_small(with_lambda: bool = False) -> Any:
    layers = [tf_keras.layers.InputLayer((8, 8, 1))]
    if with_lambda:
        layers.append(tf_keras.layers.Lambda(lambda t: t * 2.0))
    layers += [tf_keras.layers.Conv2D(4, 3), tf_keras.layers.Flatten(), tf_keras.layers.Dense(10)]
    return tf_keras.Sequential(layers)


def _zip_folder(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as handle:
        for file in folder.rglob("*"):
            handle.write(file, f"model/{file.relative_to(folder)}")
    return archive


def test_tf_keras_file_loads_as_tf_keras(keras_demo: LoadedModel) -> None:
    assert keras_compat.is_tf_keras_model(keras_demo.model)
    assert keras_demo.kind == "keras"
    assert keras_demo.input_shape == (32, 32, 1)
    assert keras_demo.num_classes == 10
    assert keras_demo.transformable


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras3_file_is_rebuilt_as_tf_keras_with_identical_outputs(tmp_path: Path, suffix: str) -> None:
    original = _keras3_residual()
    path = tmp_path / f"k3{suffix}"
    original.save(path)
    loaded = _load(path)
    assert keras_compat.is_tf_keras_model(loaded.model)
    assert "Keras 3" in loaded.info["note"]
    x = _probe((16, 16, 3))
    np.testing.assert_allclose(loaded.model(x, training=False), original(x, training=False), atol=1e-5)


def test_tf_keras_h5_loads(tmp_path: Path) -> None:
    model = _tf_keras_small()
    model.save(tmp_path / "m.h5")
    loaded = _load(tmp_path / "m.h5")
    x = _probe((8, 8, 1))
    np.testing.assert_allclose(loaded.model(x), model(x), atol=1e-6)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_layers_need_trust(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"lambda{suffix}"
    _tf_keras_small(with_lambda=True).save(path)
    with pytest.raises(InvalidInput, match="EDGEOPT_TRUST_PICKLES=1"):
        _load(path)
    assert _load(path, TRUSTING).num_classes == 10


def test_keras3_lambda_is_refused_then_kept_as_keras3_when_trusted(tmp_path: Path) -> None:
    import keras

    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Lambda(lambda t: t * 2), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    path = tmp_path / "k3_lambda.keras"
    model.save(path)
    with pytest.raises(InvalidInput, match="Lambda"):
        _load(path)
    loaded = _load(path, TRUSTING)
    assert keras_compat.is_keras3_model(loaded.model)
    assert loaded.info["keras"] == "keras3"


def test_savedmodel_with_keras_metadata_is_a_keras_model(tmp_path: Path) -> None:
    model = _tf_keras_small()
    model.save(tmp_path / "sm", save_format="tf")
    loaded = _load(_zip_folder(tmp_path / "sm", tmp_path / "sm.zip"))
    assert loaded.transformable and keras_compat.is_tf_keras_model(loaded.model)
    x = _probe((8, 8, 1))
    np.testing.assert_allclose(loaded.model(x), model(x), atol=1e-6)


def test_bare_savedmodel_is_measured_not_transformed(tmp_path: Path) -> None:
    model = _tf_keras_small()
    tf.saved_model.save(model, str(tmp_path / "raw"))
    loaded = _load(_zip_folder(tmp_path / "raw", tmp_path / "raw.zip"))
    assert not loaded.transformable
    assert "Keras metadata" in loaded.not_transformable_reason
    assert loaded.input_shape == (8, 8, 1) and loaded.num_classes == 10
    x = _probe((8, 8, 1))
    np.testing.assert_allclose(loaded.model(x), model(x), atol=1e-5)


def test_zip_with_parent_path_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("../saved_model.pb", b"x")
    with pytest.raises(InvalidInput, match="unsafe entry"):
        _load(archive)


@pytest.mark.parametrize("content", [b"not a model at all", b""])
def test_garbage_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "m.keras"
    path.write_bytes(content)
    with pytest.raises(InvalidInput):
        _load(path)


def test_truncated_keras_file_is_refused(tmp_path: Path, keras_demo_file: Path) -> None:
    path = tmp_path / "cut.keras"
    path.write_bytes(keras_demo_file.read_bytes()[:5000])
    with pytest.raises(InvalidInput):
        _load(path)


def test_weights_only_h5_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "w.weights.h5"
    _tf_keras_small().save_weights(path)
    with pytest.raises(InvalidInput):
        _load(path)


@pytest.mark.parametrize("arch", ["vgg16", "vgg19", "mobilenet_v2"])
def test_missing_pretrained_weights_name_the_file_and_folder(
    arch: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    expected = weights_file_name(arch, (32, 32))
    with pytest.raises(InvalidInput) as caught:
        load_tensorflow(ModelSource(arch=arch, input_size=(32, 32)), 10, SAFE)
    assert expected in str(caught.value) and str(tmp_path / "models") in str(caught.value)


def test_mobilenet_v2_takes_backbone_weights_from_the_keras_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    backbone = tf_keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    cached = keras_cache_dir() / weights_file_name("mobilenet_v2", (32, 32))
    cached.parent.mkdir(parents=True)
    backbone.save_weights(cached)
    loaded = load_tensorflow(ModelSource(arch="mobilenet_v2", input_size=(32, 32)), 7, SAFE)
    assert loaded.num_classes == 7 and loaded.input_shape == (32, 32, 3)
    assert str(cached) in loaded.info["weights"]
    first = next(layer for layer in loaded.model.layers if layer.weights)
    np.testing.assert_array_equal(first.get_weights()[0], backbone.get_layer(first.name).get_weights()[0])


def test_resnet18_needs_explicit_random_init_then_builds(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no ResNet-18"):
        load_tensorflow(ModelSource(arch="resnet18"), 10, SAFE)
    loaded = load_tensorflow(ModelSource(arch="resnet18", random_init=True), 10, SAFE)
    assert loaded.num_classes == 10
    assert 11_000_000 < loaded.model.count_params() < 11_300_000  # ResNet-18's 11.2 M with a 10-class head
    path = tmp_path / "r18.weights.h5"
    loaded.model.save_weights(path)
    again = load_tensorflow(ModelSource(arch="resnet18", path=path), 10, SAFE)
    x = _probe((32, 32, 3))
    np.testing.assert_allclose(again.model(x, training=False), loaded.model(x, training=False), atol=1e-5)


def test_unknown_architecture_is_refused() -> None:
    with pytest.raises(InvalidInput, match="choose one of"):
        load_tensorflow(ModelSource(arch="alexnet", random_init=True), 10, SAFE)


def test_keras_allow_list_read_from_source_covers_every_layer_keras_can_deserialize() -> None:
    """The upload check reads class names from the installed sources (no TensorFlow import): none may be missing."""
    import keras
    from tf_keras.src.layers import serialization

    from edgeopt.keras_config import CODE_LAYERS, builtin_names

    serialization.populate_deserializable_objects()
    # Private names (tf_keras's _RNNCellWrapper base) are never what a saved config names.
    tf_keras_layers = {name for name in serialization.LOCAL.ALL_OBJECTS if not name.startswith("_")}
    keras3_layers = {
        name for name, value in vars(keras.layers).items() if isinstance(value, type) and issubclass(value, keras.Layer)
    }
    assert tf_keras_layers - builtin_names().layers == set()
    # Keras 3 keeps the layers that wrap other frameworks' code outside its layers package: refused in any case.
    assert keras3_layers - builtin_names().layers - CODE_LAYERS == set()


def test_keras3_models_nested_in_a_model_are_rebuilt_with_their_calls_renumbered(tmp_path: Path) -> None:
    """Keras 3 numbers a nested model's calls from 0, tf_keras from 1 (its own call from the input comes first):
    left as they were, tf_keras waited forever for a call that never came."""
    import keras

    inputs = keras.Input((8, 8, 3))
    stem = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="stem_conv")], name="stem")
    inner_in = keras.Input((6, 6, 4))
    block = keras.Model(inner_in, keras.layers.Conv2D(4, 1, name="block_conv")(inner_in), name="block")
    x = keras.layers.GlobalAveragePooling2D()(block(stem(inputs)))
    original = keras.Model(inputs, keras.layers.Dense(10)(x))
    original.save(tmp_path / "nested.keras")
    loaded = _load(tmp_path / "nested.keras")
    assert keras_compat.is_tf_keras_model(loaded.model), loaded.info
    x = _probe((8, 8, 3))
    np.testing.assert_allclose(loaded.model(x, training=False), original(x, training=False), atol=1e-5)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_layers_and_initializers_of_keras_applications_load(tmp_path: Path, suffix: str) -> None:
    """ConvNeXt's LayerScale (a layer keras.applications defines) and EfficientNetV2's tf.constant_initializer, as
    a stock model saved the usual way carries them."""
    from tf_keras.src.applications.convnext import LayerScale

    inputs = tf_keras.Input((8, 8, 3))
    x = tf_keras.layers.Conv2D(4, 3, bias_initializer=tf.constant_initializer(0.5))(inputs)
    x = LayerScale(0.5, 4, name="scale")(x)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(10)(tf_keras.layers.GlobalAveragePooling2D()(x)))
    model.save(tmp_path / f"apps{suffix}")
    loaded = _load(tmp_path / f"apps{suffix}")
    x = _probe((8, 8, 3))
    np.testing.assert_allclose(loaded.model(x, training=False), model(x, training=False), atol=1e-6)


def test_a_keras3_hard_silu_is_rebuilt_as_tf_keras(tmp_path: Path) -> None:
    """Keras 3 MobileNetV3 uses hard_silu, which tf_keras has no name for: the model stayed Keras 3, and every
    technique that needs tf_keras skipped. The rebuilt model computes the same outputs."""
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="hard_silu")(inputs)
    x = keras.layers.Activation("hard_swish")(keras.layers.Conv2D(4, 1)(x))
    original = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x)))
    original.save(tmp_path / "hard.keras")
    loaded = _load(tmp_path / "hard.keras")
    assert keras_compat.is_tf_keras_model(loaded.model), loaded.info
    x = _probe((8, 8, 3)) * 8.0 - 4.0  # both sides of the -3 and 3 knees
    np.testing.assert_allclose(loaded.model(x, training=False), original(x, training=False), atol=1e-5)
    rebuilt = tf_keras.Model.from_config(loaded.model.get_config())  # as pruning and cloning rebuild it
    assert rebuilt.output_shape == (None, 10)



def test_a_download_naming_hard_silu_says_how_to_load_it_without_edgeopt(tmp_path: Path) -> None:
    """The rebuilt model's ``.keras`` names EdgeOpt's registered hard_silu; the result's notes give the
    ``custom_objects`` that load it in a Python that never imported EdgeOpt (checked in one), and stay silent for a
    model without it."""
    import json
    import subprocess
    import sys

    import keras

    from edgeopt.frameworks.tensorflow.convert import keras_download_note, save_keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="hard_silu")(inputs)
    keras.Model(inputs, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x))).save(tmp_path / "h.keras")
    model = _load(tmp_path / "h.keras").model
    note = keras_download_note(model)
    name = keras_compat.registered_name(keras_compat.hard_silu)
    assert f'custom_objects={{"{name}": hard_silu}}' in note
    path = save_keras(model, tmp_path / "download.keras")
    probe = _probe((8, 8, 3))
    np.save(tmp_path / "probe.npy", probe)
    script = f"""
import json, sys
import numpy as np, tensorflow as tf, tf_keras
assert "edgeopt" not in sys.modules
def hard_silu(x):
    return x * tf.nn.relu6(x + 3.0) / 6.0
try:
    tf_keras.models.load_model({str(path)!r})
    bare = "loaded"
except Exception as exc:
    bare = type(exc).__name__
model = tf_keras.models.load_model({str(path)!r}, custom_objects={{{name!r}: hard_silu}})
print(json.dumps({{"bare": bare, "out": model(np.load({str(tmp_path / "probe.npy")!r})).numpy().tolist()}}))
"""
    env = {"TF_USE_LEGACY_KERAS": "1", "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["bare"] != "loaded"  # without the note's advice the download does not load
    np.testing.assert_allclose(result["out"], model(probe, training=False), atol=1e-5)
    plain = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(2, activation="relu")])
    assert keras_download_note(plain) == ""

def test_keras3_arithmetic_with_a_number_is_rebuilt_as_tf_keras(tmp_path: Path) -> None:
    """Keras 3 records ``x + 3.0`` and ``x * (1 / 6)`` on a Keras tensor as Add / Multiply operations called on a
    tensor and a number (MobileNetV3's hard sigmoid); tf_keras records them as TensorFlow operators."""
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    gate = keras.layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)
    x = keras.layers.Multiply()([x, gate]) - 0.5
    original = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x)))
    original.save(tmp_path / "ops.keras")
    loaded = _load(tmp_path / "ops.keras")
    assert keras_compat.is_tf_keras_model(loaded.model), loaded.info
    x = _probe((8, 8, 3))
    np.testing.assert_allclose(loaded.model(x, training=False), original(x, training=False), atol=1e-5)
