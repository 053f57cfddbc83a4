"""What real boards add to an experiment's results: the latency an agent measured on each artifact, and every
estimate corrected by the measurements made on the user's own boards of that device (``edgeopt.board_correction``).

Read from the database each time results are built, so a figure an agent posts shows at the next request.
"""

from __future__ import annotations

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from edgeopt.board_correction import MAX_MEASUREMENTS, MeasuredEstimate, factor_for, fit_correction
from edgeopt.report import BaselineResult, BoardCorrection, BoardLatency, DeviceEstimate, RunResult
from edgeopt.service.db.models import BoardMeasurement, Experiment, OptimizationRun

BASELINE = "baseline"  # the technique name of the original model's board job (routes/agents.py); not a technique


def board_latencies(session: Session, exp: Experiment) -> dict[str, BoardLatency]:
    """technique -> the latency an agent measured on a board (routes/agents.py), for the runs that have one."""
    rows = session.scalars(
        select(BoardMeasurement).where(BoardMeasurement.experiment_id == exp.id, BoardMeasurement.status == "completed")
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


def board_correction(session: Session, device: str) -> BoardCorrection | None:
    """The correction of ``device``'s estimates from every real board of it that measured an artifact here (a
    technique's or the original model's).

    Only figures from a board that identified as a Raspberry Pi of that device, not marked noisy, and measured at
    the threads its estimate assumed count: anything else would correct the estimate by a different machine.
    """
    rows = session.execute(
        select(
            BoardMeasurement.latency_ms,
            BoardMeasurement.threads,
            BoardMeasurement.technique,
            OptimizationRun.result,
            Experiment.baseline,
        )
        .join(Experiment, Experiment.id == BoardMeasurement.experiment_id)
        .outerjoin(
            OptimizationRun,
            and_(
                OptimizationRun.experiment_id == BoardMeasurement.experiment_id,
                OptimizationRun.technique == BoardMeasurement.technique,
            ),
        )
        .where(
            BoardMeasurement.status == "completed",
            BoardMeasurement.device == device,
            BoardMeasurement.is_raspberry_pi.is_(True),
            BoardMeasurement.noisy.is_(False),
            BoardMeasurement.latency_ms.is_not(None),
        )
        .order_by(BoardMeasurement.measured_at.desc())
        .limit(MAX_MEASUREMENTS)
    ).all()
    pairs: list[MeasuredEstimate] = []
    # Oldest first: the fit keeps the latest.
    for measured_ms, threads, technique, run_result, baseline in reversed(rows):
        result = baseline if technique == BASELINE else run_result  # the original model's estimate, or the run's
        estimate = ((result or {}).get("estimates") or {}).get(device)
        if not estimate or estimate.get("threads") != threads:
            continue
        precision = estimate.get("precision") or (result or {}).get("precision") or "fp32"
        pairs.append(MeasuredEstimate(float(estimate["latency_ms"]), float(measured_ms), str(precision)))
    return fit_correction(device, pairs)


def _corrected(
    estimates: dict[str, DeviceEstimate], corrections: dict[str, BoardCorrection]
) -> dict[str, DeviceEstimate]:
    return {
        device: estimate.model_copy(
            update={"corrected_latency_ms": estimate.latency_ms * factor_for(corrections[device], estimate.precision)}
        )
        if device in corrections
        else estimate
        for device, estimate in estimates.items()
    }


class BoardFigures:
    """The measured latencies and corrections of one experiment, applied to its results."""

    def __init__(self, session: Session | None, exp: Experiment) -> None:
        self.measured: dict[str, BoardLatency] = {}
        self.corrections: dict[str, BoardCorrection] = {}
        if session is None:
            return
        self.measured = board_latencies(session, exp)
        devices = session.scalars(
            select(BoardMeasurement.device)
            .where(BoardMeasurement.status == "completed", BoardMeasurement.is_raspberry_pi.is_(True))
            .distinct()
        ).all()
        for device in sorted(d for d in devices if d):
            correction = board_correction(session, device)
            if correction is not None:
                self.corrections[device] = correction

    def run(self, result: RunResult) -> RunResult:
        update: dict[str, object] = {}
        if result.technique in self.measured:
            update["board_latency"] = self.measured[result.technique]
        if self.corrections and result.estimates:
            update["estimates"] = _corrected(result.estimates, self.corrections)
        return result.model_copy(update=update) if update else result

    def baseline(self, baseline: BaselineResult | None) -> BaselineResult | None:
        """The original model's measured figure (its board job is named ``BASELINE``) and corrected estimates."""
        if baseline is None:
            return None
        update: dict[str, object] = {}
        if BASELINE in self.measured:
            update["board_latency"] = self.measured[BASELINE]
        if self.corrections and baseline.estimates:
            update["estimates"] = _corrected(baseline.estimates, self.corrections)
        return baseline.model_copy(update=update) if update else baseline
