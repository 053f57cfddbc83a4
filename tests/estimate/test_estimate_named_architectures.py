"""`edgeopt estimate --arch` gives the same network on both frameworks and says what input it assumed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _estimate(framework: str, arch: str, tmp_path: Path) -> dict:
    # One process per framework: TensorFlow and torch's tracing machinery do not share a process safely.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeopt.cli",
            "estimate",
            "--arch",
            arch,
            "--framework",
            framework,
            "--device",
            "rpi4",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        env={**os.environ, "EDGEOPT_OFFLINE": "1", "TF_USE_LEGACY_KERAS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2"])
def test_frameworks_agree_on_input_and_work(arch: str, tmp_path: Path) -> None:
    torch_side = _estimate("pytorch", arch, tmp_path)
    keras_side = _estimate("tensorflow", arch, tmp_path)
    assert torch_side["model"]["input_shape"] == keras_side["model"]["input_shape"] == [1, 224, 224, 3]
    assert keras_side["model"]["flops"] == pytest.approx(torch_side["model"]["flops"], rel=0.05)
    for side in (torch_side, keras_side):
        assert side["estimates"]["rpi4"]["input_shape"] == [1, 224, 224, 3]
