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
from edgeopt.frameworks.tensorflow.runtime import accuracy, load_tflite
from edgeopt.progress import silent_reporter
from edgeopt.techniques import TechniqueContext, TechniqueOutput, get_technique, make_config


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


@pytest.fixture(scope="session")
def tf_baseline(
    keras_demo: LoadedModel, digits_keras: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> TechniqueOutput:
    """The demo model exported as the pipeline's FP32 ``.tflite`` baseline (every ratio is against this file)."""
    return TensorFlowBackend().export_baseline(keras_demo, digits_keras, tmp_path_factory.mktemp("tf_baseline"))


@pytest.fixture(scope="session")
def tf_baseline_accuracy(tf_baseline: TechniqueOutput, digits_keras: Dataset) -> float:
    return accuracy(load_tflite(tf_baseline.artifact), digits_keras.x_test, digits_keras.y_test)


def run_technique(name: str, loaded: LoadedModel, data: Dataset, work: Path, **config: object) -> TechniqueOutput:
    """Apply a registered TensorFlow technique the way the pipeline does (registry, typed config, work folder)."""
    return get_technique(name, "tensorflow").apply(
        TechniqueContext(model=loaded, data=data, work_dir=work, reporter=silent_reporter(name)),
        make_config(name, config),
    )
