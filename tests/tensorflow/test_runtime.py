"""Running a ``.tflite`` as the board does: where XNNPACK refuses a file, LiteRT's own kernels run it and the result
says how to load it on the board (a quantization-aware NASNetMobile hit this: "failed to create XNNPACK runtime")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tf_keras as keras  # the root conftest set TF_USE_LEGACY_KERAS=1 first

from edgeopt.frameworks.tensorflow import runtime
from edgeopt.frameworks.tensorflow.convert import to_tflite


@pytest.fixture(scope="module")
def small_tflite(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(4, 1, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x)))
    return to_tflite(model, tmp_path_factory.mktemp("rt") / "m.tflite"), model


def _refusing_xnnpack(message: str) -> type:
    """LiteRT's Interpreter, except that with its default delegate allocate_tensors raises ``message``."""
    real = runtime.Interpreter

    class Refusing(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._default = "experimental_op_resolver_type" not in kwargs

        def allocate_tensors(self) -> None:
            if self._default:
                raise RuntimeError(message)
            super().allocate_tensors()

    return Refusing


def test_a_file_xnnpack_accepts_runs_with_it_and_needs_no_note(small_tflite: tuple[Path, Any]) -> None:
    path, _ = small_tflite
    assert runtime.xnnpack_refusal(path) is None
    assert runtime.runtime_note(path) == ""


def test_a_file_xnnpack_refuses_runs_on_litert_kernels_and_the_note_says_how_to_load_it(
    small_tflite: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, model = small_tflite
    refused = "failed to create XNNPACK runtimeNode number 9 (TfLiteXNNPackDelegate) failed to prepare."
    monkeypatch.setattr(runtime, "Interpreter", _refusing_xnnpack(refused))
    x = np.random.default_rng(0).random((5, 4, 4, 3), dtype=np.float32)
    np.testing.assert_allclose(runtime.load_tflite(path)(x), model.predict(x, verbose=0), atol=1e-4)
    note = runtime.runtime_note(path)
    assert "failed to create XNNPACK runtime" in note
    assert "experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES" in note


def test_other_runtime_errors_are_not_hidden(small_tflite: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = small_tflite
    monkeypatch.setattr(runtime, "Interpreter", _refusing_xnnpack("tensor 3 has no memory"))
    with pytest.raises(RuntimeError, match="no memory"):
        runtime.load_tflite(path)
