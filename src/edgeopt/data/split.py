"""Seeded, stratified splitting and subsampling, and the final assembly, shared by presets and custom datasets.

Stratification keeps every class's share the same in both parts, so a 20 % test split or a 5,000-image MNIST
subsample still scores every class; the seed makes the split reproducible and is recorded in ``Dataset.info``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeopt.data.dataset import Dataset
from edgeopt.errors import InvalidInput


def _stratified(
    y: np.ndarray,
    seed: int,
    *,
    purpose: str,
    train_size: int | None = None,
    test_size: float | None = None,
    hint: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(len(y))`` into (first, second) parts stratified on ``y`` with sklearn's ``train_test_split``.

    sklearn's own errors (a class with one member, fewer items than classes) become ``InvalidInput`` naming
    ``purpose`` so the user learns which option or which folder to change.
    """
    from sklearn.model_selection import train_test_split  # lazy: ~1 s to import, the service rarely needs it

    index = np.arange(len(y))
    size = train_size if train_size is not None else test_size
    try:
        first, second = train_test_split(
            index, train_size=train_size, test_size=test_size, stratify=y, random_state=seed, shuffle=True
        )
    except ValueError as exc:
        counts = np.bincount(y) if len(y) else np.zeros(0, dtype=np.int64)
        present = counts[counts > 0]
        smallest = int(present.min()) if present.size else 0
        raise InvalidInput(
            f"Cannot make a stratified {purpose} of {size} from {len(y)} images in {present.size} classes "
            f"(smallest class has {smallest}): {exc}{hint}"
        ) from exc
    return np.sort(first), np.sort(second)


def train_test_indices(
    y: np.ndarray, test_fraction: float, seed: int, *, hint: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test split exactly as ``train_test_split(test_size=..., random_state=seed)`` makes it."""
    return _stratified(y, seed, purpose="train/test split", test_size=test_fraction, hint=hint)


def subsample(
    x: np.ndarray, y: np.ndarray, limit: int | None, seed: int, *, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Keep at most ``limit`` items, stratified and seeded; ``None`` or a limit at or above ``len(y)`` keeps all."""
    if limit is not None and limit < 1:
        raise InvalidInput(f"{name} must be a positive number of images, got {limit}.")
    if limit is None or limit >= len(y):
        return x, y
    chosen, _ = _stratified(y, seed, purpose=f"{name} subsample", train_size=int(limit))
    return x[chosen], y[chosen]


def to_unit_float(images: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 0..1; float input is already scaled and only cast."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255.0)
    return images.astype(np.float32, copy=False)


def make_dataset(
    name: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    class_names: tuple[str, ...],
    info: dict[str, Any],
    *,
    seed: int,
    max_train: int | None = None,
    max_test: int | None = None,
) -> Dataset:
    """Subsample (stratified, seeded), scale to float32 [0, 1] and record sizes, so every source ends alike.

    Subsampling happens before the float conversion so a 50,000-image CIFAR never exists in float32 when only a
    few thousand images were asked for.
    """
    full = {"train": int(len(train[1])), "test": int(len(test[1]))}
    x_tr, y_tr = subsample(*train, max_train, seed, name="max_train")
    x_te, y_te = subsample(*test, max_test, seed, name="max_test")
    info = {
        **info,
        "seed": seed,
        "sizes": {"train": int(len(y_tr)), "test": int(len(y_te))},
        "subsample": {"max_train": max_train, "max_test": max_test, "full_sizes": full},
    }
    return Dataset(
        name=name,
        x_train=to_unit_float(x_tr),
        y_train=y_tr.astype(np.int64, copy=False),
        x_test=to_unit_float(x_te),
        y_test=y_te.astype(np.int64, copy=False),
        num_classes=len(class_names),
        class_names=class_names,
        info=info,
    )
