"""distillation for Keras: the teacher's knowledge distilled into its own structurally pruned, narrower copy.

The student starts as the teacher with ``1 - width_ratio`` of its prunable channels removed (``filter_pruning``,
allocated across layers by LAMP-normalised filter norms, so the width is an overall share, not each layer's), so it
already knows something; a Keras distiller (a ``Model`` with its own ``train_step``) then trains it on
``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(labels, student)``. The teacher is frozen: it runs
in inference mode and its logits do not change during training, so they are computed once for the train split
rather than once per batch per epoch (same numbers, a third less compute).
"""

from __future__ import annotations  # noqa: I001 - keras_compat must run before TensorFlow loads

from typing import Any, ClassVar

from edgeopt.frameworks.tensorflow import keras_compat  # noqa: F401 - sets TF_USE_LEGACY_KERAS first

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from edgeopt.frameworks.tensorflow.convert import keras_download_note, save_keras, to_tflite  # noqa: E402
from edgeopt.frameworks.tensorflow.filter_pruning import (  # noqa: E402
    acceptance_floor,
    allocation_phrase,
    kept_whole_note,
    protected_note,
    prune_scored,
    scoring_images,
    removes_filters,
)
from edgeopt.frameworks.tensorflow.training import (  # noqa: E402
    outputs_probabilities,
    progress_callback,
    recalibrate_batchnorm,
)
from edgeopt.errors import Unsupported  # noqa: E402
from edgeopt.frameworks.tensorflow.failures import readable_failures  # noqa: E402
from edgeopt.progress import StageReporter  # noqa: E402
from edgeopt.strength_search import KNOBS, Candidate, recovery_subset, search_note  # noqa: E402
from edgeopt.techniques import DistillationConfig, TechniqueConfig, TechniqueContext, TechniqueOutput  # noqa: E402

_EPS = 1e-7


def _logits(outputs: tf.Tensor, probabilities: bool) -> tf.Tensor:
    """Logits up to a constant (all a softmax needs) for models that end in a softmax."""
    return tf.math.log(tf.clip_by_value(outputs, _EPS, 1.0)) if probabilities else outputs


class Distiller(tf_keras.Model):
    """Trains ``student`` on soft teacher targets plus the labels; ``fit`` takes ``y=(labels, teacher_logits)``."""

    def __init__(self, student: Any, *, temperature: float, alpha: float, probabilities: bool) -> None:
        super().__init__()
        self.student = student
        self.temperature = temperature
        self.alpha = alpha
        self.probabilities = probabilities
        self.loss_tracker = tf_keras.metrics.Mean(name="loss")
        self.accuracy = tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def metrics(self) -> list[Any]:
        return [self.loss_tracker, self.accuracy]

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.student(x, training=training)

    def distillation_loss(self, labels: tf.Tensor, teacher_logits: tf.Tensor, student_logits: tf.Tensor) -> tf.Tensor:
        t = self.temperature
        soft_targets = tf.nn.softmax(teacher_logits / t)
        kl = tf.reduce_sum(
            soft_targets * (tf.math.log(soft_targets + _EPS) - tf.nn.log_softmax(student_logits / t)), axis=-1
        )
        ce = tf_keras.losses.sparse_categorical_crossentropy(labels, student_logits, from_logits=True)
        return tf.reduce_mean(self.alpha * t * t * kl + (1.0 - self.alpha) * ce)

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        x, (labels, teacher_logits) = data
        with tf.GradientTape() as tape:
            student_logits = _logits(self.student(x, training=True), self.probabilities)
            loss = self.distillation_loss(labels, teacher_logits, student_logits)
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        self.loss_tracker.update_state(loss)
        self.accuracy.update_state(labels, student_logits)
        return {metric.name: metric.result() for metric in self.metrics}


