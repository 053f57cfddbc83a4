"""Experiments: create, list, read, delete, and receive the model file and an optional custom dataset.

Uploads are ``async`` routes that read the raw request stream (``Storage.receive``) instead of declaring an
``UploadFile`` parameter: FastAPI would otherwise spool the whole body to a temporary file before the handler runs,
so the size limit could only be checked after receiving all of it. The OpenAPI description of the multipart body is
therefore written out by hand in ``UPLOAD_BODY``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload, sessionmaker
from starlette.concurrency import run_in_threadpool

from edgeopt.errors import NotFound
from edgeopt.service import inspection
from edgeopt.service.db.models import Experiment, OptimizationRun
from edgeopt.service.deps import SessionDep, SettingsDep, StorageDep
from edgeopt.service.schemas import (
    BUSY_RESPONSES,
    STALLED_RESPONSES,
    ErrorPublic,
    ExperimentCreate,
    ExperimentPublic,
    ExperimentsPublic,
)
from edgeopt.service.status import TRANSITIONS, refusal, require
from edgeopt.service.storage import DATASETS, MODELS, PlacedFile, ReceivedFile, Storage
from edgeopt.settings import Settings

router = APIRouter(prefix="/api/experiments", tags=["experiments"], responses=BUSY_RESPONSES)

UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorPublic}, 409: {"model": ErrorPublic}}
UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    400: {"model": ErrorPublic, "description": "Not a model/dataset file of an accepted format."},
    413: {
        "model": ErrorPublic,
        "description": "Larger than EDGEOPT_MAX_UPLOAD_BYTES, past a dataset budget (EDGEOPT_MAX_DATASET_PIXELS, "
        "EDGEOPT_MAX_IMAGE_PIXELS, EDGEOPT_MAX_DATASET_INFLATED_BYTES), or needing more memory or time to check than "
        "EDGEOPT_ISOLATED_MEMORY_BYTES or EDGEOPT_ISOLATED_TIMEOUT_S allow.",
    },
    **STALLED_RESPONSES,
}
# Beyond a 64-bit OFFSET the database fails; far below it a page is empty anyway.
MAX_OFFSET = 2**31 - 1
# Everything ExperimentPublic.from_row reads beyond the row itself, one query per relationship however many
# experiments a page holds. Of the runs only the columns of the recommended summary: not each run's full result.
EXPERIMENT_PUBLIC_LOADS = (
    selectinload(Experiment.files),
    selectinload(Experiment.recommendation),
    selectinload(Experiment.runs).load_only(
        OptimizationRun.technique,
        OptimizationRun.status,
        OptimizationRun.accuracy,
        OptimizationRun.size_bytes,
        OptimizationRun.latency_host_ms,
    ),
)


def load_experiment(session: Session, experiment_id: str) -> Experiment:
    experiment = session.get(Experiment, experiment_id, options=EXPERIMENT_PUBLIC_LOADS)
    if experiment is None:
        raise NotFound(f"No experiment with id {experiment_id!r}.")
    return experiment


@router.post("/create", status_code=status.HTTP_201_CREATED, name="create_experiment")
@router.post("", status_code=status.HTTP_201_CREATED, name="create_experiment_alias")
def create_experiment(body: ExperimentCreate, session: SessionDep) -> ExperimentPublic:
    """A named architecture needs no upload, so such an experiment is ``ready`` at once."""
    experiment = Experiment(
        name=body.name,
        framework=body.framework,
        dataset=body.dataset,
        device=body.device,
        goal=body.goal,
        constraints=body.constraints.active(),
        techniques=list(body.techniques),
        arch=body.arch,
        epochs=body.epochs,
        technique_configs={name: dict(values) for name, values in body.technique_configs.items()},
        preprocessing=body.preprocessing.model_dump(mode="json") if body.preprocessing else None,
        time_budget_s=body.time_budget_s,
        status="ready" if body.arch else "created",
        files=[],
    )
    session.add(experiment)
    session.commit()
    return ExperimentPublic.from_row(experiment)


@router.get("", name="list_experiments")
def list_experiments(
    session: SessionDep,
    limit: int = Query(default=20, ge=1, le=100),
    offset: int = Query(default=0, ge=0, le=MAX_OFFSET),
) -> ExperimentsPublic:
    total = session.scalar(select(func.count()).select_from(Experiment)) or 0
    rows = session.scalars(
        select(Experiment)
        .options(*EXPERIMENT_PUBLIC_LOADS)
        .order_by(Experiment.created_at.desc(), Experiment.id.desc())
        .limit(limit)
        .offset(offset)
    )
    items = [ExperimentPublic.from_row(row) for row in rows]
    return ExperimentsPublic(items=items, total=total, limit=limit, offset=offset)


@router.get("/{experiment_id}", name="get_experiment", responses=ERRORS)
def get_experiment(experiment_id: str, session: SessionDep) -> ExperimentPublic:
    return ExperimentPublic.from_row(load_experiment(session, experiment_id))


@router.delete("/{experiment_id}", status_code=status.HTTP_204_NO_CONTENT, name="delete_experiment", responses=ERRORS)
def delete_experiment(experiment_id: str, session: SessionDep, storage: StorageDep) -> Response:
    """Rows first, then files: a crash in between leaves folders of a deleted experiment, which the sweep removes."""
    # One guarded statement (status.require): a start racing this delete either finds no row or makes this delete
    # a 409, so no worker ever runs for a deleted experiment.
    require(session, experiment_id, "delete")
    session.commit()  # the database cascades to the experiment's files, runs, recommendation and progress rows
    storage.remove_experiment(experiment_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _uploadable(sessions: sessionmaker[Session], experiment_id: str, action: str) -> str:
    """The experiment's framework if it may receive a file now (404/409 otherwise); the connection goes back at once."""
    with sessions() as session:
        row = session.execute(
            select(Experiment.status, Experiment.framework).where(Experiment.id == experiment_id)
        ).one_or_none()
    if row is None or row.status not in TRANSITIONS[action].sources:
        raise refusal(action, experiment_id, row.status if row is not None else None)
    return str(row.framework)


