"""Programs exported at batch 1 run at any batch once rebuilt, wherever their reshapes put the batch.

Attention models fold the batch into other sizes (``nn.MultiheadAttention``: ``(tokens, batch * heads, dim)``;
Swin and MaxViT: ``(batch * windows, ...)``), which the leading-literal rule did not free, so every technique that
calibrates or trains on batches refused them. Tiny stand-ins of each family (a few thousand weights, no lowering)
keep these checks to seconds: the rebuilt graph must compute, at batch 3, exactly what the program computes for
each image alone.
"""

from __future__ import annotations

import pytest
import torch

from edgeopt.errors import Unsupported
from edgeopt.frameworks.pytorch.graph_modules import editable_module


def _tiny(family: str) -> torch.nn.Module:
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt
    from torchvision.models.maxvit import MaxVit
    from torchvision.models.swin_transformer import SwinTransformer
    from torchvision.models.vision_transformer import VisionTransformer

    builders = {
        "vit": lambda: VisionTransformer(
            image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10
        ),
        "swin": lambda: SwinTransformer(
            patch_size=[4, 4],
            embed_dim=16,
            depths=[2, 2],
            num_heads=[2, 4],
            window_size=[4, 4],
            stochastic_depth_prob=0.0,
            num_classes=10,
        ),  # fmt: skip
        "maxvit": lambda: MaxVit(
            input_size=(32, 32),
            stem_channels=16,
            partition_size=2,
            block_channels=[16, 32],
            block_layers=[1, 1],
            head_dim=8,
            stochastic_depth_prob=0.0,
            num_classes=10,
        ),  # fmt: skip
        "convnext": lambda: ConvNeXt(
            [CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)], stochastic_depth_prob=0.0, num_classes=10
        ),
    }
    torch.manual_seed(0)
    return builders[family]().eval()


@pytest.mark.parametrize("family", ["vit", "swin", "maxvit", "convnext"])
def test_a_batch_1_program_runs_each_image_of_a_batch_as_alone(family: str) -> None:
    model = _tiny(family)
    program = torch.export.export(model, (torch.rand(1, 3, 32, 32),))
    rebuilt = editable_module(program).eval()
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        together = rebuilt(images)
        alone = torch.cat([program.module()(images[i : i + 1]) for i in range(3)])
    assert together.shape == (3, 10)
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


def test_layer_norm_becomes_a_layer_pruning_can_resize() -> None:
    """ConvNeXt's LayerNorm was left a function call with fixed-size weights: removing channels broke it."""
    program = torch.export.export(_tiny("convnext"), (torch.rand(1, 3, 32, 32),))
    rebuilt = editable_module(program)
    assert any(isinstance(layer, torch.nn.LayerNorm) for layer in rebuilt.modules())


def test_a_batch_folded_into_another_size_is_freed() -> None:
    """``reshape(B * C, -1)`` exported at batch 1 reads ``(C, -1)``: the batch is found in its first size."""

    class FoldsBatch(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.head = torch.nn.Linear(4, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            y = y.reshape(y.shape[0] * y.shape[1], -1).mean(dim=1)  # (B*C,)
            return self.head(y.reshape(-1, 4))

    model = FoldsBatch().eval()
    rebuilt = editable_module(torch.export.export(model, (torch.rand(1, 3, 8, 8),))).eval()
    images = torch.rand(4, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(images), model(images))


def test_a_model_that_mixes_the_images_of_a_batch_is_refused_naming_the_operation() -> None:
    """Nothing can be freed where the model itself combines images (here, subtracting the batch mean)."""

    class MixesImages(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.head = torch.nn.Linear(4, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x).mean(dim=(2, 3))
            return self.head(y - y.mean(dim=0, keepdim=True))

    program = torch.export.export(MixesImages().eval(), (torch.rand(1, 3, 8, 8),))
    with pytest.raises(Unsupported) as caught:
        editable_module(program)
    message = str(caught.value)
    assert "fixes its batch size" in message and "test_batch_free.py" in message and "dynamic_shapes" in message
