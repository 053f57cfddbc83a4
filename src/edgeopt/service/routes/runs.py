"""Running an experiment and reading what it produced: start, cancel, results, recommendation, downloads."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from edgeopt.catalog import TECHNIQUE_NAMES, GoalName
from edgeopt.errors import InvalidInput, NotFound
from edgeopt.report import Constraints, Recommendation, Report
from edgeopt.service import messages
from edgeopt.service.db.models import ACTIVE_STATUSES, Experiment
from edgeopt.service.deps import SessionDep, SettingsDep
from edgeopt.service.manager import CANCELLED_BEFORE_START, JobManager, artifacts_dir
from edgeopt.service.schemas import BUSY_RESPONSES, ErrorPublic, ExperimentPublic
from edgeopt.service.status import TRANSITIONS, refusal, require, transition

router = APIRouter(prefix="/api/experiments", tags=["runs"], responses=BUSY_RESPONSES)
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorPublic},
    409: {"model": ErrorPublic},
    422: {"model": ErrorPublic},
}
DOWNLOAD_MEDIA_TYPES = {
    "pte": "application/octet-stream",
    "tflite": "application/octet-stream",
    "pt2": "application/zip",
    "keras": "application/zip",
}


class RecommendationRequest(BaseModel):
    """Another goal or other limits for the same runs: recomputed without re-running anything."""

    model_config = ConfigDict(extra="forbid")
    goal: GoalName
    constraints: Constraints = Field(default_factory=Constraints)


def _jobs(request: Request) -> JobManager:
    return request.app.state.jobs


def _experiment(session: SessionDep, experiment_id: str) -> Experiment:
    exp = session.get(
        Experiment,
        experiment_id,
        options=[
            selectinload(Experiment.runs),
            selectinload(Experiment.files),
            selectinload(Experiment.recommendation),
        ],
    )
    if exp is None:
        raise NotFound(f"No experiment with id {experiment_id!r}.")
    return exp


def _check_dataset(spec: str, settings: SettingsDep) -> None:
    """Fail at start, not minutes later in the worker, when a preset's files are missing."""
    from edgeopt.data import check_dataset

    try:
        check_dataset(spec, settings)
    except InvalidInput as exc:
        raise InvalidInput(f"The dataset is not available: {exc}", field="dataset", status_code=422) from exc


