"""What a machine says it is (edgeopt.board) and ``edgeopt bench`` refusing bad input with one line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeopt.board import device_for_model, identify
from edgeopt.cli import app

PI_CPUINFO = "processor\t: 0\nBogoMIPS\t: 108.00\nCPU part\t: 0xd0b\n\nRevision\t: d04170\nModel\t\t: {model}\n"
X86_CPUINFO = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 17\nmodel name\t: AMD EPYC 7B13\n"


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize(
    ("model", "device"),
    [
        ("Raspberry Pi 5 Model B Rev 1.0", "rpi5"),
        ("Raspberry Pi 4 Model B Rev 1.4", "rpi4"),
        ("Raspberry Pi Zero 2 W Rev 1.0", "rpi_zero_2w"),
        ("Raspberry Pi 500 Rev 1.0", "rpi5"),
        ("Raspberry Pi 3 Model B Plus Rev 1.3", None),  # a Pi, but not a board EdgeOpt estimates
    ],
)
def test_a_pi_is_named_by_its_device_tree_and_mapped_only_to_its_own_catalog_device(
    tmp_path: Path, model: str, device: str | None
) -> None:
    tree = _write(tmp_path, "model", model.encode() + b"\x00")  # the firmware's string ends in NUL
    ident = identify(tree, _write(tmp_path, "cpuinfo", PI_CPUINFO.format(model="ignored")))
    assert (ident.name, ident.device, ident.is_raspberry_pi, ident.source) == (model, device, True, "device-tree")


def test_without_a_device_tree_a_pi_is_read_from_cpuinfo_and_a_pc_by_its_cpu(tmp_path: Path) -> None:
    missing = tmp_path / "no-device-tree"
    pi = identify(missing, _write(tmp_path, "pi", PI_CPUINFO.format(model="Raspberry Pi 4 Model B Rev 1.5")))
    assert (pi.device, pi.is_raspberry_pi, pi.source) == ("rpi4", True, "cpuinfo")
    pc = identify(missing, _write(tmp_path, "pc", X86_CPUINFO))
    assert pc.name.endswith("host: AMD EPYC 7B13 (not a Raspberry Pi)") and pc.name != "17"
    assert (pc.device, pc.is_raspberry_pi) == (None, False)
    other = identify(_write(tmp_path, "jetson", "NVIDIA Jetson Orin Nano\x00"), _write(tmp_path, "c", X86_CPUINFO))
    assert other.name == "NVIDIA Jetson Orin Nano (not a Raspberry Pi)" and not other.is_raspberry_pi


def test_device_for_model_does_not_take_a_pi_500_for_a_pi_5_prefix_only() -> None:
    assert device_for_model("Raspberry Pi 50") is None
    assert device_for_model("Raspberry Pi 5") == "rpi5"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("model.onnx", b"onnx", "give a .pte or .tflite file"),
        ("missing.pte", None, "does not exist"),
        ("renamed.pte", b"PK\x03\x04not a program", "is not an ExecuTorch program"),
        ("renamed.tflite", b"\x1c\x00\x00\x00ET12", "is not a LiteRT (TFLite) model"),
    ],
)
def test_bench_refuses_bad_input_with_one_line_and_exit_2(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    result = CliRunner().invoke(app, ["bench", str(path)])
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_bench_refuses_zero_threads(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", str(tmp_path / "m.tflite"), "--threads", "0"])
    assert result.exit_code == 2 and "--threads must be at least 1" in result.stderr
