"""Experiments: create, list, read, delete, and receive the model file and an optional custom dataset.

Uploads are ``async`` routes that read the raw request stream (``Storage.receive``) instead of declaring an
``UploadFile`` parameter: FastAPI would otherwise spool the whole body to a temporary file before the handler runs,
so the size limit could only be checked after receiving all of it. The OpenAPI description of the multipart body is
therefore written out by hand in ``UPLOAD_BODY``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload
from starlette.concurrency import run_in_threadpool

from edgeopt.errors import InvalidInput, NotFound
from edgeopt.formats import check_dataset_archive, check_model_file
from edgeopt.service.db.models import ACTIVE_STATUSES, Experiment, OptimizationRun
from edgeopt.service.deps import SessionDep, SettingsDep, StorageDep
from edgeopt.service.schemas import ErrorPublic, ExperimentCreate, ExperimentPublic, ExperimentsPublic
from edgeopt.service.storage import DATASETS, MODELS, ReceivedFile

router = APIRouter(prefix="/api/experiments", tags=["experiments"])

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
    413: {"model": ErrorPublic, "description": "Larger than EDGEOPT_MAX_UPLOAD_BYTES."},
}
# Beyond a 64-bit OFFSET the database fails; far below it a page is empty anyway.
MAX_OFFSET = 2**31 - 1
# Files can be (re)placed only before the experiment has run: results must describe the files they came from.
UPLOADABLE_STATUSES = frozenset({"created", "ready"})
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


def _require_uploadable(experiment: Experiment) -> None:
    if experiment.status not in UPLOADABLE_STATUSES:
        raise InvalidInput(
            f"The experiment is {experiment.status}; files can only be uploaded before it starts. "
            "Create a new experiment to optimize another model.",
            status_code=409,
        )


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
    experiment = load_experiment(session, experiment_id)
    if experiment.status in ACTIVE_STATUSES:
        raise InvalidInput(f"The experiment is {experiment.status}; cancel it before deleting it.", status_code=409)
    session.delete(experiment)
    session.commit()
    storage.remove_experiment(experiment_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _receive_checked(
    request: Request,
    session: Session,
    storage: StorageDep,
    experiment: Experiment,
    area: str,
    max_bytes: int,
    check: Callable[[Path], Any],
) -> tuple[ReceivedFile, Any, Experiment]:
    """Stream the upload to disk, sniff it off the event loop, and look at the experiment again.

    An upload can take minutes; meanwhile the experiment may have been deleted or started. Its row is therefore
    re-read once the file is complete, and a refused file is deleted before answering.
    """
    experiment_id = experiment.id  # read now: after expire_all, a deleted row could not be read back
    received = await storage.receive(request, storage.area_dir(area, experiment_id), max_bytes=max_bytes)
    try:
        verdict = await run_in_threadpool(check, received.temp_path)
        session.expire_all()
        current = load_experiment(session, experiment_id)
        _require_uploadable(current)
    except BaseException:
        received.discard()
        raise
    return received, verdict, current


@router.post("/{experiment_id}/upload", name="upload_model", openapi_extra=UPLOAD_BODY, responses=UPLOAD_ERRORS)
async def upload_model(
    experiment_id: str, request: Request, session: SessionDep, settings: SettingsDep, storage: StorageDep
) -> ExperimentPublic:
    """Store the model file under a service-chosen name; its format is sniffed from the content."""
    experiment = load_experiment(session, experiment_id)
    _require_uploadable(experiment)

    framework = experiment.framework

    def check(path: Path) -> Any:
        return check_model_file(path, framework, trust_pickles=settings.trust_pickles)

    received, model_format, experiment = await _receive_checked(
        request, session, storage, experiment, MODELS, settings.max_upload_bytes, check
    )
    placed = storage.place(received, model_format.extension)
    experiment.status = "ready"
    experiment.error = None
    storage.record(session, experiment, placed, role="original", format=model_format.kind)
    return ExperimentPublic.from_row(experiment)


def _dataset_loader() -> Callable[[str], Any] | None:
    """The engine's dataset loader when it is installed; the service then refuses an archive it cannot read."""
    try:
        module = importlib.import_module("edgeopt.data")
    except ImportError:
        return None
    return getattr(module, "load_dataset", None)


@router.post("/{experiment_id}/dataset", name="upload_dataset", openapi_extra=UPLOAD_BODY, responses=UPLOAD_ERRORS)
async def upload_dataset(
    experiment_id: str, request: Request, session: SessionDep, settings: SettingsDep, storage: StorageDep
) -> ExperimentPublic:
    """A custom dataset archive (.npz or .zip); the experiment's ``dataset`` becomes ``custom:<file id>``."""
    experiment = load_experiment(session, experiment_id)
    _require_uploadable(experiment)
    received, kind, experiment = await _receive_checked(
        request, session, storage, experiment, DATASETS, settings.max_upload_bytes, check_dataset_archive
    )
    placed = storage.place(received, f".{kind}")
    loader = _dataset_loader()
    if loader is not None:
        try:  # the loader reads the archive under its real suffix, hence after placing it
            await run_in_threadpool(loader, str(placed.path))
        except InvalidInput as exc:
            placed.discard()
            raise InvalidInput(str(exc), field="file", status_code=exc.status_code) from exc
        except BaseException:
            placed.discard()
            raise
    experiment.dataset = f"custom:{placed.id}"
    storage.record(session, experiment, placed, role="dataset", format=kind)
    return ExperimentPublic.from_row(experiment)
