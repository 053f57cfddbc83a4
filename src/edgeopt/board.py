"""What machine this is, told truthfully: a Raspberry Pi by its device-tree model, anything else by its CPU.

``edgeopt bench`` prints it next to a measurement and ``edgeopt agent`` registers with it. Only a machine whose
firmware says it is a Raspberry Pi is called one; only the models the catalog knows (``catalog.DEVICES``) map to a
catalog device, so a measurement on a Pi 3 or a laptop is never filed as a Pi 4 figure.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeopt import catalog

DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
CPUINFO = Path("/proc/cpuinfo")

# Device-tree model prefixes -> catalog device. The Pi 400 and Compute Module 4 carry the Pi 4's BCM2711, the
# Pi 500 and Compute Module 5 the Pi 5's BCM2712: the same cores and memory system, so the same estimates apply.
_PI_MODELS: tuple[tuple[str, str], ...] = (
    ("Raspberry Pi 5", "rpi5"),
    ("Raspberry Pi 500", "rpi5"),
    ("Raspberry Pi Compute Module 5", "rpi5"),
    ("Raspberry Pi 4 Model B", "rpi4"),
    ("Raspberry Pi 400", "rpi4"),
    ("Raspberry Pi Compute Module 4", "rpi4"),
    ("Raspberry Pi Zero 2 W", "rpi_zero_2w"),
)
assert {device for _, device in _PI_MODELS} <= set(catalog.DEVICE_NAMES)  # noqa: S101 - one catalog of devices


@dataclass(frozen=True)
class BoardIdentity:
    name: str  # what a person reads: "Raspberry Pi 5 Model B Rev 1.0" or "x86_64 host: AMD EPYC 7B13 (not a Pi)"
    device: str | None  # the catalog device it is, or None
    is_raspberry_pi: bool
    machine: str  # platform.machine(): aarch64, x86_64, ...
    cpu: str
    cores: int
    source: str  # where the name was read: device-tree, cpuinfo or platform

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def device_for_model(model: str) -> str | None:
    """The catalog device of a Raspberry Pi model string (as in ``/proc/device-tree/model``), or None."""
    longest = sorted(_PI_MODELS, key=lambda item: -len(item[0]))  # "Pi 500" before "Pi 5"
    for prefix, device in longest:
        if model.startswith(prefix) and (len(model) == len(prefix) or not model[len(prefix)].isdigit()):
            return device
    return None


def _read(path: Path) -> str:
    try:
        return path.read_bytes().replace(b"\x00", b"").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _cpuinfo_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and value.strip():
            fields.setdefault(key.strip(), value.strip())  # case kept: "Model" (the board) is not "model" (x86)
    return fields


def _cpu_name(fields: dict[str, str]) -> str:
    name = fields.get("model name") or fields.get("cpu model") or fields.get("Hardware") or platform.processor()
    if not name and fields.get("CPU part"):
        name = f"Arm CPU part {fields['CPU part']}"
    return re.sub(r"\s+", " ", name or "unknown CPU").strip()


def identify(device_tree_model: Path = DEVICE_TREE_MODEL, cpuinfo: Path = CPUINFO) -> BoardIdentity:
    """This machine: the device-tree model when the firmware gives one, else the CPU model, else the platform."""
    fields = _cpuinfo_fields(_read(cpuinfo))
    cpu = _cpu_name(fields)
    machine = platform.machine() or "unknown"
    cores = os.cpu_count() or 1
    model = _read(device_tree_model)
    source = "device-tree"
    if not model and fields.get("Model"):  # Raspberry Pi OS kernels also print the board model in /proc/cpuinfo
        model, source = fields["Model"], "cpuinfo"
    if model.startswith("Raspberry Pi"):
        return BoardIdentity(model, device_for_model(model), True, machine, cpu, cores, source)
    if model:  # another single-board computer that names itself (Jetson, Rock, Odroid...)
        return BoardIdentity(f"{model} (not a Raspberry Pi)", None, False, machine, cpu, cores, source)
    source = "cpuinfo" if fields else "platform"
    return BoardIdentity(f"{machine} host: {cpu} (not a Raspberry Pi)", None, False, machine, cpu, cores, source)
