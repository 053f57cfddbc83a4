"""The dataset budget counts pixels from image headers and refuses at the first total or image over it."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from edgeopt.data.budget import DatasetBudget, check_budget
from edgeopt.errors import InvalidInput


def test_a_dataset_within_budget_passes_and_the_totals_count(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    png = io.BytesIO()
    Image.new("RGB", (20, 10)).save(png, format="PNG")
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ("a/1.png", "a/2.png", "b/1.png"):
            archive.writestr(name, png.getvalue())
    path = tmp_path / "small.zip"
    path.write_bytes(buffer.getvalue())
    check_budget(path, DatasetBudget(max_inflated_bytes=10**6, max_pixels=600, max_image_pixels=200))
    with pytest.raises(InvalidInput, match="more than 599 pixels"):
        check_budget(path, DatasetBudget(max_inflated_bytes=10**6, max_pixels=599, max_image_pixels=200))
    with pytest.raises(InvalidInput, match="at most 199 per image"):
        check_budget(path, DatasetBudget(max_inflated_bytes=10**6, max_pixels=600, max_image_pixels=199))


def test_npz_pixels_are_read_from_the_array_headers(tmp_path: Path) -> None:
    import numpy as np

    path = tmp_path / "arrays.npz"
    np.savez_compressed(
        path,
        x_train=np.zeros((10, 100, 100, 1), np.uint8),
        y_train=np.arange(10) % 2,
        x_test=np.zeros((5, 100, 100, 1), np.uint8),
        y_test=np.arange(5) % 2,
    )
    check_budget(path, DatasetBudget(max_inflated_bytes=10**6, max_pixels=150_000, max_image_pixels=10_000))
    with pytest.raises(InvalidInput, match="add up to 150,000 pixels"):
        check_budget(path, DatasetBudget(max_inflated_bytes=10**6, max_pixels=149_999, max_image_pixels=10_000))
    with pytest.raises(InvalidInput, match="over the dataset limit"):
        check_budget(path, DatasetBudget(max_inflated_bytes=100_000, max_pixels=150_000, max_image_pixels=10_000))
