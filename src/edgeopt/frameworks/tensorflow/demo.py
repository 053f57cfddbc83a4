"""The reference Keras demo model: a small CNN trained on scikit-learn's digits at 32x32 in seconds.

Same shape as the PyTorch demo (conv32/64/128 with BatchNorm, global average pooling, dense head) so the two
frameworks' reports compare like for like. BatchNorm uses momentum 0.9: with Keras' default 0.99 the few hundred
training steps leave the running statistics near their initial values and the model scores near chance in
inference mode (docs/library-notes.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tf_keras

from edgeopt.data.dataset import Dataset
from edgeopt.frameworks.tensorflow import keras_compat  # noqa: F401 - sets TF_USE_LEGACY_KERAS before tf.keras is used
from edgeopt.progress import StageReporter, silent_reporter

DEMO_INPUT = (32, 32, 1)  # (height, width, channels): digits upscaled from 8x8
DEMO_WIDTHS = (32, 64, 128)
# The tiny demo, an eighth of the channels (1.8 k weights, 96 % on digits after 20 epochs): see pytorch/demo.py.
TINY_WIDTHS = (4, 8, 16)
TINY_EPOCHS = 20
DEMO_EPOCHS = 10
BN_MOMENTUM = 0.9
BATCH_SIZE = 32
PEAK_LR = 3e-3


def build_demo_cnn(
    input_shape: tuple[int, int, int] = DEMO_INPUT, num_classes: int = 10, widths: tuple[int, ...] = DEMO_WIDTHS
) -> Any:
    """conv-bn-relu-pool blocks, global average pooling, a dense layer producing logits (a tf_keras Sequential)."""
    layers = tf_keras.layers
    model = tf_keras.Sequential(name="edgeopt_demo_cnn")
    model.add(layers.InputLayer(input_shape=input_shape, name="image"))
    for index, width in enumerate(widths):
        model.add(layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"conv{index + 1}"))
        model.add(layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"bn{index + 1}"))
        model.add(layers.ReLU(name=f"relu{index + 1}"))
        if index < len(widths) - 1:
            model.add(layers.MaxPooling2D(2, name=f"pool{index + 1}"))
    model.add(layers.GlobalAveragePooling2D(name="gap"))
    model.add(layers.Dense(num_classes, name="logits"))
    return model


def digits_for_demo(seed: int = 0) -> Dataset:
    """scikit-learn digits adapted to the demo input (bilinear upscale to 32x32, one channel)."""
    from edgeopt.data.adapt import adapt
    from edgeopt.data.presets import load_preset
    from edgeopt.settings import get_settings

    height, width, channels = DEMO_INPUT
    return adapt(load_preset("digits", get_settings(), seed=seed), height, width, channels)


def train_demo_model(
    out: Path,
    seed: int = 0,
    *,
    epochs: int = DEMO_EPOCHS,
    reporter: StageReporter | None = None,
    widths: tuple[int, ...] = DEMO_WIDTHS,
) -> Path:
    """Train the demo CNN (``TINY_WIDTHS`` and ``TINY_EPOCHS`` for the tiny one) on digits and save it as
    ``.keras`` (tf_keras format); returns the file path."""
    from edgeopt.frameworks.tensorflow.training import fine_tune

    data = digits_for_demo(seed)
    tf_keras.utils.set_random_seed(seed)
    model = build_demo_cnn(DEMO_INPUT, data.num_classes, widths)
    steps = epochs * int(np.ceil(len(data.x_train) / BATCH_SIZE))
    # Cosine decay to zero: at a constant rate the last epoch's weights (and BN statistics) still bounce around.
    schedule = tf_keras.optimizers.schedules.CosineDecay(PEAK_LR, decay_steps=max(1, steps))
    fine_tune(
        model,
        data,
        epochs=epochs,
        lr=schedule,
        batch_size=BATCH_SIZE,
        reporter=reporter or silent_reporter("demo"),
        stage="Training the demo model",
        seed=seed,
    )
    out = Path(out)
    if out.suffix != ".keras":
        out = out.with_suffix(".keras")
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    return out
