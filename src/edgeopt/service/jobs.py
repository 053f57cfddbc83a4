"""The embedded job runner: experiments run in worker processes, never in the API's event loop.

Each started experiment gets its own spawned process (crash isolation, memory returned to the OS when it ends)
running the engine's ``Pipeline``. The worker sends its progress events over a multiprocessing queue; a relay
thread in the API process turns them into database rows (``ExperimentProgress``, ``OptimizationRun``,
``ModelFile``) and publishes WebSocket messages on the experiment's channel. Cancellation is a multiprocessing
event the pipeline checks at every stage boundary; a worker that ignores it past a grace period is terminated.
A worker that dies leaves the experiment ``failed`` with the reason, and every run it finished is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import queue
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edgeopt.catalog import TECHNIQUE_NAMES
from edgeopt.eta import EtaModel
from edgeopt.report import BaselineResult, RunResult
from edgeopt.service import messages
from edgeopt.service.db.models import Experiment, ExperimentProgress, ModelFile, OptimizationRun, utcnow
from edgeopt.service.db.session import session_scope
from edgeopt.service.events import LocalBroker, make_broker
from edgeopt.service.status import transition
from edgeopt.settings import Settings

log = logging.getLogger(__name__)

CANCEL_GRACE_S = 30.0
CANCELLED_BEFORE_START = "Cancelled by the user before it started."
INTERRUPTED_REASON = (
    "The service stopped while this experiment was running; start it again to finish the remaining techniques "
    "(completed ones are kept)."
)


def artifacts_dir(settings: Settings, experiment_id: str) -> Path:
    return settings.models_dir / experiment_id / "artifacts"


# --------------------------------------------------------------------------------------------- worker process


def _exit_with_parent(parent_pid: int) -> None:
    """A worker must not outlive the service that started it (a restart marks its experiment ``interrupted``)."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(3)

    threading.Thread(target=watch, daemon=True, name="edgeopt-parent-watch").start()


def worker_main(job: dict[str, Any], events: Any, cancel: Any, parent_pid: int) -> None:
    """Entry point of the worker process: run one experiment, stream its events, end with one final message."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    _exit_with_parent(parent_pid)
    with contextlib.suppress(ImportError):  # torch._dynamo before TensorFlow, or torch.export crashes later
        import torch._dynamo  # noqa: F401
    from edgeopt.errors import Cancelled
    from edgeopt.pipeline import ExperimentSpec, Pipeline, _readable_error
    from edgeopt.preprocessing import Preprocessing
    from edgeopt.report import Constraints

    settings = Settings(**job["settings"])
    spec = ExperimentSpec(
        framework=job["framework"],
        dataset=job["dataset"],
        dataset_label=job["dataset_label"],
        device=job["device"],
        out_dir=Path(job["out_dir"]),
        model=Path(job["model"]) if job["model"] else None,
        arch=job["arch"],
        goal=job["goal"],
        techniques=job["techniques"],
        constraints=Constraints(**job["constraints"]),
        epochs=job["epochs"],
        technique_configs=job["technique_configs"],
        preprocessing=Preprocessing.model_validate(job["preprocessing"]) if job["preprocessing"] else None,
        time_budget_s=job.get("time_budget_s"),
        experiment_id=job["experiment_id"],
    )
    pipeline = Pipeline(
        spec,
        on_progress=lambda event: events.put(("event", event.to_dict())),
        cancelled=cancel.is_set,
        settings=settings,
        previous_runs=[RunResult.model_validate(run) for run in job["previous_runs"]],
        previous_baseline=BaselineResult.model_validate(job["baseline"]) if job["baseline"] else None,
    )
    try:
        report = pipeline.run()
    except Cancelled:
        events.put(("cancelled", None))
    except Exception as exc:  # noqa: BLE001 - reported to the user as the experiment's error
        events.put(("failed", _readable_error("The experiment", exc)))
    else:
        events.put(("report", report.model_dump(mode="json")))
    events.close()
    events.join_thread()


# ------------------------------------------------------------------------------------------------ API side


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
    """Queue, workers and relays of one service process."""

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
        # One publisher task drains this queue so messages reach the channel in the order the worker sent them,
        # even when publishing awaits the network (Redis).
        self._outbox: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        self._publisher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._publisher = asyncio.create_task(self._publish_loop(), name="edgeopt-publisher")
        await asyncio.to_thread(self.recover)

    async def stop(self) -> None:
        await asyncio.to_thread(self.shutdown)
        await self._outbox.put(None)
        if self._publisher is not None:
            await self._publisher

    async def _publish_loop(self) -> None:
        while (item := await self._outbox.get()) is not None:
            experiment_id, message = item
            try:
                await self.broker.publish(experiment_id, message)
            except Exception:  # noqa: BLE001 - a channel hiccup must not stop the relay of later messages
                log.exception("publishing to experiment %s failed", experiment_id)

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
        original = exp.file_with_role("original")
        dataset = exp.dataset
        dataset_label = exp.dataset
        if dataset.startswith("custom:"):
            file_id = dataset.split(":", 1)[1]
            stored = session.get(ModelFile, file_id)
            dataset = str(self.settings.storage_dir / stored.path) if stored else dataset
            dataset_label = stored.original_filename if stored else dataset
        kept = [run.to_result().model_dump(mode="json") for run in exp.runs if run.status == "completed"]
        return {
            "experiment_id": exp.id,
            "settings": self.settings.model_dump(mode="json"),
            "framework": exp.framework,
            "dataset": dataset,
            "dataset_label": dataset_label,
            "device": exp.device,
            "out_dir": str(artifacts_dir(self.settings, exp.id)),
            "model": str(self.settings.storage_dir / original.path) if original else None,
            "arch": exp.arch,
            "goal": exp.goal,
            "techniques": list(exp.techniques) or list(TECHNIQUE_NAMES),
            "constraints": dict(exp.constraints or {}),
            "epochs": exp.epochs,
            "technique_configs": dict(exp.technique_configs or {}),
            "preprocessing": exp.preprocessing,
            "time_budget_s": exp.time_budget_s,
            "previous_runs": kept,
            "baseline": exp.baseline,
        }

    def _spawn(self, description: dict[str, Any]) -> None:
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
        relay = Relay(self, job, description)
        job.relay = threading.Thread(target=relay.run, daemon=True, name=f"edgeopt-relay-{job.experiment_id[:8]}")
        job.relay.start()

    def _finished(self, job: Job) -> None:
        with self._lock:
            self._jobs.pop(job.experiment_id, None)
        self.kick()

    def publish(self, experiment_id: str, message: dict[str, Any]) -> None:
        """Thread-safe, order-keeping publish from a relay thread."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self._outbox.put_nowait, (experiment_id, message))


