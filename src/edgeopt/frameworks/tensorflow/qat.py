"""qat_int8 for Keras: tfmot ``quantize_model`` (fake-quant in training), a short fine-tune, then TFLite INT8.

A freshly wrapped model scores near chance until its quantizer ranges have seen a few training steps
(docs/library-notes.md), so at least one epoch of fine-tuning at a small learning rate always runs. tfmot works on
``tf_keras`` models only, and it cannot simulate quantization inside Lambda layers (their code is opaque to it):
such models are refused with a sentence, and ptq_int8 still handles them.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from edgeopt.errors import Unsupported
from edgeopt.frameworks.tensorflow import keras_compat
from edgeopt.frameworks.tensorflow.ptq_int8 import int8_output
from edgeopt.frameworks.tensorflow.training import fine_tune
from edgeopt.techniques import QatInt8Config, TechniqueConfig, TechniqueContext, TechniqueOutput

CALIBRATION_SAMPLES = 256  # the converter still wants a representative dataset for the int8 input/output tensors


def _refuse_lambda_layers(model: object) -> None:
    lambdas = [layer.name for layer in model.layers if type(layer).__name__ == "Lambda"]  # type: ignore[attr-defined]
    if lambdas:
        raise Unsupported(
            f"qat_int8 cannot simulate quantization inside Lambda layer(s) {', '.join(lambdas)}: their Python code "
            "is opaque to TensorFlow Model Optimization. Replace them with built-in Keras layers, or use ptq_int8."
        )


class QatInt8:
    name: ClassVar[str] = "qat_int8"
    framework: ClassVar[str] = "tensorflow"
    config_class: ClassVar[type[TechniqueConfig]] = QatInt8Config

    def apply(self, ctx: TechniqueContext, config: TechniqueConfig) -> TechniqueOutput:
        if not isinstance(config, QatInt8Config):
            config = QatInt8Config.model_validate(config.model_dump())
        import tensorflow_model_optimization as tfmot

        source = keras_compat.require_tf_keras(ctx.model.model, self.name)
        _refuse_lambda_layers(source)
        ctx.reporter.stage("Inserting fake-quantization (tfmot quantize_model)", 0.02)
        try:
            model = tfmot.quantization.keras.quantize_model(keras_compat.clone_tf_keras(source))
        except (ValueError, RuntimeError, TypeError) as exc:
            raise Unsupported(
                f"TensorFlow Model Optimization cannot make this model quantization-aware: {exc}".split("\n")[0]
            ) from exc
        epochs, lr = max(1, config.epochs), config.learning_rate_for("tensorflow")
        fine_tune(
            model,
            ctx.data,
            epochs=epochs,
            lr=lr,
            batch_size=config.batch_size,
            reporter=ctx.reporter.sub(0.05, 0.8),
            stage="Quantization-aware fine-tuning",
            seed=config.seed,
            cosine=True,
        )
        notes = (
            "tfmot quantize_model (8-bit weights per channel, 8-bit activations), fine-tuned "
            f"{epochs} epoch(s) from lr {lr:g} (cosine decay) on the train split, then TFLite "
            "full-integer INT8 with int8 input and output, run by LiteRT with XNNPACK."
        )
        if config.epochs < 1:
            notes += " epochs=0 was raised to 1: an untrained quantize_model scores near chance."
        output = int8_output(
            model,
            dataclasses.replace(ctx, reporter=ctx.reporter.sub(0.8, 1.0)),
            ctx.work_dir / f"{self.name}.tflite",
            CALIBRATION_SAMPLES,
            notes=notes,
            seed=config.seed,
        )
        return dataclasses.replace(output, model=source)  # same graph and FLOPs; profiled without fake-quant nodes
