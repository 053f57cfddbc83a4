"""Where experiments run: the embedded worker process, and the Celery tasks of ``edgeopt worker``.

Embedded (no ``EDGEOPT_BROKER_URL``): ``service.manager.JobManager`` spawns ``worker_main`` per experiment; it runs
``run_experiment`` and sends the events back over a multiprocessing queue to a relay in the API process.

Celery (``EDGEOPT_BROKER_URL`` set): one experiment is a chain of tasks, each taking the experiment's frozen
``ExperimentSpec`` payload:

``edgeopt.baseline``  loads the model and data, measures the baseline, then enqueues one ``edgeopt.technique`` per
                      technique still to run, so N workers run N techniques at once;
``edgeopt.technique`` runs one technique; the task that stores the experiment's last run enqueues
``edgeopt.finish``    re-times every artifact side by side, recommends, and completes the experiment.

Each task writes its results to the database and publishes the same WebSocket messages as the embedded runner
(``service.relay``), so an API restart loses nothing a worker finished. Faults use Celery's own means: late
acknowledgement with ``task_reject_on_worker_lost`` puts the task of a worker that died back on the queue, and the
run row's ``attempts`` lets it run once more only (a second death fails the technique with the reason). A task
past ``EDGEOPT_TASK_TIME_LIMIT_S`` is stopped by Celery's time limit; Celery then calls the task's ``on_failure`` in
the worker's main process (``_EdgeOptTask``), which fails that technique (or, for the baseline and finish tasks, the
experiment) with a sentence, and the experiment still finishes. A whole worker that dies (its main process too, or
its machine) leaves its task unacknowledged on the broker: RabbitMQ redelivers it when the connection drops, Redis
after the visibility timeout, which is tied to the time limit (``celery_config``) so it never hands a task that is
still running to a second worker. A cancel revokes the experiment's tasks (``service.manager.CeleryManager``) and
every task also checks, at each stage boundary, that its experiment is still running under the same start
(``run_token``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from celery import Task

from edgeopt.settings import Settings, get_settings

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2  # a technique whose worker died is run once more, then failed
# Redis hands an unacknowledged task to another worker this long after the time limit: a task still running is
# always past its limit (so killed) by then, and a dead worker's task comes back within limit + margin + sweep.
VISIBILITY_MARGIN_S = 60.0
RESTORE_SWEEP_S = 10  # how often each worker looks for such tasks (kombu's unacked_restore_interval)
CANCEL_CHECK_INTERVAL_S = 0.5
TASK_BASELINE = "edgeopt.baseline"
TASK_TECHNIQUE = "edgeopt.technique"
TASK_FINISH = "edgeopt.finish"


def task_id(experiment_id: str, token: str, step: str) -> str:
    """The id of one task of one start of an experiment (a restart gets a new token, so new ids)."""
    return f"{experiment_id}.{token}.{step}"


# --------------------------------------------------------------------------------------- embedded worker process


def _exit_with_parent(parent_pid: int) -> None:
    """A worker must not outlive the service that started it (a restart marks its experiment ``interrupted``)."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(3)

    threading.Thread(target=watch, daemon=True, name="edgeopt-parent-watch").start()


