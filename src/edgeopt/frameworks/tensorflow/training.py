"""Fine-tuning a Keras model on the train split, reporting progress per group of batches.

Works for ``tf_keras`` and Keras 3 models alike: the progress callback is built from the model's own Keras so the
``fit`` loop accepts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tf_keras

from edgeopt.data.dataset import Dataset
from edgeopt.frameworks.tensorflow import keras_compat
from edgeopt.progress import StageReporter

REPORTS_PER_EPOCH = 10


def _keras_of(model: Any) -> Any:
    if keras_compat.is_tf_keras_model(model):
        return tf_keras
    import keras

    return keras


def outputs_probabilities(model: Any) -> bool:
    """True when the model ends in a softmax, so the loss must not treat its outputs as logits.

    Looks through tfmot's wrappers (quantization, pruning: ``.layer``) and its quantization-aware activation
    (``.activation``), so a quantization-aware keras.applications model is still trained on its probabilities.
    """
    last = model.layers[-1]
    while hasattr(getattr(last, "layer", None), "get_config"):  # a Keras Wrapper: the wrapped layer decides
        last = last.layer
    if type(last).__name__ == "Softmax":
        return True
    activation = getattr(last, "activation", None)
    activation = getattr(activation, "activation", activation)  # tfmot's QuantizeAwareActivation keeps the original
    return getattr(activation, "__name__", "") == "softmax"


def progress_callback(keras_module: Any, reporter: StageReporter, stage: str, epochs: int, steps: int) -> Any:
    """A Keras callback that calls ``reporter.stage`` about ten times per epoch (it also honours cancellation)."""
    every = max(1, steps // REPORTS_PER_EPOCH)

    class _Progress(keras_module.callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch = epoch
            reporter.stage(f"{stage} (epoch {epoch + 1} of {epochs})", epoch / max(epochs, 1))

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if (batch + 1) % every == 0:
                fraction = (self.epoch + (batch + 1) / steps) / max(epochs, 1)
                reporter.stage(f"{stage} (epoch {self.epoch + 1} of {epochs})", fraction)

    return _Progress()


def fine_tune(
    model: Any,
    data: Dataset,
    *,
    epochs: int,
    lr: float | Any,
    batch_size: int,
    reporter: StageReporter,
    stage: str = "Fine-tuning",
    callbacks: Sequence[Any] = (),
    loss: Any = None,
    seed: int = 0,
    cosine: bool = False,
) -> Any:
    """Compile with Adam and sparse cross-entropy (unless ``loss`` is given) and fit on the train split.

    ``lr`` may also be a learning-rate schedule of the model's Keras; ``cosine`` decays a float ``lr`` to zero over
    the run, which leaves a short fine-tune (and its BatchNorm statistics) settled rather than mid-step. The test
    split is never seen here: it is reserved for scoring every technique the same way.
    """
    if epochs <= 0:
        return model
    k = _keras_of(model)
    k.utils.set_random_seed(seed)
    steps = int(np.ceil(len(data.x_train) / batch_size))
    if cosine and isinstance(lr, float | int):
        lr = k.optimizers.schedules.CosineDecay(float(lr), decay_steps=max(1, epochs * steps))
    model.compile(
        optimizer=k.optimizers.Adam(learning_rate=lr),
        loss=loss
        if loss is not None
        else k.losses.SparseCategoricalCrossentropy(from_logits=not outputs_probabilities(model)),
        metrics=["accuracy"],
    )
    model.fit(
        data.x_train,
        data.y_train,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[progress_callback(k, reporter, stage, epochs, steps), *callbacks],
    )
    reporter.stage(f"{stage} done", 1.0)
    return model


RECALIBRATION_IMAGES = 512


def recalibrate_batchnorm(model: Any, x: np.ndarray, seed: int = 0, images: int = RECALIBRATION_IMAGES) -> None:
    """Reset every BatchNorm's running statistics to those of one large batch of train images, in place.

    Removing filters changes what every later BatchNorm sees, so the statistics the model learned no longer fit:
    the demo CNN with 30 % of its filters removed scored at chance on validation until recalibrated (86.6 % after,
    99 % after a short recovery). One forward pass in training mode with momentum 0 sets them; no weight changes.
    """
    from edgeopt.frameworks.tensorflow.layer_support import all_layers

    norms = [layer for layer in all_layers(model) if isinstance(layer, tf_keras.layers.BatchNormalization)]
    if not norms:
        return
    order = np.sort(np.random.default_rng(seed).permutation(len(x))[:images])
    saved = [layer.momentum for layer in norms]
    try:
        for layer in norms:
            layer.momentum = 0.0
        model(x[order], training=True)
    finally:
        for layer, momentum in zip(norms, saved, strict=True):
            layer.momentum = momentum
