"""Keras filter pruning: the rebuilt model really is narrower, and it computes exactly what it should.

The strongest check is functional: in a model whose odd-numbered filters are zero (and whose BatchNorm maps zero to
zero), those filters are exactly the ones with the smallest norm, so removing them must not change the output at
all. Any wrong slice (a BatchNorm vector, a depthwise channel, a Dense row after Flatten, an Add branch that keeps
other channels) changes the logits and fails the test.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tf_keras as keras  # the root conftest set TF_USE_LEGACY_KERAS=1 first

from edgeopt.data.dataset import Dataset
from edgeopt.errors import Unsupported
from edgeopt.frameworks import LoadedModel
from edgeopt.frameworks.tensorflow.convert import to_tflite
from edgeopt.frameworks.tensorflow.filter_pruning import MAX_SPACE_SHARE, PruneStructured, lamp, prune_filters
from edgeopt.frameworks.tensorflow.runtime import load_tflite
from edgeopt.frameworks.tensorflow.training import fine_tune
from edgeopt.progress import silent_reporter
from edgeopt.techniques import PruneStructuredConfig, TechniqueContext

layers = keras.layers


def sequential() -> Any:
    return keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            layers.Conv2D(8, 3, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.MaxPooling2D(),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.Flatten(),
            layers.Dense(32, activation="relu"),
            layers.Dropout(0.1),
            layers.Dense(10),
        ]
    )


def functional() -> Any:
    """Depthwise convolution, two branches joined by Concatenate, GlobalAveragePooling and a hidden Dense."""
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    a = layers.Conv2D(8, 1, activation="relu")(x)
    b = layers.Conv2D(12, 3, padding="same", activation="relu")(x)
    x = layers.Concatenate()([a, b])
    x = layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(16, activation="relu")(x)
    return keras.Model(inputs, layers.Dense(10)(x))


def resnet_like() -> Any:
    """Two residual blocks (identity and projection shortcut): every tensor meeting at an Add shares channels."""
    inputs = keras.Input((16, 16, 3))
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)))
    for filters, stride in ((16, 1), (32, 2)):
        y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        y = layers.ReLU()(layers.BatchNormalization()(y))
        y = layers.BatchNormalization()(layers.Conv2D(filters, 3, padding="same", use_bias=False)(y))
        shortcut = x if stride == 1 else layers.Conv2D(filters, 1, strides=stride, use_bias=False)(x)
        x = layers.ReLU()(layers.Add()([y, shortcut]))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10)(x))


def tf_ops() -> Any:
    """Residual ``x + y`` and squeeze-excite ``y * gate`` written as TensorFlow ops (TFOpLambda), as RegNet does.

    tf_keras serializes ``x + y`` as a call on ``x`` with ``y`` in its kwargs: if that second operand is missed, the
    two branches keep different channels and the rebuilt model cannot even be called.
    """
    import tensorflow as tf

    inputs = keras.Input((16, 16, 3))
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)))
    y = layers.BatchNormalization()(layers.Conv2D(16, 3, padding="same", use_bias=False)(x))
    gate = layers.Conv2D(4, 1, activation="relu")(layers.GlobalAveragePooling2D(keepdims=True)(y))
    y = y * tf.math.sigmoid(layers.Conv2D(16, 1)(gate))
    x = tf.nn.relu(x + y) * 0.5
    x = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10)(x))


def mobilenet_v2() -> Any:
    return keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10)


BUILDERS: dict[str, Callable[[], Any]] = {
    "sequential": sequential,
    "functional": functional,
    "resnet_like": resnet_like,
    "tf_ops": tf_ops,
    "mobilenet_v2": mobilenet_v2,
}


@pytest.fixture(scope="module", params=list(BUILDERS))
def model(request: pytest.FixtureRequest) -> Any:
    keras.utils.set_random_seed(0)
    built = BUILDERS[request.param]()
    _calibrate_batchnorm(built)
    return built


def _calibrate_batchnorm(model: Any, *, zero_odd_beta: bool = False) -> None:
    """BatchNorm statistics of real activations and random gamma/beta, as in a trained network.

    Without this, a deep random network (MobileNetV2) decays to a constant output and any slice would "match".
    One training-mode pass with momentum 0 sets every moving mean/variance to the batch's statistics.
    """
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            beta = rng.uniform(-0.2, 0.2, beta.shape)
            if zero_odd_beta:
                beta[1::2] = 0.0
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), beta, mean, variance])
            layer.momentum = 0.0
    model(_inputs(model, 32), training=True)


def _inputs(model: Any, count: int = 4) -> np.ndarray:
    return np.random.default_rng(2).random((count, *model.input_shape[1:]), dtype=np.float32)


def _producers(model: Any) -> dict[str, int]:
    """Filters of every Conv2D and units of every Dense, by layer name."""
    return {
        layer.name: int(layer.filters if isinstance(layer, layers.Conv2D) else layer.units)
        for layer in model.layers
        if isinstance(layer, layers.Conv2D | layers.Dense) and not isinstance(layer, layers.DepthwiseConv2D)
    }


def _macs(model: Any) -> int:
    """Multiply-accumulates of the convolutions and dense layers at the model's input size."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.DepthwiseConv2D):
            _, h, w, c = layer.output_shape
            total += h * w * c * int(np.prod(layer.kernel_size))
        elif isinstance(layer, layers.Conv2D):
            _, h, w, c = layer.output_shape
            total += h * w * c * int(np.prod(layer.kernel.shape[:-1]))
        elif isinstance(layer, layers.Dense):
            total += int(np.prod(layer.kernel.shape))
    return total


