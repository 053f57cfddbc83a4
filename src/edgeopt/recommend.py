"""Which optimized model to deploy: constraints, goals, Pareto front, and reasons in the user's numbers.

Pure Python on the report schema, so the pipeline, the CLI and the API's "recompute for another goal" all give the
same answer without loading a framework. The rules (written out for users in docs/recommender.md):

* Candidates are the runs with status ``completed`` (with an accuracy and a file size). Only when no technique
  completed does the original model become the single candidate, named ``baseline``.
* Each candidate gets pass/fail per active constraint: ``min_accuracy``, ``max_size_mb`` (MB = 10^6 bytes of
  ``size_bytes``), ``max_latency_ms`` (the estimate on the target board; a missing estimate fails) and
  ``max_accuracy_drop`` (baseline accuracy minus the run's).
* Goals rank the candidates that meet every constraint: ``maximize_accuracy`` (ties by smaller size),
  ``minimize_size``, ``minimize_latency``, and ``balanced``: the Pareto front over (accuracy up, size down,
  latency down), then the front member closest (Euclidean) to the ideal point after min-max normalising each
  objective over those candidates.
* When no candidate meets every constraint, the best effort is the one with the fewest violated constraints, then
  the smallest sum of normalised violations; ``all_constraints_met`` is false and the reasoning says by how much.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edgeopt.catalog import DEVICE_NAMES, DEVICES, GOAL_NAMES, GOALS, TECHNIQUE_NAMES, technique_info
from edgeopt.errors import InvalidInput
from edgeopt.report import BaselineResult, Constraints, Recommendation, Report, RunResult

BASELINE = "baseline"
MB = 1_000_000
_TIGHT = 0.10  # a size/latency limit is "tight" when the result uses more than 90 % of it
_POINTS_SCALE = 0.05  # accuracy margins are judged per 5 points, so "tight" = less than half a point to spare
_SAME = 0.05  # ratios within 5 % of 1 are "no change"


@dataclass(frozen=True)
class Candidate:
    """One result as the recommender compares it (latency is the estimate on the target board)."""

    name: str
    accuracy: float
    size_bytes: int
    latency_ms: float | None
    fits: bool | None = None

    @property
    def size_mb(self) -> float:
        return self.size_bytes / MB


@dataclass(frozen=True)
class Check:
    """One constraint applied to one candidate."""

    name: str
    passed: bool
    value: float | None  # the candidate's figure in the constraint's unit (MB, ms, fraction)
    limit: float
    violation: float  # normalised shortfall, 0 when passed
    slack: float  # share of the allowance left, in [0, 1] when passed


# ---------------------------------------------------------------------------------------------------------------------
# Pareto front and goals


def dominates(a: Candidate, b: Candidate) -> bool:
    """``a`` is at least as good as ``b`` on accuracy, size and latency, and better on one."""
    la, lb = _latency_key(a), _latency_key(b)
    no_worse = a.accuracy >= b.accuracy and a.size_bytes <= b.size_bytes and la <= lb
    better = a.accuracy > b.accuracy or a.size_bytes < b.size_bytes or la < lb
    return no_worse and better


def pareto_front(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Candidates no other candidate dominates; exact duplicates are kept together (neither dominates)."""
    return [c for c in candidates if not any(dominates(other, c) for other in candidates if other is not c)]


def _latency_key(c: Candidate) -> float:
    return c.latency_ms if c.latency_ms is not None else math.inf


def _order(name: str) -> int:
    return TECHNIQUE_NAMES.index(name) if name in TECHNIQUE_NAMES else len(TECHNIQUE_NAMES)


def _scale(value: float, low: float, high: float) -> float:
    """0 at the best value among the candidates, 1 at the worst; 0 for all when they are equal."""
    if math.isinf(value):
        return 1.0
    if not math.isfinite(high - low) or high - low <= 0:
        return 0.0
    return (value - low) / (high - low)


def ideal_distances(candidates: Sequence[Candidate]) -> dict[str, float]:
    """Euclidean distance to the ideal point (best accuracy, size and latency) after min-max normalisation."""
    if not candidates:
        return {}
    accs = [c.accuracy for c in candidates]
    sizes = [float(c.size_bytes) for c in candidates]
    lats = [_latency_key(c) for c in candidates if c.latency_ms is not None] or [0.0]
    result = {}
    for c in candidates:
        parts = (
            _scale(-c.accuracy, -max(accs), -min(accs)),
            _scale(float(c.size_bytes), min(sizes), max(sizes)),
            _scale(_latency_key(c), min(lats), max(lats)),
        )
        result[c.name] = math.sqrt(sum(p * p for p in parts))
    return result