def worker_main(job: dict[str, Any], events: Any, cancel: Any, parent_pid: int) -> None:
    """Entry point of the embedded worker process: run one experiment, stream its events, end with one message."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    _exit_with_parent(parent_pid)
    with contextlib.suppress(ImportError):  # torch._dynamo before TensorFlow, or torch.export crashes later
        import torch._dynamo  # noqa: F401
    from edgeopt.errors import Cancelled
    from edgeopt.pipeline import ExperimentSpec, _readable_error, run_experiment
    from edgeopt.report import BaselineResult, RunResult

    try:
        report = run_experiment(
            ExperimentSpec.from_payload(job["spec"]),
            on_progress=lambda event: events.put(("event", event.to_dict())),
            cancelled=cancel.is_set,
            settings=Settings(**job["settings"]),
            previous_runs=[RunResult.model_validate(run) for run in job["previous_runs"]],
            previous_baseline=BaselineResult.model_validate(job["baseline"]) if job["baseline"] else None,
        )
    except Cancelled:
        events.put(("cancelled", None))
    except Exception as exc:  # noqa: BLE001 - reported to the user as the experiment's error
        log.exception("experiment %s failed", job["spec"].get("experiment_id"))
        events.put(("failed", _readable_error("The experiment", exc)))
    else:
        events.put(("report", report.model_dump(mode="json")))
    events.close()
    events.join_thread()


# ------------------------------------------------------------------------------------------------- Celery


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings of the API (to send) and of the workers (to run): one place for both."""
    return {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        "task_default_queue": settings.task_queue,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,  # results live in the database, never in a result backend
        "task_acks_late": True,  # a task is acknowledged when it ends, so a worker that dies loses nothing
        "task_reject_on_worker_lost": True,  # ... and its task goes back on the queue (see MAX_ATTEMPTS)
        "task_acks_on_failure_or_timeout": True,  # a task past its time limit is failed (on_failure), not rerun
        "worker_prefetch_multiplier": 1,  # a worker reserves only what it runs: idle workers take the rest
        # One limit, enforced by stopping the worker child: a soft limit would raise inside the technique, whose
        # own error handling would report it as an EdgeOpt bug. _EdgeOptTask.on_failure says what happened.
        "task_time_limit": settings.task_time_limit_s,
        "broker_transport_options": {
            "visibility_timeout": settings.task_time_limit_s + VISIBILITY_MARGIN_S,
            "unacked_restore_interval": RESTORE_SWEEP_S,
            "unacked_restore_throttle": 1,
        },
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "worker_redirect_stdouts": False,  # native libraries print to stderr directly; not worth a log record each
    }


class _EdgeOptTask(Task):  # type: ignore[misc]
    """Every EdgeOpt task: a failure Celery reports (time limit, or an error outside the pipeline) ends in a sentence.

    Celery calls ``on_failure`` in the pool child for an exception the task raised, and in the worker's main process
    for a task it stopped at the time limit. A worker child that died is not a failure here: its task is requeued
    (``task_reject_on_worker_lost``) and ``_claim`` counts the attempts.
    """

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        try:
            record_failure(self.name, args[0], list(args[1:]), exc)
        except Exception:  # noqa: BLE001 - the broker and the log still have the failure
            log.exception("could not record the failure of task %s", task_id)


def make_celery(settings: Settings) -> Any:
    from celery import Celery

    app = Celery("edgeopt", task_cls=_EdgeOptTask)
    app.conf.update(celery_config(settings))
    return app


app = make_celery(get_settings())


@lru_cache(maxsize=4)
def _sessions(url: str) -> Any:
    from edgeopt.service.db.session import make_engine, make_session_factory

    return make_session_factory(make_engine(url))  # created in the pool child, never inherited across a fork


class _Channel:
    """Publishes this worker's messages on the experiment channels the API relays to WebSocket clients."""

    def __init__(self, url: str | None) -> None:
        import redis

        self._redis = redis.Redis.from_url(url) if url else None

    def publish(self, experiment_id: str, message: dict[str, Any]) -> None:
        import json

        from edgeopt.service.events import REDIS_PREFIX

        if self._redis is None:
            return
        try:
            self._redis.publish(f"{REDIS_PREFIX}{experiment_id}", json.dumps(message))
        except Exception:  # noqa: BLE001 - live progress is best effort; the database has the state
            log.exception("publishing to experiment %s failed", experiment_id)


@lru_cache(maxsize=4)
def _channel(url: str | None) -> _Channel:
    return _Channel(url)


