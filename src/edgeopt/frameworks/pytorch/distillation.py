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
from edgeopt.frameworks.pytorch.pruning import export_fp32, prune_channels, trainable_copy
from edgeopt.frameworks.pytorch.training import LossFn, fine_tune
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


class Distillation:
    name: ClassVar[str] = "distillation"
    framework: ClassVar[str] = "pytorch"
    config_class: ClassVar[type[TechniqueConfig]] = DistillationConfig

    def apply(self, ctx: TechniqueContext, config: TechniqueConfig) -> TechniqueOutput:
        assert isinstance(config, DistillationConfig)
        reporter = ctx.reporter
        teacher = trainable_copy(ctx.model, self.name).eval()
        reporter.stage(f"Building the student ({config.width_ratio:.0%} of the teacher's channels)", 0.02)
        student = copy.deepcopy(teacher)
        summary = prune_channels(
            student, example_input(ctx.data.image_shape), ratio=1.0 - config.width_ratio, technique=self.name
        )
        fine_tune(
            student,
            ctx.data,
            epochs=config.epochs,
            lr=config.learning_rate,
            batch_size=config.batch_size,
            reporter=reporter.sub(0.05, 0.8),
            stage="Training the student on the teacher's soft labels",
            loss_fn=distillation_loss(teacher, config.temperature, config.alpha),
            seed=ctx.seed,
        )
        pte, pt2 = export_fp32(student, ctx, self.name, reporter.sub(0.8, 1.0))
        return TechniqueOutput(
            artifact=pte,
            precision="fp32",
            model=student,
            formats={"pt2": pt2},
            notes=(
                f"Student = the teacher with {1 - config.width_ratio:.0%} of its channels removed structurally "
                f"({summary.describe()}), trained {config.epochs} epoch(s) on the "
                f"train split with KL divergence at T={config.temperature:g} (weight {config.alpha:g}) plus "
                f"cross-entropy (weight {1 - config.alpha:g})."
            ),
        )
