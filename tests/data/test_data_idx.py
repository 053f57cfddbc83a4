"""MNIST / Fashion-MNIST: IDX files written byte by byte in the published format, read through the real loader."""

from __future__ import annotations

import gzip
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from edgeopt.data import load_dataset
from edgeopt.data.idx import read_idx
from edgeopt.errors import InvalidInput
from edgeopt.settings import Settings

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX as LeCun's page describes it: 0x0000, type 0x08 (ubyte), ndim, big-endian dims, then the data."""
    assert array.dtype == np.uint8
    return struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_mnist(folder: Path, n_train: int = 40, n_test: int = 20, *, gz: tuple[bool, ...] = (False,) * 4) -> dict:
    rng = np.random.default_rng(1)
    arrays = {
        NAMES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        NAMES[1]: (np.arange(n_train) % 10).astype(np.uint8),
        NAMES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        NAMES[3]: (np.arange(n_test) % 10).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for (name, array), zipped in zip(arrays.items(), gz, strict=True):
        data = idx_bytes(array)
        (folder / (name + ".gz")).write_bytes(gzip.compress(data)) if zipped else (folder / name).write_bytes(data)
    return arrays


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEOPT_OFFLINE", "1")


@pytest.mark.parametrize("gz", [(False,) * 4, (True,) * 4, (True, False, False, True)])
def test_mnist_from_idx_files_plain_and_gzipped(tmp_path: Path, gz: tuple[bool, ...]) -> None:
    arrays = write_mnist(tmp_path / "mnist", gz=gz)
    data = load_dataset("mnist", Settings(data_dir=tmp_path))
    assert data.x_train.shape == (40, 28, 28, 1) and data.x_test.shape == (20, 28, 28, 1)
    assert data.x_train.dtype == np.float32
    np.testing.assert_array_equal(data.x_train[..., 0], arrays[NAMES[0]] / np.float32(255))
    np.testing.assert_array_equal(data.y_test, arrays[NAMES[3]])
    assert data.y_train.dtype == np.int64 and data.num_classes == 10
    assert data.info["split"] == {"kind": "official"} and data.info["sizes"] == {"train": 40, "test": 20}


def test_fashion_mnist_in_torchvision_layout(tmp_path: Path) -> None:
    write_mnist(tmp_path / "FashionMNIST" / "raw", gz=(True,) * 4)
    data = load_dataset("fashion_mnist", Settings(data_dir=tmp_path))
    assert data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"
    assert data.info["folder"] == str(tmp_path / "FashionMNIST" / "raw")


def test_max_train_and_max_test_subsample_stratified_and_recorded(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist", n_train=200, n_test=100)
    data = load_dataset("mnist", Settings(data_dir=tmp_path), seed=3, max_train=50, max_test=30)
    assert len(data.y_train) == 50 and len(data.y_test) == 30
    assert np.bincount(data.y_train, minlength=10).tolist() == [5] * 10
    assert data.info["subsample"] == {"max_train": 50, "max_test": 30, "full_sizes": {"train": 200, "test": 100}}
    again = load_dataset("mnist", Settings(data_dir=tmp_path), seed=3, max_train=50, max_test=30)
    np.testing.assert_array_equal(data.x_train, again.x_train)


def test_missing_files_offline_fail_fast_with_every_expected_name(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / NAMES[3]).unlink()  # three of four present is still "absent"
    start = time.perf_counter()
    with pytest.raises(InvalidInput) as caught:
        load_dataset("mnist", Settings(data_dir=tmp_path))
    assert time.perf_counter() - start < 2.0
    message = str(caught.value)
    assert all(name in message for name in NAMES)
    assert str(tmp_path / "mnist") in message and "EDGEOPT_OFFLINE" in message


def test_read_idx_parses_header_dims_and_type(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.int32).reshape(2, 3, 4) - 5
    payload = struct.pack(">HBB", 0, 0x0C, 3) + struct.pack(">3I", 2, 3, 4) + array.astype(">i4").tobytes()
    (tmp_path / "ints").write_bytes(payload)
    np.testing.assert_array_equal(read_idx(tmp_path / "ints"), array)


@pytest.mark.parametrize(
    ("damage", "phrase"),
    [
        (lambda raw: raw[:-7], "corrupt"),
        (lambda raw: b"\x01\x02" + raw[2:], "not an IDX file"),
        (lambda raw: raw[:2] + b"\x42" + raw[3:], "not an IDX file"),
        (lambda raw: raw[:9], "truncated inside its header"),
        (lambda raw: gzip.compress(raw)[:-12], "damaged gzip"),
    ],
)
def test_corrupt_idx_is_refused_with_file_name(tmp_path: Path, damage, phrase: str) -> None:
    write_mnist(tmp_path / "mnist")
    target = tmp_path / "mnist" / NAMES[0]
    target.write_bytes(damage(target.read_bytes()))
    with pytest.raises(InvalidInput, match=phrase) as caught:
        load_dataset("mnist", Settings(data_dir=tmp_path))
    assert NAMES[0] in str(caught.value)


def test_label_count_must_match_images(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / NAMES[1]).write_bytes(idx_bytes(np.zeros(39, dtype=np.uint8)))
    with pytest.raises(InvalidInput, match="one label per image"):
        load_dataset("mnist", Settings(data_dir=tmp_path))


def test_without_offline_flag_an_unreachable_network_fails_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from edgeopt.data import presets

    monkeypatch.delenv("EDGEOPT_OFFLINE")
    monkeypatch.setattr(presets, "_ONLINE_PROBE", ("192.0.2.1", 9))  # TEST-NET-1: never routable (RFC 5737)
    already_loaded = "torchvision" in sys.modules
    start = time.perf_counter()
    with pytest.raises(
        InvalidInput, match=r"Automatic download was not possible: (no answer|cannot reach) 192\.0\.2\.1"
    ):
        load_dataset("fashion_mnist", Settings(data_dir=tmp_path))
    assert time.perf_counter() - start < 4.0
    assert already_loaded or "torchvision" not in sys.modules  # no download was attempted


def test_info_is_plain_json(tmp_path: Path) -> None:
    import json

    write_mnist(tmp_path / "mnist")
    data = load_dataset("mnist", Settings(data_dir=tmp_path), max_train=20)
    assert json.loads(json.dumps(data.info)) == data.info


def test_check_dataset_finds_files_without_parsing_them(tmp_path: Path) -> None:
    from edgeopt.data import check_dataset

    settings = Settings(data_dir=tmp_path)
    with pytest.raises(InvalidInput, match="not available"):
        check_dataset("mnist", settings)
    write_mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / NAMES[0]).write_bytes(b"garbage")  # present: the cheap check passes, a load does not
    check_dataset("mnist", settings)
    check_dataset("digits", settings)
    with pytest.raises(InvalidInput, match="corrupt|not an IDX"):
        load_dataset("mnist", settings)
