"""Every PyTorch model format the engine accepts, and every refusal, with real files written by torch itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from edgeopt.data.dataset import Dataset
from edgeopt.errors import InvalidInput, Unsupported
from edgeopt.frameworks import LoadedModel, ModelSource
from edgeopt.frameworks.pytorch.demo import DemoCNN
from edgeopt.frameworks.pytorch.io import hub_weights_file, load_pytorch, require_module
from edgeopt.settings import Settings


def _settings(**values: object) -> Settings:
    return Settings(**values)  # type: ignore[arg-type]


def _same_outputs(a: nn.Module, b: nn.Module, shape: tuple[int, ...] = (2, 1, 32, 32)) -> None:
    x = torch.rand(*shape)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))


@pytest.fixture()
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache, so tests never see (or depend on) weights of the machine they run on."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


def test_pt2_demo_is_rebuilt_as_an_eager_module(torch_demo: LoadedModel) -> None:
    assert isinstance(torch_demo.model, DemoCNN)
    assert torch_demo.info["arch"] == "edgeopt_demo_cnn"
    program = torch_demo.info["program"]
    _same_outputs(torch_demo.model, program.module(), shape=(1, 1, 32, 32))


def test_foreign_pt2_keeps_its_graph_and_input_spec(tmp_path: Path) -> None:
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 7)).eval()
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(module, (torch.rand(1, 3, 20, 24),)), str(path))
    loaded = load_pytorch(ModelSource(path=path), None, _settings())
    assert (loaded.kind, loaded.input_shape, loaded.num_classes) == ("exported", (20, 24, 3), 7)
    assert isinstance(require_module(loaded, "ptq_int8"), nn.Module)


class _TwoOutputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x)
        return y.mean((2, 3)), y


@pytest.mark.parametrize(
    ("module", "needle"),
    [
        (nn.Sequential(nn.Conv2d(3, 4, 3)), r"a tensor of shape \(1, 4, 14, 14\)"),
        (_TwoOutputs(), "a tuple"),
    ],
)
def test_pt2_that_is_not_a_classifier_is_refused_naming_what_it_returns(
    module: nn.Module, needle: str, tmp_path: Path
) -> None:
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(module.eval(), (torch.rand(1, 3, 16, 16),)), str(path))
    with pytest.raises(InvalidInput, match=needle) as raised:
        load_pytorch(ModelSource(path=path), None, _settings())
    assert "(batch, classes) tensor of logits" in str(raised.value)


def test_state_dict_of_the_demo_needs_no_arch(torch_demo: LoadedModel, tmp_path: Path) -> None:
    path = tmp_path / "demo_state.pth"
    torch.save(torch_demo.model.state_dict(), path)
    loaded = load_pytorch(ModelSource(path=path), 10, _settings())
    assert (loaded.kind, loaded.input_shape, loaded.num_classes) == ("state_dict", (32, 32, 1), 10)
    _same_outputs(loaded.model, torch_demo.model)


def test_state_dict_with_arch_and_head_resized_to_the_dataset(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source_model = torchvision.models.mobilenet_v2(num_classes=10).eval()
    path = tmp_path / "mnv2.pth"
    torch.save({"state_dict": source_model.state_dict()}, path)  # a checkpoint wrapper is accepted too
    loaded = load_pytorch(ModelSource(path=path, arch="mobilenet_v2", input_size=(32, 32)), 10, _settings())
    assert (loaded.kind, loaded.input_shape, loaded.num_classes) == ("state_dict", (32, 32, 3), 10)
    _same_outputs(loaded.model, source_model, shape=(1, 3, 32, 32))
    resized = load_pytorch(ModelSource(path=path, arch="mobilenet_v2", input_size=(32, 32)), 4, _settings())
    assert resized.num_classes == 4 and resized.info["head_resized_to"] == 4


def test_state_dict_for_the_wrong_arch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "demo_state.pth"
    torch.save(DemoCNN().state_dict(), path)
    with pytest.raises(InvalidInput, match="does not match mobilenet_v2"):
        load_pytorch(ModelSource(path=path, arch="mobilenet_v2"), 10, _settings())
    with pytest.raises(InvalidInput, match="no classifier weights for resnet18"):
        load_pytorch(ModelSource(path=path, arch="resnet18"), 10, _settings())


def test_unknown_state_dict_without_arch_asks_for_arch(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save(nn.Sequential(nn.Linear(3, 2)).state_dict(), path)
    with pytest.raises(InvalidInput, match="--arch"):
        load_pytorch(ModelSource(path=path), 10, _settings())


def test_named_arch_without_cached_weights_names_the_file_and_folder(torch_home: Path) -> None:
    with pytest.raises(InvalidInput) as info:
        load_pytorch(ModelSource(arch="resnet18"), 10, _settings())
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and str(torch_home / "hub" / "checkpoints") in message


def test_named_arch_takes_cached_weights_then_resizes_the_head(torch_home: Path) -> None:
    torch.manual_seed(1)
    imagenet_like = torchvision.models.resnet18()
    weights = hub_weights_file("resnet18")
    weights.parent.mkdir(parents=True)
    torch.save(imagenet_like.state_dict(), weights)
    loaded = load_pytorch(ModelSource(arch="resnet18", input_size=(32, 32)), 10, _settings())
    assert (loaded.kind, loaded.input_shape, loaded.num_classes) == ("architecture", (32, 32, 3), 10)
    assert loaded.info["normalization"][0] == [0.485, 0.456, 0.406]
    torch.testing.assert_close(loaded.model.conv1.weight, imagenet_like.conv1.weight)


def test_random_init_only_when_asked(torch_home: Path) -> None:
    loaded = load_pytorch(ModelSource(arch="vgg16", input_size=(32, 32), random_init=True), 10, _settings())
    assert loaded.num_classes == 10 and "random" in loaded.info["weights"]
    assert "normalization" not in loaded.info


def test_unknown_arch_is_refused() -> None:
    with pytest.raises(InvalidInput, match="resnet18, vgg16, vgg19, mobilenet_v2"):
        load_pytorch(ModelSource(arch="alexnet"), 10, _settings())


def test_torchscript_is_loaded_but_not_transformable(torch_demo: LoadedModel, tmp_path: Path) -> None:
    path = tmp_path / "demo.pt"
    torch.jit.save(torch.jit.script(torch_demo.model), str(path))
    loaded = load_pytorch(ModelSource(path=path, input_size=(32, 32)), 10, _settings())
    assert (loaded.kind, loaded.transformable, loaded.input_shape) == ("torchscript", False, (32, 32, 1))
    assert ".pt2" in loaded.not_transformable_reason and "ptq_int8" in loaded.not_transformable_reason
    with pytest.raises(Unsupported, match="state_dict with --arch"):
        require_module(loaded, "prune_structured")


def test_whole_pickled_module_needs_trust(torch_demo: LoadedModel, tmp_path: Path) -> None:
    path = tmp_path / "whole.pth"
    torch.save(torch_demo.model, path)
    with pytest.raises(InvalidInput, match="EDGEOPT_TRUST_PICKLES=1"):
        load_pytorch(ModelSource(path=path), 10, _settings())
    loaded = load_pytorch(ModelSource(path=path), 10, _settings(trust_pickles=True))
    assert loaded.kind == "pickle" and loaded.input_shape == (224, 224, 1)
    _same_outputs(loaded.model, torch_demo.model)


def test_truncated_file_is_refused(demo_pt2: Path, tmp_path: Path) -> None:
    path = tmp_path / "broken.pt2"
    path.write_bytes(demo_pt2.read_bytes()[: demo_pt2.stat().st_size // 2])
    with pytest.raises(InvalidInput, match="not a model file|damaged or truncated"):
        load_pytorch(ModelSource(path=path), 10, _settings())


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        load_pytorch(ModelSource(path=tmp_path / "nothing.pt2"), 10, _settings())


def test_backend_load_uses_the_dataset_classes(torch_home: Path, digits32: Dataset) -> None:
    from edgeopt.frameworks.pytorch.backend import PyTorchBackend

    loaded = PyTorchBackend().load(ModelSource(arch="resnet18", input_size=(32, 32), random_init=True), digits32)
    assert loaded.num_classes == digits32.num_classes
