"""Framework-neutral metric definitions (docs/architecture.md section 3): one implementation of each fact.

The PyTorch and TensorFlow backends supply only callables (``run_once``, ``predict``) and arrays; how a size, a
latency or an accuracy is computed lives here, so the two frameworks can never drift apart in what they report.
"""

from __future__ import annotations

import gc
import hashlib
import os
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from edgeopt.report import LatencyStats

MIN_TIMED_RUNS = 50
_CHUNK = 1 << 20
# Environment variables read by OpenMP, MKL, OpenBLAS, the Accelerate framework, numexpr and TensorFlow when they
# create their thread pools.
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)


def file_size(path: str | Path) -> int:
    """Bytes of the deployable artifact file (what the user downloads)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"artifact {path} is not a file")
    return path.stat().st_size


def file_sha256(path: str | Path) -> str:
    """Content digest of an artifact or upload, streamed so a large file never sits in memory."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def gzip_size(path: str | Path) -> int:
    """Bytes of ``path`` after gzip -9 (what it costs to ship), streamed in 1 MiB chunks.

    The gzip header is written without file name and with mtime 0, so the figure depends on the content only.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # 16+: gzip container
    total = 0
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            total += len(compressor.compress(chunk))
    return total + len(compressor.flush())


def compression_ratio(base: int | str | Path, result: int | str | Path) -> float:
    """Baseline size / result size; each may be a byte count or the artifact's path."""
    base_bytes = base if isinstance(base, int) else file_size(base)
    result_bytes = result if isinstance(result, int) else file_size(result)
    if result_bytes <= 0 or base_bytes < 0:
        raise ValueError(f"compression ratio needs positive sizes, got {base_bytes} and {result_bytes}")
    return base_bytes / result_bytes


def measure_latency(
    run_once: Callable[[], None], *, warmup: int = 10, runs: int = MIN_TIMED_RUNS, min_seconds: float = 0.0
) -> LatencyStats:
    """Median and p90 in ms of timed calls of ``run_once`` after ``warmup`` untimed ones.

    At least ``runs`` (never fewer than 50) calls are timed, and more until ``min_seconds`` of timed work has
    passed, so short models get enough samples for a stable median. The garbage collector is paused while timing
    (as ``timeit`` does) so a collection triggered by earlier work does not land in one sample.
    """
    if runs < MIN_TIMED_RUNS:
        raise ValueError(f"latency needs at least {MIN_TIMED_RUNS} timed runs, got runs={runs}")
    if warmup < 0 or min_seconds < 0:
        raise ValueError("warmup and min_seconds must not be negative")
    for _ in range(warmup):
        run_once()
    samples: list[int] = []
    with _gc_paused():
        budget_ns = int(min_seconds * 1e9)
        spent = 0
        while len(samples) < runs or spent < budget_ns:
            start = time.perf_counter_ns()
            run_once()
            samples.append(time.perf_counter_ns() - start)
            spent += samples[-1]
    return _stats(samples)


def interleaved_latency(
    runs: Mapping[str, Callable[[], None]], *, rounds: int = 20, calls: int = 10, warmup: int = 10
) -> dict[str, LatencyStats]:
    """Median and p90 in ms of several models timed in turns: ``rounds`` rounds of ``calls`` calls each.

    On a shared host the speed of the machine drifts over seconds. Timed one after the other, two identical models
    can differ by half; timed in alternation (and in a rotated order each round, so none always follows the same
    neighbour), every model samples the same slow and fast phases and their ratios hold. Used by the benchmarks,
    which compare models; a report's own latency comes from ``measure_latency``.
    """
    if rounds * calls < MIN_TIMED_RUNS:
        raise ValueError(f"latency needs at least {MIN_TIMED_RUNS} timed runs, got {rounds} x {calls}")
    names = list(runs)
    for name in names:
        for _ in range(warmup):
            runs[name]()
    samples: dict[str, list[int]] = {name: [] for name in names}
    with _gc_paused():
        for round_index in range(rounds):
            shift = round_index % max(1, len(names))
            for name in names[shift:] + names[:shift]:
                run_once = runs[name]
                for _ in range(calls):
                    start = time.perf_counter_ns()
                    run_once()
                    samples[name].append(time.perf_counter_ns() - start)
    return {name: _stats(values) for name, values in samples.items()}


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No garbage collection while timing (as ``timeit`` does): one triggered by earlier work skews one sample."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _stats(samples_ns: list[int]) -> LatencyStats:
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    return LatencyStats(host=float(np.median(ms)), host_p90=float(np.percentile(ms, 90)))


def accuracy(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray, batch_size: int = 1) -> float:
    """Top-1 accuracy: the share of ``x`` whose highest logit from ``predict`` is the label in ``y``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"accuracy needs as many labels as images (and at least one): {len(x)} vs {len(y)}")
    correct = 0
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        logits = np.asarray(predict(batch))
        if logits.ndim != 2 or logits.shape[0] != len(batch):
            raise ValueError(f"predict must return logits of shape ({len(batch)}, classes), got {logits.shape}")
        correct += int(np.count_nonzero(logits.argmax(axis=1) == y[start : start + batch_size]))
    return correct / len(x)


def sparsity(arrays: Iterable[np.ndarray]) -> float:
    """Fraction of exact zeros over all elements of the given weight arrays (0.0 when there are none)."""
    zeros = total = 0
    for array in arrays:
        array = np.asarray(array)
        total += array.size
        zeros += array.size - int(np.count_nonzero(array))
    return zeros / total if total else 0.0


@contextmanager
def fixed_threads(n: int) -> Iterator[None]:
    """Pin native thread pools to ``n`` for the duration, and restore them after.

    Two parts, because thread counts are read at different times: the environment variables in
    ``THREAD_ENV_VARS`` govern pools created inside the block (a runtime loaded for the first time), and
    ``threadpoolctl`` resizes the OpenMP and BLAS pools already loaded in this process. Framework-specific knobs
    (``torch.set_num_threads``, the LiteRT interpreter's ``num_threads``, ExecuTorch's threadpool) are set by each
    backend itself; this module stays free of framework imports.
    """
    if n < 1:
        raise ValueError(f"thread count must be at least 1, got {n}")
    from threadpoolctl import threadpool_limits

    saved = {name: os.environ.get(name) for name in THREAD_ENV_VARS}
    os.environ.update({name: str(n) for name in THREAD_ENV_VARS})
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
