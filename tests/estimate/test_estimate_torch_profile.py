"""profile_torch on real torchvision architectures with published parameter and MAC counts."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from edgeopt.errors import InvalidInput  # noqa: E402
from edgeopt.estimate.graph import ModelProfile  # noqa: E402
from edgeopt.estimate.torch_profile import profile_torch  # noqa: E402


@pytest.fixture(scope="session")
def resnet18_profile() -> ModelProfile:
    return profile_torch(torchvision.models.resnet18(weights=None), (224, 224, 3))


@pytest.fixture(scope="session")
def mobilenet_v2_profile() -> ModelProfile:
    return profile_torch(torchvision.models.mobilenet_v2(weights=None), (224, 224, 3))


def test_resnet18_matches_torchvision_reference(resnet18_profile: ModelProfile) -> None:
    # torchvision's model card: 11.69 M parameters, 1.81 GFLOPS (multiply-adds of conv + linear) at 224x224.
    assert resnet18_profile.params == pytest.approx(11.69e6, rel=0.01)
    assert resnet18_profile.macs == pytest.approx(1.81e9, rel=0.01)
    assert resnet18_profile.flops == 2 * resnet18_profile.macs
    assert resnet18_profile.input_shape == (224, 224, 3)


def test_resnet18_residual_adds_and_folded_batchnorm(resnet18_profile: ModelProfile) -> None:
    ops = [layer.op for layer in resnet18_profile.layers]
    assert ops.count("add") == 8  # one residual add per BasicBlock
    assert ops.count("conv") == 20 and ops.count("dense") == 1
    batch_norms = [layer for layer in resnet18_profile.layers if layer.kind == "batch_norm"]
    assert len(batch_norms) == 20 and all(layer.fused and layer.macs == 0 for layer in batch_norms)
    adds = [layer for layer in resnet18_profile.layers if layer.op == "add"]
    assert all(len(layer.inputs) == 2 for layer in adds)


def test_peak_activation_holds_the_residual_branch(resnet18_profile: ModelProfile) -> None:
    # Largest single pair: the stem conv reads 3x224x224 and writes 64x112x112; later the maxpool output
    # (64x56x56) is held for the first residual add while the block's convolutions run.
    stem_pair = 3 * 224 * 224 + 64 * 112 * 112
    assert resnet18_profile.peak_activation_elems >= stem_pair
    assert resnet18_profile.peak_activation_elems < 3 * 64 * 112 * 112


def test_mobilenet_v2_depthwise(mobilenet_v2_profile: ModelProfile) -> None:
    assert mobilenet_v2_profile.params == pytest.approx(3.5e6, rel=0.01)
    assert mobilenet_v2_profile.macs == pytest.approx(0.30e9, rel=0.02)
    depthwise = [layer for layer in mobilenet_v2_profile.layers if layer.op == "depthwise_conv"]
    assert len(depthwise) == 17 and all(layer.kernel == (3, 3) for layer in depthwise)
    relu6 = [layer for layer in mobilenet_v2_profile.layers if layer.kind == "relu6"]
    assert relu6 and all(layer.fused for layer in relu6)


def test_exported_program_gives_the_same_profile(resnet18_profile: ModelProfile) -> None:
    model = torchvision.models.resnet18(weights=None).eval()
    program = torch.export.export(model, (torch.rand(1, 3, 224, 224),))
    exported = profile_torch(program, (224, 224, 3))
    assert exported.params == resnet18_profile.params
    assert exported.macs == resnet18_profile.macs
    assert [layer.op for layer in exported.layers] == [layer.op for layer in resnet18_profile.layers]


def test_sparsity_counts_zero_weights_and_roundtrips_as_json() -> None:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 10)
    )
    with torch.no_grad():
        model[0].weight[:4] = 0.0  # half the conv filters
    profile = profile_torch(model, (8, 8, 1))
    zeros = 4 * 9
    total = 8 * 9 + 10 * 8 * 6 * 6
    assert profile.sparsity == pytest.approx(zeros / total)
    assert profile.macs == 8 * 6 * 6 * 9 + 10 * 288
    restored = ModelProfile.from_dict(json.loads(json.dumps(profile.to_dict())))
    assert restored == profile


def test_functional_forward_with_python_control_flow() -> None:
    class Branchy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Conv2d(3, 4, 1)
            self.b = torch.nn.Conv2d(3, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.cat([self.a(x), self.b(x)], dim=1) if x.shape[-1] > 2 else self.a(x)
            return torch.nn.functional.relu(y).mean(dim=(2, 3))

    profile = profile_torch(Branchy(), (4, 4, 3))
    assert [layer.op for layer in profile.layers] == ["conv", "conv", "concat", "activation", "pool"]
    concat = profile.layers[2]
    assert set(concat.inputs) == {"a", "b"}


def test_wrong_input_shape_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="did not run"):
        profile_torch(torch.nn.Linear(10, 2), (8, 8, 3))
    with pytest.raises(InvalidInput, match="height, width, channels"):
        profile_torch(torch.nn.Identity(), (8, 8))  # type: ignore[arg-type]


@pytest.mark.slow
def test_pt2e_quantized_graph_keeps_the_float_macs() -> None:
    pytest.importorskip("torchao")
    xnnpack = pytest.importorskip("executorch.backends.xnnpack.quantizer.xnnpack_quantizer")
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    example = torch.rand(1, 3, 32, 32)
    program = torch.export.export(model, (example,), strict=True)
    quantizer = xnnpack.XNNPACKQuantizer().set_global(xnnpack.get_symmetric_quantization_config())
    prepared = prepare_pt2e(program.module(), quantizer)
    prepared(example)
    quantized = profile_torch(convert_pt2e(prepared), (32, 32, 3))
    reference = profile_torch(model, (32, 32, 3))
    assert quantized.macs == reference.macs  # quantize/dequantize nodes are layout glue, not operators
    assert [layer.op for layer in quantized.layers if layer.op != "other"] == [
        layer.op for layer in reference.layers if layer.op != "other"
    ]
