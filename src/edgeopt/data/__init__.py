"""Datasets: the presets and user uploads, loaded as a framework-neutral ``Dataset`` and adapted to a model.

This package never imports torch or TensorFlow (the service imports it to validate uploads); torchvision is
imported lazily only to download a missing preset when the network answers.
"""

from __future__ import annotations

from pathlib import Path

from edgeopt.data.adapt import adapt
from edgeopt.data.custom import DEFAULT_MAX_UNCOMPRESSED_BYTES, MAX_ZIP_ENTRIES, load_custom
from edgeopt.data.dataset import Dataset
from edgeopt.data.presets import PRESET_NAMES, ensure_preset_files, load_preset
from edgeopt.errors import InvalidInput
from edgeopt.settings import Settings, get_settings

__all__ = [
    "DEFAULT_MAX_UNCOMPRESSED_BYTES",
    "MAX_ZIP_ENTRIES",
    "PRESET_NAMES",
    "Dataset",
    "adapt",
    "check_dataset",
    "load_custom",
    "load_dataset",
    "load_preset",
]


def load_dataset(
    spec: str | Path,
    settings: Settings | None = None,
    *,
    seed: int = 0,
    max_train: int | None = None,
    max_test: int | None = None,
) -> Dataset:
    """Load a preset by name or a custom ``.zip`` / ``.npz`` by path.

    ``seed`` fixes every split and subsample; ``max_train`` / ``max_test`` keep a stratified subset so runs on
    the big presets stay quick. All of it is recorded in ``Dataset.info``.
    """
    if isinstance(spec, str) and spec in PRESET_NAMES:
        return load_preset(spec, settings or get_settings(), seed=seed, max_train=max_train, max_test=max_test)
    path = Path(spec).expanduser()
    if path.suffix.lower() in {".zip", ".npz"} or path.exists():
        return load_custom(path, seed=seed, max_train=max_train, max_test=max_test)
    raise InvalidInput(
        f"Unknown dataset '{spec}': use a preset ({', '.join(PRESET_NAMES)}) or the path of a .zip of class "
        "folders or an .npz file.",
        field="dataset",
    )


def check_dataset(spec: str | Path, settings: Settings | None = None) -> None:
    """Raise ``InvalidInput`` when ``spec`` cannot be loaded, as cheaply as the check allows.

    A preset only needs its files present (their parsing is left to the run); a custom file is loaded in full,
    because decoding every image is the only honest proof that it is valid.
    """
    if isinstance(spec, str) and spec in PRESET_NAMES:
        ensure_preset_files(spec, settings or get_settings())
        return
    load_dataset(spec, settings)
