"""Custom datasets a user uploads: a zip of class folders (ImageFolder layout) or an ``.npz`` of arrays.

Uploads are untrusted, so the archive is checked before anything is decompressed (entry count, entry names,
encryption, declared sizes) and the bytes actually inflated are counted while reading, which stops a zip bomb that
lies about its sizes. Nothing is ever extracted to disk and ``.npz`` files are read with ``allow_pickle=False``.

Zip layout: ``[<root>/]<class>/<image>`` or ``[<root>/]train|test/<class>/<image>``; images are PNG or JPEG
(``.png``, ``.jpg``, ``.jpeg``). Decision on other files: they are ignored, not rejected (a README or a labels.csv
next to the folders is common and harmless); their names are listed in ``info["ignored_files"]``. OS metadata
(``__MACOSX/``, dot files, ``Thumbs.db``) is skipped silently. Without train/test folders the images are split
80/20, stratified and seeded.
"""

from __future__ import annotations

import io
import re
import warnings
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgeopt.data.adapt import RESIZE_METHOD, resize_images
from edgeopt.data.dataset import Dataset
from edgeopt.data.split import make_dataset, train_test_indices
from edgeopt.errors import InvalidInput
from edgeopt.measure import file_sha256

MAX_ZIP_ENTRIES = 200_000
DEFAULT_MAX_UNCOMPRESSED_BYTES = 4 * 10**9  # 4 GB; overridable per call
TEST_FRACTION = 0.2
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
_SPLIT_FOLDERS = ("train", "test")
_OS_JUNK = frozenset({"thumbs.db", "desktop.ini"})
_GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_WIDE_INT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_CHUNK = 1 << 20
_LISTED_IGNORED = 20


def load_custom(
    path: str | Path,
    *,
    seed: int = 0,
    max_train: int | None = None,
    max_test: int | None = None,
    max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES,
    max_entries: int = MAX_ZIP_ENTRIES,
) -> Dataset:
    """Load and validate a custom dataset file; every refusal is an ``InvalidInput`` naming the broken rule."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"Dataset file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix not in {".zip", ".npz"}:
        raise InvalidInput(
            f"Dataset file {path.name} must be a .zip of class folders of images or an .npz with "
            "x_train, y_train, x_test, y_test."
        )
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInput(f"{path.name} is not a readable zip archive ({exc}).") from exc
    with archive:
        entries = _checked_entries(archive, path.name, max_uncompressed_bytes, max_entries)
        if suffix == ".npz":
            train, test, names, info = _read_npz(path)
        else:
            train, test, names, info = _read_image_zip(archive, entries, _Budget(max_uncompressed_bytes), seed)
    info = {"source": f"custom {suffix[1:]}", "file": path.name, "sha256": file_sha256(path), **info}
    return make_dataset(path.stem, train, test, names, info, seed=seed, max_train=max_train, max_test=max_test)




# --- archive safety ---------------------------------------------------------------------------------------------


def _unsafe_name(name: str) -> bool:
    parts = re.split(r"[\\/]", name)
    return name.startswith(("/", "\\")) or bool(re.match(r"^[A-Za-z]:", name)) or ".." in parts


def _checked_entries(archive: zipfile.ZipFile, label: str, max_bytes: int, max_entries: int) -> list[zipfile.ZipInfo]:
    """Refuse the archive on its directory alone: too many entries, unsafe names, encryption, declared size."""
    infos = archive.infolist()
    if len(infos) > max_entries:
        raise InvalidInput(f"{label} has {len(infos)} entries; at most {max_entries} are accepted.")
    declared = 0
    for info in infos:
        if _unsafe_name(info.filename):
            raise InvalidInput(
                f"{label} contains an unsafe entry name '{info.filename}': absolute paths and '..' are refused."
            )
        if info.flag_bits & 0x1:
            raise InvalidInput(f"{label} contains an encrypted entry '{info.filename}'; upload an unencrypted zip.")
        declared += info.file_size
    if declared > max_bytes:
        raise InvalidInput(
            f"{label} declares {declared} bytes uncompressed, over the limit of {max_bytes} bytes; "
            "upload a smaller dataset."
        )
    return infos


@dataclass
class _Budget:
    """Bytes still allowed to come out of the decompressor, across all entries."""

    remaining: int

    def read(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
        chunks: list[bytes] = []
        try:
            with archive.open(info) as handle:
                while chunk := handle.read(_CHUNK):
                    self.remaining -= len(chunk)
                    if self.remaining < 0:
                        raise InvalidInput(
                            "The archive inflates to more bytes than the uncompressed size limit "
                            f"(stopped in '{info.filename}'); it is refused as a possible zip bomb."
                        )
                    chunks.append(chunk)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError) as exc:
            raise InvalidInput(f"Entry '{info.filename}' of the archive cannot be read ({exc}).") from exc
        return b"".join(chunks)


# --- zip of class folders ---------------------------------------------------------------------------------------


def _is_os_junk(parts: tuple[str, ...]) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in parts) or parts[-1].lower() in _OS_JUNK


def _layout(image_parts: list[tuple[str, ...]]) -> tuple[list[tuple[str | None, str]], bool]:
    """(split or None, class) for each image after dropping the folders every image shares; True if split given.

    Images must sit directly in a class folder; the class folders may sit in ``train/`` and ``test/``.
    """
    dirs = [p[:-1] for p in image_parts]
    while all(len(d) >= 2 for d in dirs) and len({d[0] for d in dirs}) == 1:
        dirs = [d[1:] for d in dirs]
    if all(len(d) == 2 and d[0].lower() in _SPLIT_FOLDERS for d in dirs):
        return [(d[0].lower(), d[1]) for d in dirs], True
    for parts, d in zip(image_parts, dirs, strict=True):
        if len(d) != 1:
            raise InvalidInput(
                f"Image '{'/'.join(parts)}' is not directly inside a class folder: use <class>/<image> or "
                "train/<class>/<image> and test/<class>/<image>."
            )
    return [(None, d[0]) for d in dirs], False


def _decode(data: bytes, name: str) -> np.ndarray:
    """Decode one image to uint8 HxWx1 (greyscale modes) or HxWx3 (everything else, alpha dropped)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                if image.mode in _WIDE_INT_MODES:  # 16-bit greyscale PNG: keep the top 8 bits, not a clipped copy
                    return (np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8)[..., None]
                if image.mode in _GREY_MODES:
                    return np.asarray(image.convert("L"), dtype=np.uint8)[..., None]
                return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidInput(f"Image '{name}' cannot be decoded as PNG or JPEG ({exc}).") from exc
    except Image.DecompressionBombWarning as exc:
        raise InvalidInput(f"Image '{name}' is too large to decode safely ({exc}).") from exc


