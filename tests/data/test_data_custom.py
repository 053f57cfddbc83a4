"""Custom datasets: real zips of PNG/JPEG class folders and real .npz files, every rejection rule included."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeopt.data import load_dataset
from edgeopt.data.custom import MAX_ZIP_ENTRIES, _Budget, load_custom
from edgeopt.errors import InvalidInput


def png(value: int, size: tuple[int, int] = (6, 5), mode: str = "L", fmt: str = "PNG") -> bytes:
    """An image of ``size`` (width, height) filled with ``value`` (a colour tuple for RGB)."""
    fill = value if mode == "L" else (value, 255 - value, 7)
    buffer = io.BytesIO()
    Image.new(mode, size, fill).save(buffer, format=fmt)
    return buffer.getvalue()


def write_zip(path: Path, entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def class_folders(prefix: str = "", per_class: int = 10, classes: tuple[str, ...] = ("cat", "dog")) -> dict:
    return {f"{prefix}{c}/{i:03d}.png": png(10 * k + i) for k, c in enumerate(classes) for i in range(per_class)}


def test_zip_of_class_folders_is_split_80_20_stratified(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "pets.zip", class_folders("pets/"))
    data = load_custom(path, seed=4)
    assert data.name == "pets" and data.class_names == ("cat", "dog") and data.num_classes == 2
    assert data.x_train.shape == (16, 5, 6, 1) and data.x_test.shape == (4, 5, 6, 1)
    assert data.x_train.dtype == np.float32
    assert np.bincount(data.y_test).tolist() == [2, 2]
    # Pixel values survive exactly: a dog image i holds 10 + i everywhere.
    values = set(np.round(data.x_test[data.y_test == 1][:, 0, 0, 0] * 255).astype(int).tolist())
    assert values <= set(range(10, 20))
    assert data.info["split"] == {"kind": "stratified", "test_size": 0.2, "random_state": 4}
    assert data.info["layout"] == "class folders" and len(data.info["sha256"]) == 64
    assert load_custom(path, seed=4).x_test.tobytes() == data.x_test.tobytes()


def test_train_and_test_folders_are_kept_as_given(tmp_path: Path) -> None:
    entries = {**class_folders("train/", 3), **class_folders("test/", 2)}
    data = load_dataset(write_zip(tmp_path / "given.zip", entries))
    assert len(data.y_train) == 6 and len(data.y_test) == 4
    assert data.info["split"]["kind"].startswith("given")


def test_colour_wins_greys_are_repeated_and_odd_sizes_resized(tmp_path: Path) -> None:
    entries = class_folders(per_class=4)
    entries["cat/rgb.png"] = png(200, mode="RGB")
    entries["dog/big.jpg"] = png(90, size=(12, 10), mode="RGB", fmt="JPEG")
    data = load_custom(write_zip(tmp_path / "mixed.zip", entries))
    assert data.image_shape == (5, 6, 3)
    assert data.info["channels"] == 3 and data.info["grey_to_rgb"] is True
    assert data.info["resized"]["count"] == 1 and data.info["resized"]["to"] == [5, 6]
    assert json.loads(json.dumps(data.info)) == data.info
    everything = np.concatenate([data.x_train, data.x_test])
    colour = everything[(everything[..., 0] != everything[..., 1]).any(axis=(1, 2))]
    assert len(colour) == 2  # the two RGB images; the greys have equal channels


def test_non_images_are_ignored_and_listed_os_junk_skipped(tmp_path: Path) -> None:
    entries = {**class_folders(), "README.txt": b"hello", "cat/notes.csv": b"a,b", "__MACOSX/cat/._000.png": b"x"}
    entries["cat/.DS_Store"] = b"junk"
    data = load_custom(write_zip(tmp_path / "extra.zip", entries))
    assert data.info["ignored_files"] == {"count": 2, "names": ["README.txt", "cat/notes.csv"]}
    assert len(data.y_train) + len(data.y_test) == 20


def patch_flag(raw: bytes, bit: int) -> bytes:
    """Set a general-purpose flag bit in every local and central header (what an encrypting zip tool writes)."""
    data = bytearray(raw)
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = data.find(signature)
        while start != -1:
            flags = struct.unpack_from("<H", data, start + offset)[0]
            struct.pack_into("<H", data, start + offset, flags | bit)
            start = data.find(signature, start + 4)
    return bytes(data)


def shrink_declared_sizes(raw: bytes) -> bytes:
    """Make every central-directory entry claim a 1-byte uncompressed size (a lying zip bomb)."""
    data = bytearray(raw)
    start = data.find(b"PK\x01\x02")
    while start != -1:
        struct.pack_into("<I", data, start + 24, 1)
        start = data.find(b"PK\x01\x02", start + 4)
    return bytes(data)


@pytest.mark.parametrize(
    ("entries", "phrase"),
    [
        ({**class_folders(), "/etc/cat/evil.png": png(1)}, "unsafe entry name '/etc/cat/evil.png'"),
        ({**class_folders(), "cat/../../evil.png": png(1)}, "unsafe entry name"),
        ({**class_folders(), "C:/cat/evil.png": png(1)}, "unsafe entry name"),
        (class_folders(classes=("cat",)), "At least 2 classes"),
        ({**class_folders(), "dog/broken.png": b"\x89PNG not really"}, "'dog/broken.png' cannot be decoded"),
        ({"x.txt": b"no images"}, "no .png, .jpg or .jpeg images"),
        ({**class_folders(), "dog/deeper/x.png": png(3)}, "not directly inside a class folder"),
        ({**class_folders("train/"), **class_folders("test/", classes=("cat", "emu"))}, "'emu'"),
        (class_folders(per_class=1), "smallest class has 1"),
    ],
)
def test_bad_zip_is_refused_naming_the_rule(tmp_path: Path, entries: dict, phrase: str) -> None:
    with pytest.raises(InvalidInput, match=phrase.replace("(", r"\(").replace(".", r"\.")):
        load_custom(write_zip(tmp_path / "bad.zip", entries))


def test_too_many_entries(tmp_path: Path) -> None:
    assert MAX_ZIP_ENTRIES == 200_000
    path = write_zip(tmp_path / "many.zip", class_folders(per_class=6))
    with pytest.raises(InvalidInput, match="12 entries; at most 11"):
        load_custom(path, max_entries=11)
    assert len(load_custom(path, max_entries=12).y_train) == 9


def test_declared_uncompressed_total_over_limit(tmp_path: Path) -> None:
    entries = {**class_folders(), "cat/zeros.png": png(0, size=(6, 5)), "pad.bin": bytes(100_000)}
    path = write_zip(tmp_path / "bomb.zip", entries)
    with pytest.raises(InvalidInput, match="declares .* bytes uncompressed, over the limit of 50000"):
        load_custom(path, max_uncompressed_bytes=50_000)


def test_actual_inflated_bytes_are_counted_while_reading(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "real.zip", {"a/x.png": png(1, size=(64, 64)), "b/y.png": png(2, size=(64, 64))})
    with zipfile.ZipFile(path) as archive:
        first, second = archive.infolist()
        budget = _Budget(first.file_size + 10)
        budget.read(archive, first)
        with pytest.raises(InvalidInput, match="zip bomb"):
            budget.read(archive, second)


def test_zip_lying_about_its_sizes_is_refused(tmp_path: Path) -> None:
    raw = (write_zip(tmp_path / "honest.zip", class_folders())).read_bytes()
    (tmp_path / "liar.zip").write_bytes(shrink_declared_sizes(raw))
    with pytest.raises(InvalidInput, match="cannot be read|cannot be decoded"):
        load_custom(tmp_path / "liar.zip")


def test_encrypted_entries_are_refused(tmp_path: Path) -> None:
    raw = write_zip(tmp_path / "plain.zip", class_folders(), zipfile.ZIP_STORED).read_bytes()
    (tmp_path / "locked.zip").write_bytes(patch_flag(raw, 0x1))
    with pytest.raises(InvalidInput, match="encrypted entry"):
        load_custom(tmp_path / "locked.zip")


def test_not_a_zip_and_wrong_suffix(tmp_path: Path) -> None:
    (tmp_path / "fake.zip").write_bytes(b"not a zip at all")
    with pytest.raises(InvalidInput, match="not a readable zip"):
        load_custom(tmp_path / "fake.zip")
    (tmp_path / "data.tar").write_bytes(b"x")
    with pytest.raises(InvalidInput, match=r"\.zip of class folders"):
        load_dataset(tmp_path / "data.tar")
    with pytest.raises(InvalidInput, match="Unknown dataset 'imagenet'"):
        load_dataset("imagenet")


# --- npz --------------------------------------------------------------------------------------------------------


def arrays(n_train: int = 12, n_test: int = 6, classes: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (n_train, 7, 9), dtype=np.uint8),
        "y_train": np.arange(n_train) % classes,
        "x_test": rng.integers(0, 256, (n_test, 7, 9), dtype=np.uint8),
        "y_test": np.arange(n_test) % classes,
    }


def save_npz(path: Path, **data: np.ndarray) -> Path:
    np.savez_compressed(path, **data)
    return path


def test_npz_uint8_greyscale_with_class_names(tmp_path: Path) -> None:
    data_in = arrays()
    path = save_npz(tmp_path / "set.npz", **data_in, class_names=np.array(["a", "b", "c"]))
    data = load_dataset(path, max_test=3)
    assert data.image_shape == (7, 9, 1) and data.class_names == ("a", "b", "c")
    np.testing.assert_array_equal(data.x_train[..., 0], data_in["x_train"] / np.float32(255))
    assert len(data.y_test) == 3 and data.info["subsample"]["max_test"] == 3
    assert json.loads(json.dumps(data.info)) == data.info


def test_npz_float_rgb_kept(tmp_path: Path) -> None:
    data_in = arrays()
    data_in["x_train"] = np.full((12, 4, 4, 3), 0.25, dtype=np.float64)
    data_in["x_test"] = np.full((6, 4, 4, 3), 0.5, dtype=np.float32)
    data = load_custom(save_npz(tmp_path / "rgb.npz", **data_in))
    assert data.image_shape == (4, 4, 3) and data.x_train.dtype == np.float32 and data.x_test.max() == 0.5


def _change(**updates: object) -> dict[str, np.ndarray]:
    data = arrays()
    for key, value in updates.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value  # type: ignore[assignment]
    return data


@pytest.mark.parametrize(
    ("data", "phrase"),
    [
        (_change(y_test=None), "lacks y_test"),
        (_change(y_train=np.arange(12) % 3 + 0.0), "integer class indices"),
        (_change(y_train=np.arange(12) % 3 - 1), r"Labels must lie in 0\.\.2"),
        (_change(y_test=np.arange(6) % 3 + 5), r"Classes \[3, 4, 5, 6, 7\] have no training example"),
        (_change(y_train=np.arange(11) % 3), "11 labels but the matching images array has 12"),
        (_change(y_train=np.zeros(12, dtype=np.int64), y_test=np.zeros(6, dtype=np.int64)), "At least 2 classes"),
        (_change(y_train=np.eye(3, dtype=np.int64)[np.arange(12) % 3]), "one-hot"),
        (_change(x_train=np.zeros((12, 3, 7, 9), dtype=np.uint8)), "channels-first"),
        (_change(x_train=np.full((12, 7, 9), 2.0)), r"outside \[0, 1\]"),
        (_change(x_train=np.full((12, 7, 9), np.nan)), "NaN"),
        (_change(x_train=np.full((12, 7, 9), 300)), "outside 0..255"),
        (_change(x_test=np.zeros((6, 8, 9), dtype=np.uint8)), "x_train images are"),
        (_change(y_train=np.array([0, 2] * 6)), r"Classes \[1\] have no training example"),
    ],
)
def test_bad_npz_is_refused_naming_the_rule(tmp_path: Path, data: dict[str, np.ndarray], phrase: str) -> None:
    with pytest.raises(InvalidInput, match=phrase):
        load_custom(save_npz(tmp_path / "bad.npz", **data))


def test_npz_with_class_names_out_of_range_and_object_arrays(tmp_path: Path) -> None:
    path = save_npz(tmp_path / "names.npz", **arrays(classes=3), class_names=np.array(["a", "b"]))
    with pytest.raises(InvalidInput, match=r"Labels must lie in 0\.\.1"):
        load_custom(path)
    objects = _change(y_train=np.array([0, 1, 2] * 4, dtype=object))
    with pytest.raises(InvalidInput, match="without unpickling"):
        load_custom(save_npz(tmp_path / "objects.npz", **objects))