@router.post("/{experiment_id}/start", name="start_experiment", status_code=status.HTTP_202_ACCEPTED, responses=ERRORS)
def start_experiment(
    experiment_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> ExperimentPublic:
    """Queue the experiment; an interrupted, failed or cancelled one resumes, keeping its completed runs."""
    # The move to queued is one guarded statement (status.require): of a start racing a delete or another start,
    # exactly one wins and the other is told why (409, or 404 once the experiment is gone).
    exp = _experiment(session, experiment_id)
    if exp.status not in TRANSITIONS["start"].sources:
        raise refusal("start", experiment_id, exp.status)
    if not exp.dataset.startswith("custom:"):
        _check_dataset(exp.dataset, settings)
    require(session, experiment_id, "start", error=None)
    session.commit()
    _jobs(request).kick()
    session.expire_all()
    return ExperimentPublic.from_row(_experiment(session, experiment_id))


@router.post(
    "/{experiment_id}/cancel", name="cancel_experiment", status_code=status.HTTP_202_ACCEPTED, responses=ERRORS
)
def cancel_experiment(experiment_id: str, request: Request, session: SessionDep) -> ExperimentPublic:
    """A running job stops at its next stage boundary (seconds); a queued one is cancelled at once."""
    _experiment(session, experiment_id)
    if transition(session, experiment_id, "cancel_queued", error=CANCELLED_BEFORE_START):
        session.commit()
    elif not _jobs(request).cancel(experiment_id):
        session.rollback()
        current = session.scalar(select(Experiment.status).where(Experiment.id == experiment_id))
        if current not in ACTIVE_STATUSES:  # it finished, failed or was cancelled just before this request
            raise refusal("cancel", experiment_id, current)
    session.expire_all()
    return ExperimentPublic.from_row(_experiment(session, experiment_id))


@router.get("/{experiment_id}/results", name="get_results", responses=ERRORS)
def get_results(experiment_id: str, session: SessionDep) -> Report:
    """The report of docs/architecture.md section 5 (also written as ``report.json`` next to the artifacts)."""
    return messages.build_report(_experiment(session, experiment_id))


def _recompute(exp: Experiment, goal: str, constraints: Constraints) -> Recommendation:
    from edgeopt.recommend import recommend

    report = messages.build_report(exp)
    if report.baseline is None:
        raise InvalidInput("The experiment has no results yet; start it first.", status_code=409)
    return recommend(report, goal=goal, constraints=constraints, device=exp.device)


@router.get("/{experiment_id}/recommendation", name="get_recommendation", responses=ERRORS)
def get_recommendation(experiment_id: str, session: SessionDep) -> Recommendation:
    exp = _experiment(session, experiment_id)
    if exp.recommendation is not None and exp.recommendation.body:
        return Recommendation.model_validate(exp.recommendation.body)
    body = _recompute(exp, exp.goal, Constraints(**(exp.constraints or {})))
    return body


@router.post("/{experiment_id}/recommendation", name="recompute_recommendation", responses=ERRORS)
def recompute_recommendation(
    experiment_id: str, body: RecommendationRequest, session: SessionDep
) -> Recommendation:
    """Recommend again for another goal or other limits; stored as the experiment's latest recommendation."""
    exp = _experiment(session, experiment_id)
    result = _recompute(exp, body.goal, body.constraints)
    messages.store_recommendation(session, exp, result, body.constraints.active())
    session.commit()
    return result


def _download_name(exp: Experiment, technique: str, suffix: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", exp.name).strip("-")[:60] or "edgeopt"
    return f"{stem}-{exp.id[:8]}-{technique}{suffix}"


@router.get(
    "/{experiment_id}/runs/{technique}/download",
    name="download_artifact",
    response_class=FileResponse,
    responses={**ERRORS, 200: {"content": {"application/octet-stream": {}}}},
)
def download_artifact(
    experiment_id: str,
    technique: str,
    session: SessionDep,
    settings: SettingsDep,
    format: str | None = Query(default=None, description="pt2 or keras where the run offers it"),  # noqa: A002
) -> FileResponse:
    """The deployable artifact (``.pte`` / ``.tflite``) or another format of the same result."""
    exp = _experiment(session, experiment_id)
    if technique == "baseline":
        baseline = exp.baseline_result()
        if baseline is None:
            raise NotFound("The baseline has not been measured yet.")
        name, formats = baseline.artifact, {}
    elif technique in TECHNIQUE_NAMES:
        run = next((r.to_result() for r in exp.runs if r.technique == technique and r.status == "completed"), None)
        if run is None or run.artifact is None:
            raise NotFound(f"{technique} has no completed result in this experiment.")
        name, formats = run.artifact, dict(run.formats)
    else:
        raise NotFound(f"Unknown technique {technique!r}.")
    if format is not None and format != name.rsplit(".", 1)[-1]:
        if format not in formats:
            offered = ", ".join([name.rsplit(".", 1)[-1], *formats])
            raise InvalidInput(f"Format {format!r} is not available for {technique}; choose one of: {offered}.",
                               field="format", status_code=404)
        name = formats[format]
    path = artifacts_dir(settings, exp.id) / name
    if not path.is_file():
        raise NotFound(f"The file of {technique} is missing from storage.")
    suffix = path.suffix
    return FileResponse(
        path,
        media_type=DOWNLOAD_MEDIA_TYPES.get(suffix.lstrip("."), "application/octet-stream"),
        filename=_download_name(exp, technique, suffix),
    )
