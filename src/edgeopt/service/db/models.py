"""The service's tables (docs/architecture.md section 8), written once for SQLite and PostgreSQL.

Portability rules kept here: string ids (uuid4 hex), ``JSON`` rather than ``JSONB``, ``DateTime(timezone=True)`` read
back as aware UTC datetimes on every backend, no native enums (statuses are short strings checked by the schemas
and the code that writes them), and a naming convention so constraints have the same names in every database.

Where the baseline lives: in ``Experiment.baseline`` (a JSON dump of ``report.BaselineResult``), not as a run row.
The baseline is not a technique; keeping it out of ``optimization_runs`` means every row there is one of the
catalog's techniques and the unique ``(experiment_id, technique)`` constraint stays meaningful.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from edgeopt.report import BaselineResult, LatencyStats, RunResult

ExperimentStatus = Literal["created", "ready", "queued", "running", "completed", "failed", "cancelled", "interrupted"]
EXPERIMENT_STATUSES: tuple[str, ...] = (
    "created",
    "ready",
    "queued",
    "running",
    "completed",
    "failed",
    "cancelled",
    "interrupted",
)
# States in which a worker may be touching the experiment's files: deleting then would pull them from under it.
ACTIVE_STATUSES: frozenset[str] = frozenset({"queued", "running"})
# States in which nothing more happens until the user starts the experiment again.
FINISHED_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled", "interrupted"})

FileRole = Literal["original", "dataset", "artifact"]
# A run row is "pending"/"running" while the job runner works on it, then takes a report RunStatus.
RunRowStatus = Literal["pending", "running", "completed", "failed", "skipped", "cancelled"]

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always comes back aware: SQLite stores no offset and returns naive values."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column; use edgeopt.service.db.models.utcnow()")
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        dict[str, Any]: JSON,
        list[str]: JSON,
        datetime: UTCDateTime,
    }


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), default="")
    framework: Mapped[str] = mapped_column(String(32))
    dataset: Mapped[str] = mapped_column(String(100))  # a preset name, or "custom:<ModelFile id>"
    device: Mapped[str] = mapped_column(String(32))
    goal: Mapped[str] = mapped_column(String(32))
    constraints: Mapped[dict[str, Any]] = mapped_column(default=dict)
    techniques: Mapped[list[str]] = mapped_column(default=list)
    arch: Mapped[str | None] = mapped_column(String(32), default=None)
    epochs: Mapped[int | None] = mapped_column(Integer, default=None)
    technique_configs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    preprocessing: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)  # preprocessing.Preprocessing
    time_budget_s: Mapped[float | None] = mapped_column(Float, default=None)  # strength searches, all together
    status: Mapped[str] = mapped_column(String(16), default="created", index=True)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    baseline: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)  # report.BaselineResult
    lineage: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)  # report.Report.lineage
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    run_token: Mapped[str | None] = mapped_column(String(32), default=None)  # names this start's Celery tasks

    files: Mapped[list[ModelFile]] = relationship(
        back_populates="experiment", cascade="all, delete-orphan", passive_deletes=True, order_by="ModelFile.created_at"
    )
    runs: Mapped[list[OptimizationRun]] = relationship(
        back_populates="experiment", cascade="all, delete-orphan", passive_deletes=True
    )
    recommendation: Mapped[Recommendation | None] = relationship(
        back_populates="experiment", cascade="all, delete-orphan", passive_deletes=True
    )
    progress: Mapped[ExperimentProgress | None] = relationship(
        back_populates="experiment", cascade="all, delete-orphan", passive_deletes=True
    )

    def file_with_role(self, role: FileRole) -> ModelFile | None:
        """The newest file of a role (an experiment keeps one original model and one custom dataset)."""
        matching = [f for f in self.files if f.role == role]
        return matching[-1] if matching else None

    def baseline_result(self) -> BaselineResult | None:
        return BaselineResult.model_validate(self.baseline) if self.baseline is not None else None


class ModelFile(Base):
    """A file the service keeps: the uploaded model, a custom dataset archive, or a technique's artifact.

    ``path`` is relative to the storage dir and always built by the service, never taken from the client.
    """

    __tablename__ = "model_files"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    technique: Mapped[str | None] = mapped_column(String(32), default=None)
    format: Mapped[str] = mapped_column(String(32))  # formats.ModelFormat.kind, "pte", "tflite", "npz", ...
    path: Mapped[str] = mapped_column(String(500), unique=True)
    original_filename: Mapped[str] = mapped_column(String(255), default="")
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    experiment: Mapped[Experiment] = relationship(back_populates="files")


class OptimizationRun(Base):
    """One technique of one experiment.

    The whole ``report.RunResult`` is kept in ``result`` (so a report is rebuilt exactly), and the numbers people
    sort and filter by are copied into columns by ``apply_result``.
    """

    __tablename__ = "optimization_runs"
    __table_args__ = (UniqueConstraint("experiment_id", "technique", name="uq_optimization_runs_experiment_technique"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    technique: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    error: Mapped[str | None] = mapped_column(Text, default=None)
    accuracy: Mapped[float | None] = mapped_column(Float, default=None)
    accuracy_drop: Mapped[float | None] = mapped_column(Float, default=None)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    compressed_size_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    compression_ratio: Mapped[float | None] = mapped_column(Float, default=None)
    params: Mapped[int | None] = mapped_column(BigInteger, default=None)
    flops: Mapped[int | None] = mapped_column(BigInteger, default=None)
    sparsity: Mapped[float | None] = mapped_column(Float, default=None)
    latency_host_ms: Mapped[float | None] = mapped_column(Float, default=None)
    latency_host_p90_ms: Mapped[float | None] = mapped_column(Float, default=None)
    precision: Mapped[str | None] = mapped_column(String(16), default=None)
    artifact: Mapped[str | None] = mapped_column(String(255), default=None)
    estimates: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)  # report.RunResult, complete
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    duration_s: Mapped[float | None] = mapped_column(Float, default=None)
    notes: Mapped[str] = mapped_column(Text, default="")
    worker_host: Mapped[str | None] = mapped_column(String(255), default=None)  # who ran it (service.relay)
    worker_pid: Mapped[int | None] = mapped_column(Integer, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # task deliveries started

    experiment: Mapped[Experiment] = relationship(back_populates="runs")

    def apply_result(self, result: RunResult) -> None:
        """Store a finished run: the full result plus its key figures as columns."""
        self.technique = result.technique
        self.status = result.status
        self.error = result.error
        self.accuracy = result.accuracy
        self.accuracy_drop = result.accuracy_drop
        self.size_bytes = result.size_bytes
        self.compressed_size_bytes = result.compressed_size_bytes
        self.compression_ratio = result.compression_ratio
        self.params = result.params
        self.flops = result.flops
        self.sparsity = result.sparsity
        self.latency_host_ms = result.latency_ms.host if result.latency_ms else None
        self.latency_host_p90_ms = result.latency_ms.host_p90 if result.latency_ms else None
        self.precision = result.precision
        self.artifact = result.artifact
        self.estimates = {name: est.model_dump() for name, est in result.estimates.items()}
        self.result = result.model_dump(mode="json")
        self.config = dict(result.config)
        self.duration_s = result.duration_s
        self.notes = result.notes

    def to_result(self) -> RunResult:
        """The report's view of this run; rows that never finished are described from their columns."""
        if self.result is not None:
            return RunResult.model_validate(self.result)
        latency = None
        if self.latency_host_ms is not None and self.latency_host_p90_ms is not None:
            latency = LatencyStats(host=self.latency_host_ms, host_p90=self.latency_host_p90_ms)
        status = self.status if self.status in ("completed", "failed", "skipped") else "skipped"
        return RunResult(
            technique=self.technique,
            status=status,  # type: ignore[arg-type]  # narrowed just above
            error=self.error,
            accuracy=self.accuracy,
            latency_ms=latency,
            config=dict(self.config),
            duration_s=self.duration_s or 0.0,
            notes=self.notes,
        )