def rank(candidates: Sequence[Candidate], goal: str) -> list[Candidate]:
    """Candidates best first for ``goal``; ties fall back to the other objectives, then technique order."""
    keys: dict[str, Callable[[Candidate], tuple[Any, ...]]] = {
        "maximize_accuracy": lambda c: (-c.accuracy, c.size_bytes, _latency_key(c), _order(c.name)),
        "minimize_size": lambda c: (c.size_bytes, -c.accuracy, _latency_key(c), _order(c.name)),
        "minimize_latency": lambda c: (_latency_key(c), -c.accuracy, c.size_bytes, _order(c.name)),
    }
    if goal in keys:
        return sorted(candidates, key=keys[goal])
    if goal != "balanced":
        raise InvalidInput(f"Unknown goal {goal!r}; choose one of {', '.join(GOAL_NAMES)}.", field="goal")
    front = {c.name for c in pareto_front(candidates)}
    distance = ideal_distances(candidates)
    return sorted(
        candidates,
        key=lambda c: (c.name not in front, round(distance[c.name], 12), -c.accuracy, c.size_bytes, _order(c.name)),
    )


# ---------------------------------------------------------------------------------------------------------------------
# Constraints


def check_constraints(c: Candidate, constraints: Constraints, baseline_accuracy: float | None) -> list[Check]:
    checks: list[Check] = []
    active = constraints.active()
    if "min_accuracy" in active:
        limit = active["min_accuracy"]
        passed = c.accuracy >= limit - 1e-12
        shortfall = (limit - c.accuracy) / limit if limit > 0 else 0.0
        slack = (c.accuracy - limit) / _POINTS_SCALE
        checks.append(Check("min_accuracy", passed, c.accuracy, limit, 0.0 if passed else shortfall, slack))
    if "max_size_mb" in active:
        checks.append(_upper("max_size_mb", c.size_mb, active["max_size_mb"]))
    if "max_latency_ms" in active:
        limit = active["max_latency_ms"]
        if c.latency_ms is None:
            checks.append(Check("max_latency_ms", False, None, limit, 1.0, 0.0))
        else:
            checks.append(_upper("max_latency_ms", c.latency_ms, limit))
    if "max_accuracy_drop" in active:
        limit = active["max_accuracy_drop"]
        if baseline_accuracy is None:
            checks.append(Check("max_accuracy_drop", False, None, limit, 1.0, 0.0))
        else:
            drop = baseline_accuracy - c.accuracy
            passed = drop <= limit + 1e-12
            scale = max(limit, 0.01)  # a zero allowance is judged in percentage points
            checks.append(
                Check(
                    "max_accuracy_drop",
                    passed,
                    drop,
                    limit,
                    0.0 if passed else (drop - limit) / scale,
                    (limit - drop) / _POINTS_SCALE,
                )
            )
    return checks


def _upper(name: str, value: float, limit: float) -> Check:
    passed = value <= limit * (1 + 1e-12)
    return Check(name, passed, value, limit, 0.0 if passed else (value - limit) / limit, (limit - value) / limit)


# ---------------------------------------------------------------------------------------------------------------------
# Sentences


CONSTRAINT_TITLES = {
    "min_accuracy": "minimum accuracy",
    "max_accuracy_drop": "maximum accuracy drop",
    "max_size_mb": "maximum size",
    "max_latency_ms": "maximum latency",
}


def _title(name: str) -> str:
    """What a user reads for a result: the catalog's title, never the internal id."""
    return "the original model" if name == BASELINE else technique_info(name).title


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.1f} %"


def _points(fraction: float) -> str:
    return f"{100 * abs(fraction):.2f} points"


def _mb(size_bytes: float) -> str:
    return f"{size_bytes / MB:.2f} MB"


def _ms(value: float) -> str:
    return f"{value:.3g} ms" if value < 100 else f"{value:.0f} ms"


