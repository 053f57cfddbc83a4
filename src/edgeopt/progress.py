"""Progress events: how long work tells the CLI bar, the job runner and the WebSocket what it is doing.

The engine emits plain dataclasses through a callback and knows nothing of sockets or SQL. Every emission is also a
stage boundary: that is where a cancellation requested by the user is honoured.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from edgeopt.errors import Cancelled

EventKind = Literal[
    "experiment_started",
    "baseline_measured",
    "technique_started",
    "progress",
    "technique_completed",
    "technique_failed",
    "experiment_completed",
    "experiment_failed",
    "experiment_cancelled",
]


@dataclass(frozen=True)
class ProgressEvent:
    kind: EventKind
    technique: str | None = None  # "baseline" while the baseline is measured
    stage: str = ""  # a stage name a user understands, e.g. "Fine-tuning (epoch 2 of 3)"
    fraction: float = 0.0  # of the current technique, 0..1
    technique_index: int = 0  # 0-based position among the techniques of this experiment
    total_techniques: int = 0
    payload: dict[str, Any] = field(default_factory=dict)  # the finished run's result, metrics, error, ...
    timestamp: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ProgressCallback = Callable[[ProgressEvent], None]
CancelCheck = Callable[[], bool]


def _never() -> bool:
    return False


def _ignore(_: ProgressEvent) -> None:
    return None


class StageReporter:
    """Handed to a technique: it reports stages and fractions, and raises ``Cancelled`` when asked to stop.

    Techniques call ``stage("Fine-tuning", done / total)`` as they go; the reporter adds which technique it is
    and where it stands in the experiment.
    """

    def __init__(
        self,
        technique: str,
        technique_index: int,
        total_techniques: int,
        emit: ProgressCallback = _ignore,
        cancelled: CancelCheck = _never,
        span: tuple[float, float] = (0.0, 1.0),
        _shared: list[float] | None = None,
    ) -> None:
        self.technique = technique
        self.technique_index = technique_index
        self.total_techniques = total_techniques
        self._emit = emit
        self._cancelled = cancelled
        self._span = span
        # The last fraction emitted for this technique, shared with sub-reporters so progress never goes back.
        self._last = _shared if _shared is not None else [0.0]

    def sub(self, start: float, end: float) -> StageReporter:
        """A reporter whose 0..1 maps onto ``start..end`` of this one (e.g. the technique, then measuring it)."""
        lo, hi = self._span
        return StageReporter(
            self.technique,
            self.technique_index,
            self.total_techniques,
            self._emit,
            self._cancelled,
            span=(lo + (hi - lo) * start, lo + (hi - lo) * end),
            _shared=self._last,
        )

    def stage(self, name: str, fraction: float, **metrics: Any) -> None:
        if self._cancelled():
            raise Cancelled("The experiment was cancelled.")
        lo, hi = self._span
        overall = lo + (hi - lo) * min(1.0, max(0.0, fraction))
        self._last[0] = max(self._last[0], overall)
        self._emit(
            ProgressEvent(
                kind="progress",
                technique=self.technique,
                stage=name,
                fraction=self._last[0],
                technique_index=self.technique_index,
                total_techniques=self.total_techniques,
                payload=dict(metrics),
            )
        )

    def check_cancelled(self) -> None:
        if self._cancelled():
            raise Cancelled("The experiment was cancelled.")


def silent_reporter(technique: str = "test") -> StageReporter:
    """A reporter that goes nowhere; for tests and one-off calls."""
    return StageReporter(technique, 0, 1)
