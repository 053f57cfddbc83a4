"""What the upload routes do to an uploaded file, each step run in a limited child process (``edgeopt.isolated``).

The API process only streams bytes to disk and renames files; sniffing a model's format (which may inflate a zip,
import PyTorch and unpickle weights), checking a dataset archive against its budget and decoding it all happen in a
child process under ``EDGEOPT_ISOLATED_MEMORY_BYTES`` and ``EDGEOPT_ISOLATED_TIMEOUT_S``, with PIL's
decompression-bomb limit at ``EDGEOPT_MAX_IMAGE_PIXELS``. The functions the child runs are module-level here so it
can import them without importing the web app.
"""

from __future__ import annotations

from pathlib import Path

from edgeopt.errors import InvalidInput
from edgeopt.isolated import Limits, run_isolated
from edgeopt.settings import Settings


def limits(settings: Settings, what: str) -> Limits:
    return Limits(
        memory_bytes=settings.isolated_memory_bytes,
        seconds=settings.isolated_timeout_s,
        image_pixels=settings.max_image_pixels,
        what=what,
    )


def _model_format(path: str, framework: str, trust_pickles: bool) -> tuple[str, str]:
    from edgeopt.formats import check_model_file

    model_format = check_model_file(Path(path), framework, trust_pickles=trust_pickles)
    return model_format.extension, model_format.kind


def _dataset_kind(path: str) -> tuple[str, str]:
    from edgeopt.formats import check_dataset_archive

    kind = check_dataset_archive(Path(path))
    return f".{kind}", kind


def _decode_dataset(path: str, max_inflated_bytes: int, max_pixels: int, max_image_pixels: int) -> None:
    from edgeopt.data import load_dataset
    from edgeopt.data.budget import DatasetBudget, check_budget

    budget = DatasetBudget(
        max_inflated_bytes=max_inflated_bytes, max_pixels=max_pixels, max_image_pixels=max_image_pixels
    )
    try:
        check_budget(path, budget)  # headers and inflated bytes only: nothing decoded yet
        load_dataset(path)  # decoding every image is the only honest proof that the dataset is valid
    except InvalidInput as exc:  # every refusal is about the uploaded file
        raise InvalidInput(str(exc), field="file", status_code=exc.status_code) from exc


def model_format(path: Path, framework: str, settings: Settings) -> tuple[str, str]:
    """(the suffix the loader needs, the format's kind) of an uploaded model; ``InvalidInput`` when refused."""
    return run_isolated(
        _model_format, str(path), framework, settings.trust_pickles, limits=limits(settings, "Checking the model file")
    )


def dataset_kind(path: Path, settings: Settings) -> tuple[str, str]:
    """(suffix, kind) of an uploaded dataset archive (``npz`` or ``zip``); ``InvalidInput`` when refused."""
    return run_isolated(_dataset_kind, str(path), limits=limits(settings, "Checking the dataset archive"))


def decode_dataset(path: Path, settings: Settings) -> None:
    """Refuse a placed dataset whose decoding would pass the budget, then prove that it decodes."""
    run_isolated(
        _decode_dataset,
        str(path),
        settings.max_dataset_inflated_bytes,
        settings.max_dataset_pixels,
        settings.max_image_pixels,
        limits=limits(settings, "Decoding the dataset"),
    )