def _describe_check(check: Check) -> str:
    if check.value is None:
        what = "no latency estimate for the board" if check.name == "max_latency_ms" else "no baseline accuracy"
        return f"the {CONSTRAINT_TITLES[check.name]} cannot be checked ({what})"
    if check.name == "min_accuracy":
        short = _points(check.limit - check.value)
        return f"minimum accuracy: {_pct(check.value)} vs at least {_pct(check.limit)}, short by {short}"
    if check.name == "max_accuracy_drop":
        return (
            f"maximum accuracy drop: drops {_points(check.value)} vs at most {_points(check.limit)}, "
            f"over by {_points(check.value - check.limit)}"
        )
    unit = "MB" if check.name == "max_size_mb" else "ms"
    return (
        f"{CONSTRAINT_TITLES[check.name]}: {check.value:.3g} {unit} vs at most {check.limit:.3g} {unit}, "
        f"over by {check.value - check.limit:.3g} {unit} ({_pct(check.violation)})"
    )


def _ratio_phrase(before: float, after: float, better: str, worse: str) -> str | None:
    if before <= 0 or after <= 0:
        return None
    ratio = before / after
    if abs(ratio - 1) < _SAME:
        return None
    return f"{ratio:.2f}x {better}" if ratio > 1 else f"{1 / ratio:.2f}x {worse}"


def _pros_cons(
    c: Candidate,
    base: Candidate | None,
    checks: list[Check],
    best: dict[str, str],
    device_title: str,
    technique: RunResult | None,
) -> dict[str, list[str]]:
    pros: list[str] = []
    cons: list[str] = []
    if base is not None and c.name != BASELINE:
        size = _ratio_phrase(base.size_bytes, c.size_bytes, "smaller", "larger")
        if size and "smaller" in size:
            pros.append(f"{size} than the original ({_mb(c.size_bytes)} vs {_mb(base.size_bytes)})")
        else:
            cons.append(f"{size or 'no smaller'} than the original ({_mb(c.size_bytes)} vs {_mb(base.size_bytes)})")
        if c.latency_ms is not None and base.latency_ms is not None:
            speed = _ratio_phrase(base.latency_ms, c.latency_ms, "faster", "slower")
            text = f"on the {device_title} (estimated {_ms(c.latency_ms)} vs {_ms(base.latency_ms)})"
            if speed and "faster" in speed:
                pros.append(f"{speed} {text}")
            else:
                reason = ""
                if technique is not None and (technique.sparsity or 0) > 0.2 and not speed:
                    reason = "; zero weights do not speed up the board's dense kernels"
                cons.append(f"{speed or 'no faster'} {text}{reason}")
        drop = base.accuracy - c.accuracy
        if abs(drop) < 0.00005:
            pros.append(f"keeps the original accuracy ({_pct(c.accuracy)})")
        elif drop < 0:
            pros.append(f"gains {_points(drop)} of accuracy ({_pct(c.accuracy)} vs {_pct(base.accuracy)})")
        elif drop <= 0.005:
            pros.append(f"keeps accuracy within {_points(drop)} ({_pct(c.accuracy)} vs {_pct(base.accuracy)})")
        else:
            cons.append(f"loses {_points(drop)} of accuracy ({_pct(c.accuracy)} vs {_pct(base.accuracy)})")
    for label, name in best.items():
        if name == c.name:
            pros.append(label)
    if c.fits is False:
        cons.append(f"does not fit in the {device_title}'s memory")
    for check in checks:
        if not check.passed:
            cons.append("misses " + _describe_check(check))
    return {"pros": pros, "cons": cons}


# ---------------------------------------------------------------------------------------------------------------------
# Entry point


def _candidate(name: str, result: RunResult | BaselineResult, device: str) -> Candidate | None:
    if result.accuracy is None or result.size_bytes is None:
        return None
    estimate = result.estimates.get(device)
    return Candidate(
        name=name,
        accuracy=float(result.accuracy),
        size_bytes=int(result.size_bytes),
        latency_ms=float(estimate.latency_ms) if estimate is not None else None,
        fits=estimate.fits if estimate is not None else None,
    )


def _unpack(
    report: Report | tuple[BaselineResult | None, Sequence[RunResult]],
) -> tuple[BaselineResult | None, list[RunResult]]:
    if isinstance(report, Report):
        return report.baseline, list(report.runs)
    if isinstance(report, tuple) and len(report) == 2:
        baseline, runs = report
        return baseline, list(runs)
    raise InvalidInput("recommend() needs a Report or a (baseline, runs) pair.")


