"""The API's request and response bodies (one family per resource, as in the FastAPI full-stack template).

Every name is typed with the catalog's ``Literal`` aliases, so an unknown framework, device, goal, dataset,
technique or architecture is a 422 whose ``loc`` names the field, and the OpenAPI schema (from which the web app's
client is generated) lists the allowed values.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgeopt import catalog
from edgeopt.catalog import (
    TECHNIQUE_NAMES,
    ArchitectureName,
    DeviceName,
    Framework,
    GoalName,
    PresetDataset,
    TechniqueName,
)
from edgeopt.preprocessing import Preprocessing
from edgeopt.recommend import BASELINE
from edgeopt.report import Constraints
from edgeopt.service.db.models import ACTIVE_STATUSES, EXPERIMENT_STATUSES, FINISHED_STATUSES, ExperimentStatus
from edgeopt.strength_search import MAX_TIME_BUDGET_S
from edgeopt.technique_specs import technique_spec
from edgeopt.techniques import MAX_EPOCHS

if TYPE_CHECKING:
    from edgeopt.service.db.models import Experiment


def _nul_path(value: Any, path: str = "") -> str | None:
    """Where a NUL character sits in a JSON value (``""`` for the top level), or None when there is none."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        where = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and "\x00" in key:
            return where
        found = _nul_path(item, where)
        if found is not None:
            return found
    return None


class ExperimentCreate(BaseModel):
    """What a user chooses before uploading: the model file comes next, through ``/upload``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200)
    framework: Framework
    dataset: PresetDataset = Field(description="A preset; upload a custom archive to /dataset afterwards instead.")
    device: DeviceName
    goal: GoalName = "balanced"
    constraints: Constraints = Field(default_factory=Constraints)
    techniques: list[TechniqueName] = Field(
        default_factory=lambda: list(TECHNIQUE_NAMES), description="Run in catalog order, whatever order is sent."
    )
    arch: ArchitectureName | None = Field(
        default=None, description="A named architecture instead of (or as the skeleton for) an uploaded file."
    )
    epochs: int | None = Field(default=None, ge=0, le=MAX_EPOCHS, description="Fine-tuning epochs where it applies.")
    technique_configs: dict[TechniqueName, dict[str, Any]] = Field(
        default_factory=dict, description="Per-technique overrides of the config defaults."
    )
    preprocessing: Preprocessing | None = Field(
        default=None, description="The input convention the model expects; empty: the model's own."
    )
    time_budget_s: float | None = Field(
        default=None,
        gt=0,
        le=MAX_TIME_BUDGET_S,
        description="Seconds all strength searches may take together; empty: about each technique's own duration.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        """PostgreSQL refuses NUL in text and JSON: a 422 naming the field, not a database error."""
        where = _nul_path(data)
        if where is not None:
            raise ValueError(f"{where or 'the body'} contains a NUL character")
        return data

    @field_validator("name")
    @classmethod
    def _strip_name(cls, value: str) -> str:
        return value.strip()

    @field_validator("techniques")
    @classmethod
    def _unique_in_catalog_order(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("choose at least one technique")
        duplicates = sorted({name for name in value if value.count(name) > 1})
        if duplicates:
            raise ValueError(f"each technique may appear once; repeated: {', '.join(duplicates)}")
        return [name for name in TECHNIQUE_NAMES if name in value]

    @field_validator("technique_configs")
    @classmethod
    def _configs_valid(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Check overrides against each technique's config class now, not minutes later inside the job."""
        for technique, overrides in value.items():
            try:
                technique_spec(technique).config_class.model_validate(overrides)
            except ValidationError as exc:
                problems = "; ".join(
                    f"technique_configs.{technique}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                    for err in exc.errors()
                )
                raise ValueError(problems) from None
        return value


class ModelFilePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    role: str
    technique: str | None
    format: str
    original_filename: str
    sha256: str
    size_bytes: int
    created_at: datetime


