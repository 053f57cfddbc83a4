"""The scaled-out topology as real processes: ``edgeopt serve`` + two ``edgeopt worker`` + PostgreSQL + Redis.

Nothing is faked: the API only enqueues on Redis (Celery), the workers run the techniques as tasks and write to
PostgreSQL, and the tests watch the same WebSocket and HTTP API a user does. PostgreSQL and Redis come from
``EDGEOPT_TEST_POSTGRES_URL`` / ``EDGEOPT_TEST_REDIS_URL``; without them the tests skip, but with
``EDGEOPT_REQUIRE_SERVICES=1`` (CI) a missing or unreachable service fails them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.runner.live import TERMINAL, LiveServer, Stream, create_experiment, server_env

pytestmark = pytest.mark.slow
REQUIRE_ENV = "EDGEOPT_REQUIRE_SERVICES"
FAST = ["ptq_int8", "ptq_int4"]


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1: the topology tests must run, not skip)")
    pytest.skip(reason)


def _service_urls() -> tuple[str, str]:
    postgres = os.environ.get("EDGEOPT_TEST_POSTGRES_URL")
    redis_url = os.environ.get("EDGEOPT_TEST_REDIS_URL")
    if not postgres or not redis_url:
        _unavailable("EDGEOPT_TEST_POSTGRES_URL and EDGEOPT_TEST_REDIS_URL must both be set")
    import redis

    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        _unavailable(f"Redis at {redis_url} is unreachable: {exc}")
    from edgeopt.service.db.session import make_engine

    engine = make_engine(postgres)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        _unavailable(f"PostgreSQL at {make_url(postgres).render_as_string()} is unreachable: {exc}")
    finally:
        engine.dispose()
    return postgres, redis_url


@dataclass
class Topology:
    server: LiveServer
    workers: list[subprocess.Popen[bytes]]
    env: dict[str, str]
    database_url: str

    def query(self, sql: str, **params: object) -> list[tuple]:
        from edgeopt.service.db.session import make_engine

        engine = make_engine(self.database_url)
        try:
            with engine.connect() as connection:
                return [tuple(row) for row in connection.execute(text(sql), params)]
        finally:
            engine.dispose()

    def worker_children(self) -> list[psutil.Process]:
        """The pool processes that run tasks (children of the two worker main processes)."""
        return [child for w in self.workers for child in psutil.Process(w.pid).children()]

    def active_tasks(self, experiment_id: str) -> list[str]:
        """Task ids of this experiment that any worker is running now (Celery's own inspect)."""
        from edgeopt.service.worker import make_celery
        from edgeopt.settings import Settings

        settings = Settings(_env_file=None, broker_url=self.env["EDGEOPT_BROKER_URL"])  # type: ignore[call-arg]
        active = make_celery(settings).control.inspect(timeout=3).active() or {}
        return [task["id"] for tasks in active.values() for task in tasks if task["id"].startswith(experiment_id)]


def _start_worker(env: dict[str, str], storage: Path, name: str) -> subprocess.Popen[bytes]:
    log = (storage / f"{name}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "edgeopt.cli", "worker", "--hostname", f"{name}@%h", "--concurrency", "1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _wait_ready(storage: Path, names: list[str], workers: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for worker, name in zip(workers, names, strict=True):
            if worker.poll() is not None:
                raise RuntimeError(f"worker {name} exited: {(storage / f'{name}.log').read_text()[-3000:]}")
        if all(" ready." in (storage / f"{name}.log").read_text() for name in names):
            return
        time.sleep(0.5)
    raise RuntimeError("workers did not become ready within 120 s")


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    postgres, redis_url = _service_urls()
    from edgeopt.service.db.migrate import upgrade
    from edgeopt.service.db.session import make_engine
    from tests.service.conftest import with_search_path

    storage = tmp_path_factory.mktemp("topology")
    schema = f"edgeopt_scale_{uuid.uuid4().hex[:12]}"
    admin = make_engine(postgres)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    database_url = with_search_path(postgres, schema)
    upgrade(database_url)
    queue = f"edgeopt-test-{uuid.uuid4().hex[:8]}"  # never another test run's workers
    env = server_env(
        storage, EDGEOPT_DATABASE_URL=database_url, EDGEOPT_BROKER_URL=redis_url, EDGEOPT_TASK_QUEUE=queue
    )
    names = ["w1", "w2"]
    workers = [_start_worker(env, storage, name) for name in names]
    server = LiveServer(storage, env)
    try:
        server.start()
        _wait_ready(storage, names, workers)
        yield Topology(server, workers, env, database_url)
    finally:
        server.stop()
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
        import redis

        redis.Redis.from_url(redis_url).delete(queue)


def _start(top: Topology, model: Path, techniques: list[str]) -> tuple[str, Stream]:
    with top.server.client() as client:
        exp = create_experiment(client, model, "pytorch", techniques=techniques, epochs=1)
        stream = Stream(top.server, exp["id"])
        stream.next(timeout=20)  # the snapshot
        assert client.post(f"/api/experiments/{exp['id']}/start").status_code == 202
    return exp["id"], stream


def test_two_workers_complete_an_experiment_with_the_websocket_contract_and_record_who_ran_each_technique(
    topology: Topology, torch_demo_file: Path
) -> None:
    exp_id, stream = _start(topology, torch_demo_file, FAST)
    final = stream.until(lambda m: m["type"] in TERMINAL, timeout=600)
    assert final["type"] == "experiment_completed", final
    kinds = [m["type"] for m in stream.messages]
    assert kinds.count("technique_completed") == len(FAST)
    progress = [m for m in stream.messages if m["type"] == "progress_update"]
    assert progress and progress[-1]["overall_progress"]["completed_techniques"] == len(FAST)
    assert [r["technique"] for r in final["report"]["runs"]] == FAST
    assert final["report"]["recommendation"] is not None
    with topology.server.client() as client:
        exp = client.get(f"/api/experiments/{exp_id}").json()
        assert exp["status"] == "completed"
        results = client.get(f"/api/experiments/{exp_id}/results").json()
        assert [r["status"] for r in results["runs"]] == ["completed", "completed"]
    pool = {p.pid for p in topology.worker_children()}
    rows = topology.query(
        "SELECT technique, worker_host, worker_pid, attempts FROM optimization_runs WHERE experiment_id = :id",
        id=exp_id,
    )
    assert len(rows) == len(FAST)
    for _technique, host, pid, attempts in rows:
        assert host and pid in pool and attempts == 1


def test_kill_9_of_a_worker_mid_technique_retries_it_on_another_and_the_experiment_completes(
    topology: Topology, torch_demo_file: Path
) -> None:
    exp_id, stream = _start(topology, torch_demo_file, ["prune_structured", "ptq_int8"])
    stream.until(lambda m: m["type"] == "progress_update" and m["current_technique"]["name"] == "prune_structured", 600)
    rows = topology.query(
        "SELECT worker_pid FROM optimization_runs WHERE experiment_id = :id AND technique = 'prune_structured'",
        id=exp_id,
    )
    killed = rows[0][0]
    os.kill(killed, signal.SIGKILL)
    final = stream.until(lambda m: m["type"] in TERMINAL, timeout=600)
    assert final["type"] == "experiment_completed", final
    statuses = {r["technique"]: r["status"] for r in final["report"]["runs"]}
    assert statuses == {"prune_structured": "completed", "ptq_int8": "completed"}
    (pid, attempts), = topology.query(
        "SELECT worker_pid, attempts FROM optimization_runs WHERE experiment_id = :id AND technique = "
        "'prune_structured'",
        id=exp_id,
    )
    assert attempts == 2 and pid != killed


def test_cancel_with_tasks_queued_and_running_leaves_nothing_running_then_delete(
    topology: Topology, torch_demo_file: Path
) -> None:
    techniques = ["ptq_int8", "ptq_int4", "prune_structured", "distillation"]
    exp_id, stream = _start(topology, torch_demo_file, techniques)
    stream.until(lambda m: m["type"] == "progress_update" and m["current_technique"]["name"] in techniques, 600)
    with topology.server.client() as client:
        assert client.post(f"/api/experiments/{exp_id}/cancel").status_code == 202
        final = stream.until(lambda m: m["type"] in TERMINAL, timeout=30)
        assert final["type"] == "experiment_cancelled"
        assert client.get(f"/api/experiments/{exp_id}").json()["status"] == "cancelled"
        deadline = time.monotonic() + 30
        while (active := topology.active_tasks(exp_id)) and time.monotonic() < deadline:
            time.sleep(1)
        assert active == []
        finished = topology.query(
            "SELECT count(*) FROM optimization_runs WHERE experiment_id = :id AND status IN "
            "('completed', 'failed', 'skipped')",
            id=exp_id,
        )[0][0]
        assert finished < len(techniques)  # the queued ones never ran
        assert client.delete(f"/api/experiments/{exp_id}").status_code == 204
    time.sleep(2)  # a revoked task reaching a worker now must not write for the deleted experiment
    assert topology.active_tasks(exp_id) == []
    assert topology.query("SELECT count(*) FROM optimization_runs WHERE experiment_id = :id", id=exp_id)[0][0] == 0