def _stack(images: list[np.ndarray]) -> tuple[np.ndarray, dict[str, Any]]:
    """One float32 NHWC array: greys become RGB if any image is colour; odd sizes resized to the most common."""
    channels = 3 if any(img.shape[-1] == 3 for img in images) else 1
    sizes = Counter(img.shape[:2] for img in images)
    (height, width), _ = sizes.most_common(1)[0]
    out = np.empty((len(images), height, width, channels), dtype=np.float32)
    resized = 0
    for i, img in enumerate(images):
        scaled = img.astype(np.float32)[None] / np.float32(255.0)
        if img.shape[:2] != (height, width):
            scaled = resize_images(scaled, height, width)
            resized += 1
        out[i] = np.repeat(scaled[0], channels, axis=-1) if scaled.shape[-1] != channels else scaled[0]
    info = {
        "image_size": [int(height), int(width)],
        "channels": channels,
        "resized": {"count": resized, "to": [int(height), int(width)], "method": RESIZE_METHOD} if resized else None,
        "grey_to_rgb": channels == 3 and any(img.shape[-1] == 1 for img in images),
    }
    return out, info


def _read_image_zip(
    archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo], budget: _Budget, seed: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], tuple[str, ...], dict[str, Any]]:
    images: list[zipfile.ZipInfo] = []
    ignored: list[str] = []
    for info in sorted(entries, key=lambda i: i.filename):
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts
        if info.is_dir() or not parts or _is_os_junk(parts):
            continue
        if PurePosixPath(parts[-1]).suffix.lower() in IMAGE_SUFFIXES:
            images.append(info)
        else:
            ignored.append(info.filename)
    if not images:
        raise InvalidInput("The zip holds no .png, .jpg or .jpeg images; put them in one folder per class.")
    places, split_given = _layout([PurePosixPath(i.filename.replace("\\", "/")).parts for i in images])
    class_names = tuple(sorted({cls for split, cls in places if split != "test"}))
    if len(class_names) < 2:
        raise InvalidInput(f"At least 2 classes (folders of images) are needed; found {len(class_names)}.")
    unknown = sorted({cls for split, cls in places if split == "test"} - set(class_names))
    if unknown:
        raise InvalidInput(f"Test class folders {unknown} have no images under train/; every class needs both.")
    index = {name: i for i, name in enumerate(class_names)}
    decoded = [_decode(budget.read(archive, info), info.filename) for info in images]
    x, stack_info = _stack(decoded)
    y = np.array([index[cls] for _, cls in places], dtype=np.int64)
    if split_given:
        is_test = np.array([split == "test" for split, _ in places])
        train_idx, test_idx = np.flatnonzero(~is_test), np.flatnonzero(is_test)
        split: dict[str, Any] = {"kind": "given (train/ and test/ folders)"}
    else:
        hint = "; add images to the small classes, or provide train/ and test/ folders."
        train_idx, test_idx = train_test_indices(y, TEST_FRACTION, seed, hint=hint)
        split = {"kind": "stratified", "test_size": TEST_FRACTION, "random_state": seed}
    info = {
        "layout": "train/test folders of class folders" if split_given else "class folders",
        "split": split,
        **stack_info,
        "ignored_files": {"count": len(ignored), "names": ignored[:_LISTED_IGNORED]},
    }
    return (x[train_idx], y[train_idx]), (x[test_idx], y[test_idx]), class_names, info


