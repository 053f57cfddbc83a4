"""Uploading real PyTorch files: every accepted format is recognised from its bytes; unsafe or broken ones refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from edgeopt.formats import detect_model_format
from edgeopt.service.db.models import ModelFile
from edgeopt.service.db.session import make_session_factory

torch = pytest.importorskip("torch")


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.fc = torch.nn.Linear(4 * 6 * 6, 10)

    def forward(self, x: Any) -> Any:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


@pytest.fixture(scope="session")
def torch_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One real file per PyTorch format, written by the library that defines the format."""
    import warnings

    folder = tmp_path_factory.mktemp("torch-files")
    model = TinyNet().eval()
    example = (torch.randn(1, 1, 8, 8),)
    files = {
        "pt2": folder / "model.pt2",
        "torchscript": folder / "scripted.pt",
        "state_dict": folder / "weights.pt",
        "state_dict_legacy": folder / "legacy.pth",
        "checkpoint": folder / "checkpoint.ckpt",
        "pickle": folder / "whole.pt",
    }
    torch.export.save(torch.export.export(model, example), files["pt2"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, yet users still have such files
        torch.jit.save(torch.jit.trace(model, example), files["torchscript"])
    torch.save(model.state_dict(), files["state_dict"])
    torch.save(model.state_dict(), files["state_dict_legacy"], _use_new_zipfile_serialization=False)
    torch.save({"epoch": 3, "model_state_dict": model.state_dict()}, files["checkpoint"])
    torch.save(model, files["pickle"])
    return files


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("pt2", "pt2"),
        ("torchscript", "torchscript"),
        ("state_dict", "state_dict"),
        ("state_dict_legacy", "state_dict"),
        ("checkpoint", "state_dict"),
        ("pickle", "pickle"),
    ],
)
def test_detects_each_pytorch_format(torch_files: dict[str, Path], name: str, kind: str) -> None:
    detected = detect_model_format(torch_files[name])
    assert (detected.framework, detected.kind) == ("pytorch", kind)


def test_extension_is_not_trusted(torch_files: dict[str, Path], tmp_path: Path) -> None:
    disguised = tmp_path / "model.keras"
    disguised.write_bytes(torch_files["pt2"].read_bytes())
    assert detect_model_format(disguised).kind == "pt2"


def _upload(client: TestClient, experiment_id: str, path: Path, filename: str | None = None) -> Any:
    with path.open("rb") as handle:
        return client.post(f"/api/experiments/{experiment_id}/upload", files={"file": (filename or path.name, handle)})


@pytest.mark.parametrize(("name", "kind", "suffix"), [("pt2", "pt2", ".pt2"), ("torchscript", "torchscript", ".pt")])
def test_upload_valid_model_makes_experiment_ready(
    client: TestClient,
    new_experiment: Callable[..., dict[str, Any]],
    storage_dir: Path,
    torch_files: dict[str, Path],
    name: str,
    kind: str,
    suffix: str,
) -> None:
    import hashlib

    experiment = new_experiment()
    assert experiment["status"] == "created"
    source = torch_files[name]
    response = _upload(client, experiment["id"], source)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    (record,) = body["files"]
    assert record["role"] == "original"
    assert record["format"] == kind
    assert record["size_bytes"] == source.stat().st_size
    assert record["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert record["original_filename"] == source.name
    (stored,) = (storage_dir / "models" / experiment["id"]).iterdir()
    assert stored.suffix == suffix and stored.read_bytes() == source.read_bytes()
    assert client.get(f"/api/experiments/{experiment['id']}").json()["files"] == body["files"]


def test_reupload_replaces_the_previous_model(
    client: TestClient,
    new_experiment: Callable[..., dict[str, Any]],
    storage_dir: Path,
    torch_files: dict[str, Path],
) -> None:
    experiment = new_experiment()
    assert _upload(client, experiment["id"], torch_files["pt2"]).status_code == 200
    response = _upload(client, experiment["id"], torch_files["state_dict"])
    assert response.status_code == 200, response.text
    (record,) = response.json()["files"]
    assert record["format"] == "state_dict"
    (stored,) = (storage_dir / "models" / experiment["id"]).iterdir()
    assert stored.read_bytes() == torch_files["state_dict"].read_bytes()


@pytest.mark.parametrize("filename", ["../../x.pt", "..\\..\\x.pt", "/etc/passwd", "....//x.pt", "", ".."])
def test_client_filename_never_becomes_a_path(
    client: TestClient,
    new_experiment: Callable[..., dict[str, Any]],
    storage_dir: Path,
    tmp_path: Path,
    torch_files: dict[str, Path],
    filename: str,
) -> None:
    experiment = new_experiment()
    response = _upload(client, experiment["id"], torch_files["state_dict"], filename=filename)
    assert response.status_code == 200, response.text
    every_file = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".pt"]
    (stored,) = every_file
    assert stored.parent == storage_dir / "models" / experiment["id"]
    assert ".." not in stored.name and "/" not in stored.name
    assert not (storage_dir.parent / "x.pt").exists() and not (tmp_path.parent / "x.pt").exists()


