"""schemathesis over every operation of the OpenAPI schema, on SQLite: no request, valid or not, gets a 5xx.

A bounded run (``MAX_EXAMPLES`` per operation and phase: the schema's examples, schemathesis's coverage cases, which
probe every boundary and type, and fuzzing, valid and invalid requests alike) so it stays in the default suite;
``benchmarks/fuzz.py`` runs a longer one with stateful sequences against PostgreSQL and writes
``benchmarks/results/fuzz.md``. The operations come from the committed schema (``frontend/openapi.json``, which
``tests/service/test_app.py`` keeps equal to the app's own), so a new route is fuzzed without editing this file. The
requests go over real HTTP to one ``edgeopt serve`` with a SQLite database, started once for the module.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.runner.live import LiveServer, server_env

# schemathesis's items (one per operation) share one node id, which pytest-xdist cannot schedule: run on their own.
pytestmark = pytest.mark.serial
MAX_EXAMPLES = 15
COMMITTED_SCHEMA = Path(__file__).resolve().parents[2] / "frontend" / "openapi.json"
schema = schemathesis.openapi.from_path(COMMITTED_SCHEMA)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    live = LiveServer(root, server_env(root)).start()
    try:
        yield live
    finally:
        live.stop()
    errors = [line for line in (root / "server.log").read_text().splitlines() if '"level": "error"' in line]
    assert not errors, f"the server logged {len(errors)} errors, the first: {errors[0][:2000]}"


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_request_gets_a_server_error(case: schemathesis.Case, server: LiveServer) -> None:
    response = case.call(base_url=server.url)
    case.validate_response(response, checks=[not_a_server_error])
    if response.status_code >= 400:  # a refusal is a sentence the user can act on, never an empty body
        assert response.json().get("detail"), f"{response.status_code} without a detail: {response.text[:200]}"
