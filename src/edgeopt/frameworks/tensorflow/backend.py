"""The TensorFlow/Keras side of the pipeline: load, export the baseline to ``.tflite``, run artifacts in LiteRT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.data.dataset import Dataset
from edgeopt.frameworks import LoadedModel, ModelSource, Predict
from edgeopt.frameworks.tensorflow import convert, runtime
from edgeopt.frameworks.tensorflow.io import SavedModelGraph, load_tensorflow
from edgeopt.settings import get_settings
from edgeopt.techniques import TechniqueOutput


def _graph_profile(loaded: LoadedModel) -> dict[str, Any]:
    """A bare SavedModel graph has no layers to read: one opaque operator, parameters counted, FLOPs unknown (0)."""
    import tensorflow as tf

    from edgeopt.estimate.graph import LayerSpec, build_profile

    graph: SavedModelGraph = loaded.model
    checkpoint = graph.directory / "variables" / "variables"
    bookkeeping = ("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter", "optimizer/")
    params = sum(
        int(np.prod(shape))
        for name, shape in tf.train.list_variables(str(checkpoint))
        if not any(mark in name for mark in bookkeeping)
    )
    h, w, c = loaded.input_shape
    layer = LayerSpec(
        name="savedmodel_graph",
        op="other",
        macs=0,
        params=params,
        input_elems=h * w * c,
        output_elems=loaded.num_classes,
        weight_elems=params,
        kind="savedmodel",
    )
    note = "A bare SavedModel graph has no Keras layers to read: FLOPs are unknown and reported as 0."
    return build_profile([layer], loaded.input_shape, params, 0.0, "savedmodel variables", [note]).to_dict()


class TensorFlowBackend:
    framework = "tensorflow"
    artifact_suffix = ".tflite"
    runtime = "litert-xnnpack"

    def load(self, source: ModelSource, dataset: Dataset | None = None) -> LoadedModel:
        if source.arch and source.input_size is None and dataset is not None:
            h, w, _ = dataset.image_shape
            source = ModelSource(
                path=source.path,
                arch=source.arch,
                num_classes=source.num_classes,
                input_size=(max(32, h), max(32, w)),
                random_init=source.random_init,
            )
        hint = dataset.num_classes if dataset is not None else None
        return load_tensorflow(source, hint, get_settings())

    def export_baseline(self, loaded: LoadedModel, data: Dataset, work_dir: Path) -> TechniqueOutput:
        """The unmodified model as an FP32 ``.tflite`` (plus the ``.keras`` file when there is a Keras model)."""
        artifact = Path(work_dir) / f"baseline{self.artifact_suffix}"
        if isinstance(loaded.model, SavedModelGraph):
            convert.to_tflite(loaded.model, artifact)
            return TechniqueOutput(artifact=artifact, precision="fp32", model=None, notes="FP32 .tflite (SavedModel)")
        convert.to_tflite(loaded.model, artifact)
        keras_file = convert.save_keras(loaded.model, Path(work_dir) / "baseline.keras")
        return TechniqueOutput(
            artifact=artifact,
            precision="fp32",
            model=loaded.model,
            formats={"keras": keras_file},
            notes="FP32 .tflite run by LiteRT with XNNPACK",
        )

    def artifact_predictor(self, artifact: Path, output: TechniqueOutput) -> Predict:
        return runtime.load_tflite(Path(artifact), threads=get_settings().threads)

    def runtime_note(self, artifact: Path) -> str:
        return runtime.runtime_note(Path(artifact))

    def model_stats(self, loaded: LoadedModel, output: TechniqueOutput) -> dict[str, Any]:
        """params, FLOPs and sparsity from the Keras layer graph of the model behind ``output``.

        Techniques that only rewrite the ``.tflite`` (INT4) hand back the source model: same graph, same FLOPs.
        Sparsity is the fraction of zeros in the convolution and dense kernels (biases and BatchNorm excluded).
        """
        from edgeopt.estimate.keras_profile import profile_keras

        model = output.model if output.model is not None else loaded.model
        graph = isinstance(model, SavedModelGraph)
        profile = _graph_profile(loaded) if graph else profile_keras(model).to_dict()
        return {
            "params": profile["params"],
            "flops": profile["flops"],
            "sparsity": profile["sparsity"],
            "profile": profile,
        }

    def demo_model(self, out: Path, seed: int = 0, tiny: bool = False) -> Path:
        from edgeopt.frameworks.tensorflow.demo import TINY_EPOCHS, TINY_WIDTHS, train_demo_model

        if tiny:
            return train_demo_model(Path(out), seed, widths=TINY_WIDTHS, epochs=TINY_EPOCHS)
        return train_demo_model(Path(out), seed)
