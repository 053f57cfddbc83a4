"""The report schema (docs/architecture.md section 5): one definition for the pipeline, CLI, API and web app.

``report.json`` and ``GET /api/experiments/{id}/results`` are both a ``Report``; the OpenAPI schema the web app's
client is generated from comes from these classes too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgeopt.preprocessing import Preprocessing

RunStatus = Literal["completed", "failed", "skipped"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Constraints(_Model):
    min_accuracy: float | None = Field(default=None, ge=0.0, le=1.0)
    max_size_mb: float | None = Field(default=None, gt=0.0)
    max_latency_ms: float | None = Field(default=None, gt=0.0)
    max_accuracy_drop: float | None = Field(default=None, ge=0.0, le=1.0)

    def active(self) -> dict[str, float]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class LatencyStats(_Model):
    host: float = Field(description="Median ms of >= 50 timed batch-1 runs after warm-up, on this host.")
    host_p90: float
    method: Literal["sequential", "interleaved"] = Field(
        default="sequential",
        description="interleaved: re-timed in rotated turns with the experiment's other artifacts, so they compare.",
    )
    noisy: bool = Field(
        default=False, description="p90 stayed above 1.5x the median after a re-measurement: treat as rough."
    )


class DeviceEstimate(_Model):
    """One batch-1 inference on a board, with the assumptions the figure rests on."""

    latency_ms: float
    memory_mb: float
    power_w: float
    energy_mj: float
    fits: bool
    runtime: str
    threads: int
    precision: str | None = Field(default=None, description="What the kernels compute in: fp32, int8 or int4.")
    input_shape: list[int] | None = Field(
        default=None, description="The input the estimate assumed, as batch, height, width, channels."
    )
    corrected_latency_ms: float | None = Field(
        default=None,
        description="latency_ms corrected by measurements on the user's own board of this device (BoardCorrection); "
        "null until an agent has measured some artifact on one.",
    )


class BoardLatency(_Model):
    """A latency measured on a real board by ``edgeopt agent`` (``edgeopt bench``'s timing), next to the estimate."""

    board: str = Field(description="The machine as it named itself, e.g. 'Raspberry Pi 5 Model B Rev 1.0'.")
    device: str | None = Field(default=None, description="The catalog device it is; null when not a catalog Pi.")
    is_raspberry_pi: bool
    latency_ms: float = Field(description="Median ms of >= 50 timed batch-1 runs after warm-up, on that board.")
    latency_p90_ms: float
    noisy: bool = False
    threads: int
    runtime: str
    measured_at: datetime


class BoardCorrection(_Model):
    """How far the estimator was off on the user's own boards of one device, and the factors that correct it."""

    device: str
    measurements: int = Field(description="Artifacts measured on real boards of this device (the latest 200).")
    factors: dict[str, float] = Field(
        description="precision -> measured / estimated (geometric median); 'all' over every precision, used for a "
        "precision not measured yet."
    )
    median_error: float = Field(description="Median factor (>= 1) between estimate and measurement, uncorrected.")
    worst_error: float
    corrected_median_error: float | None = Field(
        default=None,
        description="The same after correction, each measurement predicted from the others (leave-one-out); null "
        "with a single measurement.",
    )
    corrected_worst_error: float | None = None


class ExperimentInfo(_Model):
    id: str
    framework: str
    dataset: str
    device: str
    goal: str
    constraints: dict[str, float] = Field(default_factory=dict)
    preprocessing: Preprocessing | None = Field(
        default=None, description="The input convention the user declared; empty: the model's own."
    )


class BaselineResult(_Model):
    accuracy: float
    size_bytes: int
    compressed_size_bytes: int
    params: int
    flops: int
    sparsity: float = 0.0
    latency_ms: LatencyStats
    artifact: str
    estimates: dict[str, DeviceEstimate] = Field(default_factory=dict)
    precision: str = "fp32"
    config: dict[str, Any] = Field(default_factory=dict)
    notes: str = ""
    board_latency: BoardLatency | None = Field(
        default=None, description="The original model's artifact measured on a real board by an agent, if one has."
    )


class SearchTrial(_Model):
    """One strength the search tried, scored on the validation split (carved from the train split)."""

    setting: float = Field(description="Value of the technique's strength knob (see StrengthSearch.knob).")
    val_accuracy: float = Field(description="Top-1 on the validation split after a short recovery, 0..1.")
    drop_points: float = Field(description="Validation accuracy points below the original model's.")
    within_budget: bool
    params: int | None = None
    flops: int | None = None
    size_ratio: float | None = Field(default=None, description="Estimated original weight bytes / this setting's.")
    seconds: float = 0.0


class StrengthSearch(_Model):
    """How a technique chose its strength: every setting tried, the budget, and why the chosen one won."""

    knob: str = Field(description="The config field searched, e.g. channel_sparsity.")
    budget_points: float = Field(description="Accuracy points the result may lose on the validation split.")
    budget_source: str = Field(description="max_accuracy_drop, min_accuracy or default.")
    baseline_val_accuracy: float
    validation_images: int
    trials: list[SearchTrial] = Field(default_factory=list)
    chosen: float
    chosen_val_accuracy: float | None = Field(default=None, description="Validation accuracy of the final model.")
    reason: str = ""
    time_budget_s: float
    seconds: float = 0.0
    stopped_by_time: bool = False


class RunResult(_Model):
    technique: str
    status: RunStatus
    error: str | None = None
    accuracy: float | None = None
    accuracy_drop: float | None = None
    size_bytes: int | None = None
    compressed_size_bytes: int | None = None
    compression_ratio: float | None = None
    params: int | None = None
    flops: int | None = None
    sparsity: float | None = None
    latency_ms: LatencyStats | None = None
    estimates: dict[str, DeviceEstimate] = Field(default_factory=dict)
    artifact: str | None = None
    formats: dict[str, str] = Field(default_factory=dict, description="Other downloadable files: format -> name.")
    precision: str | None = None
    board_latency: BoardLatency | None = Field(
        default=None, description="Measured on a real board by an agent, once one has (the API adds it)."
    )
    duration_s: float = 0.0
    config: dict[str, Any] = Field(default_factory=dict)
    notes: str = ""
    search: StrengthSearch | None = Field(
        default=None, description="The settings tried to meet the accuracy budget; null: a fixed strength was used."
    )


class Recommendation(_Model):
    technique: str | None
    goal: str
    reasoning: str
    pros: list[str] = Field(default_factory=list)
    cons: list[str] = Field(default_factory=list)
    ranking: list[str] = Field(default_factory=list)
    pareto: list[str] = Field(default_factory=list)
    constraints: dict[str, dict[str, bool]] = Field(default_factory=dict)
    all_constraints_met: bool = False
    run_pros_cons: dict[str, dict[str, list[str]]] = Field(
        default_factory=dict, description="technique -> {'pros': [...], 'cons': [...]} for every completed run."
    )


class Report(_Model):
    experiment: ExperimentInfo
    baseline: BaselineResult | None
    runs: list[RunResult] = Field(default_factory=list)
    recommendation: Recommendation | None = None
    lineage: dict[str, Any] = Field(
        default_factory=dict, description="Model source, seed, library versions: what reproduces this report."
    )
    board_correction: BoardCorrection | None = Field(
        default=None, description="The target board's estimates corrected by measurements on the user's own boards."
    )