def _zero_odd_filters(model: Any) -> None:
    """Zero every odd-numbered filter (except the classifier's) and make BatchNorm keep those channels at zero."""
    classifier = model.layers[-1].name
    producers = _producers(model)
    for layer in model.layers:
        if layer.name in producers and layer.name != classifier:
            weights = layer.get_weights()
            for w in weights:
                w[..., 1::2] = 0.0
            layer.set_weights(weights)
    _calibrate_batchnorm(model, zero_odd_beta=True)  # zero channels get mean 0 and beta 0: they stay zero


def test_pruning_nothing_rebuilds_an_identical_model(model: Any) -> None:
    pruned = prune_filters(model, 0.0)
    x = _inputs(model)
    assert pruned.filters_after == pruned.filters_before
    np.testing.assert_allclose(pruned.model(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)


def test_half_of_the_filters_go_and_compute_drops_at_least_twofold(model: Any) -> None:
    """Uniform allocation: half of every layer's filters, so both sides of each layer shrink."""
    pruned = prune_filters(model, 0.5, allocation="uniform")
    before, after = _producers(model), _producers(pruned.model)
    classifier = model.layers[-1].name
    assert after[classifier] == before[classifier]  # the classes are never pruned
    hidden = [name for name in before if name != classifier]
    assert sum(after[n] for n in hidden) == pytest.approx(sum(before[n] for n in hidden) / 2, rel=0.05)
    assert _macs(model) / _macs(pruned.model) >= 2.0
    assert pruned.model.count_params() < model.count_params() / 2


def test_removing_zero_filters_leaves_the_output_unchanged(model: Any) -> None:
    """Exact equivalence: every weight slice (BatchNorm, depthwise, Flatten rows, Add groups, Concatenate) is right."""
    _zero_odd_filters(model)
    x = _inputs(model)
    expected = model(x).numpy()
    assert np.ptp(expected, axis=1).min() > 1e-3  # the outputs depend on the input: the comparison means something
    pruned = prune_filters(model, 0.5)
    assert pruned.filters_after < pruned.filters_before
    np.testing.assert_allclose(pruned.model(x).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_a_subclassed_model_is_unsupported_with_a_reason() -> None:
    class Tiny(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.conv = layers.Conv2D(4, 3)
            self.head = layers.Dense(2)

        def call(self, x: Any) -> Any:
            return self.head(layers.Flatten()(self.conv(x)))

    tiny = Tiny()
    tiny(np.zeros((1, 8, 8, 1), np.float32))
    with pytest.raises(Unsupported, match="subclassed"):
        prune_filters(tiny, 0.5)


def test_a_nested_model_is_kept_whole_and_the_layers_around_it_pruned() -> None:
    """ConvNeXt's stem is a Sequential inside the model; the outer graph reads it as its node 1."""
    keras.utils.set_random_seed(0)
    stem = keras.Sequential([keras.Input((16, 16, 3)), layers.Conv2D(8, 3, padding="same")], name="stem")
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="inner")(stem(inputs))
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="wide")(x)
    model = keras.Model(inputs, layers.Dense(10)(layers.GlobalAveragePooling2D()(x)))
    assert model.get_config()["layers"][2]["inbound_nodes"][0][0][:2] == ["stem", 1]
    pruned = prune_filters(model, 0.5)
    assert "stem (Sequential)" in pruned.kept_whole
    assert pruned.model.get_layer("stem").layers[0].filters == 8
    assert (pruned.model.get_layer("inner").filters, pruned.model.get_layer("wide").filters) == (8, 8)
    x = _inputs(model)
    np.testing.assert_allclose(pruned.model.get_layer("stem")(x).numpy(), model.get_layer("stem")(x).numpy())
    assert pruned.model(x).shape == (4, 10)


def test_a_tensor_times_a_constant_vector_keeps_its_channels() -> None:
    """``x * [w0, w1, ...]`` scales each channel by a constant: pruning x would leave the constant too long."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", name="scaled")(inputs)
    x = x * np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    x = layers.Conv2D(6, 3, padding="same", name="free")(x)
    model = keras.Model(inputs, layers.Dense(10)(layers.GlobalAveragePooling2D()(x)))
    pruned = prune_filters(model, 0.5)
    assert pruned.model.get_layer("scaled").filters == 4
    assert pruned.model.get_layer("free").filters == 3
    assert pruned.model(_inputs(model)).shape == (4, 10)


def test_a_shared_layer_is_unsupported_with_a_reason() -> None:
    inputs = keras.Input((8, 8, 4))
    conv = layers.Conv2D(4, 3, padding="same")
    x = conv(conv(inputs))
    model = keras.Model(inputs, layers.Dense(2)(layers.Flatten()(x)))
    with pytest.raises(Unsupported, match="shared layer"):
        prune_filters(model, 0.5)


def test_channels_around_a_lambda_layer_are_kept_and_the_rest_pruned() -> None:
    """A Lambda could index channels, so the tensors it touches keep all of them; other layers are still pruned."""
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(8, 3, activation="relu")(inputs)
    x = layers.Lambda(lambda t: t * 2.0, name="double")(x)
    x = layers.Conv2D(8, 3, activation="relu")(x)
    model = keras.Model(inputs, layers.Dense(3)(layers.Flatten()(x)))
    pruned = prune_filters(model, 0.5)
    widths = _producers(pruned.model)
    assert list(widths.values()) == [8, 4, 3]
    assert any("double (Lambda)" in name for name in pruned.kept_whole)
    x = _inputs(model)
    assert pruned.model(x).shape == model(x).shape


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet_like", "mobilenet_v2"])
def test_a_pruned_model_fine_tunes_and_converts_to_tflite(name: str, tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    model = BUILDERS[name]()
    pruned = prune_filters(model, 0.5).model
    rng = np.random.default_rng(0)
    x = rng.random((48, *model.input_shape[1:]), dtype=np.float32)
    data = Dataset("random", x[:32], rng.integers(0, 10, 32), x[32:], rng.integers(0, 10, 16), num_classes=10)
    before = [w.copy() for w in pruned.get_weights()]
    fine_tune(pruned, data, epochs=1, lr=1e-3, batch_size=16, reporter=silent_reporter())
    assert any(not np.allclose(a, b) for a, b in zip(before, pruned.get_weights(), strict=True))
    artifact = to_tflite(pruned, tmp_path / f"{name}.tflite")
    np.testing.assert_allclose(load_tflite(artifact)(data.x_test), pruned(data.x_test).numpy(), atol=1e-4)


def _context(model: Any, tmp_path: Path, shape: tuple[int, int, int], **loaded: Any) -> TechniqueContext:
    rng = np.random.default_rng(0)
    x = rng.random((8, *shape), dtype=np.float32)
    data = Dataset("random", x, rng.integers(0, 2, 8), x, rng.integers(0, 2, 8), num_classes=2)
    return TechniqueContext(
        model=LoadedModel("tensorflow", model, "keras", shape, 2, **loaded),  # type: ignore[arg-type]
        data=data,
        work_dir=tmp_path,
        reporter=silent_reporter(),
    )


def test_prune_structured_skips_a_subclassed_model_with_a_sentence(tmp_path: Path) -> None:
    class Custom(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.conv = layers.Conv2D(4, 3)
            self.flat = layers.Flatten()
            self.head = layers.Dense(2)

        def call(self, x: Any) -> Any:
            return self.head(self.flat(self.conv(x)))

    model = Custom()
    model(np.zeros((1, 8, 8, 1), np.float32))
    with pytest.raises(Unsupported, match="Functional or Sequential"):
        PruneStructured().apply(_context(model, tmp_path, (8, 8, 1)), PruneStructuredConfig(epochs=0))
    assert not list(tmp_path.iterdir()), "nothing is written for a skipped run"


def test_prune_structured_respects_a_model_that_cannot_be_transformed(tmp_path: Path) -> None:
    model = sequential()
    reason = "A bare SavedModel graph can be measured but not transformed."
    ctx = _context(model, tmp_path, (12, 12, 1), transformable=False, not_transformable_reason=reason)
    with pytest.raises(Unsupported, match="bare SavedModel"):
        PruneStructured().apply(ctx, PruneStructuredConfig(epochs=0))


class ChannelScale(layers.Layer):
    """A custom layer with one weight per channel, which filter pruning does not know how to slice."""

    def build(self, input_shape: Any) -> None:
        self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), initializer="ones")

    def call(self, x: Any) -> Any:
        return x * self.scale


class Widened(layers.Layer):
    """A custom layer whose constructor argument is not in its config: Keras cannot rebuild it."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def call(self, x: Any) -> Any:
        return x * self.factor


def _with_custom_layer(layer: Any) -> Any:
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(8, 3, activation="relu")(inputs)
    x = layer(x)
    x = layers.Conv2D(8, 3, activation="relu")(x)
    return keras.Model(inputs, layers.Dense(3)(layers.GlobalAveragePooling2D()(x)))


def test_a_custom_layer_with_channel_weights_keeps_its_channels_and_weights() -> None:
    model = _with_custom_layer(ChannelScale(name="scale"))
    scale = model.get_layer("scale")
    scale.set_weights([np.linspace(0.5, 2.0, 8, dtype=np.float32)])
    pruned = prune_filters(model, 0.5)
    assert list(_producers(pruned.model).values()) == [8, 4, 3]
    np.testing.assert_array_equal(pruned.model.get_layer("scale").get_weights()[0], scale.get_weights()[0])
    x = _inputs(model)
    np.testing.assert_allclose(prune_filters(model, 0.0).model(x).numpy(), model(x).numpy(), atol=1e-6)


def test_a_custom_layer_keras_cannot_rebuild_is_unsupported_with_a_reason() -> None:
    with pytest.raises(Unsupported, match="get_config"):
        prune_filters(_with_custom_layer(Widened(2.0)), 0.5)


# ------------------------------------------------------------------------------------------------- global allocation


def _three_convs(weak_scale: float) -> Any:
    """Three 16-filter convolutions with BatchNorm; 12 of the middle one's filters scaled by ``weak_scale``.

    LAMP compares a filter with the stronger filters of its own layer, so scaling a whole layer would change
    nothing: the layer that matters less is one where most filters are tiny next to a few.
    """
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = inputs
    for name in ("first", "weak", "last"):
        x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(16, 3, padding="same", name=name)(x)))
    model = keras.Model(inputs, layers.Dense(10)(layers.GlobalAveragePooling2D()(x)))
    weak = model.get_layer("weak")
    kernel, bias = weak.get_weights()
    kernel[..., 4:] *= weak_scale
    weak.set_weights([kernel, bias])
    return model


