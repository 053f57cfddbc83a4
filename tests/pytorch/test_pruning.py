"""Pruning and distillation building blocks on real exported graphs: what the cross-technique template cannot see.

The template (tests/pytorch/test_techniques_template.py) checks each technique's artifact end to end; these tests
pin down the parts that make it work on any architecture: turning a torch.export program back into real layers,
torch-pruning on residual and depthwise graphs, the distillation loss, and the sentences users get for models a
technique cannot handle.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from edgeopt.errors import TechniqueFailed, Unsupported
from edgeopt.frameworks import LoadedModel
from edgeopt.frameworks.pytorch.distillation import distillation_loss
from edgeopt.frameworks.pytorch.export import export_program
from edgeopt.frameworks.pytorch.graph_modules import editable_module
from edgeopt.frameworks.pytorch.pruning import (
    PruneStructured,
    PruneUnstructured,
    classifier_layer,
    prunable_weights,
    prune_channels,
    ranked_weights,
    recalibrate_batch_norm,
    trainable_copy,
    zero_fraction,
)
from edgeopt.progress import silent_reporter
from edgeopt.techniques import PruneStructuredConfig, PruneUnstructuredConfig, TechniqueContext


class ResidualDepthwiseNet(nn.Module):
    """A residual add, a depthwise convolution and a ``view(N, -1)``: the shapes pruning must keep consistent."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.branch = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.depthwise = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16), nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Linear(16 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.branch(x))
        x = self.pool(self.depthwise(x))
        return self.head(x.view(x.size(0), -1))


