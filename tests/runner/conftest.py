"""Fixtures of the service integration tests: a live server per test, demo models trained once per session."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runner.live import LiveServer, server_env


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path, server_env(tmp_path)).start()
    yield server
    server.stop()


def _train_demo(factory: pytest.TempPathFactory, framework: str, name: str) -> Path:
    out = factory.mktemp(f"demo_{framework}") / name
    command = [sys.executable, "-m", "edgeopt.cli", "demo-model", "--framework", framework, "--out", str(out)]
    subprocess.run(command, check=True, env=server_env(out.parent))
    return out


@pytest.fixture(scope="session")
def torch_demo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train_demo(tmp_path_factory, "pytorch", "demo.pt2")


@pytest.fixture(scope="session")
def keras_demo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train_demo(tmp_path_factory, "tensorflow", "demo.keras")