def _widths(pruned: Any) -> dict[str, int]:
    return {name: pruned.model.get_layer(name).filters for name in ("first", "weak", "last")}


def test_lamp_scores_each_channel_against_the_channels_not_below_it() -> None:
    np.testing.assert_allclose(lamp(np.array([3.0, 1.0, 2.0])), [1.0, 1 / 14, 4 / 13])
    np.testing.assert_array_equal(lamp(np.zeros(3)), np.zeros(3))


def test_global_allocation_takes_more_from_the_layer_whose_filters_matter_less() -> None:
    model = _three_convs(1e-3)
    pruned = prune_filters(model, 0.25)
    widths = _widths(pruned)
    assert sum(16 - w for w in widths.values()) == 12  # a quarter of the 48 prunable channels
    assert widths["weak"] < min(widths["first"], widths["last"])
    assert list(_widths(prune_filters(model, 0.25, allocation="uniform")).values()) == [12, 12, 12]
    assert pruned.model(_inputs(model)).shape == (4, 10)


def test_global_allocation_never_empties_a_layer() -> None:
    """However weak a layer and however strong the setting, it keeps ``1 - MAX_SPACE_SHARE`` of its channels."""
    model = _three_convs(0.0)  # the weak layer's filters are all zero
    widths = _widths(prune_filters(model, 0.5))
    assert widths["weak"] == 16 - int(16 * MAX_SPACE_SHARE)
    assert sum(16 - w for w in widths.values()) == 24
    strongest = _widths(prune_filters(model, 0.95))  # more than the caps allow: every layer at its cap
    assert set(strongest.values()) == {16 - int(16 * MAX_SPACE_SHARE)}
    single = keras.Sequential([keras.Input((4, 4, 1)), layers.Conv2D(1, 3), layers.Flatten(), layers.Dense(2)])
    assert single.layers[0].filters == prune_filters(single, 0.9).model.layers[0].filters == 1


