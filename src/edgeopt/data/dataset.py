"""The in-memory dataset every technique and measurement works on.

Images are kept framework-neutral: float32 NHWC in [0, 1]; labels int64 in ``[0, num_classes)``. Each framework
converts to its own layout (NCHW for PyTorch) at the edge, and ``adapt`` matches the model's input size and
channel count once, recording what it did so any run can be reproduced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray  # float32, (N, H, W, C), values in [0, 1]
    y_train: np.ndarray  # int64, (N,)
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)  # seed, split, source files, preprocessing applied

    @property
    def image_shape(self) -> tuple[int, int, int]:
        h, w, c = self.x_train.shape[1:]
        return int(h), int(w), int(c)
