"""Session fixtures for the PyTorch tests: the trained demo model and digits at its 32x32 input.

Training the demo CNN takes tens of seconds, so it happens once per test session and every PyTorch test (loaders,
backend, techniques) shares the result. Tests must not modify ``torch_demo.model`` in place.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeopt.data.dataset import Dataset
from edgeopt.frameworks import LoadedModel, ModelSource
from edgeopt.techniques import TechniqueOutput

torch = pytest.importorskip("torch")


@pytest.fixture(scope="session")
def tmp_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the session's PyTorch artifacts (each test or fixture writes under its own name)."""
    return tmp_path_factory.mktemp("pytorch_work")


@pytest.fixture(scope="session")
def digits32() -> Dataset:
    """scikit-learn digits with the engine's fixed split, adapted to the demo model's 32x32x1 input."""
    from edgeopt.frameworks.pytorch.demo import demo_dataset

    return demo_dataset(seed=0)


@pytest.fixture(scope="session")
def demo_pt2(tmp_work: Path, digits32: Dataset) -> Path:
    from edgeopt.frameworks.pytorch.demo import train_demo_model

    return train_demo_model(tmp_work / "demo.pt2", seed=0, data=digits32)


@pytest.fixture(scope="session")
def torch_demo(demo_pt2: Path, digits32: Dataset) -> LoadedModel:
    """The demo CNN loaded through the backend, as the pipeline loads an uploaded .pt2."""
    from edgeopt.frameworks.pytorch.backend import PyTorchBackend

    return PyTorchBackend().load(ModelSource(path=demo_pt2), digits32)


@pytest.fixture(scope="session")
def torch_baseline(torch_demo: LoadedModel, digits32: Dataset, tmp_work: Path) -> TechniqueOutput:
    """The demo CNN's FP32 .pte (+ .pt2), the reference for size ratios and accuracy drops."""
    from edgeopt.frameworks.pytorch.backend import PyTorchBackend

    return PyTorchBackend().export_baseline(torch_demo, digits32, tmp_work / "baseline")


def pte_accuracy(artifact: Path, data: Dataset) -> float:
    """Top-1 on the test split, running the file fresh in the ExecuTorch runtime (never the eager model)."""
    from edgeopt.frameworks.pytorch.backend import PyTorchBackend

    predict = PyTorchBackend().artifact_predictor(artifact, TechniqueOutput(artifact=artifact, precision="fp32"))
    return float(np.mean(predict(data.x_test).argmax(axis=1) == data.y_test))


@pytest.fixture(scope="session")
def baseline_accuracy(torch_baseline: TechniqueOutput, digits32: Dataset) -> float:
    return pte_accuracy(torch_baseline.artifact, digits32)
