"""prune_unstructured for Keras: tfmot ``prune_low_magnitude`` to a constant sparsity, fine-tune, ``strip_pruning``.

The zeros stay inside ordinary dense kernels: the ``.tflite`` keeps its size and its latency (no runtime here skips
zeros), and only the gzip-compressed file shrinks. The notes say so with the measured sizes. The mask is recomputed
every step (``frequency=1``): with tfmot's default of 100 steps a short fine-tune never reaches a pruning step and
nothing is pruned.
"""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgeopt.data.dataset import Dataset
from edgeopt.errors import Unsupported
from edgeopt.frameworks.tensorflow import keras_compat, layer_support
from edgeopt.frameworks.tensorflow.convert import keras_download_note, save_keras, to_tflite
from edgeopt.frameworks.tensorflow.failures import readable_failures
from edgeopt.frameworks.tensorflow.training import fine_tune, recalibrate_batchnorm
from edgeopt.progress import StageReporter
from edgeopt.strength_search import Candidate, recovery_subset, search_note
from edgeopt.techniques import PruneUnstructuredConfig, TechniqueConfig, TechniqueContext, TechniqueOutput


def kernel_sparsity(model: Any) -> float:
    """Fraction of exact zeros in the convolution and dense kernels (what magnitude pruning targets)."""
    kernels = [
        np.asarray(weight)
        for layer in model.layers
        for weight in getattr(layer, "weights", [])
        if "kernel" in weight.name and len(weight.shape) >= 2
    ]
    total = sum(k.size for k in kernels)
    return float(sum(int(np.count_nonzero(k == 0)) for k in kernels) / total) if total else 0.0


def unpruned_kernels(model: Any) -> dict[str, int]:
    """Kernel weights per layer type that hold no zeros at all (tfmot has no pruning rule for, e.g., depthwise)."""
    counts: dict[str, int] = {}
    for layer in model.layers:
        for weight in getattr(layer, "weights", []):
            if "kernel" in weight.name and len(weight.shape) >= 2 and not np.any(np.asarray(weight) == 0):
                kind = type(layer).__name__
                counts[kind] = counts.get(kind, 0) + int(np.prod(weight.shape))
    return counts


def _gzip_size(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), 9))


def _prunable(layer: Any) -> bool:
    from tensorflow_model_optimization.python.core.sparsity.keras import prunable_layer, prune_registry

    return isinstance(layer, prunable_layer.PrunableLayer) or prune_registry.PruneRegistry.supports(layer)


def _wrap(model: Any, sparsity: float) -> tuple[Any, dict[str, list[Any]]]:
    """``prune_low_magnitude`` on every layer tfmot can prune (nested models too); the rest stay as they are.

    Returns the wrapped model and the layers holding weights that were left unpruned, by reason.
    """
    import tensorflow_model_optimization as tfmot
    import tf_keras

    schedule = tfmot.sparsity.keras.ConstantSparsity(sparsity, begin_step=0, frequency=1)
    left: dict[str, list[Any]] = {}

    def wrap(layer: Any) -> Any:
        if layer_support.is_nested_model(layer):
            return tf_keras.models.clone_model(layer, clone_function=wrap)
        if not layer.weights:
            return layer
        if type(layer).__name__ in layer_support.PREPROCESSING:
            left.setdefault("input preprocessing, never pruned", []).append(layer)
            return layer
        if not _prunable(layer):
            left.setdefault("tfmot has no pruning rule for this layer type", []).append(layer)
            return layer
        return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)

    try:
        wrapped = tf_keras.models.clone_model(model, clone_function=wrap)
    except ValueError as exc:
        raise Unsupported(
            "TensorFlow Model Optimization cannot prune this model: a layer could not be wrapped for pruning "
            f"({str(exc).splitlines()[0][:200]}). Use built-in Keras layers."
        ) from exc
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

    if not any(isinstance(layer, PruneLowMagnitude) for layer in layer_support.all_layers(wrapped)):
        raise Unsupported(
            "prune_unstructured found no layer TensorFlow Model Optimization can prune in this model"
            + layer_support.left_out_sentence(left, "unpruned").rstrip(".")
            + "."
        )
    return wrapped, left


