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
    # Every candidate is wrecked while the original keeps its validation score: its batch norms are recalibrated on
    # noise instead of train images, and its recovery runs at an absurd learning rate.
    noise = np.random.default_rng(2).random(trimmed.x_train.shape, dtype=np.float32)
    out = _apply("distillation", torch_demo, replace(trimmed, x_train=noise), search, tmp_path, learning_rate=10.0)
    assert out.search is not None
    assert all(not trial.within_budget for trial in out.search.trials)
    assert out.search.chosen == 0.9  # the widest student on distillation's ladder
    assert out.notes.startswith("No setting met the 1-point budget (your maximum accuracy drop)")


@pytest.mark.parametrize(
    ("name", "knob", "value"), [("prune_structured", "channel_sparsity", 0.5), ("prune_unstructured", "sparsity", 0.5)]
)
def test_a_fixed_setting_runs_no_search(name: str, knob: str, value: float, tmp_path: Path) -> None:
    from dataclasses import replace

    from edgeopt.pipeline import ExperimentSpec, Pipeline

    spec = ExperimentSpec(framework="pytorch", dataset="digits", device="rpi4", out_dir=tmp_path, arch="resnet18")
    assert Pipeline(spec)._searches(name)
    spec = replace(spec, technique_configs={name: {knob: value}})  # the spec is frozen: a new one, as a user's
    assert not Pipeline(spec)._searches(name)
    assert not Pipeline(spec)._searches("ptq_int8")  # no strength knob at all


def test_int4_mixed_precision_helpers_rank_and_round_the_right_layers() -> None:
    import torch
    from torch import nn

    from edgeopt.frameworks.pytorch.ptq_int4 import fake_quantized, int4_layers, int8_ladder, sensitivity_order

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),  # reads the image: stays FP32
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise: XNNPACK has no 4-bit kernel, stays FP32
        nn.Conv2d(8, 16, 1),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    ).eval()
    with torch.no_grad():
        model[4].weight.mul_(50.0)  # the classifier's weights dominate the logits: 4 bits hurt it most
    assert int4_layers(model) == ["2", "4"]
    assert int8_ladder(2) == [2, 1, 0] and int8_ladder(20) == [20, 10, 5, 3, 2, 1, 0]
    images = np.random.default_rng(0).random((16, 4, 4, 1), dtype=np.float32)
    assert sensitivity_order(model, ["2", "4"], images) == ["4", "2"]
    four, eight = fake_quantized(model, ["2"], []), fake_quantized(model, [], ["2"])
    error4 = (four[2].weight - model[2].weight).abs().max()
    error8 = (eight[2].weight - model[2].weight).abs().max()
    assert 0 < error8 < error4 / 8  # 8-bit codes round 16x finer than 4-bit ones
    assert torch.equal(four[4].weight, model[4].weight)  # layers not named are untouched
    assert len(torch.unique(four[2].weight[0])) <= 16  # one output channel holds at most 16 levels


def test_an_experiment_time_budget_is_shared_by_the_searching_techniques(digits32: Dataset, tmp_path: Path) -> None:
    from edgeopt.pipeline import ExperimentSpec, Pipeline

    spec = ExperimentSpec(
        framework="pytorch", dataset="digits", device="rpi4", out_dir=tmp_path, arch="resnet18", time_budget_s=90
    )
    pipeline = Pipeline(spec)
    pipeline._searching = ["prune_unstructured", "prune_structured", "distillation"]
    trimmed, search = pipeline._search_context("prune_unstructured", digits32)
    assert search is not None and search.time_budget_s == pytest.approx(30.0)
    assert search.min_trials == 0  # the user's budget is kept strictly
    assert len(trimmed.y_train) + len(search.y_val) == len(digits32.y_train)
    pipeline._search_left_s = 80.0  # the first search took 10 s: the other two share what is left
    assert pipeline._search_context("prune_structured", digits32)[1].time_budget_s == pytest.approx(40.0)
    untouched, none = pipeline._search_context("ptq_int8", digits32)
    assert none is None and untouched is digits32  # techniques that do not search train on the whole train split
