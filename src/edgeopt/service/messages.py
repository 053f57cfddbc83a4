"""One place for what the service says about a running or finished experiment.

The WebSocket messages (docs/architecture.md section 7), the report rebuilt from the database (section 5) and the
snapshot a client receives on connect are all built here, so the live stream, a reconnect and
``GET /results`` can never disagree.

Every WebSocket message is one of the pydantic models below (``ServerMessage``, a union discriminated on ``type``)
and is built by validating through it, so a message the web app was not told about cannot be sent.
``scripts/export_openapi.py`` puts ``ServerMessage`` into the OpenAPI schema, the web app's types are generated from
that (``frontend/src/api/schema.gen.ts``), and two tests keep the chain honest: ``tests/service/test_app.py`` (models
against ``frontend/openapi.json``) and ``frontend/src/api/contract.test.ts`` (``openapi.json`` against the generated
TypeScript).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel
from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from edgeopt.catalog import TECHNIQUE_NAMES
from edgeopt.measure import file_sha256
from edgeopt.report import BaselineResult, ExperimentInfo, Report, RunResult
from edgeopt.report import Recommendation as RecommendationBody
from edgeopt.service.board_results import BoardFigures
from edgeopt.service.db.models import (
    Experiment,
    ExperimentProgress,
    ExperimentStatus,
    ModelFile,
    Recommendation,
)
from edgeopt.settings import Settings

MB = 1_000_000
FINISHED_RUN_STATUSES = ("completed", "failed", "skipped")


class _Message(BaseModel):
    # Described as sent: a field with a default (``type``) is always present on the wire, so it is required there.
    model_config = ConfigDict(
        extra="forbid", json_schema_mode_override="serialization", json_schema_serialization_defaults_required=True
    )


class CurrentTechnique(_Message):
    name: str | None = Field(description="null while the original model is being measured.")
    progress_percent: int
    eta_seconds: int = Field(description="Seconds left in this technique.")
    stage: str


class OverallProgress(_Message):
    completed_techniques: int
    total_techniques: int
    progress_percent: int
    eta_seconds: int = Field(description="Seconds left in the whole experiment.")


class LiveMetrics(_Message):
    """The original model against the latest completed technique (the original until one completes)."""

    original_accuracy: float | None = None
    current_accuracy: float | None = None
    original_size_mb: float | None = None
    current_size_mb: float | None = None


class ProgressBody(_Message):
    """A progress update without its envelope: the snapshot carries the same shape."""

    current_technique: CurrentTechnique
    overall_progress: OverallProgress
    metrics: LiveMetrics


class ProgressUpdateMessage(ProgressBody):
    type: Literal["progress_update"] = "progress_update"
    experiment_id: str


class SnapshotExperiment(_Message):
    id: str
    name: str
    status: ExperimentStatus
    error: str | None
    framework: str
    dataset: str
    device: str
    goal: str
    constraints: dict[str, float | None]
    techniques: list[str]


class SnapshotMessage(_Message):
    """Sent first on every connect, so a reconnecting client loses nothing."""

    type: Literal["snapshot"] = "snapshot"
    experiment_id: str
    experiment: SnapshotExperiment
    baseline: BaselineResult | None
    runs: list[RunResult]
    progress: ProgressBody | None
    recommendation: RecommendationBody | None


class TechniqueCompletedMessage(_Message):
    type: Literal["technique_completed"] = "technique_completed"
    experiment_id: str
    technique: str
    run: RunResult


class TechniqueFailedMessage(_Message):
    """The run carries the error (``run.error``)."""

    type: Literal["technique_failed"] = "technique_failed"
    experiment_id: str
    technique: str
    run: RunResult


class ExperimentCompletedMessage(_Message):
    type: Literal["experiment_completed"] = "experiment_completed"
    experiment_id: str
    report: Report


class ExperimentFailedMessage(_Message):
    type: Literal["experiment_failed"] = "experiment_failed"
    experiment_id: str
    error: str = Field(description="What went wrong and what to do, in a sentence for the user.")


class ExperimentCancelledMessage(_Message):
    type: Literal["experiment_cancelled"] = "experiment_cancelled"
    experiment_id: str


AnyMessage = Annotated[
    SnapshotMessage
    | ProgressUpdateMessage
    | TechniqueCompletedMessage
    | TechniqueFailedMessage
    | ExperimentCompletedMessage
    | ExperimentFailedMessage
    | ExperimentCancelledMessage,
    Field(discriminator="type"),
]


class ServerMessage(RootModel[AnyMessage]):
    """Every message ``WS /ws/experiments/{id}`` sends, told apart by ``type``."""


def wire(message: _Message) -> dict[str, Any]:
    """A message as it goes over the socket (and through Redis)."""
    return message.model_dump(mode="json")


def default_stage(kind: str, technique: str | None) -> str:
    if kind == "experiment_started":
        return "Loading the model and the dataset"
    if kind == "baseline_measured":
        return "Baseline measured"
    if kind == "technique_started":
        return f"Starting {technique}"
    if kind in ("technique_completed", "technique_failed"):
        return "Finished"
    return ""


def overall_fraction(completed: int, total: int, index: int, fraction: float, event: dict[str, Any]) -> float:
    """Share of the experiment done: finished techniques plus the current one's fraction."""
    if total <= 0:
        return 0.0
    in_technique = event["kind"] == "progress" and event.get("technique") not in (None, "baseline")
    return min(1.0, (completed + (fraction if in_technique else 0.0)) / total)


