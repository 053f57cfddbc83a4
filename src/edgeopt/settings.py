"""One settings class for the engine, the CLI and the service (environment prefix ``EDGEOPT_``).

Every variable is documented in ``.env.example``; keep the two in step.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_HOME = Path.home() / ".edgeopt"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EDGEOPT_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; unset means a SQLite file under the storage dir."
    )
    storage_dir: Path = Field(default=DEFAULT_HOME / "storage", description="Uploaded models, datasets, artifacts.")
    data_dir: Path = Field(default=DEFAULT_HOME / "data", description="Preset datasets in their standard formats.")
    max_upload_bytes: int = Field(default=2 * 1024**3, gt=0, description="Largest accepted upload (2 GB).")
    cors_origins: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:5173", "http://localhost:5173"],
        description="Origins allowed to call the API from a browser (the Vite dev server by default).",
    )
    api_key: str | None = Field(default=None, description="When set, every /api and /ws request must carry it.")
    trust_pickles: bool = Field(
        default=False, description="Allow loading whole pickled PyTorch modules and Keras Lambda layers."
    )
    redis_url: str | None = Field(default=None, description="Progress channels over Redis when set.")
    max_concurrent_experiments: int = Field(
        default=1, ge=1, le=16, description="Experiments the embedded runner runs at once (unused with a broker)."
    )
    board_lease_s: float = Field(
        default=300.0, gt=0, le=86400, description="How long an agent holds a board measurement job between renewals."
    )
    broker_url: str | None = Field(
        default=None,
        description="Celery broker (redis://... or amqp://...). When set, `edgeopt serve` only enqueues and "
        "`edgeopt worker` processes run the techniques; unset, the service runs experiments itself.",
    )
    task_queue: str = Field(
        default="edgeopt", min_length=1, max_length=100, description="Celery queue the API and workers share."
    )
    task_time_limit_s: float = Field(
        default=3600.0,
        gt=0.0,
        le=7 * 24 * 3600.0,
        description="Longest run of one Celery task (one technique); past it the technique fails. "
        "Redis redelivers a dead worker's task this long + 60 s after it started (visibility timeout).",
    )
    threads: int = Field(default=1, ge=1, le=64, description="Threads used for host latency measurement.")
    host_timing: Literal["fresh_process", "this_process"] = Field(
        default="fresh_process",
        description="Where an experiment's artifacts are re-timed side by side at its end: a fresh process that "
        "holds nothing else (edgeopt.host_timing), or the experiment's own process (saves a framework import; the "
        "test suite's choice, where figures are checked to exist, not to be steady).",
    )
    latency_seconds: float = Field(
        default=0.5,
        ge=0.0,
        le=60.0,
        description="Least timed work per latency measurement: a sub-millisecond model gets hundreds of samples, "
        "so a short burst of other work on the host cannot move the median.",
    )
    allow_random_init: bool = Field(
        default=False, description="Use randomly initialised weights when pretrained ones are missing offline."
    )
    db_pool_size: int = Field(default=10, ge=1, le=200, description="Database connections kept open.")
    db_max_overflow: int = Field(
        default=30, ge=0, le=500, description="Extra connections opened under load beyond db_pool_size."
    )
    db_pool_timeout_s: float = Field(
        default=5.0,
        gt=0.0,
        le=60.0,
        description="Longest wait for a free database connection; past it the request gets 503 with Retry-After.",
    )
    max_dataset_pixels: int = Field(
        default=100_000_000,
        gt=0,
        description="Most decoded pixels (height x width, all images) a custom dataset may hold; CIFAR-10 has 61 M.",
    )
    max_image_pixels: int = Field(
        default=4096 * 4096, gt=0, description="Most decoded pixels of one image in a custom dataset."
    )
    max_dataset_inflated_bytes: int = Field(
        default=1024**3, gt=0, description="Most bytes a custom dataset archive may inflate to (1 GiB)."
    )
    isolated_memory_bytes: int = Field(
        default=8 * 1024**3,
        ge=256 * 1024**2,
        description="Address space (RLIMIT_AS) of the child process that checks an upload or decodes a dataset "
        "(8 GiB: PyTorch alone maps about 3 GB); past it the upload gets 413.",
    )
    isolated_timeout_s: float = Field(
        default=300.0,
        gt=0.0,
        description="Longest time the child process may take to check an upload or decode a dataset; past it 413.",
    )
    upload_idle_timeout_s: float = Field(
        default=30.0,
        gt=0.0,
        le=3600.0,
        description="Longest wait for the next piece of an upload's body; a stalled upload gets 408 and is removed.",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip().startswith("["):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard_with_key(cls, value: list[str]) -> list[str]:
        if "*" in value:
            raise ValueError("EDGEOPT_CORS_ORIGINS must list origins explicitly; '*' is refused")
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.storage_dir / 'edgeopt.db'}"

    @property
    def channel_url(self) -> str | None:
        """Redis URL of the progress channels: ``redis_url``, else a Redis broker (workers publish there too)."""
        if self.redis_url:
            return self.redis_url
        if self.broker_url and self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return None

    @property
    def models_dir(self) -> Path:
        return self.storage_dir / "models"

    @property
    def datasets_dir(self) -> Path:
        return self.storage_dir / "datasets"


@lru_cache
def get_settings() -> Settings:
    return Settings()