def _commit_upload(
    sessions: sessionmaker[Session],
    storage: Storage,
    experiment_id: str,
    placed: PlacedFile,
    action: str,
    role: str,
    file_format: str,
) -> ExperimentPublic:
    """The short transaction that ends an upload: claim the experiment's status, then record the placed file.

    The claim (``status.require``) holds the row until the commit, so a start or delete racing the upload waits for
    it or wins before it; if the experiment has been started or deleted meanwhile, the file is deleted again.
    """
    with sessions() as session:
        try:
            if action == "upload_model":
                require(session, experiment_id, action, error=None)
            else:
                require(session, experiment_id, action, dataset=f"custom:{placed.id}")
            experiment = load_experiment(session, experiment_id)
        except BaseException:
            placed.discard()
            raise
        storage.record(session, experiment, placed, role=role, format=file_format)  # commits, or deletes the file
        return ExperimentPublic.from_row(experiment)


async def _receive(
    request: Request, storage: Storage, settings: Settings, area: str, experiment_id: str
) -> ReceivedFile:
    """Stream the body to a temporary file in storage; no database connection is held meanwhile."""
    return await storage.receive(
        request,
        storage.area_dir(area, experiment_id),
        max_bytes=settings.max_upload_bytes,
        idle_timeout_s=settings.upload_idle_timeout_s,
    )


# A format check: the finished upload's path -> (the suffix its loader needs, the format recorded for it).
FormatCheck = Callable[[Path], tuple[str, str]]


def _placed_after(received: ReceivedFile, storage: Storage, check: FormatCheck) -> tuple[PlacedFile, str]:
    """Sniff the finished upload (off the event loop) and rename it to its stored name; a refused file is deleted."""
    try:
        suffix, file_format = check(received.temp_path)
        return storage.place(received, suffix), file_format
    except BaseException:
        received.discard()
        raise


@router.post("/{experiment_id}/upload", name="upload_model", openapi_extra=UPLOAD_BODY, responses=UPLOAD_ERRORS)
async def upload_model(
    experiment_id: str, request: Request, settings: SettingsDep, storage: StorageDep
) -> ExperimentPublic:
    """Store the model file under a service-chosen name; its format is sniffed from the content."""
    # The experiment is read before the body streams and claimed again in a short transaction after it: an upload
    # that takes minutes (or stalls until the idle timeout) holds no database connection.
    sessions = request.app.state.session_factory
    framework = await run_in_threadpool(_uploadable, sessions, experiment_id, "upload_model")

    def check(path: Path) -> tuple[str, str]:  # in a limited child process, as every step that reads the upload
        return inspection.model_format(path, framework, settings)

    received = await _receive(request, storage, settings, MODELS, experiment_id)
    placed, kind = await run_in_threadpool(_placed_after, received, storage, check)
    return await run_in_threadpool(
        _commit_upload, sessions, storage, experiment_id, placed, "upload_model", "original", kind
    )


def _decode_placed_dataset(placed: PlacedFile, settings: Settings) -> None:
    """Refuse an archive whose decoding would pass the dataset budget, then prove it decodes; a refused file goes."""
    try:  # the loader reads the archive under its real suffix, hence after placing it
        inspection.decode_dataset(placed.path, settings)
    except BaseException:
        placed.discard()
        raise


@router.post("/{experiment_id}/dataset", name="upload_dataset", openapi_extra=UPLOAD_BODY, responses=UPLOAD_ERRORS)
async def upload_dataset(
    experiment_id: str, request: Request, settings: SettingsDep, storage: StorageDep
) -> ExperimentPublic:
    """A custom dataset archive (.npz or .zip); the experiment's ``dataset`` becomes ``custom:<file id>``."""
    sessions = request.app.state.session_factory
    await run_in_threadpool(_uploadable, sessions, experiment_id, "upload_dataset")
    received = await _receive(request, storage, settings, DATASETS, experiment_id)
    placed, kind = await run_in_threadpool(
        _placed_after, received, storage, lambda path: inspection.dataset_kind(path, settings)
    )
    await run_in_threadpool(_decode_placed_dataset, placed, settings)
    return await run_in_threadpool(
        _commit_upload, sessions, storage, experiment_id, placed, "upload_dataset", "dataset", kind
    )