def recommend(
    report: Report | tuple[BaselineResult | None, Sequence[RunResult]],
    goal: str,
    constraints: Constraints | dict[str, float] | None = None,
    device: str = "rpi4",
) -> Recommendation:
    """The run to deploy for ``goal`` under ``constraints`` on ``device``, with ranking, Pareto set and reasons."""
    if goal not in GOAL_NAMES:
        raise InvalidInput(f"Unknown goal {goal!r}; choose one of {', '.join(GOAL_NAMES)}.", field="goal")
    if device not in DEVICE_NAMES:
        raise InvalidInput(f"Unknown device {device!r}; choose one of {', '.join(DEVICE_NAMES)}.", field="device")
    if not isinstance(constraints, Constraints):
        constraints = Constraints(**(constraints or {}))
    baseline, runs = _unpack(report)
    device_title = next(d.title for d in DEVICES if d.name == device)
    base = _candidate(BASELINE, baseline, device) if baseline is not None else None
    by_name = {run.technique: run for run in runs}
    candidates = [c for run in runs if run.status == "completed" and (c := _candidate(run.technique, run, device))]
    not_completed = [run.technique for run in runs if run.status != "completed"]
    if not candidates:
        if base is None:
            return Recommendation(
                technique=None,
                goal=goal,
                reasoning="Nothing to recommend: no technique completed and there is no baseline result. "
                + _not_completed_sentence(not_completed, by_name),
            )
        candidates = [base]
    base_accuracy = baseline.accuracy if baseline is not None else None
    checks = {c.name: check_constraints(c, constraints, base_accuracy) for c in candidates}
    feasible = [c for c in candidates if all(ch.passed for ch in checks[c.name])]
    infeasible = [c for c in candidates if c not in feasible]
    effort_key = {c.name: _effort(checks[c.name]) for c in candidates}
    ranked = rank(feasible, goal) + sorted(
        rank(infeasible, goal), key=lambda c: effort_key[c.name]
    )  # stable sort: goal order breaks effort ties
    chosen = ranked[0]
    front = pareto_front(candidates)
    best = _bests(candidates)
    run_pros_cons = {
        c.name: _pros_cons(c, base, checks[c.name], best, device_title, by_name.get(c.name)) for c in candidates
    }
    reasoning = _reasoning(
        chosen, base, goal, checks, feasible, candidates, device_title, constraints, not_completed, by_name
    )
    return Recommendation(
        technique=chosen.name,
        goal=goal,
        reasoning=reasoning,
        pros=run_pros_cons[chosen.name]["pros"],
        cons=run_pros_cons[chosen.name]["cons"],
        ranking=[c.name for c in ranked],
        pareto=[c.name for c in sorted(front, key=lambda c: _order(c.name))],
        constraints={c.name: {ch.name: ch.passed for ch in checks[c.name]} for c in candidates},
        all_constraints_met=chosen in feasible,
        run_pros_cons=run_pros_cons,
    )


def _effort(checks: list[Check]) -> tuple[int, float]:
    missed = [ch for ch in checks if not ch.passed]
    return len(missed), sum(ch.violation for ch in missed)


def _bests(candidates: Sequence[Candidate]) -> dict[str, str]:
    if len(candidates) < 2:
        return {}
    best = {
        "the most accurate result": rank(candidates, "maximize_accuracy")[0].name,
        "the smallest file": rank(candidates, "minimize_size")[0].name,
    }
    if any(c.latency_ms is not None for c in candidates):
        best["the fastest on the board"] = rank(candidates, "minimize_latency")[0].name
    return best


def _not_completed_sentence(names: list[str], by_name: dict[str, RunResult]) -> str:
    if not names:
        return ""
    parts = [f"{_title(name)} ({by_name[name].status})" for name in names]
    return f"Not considered because they did not complete: {', '.join(parts)}."


def _goal_sentence(chosen: Candidate, goal: str, pool: list[Candidate]) -> str:
    others = len(pool) - 1
    if goal == "maximize_accuracy":
        return f"It has the highest accuracy ({_pct(chosen.accuracy)}) of {_plural(len(pool), 'eligible result')}."
    if goal == "minimize_size":
        return f"It is the smallest file ({_mb(chosen.size_bytes)}) of {_plural(len(pool), 'eligible result')}."
    if goal == "minimize_latency":
        if chosen.latency_ms is None:
            return "No eligible result has a latency estimate for this board; it is ranked by accuracy instead."
        fastest = _ms(chosen.latency_ms)
        return f"It has the lowest estimated latency ({fastest}) of {_plural(len(pool), 'eligible result')}."
    front = pareto_front(pool)
    distance = ideal_distances(pool)[chosen.name]
    if len(pool) == 1:
        return "It is the only eligible result."
    if len(front) == 1:
        return (
            f"It is the only Pareto-optimal result: at least as good on accuracy, size and latency as each of the "
            f"other {_plural(len(pool) - 1, 'eligible result')}."
        )
    return (
        f"It is one of {len(front)} Pareto-optimal results (accuracy, size, latency) among {others + 1} eligible, "
        f"and the closest to the ideal point after normalising each objective (distance {distance:.2f}; "
        f"0 = best on all three)."
    )