def _metrics(baseline: dict[str, Any] | None, last_run: dict[str, Any] | None) -> LiveMetrics:
    original_accuracy = baseline.get("accuracy") if baseline else None
    original_size = baseline["size_bytes"] / MB if baseline else None
    current = last_run or baseline
    return LiveMetrics(
        original_accuracy=original_accuracy,
        current_accuracy=current.get("accuracy") if current else None,
        original_size_mb=original_size,
        current_size_mb=current["size_bytes"] / MB if current and current.get("size_bytes") else original_size,
    )


def progress_update(
    *,
    experiment_id: str,
    technique: str | None,
    stage: str,
    technique_fraction: float,
    technique_eta: float,
    completed: int,
    total: int,
    overall_fraction: float,
    overall_eta: float,
    baseline: dict[str, Any] | None,
    last_run: dict[str, Any] | None,
) -> dict[str, Any]:
    """A ``progress_update`` message (docs/architecture.md section 7)."""
    return wire(
        ProgressUpdateMessage(
            experiment_id=experiment_id,
            current_technique=CurrentTechnique(
                name=technique,
                progress_percent=int(round(100 * technique_fraction)),
                eta_seconds=int(round(technique_eta)),
                stage=stage,
            ),
            overall_progress=OverallProgress(
                completed_techniques=completed,
                total_techniques=total,
                progress_percent=int(round(100 * overall_fraction)),
                eta_seconds=int(round(overall_eta)),
            ),
            metrics=_metrics(baseline, last_run),
        )
    )


def technique_message(experiment_id: str, run: RunResult) -> dict[str, Any]:
    """``technique_failed`` for a failed run, else ``technique_completed`` (a skipped run counts as finished)."""
    model = TechniqueFailedMessage if run.status == "failed" else TechniqueCompletedMessage
    return wire(model(experiment_id=experiment_id, technique=run.technique, run=run))


def experiment_completed(experiment_id: str, report: dict[str, Any]) -> dict[str, Any]:
    return wire(ExperimentCompletedMessage(experiment_id=experiment_id, report=Report.model_validate(report)))


def experiment_cancelled(experiment_id: str) -> dict[str, Any]:
    return wire(ExperimentCancelledMessage(experiment_id=experiment_id))


def experiment_failed(experiment_id: str, error: str) -> dict[str, Any]:
    return wire(ExperimentFailedMessage(experiment_id=experiment_id, error=error))


def register_artifact(
    session: Session, settings: Settings, experiment_id: str, technique: str, path: Path, _kind: str = ""
) -> ModelFile | None:
    """Record an artifact the worker wrote (idempotent: a restarted experiment re-registers the same files)."""
    if not path.is_file():
        return None
    relative = path.relative_to(settings.storage_dir).as_posix()
    row = session.scalar(select(ModelFile).where(ModelFile.path == relative))
    if row is None:
        row = ModelFile(experiment_id=experiment_id, role="artifact", path=relative, original_filename=path.name)
        session.add(row)
    row.technique = technique
    row.format = path.suffix.lstrip(".")
    row.sha256 = file_sha256(path)
    row.size_bytes = path.stat().st_size
    return row


