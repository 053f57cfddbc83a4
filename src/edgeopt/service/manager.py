"""The API side of running experiments: which experiments start, and how a cancel reaches their work.

Two managers with the same interface for the routes (``kick`` after a start, ``cancel``):

``JobManager`` (default, no broker): each started experiment gets its own spawned process (``service.worker.
worker_main``; crash isolation, memory returned to the OS when it ends). The worker sends its progress events over a
multiprocessing queue; a pump thread here hands them to a ``service.relay.Relay``. Cancellation is a multiprocessing
event the pipeline checks at every stage boundary; a worker that ignores it past a grace period is terminated. A
worker that dies leaves the experiment ``failed`` with the reason, and every run it finished is kept.

``CeleryManager`` (``EDGEOPT_BROKER_URL`` set): only enqueues. It claims queued experiments (``queued -> running``
with a new ``run_token``) and sends each one's ``edgeopt.baseline`` task; ``edgeopt worker`` processes do the rest
and write the results themselves. A cancel moves the experiment to ``cancelled`` and revokes its tasks, queued and
running (its claimed but unfinished runs are removed; finished ones are kept). An API restart leaves running
experiments to their workers: it neither interrupts them nor sends their tasks again.

Both describe an experiment the same way: ``experiment_spec`` builds its one frozen ``ExperimentSpec``.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edgeopt.catalog import TECHNIQUE_NAMES
from edgeopt.errors import InvalidInput
from edgeopt.pipeline import ExperimentSpec
from edgeopt.preprocessing import Preprocessing
from edgeopt.report import Constraints
from edgeopt.service import messages
from edgeopt.service.db.models import Experiment, ModelFile, utcnow
from edgeopt.service.db.session import session_scope
from edgeopt.service.events import LocalBroker, make_broker
from edgeopt.service.relay import (
    CANCELLED_BEFORE_START,
    CANCELLED_RUNNING,
    INTERRUPTED_REASON,
    Relay,
    artifacts_dir,
)
from edgeopt.service.status import transition
from edgeopt.settings import Settings

log = logging.getLogger(__name__)

CANCEL_GRACE_S = 30.0

__all__ = [
    "CANCELLED_BEFORE_START",
    "CeleryManager",
    "JobManager",
    "artifacts_dir",
    "experiment_spec",
    "lifespan",
]


def experiment_spec(session: Session, settings: Settings, exp: Experiment) -> ExperimentSpec:
    """The experiment's one description, from its row: what a worker process or a Celery task receives."""
    original = exp.file_with_role("original")
    dataset = exp.dataset
    dataset_label = exp.dataset
    if dataset.startswith("custom:"):
        file_id = dataset.split(":", 1)[1]
        stored = session.get(ModelFile, file_id)
        dataset = str(settings.storage_dir / stored.path) if stored else dataset
        dataset_label = stored.original_filename if stored else dataset
    return ExperimentSpec(
        framework=exp.framework,
        dataset=dataset,
        dataset_label=dataset_label,
        device=exp.device,
        out_dir=artifacts_dir(settings, exp.id),
        model=settings.storage_dir / original.path if original else None,
        arch=exp.arch,
        goal=exp.goal,
        techniques=list(exp.techniques) or list(TECHNIQUE_NAMES),
        constraints=Constraints(**(exp.constraints or {})),
        epochs=exp.epochs,
        technique_configs=dict(exp.technique_configs or {}),
        preprocessing=Preprocessing.model_validate(exp.preprocessing) if exp.preprocessing else None,
        time_budget_s=exp.time_budget_s,
        experiment_id=exp.id,
    )


