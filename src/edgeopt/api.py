"""Small conveniences of the Python API that sit above one framework backend."""

from __future__ import annotations

from pathlib import Path

from edgeopt.frameworks import LoadedModel, ModelSource, get_backend


def load_model(
    path: str | Path | None = None,
    *,
    framework: str,
    arch: str | None = None,
    num_classes: int | None = None,
    random_init: bool = False,
) -> LoadedModel:
    """Load a model the way ``optimize`` does, with the same checks and the same clear errors."""
    source = ModelSource(
        path=Path(path) if path is not None else None, arch=arch, num_classes=num_classes, random_init=random_init
    )
    return get_backend(framework).load(source, None)
