"""Board agents (``edgeopt agent``): register a board, lease measurement jobs, post the latency measured on it.

A job is one completed run's artifact of an experiment that targets the agent's board (``Experiment.device`` equal
to the device the board identified as; an agent started with ``--accept-any-device`` takes any). The first agent to
ask takes it for ``Settings.board_lease_s`` seconds and renews the lease while it measures; when a lease runs out
(the agent was killed, the board lost power) the next agent that asks gets the job. The figure is shown in the
results next to the estimate (``report.RunResult.board_latency``), with the board's own name and the time.
The experiment's original model is a job too (technique ``baseline``, its artifact the one
``/api/experiments/{id}/runs/baseline/download`` serves), offered before the techniques' artifacts, so the results
show a measured figure for the original next to the techniques' (``report.BaselineResult.board_latency``).
These routes sit under ``/api``, so ``security.ApiKeyMiddleware`` guards them like every other.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from edgeopt.bench import RUNTIMES
from edgeopt.errors import InvalidInput, NotFound
from edgeopt.service.board_results import BASELINE
from edgeopt.service.db.models import BoardAgent, BoardMeasurement, Experiment, ModelFile, OptimizationRun, utcnow
from edgeopt.service.deps import SessionDep, SettingsDep
from edgeopt.service.schemas import ErrorPublic

router = APIRouter(prefix="/api/agents", tags=["agents"])
experiments_router = APIRouter(prefix="/api/experiments", tags=["agents"])
ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorPublic}, 409: {"model": ErrorPublic}}
CANDIDATES = 20  # jobs looked at per request; another agent may claim some between the look and the claim


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentRegistration(_Body):
    name: str = Field(min_length=1, max_length=300, description="As the board names itself (edgeopt.board).")
    device: str | None = Field(default=None, max_length=32, description="Catalog device; null when not a catalog Pi.")
    is_raspberry_pi: bool
    machine: str = Field(default="", max_length=64)
    cpu: str = Field(default="", max_length=300)
    cores: int = Field(default=1, ge=1, le=1024)
    runtimes: list[str] = Field(
        default_factory=list, max_length=8, description="Runtimes installed on the board; it gets only those jobs."
    )
    accept_any_device: bool = False


class AgentPublic(BaseModel):
    id: str
    name: str
    device: str | None
    is_raspberry_pi: bool
    machine: str
    cpu: str
    cores: int
    accept_any_device: bool
    runtimes: list[str]
    created_at: datetime
    last_seen_at: datetime

    @classmethod
    def from_row(cls, row: BoardAgent) -> AgentPublic:
        return cls.model_validate(row, from_attributes=True)


class BoardJob(BaseModel):
    id: str
    experiment_id: str
    technique: str
    device: str = Field(description="The board the experiment targets.")
    artifact: str
    sha256: str | None
    download_url: str
    threads: int | None = Field(description="Threads the board estimate assumed; the agent measures at that count.")
    attempts: int
    lease_expires_at: datetime
    lease_seconds: float = Field(description="How long the lease lasts; renew it before then.")


class MeasurementBody(_Body):
    latency_ms: float | None = Field(default=None, gt=0)
    latency_p90_ms: float | None = Field(default=None, gt=0)
    noisy: bool = False
    threads: int | None = Field(default=None, ge=1, le=1024)
    runtime: str | None = Field(default=None, max_length=64)
    input_shape: list[int] | None = Field(default=None, max_length=8)
    error: str | None = Field(default=None, max_length=2000, description="Why the board could not measure it.")


class MeasurementPublic(BaseModel):
    id: str
    experiment_id: str
    technique: str
    status: str = Field(description="leased (being measured), completed or failed.")
    agent_id: str | None
    attempts: int = Field(description="How many agents took the job: more than 1 when a lease ran out.")
    lease_expires_at: datetime | None
    board: str
    device: str | None
    is_raspberry_pi: bool
    latency_ms: float | None
    latency_p90_ms: float | None
    noisy: bool
    threads: int | None
    runtime: str | None
    error: str | None
    measured_at: datetime | None

    @classmethod
    def from_row(cls, row: BoardMeasurement) -> MeasurementPublic:
        return cls.model_validate(row, from_attributes=True)


def _agent(session: Session, agent_id: str) -> BoardAgent:
    row = session.get(BoardAgent, agent_id)
    if row is None:
        raise NotFound(f"No board agent with id {agent_id!r}; register again (restart edgeopt agent).")
    row.last_seen_at = utcnow()
    return row


@router.post("", name="register_agent", status_code=status.HTTP_201_CREATED)
def register_agent(body: AgentRegistration, session: SessionDep) -> AgentPublic:
    """A board introduces itself; the answer's ``id`` is what it asks for jobs with."""
    from edgeopt.catalog import DEVICE_NAMES

    if body.device is not None and body.device not in DEVICE_NAMES:
        known = ", ".join(DEVICE_NAMES)
        raise InvalidInput(f"Unknown device {body.device!r}; choose one of: {known}.", field="device", status_code=422)
    if body.device is not None and not body.is_raspberry_pi:
        raise InvalidInput("Only a Raspberry Pi can register as a catalog device.", field="device", status_code=422)
    row = BoardAgent(**body.model_dump())
    session.add(row)
    session.commit()
    return AgentPublic.from_row(row)


