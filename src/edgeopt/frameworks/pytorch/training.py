"""The one fine-tuning loop shared by QAT, pruning, distillation and the demo model.

It trains on the train split only (the test split is what every technique is scored on) and reports progress
often enough for the ETA shown to the user to move smoothly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from edgeopt.data.dataset import Dataset
from edgeopt.frameworks.pytorch.layout import iterate_batches
from edgeopt.progress import StageReporter

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, x, y) -> scalar loss

REPORT_EVERY_BATCHES = 5


def cross_entropy(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits, y)


def set_train_mode(module: nn.Module, training: bool) -> None:
    """``train()``/``eval()`` that also works for the GraphModules torch.export and PT2E produce.

    Those refuse ``.train()`` (NotImplementedError); torchao's helpers switch the dropout and batch-norm ops inside
    the graph instead.
    """
    try:
        module.train(training)
    except NotImplementedError:
        from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

        (move_exported_model_to_train if training else move_exported_model_to_eval)(module)  # type: ignore[arg-type]


def fine_tune(
    module: nn.Module,
    data: Dataset,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    reporter: StageReporter,
    stage: str = "Fine-tuning",
    loss_fn: LossFn | None = None,
    seed: int = 0,
) -> nn.Module:
    """Adam with cosine learning-rate decay on the train split; returns ``module`` (trained in place) in eval mode.

    Deterministic for a given seed: the shuffling order and torch's RNG (dropout) are both seeded.
    """
    loss_fn = loss_fn or cross_entropy
    torch.manual_seed(seed)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    batches_per_epoch = max(1, -(-len(data.x_train) // batch_size))
    total = max(1, epochs * batches_per_epoch)
    # Cosine decay to zero: the last steps are small, so batch-norm statistics and weights settle together and the
    # eval accuracy does not depend on where the last noisy step happened to land.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    done = 0
    for epoch in range(epochs):
        set_train_mode(module, True)
        name = f"{stage} (epoch {epoch + 1} of {epochs})"
        batches = iterate_batches(data.x_train, data.y_train, batch_size=batch_size, shuffle=True, seed=seed + epoch)
        for x, y in batches:
            optimizer.zero_grad(set_to_none=True)
            logits = module(x)
            loss = loss_fn(logits, x, y)  # type: ignore[arg-type]
            loss.backward()
            optimizer.step()
            schedule.step()
            done += 1
            if done % REPORT_EVERY_BATCHES == 0 or done == total:
                reporter.stage(name, done / total, loss=float(loss.detach()))
    set_train_mode(module, False)
    return module


@torch.no_grad()
def accuracy(module: nn.Module, images, labels, batch_size: int = 256) -> float:  # type: ignore[no-untyped-def]
    """Top-1 accuracy of an eager module on NHWC numpy images (for tests and sanity checks, not the report)."""
    set_train_mode(module, False)
    correct = 0
    for x, y in iterate_batches(images, labels, batch_size=batch_size):
        correct += int((module(x).argmax(dim=1) == y).sum())
    return correct / max(1, len(images))
