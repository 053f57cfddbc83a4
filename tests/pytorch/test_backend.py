"""The PyTorch backend: baseline export to ExecuTorch, the runtime round trip, model statistics, export errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgeopt.data.dataset import Dataset
from edgeopt.errors import TechniqueFailed
from edgeopt.frameworks import LoadedModel, ModelSource, get_backend
from edgeopt.frameworks.pytorch.backend import PyTorchBackend
from edgeopt.frameworks.pytorch.export import export_program, to_pte
from edgeopt.frameworks.pytorch.layout import to_nchw
from edgeopt.frameworks.pytorch.runtime import load_pte, set_threads
from edgeopt.frameworks.pytorch.training import accuracy
from edgeopt.techniques import TechniqueOutput

from .conftest import pte_accuracy


def test_backend_is_registered_with_its_contract() -> None:
    backend = get_backend("pytorch")
    assert isinstance(backend, PyTorchBackend)
    assert (backend.framework, backend.artifact_suffix, backend.runtime) == ("pytorch", ".pte", "executorch-xnnpack")


def test_demo_model_is_accurate_and_carries_its_input_spec(torch_demo: LoadedModel, digits32: Dataset) -> None:
    assert torch_demo.kind == "exported"
    assert torch_demo.input_shape == (32, 32, 1)
    assert torch_demo.num_classes == 10
    assert isinstance(torch_demo.model, nn.Module)
    assert accuracy(torch_demo.model, digits32.x_test, digits32.y_test) >= 0.95


def test_baseline_pte_runs_like_the_eager_model(
    torch_baseline: TechniqueOutput, torch_demo: LoadedModel, digits32: Dataset, baseline_accuracy: float
) -> None:
    assert torch_baseline.artifact.suffix == ".pte" and torch_baseline.artifact.is_file()
    assert torch_baseline.formats["pt2"].is_file()
    assert torch_baseline.precision == "fp32"
    images = digits32.x_test[:8]
    predict = PyTorchBackend().artifact_predictor(torch_baseline.artifact, torch_baseline)
    with torch.no_grad():
        eager = torch_demo.model(to_nchw(images)).numpy()
    np.testing.assert_allclose(predict(images), eager, atol=1e-4, rtol=1e-4)
    assert baseline_accuracy >= 0.95


def test_baseline_pt2_reloads_with_the_same_outputs(torch_baseline: TechniqueOutput, digits32: Dataset) -> None:
    program = torch.export.load(str(torch_baseline.formats["pt2"]))
    x = to_nchw(digits32.x_test[:1])
    expected = PyTorchBackend().artifact_predictor(torch_baseline.artifact, torch_baseline)(digits32.x_test[:1])
    np.testing.assert_allclose(program.module()(x).detach().numpy(), expected, atol=1e-4)


def test_model_stats_count_the_real_model(torch_demo: LoadedModel, torch_baseline: TechniqueOutput) -> None:
    stats = PyTorchBackend().model_stats(torch_demo, torch_baseline)
    assert stats["params"] == sum(p.numel() for p in torch_demo.model.parameters())
    # the convolutions alone: 2 * sum(k*k*cin*cout*h*w) = 2 * (288*1024 + 18432*256 + 73728*64 + 294912*16)
    assert stats["flops"] >= 2 * (288 * 1024 + 18432 * 256 + 73728 * 64 + 294912 * 16)
    assert 0.0 <= stats["sparsity"] < 0.01
    assert stats["profile"]["params"] == stats["params"]


def test_runtime_thread_count_is_fixed() -> None:
    assert set_threads(1) == 1
    assert set_threads(2) == 2
    set_threads(1)


def test_runtime_runs_a_batch_one_sample_at_a_time(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    pte = to_pte(module.eval(), torch.rand(1, 3, 8, 8), tmp_path / "tiny.pte")
    batch = torch.rand(5, 3, 8, 8)
    np.testing.assert_allclose(load_pte(pte)(batch.numpy()), module(batch).detach().numpy(), atol=1e-5)


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if x.sum() > 0:  # control flow on tensor values: torch.export cannot capture it
            return x.mean(dim=(2, 3))
        return -x.mean(dim=(2, 3))


def test_unexportable_model_fails_with_what_to_upload() -> None:
    with pytest.raises(TechniqueFailed, match="torch.export") as info:
        export_program(DataDependent(), torch.rand(1, 1, 8, 8))
    assert ".pt2" in str(info.value)


def test_torchscript_baseline_is_lowered_and_measured(
    torch_demo: LoadedModel, digits32: Dataset, tmp_path: Path, baseline_accuracy: float
) -> None:
    path = tmp_path / "demo_script.pt"
    torch.jit.save(torch.jit.trace(torch_demo.model.eval(), torch.rand(1, 1, 32, 32)), str(path))
    backend = PyTorchBackend()
    loaded = backend.load(ModelSource(path=path), digits32)
    output = backend.export_baseline(loaded, digits32, tmp_path / "ts")
    assert "TorchScript" in output.notes
    assert pte_accuracy(output.artifact, digits32) == pytest.approx(baseline_accuracy, abs=1e-9)
    assert backend.model_stats(loaded, output)["params"] > 0
