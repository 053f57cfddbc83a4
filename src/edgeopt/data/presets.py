"""The preset datasets: scikit-learn's bundled digits, and MNIST, Fashion-MNIST, CIFAR-10/100 in their standard files.

The big presets are read from ``settings.data_dir`` in the formats their authors publish (IDX, CIFAR python
batches), in our own folder names or torchvision's, so a directory torchvision already filled works as is. When the
files are missing a download through torchvision is tried only if the network answers within two seconds (never
when ``EDGEOPT_OFFLINE=1``); otherwise one ``InvalidInput`` names every expected file and the folder to put it in.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.data import cifar
from edgeopt.data.dataset import Dataset
from edgeopt.data.idx import read_idx
from edgeopt.data.split import make_dataset, train_test_indices
from edgeopt.errors import InvalidInput
from edgeopt.settings import Settings

DIGITS_TEST_FRACTION = 0.2
_ONLINE_PROBE = ("www.cs.toronto.edu", 443)  # hosts the CIFAR archives; torchvision's MNIST mirrors are on S3
_PROBE_TIMEOUT_S = 2.0
_DOWNLOAD_SOCKET_TIMEOUT_S = 30.0

_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_FASHION_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]  # x_tr, y_tr, x_te, y_te, names


@dataclass(frozen=True)
class _FileSet:
    """Where a preset's files live and how they are named, so look-up, download and the error share one truth."""

    folders: tuple[str, ...]  # relative to data_dir; the first is named in errors, torchvision's layout is among them
    files: tuple[str, ...]
    gz_allowed: bool
    torchvision_class: str

    def find(self, data_dir: Path) -> tuple[Path, dict[str, Path]] | None:
        """The first folder holding every file (plain or ``.gz``), with the path chosen for each."""
        for folder in self.folders:
            base = data_dir / folder
            found: dict[str, Path] = {}
            for name in self.files:
                options = (name, name + ".gz") if self.gz_allowed else (name,)
                hit = next((base / o for o in options if (base / o).is_file()), None)
                if hit is not None:
                    found[name] = hit
            if len(found) == len(self.files):
                return base, found
        return None

    def missing_message(self, preset: str, data_dir: Path, download_note: str) -> str:
        suffix = " (each may also be gzipped, ending in .gz)" if self.gz_allowed else ""
        others = " or ".join(str(data_dir / f) for f in self.folders[1:])
        return (
            f"Dataset '{preset}' is not available: put the files {', '.join(self.files)}{suffix} in the folder "
            f"{data_dir / self.folders[0]} (also accepted: {others}); set EDGEOPT_DATA_DIR to use another data "
            f"folder. Automatic download was not possible: {download_note}."
        )


@dataclass(frozen=True)
class _CifarLayout:
    """The file and key names of one CIFAR variant, as its authors publish them."""

    num_classes: int
    label_key: bytes
    train: tuple[str, ...]
    test: str
    meta: str
    names_key: bytes

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train, self.test, self.meta)


_CIFAR: dict[str, _CifarLayout] = {
    "cifar10": _CifarLayout(
        10, b"labels", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta", b"label_names"
    ),
    "cifar100": _CifarLayout(100, b"fine_labels", ("train",), "test", "meta", b"fine_label_names"),
}

_FILESETS: dict[str, _FileSet] = {
    "mnist": _FileSet(("mnist", "MNIST/raw"), _MNIST_FILES, True, "MNIST"),
    "fashion_mnist": _FileSet(("fashion_mnist", "FashionMNIST/raw"), _MNIST_FILES, True, "FashionMNIST"),
    "cifar10": _FileSet(
        ("cifar-10-batches-py", "cifar10/cifar-10-batches-py"), _CIFAR["cifar10"].files, False, "CIFAR10"
    ),
    "cifar100": _FileSet(
        ("cifar-100-python", "cifar100/cifar-100-python"), _CIFAR["cifar100"].files, False, "CIFAR100"
    ),
}


def _offline_reason() -> str | None:
    """Why a download must not be tried, or None when the network answers quickly."""
    if os.environ.get("EDGEOPT_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return "EDGEOPT_OFFLINE is set"
    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            socket.create_connection(_ONLINE_PROBE, timeout=_PROBE_TIMEOUT_S).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc)

    # getaddrinfo has no timeout of its own, so the probe runs in a daemon thread we stop waiting for.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(_PROBE_TIMEOUT_S + 0.5)
    if not outcome:
        return f"no answer from {_ONLINE_PROBE[0]} within {_PROBE_TIMEOUT_S:.0f} s (offline?)"
    if outcome[0] is not None:
        return f"cannot reach {_ONLINE_PROBE[0]} ({outcome[0]})"
    return None


def _download(fileset: _FileSet, data_dir: Path) -> str | None:
    """Fetch the files through torchvision into ``data_dir``; returns why it could not, or None on success.

    torchvision writes exactly the layouts ``_FileSet.folders`` lists (``MNIST/raw``, ``cifar-10-batches-py``).
    It is imported here only, so this package stays free of torch for the service that validates uploads.
    """
    reason = _offline_reason()
    if reason is not None:
        return reason
    try:
        import torchvision.datasets as tv_datasets
    except ImportError:
        return "torchvision is not installed"
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_SOCKET_TIMEOUT_S)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        loader = getattr(tv_datasets, fileset.torchvision_class)
        for train in (True, False):
            loader(root=str(data_dir), train=train, download=True)
    except Exception as exc:  # noqa: BLE001 - any network or archive failure ends in the same clear message
        return f"torchvision download failed ({type(exc).__name__}: {exc})"
    finally:
        socket.setdefaulttimeout(previous)
    return None


