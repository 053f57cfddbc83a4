"""What a model file really is, decided from its bytes, never from its name.

Uploads arrive with whatever extension the user's browser sent; the loaders need to know the real format before
they touch the file, and a file that is not a model of the experiment's framework must be refused with a sentence
saying which formats are accepted. Nothing here imports torch or TensorFlow at module level: the service imports
this module at start, and only a zip that holds a pickle needs torch (to try the safe ``weights_only`` load).
"""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from edgeopt.errors import InvalidInput

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# HDF5 files may start with a user block; the signature then sits at one of these offsets.
HDF5_SIGNATURE_OFFSETS = (0, 512, 1024, 2048)
# torch.save's legacy (non-zip) format starts with a pickle PROTO opcode.
PICKLE_PROTO = 0x80
MAX_KERAS_CONFIG_BYTES = 64 * 1024 * 1024
# Checking a zip inflates every entry; zipfile stops at each entry's declared size, so bounding the declared total
# bounds the work a small, highly compressed upload (a zip bomb) can cause.
MAX_UNCOMPRESSED_BYTES = 16 * 1024**3
# A model archive inflating to more than this many times its size is a zip bomb: weights hardly compress (even a
# half-pruned model's only ~2x). Archives inflating to less than the floor are never refused for their ratio.
MAX_INFLATION_RATIO = 100
INFLATION_RATIO_FLOOR = 64 * 1024 * 1024

ACCEPTED_FORMATS: dict[str, str] = {
    "pytorch": (
        "a torch.export archive (.pt2, from torch.export.save), a TorchScript file (.pt, from torch.jit.save), or a "
        "state_dict saved with torch.save (a whole pickled module only with EDGEOPT_TRUST_PICKLES=1)"
    ),
    "tensorflow": (
        "a Keras v3 file (.keras), a legacy Keras HDF5 model (.h5), or a SavedModel directory packed as a .zip"
    ),
}

# kind -> (framework, file extension the loaders expect, description)
KINDS: dict[str, tuple[str, str, str]] = {
    "pt2": ("pytorch", ".pt2", "torch.export archive"),
    "torchscript": ("pytorch", ".pt", "TorchScript archive"),
    "state_dict": ("pytorch", ".pt", "PyTorch state_dict"),
    "pickle": ("pytorch", ".pt", "pickled PyTorch object (whole module)"),
    "keras": ("tensorflow", ".keras", "Keras v3 model"),
    "h5": ("tensorflow", ".h5", "legacy Keras HDF5 model"),
    "savedmodel_zip": ("tensorflow", ".zip", "TensorFlow SavedModel (zipped)"),
}


@dataclass(frozen=True)
class ModelFormat:
    framework: str  # "pytorch" | "tensorflow"
    kind: str  # a key of KINDS

    @property
    def extension(self) -> str:
        """The suffix the framework's loader needs (Keras refuses a .keras zip under any other name)."""
        return KINDS[self.kind][1]

    @property
    def description(self) -> str:
        return KINDS[self.kind][2]


def _not_a_model(reason: str, framework: str | None) -> InvalidInput:
    if framework in ACCEPTED_FORMATS:
        accepted = f"For {framework}, upload {ACCEPTED_FORMATS[framework]}."
    else:
        accepted = " ".join(f"For {name}, upload {text}." for name, text in ACCEPTED_FORMATS.items())
    return InvalidInput(f"{reason} {accepted}", field="file")


def check_entry_names(names: list[str]) -> None:
    for name in names:
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or (name[1:2] == ":") or ".." in parts:
            raise InvalidInput(
                f"The archive contains an unsafe entry name {name!r} (absolute or with '..'); "
                "re-create the archive with relative paths only.",
                field="file",
            )


def _check_inflated_size(archive: zipfile.ZipFile) -> None:
    declared = sum(info.file_size for info in archive.infolist())
    if declared > MAX_UNCOMPRESSED_BYTES:
        raise InvalidInput(
            f"The archive would inflate to {declared:,} bytes, more than the {MAX_UNCOMPRESSED_BYTES:,} accepted.",
            field="file",
        )


def check_inflation(archive: zipfile.ZipFile, compressed_size: int, *, max_bytes: int) -> None:
    """Refuse a model archive whose entries declare more than ``max_bytes`` in all, or a zip bomb's ratio.

    ``zipfile`` stops inflating each entry at its declared size, so bounding the declared sizes bounds the disk and
    time that extracting or checking the archive can take.
    """
    declared = sum(info.file_size for info in archive.infolist())
    if declared > max_bytes:
        raise InvalidInput(
            f"The archive would inflate to {declared:,} bytes, more than the {max_bytes:,} accepted.", field="file"
        )
    if declared > INFLATION_RATIO_FLOOR and declared > MAX_INFLATION_RATIO * max(compressed_size, 1):
        raise InvalidInput(
            f"The archive would inflate {declared // max(compressed_size, 1):,} times its size ({declared:,} bytes): "
            "that is a zip bomb, not a model. Zip the model's own files.",
            field="file",
        )


