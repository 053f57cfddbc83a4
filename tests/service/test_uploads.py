"""Upload handling that needs no framework: refused content, size limit, datasets, and crash recovery on disk."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from edgeopt.service.app import create_app
from edgeopt.service.db.models import Experiment, ModelFile
from edgeopt.service.db.session import make_session_factory
from edgeopt.service.storage import TEMP_PREFIX, Storage, safe_stem
from edgeopt.settings import Settings

BOUNDARY = "edgeopt-test-boundary"


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def zip_of_text_files() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "not a model")
        archive.writestr("notes/more.txt", "still not a model")
    return buffer.getvalue()


BAD_MODEL_FILES: dict[str, Callable[[], bytes]] = {
    "random_bytes": lambda: np.random.default_rng(0).bytes(50_000),
    "png_image": png_bytes,
    "zip_of_text_files": zip_of_text_files,
    "hdf5_signature_then_garbage": lambda: b"\x89HDF\r\n\x1a\n" + b"\x00" * 4000,
    "pickle_opcode_then_garbage": lambda: b"\x80\x04" + b"junk" * 1000,
    "empty": lambda: b"",
}


def upload(client: TestClient, experiment_id: str, content: bytes, filename: str = "model.pt", kind: str = "upload"):
    return client.post(f"/api/experiments/{experiment_id}/{kind}", files={"file": (filename, content)})


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow"])
@pytest.mark.parametrize("bad", list(BAD_MODEL_FILES))
def test_content_that_is_not_a_model_is_refused(
    client: TestClient,
    new_experiment: Callable[..., dict[str, Any]],
    stored_files: Callable[[], list[Path]],
    framework: str,
    bad: str,
) -> None:
    experiment = new_experiment(framework=framework)
    response = upload(client, experiment["id"], BAD_MODEL_FILES[bad](), filename="model.pt2")
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["field"] == "file"
    expected = "torch.export archive" if framework == "pytorch" else "Keras v3 file (.keras)"
    assert expected in body["detail"]  # the message lists the formats accepted for this framework
    assert stored_files() == []
    assert client.get(f"/api/experiments/{experiment['id']}").json()["status"] == "created"


def test_upload_to_unknown_experiment_is_404(client: TestClient) -> None:
    response = upload(client, "0" * 32, b"whatever")
    assert response.status_code == 404
    assert "No experiment" in response.json()["detail"]


def test_upload_without_file_field_is_422(client: TestClient, new_experiment: Callable[..., dict[str, Any]]) -> None:
    experiment = new_experiment()
    response = client.post(f"/api/experiments/{experiment['id']}/upload", files={"other": ("a.pt", b"abc")})
    assert response.status_code == 422
    assert response.json()["field"] == "file"
    not_multipart = client.post(f"/api/experiments/{experiment['id']}/upload", content=b"raw")
    assert not_multipart.status_code == 422
    assert "multipart/form-data" in not_multipart.json()["detail"]


@pytest.fixture
def small_limit_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"max_upload_bytes": 10_000}))) as client:
        yield client


def _create(client: TestClient, framework: str = "pytorch") -> str:
    response = client.post("/api/experiments", json={"framework": framework, "dataset": "digits", "device": "rpi4"})
    return response.json()["id"]


def test_upload_over_limit_is_413_before_reading_the_body(
    small_limit_client: TestClient, stored_files: Callable[[], list[Path]]
) -> None:
    experiment_id = _create(small_limit_client)
    response = upload(small_limit_client, experiment_id, b"\x00" * 200_000)
    assert response.status_code == 413
    assert "EDGEOPT_MAX_UPLOAD_BYTES" in response.json()["detail"]
    assert stored_files() == []


def test_streamed_upload_over_limit_is_413_and_leaves_no_partial_file(
    small_limit_client: TestClient, stored_files: Callable[[], list[Path]]
) -> None:
    """Chunked body, no Content-Length: the limit is enforced while streaming and the partial file deleted."""
    experiment_id = _create(small_limit_client)
    sent: list[int] = []

    def body() -> Iterator[bytes]:
        yield (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.pt"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        for _ in range(50):
            sent.append(4096)
            yield b"\x01" * 4096
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    response = small_limit_client.post(
        f"/api/experiments/{experiment_id}/upload",
        content=body(),
        headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert response.status_code == 413
    assert stored_files() == []


def test_upload_refused_once_experiment_has_run(
    client: TestClient, new_experiment: Callable[..., dict[str, Any]], app: Any
) -> None:
    experiment = new_experiment()
    with make_session_factory(app.state.engine)() as session:
        row = session.get(Experiment, experiment["id"])
        assert row is not None
        row.status = "completed"
        session.commit()
    response = upload(client, experiment["id"], b"anything")
    assert response.status_code == 409
    assert "before it starts" in response.json()["detail"]


def _npz_dataset() -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        x_train=rng.random((40, 8, 8, 1), dtype=np.float32),
        y_train=np.arange(40) % 4,
        x_test=rng.random((12, 8, 8, 1), dtype=np.float32),
        y_test=np.arange(12) % 4,
    )
    return buffer.getvalue()


def test_custom_dataset_upload_is_stored_and_recorded(
    client: TestClient, new_experiment: Callable[..., dict[str, Any]], storage_dir: Path
) -> None:
    experiment = new_experiment()
    response = upload(client, experiment["id"], _npz_dataset(), filename="../my data.npz", kind="dataset")
    assert response.status_code == 200, response.text
    body = response.json()
    (record,) = body["files"]
    assert record["role"] == "dataset" and record["format"] == "npz"
    assert body["dataset"] == f"custom:{record['id']}"
    (stored,) = (storage_dir / "datasets" / experiment["id"]).iterdir()
    assert stored.name == f"{record['id']}-my_data.npz"
    assert body["status"] == "created"  # a dataset alone does not make the experiment ready: the model is missing


@pytest.mark.parametrize("content", [png_bytes(), b"x" * 100], ids=["png", "text"])
def test_dataset_that_is_not_an_archive_is_refused(
    client: TestClient,
    new_experiment: Callable[..., dict[str, Any]],
    stored_files: Callable[[], list[Path]],
    content: bytes,
) -> None:
    experiment = new_experiment()
    response = upload(client, experiment["id"], content, filename="data.zip", kind="dataset")
    assert response.status_code == 400
    assert ".npz" in response.json()["detail"]
    assert stored_files() == []
    assert client.get(f"/api/experiments/{experiment['id']}").json()["dataset"] == "digits"


def test_dataset_archive_the_loader_cannot_read_is_refused(
    client: TestClient,
    new_experiment: Callable[..., dict[str, Any]],
    stored_files: Callable[[], list[Path]],
) -> None:
    pytest.importorskip("edgeopt.data", reason="the engine's dataset loader validates archive content")
    experiment = new_experiment()
    response = upload(client, experiment["id"], zip_of_text_files(), filename="data.zip", kind="dataset")
    assert response.status_code == 400
    assert response.json()["field"] == "file"
    assert stored_files() == []


@pytest.mark.parametrize(
    ("filename", "stem"),
    [
        ("../../x.pt", "x"),
        ("..\\..\\evil.pth", "evil"),
        ("/etc/passwd", "passwd"),
        ("", "upload"),
        ("..", "upload"),
        ("my model (final).keras", "my_model_final"),
        (".hidden", "hidden"),
        ("a/b/c.tar.gz", "c.tar"),
    ],
)
def test_safe_stem(filename: str, stem: str) -> None:
    assert safe_stem(filename) == stem


def test_sweep_removes_crash_leftovers_and_keeps_everything_else(engine: Any, storage_dir: Path) -> None:
    """What a crash can leave behind, and what the start-up sweep does with each."""
    factory = make_session_factory(engine)
    storage = Storage(storage_dir)
    with factory() as session:
        kept = Experiment(framework="pytorch", dataset="digits", device="rpi4", goal="balanced", status="ready")
        lost = Experiment(framework="pytorch", dataset="digits", device="rpi4", goal="balanced", status="ready")
        session.add_all([kept, lost])
        session.flush()
        kept_dir = storage.area_dir("models", kept.id)
        lost_dir = storage.area_dir("models", lost.id)
        kept_dir.mkdir(parents=True)
        lost_dir.mkdir(parents=True)
        recorded = kept_dir / f"{'a' * 32}-model.pt2"
        recorded.write_bytes(b"model")
        session.add(
            ModelFile(
                id="a" * 32,
                experiment_id=kept.id,
                role="original",
                format="pt2",
                path=storage.relative(recorded),
                sha256="0" * 64,
                size_bytes=5,
            )
        )
        # The file of this row was lost: the row must go and the experiment needs a model again.
        session.add(
            ModelFile(
                id="b" * 32,
                experiment_id=lost.id,
                role="original",
                format="pt2",
                path=f"models/{lost.id}/{'b' * 32}-gone.pt2",
                sha256="0" * 64,
                size_bytes=5,
            )
        )
        session.commit()
        kept_id, lost_id = kept.id, lost.id

    unrecorded = kept_dir / f"{'c' * 32}-crashed-before-commit.pt"  # renamed into place, then the process died
    unrecorded.write_bytes(b"orphan")
    temp = kept_dir / f"{TEMP_PREFIX}deadbeef.part"  # the process died mid-upload
    temp.write_bytes(b"partial")
    artifact = kept_dir / "artifacts" / "ptq_int8.pte"  # the job runner's files are not the sweep's business
    artifact.parent.mkdir()
    artifact.write_bytes(b"artifact")
    foreign = kept_dir / "report.json"
    foreign.write_text("{}")
    deleted_experiment_dir = storage.area_dir("datasets", "d" * 32)  # its row was deleted, then the process died
    deleted_experiment_dir.mkdir(parents=True)
    (deleted_experiment_dir / "x.npz").write_bytes(b"x")

    report = storage.sweep(factory)

    assert recorded.exists() and artifact.exists() and foreign.exists()
    assert not unrecorded.exists() and not temp.exists() and not deleted_experiment_dir.exists()
    assert report.dangling_rows == [f"models/{lost_id}/{'b' * 32}-gone.pt2"]
    with factory() as session:
        assert {row.id for row in session.query(ModelFile)} == {"a" * 32}
        assert session.get(Experiment, lost_id).status == "created"  # type: ignore[union-attr]
        assert session.get(Experiment, kept_id).status == "ready"  # type: ignore[union-attr]


def test_app_start_runs_the_sweep(settings: Settings, storage_dir: Path) -> None:
    leftover = storage_dir / "models" / ("e" * 32) / f"{TEMP_PREFIX}1.part"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"partial")
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/health").status_code == 200
    assert not leftover.exists()
    assert os.listdir(storage_dir / "models") == []


@pytest.mark.parametrize(("change", "status"), [("delete", 404), ("start", 409)])
def test_experiment_changed_during_upload_keeps_nothing(
    client: TestClient,
    new_experiment: Callable[..., dict[str, Any]],
    stored_files: Callable[[], list[Path]],
    app: Any,
    monkeypatch: pytest.MonkeyPatch,
    change: str,
    status: int,
) -> None:
    """Deleted or started while its (long) upload was streaming: the finished file is dropped, not recorded."""
    import edgeopt.service.routes.experiments as routes

    experiment = new_experiment()

    def sniff_while_someone_else_acts(path: Path, framework: str, settings: Any) -> tuple[str, str]:
        with make_session_factory(app.state.engine)() as session:  # another request, meanwhile
            row = session.get(Experiment, experiment["id"])
            assert row is not None
            if change == "delete":
                session.delete(row)
            else:
                row.status = "queued"
            session.commit()
        return ".pt2", "pt2"  # stands in for the sniffer, which other tests cover with real files

    monkeypatch.setattr(routes.inspection, "model_format", sniff_while_someone_else_acts)
    response = upload(client, experiment["id"], b"model bytes")
    assert response.status_code == status
    assert stored_files() == []
    with make_session_factory(app.state.engine)() as session:
        assert session.query(ModelFile).count() == 0
