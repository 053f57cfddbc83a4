"""Time-remaining estimates for a running experiment, from its own progress events.

Two parts, one per bar:
- the current technique: its measured rate (elapsed time / fraction done) blended with what the cost model
  predicted for it, trusting the measured rate more as the technique advances;
- the rest of the experiment: a cost model per technique (``TechniqueSpec.cost``: a fixed part for export and
  measurement plus fine-tuning epochs weighted by how expensive an epoch of that technique is) in units measured on
  this very run: the baseline's export-and-measure time is the unit, and the techniques' actual durations correct
  the whole model by the ratio of actual to predicted time so far.
- "so far" includes the step that is running: while the baseline runs, the unit is at least the time it has
  already taken (a baseline past the prior proves the host slower than the prior's); while a technique runs, its
  projected duration (as for its own bar) joins the finished ones in the correction, so the first technique
  corrects the rest before it finishes. The baseline's fraction is not read as a rate: its export, most of its
  time, reports no progress, and its measurement then runs from 0.3 to 1.0 in a second or two (a projection from
  it sent the ETA from 144 s to 441 s in that second: benchmarks/results/eta.md, 2026-12-05).
- a technique that searches its strength for the accuracy budget (``edgeopt.strength_search``) also takes its
  search: ``SEARCH_SHARE`` of its own time by default, or its share of the user's time budget.
- after the last technique, the artifacts are re-timed side by side in a fresh process: ``RETIME_UNITS``.
Figures from a real run through the service are in ``benchmarks/results/eta.md`` (``benchmarks/eta_quality.py``).
ETAs are never negative, and a new estimate can move the previous one only so far, so the number a user watches
does not jump to nonsense when a slow stage starts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgeopt.progress import ProgressEvent
from edgeopt.technique_specs import SPEC_NAMES, UNKNOWN_COST, searched_techniques, technique_spec

log = logging.getLogger(__name__)

# Before the original model has been measured, the unit is a prior: seconds one unit took for each framework's demo
# model (about 1.5 MB) on a quiet 2-core host (benchmarks/results/eta.md: for PyTorch, three quiet runs with the
# strength search took 75-80 s over about 10.7 units, where 10 s, fitted before the search, put the 10 % point
# 47-75 % high; TensorFlow 41 s over 6.6 units), grown with the model file's size (export, lowering and measurement
# scale with the weights: a 45 MB ResNet18 took about 4x the demo's unit). A baseline running past it raises it
# (``_unit``); the measured baseline replaces it.
PRIOR_UNIT_S: dict[str, float] = {"pytorch": 7.5, "tensorflow": 6.0}
PRIOR_REFERENCE_MB = 1.5
PRIOR_MB_SCALE = 15.0


def prior_unit_seconds(framework: str, model_bytes: int | None) -> float:
    """What one unit (the original model's export and measurement) is expected to take, before it is measured."""
    mb = (model_bytes or 0) / 1e6 or PRIOR_REFERENCE_MB
    growth = (1.0 + mb / PRIOR_MB_SCALE) / (1.0 + PRIOR_REFERENCE_MB / PRIOR_MB_SCALE)
    return PRIOR_UNIT_S.get(framework, PRIOR_UNIT_S["pytorch"]) * growth


# A search without the user's time budget may take about its technique's own time (its default budget), but
# usually takes less: its candidates recover briefly. Measured: 0.15-0.25x on the PyTorch demo (eta_quality run,
# benchmarks/results/eta.md), about 1.1x on Keras MobileNetV2 (benchmarks/results/tensorflow.md). The run's own
# correction factor then adjusts it like every other part of the model.
SEARCH_SHARE = 0.5

# The end of the run: every artifact re-timed side by side in a fresh process (``edgeopt.host_timing``), which first
# imports its framework. On the PyTorch demo that took 10-15 s where the original model's export and measurement
# (the unit) took 9 s at the same load (benchmarks/results/eta.md, 2026-12-05).
RETIME_UNITS = 1.3


@dataclass
class EtaModel:
    techniques: list[str]
    epochs: dict[str, int] = field(default_factory=dict)
    framework: str = "pytorch"  # per technique, when the user overrode the defaults
    clock: Callable[[], float] = time.monotonic
    model_bytes: int | None = None  # size of the uploaded model file, for the prior before the baseline is measured
    baseline_done: bool = False  # True when a restarted experiment already has its baseline
    searching: frozenset[str] = frozenset()  # techniques whose strength is searched for the accuracy budget
    search_budget_s: float | None = None  # the user's time budget for all searches; None: each its own time

    unit_s: float | None = None  # seconds of one fixed unit (the baseline's export + measurement)
    _correction: float = 1.0
    _predicted_done: float = 0.0
    _actual_done: float = 0.0
    _experiment_start: float | None = None
    _technique: str | None = None
    _technique_start: float = 0.0
    _fraction: float = 0.0
    _completed: set[str] = field(default_factory=set)
    _last_overall: float | None = None
    _last_technique: float | None = None
    _last_time: float = 0.0

    def _units(self, technique: str) -> float:
        """The technique's cost model (``TechniqueSpec.cost``) at this run's epochs, in baseline units."""
        epochs = self.epochs.get(technique)
        if technique not in SPEC_NAMES:
            return UNKNOWN_COST.units(epochs or 0)
        return technique_spec(technique).units(self.framework, epochs)

    @classmethod
    def for_experiment(cls, spec_payload: dict[str, Any], techniques: list[str], model_bytes: int | None) -> EtaModel:
        """The model for ``techniques`` of an experiment (``ExperimentSpec.to_payload()``): its epochs, framework,
        which techniques search their strength and the user's time budget for those searches."""
        epochs = spec_payload.get("epochs")
        return cls(
            techniques=techniques,
            epochs={t: epochs for t in techniques} if epochs is not None else {},
            framework=spec_payload["framework"],
            model_bytes=model_bytes,
            searching=searched_techniques(techniques, spec_payload.get("technique_configs") or {}),
            search_budget_s=spec_payload.get("time_budget_s"),
        )

    def predicted_seconds(self, technique: str) -> float:
        """Seconds ``technique`` is expected to take in all, by the cost model corrected with this run so far."""
        correction = self._correction if technique == self._technique else self._live_correction()
        return self._predicted(technique, correction)

    def retime_seconds(self) -> float:
        """The closing step after the last technique: the side-by-side re-timing of every artifact."""
        return RETIME_UNITS * self._unit() * self._correction

    def _unit(self) -> float:
        """Seconds of one unit: measured, or else the prior, and while the baseline runs at least its elapsed time."""
        if self.unit_s is not None:
            return self.unit_s
        prior = prior_unit_seconds(self.framework, self.model_bytes)
        if self._technique != "baseline":
            return prior
        return max(prior, self.clock() - self._technique_start)

    def _live_correction(self) -> float:
        """The run's correction with the running technique counted at its projected duration."""
        running = self._technique
        if running is None or running == "baseline" or running not in self.techniques:
            return self._correction
        elapsed = self.clock() - self._technique_start
        projected = _projected_total(elapsed, self._fraction, self._predicted(running, self._correction))
        return _clamped_ratio(self._actual_done + projected, self._predicted_done + self._predicted(running, 1.0))

    def _predicted(self, technique: str, correction: float) -> float:
        unit = self._unit()
        own = correction * unit * self._units(technique)
        if technique not in self.searching:
            return own
        if self.search_budget_s is None:
            return (1.0 + SEARCH_SHARE) * own
        return own + self.search_budget_s / len(self.searching)  # shared in order; the share is a fair guess

    def observe(self, event: ProgressEvent) -> None:
        now = self.clock()
        if self._experiment_start is None:
            self._experiment_start = now
            self._log(f"first event ({event.kind}), prior unit {self._unit():.2f} s", now)
        if event.kind in ("technique_started", "progress") and event.technique != self._technique:
            self._start_technique(event.technique, now)
        if event.kind == "progress":
            self._fraction = event.fraction
        elif event.kind in ("technique_completed", "technique_failed") and event.technique:
            self._finish_technique(event.technique, now)
        elif event.kind == "baseline_measured" and self._technique == "baseline" and self.unit_s is None:
            self._measured_unit(now)

    def _measured_unit(self, now: float) -> None:
        self.unit_s = max(now - self._technique_start, 1e-3)
        self.baseline_done = True
        self._log("baseline measured", now)

    def _log(self, what: str, now: float) -> None:
        """One line per stage change with what the model now believes: how a wrong estimate came about."""
        started = self._experiment_start if self._experiment_start is not None else now
        log.info(
            "eta: %s at %.1f s; unit %.2f s, correction %.2f; predicted s: %s",
            what,
            now - started,
            self.unit_s or 0.0,
            self._correction,
            {t: round(self.predicted_seconds(t), 1) for t in self.techniques if t not in self._completed},
        )

    def _start_technique(self, technique: str | None, now: float) -> None:
        if self._technique == "baseline" and self.unit_s is None:
            self._measured_unit(now)
        self._technique = technique
        self._technique_start = now
        self._fraction = 0.0
        self._last_technique = None

    def _finish_technique(self, technique: str, now: float) -> None:
        if technique in self._completed or technique not in self.techniques:
            return  # the baseline, or a run kept from before a restart: neither says how fast this run goes
        self._completed.add(technique)
        actual = now - self._technique_start
        predicted = self._predicted(technique, 1.0)
        expected = self._predicted(technique, self._correction)
        self._predicted_done += predicted
        self._actual_done += actual
        self._correction = _clamped_ratio(self._actual_done, self._predicted_done)
        self._technique = None
        self._fraction = 1.0
        self._log(f"{technique} took {actual:.1f} s (expected {expected:.1f} s)", now)

    def technique_eta(self) -> float:
        if self._technique is None or self._technique == "baseline":
            return 0.0
        now = self.clock()
        elapsed = now - self._technique_start
        raw = _projected_total(elapsed, self._fraction, self.predicted_seconds(self._technique)) - elapsed
        self._last_technique = _damped(self._last_technique, raw, now - self._last_time)
        return max(self._last_technique, 0.0)

    def overall_eta(self) -> float:
        """Seconds left for the whole experiment; damped so one slow stage does not swing it wildly."""
        now = self.clock()
        current = self.technique_eta() if self._technique not in (None, "baseline") else 0.0
        if not self.baseline_done:
            # The original model's export and measurement is a step of its own: one unit, projected while it runs.
            started = self._technique_start if self._technique == "baseline" else now
            current += max(self._unit() - (now - started), 0.0)
        remaining = [name for name in self.techniques if name not in self._completed and name != self._technique]
        raw = current + sum(self.predicted_seconds(name) for name in remaining) + self.retime_seconds()
        self._last_overall = _damped(self._last_overall, raw, now - self._last_time)
        self._last_time = now
        return max(self._last_overall, 0.0)


def _projected_total(elapsed: float, fraction: float, predicted: float) -> float:
    """How long a running step takes in all: its measured rate (elapsed / fraction) blended with ``predicted``,
    trusting the rate more as the step advances, and never less than the ``elapsed`` time it has already taken."""
    predicted_left = max(predicted - elapsed, 0.0)
    if fraction <= 0.02:
        return elapsed + predicted_left
    measured_left = elapsed * (1.0 - fraction) / fraction
    return elapsed + fraction * measured_left + (1.0 - fraction) * predicted_left


def _clamped_ratio(actual: float, predicted: float) -> float:
    """Actual over predicted time, kept within 0.33-3 so one odd step cannot make the estimate absurd."""
    return min(3.0, max(0.33, actual / max(predicted, 1e-6)))


def _damped(previous: float | None, new: float, dt: float) -> float:
    """Move towards ``new`` but count down smoothly: at most halve or double the time left in one update."""
    if previous is None:
        return new
    expected = max(previous - max(dt, 0.0), 0.0)
    return min(max(new, expected * 0.5), expected * 2.0 + 1.0)
