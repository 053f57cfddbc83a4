"""Board estimator: latency, memory, power and energy of a model on Raspberry Pi boards, without the boards.

Framework-free on import: ``profile_torch`` (``edgeopt.estimate.torch_profile``) and ``profile_keras``
(``edgeopt.estimate.keras_profile``) import their framework only when called through the lazy wrappers below.
"""

from __future__ import annotations

from typing import Any

from edgeopt.estimate.estimator import estimate_all, estimate_device, get_board, load_boards
from edgeopt.estimate.graph import LayerSpec, ModelProfile

__all__ = [
    "LayerSpec",
    "ModelProfile",
    "estimate_all",
    "estimate_device",
    "get_board",
    "load_boards",
    "profile_keras",
    "profile_torch",
]


def profile_torch(module: Any, input_shape_hwc: tuple[int, int, int]) -> ModelProfile:
    from edgeopt.estimate.torch_profile import profile_torch as _profile

    return _profile(module, input_shape_hwc)


def profile_keras(model: Any) -> ModelProfile:
    from edgeopt.estimate.keras_profile import profile_keras as _profile

    return _profile(model)