def _prune_and_tune(
    source: Any,
    sparsity: float,
    data: Dataset,
    config: PruneUnstructuredConfig,
    epochs: int,
    reporter: StageReporter,
    stage: str,
) -> tuple[Any, dict[str, list[Any]]]:
    """A pruned copy of ``source`` at ``sparsity``, trained ``epochs`` with the masks, wrappers stripped."""
    import tensorflow_model_optimization as tfmot

    wrapped, left = _wrap(keras_compat.clone_tf_keras(source), sparsity)
    # Masks are applied by training steps; with epochs=0 one batch at learning rate ~0 sets them.
    lr = config.learning_rate_for("tensorflow")
    if epochs == 0:
        one_batch = slice(0, config.batch_size)
        data = dataclasses.replace(data, x_train=data.x_train[one_batch], y_train=data.y_train[one_batch])
        epochs, lr = 1, 1e-12
    fine_tune(
        wrapped,
        data,
        epochs=epochs,
        lr=lr,
        batch_size=config.batch_size,
        reporter=reporter,
        stage=stage,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
        seed=config.seed,
        cosine=True,
    )
    pruned = tfmot.sparsity.keras.strip_pruning(wrapped)
    recalibrate_batchnorm(pruned, data.x_train, config.seed)  # zeroed weights shift what each BatchNorm sees
    return pruned, left


class PruneUnstructured:
    """tfmot magnitude pruning; the sparsity is searched for the accuracy budget unless the config sets it."""

    name: ClassVar[str] = "prune_unstructured"
    searches_strength: ClassVar[bool] = True

    @readable_failures
    def apply(self, ctx: TechniqueContext, config: TechniqueConfig) -> TechniqueOutput:
        from edgeopt.frameworks.tensorflow.search import choose_strength, finish_record, val_accuracy

        if not isinstance(config, PruneUnstructuredConfig):
            config = PruneUnstructuredConfig.model_validate(config.model_dump())
        source = keras_compat.require_tf_keras(ctx.model.model, self.name)
        search_reporter = ctx.reporter.sub(0.0, 0.4)
        recovery = recovery_subset(ctx.data, ctx.seed, ctx.search.recovery_images) if ctx.search else ctx.data

        def evaluate(sparsity: float) -> Candidate:
            stage = f"Searching the strength: short recovery at {sparsity:.0%} sparsity"
            model, _ = _prune_and_tune(source, sparsity, recovery, config, 1, search_reporter, stage)
            return Candidate(val_accuracy=val_accuracy(model, ctx.search))  # type: ignore[arg-type]

        sparsity, record = choose_strength(ctx, self.name, config.sparsity, source, evaluate, search_reporter)
        rest = ctx.reporter.sub(0.4 if record else 0.0, 1.0)
        rest.stage(f"Wrapping layers for {sparsity:.0%} magnitude pruning", 0.02)
        pruned, left = _prune_and_tune(
            source, sparsity, ctx.data, config, config.epochs, rest.sub(0.05, 0.85), "Pruning and fine-tuning"
        )
        finish_record(record, pruned, ctx)
        measured = kernel_sparsity(pruned)
        rest.stage("Converting to .tflite", 0.9)
        artifact = to_tflite(pruned, ctx.work_dir / f"{self.name}.tflite")
        keras_file = save_keras(pruned, ctx.work_dir / f"{self.name}.keras")
        dense, packed = artifact.stat().st_size, _gzip_size(artifact)
        rest.stage("Pruned", 1.0)
        tuned = (
            f"fine-tuned {config.epochs} epoch(s) from lr {config.learning_rate_for('tensorflow'):g} (cosine decay)"
            if config.epochs > 0
            else "not fine-tuned (epochs=0)"
        )
        notes = (search_note(record) + " " if record else "") + (
            f"tfmot prune_low_magnitude, constant {sparsity:.0%} per layer, {tuned}, strip_pruning: "
            f"{measured:.1%} of conv/dense kernel weights are zero. The FP32 .tflite stays dense ({dense:,} bytes) and "
            f"runs no faster; gzip -9 makes it {packed:,} bytes."
        )
        notes += layer_support.left_out_sentence(left, "unpruned") + keras_download_note(pruned)
        untouched = unpruned_kernels(pruned)
        if untouched:
            listed = ", ".join(f"{kind} ({count:,} weights)" for kind, count in sorted(untouched.items()))
            notes += f" Not pruned by tfmot, so the overall sparsity is below {sparsity:.0%}: {listed}."
        return TechniqueOutput(
            artifact=artifact,
            precision="fp32",
            model=pruned,
            formats={"keras": keras_file},
            notes=notes,
            search=record,
            extra={"kernel_sparsity": measured, "dense_bytes": dense, "gzip_bytes": packed},
        )
