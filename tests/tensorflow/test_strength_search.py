"""The strength search on the trained Keras demo CNN: validation only, the mildest setting when the budget cannot be
met, the time budget kept, a fixed setting runs none; and what structured pruning protects on MobileNetV2.

The search's own rules (bisection, budgets) are pinned without training in tests/engine/test_strength_search.py.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeopt.data.dataset import Dataset
from edgeopt.frameworks import LoadedModel
from edgeopt.progress import silent_reporter
from edgeopt.report import Constraints
from edgeopt.strength_search import KNOBS, SearchContext, carve_validation
from edgeopt.techniques import TechniqueContext, TechniqueOutput, get_technique, make_config


def _search_context(data: Dataset, budget: float | None = None, **fields: Any) -> tuple[Dataset, SearchContext]:
    trimmed, x_val, y_val = carve_validation(data, seed=0)
    search = SearchContext.from_constraints(Constraints(max_accuracy_drop=budget), x_val, y_val, time_budget_s=600.0)
    search.recovery_images = 128  # a short recovery keeps the test quick; the rule is tested in tests/engine
    for name, value in fields.items():
        setattr(search, name, value)
    return trimmed, search


def _poisoned(data: Dataset) -> Dataset:
    """The same data with the test split destroyed: noise images, shuffled labels."""
    rng = np.random.default_rng(1)
    return replace(data, x_test=rng.random(data.x_test.shape, dtype=np.float32), y_test=rng.permutation(data.y_test))


def _apply(
    name: str, loaded: LoadedModel, data: Dataset, search: SearchContext | None, work: Path, **overrides: object
) -> TechniqueOutput:
    work.mkdir(parents=True, exist_ok=True)
    config = make_config(name, dict(overrides), epochs=0, seed=0)
    ctx = TechniqueContext(model=loaded, data=data, work_dir=work, reporter=silent_reporter(name), search=search)
    return get_technique(name, "tensorflow").apply(ctx, config)


def test_the_search_never_reads_the_test_split(keras_demo: LoadedModel, digits_keras: Dataset, tmp_path: Path) -> None:
    """ptq_int4 searches without training, so the check is quick; the other techniques share its search code."""
    trimmed, search = _search_context(digits_keras)
    clean = _apply("ptq_int4", keras_demo, trimmed, search, tmp_path / "clean")
    _, poisoned_search = _search_context(_poisoned(digits_keras))
    poisoned = _apply("ptq_int4", keras_demo, _poisoned(trimmed), poisoned_search, tmp_path / "poisoned")
    assert clean.search is not None and poisoned.search is not None
    assert poisoned.search.chosen == clean.search.chosen
    assert [(t.setting, t.val_accuracy) for t in poisoned.search.trials] == [
        (t.setting, t.val_accuracy) for t in clean.search.trials
    ]
    assert len(clean.search.trials) >= 2 and clean.search.validation_images == len(search.y_val)
    assert clean.notes.startswith(clean.search.reason)
    assert clean.search.chosen_val_accuracy is not None


def test_an_unmeetable_budget_gives_the_mildest_setting(
    keras_demo: LoadedModel, digits_keras: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trimmed, search = _search_context(digits_keras, budget=0.01)
    knob = KNOBS["prune_structured"]
    monkeypatch.setitem(KNOBS, "prune_structured", replace(knob, ladder=knob.ladder[:1]))  # one trial: quick
    # A recovery at an absurd learning rate wrecks every candidate, while the original keeps its validation score.
    out = _apply("prune_structured", keras_demo, trimmed, search, tmp_path, learning_rate=10.0)
    assert out.search is not None and len(out.search.trials) == 1
    assert not out.search.trials[0].within_budget
    assert out.search.chosen == knob.ladder[0]  # the mildest setting
    assert out.notes.startswith("No setting met the 1-point budget (your maximum accuracy drop)")
    assert out.search.chosen_val_accuracy is not None  # the final model is scored on validation too


def test_the_time_budget_is_kept(keras_demo: LoadedModel, digits_keras: Dataset, tmp_path: Path) -> None:
    """A budget the user sets is kept strictly: after the one trial that always runs, nothing more is tried."""
    trimmed, search = _search_context(digits_keras, time_budget_s=1e-3, min_trials=0)
    out = _apply("ptq_int4", keras_demo, trimmed, search, tmp_path)
    assert out.search is not None
    assert len(out.search.trials) == 1 and out.search.stopped_by_time
    assert len(search.trials_run) == 1


@pytest.mark.parametrize(
    ("name", "knob"),
    [
        ("prune_structured", "channel_sparsity"),
        ("hybrid_prune_int8", "channel_sparsity"),
        ("prune_unstructured", "sparsity"),
        ("distillation", "width_ratio"),
        ("ptq_int4", "int8_layers"),
    ],
)
def test_a_fixed_setting_runs_no_search(name: str, knob: str, tmp_path: Path) -> None:
    from edgeopt.pipeline import ExperimentSpec, Pipeline

    spec = ExperimentSpec(framework="tensorflow", dataset="digits", device="rpi4", out_dir=tmp_path, arch="resnet18")
    assert Pipeline(spec)._searches(name)
    assert not Pipeline(replace(spec, technique_configs={name: {knob: 1}}))._searches(name)


def test_int4_keeps_the_given_number_of_most_sensitive_layers_at_8_bits(
    keras_demo: LoadedModel, digits_keras: Dataset, tmp_path: Path
) -> None:
    """A fixed ``int8_layers`` runs no search; the note names the layer kept at 8 bits, the file says the same."""
    from ai_edge_litert.interpreter import Interpreter

    config = make_config("ptq_int4", {"int8_layers": 1}, seed=0)
    ctx = TechniqueContext(model=keras_demo, data=digits_keras, work_dir=tmp_path, reporter=silent_reporter())
    out = get_technique("ptq_int4", "tensorflow").apply(ctx, config)
    assert out.search is None and len(out.extra["int8_layers"]) == 1
    assert f"keep 8-bit weights: {out.extra['int8_layers'][0]}." in out.notes
    weights = [t for t in Interpreter(model_path=str(out.artifact)).get_tensor_details() if len(t["shape"]) > 1]
    kinds = {np.dtype(t["dtype"]).name for t in weights}
    assert "int8" in kinds  # the layer kept at 8 bits


def test_structured_pruning_keeps_residual_streams_and_linear_bottlenecks_whole() -> None:
    """An inverted-residual block as MobileNetV2 builds it: expansion pruned, stream and projection whole."""
    import tf_keras as keras

    from edgeopt.frameworks.tensorflow.filter_pruning import protected_note, prune_filters

    layers = keras.layers
    inputs = keras.Input((8, 8, 3))
    stream = layers.BatchNormalization()(layers.Conv2D(8, 3, padding="same", name="stem")(inputs))
    x = layers.ReLU()(layers.Conv2D(24, 1, name="expand")(stream))
    x = layers.ReLU()(layers.BatchNormalization()(layers.DepthwiseConv2D(3, padding="same")(x)))
    x = layers.BatchNormalization()(layers.Conv2D(8, 1, name="project")(x))
    x = layers.Add(name="add")([stream, x])
    x = layers.ReLU()(layers.Conv2D(32, 1, name="head")(x))
    x = layers.DepthwiseConv2D(3, padding="same")(x)
    x = layers.Conv2D(12, 1, name="lone_project")(x)
    model = keras.Model(inputs, layers.Dense(10)(layers.GlobalAveragePooling2D()(x)))
    pruned = prune_filters(model, 0.5, protect=True)
    widths = {name: pruned.model.get_layer(name).filters for name in ("stem", "expand", "project", "head")}
    assert (widths["stem"], widths["project"]) == (8, 8)
    assert widths["expand"] + widths["head"] == (24 + 32) // 2  # half of the only prunable channels
    assert pruned.model.get_layer("lone_project").filters == 12
    assert pruned.protected == {"residual": ("add",), "bottleneck": ("project", "lone_project")}
    assert "residual streams" in protected_note(pruned) and "linear bottlenecks" in protected_note(pruned)
    x = np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32)
    assert pruned.model(x).shape == (2, 10)
    unprotected = prune_filters(model, 0.5, allocation="uniform")  # without protection the stream loses half too
    assert unprotected.model.get_layer("project").filters == 4 and not unprotected.protected