def test_global_allocation_keeps_protected_channels_whole_however_weak() -> None:
    """A linear bottleneck with tiny filters would be the first to go; protection keeps it whole all the same."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = layers.ReLU()(layers.Conv2D(24, 1, name="expand")(inputs))
    x = layers.DepthwiseConv2D(3, padding="same")(x)
    x = layers.Conv2D(12, 1, name="project")(x)
    x = layers.ReLU()(layers.Conv2D(32, 1, name="head")(x))
    model = keras.Model(inputs, layers.Dense(10)(layers.GlobalAveragePooling2D()(x)))
    project = model.get_layer("project")
    project.set_weights([w * 1e-3 for w in project.get_weights()])
    assert prune_filters(model, 0.5).model.get_layer("project").filters < 12
    protected = prune_filters(model, 0.5, protect=True)
    assert protected.model.get_layer("project").filters == 12
    assert protected.filters_before - protected.filters_after == (24 + 32) // 2


def test_a_pointwise_convolution_followed_by_an_activation_is_not_a_linear_bottleneck() -> None:
    """MobileNet V1 puts a 1x1 convolution after every depthwise one, each followed by batch norm and ReLU: ordinary
    layers, not MobileNetV2's linear projections. Protected as bottlenecks, 2 of its 1,506 filters could go."""
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNet(input_shape=(32, 32, 3), alpha=0.25, weights=None, classes=10)
    pruned = prune_filters(model, 0.3, protect=True)
    assert "bottleneck" not in pruned.protected
    assert pruned.filters_after < 0.8 * pruned.filters_before
    assert pruned.model.predict(np.zeros((4, 32, 32, 3), np.float32), verbose=0).shape == (4, 10)
    inputs = keras.Input((8, 8, 3))  # the same pattern with the activation fused into the convolution
    x = layers.DepthwiseConv2D(3, padding="same")(layers.Conv2D(8, 1)(inputs))
    x = layers.Conv2D(16, 1, activation="relu", name="pointwise")(x)
    fused = keras.Model(inputs, layers.Dense(10)(layers.GlobalAveragePooling2D()(x)))
    assert prune_filters(fused, 0.5, protect=True).model.get_layer("pointwise").filters < 16


