"""Every pickle a ``torch.export`` archive (``.pt2``) would unpickle, checked before anything loads it.

``torch.export.load`` unpickles several entries without restriction: the sample inputs
(``data/sample_inputs/<model>.pt``, retried with ``weights_only=False`` when the safe load fails), weights and
tensor constants marked ``use_pickle`` in their configs, legacy ``data/weights/<model>.pt`` and
``data/constants/<model>.pt`` files, and custom or opaque objects among the constants (``pickle.loads``). An uploaded
archive could run any code there. So each such entry must load with ``torch.load(weights_only=True)`` (PyTorch's
restricted unpickler: tensors, containers and plain values only), custom and opaque objects are refused outright,
and the sample inputs must be a tuple or dict of tensors and plain values. Anything else refuses the file (fail
closed); nothing here runs code from the archive.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from edgeopt.errors import InvalidInput

MAX_PICKLE_BYTES = 4 * 1024**3  # a pickled weight larger than this is no image classifier's
EXPORT_HINT = "Export the model again with torch.export.export(...) and torch.export.save(...) from plain tensors."


def _refuse(path: Path, entry: str, why: str) -> InvalidInput:
    return InvalidInput(
        f"{path.name} is a torch.export archive whose entry {entry!r} {why}; EdgeOpt never unpickles arbitrary "
        f"objects from uploads, because unpickling can run any code. {EXPORT_HINT}",
        field="file",
    )


def _relative(name: str) -> str:
    """The entry name below the archive's top-level folder (PyTorch nests everything under one)."""
    return "/".join(PurePosixPath(name).parts[1:])


def _pickled_payloads(archive: zipfile.ZipFile, by_relative: dict[str, str], config_name: str) -> Iterator[str]:
    """Entries a weights/constants config marks ``use_pickle`` (or names as custom/opaque objects)."""
    folder = config_name.rsplit("/", 1)[0] + "/"
    try:
        config = json.loads(archive.read(by_relative[config_name]))
    except ValueError as exc:
        raise InvalidInput(f"The archive's {config_name} is not valid JSON ({exc}).", field="file") from exc
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise InvalidInput(f"The archive's {config_name} lists no payloads.", field="file")
    for meta in entries.values():
        if not isinstance(meta, dict) or not isinstance(meta.get("path_name"), str):
            raise InvalidInput(f"The archive's {config_name} has an entry without a path_name.", field="file")
        name = meta["path_name"]
        if meta.get("use_pickle") or name.startswith(("custom_obj", "opaque_obj")):
            yield folder + name


def _only_tensors_and_values(value: Any) -> bool:
    import torch

    if isinstance(value, torch.Tensor) or value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list | tuple):
        return all(_only_tensors_and_values(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _only_tensors_and_values(v) for k, v in value.items())
    return False


def _safe_load(path: Path, archive: zipfile.ZipFile, entry: str) -> Any:
    import torch

    info = archive.getinfo(entry)
    if info.file_size > MAX_PICKLE_BYTES:
        raise _refuse(path, _relative(entry), "holds a pickle larger than any model's weights")
    try:
        return torch.load(io.BytesIO(archive.read(info)), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError for forbidden globals, others for damaged bytes
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise _refuse(path, _relative(entry), f"holds a pickle that the safe loader refuses ({first})") from exc


def check_pt2_archive(path: Path) -> None:
    """Refuse (``InvalidInput``) a ``.pt2`` holding any pickle that needs more than PyTorch's safe unpickler."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInput(f"{path.name} is not a readable torch.export archive ({exc}).", field="file") from exc
    with archive:
        names = archive.namelist()
        # One top-level folder and no repeated name, as torch.export.save writes: otherwise this check and torch's
        # own zip reader could each read a different copy of an entry.
        if len({PurePosixPath(name).parts[0] for name in names if name}) != 1 or len(set(names)) != len(names):
            raise InvalidInput(
                f"{path.name} is not laid out as torch.export.save writes archives (one top-level folder, each entry "
                f"once). {EXPORT_HINT}",
                field="file",
            )
        by_relative = {_relative(name): name for name in names}
        pickled: set[str] = set()
        for relative in by_relative:
            parts = relative.split("/")
            if relative.startswith("data/sample_inputs/"):
                if archive.getinfo(by_relative[relative]).file_size == 0:  # torch reads an empty entry as {}
                    continue
                sample = _safe_load(path, archive, by_relative[relative])
                if not isinstance(sample, tuple | dict) or not _only_tensors_and_values(sample):
                    raise _refuse(path, relative, "holds sample inputs that are not plain tensors")
            elif len(parts) == 3 and parts[:2] in (["data", "weights"], ["data", "constants"]):
                if relative.endswith(("_weights_config.json", "_constants_config.json")):
                    pickled.update(_pickled_payloads(archive, by_relative, relative))
                elif relative.endswith(".pt") or parts[2].startswith(("custom_obj", "opaque_obj")):
                    pickled.add(relative)  # legacy single-file weights / constants; custom or opaque objects
        for relative in sorted(pickled):
            name = PurePosixPath(relative).name
            if name.startswith(("custom_obj", "opaque_obj")):
                raise _refuse(path, relative, "holds a custom or opaque Python object (loaded by unpickling)")
            if relative not in by_relative:
                raise InvalidInput(f"The archive names {relative!r} in a config but does not contain it.", field="file")
            _safe_load(path, archive, by_relative[relative])