class TaskContext:
    """What every task of one experiment needs: settings, sessions, the spec, its relay and its cancel check."""

    def __init__(self, payload: dict[str, Any], sessions: Any = None) -> None:
        from edgeopt.pipeline import ExperimentSpec

        self.settings = get_settings()
        self.sessions = sessions or _sessions(self.settings.resolved_database_url)
        self.spec = ExperimentSpec.from_payload(payload["spec"])
        self.experiment_id = self.spec.experiment_id
        self.token: str = payload["token"]
        self.publish = _channel(self.settings.channel_url).publish
        self._checked = 0.0
        self._stopped = False

    def still_running(self) -> bool:
        """The experiment exists, is running, and under this start (not cancelled, deleted or restarted)."""
        from sqlalchemy import select

        from edgeopt.service.db.models import Experiment
        from edgeopt.service.db.session import session_scope

        with session_scope(self.sessions) as session:
            row = session.execute(
                select(Experiment.status, Experiment.run_token).where(Experiment.id == self.experiment_id)
            ).first()
        return row is not None and row.status == "running" and row.run_token == self.token

    def cancelled(self) -> bool:
        """The pipeline's cancel check, asked at every stage boundary; reads the database at most twice a second."""
        now = time.monotonic()
        if not self._stopped and now - self._checked >= CANCEL_CHECK_INTERVAL_S:
            self._checked = now
            self._stopped = not self.still_running()
        return self._stopped

    def state(self) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """The stored baseline and the finished runs by technique."""
        from edgeopt.service.db.models import Experiment
        from edgeopt.service.db.session import session_scope
        from edgeopt.service.messages import finished_runs

        with session_scope(self.sessions) as session:
            exp = session.get(Experiment, self.experiment_id)
            if exp is None:
                return None, {}
            return exp.baseline, {run.technique: run for run in finished_runs(exp)}

    def relay(self, baseline: dict[str, Any] | None, done: set[str]) -> Any:
        from edgeopt.service.relay import Relay

        return Relay(
            sessions=self.sessions,
            settings=self.settings,
            experiment_id=self.experiment_id,
            spec_payload=self.spec.to_payload(),
            publish=self.publish,
            baseline=baseline,
            done=done,
        )

    def send(self, name: str, step: str, *args: Any) -> None:
        app.send_task(
            name,
            args=[{"spec": self.spec.to_payload(), "token": self.token}, *args],
            task_id=task_id(self.experiment_id, self.token, step),
        )

    def pipeline(self, relay: Any, **kwargs: Any) -> Any:
        from edgeopt.pipeline import Pipeline

        return Pipeline(
            self.spec,
            on_progress=lambda event: relay.on_event(event.to_dict()),
            cancelled=self.cancelled,
            settings=self.settings,
            **kwargs,
        )


def _prepare_process() -> None:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    with contextlib.suppress(ImportError):  # torch._dynamo before TensorFlow, or torch.export crashes later
        import torch._dynamo  # noqa: F401


def _guarded(step: Callable[[TaskContext], None]) -> Callable[[dict[str, Any]], None]:
    """A task body: skipped when its experiment no longer runs under this start; a cancel ends it quietly."""

    def run(payload: dict[str, Any], *args: Any) -> None:
        from edgeopt.errors import Cancelled

        _prepare_process()
        ctx = TaskContext(payload)
        if not ctx.still_running():
            log.info("experiment %s is no longer running this start; task skipped", ctx.experiment_id)
            return
        try:
            step(ctx, *args)  # type: ignore[call-arg]
        except Cancelled:
            log.info("experiment %s cancelled; task stopped", ctx.experiment_id)

    run.__name__ = step.__name__
    run.__doc__ = step.__doc__
    return run


def _fail(ctx: TaskContext, baseline: dict[str, Any] | None, exc: BaseException) -> None:
    from edgeopt.pipeline import _readable_error

    log.exception("experiment %s failed", ctx.experiment_id)
    ctx.relay(baseline, set()).finish(("failed", _readable_error("The experiment", exc)))