# --- npz of arrays ----------------------------------------------------------------------------------------------


def _npz_images(array: np.ndarray, key: str) -> np.ndarray:
    """Validate images as NHW or NHWC (C 1 or 3) and return them scaled to float32 [0, 1] (uint8 kept as is)."""
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        hint = (
            " (it looks channels-first: transpose to N,H,W,C)" if array.ndim == 4 and array.shape[1] in (1, 3) else ""
        )
        raise InvalidInput(f"{key} must have shape (N, H, W) or (N, H, W, C) with C 1 or 3, got {array.shape}{hint}.")
    if array.shape[0] == 0 or min(array.shape[1:3]) < 1:
        raise InvalidInput(f"{key} holds no images (shape {array.shape}).")
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind in "iu":
        if array.min() < 0 or array.max() > 255:
            raise InvalidInput(f"{key} has integer pixels outside 0..255 ({array.min()}..{array.max()}).")
        return array.astype(np.uint8)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise InvalidInput(f"{key} contains NaN or infinite pixels.")
        if array.min() < 0.0 or array.max() > 1.0:
            raise InvalidInput(
                f"{key} has float pixels outside [0, 1] ({array.min():.3g}..{array.max():.3g}); store uint8 0..255 "
                "or floats scaled to [0, 1]."
            )
        return array.astype(np.float32)
    raise InvalidInput(f"{key} must hold numbers (uint8 0..255 or floats in [0, 1]), not {array.dtype}.")


def _npz_labels(array: np.ndarray, key: str, count: int) -> np.ndarray:
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        hint = " (one-hot? store class indices: y.argmax(axis=1))" if array.ndim == 2 else ""
        raise InvalidInput(f"{key} must be a 1-D array of class indices, got shape {array.shape}{hint}.")
    if array.dtype.kind not in "iu":
        raise InvalidInput(f"{key} must hold integer class indices, not {array.dtype}.")
    if array.shape[0] != count:
        raise InvalidInput(f"{key} has {array.shape[0]} labels but the matching images array has {count} images.")
    return array.astype(np.int64)


def _read_npz(
    path: Path,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], tuple[str, ...], dict[str, Any]]:
    required = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in required if k not in npz.files]
            if missing:
                raise InvalidInput(f"{path.name} lacks {', '.join(missing)}; it needs {', '.join(required)}.")
            arrays = {k: npz[k] for k in (*required, "class_names") if k in npz.files}
    except ValueError as exc:  # object arrays refused by allow_pickle=False, damaged headers
        raise InvalidInput(
            f"{path.name} cannot be read without unpickling ({exc}); store plain numeric arrays."
        ) from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InvalidInput(f"{path.name} is not a readable .npz ({exc}).") from exc
    x_train, x_test = _npz_images(arrays["x_train"], "x_train"), _npz_images(arrays["x_test"], "x_test")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise InvalidInput(f"x_train images are {x_train.shape[1:]} but x_test images are {x_test.shape[1:]}.")
    y_train = _npz_labels(arrays["y_train"], "y_train", len(x_train))
    y_test = _npz_labels(arrays["y_test"], "y_test", len(x_test))
    names = _class_names(arrays.get("class_names"), y_train, y_test)
    info = {
        "layout": "npz arrays",
        "split": {"kind": "given (x_train / x_test)"},
        "image_size": [int(x_train.shape[1]), int(x_train.shape[2])],
        "channels": int(x_train.shape[3]),
    }
    return (x_train, y_train), (x_test, y_test), names, info


def _class_names(given: np.ndarray | None, y_train: np.ndarray, y_test: np.ndarray) -> tuple[str, ...]:
    """Class names from the optional ``class_names`` array, else "0".."K-1"; labels must cover 0..K-1."""
    if given is not None and (given.ndim != 1 or given.dtype.kind not in "US"):
        raise InvalidInput(f"class_names must be a 1-D array of strings, got {given.dtype} {given.shape}.")
    low = min(int(y_train.min()), int(y_test.min()))
    high = max(int(y_train.max()), int(y_test.max()))
    count = len(given) if given is not None else high + 1
    if low < 0 or high >= count:
        raise InvalidInput(f"Labels must lie in 0..{count - 1} (the number of classes minus one); found {low}..{high}.")
    if len(np.unique(y_train)) < 2 or count < 2:
        raise InvalidInput("At least 2 classes are needed; y_train holds fewer distinct labels.")
    absent = sorted(set(range(count)) - set(np.unique(y_train).tolist()))
    if absent:
        raise InvalidInput(
            f"Classes {absent[:10]} have no training example; labels must be 0..K-1 with every class in y_train."
        )
    if given is not None:
        return tuple(str(n) for n in given)
    return tuple(str(i) for i in range(count))