def store_recommendation(session: Session, exp: Experiment, body: RecommendationBody, constraints: dict) -> None:
    row = exp.recommendation
    if row is None:
        row = Recommendation(experiment_id=exp.id)
        session.add(row)
        exp.recommendation = row
    row.goal = body.goal
    row.constraints = dict(constraints)
    row.body = body.model_dump(mode="json")


def store_report(session: Session, exp: Experiment, report: dict[str, Any]) -> None:
    """The finished report over what the stream stored run by run: the end of an experiment re-times every artifact
    side by side (``edgeopt.host_timing``), so the final baseline and runs carry the latencies that compare."""
    if report.get("baseline"):
        exp.baseline = report["baseline"]
    rows = {row.technique: row for row in exp.runs}
    for run in report.get("runs", []):
        row = rows.get(run["technique"])
        if row is not None:
            row.apply_result(RunResult.model_validate(run))
    recommendation = report.get("recommendation")
    if recommendation is not None:
        body = RecommendationBody.model_validate(recommendation)
        store_recommendation(session, exp, body, report["experiment"].get("constraints", {}))
    if report.get("lineage"):
        exp.lineage = report["lineage"]


def finished_runs(exp: Experiment, figures: BoardFigures | None = None) -> list[RunResult]:
    """The finished runs in catalog order, with what real boards measured and the estimates they correct."""
    order = {name: i for i, name in enumerate(TECHNIQUE_NAMES)}
    rows = [run for run in exp.runs if run.status in FINISHED_RUN_STATUSES]
    figures = figures or BoardFigures(object_session(exp), exp)
    return [figures.run(run.to_result()) for run in sorted(rows, key=lambda r: order.get(r.technique, 99))]


def build_report(exp: Experiment) -> Report:
    """The report of docs/architecture.md section 5, from the database (equal to the worker's ``report.json``)."""
    recommendation = None
    if exp.recommendation is not None and exp.recommendation.body:
        recommendation = RecommendationBody.model_validate(exp.recommendation.body)
    figures = BoardFigures(object_session(exp), exp)
    return Report(
        experiment=ExperimentInfo(
            id=exp.id,
            framework=exp.framework,
            dataset=exp.dataset,
            device=exp.device,
            goal=exp.goal,
            constraints={k: v for k, v in (exp.constraints or {}).items() if v is not None},
            preprocessing=exp.preprocessing,
        ),
        baseline=figures.baseline(exp.baseline_result()),
        runs=finished_runs(exp, figures),
        recommendation=recommendation,
        lineage=exp.lineage or {},
        board_correction=figures.corrections.get(exp.device),
    )


def progress_from_row(row: ExperimentProgress | None) -> ProgressBody | None:
    if row is None:
        return None
    return ProgressBody(
        current_technique=CurrentTechnique(
            name=row.current_technique,
            progress_percent=int(round(row.technique_percent)),
            eta_seconds=int(round(row.technique_eta_s or 0)),
            stage=row.stage,
        ),
        overall_progress=OverallProgress(
            completed_techniques=row.completed_techniques,
            total_techniques=row.total_techniques,
            progress_percent=int(round(row.overall_percent)),
            eta_seconds=int(round(row.overall_eta_s or 0)),
        ),
        metrics=LiveMetrics.model_validate(row.metrics or {}),
    )


def snapshot(exp: Experiment) -> dict[str, Any]:
    """What a WebSocket client receives first: the whole current state, so reconnecting loses nothing."""
    recommendation = exp.recommendation.body if exp.recommendation is not None else None
    return wire(
        SnapshotMessage(
            experiment_id=exp.id,
            experiment=SnapshotExperiment(
                id=exp.id,
                name=exp.name,
                status=exp.status,  # type: ignore[arg-type]  # a str column holding an ExperimentStatus
                error=exp.error,
                framework=exp.framework,
                dataset=exp.dataset,
                device=exp.device,
                goal=exp.goal,
                constraints=dict(exp.constraints or {}),
                techniques=list(exp.techniques or TECHNIQUE_NAMES),
            ),
            baseline=exp.baseline_result(),
            runs=finished_runs(exp),
            progress=progress_from_row(exp.progress),
            recommendation=RecommendationBody.model_validate(recommendation) if recommendation else None,
        )
    )
