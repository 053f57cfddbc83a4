"""``edgeopt bench``: time a deployable artifact on this machine, by the rules of a report's ``latency_ms.host``.

The artifact is run by the same loader the pipeline measures it with (``frameworks/pytorch/runtime.load_pte`` for
ExecuTorch ``.pte``, ``frameworks/tensorflow/runtime.load_tflite`` for LiteRT ``.tflite``) and timed by
``host_timing.measure_checked`` (``measure.measure_latency``: warm-up, at least 50 timed batch-1 calls and
``Settings.latency_seconds`` of work, garbage collector paused; a spread figure re-timed and marked noisy). Only the
runtime the file needs is imported, when it is needed: a ``.tflite`` needs LiteRT alone, a ``.pte`` the ExecuTorch
runtime (whose Python bindings bring PyTorch's tensor library with them); TensorFlow is never imported. That is
what ``pip install 'edgeopt[board]'`` installs on a Raspberry Pi.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt import host_timing
from edgeopt.board import BoardIdentity, identify
from edgeopt.errors import InvalidInput
from edgeopt.report import LatencyStats

RUNTIMES = {".pte": "executorch-xnnpack", ".tflite": "litert-xnnpack"}
_PACKAGES = {".pte": ("executorch", "the ExecuTorch runtime"), ".tflite": ("ai_edge_litert", "LiteRT (ai-edge-litert)")}
_MAGIC = {".pte": (4, b"ET"), ".tflite": (4, b"TFL3")}  # FlatBuffer file identifiers at byte 4


@dataclass
class BenchResult:
    artifact: str
    format: str
    runtime: str
    threads: int
    input_shape: list[int]  # as the file takes it: NCHW for .pte, NHWC for .tflite
    latency_ms: LatencyStats
    board: BoardIdentity
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact,
            "format": self.format,
            "runtime": self.runtime,
            "threads": self.threads,
            "input_shape": self.input_shape,
            "latency_ms": self.latency_ms.model_dump(),
            "board": self.board.to_dict(),
        }


def check_artifact(path: Path) -> str:
    """The artifact's suffix after checking it is a file of a kind this command runs; InvalidInput otherwise."""
    suffix = path.suffix.lower()
    if suffix not in RUNTIMES:
        raise InvalidInput(f"{path.name} is not an artifact edgeopt bench runs: give a .pte or .tflite file.")
    if not path.is_file():
        raise InvalidInput(f"Artifact {path} does not exist.")
    offset, magic = _MAGIC[suffix]
    with path.open("rb") as handle:
        head = handle.read(offset + 4)
    if not head[offset:].startswith(magic):
        kind = "an ExecuTorch program" if suffix == ".pte" else "a LiteRT (TFLite) model"
        raise InvalidInput(f"{path.name} is not {kind}: its header does not match; download the artifact again.")
    package, title = _PACKAGES[suffix]
    if importlib.util.find_spec(package) is None:
        raise InvalidInput(f"Running {path.name} needs {title}: install it with pip install 'edgeopt[board]'.")
    return suffix


def _load(path: Path, suffix: str, threads: int) -> tuple[Callable[[np.ndarray], np.ndarray], list[int], str]:
    """predict, the input shape as the file takes it, and the layout of that shape."""
    if suffix == ".tflite":
        from edgeopt.frameworks.tensorflow.runtime import input_spec, load_tflite

        shape, _ = input_spec(path)
        return load_tflite(path, threads=threads), [1, *shape[1:]], "NHWC"
    from edgeopt.frameworks.pytorch.runtime import load_pte, pte_input_shape

    shape = pte_input_shape(path)
    return load_pte(path, threads=threads), [1, *shape[1:]], "NCHW"


def bench(path: str | Path, threads: int = 1, min_seconds: float | None = None) -> BenchResult:
    """Time ``path`` at ``threads`` threads with a zero image of the file's own input shape."""
    from edgeopt.settings import get_settings

    path = Path(path)
    if threads < 1:
        raise InvalidInput(f"--threads must be at least 1, not {threads}.")
    suffix = check_artifact(path)
    seconds = get_settings().latency_seconds if min_seconds is None else min_seconds
    try:
        predict, shape, layout = _load(path, suffix, threads)
    except InvalidInput:
        raise
    except Exception as exc:  # noqa: BLE001 - a runtime refusing the file is bad input, said in one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(f"The runtime could not load {path.name}: {first}") from exc
    sample = np.zeros(shape, dtype=np.float32)
    # The loaders take float images in their own layout (the .tflite loader quantizes them as the file says).
    stats = host_timing.measure_checked(lambda: predict(sample), min_seconds=seconds)
    return BenchResult(
        artifact=path.name,
        format=suffix.lstrip("."),
        runtime=RUNTIMES[suffix],
        threads=threads,
        input_shape=shape,
        latency_ms=stats,
        board=identify(),
        extra={"layout": layout},
    )
