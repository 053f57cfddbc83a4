"""The strength search on its own: bisection, the accuracy budget, the time budget, the validation split.

Candidates here are scored by a function of the setting, so each test pins one rule of ``edgeopt.strength_search``
without training anything; tests/pytorch/test_strength_search.py runs the search on a real model.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeopt.data.dataset import Dataset
from edgeopt.progress import silent_reporter
from edgeopt.report import Constraints
from edgeopt.strength_search import (
    DEFAULT_BUDGET_POINTS,
    KNOBS,
    Candidate,
    SearchContext,
    carve_validation,
    run_search,
    search_note,
)

KNOB = KNOBS["prune_structured"]  # ladder 0.05 .. 0.6, mildest first


def _context(**kwargs: object) -> SearchContext:
    values = {"x_val": np.zeros((40, 2, 2, 1)), "y_val": np.zeros(40, dtype=np.int64), "time_budget_s": 1e9}
    return SearchContext(**{**values, **kwargs})  # type: ignore[arg-type]


def _accuracy_falls_after(threshold: float, base: float = 0.95):  # type: ignore[no-untyped-def]
    """Validation accuracy that holds up to ``threshold`` and then loses 5 points per step."""
    return lambda s: Candidate(val_accuracy=base if s <= threshold + 1e-9 else base - 0.05)


@pytest.mark.parametrize("threshold", [0.05, 0.15, 0.3, 0.6])
def test_bisection_finds_the_strongest_setting_within_budget(threshold: float) -> None:
    search = _context()
    record = run_search(search, KNOB, 0.95, _accuracy_falls_after(threshold), silent_reporter())
    assert record.chosen == threshold
    assert len(record.trials) <= 4  # bisection of 8 settings, not a sweep
    assert record.budget_points == DEFAULT_BUDGET_POINTS and record.budget_source == "default"
    assert "Chose 30% of the channels removed" in record.reason if threshold == 0.3 else True
    chosen = next(t for t in record.trials if t.setting == threshold)
    assert chosen.within_budget and chosen.drop_points == pytest.approx(0.0)


def test_a_budget_no_setting_meets_gives_the_mildest_with_the_reason() -> None:
    search = _context(max_accuracy_drop=0.01)
    record = run_search(search, KNOB, 0.95, lambda s: Candidate(val_accuracy=0.80), silent_reporter())
    assert record.chosen == KNOB.ladder[0]
    assert not any(t.within_budget for t in record.trials)
    assert KNOB.ladder[0] in [t.setting for t in record.trials]
    assert record.reason.startswith("No setting met the 1-point budget (your maximum accuracy drop)")
    assert "the mildest was used" in search_note(record)


def test_the_time_budget_stops_the_search_by_trial_count() -> None:
    now = [0.0]

    def evaluate(setting: float) -> Candidate:
        now[0] += 10.0  # every trial takes 10 s on this clock
        return Candidate(val_accuracy=0.95)

    search = _context(time_budget_s=25.0, clock=lambda: now[0])
    record = run_search(search, KNOB, 0.95, evaluate, silent_reporter())
    # 10 s spent + 10 s expected fits in 25; 20 + 10 does not: two trials, then the budget stops it.
    assert len(search.trials_run) == 2 and len(record.trials) == 2
    assert record.stopped_by_time
    assert record.chosen == search.trials_run[-1]  # the strongest setting tried that met the budget


def test_the_default_time_budget_still_allows_the_minimum_trials() -> None:
    now = [0.0]

    def evaluate(setting: float) -> Candidate:
        now[0] += 10.0
        return Candidate(val_accuracy=0.95)

    search = _context(time_budget_s=5.0, clock=lambda: now[0], min_trials=3)
    record = run_search(search, KNOB, 0.95, evaluate, silent_reporter())
    assert len(record.trials) == 3 and record.stopped_by_time


def test_time_runs_out_before_any_setting_meets_the_budget() -> None:
    now = [0.0]

    def evaluate(setting: float) -> Candidate:
        now[0] += 10.0
        return Candidate(val_accuracy=0.5)

    search = _context(time_budget_s=5.0, clock=lambda: now[0])
    record = run_search(search, KNOB, 0.95, evaluate, silent_reporter())
    assert len(record.trials) == 1 and record.stopped_by_time
    assert record.chosen == KNOB.ladder[0]
    assert "time budget" in record.reason and "--time-budget" in record.reason


def test_the_tighter_of_max_drop_and_min_accuracy_sets_the_budget() -> None:
    constraints = Constraints(max_accuracy_drop=0.03, min_accuracy=0.94)
    search = SearchContext.from_constraints(constraints, np.zeros((1, 1, 1, 1)), np.zeros(1), 60.0)
    assert search.budget(0.96) == (pytest.approx(2.0), "min_accuracy")
    assert search.budget(0.99) == (pytest.approx(3.0), "max_accuracy_drop")
    assert search.budget(0.90) == (0.0, "min_accuracy")  # already below the minimum: nothing may be lost
    assert SearchContext.from_constraints(Constraints(), np.zeros(1), np.zeros(1), 1).budget(0.9) == (1.0, "default")


def test_validation_is_carved_from_the_train_split_only() -> None:
    rng = np.random.default_rng(0)
    x_train = rng.random((200, 2, 2, 1), dtype=np.float32)
    y_train = np.repeat(np.arange(4), 50)
    x_test = rng.random((40, 2, 2, 1), dtype=np.float32)
    data = Dataset("toy", x_train, y_train, x_test, np.repeat(np.arange(4), 10), num_classes=4)
    trimmed, x_val, y_val = carve_validation(data, seed=0)
    assert len(y_val) == 30 and len(trimmed.y_train) == 170
    assert np.bincount(y_val).tolist() == [8, 7, 8, 7] or sorted(np.bincount(y_val)) == [7, 7, 8, 8]
    train_rows = {row.tobytes() for row in x_train}
    assert all(row.tobytes() in train_rows for row in x_val)
    assert not {row.tobytes() for row in x_val} & {row.tobytes() for row in trimmed.x_train}
    assert trimmed.x_test is data.x_test and trimmed.info["validation"]["images"] == 30


def test_a_milder_share_that_leaves_fewer_flops_is_chosen_over_the_strongest_within_budget() -> None:
    """Channel shares are judged by what they remove: 20 % taken from every layer can leave fewer FLOPs than 30 %
    ranked across layers (the PyTorch demo CNN: 1.58x against 1.26x), so the search keeps the 20 %."""
    flops = {0.05: 950, 0.1: 900, 0.15: 850, 0.2: 630, 0.3: 790, 0.4: 700, 0.5: 600, 0.6: 500}

    def evaluate(s: float) -> Candidate:
        return Candidate(val_accuracy=0.95 if s <= 0.3 + 1e-9 else 0.80, flops=flops[s])

    record = run_search(_context(), KNOB, 0.95, evaluate, silent_reporter())
    assert {t.setting for t in record.trials if t.within_budget} >= {0.2, 0.3}
    assert record.chosen == 0.2
    assert "leaves the fewest FLOPs (630" in record.reason and "30% of the channels removed also" in record.reason
    plain = run_search(_context(), KNOBS["prune_unstructured"], 0.95, evaluate, silent_reporter())
    assert not KNOBS["prune_unstructured"].fewest_flops and "fewest FLOPs" not in plain.reason
