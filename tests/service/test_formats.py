"""Content sniffing without a framework: archive safety and the messages of refused files."""

from __future__ import annotations

import io
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