class _Publisher:
    """Order-keeping, thread-safe publishing onto the API's channel broker from relay threads."""

    def __init__(self, broker: LocalBroker, loop: asyncio.AbstractEventLoop) -> None:
        self.broker = broker
        self.loop = loop
        # One publisher task drains this queue so messages reach the channel in the order they were sent,
        # even when publishing awaits the network (Redis).
        self._outbox: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="edgeopt-publisher")

    async def stop(self) -> None:
        await self._outbox.put(None)
        if self._task is not None:
            await self._task

    async def _loop(self) -> None:
        while (item := await self._outbox.get()) is not None:
            experiment_id, message = item
            try:
                await self.broker.publish(experiment_id, message)
            except Exception:  # noqa: BLE001 - a channel hiccup must not stop the relay of later messages
                log.exception("publishing to experiment %s failed", experiment_id)

    def publish(self, experiment_id: str, message: dict[str, Any]) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self._outbox.put_nowait, (experiment_id, message))


# ------------------------------------------------------------------------------------------- embedded runner


@dataclass
class Job:
    experiment_id: str
    process: Any
    events: Any
    cancel: Any
    started: float = field(default_factory=time.monotonic)
    cancel_requested_at: float | None = None
    relay: threading.Thread | None = None


class JobManager:
    """Queue, worker processes and relays of one service process (the default, no broker)."""

    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        broker: LocalBroker,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.settings = settings
        self.sessions = session_factory
        self.broker = broker
        self.loop = loop
        self._ctx = mp.get_context("spawn")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._stopping = False
        self._publisher = _Publisher(broker, loop)

    async def start(self) -> None:
        self._publisher.start()
        await asyncio.to_thread(self.recover)

    async def stop(self) -> None:
        await asyncio.to_thread(self.shutdown)
        await self._publisher.stop()

    def publish(self, experiment_id: str, message: dict[str, Any]) -> None:
        """Thread-safe, order-keeping publish from a relay thread."""
        self._publisher.publish(experiment_id, message)

    # -- lifecycle

    def recover(self) -> None:
        """At start-up: runs cut short by a stopped service become ``interrupted``; queued ones are picked up."""
        with session_scope(self.sessions) as session:
            for exp in session.scalars(select(Experiment).where(Experiment.status == "running")).all():
                if transition(session, exp.id, "interrupt", error=INTERRUPTED_REASON):
                    for run in exp.runs:
                        if run.status in ("pending", "running"):
                            session.delete(run)
        self.kick()

    def shutdown(self) -> None:
        self._stopping = True
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            if job.process.is_alive():
                job.process.terminate()
        for job in jobs:
            job.process.join(timeout=10)
        for job in jobs:  # each relay records its experiment as interrupted before the engine is disposed
            if job.relay is not None:
                job.relay.join(timeout=10)

    # -- commands from the routes

    def worker_pid(self, experiment_id: str) -> int | None:
        job = self._jobs.get(experiment_id)
        return job.process.pid if job else None

    def is_active(self, experiment_id: str) -> bool:
        return experiment_id in self._jobs

    def kick(self) -> None:
        """Start queued experiments, oldest first, while fewer than the allowed number run.

        Each one is claimed with the guarded ``queued -> running`` transition and its job described in the same
        transaction; only the claims that won are spawned, after the commit. An experiment deleted or cancelled
        meanwhile is no longer ``queued``, so it never gets a worker.
        """
        if self._stopping:
            return
        with self._lock:
            free = self.settings.max_concurrent_experiments - len(self._jobs)
            if free <= 0:
                return
            jobs = []
            with session_scope(self.sessions) as session:
                queued = session.scalars(
                    select(Experiment.id)
                    .where(Experiment.status == "queued")
                    .order_by(Experiment.updated_at)
                    .limit(free)
                ).all()
                for experiment_id in queued:
                    if transition(session, experiment_id, "run", error=None, started_at=utcnow(), finished_at=None):
                        exp = session.get(Experiment, experiment_id, populate_existing=True)
                        if exp is not None:
                            jobs.append(self._job_description(session, exp))
            for description in jobs:
                self._spawn(description)

    def cancel(self, experiment_id: str) -> bool:
        """Ask a running job to stop at its next stage boundary; True if a worker was running it.

        Taken under the lock ``kick`` holds from claiming an experiment to spawning its worker, so a cancel that
        arrives in between waits for the worker instead of missing it.
        """
        with self._lock:
            job = self._jobs.get(experiment_id)
        if job is None:
            return False
        job.cancel.set()
        job.cancel_requested_at = time.monotonic()
        return True

    # -- internals

    def _job_description(self, session: Session, exp: Experiment) -> dict[str, Any]:
        kept = [run.to_result().model_dump(mode="json") for run in exp.runs if run.status == "completed"]
        return {
            "experiment_id": exp.id,
            "spec": experiment_spec(session, self.settings, exp).to_payload(),
            "settings": self.settings.model_dump(mode="json"),
            "previous_runs": kept,
            "baseline": exp.baseline,
        }

    def _spawn(self, description: dict[str, Any]) -> None:
        from edgeopt.service.worker import worker_main

        events = self._ctx.Queue()
        cancel = self._ctx.Event()
        process = self._ctx.Process(
            target=worker_main,
            args=(description, events, cancel, os.getpid()),
            name=f"edgeopt-worker-{description['experiment_id'][:8]}",
            daemon=True,
        )
        process.start()
        job = Job(description["experiment_id"], process, events, cancel)
        self._jobs[job.experiment_id] = job
        relay = Relay(
            sessions=self.sessions,
            settings=self.settings,
            experiment_id=job.experiment_id,
            spec_payload=description["spec"],
            publish=self.publish,
            baseline=description["baseline"],
            done={run["technique"] for run in description["previous_runs"]},
            stopping=lambda: self._stopping,
        )
        pump = _Pump(self, job, relay)
        job.relay = threading.Thread(target=pump.run, daemon=True, name=f"edgeopt-relay-{job.experiment_id[:8]}")
        job.relay.start()

    def _finished(self, job: Job) -> None:
        with self._lock:
            self._jobs.pop(job.experiment_id, None)
        self.kick()