def test_channels_through_a_squeeze_and_excite_reshape_are_pruned_and_the_gate_stays_aligned() -> None:
    """EfficientNet's squeeze-and-excite reshapes the pooled (N, C) to (N, 1, 1, C) before the gate. Half of the
    expansion's and the gate's filters are zero here, so removing exactly those channels (from the expansion, the
    excite gate and the reshape's target shape alike) must leave the outputs as they were."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = layers.ReLU()(layers.Conv2D(16, 1, use_bias=False, name="expand")(inputs))
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    gate = layers.Reshape((1, 1, 16), name="squeeze")(layers.GlobalAveragePooling2D()(x))
    gate = layers.Conv2D(4, 1, activation="relu", name="reduce")(gate)
    gate = layers.Conv2D(16, 1, activation="sigmoid", name="excite")(gate)
    x = layers.Conv2D(8, 1, name="project")(layers.Multiply()([x, gate]))
    model = keras.Model(inputs, layers.Dense(10)(layers.GlobalAveragePooling2D()(x)))
    for name in ("expand", "excite"):  # the two layers whose filters make the same channels: zero on both sides
        weights = model.get_layer(name).get_weights()
        for array in weights:
            array[..., :8] = 0.0
        model.get_layer(name).set_weights(weights)
    images = np.random.default_rng(0).random((4, 8, 8, 3)).astype(np.float32)
    pruned = prune_filters(model, 8 / 28)  # 28 prunable channels: expand/excite 16, reduce 4, project 8
    assert pruned.model.get_layer("expand").filters == pruned.model.get_layer("excite").filters == 8
    assert pruned.model.get_layer("squeeze").target_shape == (1, 1, 8)
    np.testing.assert_allclose(pruned.model.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-5)


def test_prune_scored_keeps_the_allocation_that_scores_better_after_recalibration() -> None:
    """Neither allocation wins on every model, so both are pruned, recalibrated and scored; the better one is kept.
    Checked against the two computed by hand: labels taken from each candidate's own predictions make it win."""
    from edgeopt.frameworks.tensorflow.filter_pruning import prune_scored
    from edgeopt.frameworks.tensorflow.training import recalibrate_batchnorm

    model = _three_convs(1e-3)
    x = np.random.default_rng(1).random((64, 8, 8, 3), dtype=np.float32)
    for favoured in ("global", "uniform"):
        reference = prune_filters(model, 0.25, protect=True, allocation=favoured)
        recalibrate_batchnorm(reference.model, x, 0)
        labels = np.argmax(reference.model.predict(x, verbose=0), axis=1)  # 100 % for the favoured allocation
        chosen = prune_scored(model, 0.25, x, 0, (x, labels))
        assert chosen.allocation == favoured or _widths(chosen) == _widths(reference)
        np.testing.assert_allclose(chosen.model.predict(x, verbose=0), reference.model.predict(x, verbose=0), atol=1e-5)