class DataDependent(nn.Module):
    """Python control flow on tensor values: eager PyTorch runs it, torch.export cannot capture it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if x.mean() > 0:
            x = -x
        return self.head(x.mean(dim=(2, 3)))


def _trained_statistics(module: nn.Module) -> nn.Module:
    """Gives batch norms non-trivial running statistics, so a copy that drops them would be caught."""
    module.train()
    with torch.no_grad():
        for _ in range(3):
            module(torch.rand(16, 1, 16, 16) * 3)
    return module.eval()


@pytest.fixture(scope="module")
def residual_program() -> tuple[nn.Module, torch.export.ExportedProgram]:
    torch.manual_seed(0)
    eager = _trained_statistics(ResidualDepthwiseNet())
    return eager, export_program(eager, torch.rand(1, 1, 16, 16))


@pytest.mark.parametrize("form", ["program", "graph_module"])
def test_exported_program_becomes_real_layers_with_the_same_outputs(residual_program, form: str) -> None:
    """Both forms a loaded .pt2 can take: the ExportedProgram, or the GraphModule its ``module()`` returns."""
    eager, program = residual_program
    editable = editable_module(program if form == "program" else program.module()).eval()
    layer_types = {type(m) for m in editable.modules()}
    assert {nn.Conv2d, nn.BatchNorm2d, nn.Linear} <= layer_types
    x = torch.rand(5, 1, 16, 16)  # a batch size the export never saw
    torch.testing.assert_close(editable(x), eager(x), atol=1e-5, rtol=1e-5)


def test_training_the_copy_updates_batch_statistics_and_leaves_the_program_alone(residual_program) -> None:
    _, program = residual_program
    before = {k: v.clone() for k, v in program.state_dict.items()}
    editable = editable_module(program)
    bn = next(m for m in editable.modules() if isinstance(m, nn.BatchNorm2d))
    mean_before = bn.running_mean.clone()
    editable.train()
    loss = editable(torch.rand(8, 1, 16, 16)).sum()
    loss.backward()
    assert not torch.equal(bn.running_mean, mean_before), "batch norm must learn statistics in train mode"
    assert all(p.grad is not None for p in editable.parameters())
    for name, value in program.state_dict.items():
        assert torch.equal(value, before[name]), f"{name} of the user's program changed"


def test_channels_are_removed_consistently_through_residual_and_depthwise(residual_program) -> None:
    _, program = residual_program
    module = editable_module(program)
    params_before = sum(p.numel() for p in module.parameters())
    summary = prune_channels(module, torch.rand(1, 1, 16, 16), ratio=0.5)
    params_after = sum(p.numel() for p in module.parameters())
    assert params_after < 0.45 * params_before
    assert (summary.params_before, summary.params_after) == (params_before, params_after)
    assert summary.macs_after < 0.35 * summary.macs_before
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 8, 8]
    assert convs[-1].groups == 8, "the depthwise convolution keeps one group per remaining channel"
    assert classifier_layer(module).out_features == 10
    assert module(torch.rand(4, 1, 16, 16)).shape == (4, 10)
    export_program(module, torch.rand(1, 1, 16, 16))  # still a valid graph for the board runtime


def test_global_pruning_leaves_depthwise_kernels_dense_and_still_zeroes_half_of_all_weights() -> None:
    from torch.nn.utils import prune

    torch.manual_seed(0)
    model = ResidualDepthwiseNet()
    weights = prunable_weights(model)
    with torch.no_grad():  # depthwise kernels trained small: ranked with the rest, every one would go
        model.depthwise[0].weight.mul_(1e-3)
    ranked, amount = ranked_weights(weights, 0.5)
    assert (model.depthwise[0], "weight") not in ranked and len(ranked) == len(weights) - 1
    assert amount > 0.5
    prune.global_unstructured(ranked, pruning_method=prune.L1Unstructured, amount=amount)
    assert int((model.depthwise[0].weight == 0).sum()) == 0
    assert zero_fraction(weights) == pytest.approx(0.5, abs=0.005)


def test_resnet18_exported_program_prunes_to_a_quarter() -> None:
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    example = torch.rand(1, 3, 32, 32)
    module = editable_module(export_program(model, example))
    prune_channels(module, example, ratio=0.5)
    params = sum(p.numel() for p in module.parameters())
    assert params < 0.3 * sum(p.numel() for p in model.parameters())
    assert module(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_distillation_loss_is_zero_for_a_perfect_student_and_pulls_towards_the_teacher() -> None:
    torch.manual_seed(0)
    teacher = nn.Linear(4, 3)
    x, y = torch.rand(6, 4), torch.randint(0, 3, (6,))
    pure_kl = distillation_loss(teacher, temperature=4.0, alpha=1.0)
    assert float(pure_kl(teacher(x).detach(), x, y)) == pytest.approx(0.0, abs=1e-6)
    student_logits = torch.zeros(6, 3, requires_grad=True)
    pure_kl(student_logits, x, y).backward()
    assert student_logits.grad is not None and student_logits.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in teacher.parameters()), "the teacher is frozen"
    hard_only = distillation_loss(copy.deepcopy(teacher), temperature=4.0, alpha=0.0)
    expected = nn.functional.cross_entropy(student_logits, y)
    assert float(hard_only(student_logits, x, y).detach()) == pytest.approx(float(expected.detach()))


def _context(model: object, digits32, tmp_path: Path, technique: str) -> TechniqueContext:
    return TechniqueContext(model=model, data=digits32, work_dir=tmp_path, reporter=silent_reporter(technique))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")  # a TorchScript upload, on purpose
def test_torchscript_is_skipped_with_what_to_upload_instead(digits32, tmp_path: Path) -> None:
    scripted = torch.jit.script(ResidualDepthwiseNet())
    loaded = LoadedModel(
        framework="pytorch",
        model=scripted,
        kind="torchscript",
        input_shape=(16, 16, 1),
        num_classes=10,
        transformable=False,
        not_transformable_reason="TorchScript files hold a compiled graph that cannot be edited.",
    )
    with pytest.raises(Unsupported, match=r"prune_structured.*edited.*Upload a \.pt2"):
        trainable_copy(loaded, "prune_structured")
    with pytest.raises(Unsupported, match="prune_unstructured"):
        PruneUnstructured().apply(_context(loaded, digits32, tmp_path, "prune_unstructured"), PruneUnstructuredConfig())


def test_data_dependent_control_flow_fails_with_a_readable_sentence(digits32, tmp_path: Path) -> None:
    loaded = LoadedModel(
        framework="pytorch", model=DataDependent(), kind="state_dict", input_shape=(32, 32, 1), num_classes=10
    )
    ctx = _context(loaded, digits32, tmp_path, "prune_structured")
    with pytest.raises(TechniqueFailed, match=r"cannot be captured by torch\.export.*Upload"):
        PruneStructured().apply(ctx, PruneStructuredConfig(epochs=0))
    assert not (tmp_path / "prune_structured.pte").exists()


class ShuffleNet(nn.Module):
    """ShuffleNet V2's channel shuffle in miniature: a stem whose channels are regrouped, then a plain block."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        b, c, h, w = y.shape
        y = y.view(b, 2, c // 2, h, w).transpose(1, 2).contiguous().view(b, c, h, w)
        return self.head(self.block(y).mean(dim=(2, 3)))


def test_a_batch_1_export_with_a_channel_shuffle_trains_on_batches_and_prunes_around_the_shuffle() -> None:
    torch.manual_seed(0)
    eager = _trained_statistics(ShuffleNet())
    program = torch.export.export(eager, (torch.rand(1, 1, 16, 16),))  # the usual way: the view pins batch 1
    module = editable_module(program)
    x = torch.rand(5, 1, 16, 16)
    torch.testing.assert_close(module(x), eager(x), atol=1e-5, rtol=1e-5)  # batch 5 where the export saw 1
    summary = prune_channels(module, torch.rand(1, 1, 16, 16), ratio=0.5)
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 8], "the shuffled stem stays whole; the block loses half"
    assert summary.kept_whole == ("stem.0",) and "channel shuffle" in summary.describe()
    assert module(torch.rand(3, 1, 16, 16)).shape == (3, 10)


