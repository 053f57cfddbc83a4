"""Runs ``.pte`` artifacts in the ExecuTorch runtime with the XNNPACK delegate, as on the board.

Threads: XNNPACK runs on ExecuTorch's process-wide threadpool, which by default has one thread per logical core.
``load_pte`` resets that pool to ``threads`` (default ``Settings.threads``, 1) through the pybindings'
``_unsafe_reset_threadpool`` before the first run, so host latency is measured at a fixed, stated thread count.
The pool is global: the last ``load_pte`` call sets it for every loaded program in the process.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from edgeopt.errors import InvalidInput

PtePredict = Callable[[np.ndarray], np.ndarray]


def set_threads(threads: int) -> int:
    """Sets ExecuTorch's threadpool size; returns the count the pool reports afterwards.

    The pool is only reset when its size differs: every reset prints a C++ log line to stderr, which would repeat
    once per artifact in the CLI's output.
    """
    from executorch.extension.pybindings import portable_lib

    if int(portable_lib._threadpool_get_thread_count()) != int(threads):
        portable_lib._unsafe_reset_threadpool(int(threads))
    return int(portable_lib._threadpool_get_thread_count())


def pte_input_shape(path: Path) -> list[int]:
    """The shape of ``forward``'s first input, as recorded in the program (``edgeopt bench`` feeds it)."""
    from executorch.runtime import Runtime

    meta = Runtime.get().load_program(Path(path)).metadata("forward")
    return [int(d) for d in meta.input_tensor_meta(0).sizes()]


def load_pte(path: Path, threads: int | None = None) -> PtePredict:
    """Loads a ``.pte`` and returns ``predict(NCHW float32 batch) -> logits``.

    The artifacts have a fixed batch of 1 (that is how they run on the board), so a batch is run one sample at a
    time and the outputs stacked.
    """
    from executorch.runtime import Runtime

    from edgeopt.settings import get_settings

    if not Path(path).is_file():
        raise InvalidInput(f"No ExecuTorch program at {path}.")
    set_threads(threads if threads is not None else get_settings().threads)
    method = Runtime.get().load_program(Path(path)).load_method("forward")

    def predict(images: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(images, dtype=np.float32)
        outputs = [method.execute([torch.from_numpy(batch[i : i + 1])])[0].numpy() for i in range(len(batch))]
        return np.concatenate(outputs, axis=0)

    return predict
