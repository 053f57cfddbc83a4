"""Fixtures for the service tests: a fresh, migrated database per test on SQLite and on PostgreSQL.

Every test that takes ``client`` (or ``engine``) runs twice, once per backend. PostgreSQL comes from
``EDGEOPT_TEST_POSTGRES_URL``; each test gets its own schema (``search_path`` set in the URL), dropped afterwards,
so tests never share state. Without the variable the PostgreSQL cases are skipped locally, but with
``EDGEOPT_REQUIRE_SERVICES=1`` (CI) an unset variable or an unreachable server fails the test instead.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Before anything can import TensorFlow (docs/library-notes.md): torch._dynamo imported after TF crashes the process.
with contextlib.suppress(ImportError):  # torch is optional: the service tests run without the ml extra
    import torch._dynamo  # noqa: F401

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from edgeopt.service.app import create_app
from edgeopt.service.db.migrate import upgrade
from edgeopt.service.db.session import make_engine
from edgeopt.settings import Settings

POSTGRES_ENV = "EDGEOPT_TEST_POSTGRES_URL"
REQUIRE_ENV = "EDGEOPT_REQUIRE_SERVICES"
BACKENDS = [pytest.param("sqlite", id="sqlite"), pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)]


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1: PostgreSQL tests must run, not skip)")
    pytest.skip(reason)


def with_search_path(url: str, schema: str) -> str:
    """The server URL with every connection's ``search_path`` set to ``schema`` (libpq ``options``)."""
    return make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        _unavailable(f"{POSTGRES_ENV} is not set")
        raise AssertionError("unreachable")  # for type checkers: _unavailable always raises
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        _unavailable(f"PostgreSQL at {make_url(url).render_as_string()} is unreachable: {exc.orig}")
    finally:
        engine.dispose()
    return url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of the parametrized backend, private to this test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'edgeopt-test.db'}"
        return
    server_url: str = request.getfixturevalue("postgres_server_url")
    schema = f"edgeopt_test_{uuid.uuid4().hex[:16]}"
    admin = make_engine(server_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield with_search_path(server_url, schema)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def migrated_url(database_url: str) -> str:
    upgrade(database_url)
    return database_url


@pytest.fixture
def engine(migrated_url: str) -> Iterator[Engine]:
    engine = make_engine(migrated_url)
    yield engine
    engine.dispose()


@pytest.fixture
def storage_dir(tmp_path: Path) -> Path:
    return tmp_path / "storage"


@pytest.fixture
def settings(migrated_url: str, storage_dir: Path, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]  # a developer's .env must not change what the tests see
        database_url=migrated_url,
        storage_dir=storage_dir,
        data_dir=tmp_path / "data",
        api_key=None,
        trust_pickles=False,
    )


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:  # the context runs the lifespan (start-up sweep, shutdown)
        yield test_client


def tiny_npz() -> bytes:
    """A valid two-class custom dataset as an ``.npz`` upload body (20 train, 6 test images of 8x8)."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    rng = np.random.default_rng(1)
    np.savez(
        buffer,
        x_train=rng.random((20, 8, 8, 1), dtype=np.float32),
        y_train=np.arange(20) % 2,
        x_test=rng.random((6, 8, 8, 1), dtype=np.float32),
        y_test=np.arange(6) % 2,
    )
    return buffer.getvalue()


def experiment_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {"framework": "pytorch", "dataset": "digits", "device": "rpi4"}
    body.update(overrides)
    return body


@pytest.fixture
def new_experiment(client: TestClient) -> Callable[..., dict[str, Any]]:
    """Create an experiment through the API (fields as keyword overrides) and return its JSON."""

    def create(**overrides: object) -> dict[str, Any]:
        response = client.post("/api/experiments", json=experiment_body(**overrides))
        assert response.status_code == 201, response.text
        return response.json()

    return create


@pytest.fixture
def stored_files(storage_dir: Path) -> Callable[[], list[Path]]:
    """Lists every file under the storage dir, temporary ones included."""
    return lambda: sorted(p for p in storage_dir.rglob("*") if p.is_file())
