"""qat_int8 for Keras: tfmot ``quantize_model`` (fake-quant in training), a short fine-tune, then TFLite INT8.

A freshly wrapped model scores near chance until its quantizer ranges have seen a few training steps
(docs/library-notes.md), so at least one epoch of fine-tuning at a small learning rate always runs. tfmot works on
``tf_keras`` models only, and it cannot simulate quantization inside Lambda layers (their code is opaque to it):
such models are refused with a sentence, and ptq_int8 still handles them.

Only the layers tfmot's 8-bit registry supports are annotated; the rest train in float and are named in the notes
(the INT8 converter still quantizes them from calibrated ranges): preprocessing layers (Rescaling, Normalization,
Resizing), layers tfmot has no rule for (LayerScale, TFOpLambda, custom layers), models nested inside the model,
and AveragePooling, whose tfmot 8-bit rule made the INT8 conversion of DenseNet121 fail. Grouped convolutions (RegNet)
are annotated like any Conv2D: keeping them float did not avoid RegNetX002's INT8 conversion failure (a CONV_2D
filter zero point of -128; still open, benchmarks/results/coverage.md), and a small RegNetX/RegNetY with them
annotated trains and converts (tests/tensorflow/test_keras_coverage.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import tf_keras

from edgeopt.errors import TechniqueFailed, Unsupported
from edgeopt.frameworks.tensorflow import keras_compat, layer_support
from edgeopt.frameworks.tensorflow.failures import readable_failures
from edgeopt.frameworks.tensorflow.ptq_int8 import int8_output
from edgeopt.frameworks.tensorflow.training import fine_tune
from edgeopt.techniques import QatInt8Config, TechniqueConfig, TechniqueContext, TechniqueOutput

CALIBRATION_SAMPLES = 256  # the converter still wants a representative dataset for the int8 input/output tensors


# Layer types tfmot registers but which must stay float (see the module docstring).
KEEP_FLOAT = frozenset({"AveragePooling1D", "AveragePooling2D", "AveragePooling3D"})
# Not annotated, and not named as left float: tfmot's layout transforms fold a BatchNorm that follows a convolution
# into it and quantize its output (annotating one directly makes quantize_apply fail when no convolution precedes it).
FOLDED = frozenset({"BatchNormalization", "SyncBatchNormalization"})


def _float_reason(layer: Any, registry: Any) -> str | None:
    """Why ``layer`` is not annotated for QAT, or None when it is."""
    name = type(layer).__name__
    if layer_support.is_nested_model(layer):
        return "a model nested inside the model, which tfmot cannot quantize inside (kept float as a whole)"
    if name in layer_support.PREPROCESSING:
        return "input preprocessing, kept float"
    if name in KEEP_FLOAT:
        return "tfmot's 8-bit pooling rule breaks the INT8 conversion, so the converter calibrates it instead"
    if not registry.supports(layer):
        return "tfmot has no 8-bit rule for this layer type"
    return None


def quantize_supported_layers(model: Any) -> tuple[Any, dict[str, list[Any]]]:
    """tfmot fake-quantization on every layer its registry supports; the others stay float.

    ``model`` must be a Functional or Sequential tf_keras model that nothing else uses (its layers are reused).
    Returns the quantization-aware model and the layers left float, by reason.
    """
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )

    registry = default_8bit_quantize_registry.Default8BitQuantizeRegistry()
    left: dict[str, list[Any]] = {}
    annotated = 0

    def annotate(layer: Any) -> Any:
        nonlocal annotated
        if type(layer).__name__ in FOLDED:
            return layer
        reason = _float_reason(layer, registry)
        if reason is not None:
            left.setdefault(reason, []).append(layer)
            return layer
        annotated += 1
        return tfmot.quantization.keras.quantize_annotate_layer(layer)

    with tfmot.quantization.keras.quantize_scope(layer_support.custom_objects(model)):
        marked = tf_keras.models.clone_model(model, clone_function=annotate)
        if not annotated:
            raise Unsupported(
                "qat_int8 found no layer TensorFlow Model Optimization can quantize in this model"
                + layer_support.left_out_sentence(left, "float").rstrip(".")
                + ". Use ptq_int8."
            )
        return tfmot.quantization.keras.quantize_apply(marked), left


def _refuse_lambda_layers(model: object) -> None:
    lambdas = [layer.name for layer in model.layers if type(layer).__name__ == "Lambda"]  # type: ignore[attr-defined]
    if lambdas:
        raise Unsupported(
            f"qat_int8 cannot simulate quantization inside Lambda layer(s) {', '.join(lambdas)}: their Python code "
            "is opaque to TensorFlow Model Optimization. Replace them with built-in Keras layers, or use ptq_int8."
        )


class QatInt8:
    name: ClassVar[str] = "qat_int8"

    @readable_failures
    def apply(self, ctx: TechniqueContext, config: TechniqueConfig) -> TechniqueOutput:
        if not isinstance(config, QatInt8Config):
            config = QatInt8Config.model_validate(config.model_dump())
        source = keras_compat.require_tf_keras(ctx.model.model, self.name)
        _refuse_lambda_layers(source)
        ctx.reporter.stage("Inserting fake-quantization (tfmot quantize_model)", 0.02)
        try:
            model, left_float = quantize_supported_layers(keras_compat.clone_tf_keras(source))
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
            "tfmot quantize_apply on the layers it supports (8-bit weights per channel, 8-bit activations), fine-tuned "
            f"{epochs} epoch(s) from lr {lr:g} (cosine decay) on the train split, then TFLite "
            "full-integer INT8 with int8 input and output, run by LiteRT with XNNPACK."
        )
        notes += layer_support.left_out_sentence(left_float, "float in quantization-aware training")
        if config.epochs < 1:
            notes += " epochs=0 was raised to 1: an untrained quantize_model scores near chance."
        try:
            output = int8_output(
                model,
                dataclasses.replace(ctx, reporter=ctx.reporter.sub(0.8, 1.0)),
                ctx.work_dir / f"{self.name}.tflite",
                CALIBRATION_SAMPLES,
                notes=notes,
                seed=config.seed,
            )
        except TechniqueFailed as exc:
            raise TechniqueFailed(
                f"The quantization-aware model trained, but the TFLite converter could not turn it into INT8 ({exc}). "
                "ptq_int8 quantizes the same model without tfmot's fake-quantization."
            ) from exc
        return dataclasses.replace(output, model=source)  # same graph and FLOPs; profiled without fake-quant nodes