def test_prune_scored_leaves_out_an_allocation_that_cannot_be_carried_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """One allocation raising ``Unsupported`` on a model does not lose the technique: the other is kept. Only when
    every allocation fails is the first reason raised (as on the PyTorch side)."""
    from edgeopt.frameworks.tensorflow import filter_pruning

    model = _three_convs(1e-3)
    x = np.random.default_rng(1).random((32, 8, 8, 3), dtype=np.float32)
    labels = np.zeros(len(x), dtype=np.int64)
    real = filter_pruning.prune_filters

    def refuse(refused: set[str]) -> Callable[..., Any]:
        def prune(model: Any, sparsity: float, protect: bool = False, allocation: str = "global") -> Any:
            if allocation in refused:
                raise Unsupported(f"{allocation} cannot be carried out here")
            return real(model, sparsity, protect=protect, allocation=allocation)

        return prune

    monkeypatch.setattr(filter_pruning, "prune_filters", refuse({"uniform"}))
    assert filter_pruning.prune_scored(model, 0.25, x, 0, (x, labels)).allocation == "global"
    monkeypatch.setattr(filter_pruning, "prune_filters", refuse({"global", "uniform"}))
    with pytest.raises(Unsupported, match="global cannot be carried out"):
        filter_pruning.prune_scored(model, 0.25, x, 0, (x, labels))

def _costly_and_cheap() -> Any:
    """A 16-filter convolution at 16x16 (costly channels), then, after pooling to 2x2, a 64-filter one (cheap)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(16, 3, padding="same", name="costly")(inputs)))
    x = layers.MaxPooling2D(8)(x)
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(64, 1, name="cheap")(x)))
    return keras.Model(inputs, layers.Dense(10)(layers.GlobalAveragePooling2D()(x)))


def test_the_compute_ranking_removes_as_many_channels_and_more_multiply_adds() -> None:
    """Structured pruning's goal is fewer FLOPs: weighed by what each channel costs, the same share of channels
    comes more from the high-resolution layer, and the rebuilt model still computes the same kind of output."""
    model = _costly_and_cheap()
    by_lamp = prune_filters(model, 0.3, allocation="global")
    by_compute = prune_filters(model, 0.3, allocation="compute")
    assert by_compute.filters_after == by_lamp.filters_after < by_lamp.filters_before
    assert by_compute.model.get_layer("costly").filters < by_lamp.model.get_layer("costly").filters
    assert _macs(by_compute.model) < _macs(by_lamp.model)
    assert by_compute.model.predict(_inputs(model), verbose=0).shape == (4, 10)
