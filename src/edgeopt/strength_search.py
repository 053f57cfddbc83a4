"""Budget-driven strength search: each technique finds the strongest setting that keeps the user's accuracy budget.

Shared by every technique and both frameworks; it knows nothing of torch or TensorFlow. A technique hands it a
ladder of settings of its strength knob (mildest first) and a function that builds a candidate at one setting and
scores it on the validation split; the search bisects the ladder for the strongest setting whose validation
accuracy stays within the budget, bounded by a time budget and a trial count, and returns a ``StrengthSearch``
record (every setting tried, the choice and why) that the report carries.

- The accuracy budget is the experiment's ``max_accuracy_drop`` and/or ``min_accuracy`` (the tighter one), or
  ``DEFAULT_BUDGET_POINTS`` when neither is set.
- The validation split is carved from the train split (``carve_validation``), stratified and seeded; the test split
  is never read here, so the final figure on it stays an honest estimate.
- Candidates are scored after a short recovery (a fraction of an epoch) rather than a full fine-tune: a lower bound
  of what the full fine-tune at the chosen setting then reaches, so the choice errs on the safe side.
- A user who sets the knob in the technique's config gets exactly that setting: no search runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

import numpy as np

from edgeopt.data.dataset import Dataset
from edgeopt.data.split import train_test_indices
from edgeopt.progress import StageReporter
from edgeopt.report import Constraints, SearchTrial, StrengthSearch
from edgeopt.technique_specs import SPECS, Knob

T = TypeVar("T")

DEFAULT_BUDGET_POINTS = 1.0  # accuracy points a result may lose when the user set no accuracy constraint
MAX_TIME_BUDGET_S = 7 * 24 * 3600  # the longest search time budget an experiment may ask for (API, web form)
VALIDATION_FRACTION = 0.15  # of the train split, held out from fine-tuning while a technique searches
MAX_VALIDATION_IMAGES = 1000  # more buys little precision and costs evaluation time at every trial
MAX_TRIALS = 8  # bisection over a ladder of 8 settings needs at most 4
DEFAULT_MIN_TRIALS = 3  # enough for bisection to move past the middle of the ladder in both directions
RECOVERY_EPOCH_FRACTION = 0.5  # short fine-tune of each candidate before it is scored
MIN_RECOVERY_IMAGES = 256


# The knob of each technique that has a strength, from its spec (edgeopt.technique_specs).
KNOBS: dict[str, Knob] = {spec.name: spec.knob for spec in SPECS if spec.knob is not None}


def int8_ladder(count: int) -> list[int]:
    """ptq_int4's ladder: how many of the ``count`` most sensitive layers stay at 8 bits, all first, down to none."""
    return sorted({k for k in (count, count // 2, count // 4, count // 8, 3, 2, 1, 0) if 0 <= k <= count}, reverse=True)


@dataclass
class Candidate:
    """What a technique's ``evaluate`` returns for one setting."""

    val_accuracy: float
    params: int | None = None
    flops: int | None = None
    size_ratio: float | None = None


@dataclass
class SearchContext:
    """Handed to a technique that searches: the validation split, the budgets and the clock."""

    x_val: np.ndarray
    y_val: np.ndarray
    time_budget_s: float
    max_accuracy_drop: float | None = None  # fraction, from the experiment's constraints
    min_accuracy: float | None = None
    clock: Callable[[], float] = time.monotonic
    max_trials: int = MAX_TRIALS
    # Trials that run whatever the clock says. 0 when the user set the time budget (it is then kept strictly);
    # the default budget guarantees DEFAULT_MIN_TRIALS, as its estimate can be far off on a loaded host.
    min_trials: int = 0
    recovery_images: int | None = None  # train images of each candidate's short recovery; None: see recovery_subset
    trials_run: list[float] = field(default_factory=list)  # settings evaluated, in order (tests count them)

    @classmethod
    def from_constraints(
        cls, constraints: Constraints, x_val: np.ndarray, y_val: np.ndarray, time_budget_s: float
    ) -> SearchContext:
        return cls(
            x_val=x_val,
            y_val=y_val,
            time_budget_s=time_budget_s,
            max_accuracy_drop=constraints.max_accuracy_drop,
            min_accuracy=constraints.min_accuracy,
        )

    def budget(self, baseline_val_accuracy: float) -> tuple[float, str]:
        """Accuracy points allowed below the original on validation, and which setting of the user's gave it."""
        options: list[tuple[float, str]] = []
        if self.max_accuracy_drop is not None:
            options.append((100.0 * self.max_accuracy_drop, "max_accuracy_drop"))
        if self.min_accuracy is not None:
            options.append((100.0 * (baseline_val_accuracy - self.min_accuracy), "min_accuracy"))
        if not options:
            return DEFAULT_BUDGET_POINTS, "default"
        points, source = min(options)
        return max(points, 0.0), source


def carve_validation(data: Dataset, seed: int) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """Split the train split into (what the technique trains on, validation images, validation labels).

    Stratified and seeded like every other split (``edgeopt.data.split``); the test split is passed through
    untouched and never read.
    """
    count = len(data.y_train)
    fraction = min(VALIDATION_FRACTION, MAX_VALIDATION_IMAGES / max(1, count))
    held = max(int(round(fraction * count)), data.num_classes)
    train_idx, val_idx = train_test_indices(
        data.y_train, held, seed, hint=" The validation split for the strength search is carved from the train split."
    )
    info = {**data.info, "validation": {"from": "train", "images": int(len(val_idx)), "seed": seed}}
    trimmed = replace(data, x_train=data.x_train[train_idx], y_train=data.y_train[train_idx], info=info)
    return trimmed, data.x_train[val_idx], data.y_train[val_idx]


def recovery_subset(data: Dataset, seed: int, images: int | None = None) -> Dataset:
    """The train images a candidate's short recovery fine-tune sees (a fraction of one epoch, seeded)."""
    count = len(data.y_train)
    keep = min(count, images or max(MIN_RECOVERY_IMAGES, int(RECOVERY_EPOCH_FRACTION * count)))
    order = np.sort(np.random.default_rng(seed).permutation(count)[:keep])
    return replace(data, x_train=data.x_train[order], y_train=data.y_train[order])


def run_search(
    search: SearchContext,
    knob: Knob,
    baseline_val_accuracy: float,
    evaluate: Callable[[float], Candidate],
    reporter: StageReporter,
    ladder: Sequence[float] | None = None,
) -> StrengthSearch:
    """Bisect ``ladder`` (mildest first) for the strongest setting within budget; see the module docstring.

    Assumes accuracy falls as the setting strengthens (what every knob here does, up to noise). Stops early when
    the next trial would not fit in ``search.time_budget_s`` (judged by the mean trial so far) or after
    ``search.max_trials``; at least one trial always runs.
    """
    steps = tuple(ladder if ladder is not None else knob.ladder)
    budget, source = search.budget(baseline_val_accuracy)
    started = search.clock()
    trials: list[SearchTrial] = []
    good, bad = -1, len(steps)
    expected = max(1, math.ceil(math.log2(len(steps) + 1)))
    stopped_by_time = False
    while bad - good > 1 and len(trials) < search.max_trials:
        elapsed = search.clock() - started
        if len(trials) >= max(1, search.min_trials) and elapsed + elapsed / len(trials) > search.time_budget_s:
            stopped_by_time = True
            break
        mid = (good + bad) // 2
        value = steps[mid]
        reporter.stage(
            f"Searching the strength: trying {knob.describe(value)} (trial {len(trials) + 1})",
            min(len(trials) / expected, 0.95),
        )
        trial_start = search.clock()
        candidate = evaluate(value)
        search.trials_run.append(value)
        drop = 100.0 * (baseline_val_accuracy - candidate.val_accuracy)
        ok = drop <= budget + 1e-9
        trials.append(
            SearchTrial(
                setting=value,
                val_accuracy=candidate.val_accuracy,
                drop_points=drop,
                within_budget=ok,
                params=candidate.params,
                flops=candidate.flops,
                size_ratio=candidate.size_ratio,
                seconds=search.clock() - trial_start,
            )
        )
        good, bad = (mid, bad) if ok else (good, mid)
    strongest = good
    if knob.fewest_flops:
        good = _fewest_flops(trials, steps, good)
    record = StrengthSearch(
        knob=knob.field,
        budget_points=budget,
        budget_source=source,
        baseline_val_accuracy=baseline_val_accuracy,
        validation_images=int(len(search.y_val)),
        trials=trials,
        chosen=steps[max(good, 0)],
        time_budget_s=search.time_budget_s,
        seconds=search.clock() - started,
        stopped_by_time=stopped_by_time,
    )
    record.reason = _reason(record, knob, steps, good, bad, strongest)
    return record


def _fewest_flops(trials: Sequence[SearchTrial], steps: Sequence[float], good: int) -> int:
    """The step, among those tried within budget, that leaves the fewest FLOPs (the stronger on a tie)."""
    passing = [trial for trial in trials if trial.within_budget and trial.flops is not None]
    if good < 0 or not passing:
        return good
    best = min(passing, key=lambda trial: (trial.flops, -steps.index(trial.setting)))
    return steps.index(best.setting)


def choose_strength(
    search: SearchContext | None,
    technique: str,
    fixed: float,
    score_original: Callable[[], float],
    evaluate: Callable[[float], Candidate],
    reporter: StageReporter,
    ladder: Sequence[float] | None = None,
) -> tuple[float, StrengthSearch | None]:
    """The setting to build: ``fixed`` (the config's) when no search runs, else the search's choice and record.

    ``score_original`` gives the user's model's validation accuracy (each framework scores its own models).
    """
    if search is None or (ladder is not None and not ladder):
        return fixed, None  # no search, or no setting on the ladder changes this (narrow) model
    reporter.stage("Scoring the original model on the validation split", 0.0)
    record = run_search(search, KNOBS[technique], score_original(), evaluate, reporter, ladder=ladder)
    return record.chosen, record


def _reason(
    record: StrengthSearch, knob: Knob, steps: Sequence[float], good: int, bad: int, strongest: int | None = None
) -> str:
    budget = f"{record.budget_points:.2g}-point budget ({_source(record.budget_source)})"
    scored = {trial.setting: trial for trial in record.trials}
    if good >= 0:
        chosen = scored[steps[good]]
        text = (
            f"Chose {knob.describe(steps[good])}: the strongest setting tried whose validation accuracy stayed "
            f"within the {budget}, losing {chosen.drop_points:.2f} points."
        )
        if strongest is not None and strongest != good:  # ``Knob.fewest_flops``: a milder share removed more
            stronger = scored[steps[strongest]]
            text = (
                f"Chose {knob.describe(steps[good])}: of the settings tried whose validation accuracy stayed within "
                f"the {budget}, the one that leaves the fewest FLOPs ({chosen.flops:,}; it lost "
                f"{chosen.drop_points:.2f} points). {knob.describe(steps[strongest])} also stayed within it but "
                f"leaves {stronger.flops:,}: its channels came from layers that compute less."
            )
        if bad < len(steps) and steps[bad] in scored:
            text += f" {knob.describe(steps[bad])} lost {scored[steps[bad]].drop_points:.2f}."
        elif bad < len(steps) and record.stopped_by_time:
            text += " The time budget ended the search before stronger settings were tried."
        return text
    if steps[0] in scored:
        return (
            f"No setting met the {budget}: even the mildest, {knob.describe(steps[0])}, lost "
            f"{scored[steps[0]].drop_points:.2f} validation points, so the mildest was used. Allow a larger drop, "
            "or choose a technique that loses less on this model."
        )
    return (
        f"The time budget ({record.time_budget_s:.0f} s) ran out before a setting within the {budget} was found, "
        f"so the mildest, {knob.describe(steps[0])}, was used. Give the search more time (--time-budget)."
    )


def _source(source: str) -> str:
    return {
        "max_accuracy_drop": "your maximum accuracy drop",
        "min_accuracy": "your minimum accuracy",
        "default": "the default when no accuracy limit is set",
    }.get(source, source)


def search_note(record: StrengthSearch) -> str:
    """The sentence a result's notes start with when its strength was searched."""
    over = record.seconds > record.time_budget_s  # only the default budget's guaranteed trials go past it
    tried = ", ".join(
        f"{trial.setting:g} ({100 * trial.val_accuracy:.1f} %{'' if trial.within_budget else ', over'})"
        for trial in record.trials
    )
    return (
        f"{record.reason} Settings of {record.knob} tried on {record.validation_images} validation images carved "
        f"from the train split (original {100 * record.baseline_val_accuracy:.1f} %): {tried}; "
        f"{record.seconds:.0f} s of a {record.time_budget_s:.0f} s search budget"
        + (
            " (over it: without a budget of yours at least three trials run, and a trial's length is only known "
            "once it has run)."
            if over
            else "."
        )
    )


def pick_allocation(candidates: Sequence[tuple[float, int, T]], images: int, floor: float | None = None) -> T:
    """Structured pruning's choice between its two ways of sharing the removal (both frameworks' ``prune_scored``):
    ``candidates`` are (accuracy, compute left, item). The best accuracy wins, and within one scored image of it
    the one that leaves less compute; with a ``floor`` (``accuracy_floor``) that some reach, the one that leaves
    the least compute among those."""
    best = max(accuracy for accuracy, _, _ in candidates)
    close = [c for c in candidates if c[0] >= best - 1.0 / max(1, images) - 1e-12]
    if floor is not None and best >= floor - 1e-12:
        close = [c for c in candidates if c[0] >= floor - 1e-12]
    return min(close, key=lambda candidate: candidate[1])[2]


def accuracy_floor(search: SearchContext | None, original_accuracy: Callable[[], float]) -> float | None:
    """The lowest validation accuracy the user's budget allows (``SearchContext.budget``); None without a search."""
    if search is None:
        return None
    original = original_accuracy()
    points, _ = search.budget(original)
    return original - points / 100.0
