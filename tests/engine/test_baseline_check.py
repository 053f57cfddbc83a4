"""A model no better than chance stops the experiment before any technique, in both frameworks.

The models here are random-initialised, hence at chance on digits: exactly what a user with mismatched
preprocessing, a shuffled class order or unlearned BatchNorm statistics would bring.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeopt.errors import InvalidInput
from edgeopt.pipeline import CHANCE_FACTOR, check_baseline

ENV = {**os.environ, "EDGEOPT_OFFLINE": "1", "TF_USE_LEGACY_KERAS": "1", "EDGEOPT_LATENCY_SECONDS": "0"}
SCRIPT_PYTORCH = """
import sys, torch
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)).eval()
# A constant bias on one class: whatever the random weights, it answers that class, exactly 1/10 on digits.
with torch.no_grad():
    model[-1].weight.zero_()
    model[-1].bias.copy_(torch.arange(10.0))
torch.export.save(torch.export.export(model, (torch.rand(1, 1, 32, 32),)), sys.argv[1])
"""
SCRIPT_KERAS = """
import sys, numpy as np, tf_keras as keras
inputs = keras.Input((32, 32, 1))
x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
x = keras.layers.GlobalAveragePooling2D()(x)
dense = keras.layers.Dense(10)
model = keras.Model(inputs, dense(x))
dense.set_weights([np.zeros((4, 10), np.float32), np.arange(10, dtype=np.float32)])
model.save(sys.argv[1])
"""
WORDS = ("no better than chance", "preprocessing", "class order", "BatchNorm")


def test_the_limit_is_one_and_a_half_times_chance() -> None:
    check_baseline(0.151, 10, "digits")  # just above the limit: goes on
    for accuracy in (0.0, 0.097, CHANCE_FACTOR / 10):
        with pytest.raises(InvalidInput) as caught:
            check_baseline(accuracy, 10, "digits")
        assert all(word in str(caught.value) for word in WORDS) and "\n" not in str(caught.value)
    with pytest.raises(InvalidInput):
        check_baseline(0.7, 2, "cats vs dogs")  # two classes: at most 75 % is stopped too
    check_baseline(0.8, 2, "cats vs dogs")


def at_chance_model(framework: str, folder: Path) -> Path:
    path = folder / ("chance.pt2" if framework == "pytorch" else "chance.keras")
    script = SCRIPT_PYTORCH if framework == "pytorch" else SCRIPT_KERAS
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, env=ENV, timeout=300)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["pytorch", "tensorflow"])
def test_cli_stops_at_chance_with_exit_2_and_one_line(framework: str, tmp_path: Path) -> None:
    model = at_chance_model(framework, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "edgeopt.cli", "optimize", str(model), "--framework", framework, "--dataset",
         "digits", "--device", "rpi4", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env={**ENV, "EDGEOPT_STORAGE_DIR": str(tmp_path / "storage")}, timeout=600,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("edgeopt: The original model scores 10.0%") and all(word in last for word in WORDS)
    assert "ptq_int8" not in result.stderr  # no technique began