def baseline_step(ctx: TaskContext) -> None:
    """Measure the baseline (or keep a resumed experiment's), then fan the remaining techniques out."""
    from edgeopt.report import BaselineResult

    stored, done = ctx.state()
    relay = ctx.relay(stored, set(done))
    previous = BaselineResult.model_validate(stored) if stored else None
    try:
        report = ctx.pipeline(relay, previous_baseline=previous).measure_baseline()
    except Exception as exc:  # noqa: BLE001 - Cancelled is handled by _guarded before this
        from edgeopt.errors import Cancelled

        if isinstance(exc, Cancelled):
            raise
        _fail(ctx, relay.baseline, exc)
        return
    if report.baseline is not None and relay.baseline is None:
        relay.baseline = report.baseline.model_dump(mode="json")
    remaining = [name for name in ctx.spec.ordered_techniques if name not in done]
    # Longest predicted first (the ETA's cost model): workers that free up take the short ones, so the experiment
    # ends soon after its longest technique instead of waiting for one queued last.
    for name in sorted(remaining, key=relay.eta.predicted_seconds, reverse=True):
        ctx.send(TASK_TECHNIQUE, name, name)
    if not remaining:
        ctx.send(TASK_FINISH, "finish")


def _claim(ctx: TaskContext, name: str) -> str:
    """Record this delivery on the run row: 'run', 'done' (a duplicate delivery, or the experiment no longer runs
    under this start) or 'dead' (the worker died twice)."""
    from sqlalchemy import select

    from edgeopt.service.db.models import Experiment, OptimizationRun, utcnow
    from edgeopt.service.db.session import session_scope
    from edgeopt.service.messages import FINISHED_RUN_STATUSES
    from edgeopt.service.relay import this_worker

    host, pid = this_worker()
    with session_scope(ctx.sessions) as session:
        # Locked like the cancel's transition: a cancel either comes first (nothing is claimed) or waits for this.
        current = session.execute(
            select(Experiment.status, Experiment.run_token).where(Experiment.id == ctx.experiment_id).with_for_update()
        ).first()
        if current is None or current.status != "running" or current.run_token != ctx.token:
            return "done"
        row = session.scalar(
            select(OptimizationRun).where(
                OptimizationRun.experiment_id == ctx.experiment_id, OptimizationRun.technique == name
            )
        )
        if row is None:
            row = OptimizationRun(experiment_id=ctx.experiment_id, technique=name, attempts=0)
            session.add(row)
        if row.status in FINISHED_RUN_STATUSES:
            return "done"
        if (row.attempts or 0) >= MAX_ATTEMPTS:
            return "dead"
        row.attempts = (row.attempts or 0) + 1
        row.status = "running"
        row.started_at = utcnow()
        row.worker_host, row.worker_pid = host, pid
        return "run"


def technique_step(ctx: TaskContext, name: str) -> None:
    """Run one technique against the stored baseline; the store of the last run enqueues ``edgeopt.finish``."""
    from edgeopt.report import BaselineResult

    stored, done = ctx.state()
    if stored is None:
        return
    claim = _claim(ctx, name)
    if claim == "done":
        return
    if claim == "dead":
        _fail_technique(
            ctx,
            name,
            f"The worker running {name} stopped unexpectedly twice (killed, or out of memory); the other "
            "techniques' results are unaffected. Start the experiment again to retry it, on a worker with more "
            "memory if it keeps stopping.",
        )
        return
    relay = ctx.relay(stored, set(done))
    ctx.pipeline(relay).run_technique(name, BaselineResult.model_validate(stored))
    if relay.all_done:
        ctx.send(TASK_FINISH, "finish")


def _fail_technique(ctx: TaskContext, name: str, error: str) -> None:
    """Store ``name`` as failed with ``error`` unless it already finished; the last stored run enqueues the finish."""
    from edgeopt.report import RunResult

    stored, done = ctx.state()
    if stored is None or name in done:
        return
    relay = ctx.relay(stored, set(done))
    techniques = ctx.spec.ordered_techniques
    run = RunResult(technique=name, status="failed", error=error)
    relay.on_event(_finished_event(run, techniques.index(name), len(techniques)))
    if relay.all_done:
        ctx.send(TASK_FINISH, "finish")


