"""One place for what the service says about a running or finished experiment.

The WebSocket messages (docs/architecture.md section 7), the report rebuilt from the database (section 5) and the
snapshot a client receives on connect are all built here, so the live stream, a reconnect and
``GET /results`` can never disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from edgeopt.catalog import TECHNIQUE_NAMES
from edgeopt.measure import file_sha256
from edgeopt.report import BoardLatency, ExperimentInfo, Report, RunResult
from edgeopt.report import Recommendation as RecommendationBody
from edgeopt.service.db.models import BoardMeasurement, Experiment, ExperimentProgress, ModelFile, Recommendation
from edgeopt.settings import Settings

MB = 1_000_000
FINISHED_RUN_STATUSES = ("completed", "failed", "skipped")


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


def _metrics(baseline: dict[str, Any] | None, last_run: dict[str, Any] | None) -> dict[str, float | None]:
    original_accuracy = baseline.get("accuracy") if baseline else None
    original_size = baseline["size_bytes"] / MB if baseline else None
    current = last_run or baseline
    return {
        "original_accuracy": original_accuracy,
        "current_accuracy": current.get("accuracy") if current else None,
        "original_size_mb": original_size,
        "current_size_mb": current["size_bytes"] / MB if current and current.get("size_bytes") else original_size,
    }


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
    """A ``progress_update`` message, exactly the shape of docs/architecture.md section 7."""
    return {
        "type": "progress_update",
        "experiment_id": experiment_id,
        "current_technique": {
            "name": technique,
            "progress_percent": int(round(100 * technique_fraction)),
            "eta_seconds": int(round(technique_eta)),
            "stage": stage,
        },
        "overall_progress": {
            "completed_techniques": completed,
            "total_techniques": total,
            "progress_percent": int(round(100 * overall_fraction)),
            "eta_seconds": int(round(overall_eta)),
        },
        "metrics": _metrics(baseline, last_run),
    }


def technique_message(message_type: str, experiment_id: str, run: RunResult) -> dict[str, Any]:
    return {
        "type": message_type,
        "experiment_id": experiment_id,
        "technique": run.technique,
        "run": run.model_dump(mode="json"),
    }




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


def finished_runs(exp: Experiment) -> list[RunResult]:
    order = {name: i for i, name in enumerate(TECHNIQUE_NAMES)}
    rows = [run for run in exp.runs if run.status in FINISHED_RUN_STATUSES]
    measured = board_latencies(exp)
    results = [run.to_result() for run in sorted(rows, key=lambda r: order.get(r.technique, 99))]
    return [
        r.model_copy(update={"board_latency": measured[r.technique]}) if r.technique in measured else r for r in results
    ]


def board_latencies(exp: Experiment) -> dict[str, BoardLatency]:
    """technique -> the latency an agent measured on a board (routes/agents.py), for the runs that have one."""
    session = object_session(exp)
    if session is None:
        return {}
    rows = session.scalars(
        select(BoardMeasurement).where(
            BoardMeasurement.experiment_id == exp.id, BoardMeasurement.status == "completed"
        )
    ).all()
    return {
        row.technique: BoardLatency(
            board=row.board,
            device=row.device,
            is_raspberry_pi=row.is_raspberry_pi,
            latency_ms=row.latency_ms,
            latency_p90_ms=row.latency_p90_ms,
            noisy=row.noisy,
            threads=row.threads,
            runtime=row.runtime or "",
            measured_at=row.measured_at,
        )
        for row in rows
        if row.latency_ms is not None and row.latency_p90_ms is not None and row.threads and row.measured_at
    }


def build_report(exp: Experiment) -> Report:
    """The report of docs/architecture.md section 5, from the database (equal to the worker's ``report.json``)."""
    recommendation = None
    if exp.recommendation is not None and exp.recommendation.body:
        recommendation = RecommendationBody.model_validate(exp.recommendation.body)
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
        baseline=exp.baseline_result(),
        runs=finished_runs(exp),
        recommendation=recommendation,
        lineage=exp.lineage or {},
    )


def progress_from_row(exp: Experiment, row: ExperimentProgress | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "type": "progress_update",
        "experiment_id": exp.id,
        "current_technique": {
            "name": row.current_technique,
            "progress_percent": int(round(row.technique_percent)),
            "eta_seconds": int(round(row.technique_eta_s or 0)),
            "stage": row.stage,
        },
        "overall_progress": {
            "completed_techniques": row.completed_techniques,
            "total_techniques": row.total_techniques,
            "progress_percent": int(round(row.overall_percent)),
            "eta_seconds": int(round(row.overall_eta_s or 0)),
        },
        "metrics": dict(row.metrics or {}),
    }


def snapshot(exp: Experiment) -> dict[str, Any]:
    """What a WebSocket client receives first: the whole current state, so reconnecting loses nothing."""
    return {
        "type": "snapshot",
        "experiment_id": exp.id,
        "experiment": {
            "id": exp.id,
            "name": exp.name,
            "status": exp.status,
            "error": exp.error,
            "framework": exp.framework,
            "dataset": exp.dataset,
            "device": exp.device,
            "goal": exp.goal,
            "constraints": dict(exp.constraints or {}),
            "techniques": list(exp.techniques or TECHNIQUE_NAMES),
        },
        "baseline": exp.baseline,
        "runs": [run.model_dump(mode="json") for run in finished_runs(exp)],
        "progress": progress_from_row(exp, exp.progress),
        "recommendation": exp.recommendation.body if exp.recommendation is not None else None,
    }
