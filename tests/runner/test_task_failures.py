"""What a Celery task's failure leaves behind: a sentence on the technique or the experiment, never a stuck run.

Celery stops a task past ``task_time_limit`` by killing its pool child and then calls the task's ``on_failure`` in
the worker's main process (celery.worker.request.Request.on_timeout); these tests call that same hook with the
same exception on a real database, so a technique past the limit ends ``failed`` and the experiment still finishes.
The topology tests (test_scale.py) cover the tasks on real workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import TimeLimitExceeded
from sqlalchemy import select

from edgeopt.pipeline import ExperimentSpec
from edgeopt.service import worker
from edgeopt.service.db.migrate import upgrade
from edgeopt.service.db.models import Experiment, OptimizationRun
from edgeopt.service.db.session import make_engine, make_session_factory, session_scope
from edgeopt.settings import Settings

TOKEN = "a" * 32
BASELINE = {
    "accuracy": 0.9,
    "size_bytes": 1000,
    "compressed_size_bytes": 900,
    "params": 10,
    "flops": 100,
    "latency_ms": {"host": 1.0, "host_p90": 1.2},
    "artifact": "baseline.pt2",
}


class Setup:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.url = f"sqlite:///{tmp_path / 'edgeopt.db'}"
        upgrade(self.url)
        self.engine = make_engine(self.url)
        self.sessions = make_session_factory(self.engine)
        self.tmp = tmp_path
        self.sent: list[tuple[str, str]] = []
        settings = Settings(_env_file=None, database_url=self.url, storage_dir=tmp_path, task_time_limit_s=90)  # type: ignore[call-arg]
        monkeypatch.setattr(worker, "get_settings", lambda: settings)
        monkeypatch.setattr(worker.app, "send_task", lambda name, args, task_id: self.sent.append((name, task_id)))

    def experiment(self, techniques: list[str], runs: dict[str, str], status: str = "running") -> dict[str, Any]:
        """A started experiment with its baseline and the given run statuses; the task payload of this start."""
        with session_scope(self.sessions) as session:
            exp = Experiment(
                name="t", framework="pytorch", dataset="digits", device="rpi4", goal="balanced",
                techniques=techniques, status=status, run_token=TOKEN, baseline=BASELINE,
            )  # fmt: skip
            session.add(exp)
            session.flush()
            for technique, run_status in runs.items():
                session.add(OptimizationRun(experiment_id=exp.id, technique=technique, status=run_status, attempts=1))
            experiment_id = exp.id
        spec = ExperimentSpec(
            framework="pytorch", dataset="digits", device="rpi4", out_dir=self.tmp / "out",
            model=self.tmp / "model.pt2", techniques=techniques, experiment_id=experiment_id,
        )  # fmt: skip
        return {"spec": spec.to_payload(), "token": TOKEN}

    def status(self, experiment_id: str) -> tuple[str, str | None, dict[str, tuple[str, str | None]]]:
        with session_scope(self.sessions) as session:
            exp = session.get(Experiment, experiment_id)
            assert exp is not None
            runs = session.scalars(select(OptimizationRun).where(OptimizationRun.experiment_id == experiment_id))
            return exp.status, exp.error, {run.technique: (run.status, run.error) for run in runs}


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    made = Setup(tmp_path, monkeypatch)
    yield made
    made.engine.dispose()


def _exp_id(payload: dict[str, Any]) -> str:
    return str(payload["spec"]["experiment_id"])


def test_a_technique_past_the_hard_time_limit_fails_with_a_sentence_and_the_experiment_finishes(setup: Setup) -> None:
    payload = setup.experiment(["ptq_int8", "ptq_int4"], {"ptq_int8": "failed", "ptq_int4": "running"})
    worker.run_technique.on_failure(TimeLimitExceeded(90), "task-id", [payload, "ptq_int4"], {}, None)
    status, _error, runs = setup.status(_exp_id(payload))
    run_status, message = runs["ptq_int4"]
    assert run_status == "failed"
    assert message is not None and "time limit of 90 s" in message and "EDGEOPT_TASK_TIME_LIMIT_S" in message
    assert "TimeLimitExceeded" not in message
    assert status == "running"  # the finish task completes it
    assert setup.sent == [(worker.TASK_FINISH, worker.task_id(_exp_id(payload), TOKEN, "finish"))]


def test_a_technique_past_the_limit_before_the_others_finish_leaves_the_finish_to_the_last_one(setup: Setup) -> None:
    payload = setup.experiment(["ptq_int8", "ptq_int4"], {"ptq_int8": "running", "ptq_int4": "running"})
    worker.run_technique.on_failure(TimeLimitExceeded(90), "task-id", [payload, "ptq_int4"], {}, None)
    assert setup.status(_exp_id(payload))[2]["ptq_int4"][0] == "failed"
    assert setup.sent == []


def test_the_baseline_past_the_time_limit_fails_the_experiment_with_a_sentence(setup: Setup) -> None:
    payload = setup.experiment(["ptq_int8"], {})
    worker.run_baseline.on_failure(TimeLimitExceeded(90), "task-id", [payload], {}, None)
    status, error, _runs = setup.status(_exp_id(payload))
    assert status == "failed"
    assert error is not None and error.startswith("Measuring the original model ran past the time limit of 90 s")


def test_an_unexpected_error_outside_the_pipeline_fails_the_technique_without_its_text(setup: Setup) -> None:
    payload = setup.experiment(["ptq_int8"], {"ptq_int8": "running"})
    worker.run_technique.on_failure(ZeroDivisionError("division by zero"), "task-id", [payload, "ptq_int8"], {}, None)
    run_status, message = setup.status(_exp_id(payload))[2]["ptq_int8"]
    assert run_status == "failed" and message is not None
    assert "internal error" in message and "ZeroDivision" not in message and "division by zero" not in message


def test_a_failure_of_a_cancelled_experiment_changes_nothing(setup: Setup) -> None:
    payload = setup.experiment(["ptq_int8"], {}, status="cancelled")
    worker.run_technique.on_failure(TimeLimitExceeded(90), "task-id", [payload, "ptq_int8"], {}, None)
    assert setup.status(_exp_id(payload)) == ("cancelled", None, {})
    assert setup.sent == []