def _time_limit_sentence(what: str, limit: float) -> str:
    return (
        f"{what} ran past the time limit of {limit:.0f} s per task on the workers and was stopped. Raise "
        "EDGEOPT_TASK_TIME_LIMIT_S on the workers (or run fewer epochs) and start the experiment again."
    )


def record_failure(task_name: str, payload: dict[str, Any], args: list[Any], exc: BaseException) -> None:
    """What Celery reports as a task's failure, stored as the user sees it: a failed technique, else a failed
    experiment; each with a sentence, never the exception's text (that goes to the worker's log).

    Runs in the pool child, or in the worker's main process after a time limit: there it uses an engine of its own,
    disposed at once, so the children it forks later inherit no database connection.
    """
    from celery.exceptions import TimeLimitExceeded

    from edgeopt.service.db.session import make_engine, make_session_factory

    settings = get_settings()
    engine = make_engine(settings.resolved_database_url)
    try:
        ctx = TaskContext(payload, sessions=make_session_factory(engine))
        if not ctx.still_running():
            return
        timed_out = isinstance(exc, TimeLimitExceeded)
        limit = settings.task_time_limit_s
        log.error("task %s of experiment %s failed: %r", task_name, ctx.experiment_id, exc)
        if task_name == TASK_TECHNIQUE:
            name = args[0]
            error = (
                _time_limit_sentence(name, limit)
                if timed_out
                else f"The worker running {name} stopped with an internal error before storing its result; the "
                "other techniques' results are unaffected. Start the experiment again to retry it (the worker's "
                "log has the details)."
            )
            _fail_technique(ctx, name, error + (" The other techniques' results are unaffected." if timed_out else ""))
            return
        what = "Measuring the original model" if task_name == TASK_BASELINE else "Comparing the results"
        reason = (
            _time_limit_sentence(what, limit)
            if timed_out
            else f"{what} stopped with an internal error on the worker; completed techniques are kept. Start the "
            "experiment again (the worker's log has the details)."
        )
        stored, _done = ctx.state()
        ctx.relay(stored, set()).finish(("failed", reason))
    finally:
        engine.dispose()


def _finished_event(run: Any, index: int, total: int) -> dict[str, Any]:
    from edgeopt.progress import ProgressEvent

    return ProgressEvent(
        kind="technique_failed",
        technique=run.technique,
        fraction=1.0,
        technique_index=index,
        total_techniques=total,
        payload={"run": run.model_dump(mode="json")},
    ).to_dict()


def finish_step(ctx: TaskContext) -> None:
    """Re-time the artifacts side by side, recommend, write report.json and complete the experiment."""
    from edgeopt.report import BaselineResult, Report

    stored, done = ctx.state()
    relay = ctx.relay(stored, set(done))
    spec = ctx.spec
    try:
        from edgeopt.service.db.models import Experiment
        from edgeopt.service.db.session import session_scope

        with session_scope(ctx.sessions) as session:
            exp = session.get(Experiment, ctx.experiment_id)
            lineage = dict(exp.lineage or {}) if exp is not None else {}
        report = Report(
            experiment=spec.info(),
            baseline=BaselineResult.model_validate(stored) if stored else None,
            runs=[done[name] for name in spec.ordered_techniques if name in done],
            lineage=lineage,
        )
        report = ctx.pipeline(relay).finish(report)
    except Exception as exc:  # noqa: BLE001
        from edgeopt.errors import Cancelled

        if isinstance(exc, Cancelled):
            raise
        _fail(ctx, stored, exc)
        return
    relay.finish(("report", report.model_dump(mode="json")))


run_baseline = app.task(name=TASK_BASELINE)(_guarded(baseline_step))
run_technique = app.task(name=TASK_TECHNIQUE)(_guarded(technique_step))
run_finish = app.task(name=TASK_FINISH)(_guarded(finish_step))