class Relay:
    """Reads one worker's events and turns them into database state and channel messages."""

    def __init__(self, manager: JobManager, job: Job, description: dict[str, Any]) -> None:
        self.manager = manager
        self.job = job
        self.id = job.experiment_id
        self.techniques: list[str] = [t for t in TECHNIQUE_NAMES if t in description["techniques"]]
        epochs = description["epochs"]
        self.eta = EtaModel(
            techniques=[t for t in self.techniques if t not in {r["technique"] for r in description["previous_runs"]}],
            epochs={t: epochs for t in self.techniques} if epochs is not None else {},
            framework=description["framework"],
            model_bytes=_file_size(description["model"]),
        )
        self.completed = 0
        self.baseline: dict[str, Any] | None = description["baseline"]
        self.last_run: dict[str, Any] | None = None

    def run(self) -> None:
        final: tuple[str, Any] | None = None
        try:
            final = self._pump()
        except Exception:  # noqa: BLE001 - the relay must always leave the experiment in a final state
            log.exception("relay of experiment %s failed", self.id)
            final = ("failed", "The service lost track of this experiment's worker; start it again.")
        finally:
            self._finish(final)
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
                self._on_event(body)
            else:
                return kind, body

    def _drain_after_exit(self) -> tuple[str, Any]:
        try:
            while True:
                kind, body = self.job.events.get(timeout=0.2)
                if kind == "event":
                    self._on_event(body)
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

    # -- events

    def _on_event(self, event: dict[str, Any]) -> None:
        from edgeopt.progress import ProgressEvent

        progress_event = ProgressEvent(**event)
        self.eta.observe(progress_event)
        kind = event["kind"]
        if kind == "baseline_measured":
            self.baseline = event["payload"]["baseline"]
            with session_scope(self.manager.sessions) as session:
                exp = session.get(Experiment, self.id)
                if exp is not None:
                    exp.baseline = self.baseline
                    exp.lineage = event["payload"].get("lineage")
            self._progress(event)
        elif kind in ("technique_completed", "technique_failed"):
            run = RunResult.model_validate(event["payload"]["run"])
            self._store_run(run)
            self.completed += 1
            if run.status == "completed":
                self.last_run = run.model_dump(mode="json")
            self.manager.publish(self.id, messages.technique_message(self.id, run))
            self._progress(event)
        elif kind in ("progress", "technique_started", "experiment_started"):
            self._progress(event)

    def _progress(self, event: dict[str, Any]) -> None:
        technique = event.get("technique")
        index = event.get("technique_index", 0)
        fraction = event.get("fraction", 0.0) if event["kind"] == "progress" else 0.0
        if event["kind"] in ("technique_completed", "technique_failed"):
            fraction = 1.0
        update = messages.progress_update(
            experiment_id=self.id,
            technique=technique if technique != "baseline" else None,
            stage=event.get("stage") or messages.default_stage(event["kind"], technique),
            technique_fraction=fraction,
            technique_eta=self.eta.technique_eta(),
            completed=self.completed,
            total=len(self.techniques),
            overall_fraction=messages.overall_fraction(self.completed, len(self.techniques), index, fraction, event),
            overall_eta=self.eta.overall_eta(),
            baseline=self.baseline,
            last_run=self.last_run,
        )
        # Stored before it is published: a snapshot read after any live message is never older than it.
        self._write_progress(update)
        self.manager.publish(self.id, update)

    def _write_progress(self, update: dict[str, Any]) -> None:
        current = update["current_technique"]
        overall = update["overall_progress"]
        with session_scope(self.manager.sessions) as session:
            row = session.scalar(select(ExperimentProgress).where(ExperimentProgress.experiment_id == self.id))
            if row is None:
                row = ExperimentProgress(experiment_id=self.id)
                session.add(row)
            row.current_technique = current["name"]
            row.stage = current["stage"][:200]
            row.technique_percent = current["progress_percent"]
            row.technique_eta_s = current["eta_seconds"]
            row.completed_techniques = overall["completed_techniques"]
            row.total_techniques = overall["total_techniques"]
            row.overall_percent = overall["progress_percent"]
            row.overall_eta_s = overall["eta_seconds"]
            row.metrics = update["metrics"]

    def _store_run(self, run: RunResult) -> None:
        settings = self.manager.settings
        out_dir = artifacts_dir(settings, self.id)
        with session_scope(self.manager.sessions) as session:
            row = session.scalar(
                select(OptimizationRun).where(
                    OptimizationRun.experiment_id == self.id, OptimizationRun.technique == run.technique
                )
            )
            if row is None:
                row = OptimizationRun(experiment_id=self.id, technique=run.technique)
                session.add(row)
            row.apply_result(run)
            row.finished_at = utcnow()
            files = {run.artifact: "artifact"} if run.artifact else {}
            files.update({name: fmt for fmt, name in run.formats.items()})
            for name, fmt in files.items():
                messages.register_artifact(session, settings, self.id, run.technique, out_dir / name, fmt)

    def _finish(self, final: tuple[str, Any] | None) -> None:
        kind, body = final or ("failed", "The experiment stopped without a result.")
        if kind == "failed" and self.manager._stopping:  # its worker was stopped with the service, not by a fault
            kind, body = "interrupted", INTERRUPTED_REASON
        action, error = {
            "report": ("complete", None),
            "cancelled": ("cancel_running", "Cancelled by the user; completed techniques are kept."),
            "interrupted": ("interrupt", INTERRUPTED_REASON),
        }.get(kind, ("fail", str(body)))
        with session_scope(self.manager.sessions) as session:
            if not transition(session, self.id, action, error=error, finished_at=utcnow()):
                log.warning("experiment %s was no longer running when its worker ended", self.id)
                return
            exp = session.get(Experiment, self.id, populate_existing=True)
            if exp is None:
                return
            if kind == "report":
                messages.store_report(session, exp, body)
                if self.baseline:
                    messages.register_artifact(
                        session,
                        self.manager.settings,
                        self.id,
                        "baseline",
                        artifacts_dir(self.manager.settings, self.id) / self.baseline["artifact"],
                        "artifact",
                    )
        if kind == "report":
            self.manager.publish(self.id, messages.experiment_completed(self.id, body))
        elif kind == "cancelled":
            self.manager.publish(self.id, messages.experiment_cancelled(self.id))
        else:
            self.manager.publish(self.id, messages.experiment_failed(self.id, str(body)))


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Run inside the app's lifespan (see ``service.app``): the channel broker and the job manager."""
    settings: Settings = app.state.settings
    broker = make_broker(settings.redis_url)
    await broker.start()
    app.state.broker = broker
    manager = JobManager(settings, app.state.session_factory, broker, asyncio.get_running_loop())
    app.state.jobs = manager
    await manager.start()
    try:
        yield
    finally:
        await manager.stop()
        await broker.stop()


def _file_size(path: str | None) -> int | None:
    """Bytes of the uploaded model for the ETA's prior; None for a named architecture or a missing file."""
    try:
        return Path(path).stat().st_size if path else None
    except OSError:
        return None