class RecommendedSummaryPublic(BaseModel):
    """The recommended result in a few figures, so a list of experiments needs no report per row."""

    technique: str = Field(description=f"A technique, or {BASELINE!r} when no technique completed.")
    accuracy: float | None
    size_bytes: int | None
    latency_host_ms: float | None = Field(description="Median host latency (report field latency_ms.host).")

    @classmethod
    def of(cls, experiment: Experiment) -> RecommendedSummaryPublic | None:
        """From the stored recommendation and the run (or baseline) it names; None while there is nothing to show.

        Reads ``experiment.recommendation``, ``experiment.runs`` and ``experiment.baseline``: load the first two
        with the experiment (``EXPERIMENT_PUBLIC_LOADS`` in the experiment routes) when listing many.
        """
        row = experiment.recommendation
        technique = row.body.get("technique") if row is not None and row.body else None
        if not technique:
            return None
        if technique == BASELINE:
            baseline = experiment.baseline_result()
            if baseline is None:
                return None
            return cls(
                technique=technique,
                accuracy=baseline.accuracy,
                size_bytes=baseline.size_bytes,
                latency_host_ms=baseline.latency_ms.host,
            )
        run = next((r for r in experiment.runs if r.technique == technique and r.status == "completed"), None)
        if run is None:
            return None
        return cls(
            technique=technique, accuracy=run.accuracy, size_bytes=run.size_bytes, latency_host_ms=run.latency_host_ms
        )


class ExperimentPublic(BaseModel):
    # Built with ``from_row``: ``recommended`` is not an attribute of the table row.
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    framework: str
    dataset: str
    device: str
    goal: str
    constraints: dict[str, float]
    techniques: list[str]
    arch: str | None
    epochs: int | None
    preprocessing: Preprocessing | None = None
    time_budget_s: float | None = None
    technique_configs: dict[str, dict[str, Any]]
    status: ExperimentStatus
    error: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    files: list[ModelFilePublic] = Field(default_factory=list)
    recommended: RecommendedSummaryPublic | None = Field(
        default=None, description="The recommended result's key figures; null until there is a recommendation."
    )

    @classmethod
    def from_row(cls, experiment: Experiment) -> ExperimentPublic:
        public = cls.model_validate(experiment)
        public.recommended = RecommendedSummaryPublic.of(experiment)
        return public


class ExperimentsPublic(BaseModel):
    items: list[ExperimentPublic]
    total: int
    limit: int
    offset: int


class HealthPublic(BaseModel):
    status: str
    version: str
    database: str


class ErrorPublic(BaseModel):
    """The body of every 4xx the service raises itself (FastAPI's own 422 keeps its standard list form)."""

    detail: str
    field: str | None = None


# Answers any route that needs a database connection can give under load (src/edgeopt/service/app.py: the pool's
# timeout or SQLite's busy timeout ran out), documented on every such route so clients know to retry.
BUSY_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {
        "model": ErrorPublic,
        "description": "The service is busy: no database connection came free within EDGEOPT_DB_POOL_TIMEOUT_S. "
        "Retry after the seconds in Retry-After.",
        "headers": {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}},
    }
}
# An upload's body that sends nothing for EDGEOPT_UPLOAD_IDLE_TIMEOUT_S (src/edgeopt/service/storage.py).
STALLED_RESPONSES: dict[int | str, dict[str, Any]] = {
    408: {
        "model": ErrorPublic,
        "description": "The upload stalled: nothing arrived for EDGEOPT_UPLOAD_IDLE_TIMEOUT_S seconds; its partial "
        "file was deleted. Send the file again.",
    }
}


class StatusesPublic(BaseModel):
    """Experiment statuses in the service's order, and the groups the web app acts on."""

    all: list[ExperimentStatus]
    active: list[ExperimentStatus] = Field(description="A worker may be touching the files: no delete, no restart.")
    finished: list[ExperimentStatus] = Field(description="Nothing more happens until the user starts it again.")


class LimitsPublic(BaseModel):
    max_epochs: int = Field(description="The most fine-tuning epochs an experiment may ask for.")
    max_time_budget_s: float = Field(description="The longest time budget the strength searches may be given.")


class CatalogPublic(BaseModel):
    """``GET /api/catalog``: every name a user can choose (``edgeopt.catalog``), the statuses and the limits."""

    frameworks: list[Framework]
    techniques: list[catalog.TechniqueInfo]
    devices: list[catalog.DeviceInfo]
    goals: list[catalog.GoalInfo]
    datasets: list[catalog.DatasetInfo]
    architectures: list[catalog.ArchitectureInfo]
    preprocessing_presets: list[catalog.PreprocessingPresetInfo]
    statuses: StatusesPublic
    limits: LimitsPublic

    @classmethod
    def build(cls) -> CatalogPublic:
        def ordered(group: frozenset[str]) -> list[str]:
            return [status for status in EXPERIMENT_STATUSES if status in group]

        return cls.model_validate(
            {
                **catalog.as_dict(),
                "statuses": {
                    "all": list(EXPERIMENT_STATUSES),
                    "active": ordered(ACTIVE_STATUSES),
                    "finished": ordered(FINISHED_STATUSES),
                },
                "limits": {"max_epochs": MAX_EPOCHS, "max_time_budget_s": MAX_TIME_BUDGET_S},
            }
        )
