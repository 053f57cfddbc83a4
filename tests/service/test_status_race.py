"""Start, cancel and delete racing on one experiment: one wins, the other is told why, nothing answers 500.

The routes run in-process (httpx over ASGI, the app's lifespan and job runner running) so both requests of a round
really overlap in FastAPI's thread pool; the job runner is real too, so a start that wins spawns a real worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from edgeopt.service.app import create_app
from edgeopt.service.db.models import Experiment
from edgeopt.service.manager import JobManager
from edgeopt.settings import Settings
from tests.service.conftest import experiment_body

ROUNDS = 100


async def _race_rounds(
    app: FastAPI, second: Callable[[httpx.AsyncClient, str, int], Any], rounds: int
) -> tuple[list[tuple[str, int, int]], list[str]]:
    """``rounds`` times: create a ready experiment, then send start and ``second`` at once (``second`` gets the
    round's index, so it can stagger itself)."""
    spawned: list[str] = []
    async with app.router.lifespan_context(app):
        manager: JobManager = app.state.jobs
        real_spawn = manager._spawn

        def recording_spawn(description: dict[str, Any]) -> None:
            spawned.append(description["experiment_id"])
            real_spawn(description)

        manager._spawn = recording_spawn  # type: ignore[method-assign]  # records, then spawns for real
        transport = httpx.ASGITransport(app=app)
        results: list[tuple[str, int, int]] = []
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            for round_index in range(rounds):
                created = await client.post("/api/experiments", json=experiment_body(arch="resnet18"))
                assert created.status_code == 201, created.text
                experiment_id = created.json()["id"]
                start, other = await asyncio.gather(
                    client.post(f"/api/experiments/{experiment_id}/start"), second(client, experiment_id, round_index)
                )
                for response in (start, other):
                    assert response.status_code < 500, response.text
                    if response.status_code >= 400:
                        assert response.json()["detail"], response.text
                results.append((experiment_id, start.status_code, other.status_code))
    return results, spawned


def test_start_racing_delete_has_one_winner_and_never_a_worker_for_a_deleted_experiment(settings: Settings) -> None:
    app = create_app(settings)

    async def delete(client: httpx.AsyncClient, experiment_id: str, round_index: int) -> httpx.Response:
        # Every tenth round is a dead heat; the others hold the delete back by up to 90 ms, so that on any database
        # and host some starts win too and the job runner's side of the race is exercised (on PostgreSQL a delete
        # sent at the same instant won all 100 rounds).
        await asyncio.sleep((round_index % 10) * 0.01)
        return await client.delete(f"/api/experiments/{experiment_id}")

    results, spawned = asyncio.run(_race_rounds(app, delete, ROUNDS))

    deleted = {experiment_id for experiment_id, _, delete_code in results if delete_code == 204}
    for _, start_code, delete_code in results:
        # Exactly one wins: the start (the delete is refused while it is queued) or the delete (start finds nothing).
        assert (start_code, delete_code) in ((202, 409), (404, 204)), (start_code, delete_code)
    assert spawned, "no start won a single round: the job runner's side of the race was not exercised"
    assert not deleted & set(spawned), "a worker was spawned for a deleted experiment"
    with app.state.session_factory() as session:
        for experiment_id, start_code, _ in results:
            row = session.get(Experiment, experiment_id)
            assert (row is None) == (experiment_id in deleted)
            if start_code == 202:
                assert row is not None and row.status != "ready"


@pytest.mark.parametrize("rounds", [20])
def test_start_racing_cancel_leaves_a_consistent_status(settings: Settings, rounds: int) -> None:
    app = create_app(settings)

    async def cancel(client: httpx.AsyncClient, experiment_id: str, round_index: int) -> httpx.Response:
        return await client.post(f"/api/experiments/{experiment_id}/cancel")

    results, _ = asyncio.run(_race_rounds(app, cancel, rounds))

    for _, start_code, cancel_code in results:
        assert start_code == 202  # nothing but a start moves a ready experiment
        assert cancel_code in (202, 409), cancel_code  # 409: the cancel came first, when nothing was queued yet
