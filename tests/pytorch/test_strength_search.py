"""The strength search on the trained demo CNN: it reads validation only, and a fixed setting runs no search."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edgeopt.data.dataset import Dataset
from edgeopt.frameworks import LoadedModel
from edgeopt.progress import silent_reporter
from edgeopt.report import Constraints
from edgeopt.strength_search import SearchContext, carve_validation
from edgeopt.techniques import TechniqueContext, make_config


def _search_context(data: Dataset, budget: float | None = None) -> tuple[Dataset, SearchContext]:
    trimmed, x_val, y_val = carve_validation(data, seed=0)
    constraints = Constraints(max_accuracy_drop=budget)
    search = SearchContext.from_constraints(constraints, x_val, y_val, time_budget_s=600.0)
    search.recovery_images = 128  # a short recovery keeps the test quick; the rule is tested in tests/engine
    return trimmed, search


def _poisoned(data: Dataset) -> Dataset:
    """The same data with the test split destroyed: noise images, shuffled labels."""
    rng = np.random.default_rng(1)
    return replace(
        data,
        x_test=rng.random(data.x_test.shape, dtype=np.float32),
        y_test=rng.permutation(data.y_test),
    )


def _apply(name: str, loaded: LoadedModel, data: Dataset, search: SearchContext | None, work: Path,
           **overrides: object):  # type: ignore[no-untyped-def]  # fmt: skip
    from edgeopt.techniques import get_technique

    work.mkdir(parents=True, exist_ok=True)
    config = make_config(name, {"epochs": 0, **overrides}, seed=0)
    ctx = TechniqueContext(model=loaded, data=data, work_dir=work, reporter=silent_reporter(name), search=search)
    return get_technique(name, "pytorch").apply(ctx, config)


def test_the_search_never_reads_the_test_split(torch_demo: LoadedModel, digits32: Dataset, tmp_path: Path) -> None:
    trimmed, search = _search_context(digits32)
    search.max_trials = 2
    clean = _apply("prune_structured", torch_demo, trimmed, search, tmp_path / "clean")
    _, poisoned_search = _search_context(_poisoned(digits32))
    poisoned_search.max_trials = 2
    poisoned = _apply("prune_structured", torch_demo, _poisoned(trimmed), poisoned_search, tmp_path / "poisoned")
    assert clean.search is not None and poisoned.search is not None
    assert poisoned.search.chosen == clean.search.chosen
    assert [(t.setting, t.val_accuracy) for t in poisoned.search.trials] == [
        (t.setting, t.val_accuracy) for t in clean.search.trials
    ]
    assert clean.search.trials and clean.search.validation_images == len(search.y_val)
    assert clean.notes.startswith(clean.search.reason)


def test_an_unmeetable_budget_gives_the_mildest_setting(
    torch_demo: LoadedModel, digits32: Dataset, tmp_path: Path
) -> None:
    trimmed, search = _search_context(digits32, budget=0.01)
    # A recovery at an absurd learning rate wrecks every candidate, while the original keeps its validation score.
    out = _apply("distillation", torch_demo, trimmed, search, tmp_path, learning_rate=10.0)
    assert out.search is not None
    assert all(not trial.within_budget for trial in out.search.trials)
    assert out.search.chosen == 0.9  # the widest student on distillation's ladder
    assert out.notes.startswith("No setting met the 1-point budget (your maximum accuracy drop)")


@pytest.mark.parametrize(
    ("name", "knob", "value"), [("prune_structured", "channel_sparsity", 0.5), ("prune_unstructured", "sparsity", 0.5)]
)
def test_a_fixed_setting_runs_no_search(name: str, knob: str, value: float, tmp_path: Path) -> None:
    from edgeopt.pipeline import ExperimentSpec, Pipeline

    spec = ExperimentSpec(framework="pytorch", dataset="digits", device="rpi4", out_dir=tmp_path, arch="resnet18")
    assert Pipeline(spec)._searches(name)
    spec.technique_configs = {name: {knob: value}}
    assert not Pipeline(spec)._searches(name)
    assert not Pipeline(spec)._searches("ptq_int8")  # no strength knob at all