def teacher_logits(teacher: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The frozen teacher's logits for every train image (inference mode: BatchNorm statistics, no dropout)."""
    probabilities = outputs_probabilities(teacher)
    out = teacher.predict(x, batch_size=batch_size, verbose=0)
    return np.asarray(_logits(tf.constant(out), probabilities), dtype=np.float32)


def distill(
    student: Any, x: np.ndarray, y: np.ndarray, targets: np.ndarray, config: DistillationConfig, epochs: int,
    reporter: StageReporter, stage: str,
) -> None:  # fmt: skip
    """Train ``student`` in place on the teacher's soft ``targets`` (logits for ``x``) plus the labels ``y``."""
    if epochs <= 0:
        return
    tf_keras.utils.set_random_seed(config.seed)
    distiller = Distiller(
        student, temperature=config.temperature, alpha=config.alpha, probabilities=outputs_probabilities(student)
    )
    distiller.compile(optimizer=tf_keras.optimizers.Adam(learning_rate=config.learning_rate))
    steps = int(np.ceil(len(x) / config.batch_size))
    distiller.fit(
        x,
        (y, targets),
        epochs=epochs,
        batch_size=config.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[progress_callback(tf_keras, reporter, stage, epochs, steps)],
    )


class Distillation:
    """The student's width is searched for the accuracy budget unless the config sets ``width_ratio``."""

    name: ClassVar[str] = "distillation"
    searches_strength: ClassVar[bool] = True

    @readable_failures
    def apply(self, ctx: TechniqueContext, config: TechniqueConfig) -> TechniqueOutput:
        from edgeopt.estimate import profile_keras
        from edgeopt.frameworks.tensorflow.search import choose_strength, finish_record, val_accuracy

        if not isinstance(config, DistillationConfig):
            config = DistillationConfig.model_validate(config.model_dump())
        if not getattr(ctx.model, "transformable", True):
            raise Unsupported(ctx.model.not_transformable_reason or "This model can be evaluated but not transformed.")
        teacher = ctx.model.model
        search_reporter = ctx.reporter.sub(0.0, 0.4)
        search_reporter.stage("Computing the teacher's soft targets on the train split", 0.0)
        targets = teacher_logits(teacher, ctx.data.x_train)

        if ctx.search is not None:
            recovery = recovery_subset(ctx.data, ctx.seed, ctx.search.recovery_images)
            recovery_targets = teacher_logits(teacher, recovery.x_train)  # the few images a candidate trains on
        params_before = int(teacher.count_params())
        floor = acceptance_floor(ctx, teacher)

        def evaluate(width: float) -> Candidate:
            pruned = prune_scored(teacher, 1.0 - width, ctx.data.x_train, config.seed, scoring_images(ctx, config.seed),
                                  floor=floor)  # fmt: skip
            stage = f"Searching the strength: short distillation at {width:.0%} width"
            distill(pruned.model, recovery.x_train, recovery.y_train, recovery_targets, config, 1,
                    search_reporter, stage)  # fmt: skip
            recalibrate_batchnorm(pruned.model, ctx.data.x_train, config.seed)
            params = int(pruned.model.count_params())
            return Candidate(
                val_accuracy=val_accuracy(pruned.model, ctx.search),  # type: ignore[arg-type]
                params=params,
                flops=int(profile_keras(pruned.model).flops),
                size_ratio=params_before / max(1, params),
            )

        ladder = [w for w in KNOBS[self.name].ladder if removes_filters(teacher, 1.0 - w)] if ctx.search else None
        width, record = choose_strength(
            ctx, self.name, config.width_ratio, teacher, evaluate, search_reporter, ladder=ladder
        )
        reporter = ctx.reporter.sub(0.4 if record else 0.0, 1.0)
        reporter.stage(f"Building the student: the teacher with {width:.0%} of its prunable channels", 0.0)
        pruned = prune_scored(teacher, 1.0 - width, ctx.data.x_train, config.seed, scoring_images(ctx, config.seed),
                              floor=floor)  # fmt: skip
        student = pruned.model
        stage = f"Distilling into the student (T={config.temperature:g}, alpha={config.alpha:g})"
        distill(student, ctx.data.x_train, ctx.data.y_train, targets, config, config.epochs, reporter.sub(0.05, 0.9),
                stage)  # fmt: skip
        if config.epochs > 0:
            recalibrate_batchnorm(student, ctx.data.x_train, config.seed)
        finish_record(record, student, ctx)
        reporter.stage("Exporting the student to .tflite", 0.92)
        artifact = to_tflite(student, ctx.work_dir / f"{self.name}.tflite")
        keras_file = save_keras(student, ctx.work_dir / f"{self.name}.keras")
        reporter.stage("Exported", 1.0)
        notes = (search_note(record) + " " if record else "") + (
            f"Student = the teacher structurally pruned to {width:.0%} of its prunable channels, "
            f"{allocation_phrase(pruned)} ({pruned.filters_before} -> {pruned.filters_after} filters and units), "
            f"distilled for {config.epochs} "
            f"epoch(s) with a Keras distiller: {config.alpha:g} x T^2 x KL(T={config.temperature:g}) + "
            f"{1 - config.alpha:g} x cross-entropy, teacher frozen; BatchNorm statistics recalibrated on train images."
        )
        notes += protected_note(pruned) + kept_whole_note(pruned) + keras_download_note(student)
        return TechniqueOutput(
            artifact=artifact,
            precision="fp32",
            model=student,
            formats={"keras": keras_file},
            notes=notes,
            search=record,
        )
