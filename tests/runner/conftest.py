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


@pytest.fixture(scope="session")
def torch_demo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "demo.pt2"
    subprocess.run([sys.executable, "-m", "edgeopt.cli", "demo-model", "--framework", "pytorch", "--out", str(out)],
                   check=True, env=server_env(out.parent))
    return out


@pytest.fixture(scope="session")
def keras_demo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo_tf") / "demo.keras"
    subprocess.run([sys.executable, "-m", "edgeopt.cli", "demo-model", "--framework", "tensorflow", "--out", str(out)],
                   check=True, env=server_env(out.parent))
    return out