@router.get("", name="list_agents")
def list_agents(session: SessionDep) -> list[AgentPublic]:
    rows = session.scalars(select(BoardAgent).order_by(BoardAgent.last_seen_at.desc())).all()
    return [AgentPublic.from_row(row) for row in rows]


def _job(
    session: Session, row: BoardMeasurement, artifact: str, estimates: dict[str, Any], device: str, lease: timedelta
) -> BoardJob:
    sha = session.scalar(
        select(ModelFile.sha256).where(
            ModelFile.experiment_id == row.experiment_id,
            ModelFile.role == "artifact",
            ModelFile.original_filename == artifact,
        )
    )
    estimate = estimates.get(device) or {}
    assert row.lease_expires_at is not None  # noqa: S101 - a job is a leased row
    return BoardJob(
        id=row.id,
        experiment_id=row.experiment_id,
        technique=row.technique,
        device=device,
        artifact=artifact,
        sha256=sha,
        download_url=f"/api/experiments/{row.experiment_id}/runs/{row.technique}/download",
        threads=estimate.get("threads"),
        attempts=row.attempts,
        lease_expires_at=row.lease_expires_at,
        lease_seconds=lease.total_seconds(),
    )


def _claim(
    session: Session, agent: BoardAgent, experiment_id: str, technique: str, existing: str | None, lease: timedelta
) -> BoardMeasurement | None:
    """Take the job of ``technique`` in the experiment: a new row, or an expired lease taken over by a guarded
    update. None if another agent was quicker."""
    now = utcnow()
    stamp = {
        "agent_id": agent.id,
        "status": "leased",
        "lease_expires_at": now + lease,
        "board": agent.name,
        "device": agent.device,
        "is_raspberry_pi": agent.is_raspberry_pi,
    }
    if existing is None:
        session.add(BoardMeasurement(experiment_id=experiment_id, technique=technique, attempts=1, **stamp))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            return None
    else:
        taken = session.execute(
            update(BoardMeasurement)
            .where(
                BoardMeasurement.id == existing,
                BoardMeasurement.status == "leased",
                BoardMeasurement.lease_expires_at < now,
            )
            .values(attempts=BoardMeasurement.attempts + 1, **stamp)
        )
        session.commit()
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            return None
    row = session.scalar(
        select(BoardMeasurement).where(
            BoardMeasurement.experiment_id == experiment_id, BoardMeasurement.technique == technique
        )
    )
    return row if row is not None and row.agent_id == agent.id else None


def _open_job() -> Any:
    """No measurement row yet, or one whose lease ran out (its agent was killed or lost the network)."""
    return or_(
        BoardMeasurement.id.is_(None),
        and_(BoardMeasurement.status == "leased", BoardMeasurement.lease_expires_at < utcnow()),
    )


def _baseline_candidates(
    session: Session, agent: BoardAgent, runnable: list[str]
) -> list[tuple[Experiment, str | None]]:
    """Experiments whose original model has a deployable artifact this board can run and no measurement yet."""
    query = (
        select(Experiment, BoardMeasurement.id)
        .outerjoin(
            BoardMeasurement,
            and_(BoardMeasurement.experiment_id == Experiment.id, BoardMeasurement.technique == BASELINE),
        )
        .where(Experiment.baseline.is_not(None), _open_job())
        .order_by(Experiment.created_at, Experiment.id)
    )
    if not agent.accept_any_device:
        query = query.where(Experiment.device == agent.device)
    found = []
    for exp, existing in session.execute(query).all():
        baseline = exp.baseline_result()
        if baseline is not None and baseline.artifact.endswith(tuple(runnable)):
            found.append((exp, existing))
            if len(found) == CANDIDATES:
                break
    return found


