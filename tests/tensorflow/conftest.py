"""Session fixtures for the TensorFlow tests: the trained demo model and digits adapted to it.

Training the demo CNN takes ~20 s on 2 cores, so it happens once per session and every TensorFlow test file
(backend, techniques, filter pruning) reuses the same model. Tests must not modify ``keras_demo.model`` in place:
techniques clone it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeopt.data.dataset import Dataset
from edgeopt.frameworks import LoadedModel, ModelSource
from edgeopt.frameworks.tensorflow.backend import TensorFlowBackend
from edgeopt.frameworks.tensorflow.demo import digits_for_demo, train_demo_model


@pytest.fixture(scope="session")
def digits_keras() -> Dataset:
    """scikit-learn digits at the demo model's input (32x32x1), the same split the pipeline uses (seed 0)."""
    return digits_for_demo(seed=0)


@pytest.fixture(scope="session")
def keras_demo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_demo_model(tmp_path_factory.mktemp("keras_demo") / "demo.keras", seed=0)


@pytest.fixture(scope="session")
def keras_demo(keras_demo_file: Path, digits_keras: Dataset) -> LoadedModel:
    """The demo model loaded back from its file through the backend, as the pipeline would see it."""
    return TensorFlowBackend().load(ModelSource(path=keras_demo_file), digits_keras)


@pytest.fixture
def tmp_work(tmp_path: Path) -> Path:
    """A technique's work folder (artifacts are written here)."""
    work = tmp_path / "work"
    work.mkdir()
    return work