def _reasoning(
    chosen: Candidate,
    base: Candidate | None,
    goal: str,
    checks: dict[str, list[Check]],
    feasible: list[Candidate],
    candidates: list[Candidate],
    device_title: str,
    constraints: Constraints,
    not_completed: list[str],
    by_name: dict[str, RunResult],
) -> str:
    sentences: list[str] = []
    goal_title = next(g.title for g in GOALS if g.name == goal)
    if chosen.name == BASELINE:
        sentences.append(
            f"No optimization technique completed, so the original model is the only candidate for the {device_title}."
        )
    elif feasible:
        sentences.append(f"{_title(chosen.name)} is the best result for the '{goal_title}' goal on the {device_title}.")
        sentences.append(_goal_sentence(chosen, goal, feasible))
    else:
        sentences.append(
            f"No result meets every constraint; {_title(chosen.name)} is the best effort for the {device_title} "
            "(fewest and smallest violations)."
        )
    if base is not None and chosen.name != BASELINE:
        facts = []
        size = _ratio_phrase(base.size_bytes, chosen.size_bytes, "smaller", "larger")
        facts.append(
            f"{size or 'about the same size'} than the original ({_mb(chosen.size_bytes)} vs {_mb(base.size_bytes)})"
        )
        if chosen.latency_ms is not None and base.latency_ms is not None:
            speed = _ratio_phrase(base.latency_ms, chosen.latency_ms, "faster", "slower")
            estimated = f"estimated {_ms(chosen.latency_ms)} vs {_ms(base.latency_ms)}"
            facts.append(f"{speed or 'about as fast'} on the board ({estimated})")
        drop = base.accuracy - chosen.accuracy
        change = (
            f"loses {_points(drop)} of accuracy ({_pct(chosen.accuracy)} vs {_pct(base.accuracy)})"
            if drop > 0
            else f"gains {_points(drop)} of accuracy ({_pct(chosen.accuracy)} vs {_pct(base.accuracy)})"
            if drop < 0
            else f"keeps the original accuracy ({_pct(chosen.accuracy)})"
        )
        facts.append(change)
        sentences.append("It is " + ", ".join(facts[:-1]) + ", and " + facts[-1] + ".")
    own = checks[chosen.name]
    if own:
        missed = [ch for ch in own if not ch.passed]
        if missed:
            sentences.append("It misses " + "; ".join(_describe_check(ch) for ch in missed) + ".")
        tight = [ch for ch in own if ch.passed and ch.slack < _TIGHT]
        if not missed:
            sentences.append("It meets your limit." if len(own) == 1 else f"It meets all {len(own)} of your limits.")
        if tight:
            close = "; ".join(f"{CONSTRAINT_TITLES[ch.name]} ({_tight_text(ch)})" for ch in tight)
            sentences.append(f"Close to the limit: {close}.")
        excluded = len(candidates) - len(feasible)
        if excluded and feasible:
            were = "was" if excluded == 1 else "were"
            sentences.append(f"{_plural(excluded, 'other completed result')} {were} ruled out by your limits.")
    else:
        sentences.append("No limits were set.")
    if not feasible and base is not None and chosen.name != BASELINE:
        base_checks = check_constraints(base, constraints, base.accuracy)
        if base_checks and all(ch.passed for ch in base_checks):
            sentences.append("The original model itself meets every constraint; consider keeping it.")
    if chosen.fits is False:
        sentences.append(f"Warning: the estimated memory does not fit the {device_title}'s budget.")
    tail = _not_completed_sentence(not_completed, by_name)
    if tail:
        sentences.append(tail)
    return " ".join(sentences)


def _tight_text(check: Check) -> str:
    if check.name in ("min_accuracy", "max_accuracy_drop"):
        value = _pct(check.value or 0.0) if check.name == "min_accuracy" else _points(check.value or 0.0)
        limit = _pct(check.limit) if check.name == "min_accuracy" else _points(check.limit)
        return f"{value} against a limit of {limit}"
    unit = "MB" if check.name == "max_size_mb" else "ms"
    return f"{(check.value or 0.0):.3g} {unit} against a limit of {check.limit:.3g} {unit}"