@router.post(
    "/{agent_id}/jobs/next",
    name="next_board_job",
    response_model=BoardJob,
    responses={**ERRORS, 204: {"description": "No job now; ask again later."}},
)
def next_board_job(agent_id: str, session: SessionDep, settings: SettingsDep) -> BoardJob | Response:
    """The next artifact for this board to measure, leased to it; 204 when there is none."""
    agent = _agent(session, agent_id)
    session.commit()
    if agent.device is None and not agent.accept_any_device:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    # Only artifacts the board can run: a board without ExecuTorch never takes (and fails) a .pte job.
    runnable = [suffix for suffix, runtime in RUNTIMES.items() if runtime in (agent.runtimes or [])]
    if not runnable:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    lease = timedelta(seconds=settings.board_lease_s)
    for exp, existing in _baseline_candidates(session, agent, runnable):
        baseline = exp.baseline_result()
        row = _claim(session, agent, exp.id, BASELINE, existing, lease)
        if row is not None and baseline is not None:
            estimates = {name: e.model_dump() for name, e in baseline.estimates.items()}
            return _lease(session, row, _job(session, row, baseline.artifact, estimates, exp.device, lease))
    query = (
        select(OptimizationRun, Experiment.device, BoardMeasurement.id)
        .join(Experiment, Experiment.id == OptimizationRun.experiment_id)
        .outerjoin(
            BoardMeasurement,
            and_(
                BoardMeasurement.experiment_id == OptimizationRun.experiment_id,
                BoardMeasurement.technique == OptimizationRun.technique,
            ),
        )
        .where(OptimizationRun.status == "completed", OptimizationRun.artifact.is_not(None), _open_job())
        .order_by(OptimizationRun.finished_at, OptimizationRun.id)
        .limit(CANDIDATES)
    )
    if not agent.accept_any_device:
        query = query.where(Experiment.device == agent.device)
    query = query.where(or_(*(OptimizationRun.artifact.like(f"%{suffix}") for suffix in runnable)))
    for run, device, existing in session.execute(query).all():
        row = _claim(session, agent, run.experiment_id, run.technique, existing, lease)
        if row is not None:
            return _lease(session, row, _job(session, row, run.artifact or "", run.estimates or {}, device, lease))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _lease(session: Session, row: BoardMeasurement, job: BoardJob) -> BoardJob:
    row.artifact_sha256 = job.sha256  # which file the figure will be of
    session.commit()
    return job


def _held_job(session: Session, agent_id: str, job_id: str) -> BoardMeasurement:
    row = session.get(BoardMeasurement, job_id)
    if row is None:
        raise NotFound(f"No board job {job_id!r}: its experiment may have been deleted.")
    if row.agent_id != agent_id or row.status != "leased":
        raise InvalidInput(
            "This job is no longer yours: its lease ran out and another board took it, or it is finished.",
            status_code=409,
        )
    return row


@router.post("/{agent_id}/jobs/{job_id}/renew", name="renew_board_job", responses=ERRORS)
def renew_board_job(agent_id: str, job_id: str, session: SessionDep, settings: SettingsDep) -> MeasurementPublic:
    """Keep the lease while measuring (the agent renews it every third of the lease)."""
    _agent(session, agent_id)
    row = _held_job(session, agent_id, job_id)
    row.lease_expires_at = utcnow() + timedelta(seconds=settings.board_lease_s)
    session.commit()
    return MeasurementPublic.from_row(row)


@router.post("/{agent_id}/jobs/{job_id}/result", name="post_board_measurement", responses=ERRORS)
def post_board_measurement(agent_id: str, job_id: str, body: MeasurementBody, session: SessionDep) -> MeasurementPublic:
    """The figures measured on the board, or the reason it could not measure the artifact."""
    _agent(session, agent_id)
    row = _held_job(session, agent_id, job_id)
    if body.error is None and (body.latency_ms is None or body.latency_p90_ms is None or body.threads is None):
        raise InvalidInput(
            "Send latency_ms, latency_p90_ms and threads, or an error saying why there are none.", status_code=422
        )
    row.status = "failed" if body.error is not None else "completed"
    row.lease_expires_at = None
    row.measured_at = utcnow()
    for name, value in body.model_dump().items():
        setattr(row, name, value)
    session.commit()
    return MeasurementPublic.from_row(row)


@experiments_router.get("/{experiment_id}/board-measurements", name="list_board_measurements", responses=ERRORS)
def list_board_measurements(experiment_id: str, session: SessionDep) -> list[MeasurementPublic]:
    """Every board job of the experiment: being measured, measured, or failed with the board's reason."""
    if session.get(Experiment, experiment_id) is None:
        raise NotFound(f"No experiment with id {experiment_id!r}.")
    rows = session.scalars(
        select(BoardMeasurement)
        .where(BoardMeasurement.experiment_id == experiment_id)
        .order_by(BoardMeasurement.created_at)
    ).all()
    return [MeasurementPublic.from_row(row) for row in rows]
