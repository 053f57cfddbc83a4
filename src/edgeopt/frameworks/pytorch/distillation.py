"""Knowledge distillation: a half-width student cut out of the teacher itself, trained to match its soft labels.

The student is the teacher with ``1 - width_ratio`` of its channels removed by the same structural-pruning function
as ``prune_structured``, so any architecture torch-pruning can trace gets a student, none is written by hand, and the
student starts from the teacher's strongest channels rather than from random weights.
"""

from __future__ import annotations

import copy
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from edgeopt.frameworks.pytorch.layout import example_input
from edgeopt.frameworks.pytorch.pruning import (
    acceptance_floor,
    export_fp32,
    prune_channels,
    prune_scored,
    recalibrate_batch_norm,
    removes_channels,
    scoring_images,
    short_recovery,
    trainable_copy,
)
from edgeopt.frameworks.pytorch.training import LossFn, fine_tune
from edgeopt.strength_search import KNOBS, Candidate, recovery_subset, search_note
from edgeopt.techniques import DistillationConfig, TechniqueConfig, TechniqueContext, TechniqueOutput


def distillation_loss(teacher: nn.Module, temperature: float, alpha: float) -> LossFn:
    """``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)``, teacher frozen in eval mode.

    The ``T^2`` keeps the soft term's gradients on the scale of the hard term's whatever the temperature
    (Hinton et al., 2015).
    """
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)

    def loss(student_logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = teacher(x)
        soft = F.kl_div(
            F.log_softmax(student_logits / temperature, dim=1),
            F.log_softmax(teacher_logits / temperature, dim=1),
            reduction="batchmean",
            log_target=True,
        )
        return alpha * temperature**2 * soft + (1.0 - alpha) * F.cross_entropy(student_logits, y)

    return loss


def _unfrozen_copy(teacher: nn.Module) -> nn.Module:
    """The student's starting point: a copy whose weights train (the teacher's are frozen by the loss).

    torch-pruning leaves frozen parameters alone, so the copy is unfrozen before its channels are removed.
    """
    student = copy.deepcopy(teacher)
    for parameter in student.parameters():
        parameter.requires_grad_(True)
    return student


class Distillation:
    name: ClassVar[str] = "distillation"
    searches_strength: ClassVar[bool] = True

    def apply(self, ctx: TechniqueContext, config: TechniqueConfig) -> TechniqueOutput:
        from edgeopt.frameworks.pytorch.search import choose_strength, finish_record

        assert isinstance(config, DistillationConfig)
        teacher = trainable_copy(ctx.model, self.name).eval()
        example = example_input(ctx.data.image_shape)
        loss = distillation_loss(teacher, config.temperature, config.alpha)
        search_reporter = ctx.reporter.sub(0.0, 0.4)
        recovery = recovery_subset(ctx.data, ctx.seed, ctx.search.recovery_images) if ctx.search else ctx.data

        floor = acceptance_floor(ctx, teacher)

        def evaluate(width: float) -> Candidate:
            recover = short_recovery(ctx, learning_rate=config.learning_rate, batch_size=config.batch_size,
                                     reporter=search_reporter, stage=f"Searching the strength: short distillation "
                                     f"at {width:.0%} width", loss_fn=loss)  # fmt: skip
            chosen = prune_scored(lambda: _unfrozen_copy(teacher), example, 1.0 - width, self.name, recovery.x_train,
                                  scoring_images(ctx), recover, floor)  # fmt: skip
            summary = chosen.summary
            return Candidate(
                val_accuracy=chosen.accuracy,
                params=summary.params_after,
                flops=2 * summary.macs_after,
                size_ratio=summary.params_before / max(1, summary.params_after),
            )

        ladder = [w for w in KNOBS[self.name].ladder if removes_channels(teacher, 1.0 - w)]
        width, record = choose_strength(
            ctx, self.name, config.width_ratio, teacher, evaluate, search_reporter, ladder=ladder
        )
        reporter = ctx.reporter.sub(0.4 if record else 0.0, 1.0)
        reporter.stage(f"Building the student ({width:.0%} of the teacher's channels)", 0.02)
        recover = short_recovery(ctx, learning_rate=config.learning_rate, batch_size=config.batch_size,
                                 reporter=reporter.sub(0.02, 0.05), stage="Comparing two ways to build the student",
                                 loss_fn=loss)  # fmt: skip
        chosen = prune_scored(lambda: _unfrozen_copy(teacher), example, 1.0 - width, self.name, ctx.data.x_train,
                              scoring_images(ctx), recover, floor)  # fmt: skip
        student = _unfrozen_copy(teacher)  # the chosen way again, untrained: the distillation starts from here
        summary = prune_channels(student, example, 1.0 - width, self.name, allocation=chosen.summary.allocation)
        recalibrate_batch_norm(student, ctx.data.x_train)
        fine_tune(
            student,
            ctx.data,
            epochs=config.epochs,
            lr=config.learning_rate,
            batch_size=config.batch_size,
            reporter=reporter.sub(0.05, 0.8),
            stage="Training the student on the teacher's soft labels",
            loss_fn=loss,
            seed=ctx.seed,
        )
        finish_record(record, student, ctx)
        pte, pt2 = export_fp32(student, ctx, self.name, reporter.sub(0.8, 1.0))
        return TechniqueOutput(
            artifact=pte,
            precision="fp32",
            model=student,
            formats={"pt2": pt2},
            search=record,
            notes=(
                (search_note(record) + " " if record else "")
                + f"Student = the teacher with {1 - width:.0%} of its channels removed structurally, "
                f"{summary.how()} ({summary.describe()}), trained {config.epochs} epoch(s) on the "
                f"train split with KL divergence at T={config.temperature:g} (weight {config.alpha:g}) plus "
                f"cross-entropy (weight {1 - config.alpha:g})."
            ),
        )