class Recommendation(Base):
    """The latest recommendation of an experiment (``body`` is a ``report.Recommendation``)."""

    __tablename__ = "recommendations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), unique=True)
    goal: Mapped[str] = mapped_column(String(32))
    constraints: Mapped[dict[str, Any]] = mapped_column(default=dict)
    body: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    experiment: Mapped[Experiment] = relationship(back_populates="recommendation")


class ExperimentProgress(Base):
    """Latest progress of a running experiment: what a WebSocket snapshot and a reloaded page show first."""

    __tablename__ = "experiment_progress"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), unique=True)
    current_technique: Mapped[str | None] = mapped_column(String(32), default=None)
    stage: Mapped[str] = mapped_column(String(200), default="")
    technique_percent: Mapped[float] = mapped_column(Float, default=0.0)
    technique_eta_s: Mapped[float | None] = mapped_column(Float, default=None)
    completed_techniques: Mapped[int] = mapped_column(Integer, default=0)
    total_techniques: Mapped[int] = mapped_column(Integer, default=0)
    overall_percent: Mapped[float] = mapped_column(Float, default=0.0)
    overall_eta_s: Mapped[float | None] = mapped_column(Float, default=None)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    experiment: Mapped[Experiment] = relationship(back_populates="progress")


class BoardAgent(Base):
    """A machine running ``edgeopt agent``: what it said it is when it registered (``edgeopt.board.identify``)."""

    __tablename__ = "board_agents"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(300))
    device: Mapped[str | None] = mapped_column(String(32), default=None)  # catalog device, None when not a catalog Pi
    is_raspberry_pi: Mapped[bool] = mapped_column(Boolean, default=False)
    machine: Mapped[str] = mapped_column(String(64), default="")
    cpu: Mapped[str] = mapped_column(String(300), default="")
    cores: Mapped[int] = mapped_column(Integer, default=1)
    accept_any_device: Mapped[bool] = mapped_column(Boolean, default=False)
    runtimes: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class BoardMeasurement(Base):
    """The board measurement of one completed run's artifact: a job while ``leased``, a figure once ``completed``.

    One row per run (``experiment_id``, ``technique``): the first agent that asks takes the job for
    ``Settings.board_lease_s`` seconds and renews the lease while it measures; a job whose lease ran out (its agent
    was killed or lost the network) is handed to the next agent that asks. ``board`` and ``device`` are copied from
    the agent so a figure keeps its origin when the agent row goes.
    """

    __tablename__ = "board_measurements"
    __table_args__ = (
        UniqueConstraint("experiment_id", "technique", name="uq_board_measurements_experiment_technique"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    technique: Mapped[str] = mapped_column(String(32))
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("board_agents.id", ondelete="SET NULL"), default=None)
    status: Mapped[str] = mapped_column(String(16), default="leased", index=True)  # leased, completed, failed
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    artifact_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    board: Mapped[str] = mapped_column(String(300), default="")
    device: Mapped[str | None] = mapped_column(String(32), default=None)
    is_raspberry_pi: Mapped[bool] = mapped_column(Boolean, default=False)
    runtime: Mapped[str | None] = mapped_column(String(64), default=None)
    threads: Mapped[int | None] = mapped_column(Integer, default=None)
    latency_ms: Mapped[float | None] = mapped_column(Float, default=None)
    latency_p90_ms: Mapped[float | None] = mapped_column(Float, default=None)
    noisy: Mapped[bool] = mapped_column(Boolean, default=False)
    input_shape: Mapped[list[int] | None] = mapped_column(JSON, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    measured_at: Mapped[datetime | None] = mapped_column(default=None)