class _Pump:
    """Reads one worker process's events into its relay until the worker's final message (or its death)."""

    def __init__(self, manager: JobManager, job: Job, relay: Relay) -> None:
        self.manager = manager
        self.job = job
        self.relay = relay
        self.id = job.experiment_id

    def run(self) -> None:
        final: tuple[str, Any] | None = None
        try:
            final = self._pump()
        except Exception:  # noqa: BLE001 - the relay must always leave the experiment in a final state
            log.exception("relay of experiment %s failed", self.id)
            final = ("failed", "The service lost track of this experiment's worker; start it again.")
        finally:
            self.relay.finish(final)
            self.manager._finished(self.job)

    def _pump(self) -> tuple[str, Any]:
        job = self.job
        while True:
            try:
                kind, body = job.events.get(timeout=0.5)
            except queue.Empty:
                if not job.process.is_alive():
                    return self._drain_after_exit()
                self._enforce_cancel_grace()
                continue
            if kind == "event":
                self.relay.on_event(body)
            else:
                return kind, body

    def _drain_after_exit(self) -> tuple[str, Any]:
        try:
            while True:
                kind, body = self.job.events.get(timeout=0.2)
                if kind == "event":
                    self.relay.on_event(body)
                else:
                    return kind, body
        except queue.Empty:
            pass
        if self.job.cancel.is_set():
            return "cancelled", None
        code = self.job.process.exitcode
        return (
            "failed",
            f"The worker process stopped unexpectedly (exit code {code}); completed techniques are kept. "
            "Start the experiment again to run the rest.",
        )

    def _enforce_cancel_grace(self) -> None:
        job = self.job
        if job.cancel_requested_at and time.monotonic() - job.cancel_requested_at > CANCEL_GRACE_S:
            log.warning("experiment %s ignored cancel for %.0f s; terminating its worker", self.id, CANCEL_GRACE_S)
            job.process.terminate()


# ---------------------------------------------------------------------------------------------- Celery mode