def _open_zip(path: Path, framework: str | None) -> list[str]:
    """Entry names of a complete, undamaged zip; a truncated or corrupt one is refused here."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            check_entry_names(names)
            check_inflation(archive, path.stat().st_size, max_bytes=MAX_UNCOMPRESSED_BYTES)
            damaged = archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise _not_a_model(f"The file is a damaged or truncated zip archive ({exc}).", framework) from exc
    if damaged is not None:
        raise _not_a_model(f"The zip archive is damaged: entry {damaged!r} fails its checksum.", framework)
    return names


def _zip_kind(names: list[str]) -> str | None:
    """Classify a zip by its entries. PyTorch archives nest everything under one top-level folder."""
    basenames = {PurePosixPath(n).name for n in names}
    relative = {"/".join(PurePosixPath(n).parts[1:]) for n in names}  # without the top-level folder
    if "archive_format" in relative and any(r.startswith("models/") and r.endswith(".json") for r in relative):
        return "pt2"
    if "constants.pkl" in relative and any(r.startswith("code/") for r in relative):
        return "torchscript"
    if "data.pkl" in relative:
        return "torch_pickle"
    if {"config.json", "model.weights.h5"} <= set(names):
        return "keras_candidate"
    if "saved_model.pb" in basenames or "saved_model.pbtxt" in basenames:
        return "savedmodel_zip"
    return None


def _check_keras_archive(path: Path, framework: str | None) -> str:
    """A Keras v3 file: its ``config.json`` describes a model and its weights entry is an HDF5 file."""
    with zipfile.ZipFile(path) as archive:
        if archive.getinfo("config.json").file_size > MAX_KERAS_CONFIG_BYTES:
            raise _not_a_model("The Keras file's config.json is implausibly large.", framework)
        try:
            config = json.loads(archive.read("config.json"))
        except ValueError as exc:
            raise _not_a_model(f"The Keras file's config.json is not valid JSON ({exc}).", framework) from exc
        with archive.open("model.weights.h5") as weights:
            signature = weights.read(len(HDF5_SIGNATURE))
    if not isinstance(config, dict) or "class_name" not in config:
        raise _not_a_model("The Keras file's config.json describes no model (no class_name).", framework)
    if signature != HDF5_SIGNATURE:
        raise _not_a_model("The Keras file's model.weights.h5 is not an HDF5 file.", framework)
    return "keras"


def _holds_tensors(value: Any) -> bool:
    """True for a state_dict, a checkpoint dict wrapping one, or any mapping whose leaves are tensors."""
    import torch

    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, Mapping):
        return bool(value) and any(_holds_tensors(v) for v in value.values())
    return False


def _classify_torch_pickle(path: Path, *, zipped: bool, framework: str | None) -> str:
    """``state_dict`` if it loads with ``weights_only=True`` and holds tensors, ``pickle`` if it needs full unpickling.

    The safe loader refuses any class outside torch's allow-list, so a whole ``nn.Module`` fails here without
    running its code; a damaged file fails with another error and is refused. Zip archives are memory-mapped so a
    large state_dict is not read into memory just to be classified (the legacy format cannot be mapped).
    """
    try:
        import torch
    except ImportError as exc:
        raise InvalidInput(
            "PyTorch is not installed in this service, so a PyTorch file cannot be checked; run `make run`.",
            field="file",
        ) from exc
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Weights only load failed" in str(exc):
            return "pickle"
        raise _not_a_model(f"The PyTorch file cannot be read ({_first_line(exc)}).", framework) from exc
    except Exception as exc:  # torch raises RuntimeError/EOFError/ValueError for damaged archives
        raise _not_a_model(f"The PyTorch file is damaged or truncated ({_first_line(exc)}).", framework) from exc
    if not _holds_tensors(loaded):
        raise _not_a_model("The PyTorch file holds no tensors, so it is not a model's weights.", framework)
    return "state_dict"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _check_hdf5_model(path: Path, framework: str | None) -> None:
    """A legacy Keras model file carries its architecture in ``model_config``; a weights-only file does not."""
    try:
        import h5py
    except ImportError:  # without h5py the signature is all we can check; Keras will say the rest when loading
        return
    try:
        with h5py.File(path, "r") as handle:
            has_config = "model_config" in handle.attrs
    except OSError as exc:
        raise _not_a_model(f"The HDF5 file is damaged or truncated ({_first_line(exc)}).", framework) from exc
    if not has_config:
        raise _not_a_model(
            "The HDF5 file holds no Keras model architecture (only weights?); save it with model.save().",
            framework,
        )


def has_hdf5_signature(path: Path) -> bool:
    with path.open("rb") as handle:
        for offset in HDF5_SIGNATURE_OFFSETS:
            handle.seek(offset)
            if handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return True
    return False


def detect_model_format(path: Path, *, framework: str | None = None) -> ModelFormat:
    """The real format of ``path``; ``InvalidInput`` (400) when it is no model format EdgeOpt reads.

    ``framework`` (the one the caller expects) only shapes error messages: which formats to list. Whole-module
    pickles are reported as kind ``pickle``; whether to accept them is ``check_model_file``'s decision.
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise _not_a_model("The file is empty.", framework)
    with path.open("rb") as handle:
        head = handle.read(8)
    if zipfile.is_zipfile(path):
        kind = _zip_kind(_open_zip(path, framework))
        if kind == "torch_pickle":
            kind = _classify_torch_pickle(path, zipped=True, framework=framework)
        elif kind == "keras_candidate":
            kind = _check_keras_archive(path, framework)
        if kind is None:
            raise _not_a_model("The zip archive holds no model EdgeOpt recognises.", framework)
        return ModelFormat(KINDS[kind][0], kind)
    if has_hdf5_signature(path):
        _check_hdf5_model(path, framework)
        return ModelFormat("tensorflow", "h5")
    if len(head) >= 2 and head[0] == PICKLE_PROTO and 2 <= head[1] <= 5:
        kind = _classify_torch_pickle(path, zipped=False, framework=framework)  # torch.save's legacy format
        return ModelFormat("pytorch", kind)
    raise _not_a_model("The file is not a model file (its content matches no supported format).", framework)