def _locate(preset: str, data_dir: Path) -> tuple[Path, dict[str, Path]]:
    fileset = _FILESETS[preset]
    located = fileset.find(data_dir)
    if located is None:
        note = _download(fileset, data_dir)
        located = fileset.find(data_dir) if note is None else None
        if located is None:
            raise InvalidInput(fileset.missing_message(preset, data_dir, note or "files still missing after it"))
    return located


def ensure_preset_files(name: str, settings: Settings) -> Path | None:
    """Fail fast (InvalidInput) when a preset's files are absent, without parsing them; returns their folder.

    For the service's "start" check: finding four files is instant where parsing all of MNIST is not.
    ``digits`` ships with scikit-learn and has no folder.
    """
    if name == "digits":
        return None
    if name not in _FILESETS:
        raise InvalidInput(f"Unknown preset dataset '{name}'; choose one of {', '.join(PRESET_NAMES)}.")
    folder, _ = _locate(name, Path(settings.data_dir).expanduser())
    return folder


def _read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise InvalidInput(f"{images_path} must hold uint8 images (N, H, W); it holds {images.dtype} {images.shape}.")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise InvalidInput(
            f"{labels_path} must hold one label per image of {images_path.name} ({images.shape[0]}); "
            f"it holds shape {labels.shape}."
        )
    if labels.size and int(labels.max()) > 9:
        raise InvalidInput(f"{labels_path}: labels must be 0..9, found {int(labels.max())}.")
    return images[..., None], labels.astype(np.int64)


def _idx_arrays(preset: str, data_dir: Path) -> tuple[Arrays, dict[str, Any]]:
    folder, files = _locate(preset, data_dir)
    x_train, y_train = _read_idx_pair(files["train-images-idx3-ubyte"], files["train-labels-idx1-ubyte"])
    x_test, y_test = _read_idx_pair(files["t10k-images-idx3-ubyte"], files["t10k-labels-idx1-ubyte"])
    names = _FASHION_NAMES if preset == "fashion_mnist" else tuple(str(d) for d in range(10))
    return (x_train, y_train, x_test, y_test, names), {"folder": str(folder), "files": [p.name for p in files.values()]}


def _cifar_arrays(preset: str, data_dir: Path) -> tuple[Arrays, dict[str, Any]]:
    folder, files = _locate(preset, data_dir)
    layout = _CIFAR[preset]
    parts = [cifar.read_batch(files[name], layout.label_key, layout.num_classes) for name in layout.train]
    x_test, y_test = cifar.read_batch(files[layout.test], layout.label_key, layout.num_classes)
    names = cifar.read_label_names(files[layout.meta], layout.names_key, layout.num_classes)
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    info = {"folder": str(folder), "files": [p.name for p in files.values()], "labels": layout.label_key.decode()}
    return (x_train, y_train, x_test, y_test, names), info


def _digits_arrays(seed: int) -> tuple[Arrays, dict[str, Any]]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[..., None]  # pixel values are counts 0..16
    labels = bunch.target.astype(np.int64)
    train, test = train_test_indices(labels, DIGITS_TEST_FRACTION, seed)
    info = {
        "source": "sklearn.datasets.load_digits (bundled with scikit-learn)",
        "split": {"kind": "stratified", "test_size": DIGITS_TEST_FRACTION, "random_state": seed},
    }
    names = tuple(str(d) for d in range(10))
    return (images[train], labels[train], images[test], labels[test], names), info


_READERS: dict[str, Callable[[str, Path], tuple[Arrays, dict[str, Any]]]] = {
    "mnist": _idx_arrays,
    "fashion_mnist": _idx_arrays,
    "cifar10": _cifar_arrays,
    "cifar100": _cifar_arrays,
}
PRESET_NAMES: tuple[str, ...] = ("digits", *_READERS)


def load_preset(
    name: str,
    settings: Settings,
    *,
    seed: int = 0,
    max_train: int | None = None,
    max_test: int | None = None,
) -> Dataset:
    """Load a preset by name; ``max_train``/``max_test`` keep a stratified, seeded subset (recorded in info)."""
    if name == "digits":
        (x_tr, y_tr, x_te, y_te, names), info = _digits_arrays(seed)
    elif name in _READERS:
        (x_tr, y_tr, x_te, y_te, names), info = _READERS[name](name, Path(settings.data_dir).expanduser())
        info = {"source": f"{name} standard files", **info, "split": {"kind": "official"}}
    else:
        raise InvalidInput(f"Unknown preset dataset '{name}'; choose one of {', '.join(PRESET_NAMES)}.")
    return make_dataset(
        name, (x_tr, y_tr), (x_te, y_te), names, info, seed=seed, max_train=max_train, max_test=max_test
    )
