"""`edgeopt optimize` as a person sees it in a terminal: a live display, no framework log lines, a results table."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgeopt.library_output import library_output_to

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# What PyTorch, ExecuTorch, TensorFlow and their C++ cores print when left alone.
LIBRARY_MARKERS = ("Warning", "warning:", "[W ", "W0000", "I0000", "oneDNN", "cpuinfo", "threadpool", "Traceback")


def _run_in_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    main, child = pty.openpty()
    env = {**os.environ, "EDGEOPT_OFFLINE": "1", "EDGEOPT_STORAGE_DIR": str(cwd / "storage"), "COLUMNS": "100"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeopt.cli", *args], stdin=child, stdout=child, stderr=child, cwd=cwd, env=env
    )
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    code = proc.wait(timeout=600)
    return code, ANSI.sub("", b"".join(chunks).decode("utf-8", "replace")).replace("\r", "\n")


def test_library_output_goes_to_the_log_not_the_terminal(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "edgeopt.log"
    with library_output_to(log) as terminal:
        os.write(1, b"C++ core on stdout\n")  # what a native library does: write to the descriptor
        os.write(2, b"C++ core on stderr\n")
        terminal.write("our own line\n")
    seen = capfd.readouterr()
    assert "our own line" in seen.err
    assert "C++ core" not in seen.out + seen.err
    assert log.read_text().splitlines() == ["C++ core on stdout", "C++ core on stderr"]


@pytest.mark.slow
def test_optimize_in_a_terminal_prints_a_table_and_no_library_lines(demo_pt2: Path, tmp_path: Path) -> None:
    code, screen = _run_in_terminal(
        [
            "optimize",
            str(demo_pt2),
            "--framework",
            "pytorch",
            "--dataset",
            "digits",
            "--device",
            "rpi4",
            "--techniques",
            "ptq_int8",
            "--out",
            "out",
        ],
        tmp_path,
    )
    assert code == 0, screen[-3000:]
    assert "Original model" in screen and "Post-training INT8" in screen and "Recommended:" in screen
    assert "[1/1] Post-training INT8: completed" in screen
    leaked = [line for line in screen.splitlines() if any(marker in line for marker in LIBRARY_MARKERS)]
    assert not leaked, leaked
    assert (tmp_path / "out" / "edgeopt.log").is_file()


def test_an_ambiguous_accuracy_drop_exits_2_naming_the_unit(tmp_path: Path) -> None:
    code, screen = _run_in_terminal(
        [
            "optimize",
            "--arch",
            "resnet18",
            "--framework",
            "pytorch",
            "--dataset",
            "digits",
            "--device",
            "rpi4",
            "--max-accuracy-drop",
            "1",
        ],
        tmp_path,
    )
    assert code == 2
    assert "--max-accuracy-drop 1 is ambiguous" in screen and "1%" in screen
