"""Moves images between the framework-neutral Dataset layout (NHWC numpy) and PyTorch's NCHW tensors.

Kept in one place so every technique, the training loop and the measurements agree on the conversion.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


def to_nchw(images: np.ndarray) -> torch.Tensor:
    """NHWC float32 numpy batch -> contiguous NCHW float32 tensor (copies, so the Dataset stays untouched)."""
    if images.ndim != 4:
        raise ValueError(f"expected a 4-D NHWC batch, got shape {images.shape}")
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32))


def to_nhwc(images: torch.Tensor) -> np.ndarray:
    """NCHW tensor -> NHWC float32 numpy array."""
    return images.detach().cpu().permute(0, 2, 3, 1).contiguous().numpy().astype(np.float32, copy=False)


def example_input(input_shape: tuple[int, int, int], batch: int = 1) -> torch.Tensor:
    """A fixed, deterministic NCHW example for tracing a model whose input is (H, W, C)."""
    h, w, c = input_shape
    generator = torch.Generator().manual_seed(0)
    return torch.rand((batch, c, h, w), generator=generator)


def iterate_batches(
    images: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yields (NCHW images, int64 labels or None); shuffling uses its own seeded generator so runs repeat."""
    order = np.arange(len(images))
    if shuffle:
        order = np.random.default_rng(seed).permutation(len(images))
    for start in range(0, len(images), batch_size):
        index = order[start : start + batch_size]
        x = to_nchw(images[index])
        y = torch.from_numpy(labels[index].astype(np.int64)) if labels is not None else None
        yield x, y


@torch.no_grad()
def predict_module(module: torch.nn.Module, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits of an eager module (or an ExportedProgram's module) on an NHWC batch, in eval mode."""
    outputs = [module(x).detach().cpu().numpy() for x, _ in iterate_batches(images, batch_size=batch_size)]
    return np.concatenate(outputs, axis=0) if outputs else np.zeros((0, 0), dtype=np.float32)
