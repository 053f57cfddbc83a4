"""``edgeopt db upgrade`` and ``serve`` work from any directory, on a database that does not exist yet."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from edgeopt.service.cli import db_app
from edgeopt.service.db.migrate import current_revision, head_revision
from edgeopt.settings import get_settings


@pytest.fixture
def fresh_settings_cache() -> Iterator[None]:
    get_settings.cache_clear()  # the CLI reads settings from the environment each test sets
    yield
    get_settings.cache_clear()


def test_db_upgrade_from_any_directory(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_settings_cache: None
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no alembic.ini here: the migrations ship inside the package
    monkeypatch.setenv("EDGEOPT_DATABASE_URL", database_url)
    result = CliRunner().invoke(db_app, ["upgrade"])
    assert result.exit_code == 0, result.output
    assert "newest schema" in result.output
    assert current_revision(database_url) == head_revision()
    assert "password" not in result.output.lower()


def test_serve_migrates_a_new_database_then_serves_api_and_docs(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    storage = tmp_path / "fresh-storage"  # does not exist: serve creates it and its SQLite database
    env = {**os.environ, "EDGEOPT_STORAGE_DIR": str(storage)}
    for name in ("EDGEOPT_DATABASE_URL", "EDGEOPT_API_KEY"):
        env.pop(name, None)
    code = f"from edgeopt.service.cli import serve; serve(host='127.0.0.1', port={port})"
    process = subprocess.Popen(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert health is not None and health.status_code == 200, process.stdout.read() if process.stdout else ""
        assert httpx.get(f"http://127.0.0.1:{port}/docs", timeout=5).status_code == 200
        assert current_revision(f"sqlite:///{storage / 'edgeopt.db'}") == head_revision()
    finally:
        process.terminate()
        process.wait(timeout=20)