def test_whole_module_pickle_refused_without_trust(
    client: TestClient,
    new_experiment: Callable[..., dict[str, Any]],
    stored_files: Callable[[], list[Path]],
    torch_files: dict[str, Path],
) -> None:
    experiment = new_experiment()
    response = _upload(client, experiment["id"], torch_files["pickle"])
    assert response.status_code == 400
    body = response.json()
    assert body["field"] == "file"
    assert "EDGEOPT_TRUST_PICKLES=1" in body["detail"] and "weights_only" in body["detail"]
    assert stored_files() == []
    assert client.get(f"/api/experiments/{experiment['id']}").json()["status"] == "created"


def test_whole_module_pickle_accepted_when_trusted(settings: Any, torch_files: dict[str, Path]) -> None:
    from edgeopt.service.app import create_app

    trusted = settings.model_copy(update={"trust_pickles": True})
    with TestClient(create_app(trusted)) as client:
        experiment = client.post(
            "/api/experiments", json={"framework": "pytorch", "dataset": "digits", "device": "rpi4"}
        )
        response = _upload(client, experiment.json()["id"], torch_files["pickle"])
    assert response.status_code == 200, response.text
    assert response.json()["files"][0]["format"] == "pickle"


def test_truncated_pytorch_file_refused(
    client: TestClient,
    new_experiment: Callable[..., dict[str, Any]],
    stored_files: Callable[[], list[Path]],
    torch_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    data = torch_files["state_dict"].read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    experiment = new_experiment()
    response = _upload(client, experiment["id"], truncated)
    assert response.status_code == 400
    assert "torch.export archive" in response.json()["detail"]  # says which formats are accepted
    assert stored_files() == []


def test_pytorch_file_refused_for_tensorflow_experiment(
    client: TestClient,
    new_experiment: Callable[..., dict[str, Any]],
    torch_files: dict[str, Path],
) -> None:
    experiment = new_experiment(framework="tensorflow")
    response = _upload(client, experiment["id"], torch_files["pt2"])
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "pytorch model" in detail and "Keras v3 file (.keras)" in detail


def test_commit_failure_leaves_no_file_and_no_row(
    app: Any,
    new_experiment: Callable[..., dict[str, Any]],
    stored_files: Callable[[], list[Path]],
    torch_files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failure at the commit (the file is already in place) must take the file away with the row."""
    from sqlalchemy.orm import Session

    experiment = new_experiment()

    def failing_commit(self: Session) -> None:
        raise RuntimeError("injected: database went away at commit")

    with TestClient(app, raise_server_exceptions=False) as client:
        monkeypatch.setattr(Session, "commit", failing_commit)
        response = _upload(client, experiment["id"], torch_files["pt2"])
        monkeypatch.undo()
        after = client.get(f"/api/experiments/{experiment['id']}").json()
    assert response.status_code == 500
    assert stored_files() == []
    assert after["files"] == [] and after["status"] == "created"
    with make_session_factory(app.state.engine)() as session:
        assert session.scalars(select(ModelFile)).all() == []


class _TouchOnUnpickle:
    """Pickles to a call of ``open(marker, "w")``: unpickling it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def _pt2_with_entry(source: Path, target: Path, suffix: str, payload: bytes) -> Path:
    """A copy of the .pt2 ``source`` with the entry ending in ``suffix`` replaced by ``payload``."""
    import zipfile

    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        replaced = False
        for info in original.infolist():
            if info.filename.endswith(suffix):
                copy.writestr(info, payload)
                replaced = True
            else:
                copy.writestr(info, original.read(info))
    assert replaced, f"no entry ending in {suffix}"
    return target


def test_pt2_whose_sample_inputs_run_code_is_refused_and_never_unpickled(
    client: TestClient,
    new_experiment: Callable[..., dict[str, Any]],
    stored_files: Callable[[], list[Path]],
    torch_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    import contextlib
    import io

    from edgeopt.errors import InvalidInput
    from edgeopt.frameworks import ModelSource
    from edgeopt.frameworks.pytorch.io import load_pytorch
    from edgeopt.settings import Settings

    marker = tmp_path / "payload-ran"
    buffer = io.BytesIO()
    torch.save(((_TouchOnUnpickle(marker),), {}), buffer)
    evil = _pt2_with_entry(torch_files["pt2"], tmp_path / "evil.pt2", "data/sample_inputs/model.pt", buffer.getvalue())

    experiment = new_experiment()
    response = _upload(client, experiment["id"], evil)
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert "data/sample_inputs/model.pt" in detail and "torch.export.save" in detail
    assert stored_files() == []
    for trust in (False, True):  # trusting pickles never extends to a .pt2's entries
        with pytest.raises(InvalidInput, match="safe loader refuses"):
            load_pytorch(ModelSource(path=evil), 10, Settings(trust_pickles=trust))
    assert not marker.exists()
    with contextlib.suppress(Exception):  # the opened file is no tensor: torch fails, but only after unpickling it
        torch.export.load(evil)  # what the check stands in front of: torch itself runs the payload
    assert marker.exists()


def test_pt2_with_pickled_weights_that_run_code_is_refused(torch_files: dict[str, Path], tmp_path: Path) -> None:
    """A weights config marking an entry ``use_pickle`` makes torch unpickle it without restriction."""
    import io
    import json
    import zipfile

    from edgeopt.errors import InvalidInput
    from edgeopt.pt2_archive import check_pt2_archive

    with zipfile.ZipFile(torch_files["pt2"]) as archive:
        config_name = next(n for n in archive.namelist() if n.endswith("_weights_config.json"))
        config = json.loads(archive.read(config_name))
    first = next(iter(config["config"].values()))
    first["use_pickle"] = True
    evil = _pt2_with_entry(torch_files["pt2"], tmp_path / "w.pt2", config_name, json.dumps(config).encode())
    buffer = io.BytesIO()
    torch.save(_TouchOnUnpickle(tmp_path / "ran"), buffer)
    evil = _pt2_with_entry(evil, tmp_path / "w2.pt2", f"data/weights/{first['path_name']}", buffer.getvalue())
    with pytest.raises(InvalidInput, match=first["path_name"]):
        check_pt2_archive(evil)
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("layout", ["two-top-level-folders", "repeated-entry"])
def test_pt2_laid_out_unlike_torch_export_save_is_refused(
    torch_files: dict[str, Path], tmp_path: Path, layout: str
) -> None:
    """Two copies of an entry: this check and torch's own zip reader must never read different ones."""
    import warnings
    import zipfile

    from edgeopt.errors import InvalidInput
    from edgeopt.pt2_archive import check_pt2_archive

    path = tmp_path / "odd.pt2"
    with zipfile.ZipFile(torch_files["pt2"]) as original, zipfile.ZipFile(path, "w") as copy, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate name, the point of the test
        for info in original.infolist():
            copy.writestr(info, original.read(info))
        extra = original.infolist()[0]
        name = extra.filename if layout == "repeated-entry" else "other/" + extra.filename.split("/", 1)[1]
        copy.writestr(name, original.read(extra))
    with pytest.raises(InvalidInput, match="one top-level folder"):
        check_pt2_archive(path)