KERAS_KINDS = frozenset({"keras", "h5", "savedmodel_zip"})


def check_model_file(path: Path, framework: str, *, trust_pickles: bool = False) -> ModelFormat:
    """Detect the format and apply the service's policy: right framework, no untrusted pickles, no code.

    A Keras architecture may name only built-in Keras classes, and layers that carry code (Lambda) only with
    ``trust_pickles``; a SavedModel's graph, with or without Keras metadata, only operations of
    ``edgeopt.saved_model_ops``'s allow-list; a ``.pt2`` may hold only pickles PyTorch's safe unpickler reads,
    whatever the trust. The upload route and the loaders both call this, so a file refused at upload is refused
    again when loaded.
    """
    detected = detect_model_format(path, framework=framework)
    if detected.framework != framework:
        raise _not_a_model(
            f"The file is a {detected.description}, a {detected.framework} model, but this experiment is {framework}.",
            framework,
        )
    if detected.kind == "pickle" and not trust_pickles:
        raise InvalidInput(
            "The file is a pickled PyTorch object (such as a whole module saved with torch.save(model)) that cannot "
            "be loaded with weights_only=True, and unpickling it could run any code. Upload the state_dict "
            "(torch.save(model.state_dict(), path)) or a torch.export archive instead; set EDGEOPT_TRUST_PICKLES=1 "
            "only for files you trust.",
            field="file",
        )
    if detected.kind in KERAS_KINDS:
        from edgeopt import keras_config

        keras_config.check_model_file(path, detected.kind, trust=trust_pickles)
        if detected.kind == "savedmodel_zip":
            from edgeopt.saved_model_ops import check_saved_model_zip

            # Keras metadata or not: loading a SavedModel restores its graph functions too, and TensorFlow runs
            # whatever operations they hold, so the graph is held to the allow-list as well as the Keras config.
            check_saved_model_zip(path)
    elif detected.kind == "pt2":
        from edgeopt.pt2_archive import check_pt2_archive

        check_pt2_archive(path)
    return detected


def check_dataset_archive(path: Path) -> str:
    """``npz`` or ``zip`` for a custom dataset archive with safe entry names; its content is the data loader's job."""
    path = Path(path)
    accepted = "Upload a .npz file (x_train, y_train, x_test, y_test arrays) or a .zip of class-named image folders."
    if not zipfile.is_zipfile(path):
        raise InvalidInput(f"The dataset file is not a .zip or .npz archive. {accepted}", field="file")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            check_entry_names(names)
            _check_inflated_size(archive)
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise InvalidInput(f"The dataset archive is damaged or truncated ({exc}). {accepted}", field="file") from exc
    if damaged is not None:
        raise InvalidInput(f"The dataset archive is damaged: {damaged!r} fails its checksum. {accepted}", field="file")
    if not names:
        raise InvalidInput(f"The dataset archive is empty. {accepted}", field="file")
    return "npz" if all(name.endswith(".npy") for name in names) else "zip"