def test_nothing_but_shuffled_channels_to_prune_is_skipped_naming_the_layers() -> None:
    class OnlyShuffled(ShuffleNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.stem(x)
            b, c, h, w = y.shape
            y = y.view(b, 2, c // 2, h, w).transpose(1, 2).contiguous().view(b, c, h, w)
            return self.head(y.mean(dim=(2, 3)).repeat(1, 2))

    module = editable_module(torch.export.export(OnlyShuffled().eval(), (torch.rand(1, 1, 16, 16),)))
    with pytest.raises(Unsupported, match=r"prune_structured found no channel.*stem\.0.*prune_unstructured"):
        prune_channels(module, torch.rand(1, 1, 16, 16), ratio=0.5, technique="prune_structured")


def test_recalibration_sets_batch_norm_statistics_to_those_of_the_pruned_network() -> None:
    """After pruning, each batch norm's running mean/variance describe what the pruned layers now feed it."""
    import numpy as np

    torch.manual_seed(0)
    conv, norm = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)
    module = nn.Sequential(conv, norm, nn.ReLU(), nn.Dropout(0.5), nn.Flatten(), nn.LazyLinear(2)).eval()
    images = np.random.default_rng(0).random((130, 8, 8, 3), dtype=np.float32)  # NHWC: two batches of 64 are used
    module(torch.rand(1, 3, 8, 8))
    norm.running_mean.fill_(5.0)  # stale statistics, as after channels upstream were removed
    norm.running_var.fill_(9.0)
    weights = [p.detach().clone() for p in module.parameters()]

    assert recalibrate_batch_norm(module, images) == 1

    with torch.no_grad():
        features = conv(torch.from_numpy(images[:128]).permute(0, 3, 1, 2))
    np.testing.assert_allclose(norm.running_mean, features.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(norm.running_var, features.var(dim=(0, 2, 3)), rtol=1e-2)
    assert norm.momentum == 0.1 and not module.training and not norm.training
    assert all(torch.equal(a, b) for a, b in zip(weights, module.parameters(), strict=True))


def test_recalibration_leaves_a_model_without_batch_norm_alone() -> None:
    import numpy as np

    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.Flatten(), nn.Linear(144, 2))
    before = copy.deepcopy(module.state_dict())
    assert recalibrate_batch_norm(module, np.zeros((8, 8, 8, 3), dtype=np.float32)) == 0
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


class HeadDeclaredFirst(nn.Module):
    """The logits' layer declared before the body, as users' models sometimes are: the last layer declared is a
    feature convolution, not the classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 10)
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        )  # fmt: skip
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.body(x)).flatten(1))


def test_the_classifier_is_the_last_layer_run_not_the_last_declared() -> None:
    module = HeadDeclaredFirst().eval()
    example = torch.rand(1, 1, 8, 8)
    assert classifier_layer(module, example) is module.fc
    prune_channels(module, example, ratio=0.5, allocation="uniform")
    assert module.fc.out_features == 10, "pruning removed classes"
    assert module(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    assert module.body[3].out_channels < 16, "the feature layers were pruned"
