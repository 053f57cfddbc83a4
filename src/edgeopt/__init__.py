"""EdgeOpt: fit a trained image classifier onto a Raspberry Pi.

The public Python API is imported lazily so ``import edgeopt`` stays fast and needs no framework:

    from edgeopt import optimize
    report = optimize("demo.pt2", framework="pytorch", dataset="digits", device="rpi4", out_dir="out")
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "optimize": "edgeopt.pipeline:optimize",
    "recommend": "edgeopt.recommend:recommend",
    "estimate": "edgeopt.estimate.estimator:estimate_all",
    "load_model": "edgeopt.api:load_model",
    "load_dataset": "edgeopt.data:load_dataset",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'edgeopt' has no attribute {name!r}")
    module_name, attr = _PUBLIC[name].split(":")
    return getattr(import_module(module_name), attr)
