"""The scaled-out topology as real processes: ``edgeopt serve`` + two ``edgeopt worker`` + PostgreSQL + Redis.

Nothing is faked: the API only enqueues on Redis (Celery), the workers run the techniques as tasks and write to
PostgreSQL, and the tests watch the same WebSocket and HTTP API a user does. PostgreSQL and Redis come from
``EDGEOPT_TEST_POSTGRES_URL`` / ``EDGEOPT_TEST_REDIS_URL``; without them the tests skip, but with
``EDGEOPT_REQUIRE_SERVICES=1`` (CI) a missing or unreachable service fails them.

One topology (started once per module, about half a minute) serves three cases, each an experiment on the demo
model: the API killed and restarted mid-run (which also checks the plain two-worker run: WebSocket contract, report,
worker recorded per run); ``kill -9`` of a worker mid-technique; cancel with tasks queued and running, then delete.
With ``EDGEOPT_TEST_ALL_FAMILIES=1`` a fourth runs all seven techniques on the workers and through ``edgeopt
optimize`` with the same seed and compares every figure (minutes: not in ``make test``). A RabbitMQ case runs where
``EDGEOPT_TEST_AMQP_URL`` is set. A task past the time limit is covered in test_task_failures.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from edgeopt.catalog import TECHNIQUE_NAMES
from tests.runner.live import TERMINAL, LiveServer, Stream, create_experiment, report_figures, server_env

pytestmark = pytest.mark.slow
REQUIRE_ENV = "EDGEOPT_REQUIRE_SERVICES"
FAST = ["ptq_int8", "ptq_int4"]
ALL = os.environ.get("EDGEOPT_TEST_ALL_FAMILIES") == "1"


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


@contextmanager
def _running_topology(
    storage: Path, postgres: str, broker_url: str, names: list[str], **extra: str
) -> Iterator[Topology]:
    """``edgeopt serve`` and one ``edgeopt worker`` per name on ``broker_url``, in a PostgreSQL schema of their own."""
    from edgeopt.service.db.migrate import upgrade
    from edgeopt.service.db.session import make_engine
    from tests.service.conftest import with_search_path

    schema = f"edgeopt_scale_{uuid.uuid4().hex[:12]}"
    admin = make_engine(postgres)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    database_url = with_search_path(postgres, schema)
    upgrade(database_url)
    queue = f"edgeopt-test-{uuid.uuid4().hex[:8]}"  # never another test run's workers
    env = server_env(
        storage, EDGEOPT_DATABASE_URL=database_url, EDGEOPT_BROKER_URL=broker_url, EDGEOPT_TASK_QUEUE=queue, **extra
    )
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
        from kombu import Connection

        with Connection(broker_url) as broker:
            broker.default_channel.queue_delete(queue)


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """Serve + two workers on Redis, shared by the tests of this module (starting it costs half a minute)."""
    postgres, redis_url = _service_urls()
    with _running_topology(tmp_path_factory.mktemp("topology"), postgres, redis_url, ["w1", "w2"]) as top:
        yield top


def _start(top: Topology, model: Path, techniques: list[str]) -> tuple[str, Stream]:
    with top.server.client() as client:
        exp = create_experiment(client, model, "pytorch", techniques=techniques, epochs=1)
        stream = Stream(top.server, exp["id"])
        stream.next(timeout=20)  # the snapshot
        assert client.post(f"/api/experiments/{exp['id']}/start").status_code == 202
    return exp["id"], stream


def _cli_report(model: Path, out: Path, techniques: list[str], env: dict[str, str]) -> dict[str, Any]:
    """The same experiment through ``edgeopt optimize`` (seed 0, as the service's): its report.json."""
    command = [sys.executable, "-m", "edgeopt.cli", "optimize", str(model), "--framework", "pytorch",
               "--dataset", "digits", "--device", "rpi4", "--techniques", ",".join(techniques), "--epochs", "1",
               "--seed", "0", "--out", str(out)]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "report.json").read_text())


def test_the_api_restarted_mid_run_loses_nothing_a_worker_finished(topology: Topology, torch_demo_file: Path) -> None:
    """Two workers run the techniques at once; the API is killed after the first result and started again.

    Also the plain case: the WebSocket contract, the report, and the worker (host, pid) recorded on each run.
    """
    exp_id, stream = _start(topology, torch_demo_file, FAST)
    first = stream.until(lambda m: m["type"] == "technique_completed", timeout=600)
    assert [m for m in stream.messages if m["type"] == "progress_update"]
    (before,) = topology.query(
        "SELECT status, finished_at, worker_pid FROM optimization_runs WHERE experiment_id = :id AND technique = :t",
        id=exp_id,
        t=first["run"]["technique"],
    )
    assert before[0] == "completed"
    topology.server.kill()  # a crash, not a clean stop: the API gets no chance to tidy up
    stream.close()
    topology.server.start()
    with topology.server.client() as client:
        assert client.get(f"/api/experiments/{exp_id}").json()["status"] in ("running", "completed")
    stream = Stream(topology.server, exp_id)
    snapshot = stream.next(timeout=20)
    assert first["run"]["technique"] in {run["technique"] for run in snapshot["runs"]}
    if snapshot["experiment"]["status"] == "running":
        final = stream.until(lambda m: m["type"] in TERMINAL, timeout=600)
        assert final["type"] == "experiment_completed", final
    with topology.server.client() as client:
        exp = client.get(f"/api/experiments/{exp_id}").json()
        assert exp["status"] == "completed", exp
        results = client.get(f"/api/experiments/{exp_id}/results").json()
    assert [r["technique"] for r in results["runs"]] == FAST
    assert [r["status"] for r in results["runs"]] == ["completed", "completed"]
    assert results["recommendation"] is not None
    (after,) = topology.query(
        "SELECT status, finished_at, worker_pid FROM optimization_runs WHERE experiment_id = :id AND technique = :t",
        id=exp_id,
        t=first["run"]["technique"],
    )
    assert after == before  # stored once, by the worker, untouched by the restart
    pool = {p.pid for p in topology.worker_children()}
    rows = topology.query(
        "SELECT technique, worker_host, worker_pid, attempts FROM optimization_runs WHERE experiment_id = :id",
        id=exp_id,
    )
    assert len(rows) == len(FAST)
    for _technique, host, pid, attempts in rows:
        assert host and pid in pool and attempts == 1


