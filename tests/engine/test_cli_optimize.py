"""`edgeopt optimize` from the command line, checked against an independent re-measurement of its baseline.

The re-measurement here does not go through the engine's backends or ``edgeopt.measure``: it opens the baseline
artifact with the board runtime's own API, counts bytes with ``os``/``gzip`` and times with its own loop.
"""

from __future__ import annotations

import gzip
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgeopt.data import adapt, load_dataset

pytestmark = pytest.mark.slow
ENV = {**os.environ, "EDGEOPT_OFFLINE": "1", "TF_USE_LEGACY_KERAS": "1"}  # re-timed in a fresh process, as users run it


def _edgeopt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeopt.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**ENV, "EDGEOPT_STORAGE_DIR": str(cwd / "storage"), "EDGEOPT_HOST_TIMING": "fresh_process"},
        timeout=900,
    )


def _pte_runner(path: Path) -> tuple[object, bool]:
    import torch
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(path).load_method("forward")
    return (
        lambda x: method.execute([torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))])[0].numpy()
    ), True


def _tflite_runner(path: Path) -> tuple[object, bool]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    if tuple(inp["shape"]) != (1, *inp["shape"][1:]):
        interpreter.resize_tensor_input(inp["index"], [1, *inp["shape"][1:]])
        interpreter.allocate_tensors()

    def run(x: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"]).copy()

    return run, True


@pytest.mark.parametrize(
    ("framework", "model_name", "runner"),
    [
        ("pytorch", "demo.pt2", _pte_runner),
        ("tensorflow", "demo.keras", _tflite_runner),
    ],
)
def test_optimize_report_matches_an_independent_measurement(
    framework: str, model_name: str, runner: object, tmp_path: Path
) -> None:
    made = _edgeopt("demo-model", "--framework", framework, "--out", model_name, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    result = _edgeopt(
        "optimize",
        model_name,
        "--framework",
        framework,
        "--dataset",
        "digits",
        "--device",
        "rpi4",
        "--techniques",
        "ptq_int8",
        "--out",
        "out",
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = json.loads(result.stdout)
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert printed == written
    assert "[1/1] Post-training INT8: completed" in result.stderr  # progress goes to stderr; stdout stays clean

    baseline = written["baseline"]
    artifact = tmp_path / "out" / baseline["artifact"]
    assert baseline["size_bytes"] == os.path.getsize(artifact)
    assert baseline["compressed_size_bytes"] == len(gzip.compress(artifact.read_bytes(), 9, mtime=0))

    data = load_dataset("digits", seed=0)
    h, w, c = written["lineage"]["input_shape"]
    data = adapt(data, h, w, c)
    run, _ = runner(artifact)  # type: ignore[operator]
    predictions = [int(np.argmax(run(data.x_test[i : i + 1]))) for i in range(len(data.x_test))]
    assert np.mean(np.array(predictions) == data.y_test) == baseline["accuracy"]

    sample = data.x_test[:1]
    for _ in range(10):
        run(sample)
    times = []
    for _ in range(100):
        start = time.perf_counter()
        run(sample)
        times.append((time.perf_counter() - start) * 1000)
    ours = statistics.median(times)
    assert 1 / 3 < baseline["latency_ms"]["host"] / ours < 3, (baseline["latency_ms"], ours)
    assert baseline["latency_ms"]["host_p90"] >= baseline["latency_ms"]["host"]
    assert written["runs"][0]["technique"] == "ptq_int8" and written["runs"][0]["status"] == "completed"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["optimize", "missing.pt2", "--framework", "pytorch", "--dataset", "digits", "--device", "rpi4"],
            "does not exist",
        ),
        (
            ["optimize", "--arch", "resnet18", "--framework", "pytorch", "--dataset", "digits", "--device", "rpi9"],
            "Unknown device",
        ),
        (
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
                "--min-accuracy",
                "1.5",
            ],
            "--min-accuracy",
        ),
        (
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
            "write 1% for 1 percentage points",
        ),
        (
            ["optimize", "--arch", "resnet18", "--framework", "caffe", "--dataset", "digits", "--device", "rpi4"],
            "Unknown framework",
        ),
        (["estimate", "--arch", "resnet18", "--framework", "pytorch", "--input-shape", "1,3,224"], "--input-shape"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], needle: str, tmp_path: Path) -> None:
    result = _edgeopt(*args, cwd=tmp_path)
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.stderr
