"""Reader for the CIFAR-10 / CIFAR-100 "python version" batches.

The official files are Python pickles of dicts holding a uint8 numpy array and lists. ``pickle.load`` on a file
can run any code its author chose, and a file under the data directory may have come from anywhere, so they are
read with an Unpickler that resolves only the handful of globals a numpy array needs to rebuild itself
(``_reconstruct``/``_frombuffer``, ``ndarray``, ``dtype`` and ``_codecs.encode`` for protocol-2 bytes). Anything
else (``os.system``, ``builtins.eval``, a class of some package) is refused before it is called.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.errors import InvalidInput

_IMAGE_SIDE = 32
_PIXELS = 3 * _IMAGE_SIDE * _IMAGE_SIDE


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """What protocol-2 pickles written by Python 3 call to rebuild bytes; any other codec is refused."""
    if encoding != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _numpy_globals() -> dict[tuple[str, str], Callable[..., Any]]:
    from numpy._core import multiarray, numeric

    reconstruct = multiarray._reconstruct
    allowed: dict[tuple[str, str], Callable[..., Any]] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
        ("numpy._core.numeric", "_frombuffer"): numeric._frombuffer,
        ("numpy.core.numeric", "_frombuffer"): numeric._frombuffer,
    }
    # The real CIFAR files (numpy 1) name numpy.core; numpy 2 writes numpy._core. Both map to the same function.
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = reconstruct
    return allowed


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and plain containers, and nothing that executes code."""

    _allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Callable[..., Any]:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None


def load_pickle(path: Path) -> dict[bytes, Any]:
    """Load one CIFAR batch file as a dict with bytes keys (the files were written by Python 2)."""
    try:
        with path.open("rb") as handle:
            obj = _NumpyOnlyUnpickler(io.BufferedReader(handle), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise InvalidInput(
            f"{path} is not a CIFAR python batch ({exc}); only pickles of numpy arrays and lists are read. "
            "Download the official 'python version' archive again."
        ) from exc
    if not isinstance(obj, dict):
        raise InvalidInput(f"{path} is not a CIFAR python batch: it holds a {type(obj).__name__}, not a dict.")
    return {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}


def _field(batch: dict[bytes, Any], key: bytes, path: Path) -> Any:
    if key not in batch:
        raise InvalidInput(f"{path} is not a CIFAR batch of this kind: key {key!r} is missing.")
    return batch[key]


def read_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 NHWC, labels int64) from one batch file, validated against the real layout."""
    batch = load_pickle(path)
    data = _field(batch, b"data", path)
    labels = np.asarray(_field(batch, label_key, path))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        shape = getattr(data, "shape", None)
        raise InvalidInput(f"{path}: b'data' must be a uint8 array of shape (N, {_PIXELS}), found {shape}.")
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or labels.dtype.kind not in "iu":
        raise InvalidInput(
            f"{path}: {label_key!r} must be {data.shape[0]} integer labels, found shape {labels.shape} "
            f"of {labels.dtype}."
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise InvalidInput(f"{path}: labels must lie in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}.")
    images = data.reshape(-1, 3, _IMAGE_SIDE, _IMAGE_SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def read_label_names(path: Path, key: bytes, num_classes: int) -> tuple[str, ...]:
    """Class names from the ``meta`` / ``batches.meta`` file; a wrong count means the folder is mixed up."""
    names = _field(load_pickle(path), key, path)
    if not isinstance(names, list) or len(names) != num_classes:
        raise InvalidInput(f"{path}: {key!r} must list {num_classes} class names.")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