@pytest.mark.skipif(not ALL, reason="all seven techniques twice: EDGEOPT_TEST_ALL_FAMILIES=1 (CI time)")
def test_the_same_seed_gives_the_same_figures_for_every_technique_from_the_cli_and_the_service(
    topology: Topology, torch_demo_file: Path, tmp_path: Path
) -> None:
    techniques = list(TECHNIQUE_NAMES)
    exp_id, stream = _start(topology, torch_demo_file, techniques)
    final = stream.until(lambda m: m["type"] in TERMINAL, timeout=3600)
    assert final["type"] == "experiment_completed", final
    cli = _cli_report(torch_demo_file, tmp_path / "cli", techniques, server_env(tmp_path))
    assert sorted(report_figures(cli)) == sorted(techniques)
    assert report_figures(cli) == report_figures(final["report"])


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
    ((pid, attempts),) = topology.query(
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
        unfinished = topology.query(
            "SELECT technique, status FROM optimization_runs WHERE experiment_id = :id AND status IN "
            "('pending', 'running')",
            id=exp_id,
        )
        assert unfinished == []  # what the cancel stopped does not show as running
        runs = client.get(f"/api/experiments/{exp_id}/results").json()["runs"]
        assert all(run["status"] in ("completed", "failed", "skipped") for run in runs)
        assert client.delete(f"/api/experiments/{exp_id}").status_code == 204
    time.sleep(2)  # a revoked task reaching a worker now must not write for the deleted experiment
    assert topology.active_tasks(exp_id) == []
    assert topology.query("SELECT count(*) FROM optimization_runs WHERE experiment_id = :id", id=exp_id)[0][0] == 0


def test_rabbitmq_as_broker_runs_an_experiment_to_the_end(tmp_path: Path, torch_demo_file: Path) -> None:
    """The same topology with RabbitMQ as broker (progress still on Redis). Runs where EDGEOPT_TEST_AMQP_URL is set;
    CI sets it (.ci/run), and with EDGEOPT_REQUIRE_SERVICES=1 an unset URL or an unreachable broker fails."""
    amqp = os.environ.get("EDGEOPT_TEST_AMQP_URL")
    if not amqp:
        _unavailable("EDGEOPT_TEST_AMQP_URL is not set (e.g. amqp://guest:guest@127.0.0.1:5672//)")
    postgres, redis_url = _service_urls()
    from kombu import Connection

    try:
        with Connection(amqp, connect_timeout=3) as broker:
            broker.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001
        _unavailable(f"RabbitMQ at {amqp} is unreachable: {exc}")
    with _running_topology(tmp_path, postgres, amqp, ["r1"], EDGEOPT_REDIS_URL=redis_url) as top:
        exp_id, stream = _start(top, torch_demo_file, ["ptq_int8"])
        final = stream.until(lambda m: m["type"] in TERMINAL, timeout=600)
        assert final["type"] == "experiment_completed", final
        assert [m["type"] for m in stream.messages].count("technique_completed") == 1
        ((pid, attempts),) = top.query(
            "SELECT worker_pid, attempts FROM optimization_runs WHERE experiment_id = :id", id=exp_id
        )
        assert pid in {p.pid for p in top.worker_children()} and attempts == 1


def test_a_technique_past_the_time_limit_is_stopped_on_the_worker_and_the_experiment_finishes(
    tmp_path: Path, torch_demo_file: Path
) -> None:
    """A real worker with a 60 s limit per task: Celery kills the pool child running a 100-epoch QAT (minutes of
    work), the run fails with the sentence that names the limit and the setting, and the experiment still finishes.
    The demo's baseline takes 10 to 30 s, well inside the limit."""
    postgres, redis_url = _service_urls()
    with _running_topology(tmp_path, postgres, redis_url, ["t1"], EDGEOPT_TASK_TIME_LIMIT_S="60") as top:
        with top.server.client() as client:
            exp = create_experiment(
                client,
                torch_demo_file,
                "pytorch",
                techniques=["qat_int8"],
                technique_configs={"qat_int8": {"epochs": 100}},
            )
            stream = Stream(top.server, exp["id"])
            stream.next(timeout=20)  # the snapshot
            assert client.post(f"/api/experiments/{exp['id']}/start").status_code == 202
        final = stream.until(lambda m: m["type"] in TERMINAL, timeout=600)
        assert final["type"] == "experiment_completed", final
        (run,) = final["report"]["runs"]
        assert run["status"] == "failed", run
        assert "time limit of 60 s" in run["error"] and "EDGEOPT_TASK_TIME_LIMIT_S" in run["error"]
        assert "TimeLimitExceeded" not in run["error"]
        assert top.active_tasks(exp["id"]) == []
        assert "Hard time limit (60.0s) exceeded" in (tmp_path / "t1.log").read_text()  # Celery's kill, not ours
