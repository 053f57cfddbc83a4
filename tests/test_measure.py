"""The framework-neutral metric definitions: each test would fail if the definition were wrong."""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import threadpoolctl

from edgeopt.measure import (
    THREAD_ENV_VARS,
    accuracy,
    compression_ratio,
    file_size,
    fixed_threads,
    gzip_size,
    interleaved_latency,
    measure_latency,
    sparsity,
)


def test_file_size_and_gzip_size(tmp_path: Path) -> None:
    zeros = tmp_path / "zeros.bin"
    zeros.write_bytes(bytes(3 * 1024 * 1024))  # spans several 1 MiB chunks
    noise = tmp_path / "noise.bin"
    noise_bytes = np.random.default_rng(0).bytes(200_000)
    noise.write_bytes(noise_bytes)
    assert file_size(zeros) == 3 * 1024 * 1024
    assert gzip_size(zeros) < 5_000  # zeros compress ~1000x
    assert gzip_size(noise) > len(noise_bytes)  # random bytes do not compress; gzip adds its framing
    assert gzip_size(noise) == len(gzip.compress(noise_bytes, compresslevel=9, mtime=0))
    with pytest.raises(FileNotFoundError):
        file_size(tmp_path / "missing.pte")


def test_compression_ratio_from_sizes_and_paths(tmp_path: Path) -> None:
    base, small = tmp_path / "base.pte", tmp_path / "small.pte"
    base.write_bytes(bytes(4000))
    small.write_bytes(bytes(1000))
    assert compression_ratio(4000, 1000) == 4.0
    assert compression_ratio(base, small) == 4.0
    with pytest.raises(ValueError):
        compression_ratio(4000, 0)


def test_latency_of_a_1ms_sleep_is_at_least_1ms() -> None:
    calls = []

    def run_once() -> None:
        calls.append(1)
        time.sleep(0.001)

    stats = measure_latency(run_once, warmup=3, runs=50)
    assert len(calls) == 53
    assert stats.host >= 1.0 and stats.host_p90 >= stats.host
    assert stats.host < 50.0  # milliseconds, not microseconds or seconds


def test_latency_min_seconds_extends_runs_and_refuses_too_few() -> None:
    start = time.perf_counter()
    measure_latency(lambda: time.sleep(0.002), warmup=0, runs=50, min_seconds=0.3)
    assert time.perf_counter() - start >= 0.3
    with pytest.raises(ValueError, match="at least 50"):
        measure_latency(lambda: None, runs=10)


def test_latency_p90_reflects_the_slow_tail() -> None:
    counter = iter(range(10_000))

    def run_once() -> None:
        if next(counter) % 5 == 0:  # one call in five is slow: above the median, within the top 20 %
            time.sleep(0.005)

    stats = measure_latency(run_once, warmup=0, runs=100)
    assert stats.host < 1.0 and stats.host_p90 >= 5.0


def test_interleaved_latency_alternates_models_in_rotated_order() -> None:
    order: list[str] = []

    def runner(name: str, seconds: float) -> Callable[[], None]:
        def run_once() -> None:
            order.append(name)
            time.sleep(seconds)

        return run_once

    stats = interleaved_latency(
        {"fast": runner("fast", 0.0), "slow": runner("slow", 0.002)}, rounds=10, calls=5, warmup=2
    )
    timed = order[4:]  # after two warm-up calls of each
    assert timed.count("fast") == timed.count("slow") == 50
    rounds = [timed[i : i + 10] for i in range(0, 100, 10)]
    assert rounds[0][0] == "fast" and rounds[1][0] == "slow"  # rotated: neither always goes first
    assert all(r[:5] == [r[0]] * 5 and r[5:] == [r[5]] * 5 and r[0] != r[5] for r in rounds)
    assert stats["slow"].host >= 2.0 and stats["fast"].host < stats["slow"].host
    with pytest.raises(ValueError, match="at least 50"):
        interleaved_latency({"a": lambda: None}, rounds=4, calls=10)


@pytest.mark.parametrize("batch_size", [1, 3, 4, 10])
def test_accuracy_exact_on_hand_made_logits(batch_size: int) -> None:
    logits = np.array([[0.1, 0.9], [2.0, -1.0], [0.0, 3.0], [5.0, 4.0]], dtype=np.float32)
    labels = np.array([1, 0, 0, 0])  # the third prediction (class 1) is wrong
    seen: list[int] = []

    def predict(batch: np.ndarray) -> np.ndarray:
        seen.append(len(batch))
        return logits[batch[:, 0]]

    x = np.arange(4).reshape(4, 1)
    assert accuracy(predict, x, labels, batch_size=batch_size) == 0.75
    assert max(seen) == min(batch_size, 4) and sum(seen) == 4


def test_accuracy_refuses_non_logits_and_mismatched_labels() -> None:
    x = np.zeros((3, 1))
    with pytest.raises(ValueError, match="logits of shape"):
        accuracy(lambda b: np.zeros(len(b)), x, np.zeros(3))
    with pytest.raises(ValueError, match="as many labels"):
        accuracy(lambda b: np.zeros((len(b), 2)), x, np.zeros(2))


def test_sparsity_counts_exact_zeros_over_all_arrays() -> None:
    arrays = [np.array([0.0, 1.0, -0.0, 2.0]), np.array([[0, 0], [3, 1e-12]])]
    assert sparsity(arrays) == 4 / 8
    assert sparsity(iter(arrays)) == 0.5  # a generator works too
    assert sparsity([]) == 0.0


def test_fixed_threads_sets_and_restores_env_and_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    np.ones((64, 64)) @ np.ones((64, 64))  # make sure numpy's BLAS pool is loaded
    with fixed_threads(1):
        assert all(os.environ[name] == "1" for name in THREAD_ENV_VARS)
        pools = threadpoolctl.threadpool_info()
        assert pools and all(pool["num_threads"] == 1 for pool in pools)
    assert os.environ["OMP_NUM_THREADS"] == "7"
    assert "MKL_NUM_THREADS" not in os.environ
    with pytest.raises(ValueError), fixed_threads(0):
        pass
