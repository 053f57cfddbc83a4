"""Uploading real Keras / TensorFlow files, apart from the PyTorch tests: TF must not load before torch._dynamo."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from edgeopt.errors import InvalidInput
from edgeopt.formats import detect_model_format


@pytest.fixture(scope="session")
def keras_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One real file per TensorFlow format, written by Keras / TensorFlow themselves."""
    keras = pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")
    folder = tmp_path_factory.mktemp("keras-files")
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    files = {"keras": folder / "model.keras", "h5": folder / "model.h5", "savedmodel_zip": folder / "saved.zip"}
    model.save(files["keras"])
    model.save(files["h5"])
    saved_dir = folder / "saved_model"
    tf.saved_model.save(model, str(saved_dir))
    with zipfile.ZipFile(files["savedmodel_zip"], "w") as archive:
        for path in saved_dir.rglob("*"):
            archive.write(path, Path("saved_model") / path.relative_to(saved_dir))
    weights_only = folder / "only.weights.h5"
    model.save_weights(weights_only)
    files["weights_h5"] = weights_only
    return files


@pytest.mark.parametrize("kind", ["keras", "h5", "savedmodel_zip"])
def test_detects_each_tensorflow_format(keras_files: dict[str, Path], kind: str) -> None:
    detected = detect_model_format(keras_files[kind])
    assert (detected.framework, detected.kind) == ("tensorflow", kind)


def test_weights_only_hdf5_is_not_a_model(keras_files: dict[str, Path]) -> None:
    with pytest.raises(InvalidInput, match="no Keras model architecture"):
        detect_model_format(keras_files["weights_h5"])


def _upload(client: TestClient, experiment_id: str, path: Path, filename: str | None = None) -> Any:
    with path.open("rb") as handle:
        return client.post(f"/api/experiments/{experiment_id}/upload", files={"file": (filename or path.name, handle)})


@pytest.mark.parametrize(("kind", "suffix"), [("keras", ".keras"), ("h5", ".h5"), ("savedmodel_zip", ".zip")])
def test_upload_each_tensorflow_format(
    client: TestClient,
    new_experiment: Callable[..., dict[str, Any]],
    storage_dir: Path,
    keras_files: dict[str, Path],
    kind: str,
    suffix: str,
) -> None:
    experiment = new_experiment(framework="tensorflow")
    # A misleading name: the stored file gets the suffix its real format needs (Keras insists on .keras).
    response = _upload(client, experiment["id"], keras_files[kind], filename="model.bin")
    assert response.status_code == 200, response.text
    assert response.json()["files"][0]["format"] == kind
    assert response.json()["status"] == "ready"
    (stored,) = (storage_dir / "models" / experiment["id"]).iterdir()
    assert stored.suffix == suffix


