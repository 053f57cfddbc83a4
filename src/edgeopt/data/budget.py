"""What decoding a custom dataset would cost, measured before anything is decoded, and refused above a budget.

A few hundred kilobytes can describe gigabytes: a PNG of one colour at 6000x6000 compresses to almost nothing and
decodes to 36 million pixels (then float32), and a zip entry of zeros inflates a thousandfold. ``check_budget``
therefore looks only at what is cheap to read: every entry is inflated once into a counter that keeps nothing (so a
zip bomb that lies about its sizes is stopped at the budget, not after it), images are sized from their headers
(PIL's ``Image.open`` parses the header and decodes no pixel) and ``.npz`` arrays from their ``.npy`` headers.
The loader runs only on an archive that passed.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgeopt.data.custom import IMAGE_SUFFIXES
from edgeopt.errors import InvalidInput

_CHUNK = 1 << 20
_IMAGE_ARRAYS = ("x_train", "x_test")


@dataclass(frozen=True)
class DatasetBudget:
    max_inflated_bytes: int  # everything the archive inflates to, all entries together
    max_pixels: int  # decoded pixels (height x width) of all images together
    max_image_pixels: int  # decoded pixels of one image


def _too_big(message: str) -> InvalidInput:
    return InvalidInput(message, field="file", status_code=413)


def _count_inflated(archive: zipfile.ZipFile, budget: DatasetBudget, label: str) -> None:
    """Inflate every entry into a counter; refuse as soon as the total passes the budget, whatever the headers say."""
    declared = sum(info.file_size for info in archive.infolist())
    if declared > budget.max_inflated_bytes:
        raise _too_big(
            f"{label} declares {declared:,} bytes uncompressed, over the dataset limit of "
            f"{budget.max_inflated_bytes:,} bytes; upload a smaller dataset."
        )
    remaining = budget.max_inflated_bytes
    for info in archive.infolist():
        if info.is_dir():
            continue
        try:
            with archive.open(info) as handle:
                while chunk := handle.read(_CHUNK):
                    remaining -= len(chunk)
                    if remaining < 0:
                        raise _too_big(
                            f"{label} inflates to more than the dataset limit of {budget.max_inflated_bytes:,} bytes "
                            f"(stopped in '{info.filename}'); it is refused as a possible zip bomb."
                        )
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError) as exc:
            raise InvalidInput(f"Entry '{info.filename}' of {label} cannot be read ({exc}).", field="file") from exc


def _image_pixels(handle: IO[bytes], name: str, max_image_pixels: int) -> int:
    try:
        with Image.open(handle) as image:  # reads the header only; no pixel is decoded
            width, height = image.size
    except Image.DecompressionBombError as exc:  # PIL's own limit (lowered in edgeopt.isolated's child) refused it
        raise _too_big(
            f"Image '{name}' has over {2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels; at most {max_image_pixels:,} per "
            "image are accepted. Resize the images to the size the model takes."
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"Image '{name}' cannot be read as PNG or JPEG ({exc}).", field="file") from exc
    return int(width) * int(height)


def _zip_pixels(archive: zipfile.ZipFile, budget: DatasetBudget) -> None:
    total = 0
    for info in archive.infolist():
        if info.is_dir() or PurePosixPath(info.filename).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        with archive.open(info) as handle:
            pixels = _image_pixels(handle, info.filename, budget.max_image_pixels)
        if pixels > budget.max_image_pixels:
            raise _too_big(
                f"Image '{info.filename}' has {pixels:,} pixels; at most {budget.max_image_pixels:,} per image are "
                "accepted. Resize the images to the size the model takes."
            )
        total += pixels
        if total > budget.max_pixels:
            raise _too_big(
                f"The images add up to more than {budget.max_pixels:,} pixels (reached at '{info.filename}'); "
                "upload fewer or smaller images."
            )


def _npz_pixels(archive: zipfile.ZipFile, budget: DatasetBudget) -> None:
    total = 0
    for key in _IMAGE_ARRAYS:
        try:
            info = archive.getinfo(f"{key}.npy")
        except KeyError:
            continue  # the loader names what is missing
        try:
            with archive.open(info) as handle:
                version = np.lib.format.read_magic(handle)
                read_header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape, _, _ = read_header(handle)  # the header only, not the data
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise InvalidInput(f"{key} in the .npz has an unreadable header ({exc}).", field="file") from exc
        images = int(shape[0]) if len(shape) >= 1 else 0
        per_image = int(np.prod(shape[1:3])) if len(shape) >= 3 else 0
        if per_image > budget.max_image_pixels:
            raise _too_big(
                f"{key} holds images of {per_image:,} pixels; at most {budget.max_image_pixels:,} per image are "
                "accepted."
            )
        total += images * per_image
    if total > budget.max_pixels:
        raise _too_big(
            f"x_train and x_test add up to {total:,} pixels, over the limit of {budget.max_pixels:,}; "
            "upload fewer or smaller images."
        )


def check_budget(path: str | Path, budget: DatasetBudget) -> None:
    """Refuse (413) a ``.zip`` or ``.npz`` dataset whose decoding would pass ``budget``; decodes nothing itself."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInput(f"{path.name} is not a readable zip archive ({exc}).", field="file") from exc
    with archive:
        _count_inflated(archive, budget, path.name)
        if path.suffix.lower() == ".npz":
            _npz_pixels(archive, budget)
        else:
            _zip_pixels(archive, budget)
