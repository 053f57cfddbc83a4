"""CIFAR-10/100: batches written as the authors ship them (pickled dicts with bytes keys) and read for real."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from edgeopt.data import load_dataset
from edgeopt.errors import InvalidInput
from edgeopt.settings import Settings


def dump(path: Path, obj: object, protocol: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        pickle.dump(obj, handle, protocol=protocol)


def batch(n: int, seed: int, label_keys: tuple[bytes, ...], num_classes: int) -> dict[bytes, object]:
    rng = np.random.default_rng(seed)
    out: dict[bytes, object] = {
        b"batch_label": b"training batch 1 of 5",
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    for key in label_keys:
        out[key] = [int(v) for v in np.arange(n) % num_classes]  # a list of ints, as in the real files
    return out


def write_cifar10(root: Path, protocol: int = 2) -> list[dict[bytes, object]]:
    folder = root / "cifar-10-batches-py"
    batches = [batch(20, i, (b"labels",), 10) for i in range(6)]
    for i in range(5):
        dump(folder / f"data_batch_{i + 1}", batches[i], protocol)
    dump(folder / "test_batch", batches[5], protocol)
    names = [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship")]
    dump(folder / "batches.meta", {b"label_names": [*names, b"truck"], b"num_cases_per_batch": 10000}, protocol)
    return batches


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEOPT_OFFLINE", "1")


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_batches_decode_to_nhwc(tmp_path: Path, protocol: int) -> None:
    batches = write_cifar10(tmp_path, protocol)
    data = load_dataset("cifar10", Settings(data_dir=tmp_path))
    assert data.x_train.shape == (100, 32, 32, 3) and data.x_test.shape == (20, 32, 32, 3)
    assert data.class_names[0] == "airplane" and data.class_names[9] == "truck"
    raw = batches[0][b"data"]
    # Row layout of the official files: 1024 red, then 1024 green, then 1024 blue values, each row-major.
    for row, col, channel in [(0, 0, 0), (5, 17, 1), (31, 31, 2)]:
        expected = raw[0, channel * 1024 + row * 32 + col] / np.float32(255)
        assert data.x_train[0, row, col, channel] == expected
    np.testing.assert_array_equal(data.y_train[:20], np.arange(20) % 10)


def test_numpy_1_module_names_of_the_official_files_load(tmp_path: Path) -> None:
    """The published batches name ``numpy.core.multiarray`` (numpy 1); numpy 2 writes ``numpy._core``."""
    batches = write_cifar10(tmp_path)
    target = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    raw = target.read_bytes()
    assert b"cnumpy._core.multiarray\n_reconstruct\n" in raw  # protocol 2 names globals as text lines
    target.write_bytes(raw.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))
    data = load_dataset("cifar10", Settings(data_dir=tmp_path))
    restored = np.rint(data.x_train[20:40].transpose(0, 3, 1, 2).reshape(20, -1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(restored, batches[1][b"data"])


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    keys = (b"fine_labels", b"coarse_labels")
    train, test = batch(300, 0, keys, 100), batch(100, 1, keys, 100)
    train[b"coarse_labels"] = [v % 20 for v in train[b"fine_labels"]]
    dump(folder / "train", train)
    dump(folder / "test", test)
    fine = [f"class_{i}".encode() for i in range(100)]
    dump(folder / "meta", {b"fine_label_names": fine, b"coarse_label_names": [b"c"] * 20})
    data = load_dataset("cifar100", Settings(data_dir=tmp_path), max_train=200)
    assert data.num_classes == 100 and data.class_names[42] == "class_42"
    assert data.info["labels"] == "fine_labels"
    assert len(data.y_train) == 200 and set(np.bincount(data.y_train).tolist()) == {2}
    assert data.y_test.max() == 99


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))

    marker = ""


def test_pickle_that_would_run_code_is_refused_and_not_executed(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    exploit = _Exploit()
    _Exploit.marker = str(marker)
    dump(tmp_path / "cifar-10-batches-py" / "data_batch_3", {b"data": exploit, b"labels": []})
    with pytest.raises(InvalidInput, match="refused global") as caught:
        load_dataset("cifar10", Settings(data_dir=tmp_path))
    assert "data_batch_3" in str(caught.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        ({b"data": np.zeros((20, 3000), dtype=np.uint8)}, "shape"),
        ({b"data": np.zeros((20, 3072), dtype=np.float32)}, "uint8"),
        ({b"labels": [1, 2, 3]}, "integer labels"),
        ({b"labels": [10] * 20}, "0..9"),
    ],
)
def test_malformed_batch_is_refused(tmp_path: Path, change: dict[bytes, object], phrase: str) -> None:
    batches = write_cifar10(tmp_path)
    dump(tmp_path / "cifar-10-batches-py" / "test_batch", {**batches[5], **change})
    with pytest.raises(InvalidInput, match=phrase):
        load_dataset("cifar10", Settings(data_dir=tmp_path))


def test_missing_key_and_missing_files(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    dump(tmp_path / "cifar-10-batches-py" / "batches.meta", {b"num_cases_per_batch": 10000})
    with pytest.raises(InvalidInput, match="label_names"):
        load_dataset("cifar10", Settings(data_dir=tmp_path))
    (tmp_path / "cifar-10-batches-py" / "data_batch_5").unlink()
    with pytest.raises(InvalidInput, match="data_batch_5") as caught:
        load_dataset("cifar10", Settings(data_dir=tmp_path))
    assert "cifar-10-batches-py" in str(caught.value)