class CeleryManager:
    """Enqueues experiments for ``edgeopt worker`` processes; runs nothing itself."""

    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        broker: LocalBroker,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        from edgeopt.service.worker import make_celery

        self.settings = settings
        self.sessions = session_factory
        self.broker = broker
        self.celery = make_celery(settings)
        self._lock = threading.Lock()
        self._publisher = _Publisher(broker, loop)

    async def start(self) -> None:
        self._publisher.start()
        await asyncio.to_thread(self.kick)  # experiments queued while no API ran

    async def stop(self) -> None:
        await self._publisher.stop()

    def is_active(self, experiment_id: str) -> bool:
        with session_scope(self.sessions) as session:
            return session.scalar(select(Experiment.status).where(Experiment.id == experiment_id)) == "running"

    def kick(self) -> None:
        """Claim every queued experiment with a new run token and send its baseline task after the commit."""
        from edgeopt.service.worker import TASK_BASELINE, task_id

        with self._lock:
            sends = []
            with session_scope(self.sessions) as session:
                queued = session.scalars(
                    select(Experiment.id).where(Experiment.status == "queued").order_by(Experiment.updated_at)
                ).all()
                for experiment_id in queued:
                    token = uuid.uuid4().hex
                    claimed = transition(
                        session,
                        experiment_id,
                        "run",
                        error=None,
                        started_at=utcnow(),
                        finished_at=None,
                        run_token=token,
                    )
                    if not claimed:
                        continue
                    exp = session.get(Experiment, experiment_id, populate_existing=True)
                    if exp is None:
                        continue
                    for run in exp.runs:  # a resumed experiment: unfinished runs of the last start start over
                        if run.status in ("pending", "running"):
                            session.delete(run)
                    spec = experiment_spec(session, self.settings, exp)
                    sends.append((experiment_id, token, spec.to_payload()))
            for experiment_id, token, payload in sends:
                self.celery.send_task(
                    TASK_BASELINE,
                    args=[{"spec": payload, "token": token}],
                    task_id=task_id(experiment_id, token, "baseline"),
                )

    def cancel(self, experiment_id: str) -> bool:
        """Cancel a running experiment now and revoke its tasks (queued ones are dropped, running ones stopped)."""
        from edgeopt.service.worker import task_id

        with session_scope(self.sessions) as session:
            exp = session.get(Experiment, experiment_id)
            if exp is None or exp.status != "running":
                return False
            token = exp.run_token or ""
            steps = ["baseline", *(list(exp.techniques) or list(TECHNIQUE_NAMES)), "finish"]
            if not transition(session, experiment_id, "cancel_running", error=CANCELLED_RUNNING, finished_at=utcnow()):
                return False
            # Runs its tasks had claimed but not finished: they are stopped now, so they must not show as running.
            # Finished runs are kept; a task storing one at this instant waits for this lock and still keeps it.
            for run in exp.runs:
                if run.status in ("pending", "running"):
                    session.delete(run)
        ids = [task_id(experiment_id, token, step) for step in steps]
        self.celery.control.revoke(ids, terminate=True, signal="SIGTERM")
        self._publisher.publish(experiment_id, messages.experiment_cancelled(experiment_id))
        return True


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Run inside the app's lifespan (see ``service.app``): the channel broker and the job manager."""
    settings: Settings = app.state.settings
    if settings.broker_url and not settings.channel_url:
        raise InvalidInput(
            "EDGEOPT_BROKER_URL is not a Redis URL, so the workers' live progress needs EDGEOPT_REDIS_URL as well; "
            "set it to the Redis that the API and the workers share."
        )
    broker = make_broker(settings.channel_url if settings.broker_url else settings.redis_url)
    await broker.start()
    app.state.broker = broker
    manager_class = CeleryManager if settings.broker_url else JobManager
    manager = manager_class(settings, app.state.session_factory, broker, asyncio.get_running_loop())
    app.state.jobs = manager
    await manager.start()
    try:
        yield
    finally:
        await manager.stop()
        await broker.stop()
