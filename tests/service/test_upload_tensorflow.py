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
