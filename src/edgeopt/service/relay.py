"""Progress events of one experiment turned into database state and channel messages.

The engine's ``Pipeline`` emits ``ProgressEvent``s and knows nothing of SQL or WebSockets. A ``Relay`` stores what
they mean (baseline, runs, artifacts, the progress snapshot) and publishes the WebSocket messages of
``service.messages``. The embedded runner (``service.manager``) runs one in the API process per worker process; a
Celery worker (``service.worker``) runs one per task, so several workers running techniques of the same experiment
merge into one stream: the completed count is read back from the database, where every finished run is stored.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from edgeopt.catalog import TECHNIQUE_NAMES
from edgeopt.eta import EtaModel
from edgeopt.report import RunResult
from edgeopt.service import messages
from edgeopt.service.db.models import Experiment, ExperimentProgress, OptimizationRun, utcnow
from edgeopt.service.db.session import session_scope
from edgeopt.service.messages import FINISHED_RUN_STATUSES
from edgeopt.service.status import transition
from edgeopt.settings import Settings

log = logging.getLogger(__name__)

CANCELLED_BEFORE_START = "Cancelled by the user before it started."
CANCELLED_RUNNING = "Cancelled by the user; completed techniques are kept."
INTERRUPTED_REASON = (
    "The service stopped while this experiment was running; start it again to finish the remaining techniques "
    "(completed ones are kept)."
)

Publish = Callable[[str, dict[str, Any]], None]


def artifacts_dir(settings: Settings, experiment_id: str) -> Path:
    return settings.models_dir / experiment_id / "artifacts"


def this_worker() -> tuple[str, int]:
    """(host, pid) recorded on every run this process produces."""
    return socket.gethostname(), os.getpid()


class Relay:
    """Stores and publishes one experiment's events; ``finish`` moves it to its final status."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        settings: Settings,
        experiment_id: str,
        spec_payload: dict[str, Any],
        publish: Publish,
        baseline: dict[str, Any] | None,
        done: set[str],
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.id = experiment_id
        self.publish = publish
        self.stopping = stopping
        chosen = spec_payload.get("techniques") or TECHNIQUE_NAMES
        self.techniques: list[str] = [t for t in TECHNIQUE_NAMES if t in chosen]
        self.eta = EtaModel.for_experiment(
            spec_payload, [t for t in self.techniques if t not in done], _file_size(spec_payload.get("model"))
        )
        self.completed = len(done & set(self.techniques))
        self.baseline = baseline
        self.last_run: dict[str, Any] | None = None
        self.all_done = False  # set by the store that finished the experiment's last technique

    # -- events

    def on_event(self, event: dict[str, Any]) -> None:
        from edgeopt.progress import ProgressEvent

        progress_event = ProgressEvent(**event)
        self.eta.observe(progress_event)
        kind = event["kind"]
        if kind == "baseline_measured":
            self.baseline = event["payload"]["baseline"]
            with session_scope(self.sessions) as session:
                exp = session.get(Experiment, self.id)
                if exp is not None:
                    exp.baseline = self.baseline
                    exp.lineage = event["payload"].get("lineage")
            self._progress(event)
        elif kind in ("technique_completed", "technique_failed"):
            run = RunResult.model_validate(event["payload"]["run"])
            self.store_run(run)
            if run.status == "completed":
                self.last_run = run.model_dump(mode="json")
            self.publish(self.id, messages.technique_message(self.id, run))
            self._progress(event)
        elif kind in ("progress", "technique_started", "experiment_started"):
            self._progress(event)

    def _progress(self, event: dict[str, Any]) -> None:
        technique = event.get("technique")
        index = event.get("technique_index", 0)
        fraction = event.get("fraction", 0.0) if event["kind"] == "progress" else 0.0
        if event["kind"] in ("technique_completed", "technique_failed"):
            fraction = 1.0
        with session_scope(self.sessions) as session:
            # Other workers finish techniques of this experiment too: the count is the database's, not this relay's.
            self.completed = self._finished(session)
            update = messages.progress_update(
                experiment_id=self.id,
                technique=technique if technique != "baseline" else None,
                stage=event.get("stage") or messages.default_stage(event["kind"], technique),
                technique_fraction=fraction,
                technique_eta=self.eta.technique_eta(),
                completed=self.completed,
                total=len(self.techniques),
                overall_fraction=messages.overall_fraction(
                    self.completed, len(self.techniques), index, fraction, event
                ),
                overall_eta=self.eta.overall_eta(),
                baseline=self.baseline,
                last_run=self.last_run,
            )
            # Stored before it is published: a snapshot read after any live message is never older than it.
            self._write_progress(session, update)
        self.publish(self.id, update)

    def _finished(self, session: Session) -> int:
        count = session.scalar(
            select(func.count())
            .select_from(OptimizationRun)
            .where(
                OptimizationRun.experiment_id == self.id,
                OptimizationRun.technique.in_(self.techniques),
                OptimizationRun.status.in_(FINISHED_RUN_STATUSES),
            )
        )
        return int(count or 0)

    def _write_progress(self, session: Session, update: dict[str, Any]) -> None:
        current = update["current_technique"]
        overall = update["overall_progress"]
        row = session.scalar(select(ExperimentProgress).where(ExperimentProgress.experiment_id == self.id))
        if row is None:
            if session.get(Experiment, self.id) is None:
                return  # deleted meanwhile
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

    def store_run(self, run: RunResult) -> None:
        """Store a finished run and count the experiment's finished runs in the same transaction.

        The experiment's row is locked first (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite serialises writers),
        so of several workers finishing the last techniques at once exactly one sees every run finished and sets
        ``all_done``: that one enqueues the experiment's final step.
        """
        settings = self.settings
        out_dir = artifacts_dir(settings, self.id)
        host, pid = this_worker()
        with session_scope(self.sessions) as session:
            if session.scalar(select(Experiment.id).where(Experiment.id == self.id).with_for_update()) is None:
                return  # deleted meanwhile: nothing to keep
            row = session.scalar(
                select(OptimizationRun).where(
                    OptimizationRun.experiment_id == self.id, OptimizationRun.technique == run.technique
                )
            )
            if row is None:
                row = OptimizationRun(experiment_id=self.id, technique=run.technique)
                session.add(row)
            already = row.status in FINISHED_RUN_STATUSES
            row.apply_result(run)
            row.finished_at = utcnow()
            if not already:
                row.worker_host, row.worker_pid = host, pid
            files = {run.artifact: "artifact"} if run.artifact else {}
            files.update({name: fmt for fmt, name in run.formats.items()})
            for name, fmt in files.items():
                messages.register_artifact(session, settings, self.id, run.technique, out_dir / name, fmt)
            session.flush()
            self.completed = self._finished(session)
        if not already and self.completed == len(self.techniques):
            self.all_done = True

    # -- the end

    def finish(self, final: tuple[str, Any] | None) -> None:
        kind, body = final or ("failed", "The experiment stopped without a result.")
        if kind == "failed" and self.stopping():  # its worker was stopped with the service, not by a fault
            kind, body = "interrupted", INTERRUPTED_REASON
        action, error = {
            "report": ("complete", None),
            "cancelled": ("cancel_running", CANCELLED_RUNNING),
            "interrupted": ("interrupt", INTERRUPTED_REASON),
        }.get(kind, ("fail", str(body)))
        with session_scope(self.sessions) as session:
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
                        self.settings,
                        self.id,
                        "baseline",
                        artifacts_dir(self.settings, self.id) / self.baseline["artifact"],
                        "artifact",
                    )
        if kind == "report":
            self.publish(self.id, messages.experiment_completed(self.id, body))
        elif kind == "cancelled":
            self.publish(self.id, messages.experiment_cancelled(self.id))
        else:
            self.publish(self.id, messages.experiment_failed(self.id, str(body)))


def _file_size(path: str | None) -> int | None:
    """Bytes of the uploaded model for the ETA's prior; None for a named architecture or a missing file."""
    try:
        return Path(path).stat().st_size if path else None
    except OSError:
        return None