def test_truncated_keras_file_refused(
    client: TestClient,
    new_experiment: Callable[..., dict[str, Any]],
    stored_files: Callable[[], list[Path]],
    keras_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    data = keras_files["keras"].read_bytes()
    truncated = tmp_path / "cut.keras"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    experiment = new_experiment(framework="tensorflow")
    response = _upload(client, experiment["id"], truncated)
    assert response.status_code == 400
    assert "Keras v3 file (.keras)" in response.json()["detail"]
    assert stored_files() == []


def test_keras_file_refused_for_pytorch_experiment(
    client: TestClient, new_experiment: Callable[..., dict[str, Any]], keras_files: dict[str, Path]
) -> None:
    experiment = new_experiment(framework="pytorch")
    response = _upload(client, experiment["id"], keras_files["keras"])
    assert response.status_code == 400
    assert "tensorflow model" in response.json()["detail"]
    assert "torch.export archive" in response.json()["detail"]


# --- Code in a Keras file never runs: refused at upload and by the loader, whatever the JSON spelling -----------


def _lambda_h5(folder: Path, marker: Path, spelling: str) -> Path:
    """A tf_keras .h5 whose Lambda would create ``marker`` when loaded, its config re-spelled to dodge byte patterns."""
    import h5py

    tf_keras = pytest.importorskip("tf_keras")
    touch = eval(f"lambda t: (__import__('pathlib').Path({str(marker)!r}).touch(), t)[1]")  # noqa: S307 - the payload
    model = tf_keras.Sequential(
        [
            tf_keras.layers.InputLayer((8, 8, 1)),
            tf_keras.layers.Lambda(touch, name="payload"),
            tf_keras.layers.Flatten(),
        ]
    )
    path = folder / "lambda.h5"
    model.save(path)
    marker.unlink(missing_ok=True)  # building the model in this test ran the lambda once; the file must not again
    with h5py.File(path, "r+") as handle:
        config = handle.attrs["model_config"]
        config = config.decode() if isinstance(config, bytes) else config
        assert '"class_name": "Lambda"' in config
        handle.attrs["model_config"] = config.replace('"class_name": "Lambda"', spelling)
    return path


@pytest.mark.parametrize("spelling", ['"class_name" :"Lambda"', '"class_name": "Lambd\\u0061"'])
def test_lambda_h5_is_refused_at_upload_and_by_the_loader_and_never_runs(
    client: TestClient,
    new_experiment: Callable[..., dict[str, Any]],
    stored_files: Callable[[], list[Path]],
    tmp_path: Path,
    spelling: str,
) -> None:
    from edgeopt.frameworks import ModelSource
    from edgeopt.frameworks.tensorflow.io import load_tensorflow
    from edgeopt.settings import Settings

    marker = tmp_path / "payload-ran"
    path = _lambda_h5(tmp_path, marker, spelling)
    experiment = new_experiment(framework="tensorflow")
    response = _upload(client, experiment["id"], path)
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert "layer 'payload' (Lambda)" in detail and "EDGEOPT_TRUST_PICKLES=1" in detail
    assert stored_files() == []
    with pytest.raises(InvalidInput, match="Lambda"):
        load_tensorflow(ModelSource(path=path), 10, Settings(trust_pickles=False))
    assert not marker.exists()
    load_tensorflow(ModelSource(path=path), 10, Settings(trust_pickles=True))
    assert marker.exists()  # the payload is live: only the check above kept it from running


def test_custom_layer_class_is_refused_at_upload(
    client: TestClient, new_experiment: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    tf_keras = pytest.importorskip("tf_keras")

    class MyScale(tf_keras.layers.Layer):
        def call(self, inputs: Any) -> Any:
            return inputs * 2.0

    model = tf_keras.Sequential(
        [tf_keras.layers.InputLayer((8, 8, 1)), MyScale(name="scale"), tf_keras.layers.Flatten()]
    )
    path = tmp_path / "custom.h5"
    model.save(path)
    experiment = new_experiment(framework="tensorflow")
    response = _upload(client, experiment["id"], path)
    assert response.status_code == 400
    assert "layer 'scale' (MyScale)" in response.json()["detail"]
    assert "not a built-in Keras layer" in response.json()["detail"]


def test_lambda_savedmodel_refused_at_upload_and_by_the_loader_leaving_no_temp_folder(
    client: TestClient,
    new_experiment: Callable[..., dict[str, Any]],
    stored_files: Callable[[], list[Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tempfile

    from edgeopt.frameworks import ModelSource
    from edgeopt.frameworks.tensorflow.io import load_saved_model

    tf_keras = pytest.importorskip("tf_keras")
    model = tf_keras.Sequential(
        [tf_keras.layers.InputLayer((8, 8, 1)), tf_keras.layers.Lambda(lambda t: t * 2.0, name="double")]
    )
    model.save(tmp_path / "sm", save_format="tf")
    archive = tmp_path / "sm.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for file in (tmp_path / "sm").rglob("*"):
            handle.write(file, f"sm/{file.relative_to(tmp_path / 'sm')}")
    temp_root = tmp_path / "temp"
    temp_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp_root))
    experiment = new_experiment(framework="tensorflow")
    response = _upload(client, experiment["id"], archive)
    assert response.status_code == 400 and "layer 'double' (Lambda)" in response.json()["detail"]
    assert stored_files() == [] and list(temp_root.iterdir()) == []
    with pytest.raises(InvalidInput, match="Lambda"):
        load_saved_model(archive, ModelSource(path=archive), trust=False)
    assert list(temp_root.iterdir()) == []


def test_savedmodel_zip_bomb_refused_at_upload_and_by_the_loader_without_temp_folders(
    client: TestClient,
    new_experiment: Callable[..., dict[str, Any]],
    stored_files: Callable[[], list[Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tempfile

    from edgeopt.frameworks import ModelSource
    from edgeopt.frameworks.tensorflow.io import load_saved_model

    bomb = tmp_path / "bomb.zip"
    with (
        zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("m/saved_model.pb", "w") as entry,
    ):
        for _ in range(80):
            entry.write(b"\0" * 1024 * 1024)  # 80 MiB of zeros, a few dozen KiB zipped
    assert bomb.stat().st_size < 1024 * 1024
    temp_root = tmp_path / "temp"
    temp_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp_root))
    experiment = new_experiment(framework="tensorflow")
    response = _upload(client, experiment["id"], bomb)
    assert response.status_code == 400 and "zip bomb" in response.json()["detail"]
    assert stored_files() == [] and list(temp_root.iterdir()) == []
    with pytest.raises(InvalidInput, match="zip bomb"):
        load_saved_model(bomb, ModelSource(path=bomb), trust=False)
    assert list(temp_root.iterdir()) == []


def test_keras3_file_with_lambda_is_refused_at_upload(
    client: TestClient, new_experiment: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Lambda(lambda t: t * 2, name="double")])
    path = tmp_path / "k3.keras"
    model.save(path)
    experiment = new_experiment(framework="tensorflow")
    response = _upload(client, experiment["id"], path)
    assert response.status_code == 400
    assert "layer 'double' (Lambda)" in response.json()["detail"]
    assert client.get(f"/api/experiments/{experiment['id']}").json()["status"] == "created"
