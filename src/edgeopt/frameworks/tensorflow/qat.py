"""qat_int8 for Keras: tfmot ``quantize_model`` (fake-quant in training), a short fine-tune, then TFLite INT8.

A freshly wrapped model scores near chance until its quantizer ranges have seen a few training steps
(docs/library-notes.md), so at least one epoch of fine-tuning at a small learning rate always runs. tfmot works on
``tf_keras`` models only, and it cannot simulate quantization inside Lambda layers (their code is opaque to it):
such models are refused with a sentence, and ptq_int8 still handles them.

The layers tfmot's 8-bit registry supports are annotated with its rules. Layers it has no rule for (Multiply,
LayerScale, custom layers) keep float weights but get their output fake-quantized (:data:`OUTPUT_ONLY`); the rest
train in float: preprocessing layers (Rescaling, Normalization, Resizing), TensorFlow function calls (TFOpLambda),
models nested inside the model, and AveragePooling, whose tfmot 8-bit rule made the INT8 conversion of DenseNet121
fail. All of these are named in the notes. Grouped convolutions (RegNet) are annotated like any Conv2D; a fused swish
is split into its own layer first (:mod:`split_activations`).
A BatchNorm right after an annotated convolution is annotated too, so tfmot folds it
and fake-quantizes after it, as TFLite's fused kernel will (:func:`_folded_batch_norms` says what went wrong
without it). A fine-tune that still leaves NaN weights stops with a sentence instead of reaching the converter.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import tf_keras

from edgeopt.errors import TechniqueFailed, Unsupported
from edgeopt.frameworks.tensorflow import keras_compat, layer_support
from edgeopt.frameworks.tensorflow.failures import readable_failures
from edgeopt.frameworks.tensorflow.ptq_int8 import int8_output
from edgeopt.frameworks.tensorflow.split_activations import split_multi_op_activations
from edgeopt.frameworks.tensorflow.training import fine_tune
from edgeopt.techniques import QatInt8Config, TechniqueConfig, TechniqueContext, TechniqueOutput

CALIBRATION_SAMPLES = 256  # the converter still wants a representative dataset for the int8 input/output tensors


# Layer types tfmot registers but which must stay float (see the module docstring).
KEEP_FLOAT = frozenset({"AveragePooling1D", "AveragePooling2D", "AveragePooling3D"})
# Layers tfmot has no rule for (Multiply, custom layers, LayerScale) still get their output fake-quantized: a tensor
# with no range in a quantization-aware model is written with scale 0 by the converter, which
# XNNPACK refuses (EfficientNet's squeeze-and-excite Multiply feeding a convolution).
OUTPUT_ONLY = "tfmot has no 8-bit rule for this layer type: its weights train in float, its output is fake-quantized"
# The functions tfmot's 8-bit rule for an Activation layer knows (Default8BitActivationQuantizeConfig).
TFMOT_ACTIVATIONS = frozenset({"relu", "swish", "gelu", "relu6", "linear", "softmax", "sigmoid", "tanh"})
# TensorFlow functions called on Keras tensors (x + y): tfmot's wrapper cannot call them, so they stay float.
UNWRAPPABLE = frozenset({"TFOpLambda", "SlicingOpLambda"})
BATCH_NORMS = frozenset({"BatchNormalization", "SyncBatchNormalization"})
# Layers whose BatchNorm tfmot's layout transforms fold: the fake-quantization then sits after the BatchNorm, where
# TFLite's fused kernel quantizes, not between the two (tfmot's Conv2DBatchNormQuantize / DenseBatchNormQuantize).
FOLDS_BATCH_NORM = frozenset({"Conv2D", "DepthwiseConv2D", "Dense"})


def _inbound_layers(layer: Any) -> list[Any]:
    nodes = getattr(layer, "_inbound_nodes", [])
    if len(nodes) != 1:
        return []
    inbound = nodes[0].inbound_layers
    return list(inbound) if isinstance(inbound, list | tuple) else [inbound]


def _folded_batch_norms(model: Any, annotated: Any) -> set[str]:
    """Names of the BatchNorms tfmot will fold into the layer before them, so they must be annotated too.

    tfmot transforms only annotated layers: with a convolution annotated and its BatchNorm not, the convolution's
    raw output is fake-quantized before the BatchNorm. That output's range can be far from the BatchNorm's (a
    convolution after Rescaling(1/255) on [0, 1] images gives values under 0.02, all rounded to zero in the initial
    [-6, 6] range); the fine-tune then produced NaN weights, and the converter a filter zero point of -128 that
    TFLite refuses (RegNetX002). An annotated BatchNorm that no transform folds makes quantize_apply fail, so only
    those matching tfmot's patterns are annotated: a BatchNorm whose only input is an annotated Conv2D, DepthwiseConv2D
    or Dense with a linear activation, used by nothing else.
    """
    output_layers = {id(tensor._keras_history.layer) for tensor in model.outputs}  # noqa: SLF001
    folded = set()
    for layer in model.layers:
        if type(layer).__name__ not in BATCH_NORMS:
            continue
        producers = _inbound_layers(layer)
        if len(producers) != 1:
            continue
        producer = producers[0]
        if (
            type(producer).__name__ in FOLDS_BATCH_NORM
            and annotated(producer)
            and getattr(producer.activation, "__name__", "") == "linear"
            and len(producer._outbound_nodes) == 1  # noqa: SLF001 - Keras keeps the graph there
            and len(producer._inbound_nodes) == 1  # noqa: SLF001
            and id(producer) not in output_layers
        ):
            folded.add(layer.name)
    return folded


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
        return OUTPUT_ONLY
    if name == "Activation" and getattr(layer.activation, "__name__", None) not in TFMOT_ACTIVATIONS:
        return OUTPUT_ONLY  # tfmot's Activation rule knows these functions only; it raised on hard_silu
    return None


def quantize_supported_layers(model: Any) -> tuple[Any, dict[str, list[Any]]]:
    """tfmot fake-quantization on every layer its registry supports; the others stay float.

    ``model`` must be a Functional or Sequential tf_keras model that nothing else uses (its layers are reused).
    Returns the quantization-aware model and the layers left float, by reason.
    """
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_configs,
        default_8bit_quantize_registry,
    )

    model, _ = split_multi_op_activations(model, layer_support.custom_objects(model))
    registry = default_8bit_quantize_registry.Default8BitQuantizeRegistry()
    left: dict[str, list[Any]] = {}
    annotated = 0
    folded = _folded_batch_norms(model, lambda layer: _float_reason(layer, registry) is None)

    def annotate(layer: Any) -> Any:
        nonlocal annotated
        if type(layer).__name__ in BATCH_NORMS:
            if layer.name in folded:
                return tfmot.quantization.keras.quantize_annotate_layer(layer)
            return layer  # float; the converter folds or calibrates it
        reason = _float_reason(layer, registry)
        if reason == OUTPUT_ONLY and type(layer).__name__ in UNWRAPPABLE:
            reason = "tfmot has no 8-bit rule for this layer type and cannot wrap a TensorFlow function call"
        if reason == OUTPUT_ONLY and type(layer).__name__ not in layer_support.PLUMBING:
            left.setdefault(reason, []).append(layer)
            return tfmot.quantization.keras.quantize_annotate_layer(
                layer, default_8bit_quantize_configs.Default8BitOutputQuantizeConfig()
            )
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


def _refuse_non_finite_weights(model: Any) -> None:
    """Stop with a sentence when fine-tuning diverged: NaN weights convert to parameters LiteRT refuses."""
    import numpy as np

    broken = [w.name.split("/")[0] for w in model.weights if not np.isfinite(w.numpy()).all()]
    if broken:
        raise TechniqueFailed(
            f"Quantization-aware fine-tuning diverged: {len(broken)} weight tensor(s) became NaN or infinite (first in "
            f"layer {broken[0]}). Try a lower learning rate for qat_int8, or use ptq_int8, which needs no training."
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
        _refuse_non_finite_weights(model)
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
