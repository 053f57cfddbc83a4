"""The PyTorch side of the engine: load, export the baseline, run artifacts, describe models.

Artifacts are ExecuTorch ``.pte`` files with the XNNPACK delegate, run through the ExecuTorch runtime exactly as on
the board; every ``.pte`` also comes with its ``torch.export`` program (``.pt2``) for further work in PyTorch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from edgeopt.data.dataset import Dataset
from edgeopt.errors import InvalidInput
from edgeopt.frameworks import LoadedModel, ModelSource, Predict
from edgeopt.frameworks.pytorch.export import export_program, save_pt2, to_pte
from edgeopt.frameworks.pytorch.layout import example_input
from edgeopt.techniques import TechniqueOutput

BASELINE_NAME = "baseline"


class PyTorchBackend:
    framework: ClassVar[str] = "pytorch"
    artifact_suffix: ClassVar[str] = ".pte"
    runtime: ClassVar[str] = "executorch-xnnpack"

    def load(self, source: ModelSource, dataset: Dataset | None = None) -> LoadedModel:
        from edgeopt.frameworks.pytorch.io import load_pytorch
        from edgeopt.settings import get_settings

        return load_pytorch(source, dataset.num_classes if dataset else None, get_settings())

    def export_baseline(self, loaded: LoadedModel, data: Dataset, work_dir: Path) -> TechniqueOutput:
        """The unchanged model as an FP32 ``.pte`` (+ ``.pt2``), lowered exactly like every technique's result."""
        example = example_input(loaded.input_shape)
        program = _baseline_program(loaded, example)
        pte = to_pte(program, example, Path(work_dir) / f"{BASELINE_NAME}.pte")
        pt2 = save_pt2(program, Path(work_dir) / f"{BASELINE_NAME}.pt2")
        notes = "The original model, FP32, lowered to ExecuTorch with every supported op delegated to XNNPACK."
        if loaded.kind == "torchscript":
            notes += " Converted from TorchScript with torch's TorchScript-to-export converter."
        return TechniqueOutput(artifact=pte, precision="fp32", model=loaded.model, formats={"pt2": pt2}, notes=notes)

    def runtime_note(self, artifact: Path) -> str:
        return ""  # a .pte that XNNPACK refuses is lowered again with those ops on portable kernels (to_pte's note)

    def artifact_predictor(self, artifact: Path, output: TechniqueOutput) -> Predict:
        from edgeopt.frameworks.pytorch.runtime import load_pte

        run = load_pte(Path(artifact))

        def predict(images: np.ndarray) -> np.ndarray:
            return run(np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32))

        return predict

    def model_stats(self, loaded: LoadedModel, output: TechniqueOutput) -> dict[str, Any]:
        """params, FLOPs, sparsity and the layer profile of the model behind ``output`` (the source model if none).

        Techniques that change only the storage of weights (INT8, INT4) hand back the FP32 module: same graph, same
        FLOPs; their precision is told to the estimator separately.
        """
        from edgeopt.estimate.torch_profile import profile_torch

        model = output.model if output.model is not None else loaded.model
        script_params = None
        if isinstance(model, torch.jit.ScriptModule):
            # TorchScript cannot be hooked layer by layer: profile the program converted from it. The converter
            # turns weights into graph constants, so the parameter count comes from the script itself.
            script_params = sum(p.numel() for p in model.parameters())
            model = loaded.info.get("program", model)
        profile = profile_torch(model, loaded.input_shape).to_dict()
        if script_params is not None and not profile["params"]:
            profile["params"] = script_params
        return {
            "params": profile["params"],
            "flops": profile["flops"],
            "sparsity": profile["sparsity"],
            "profile": profile,
        }

    def demo_model(self, out: Path, seed: int = 0, tiny: bool = False) -> Path:
        from edgeopt.frameworks.pytorch.demo import TINY_EPOCHS, TINY_WIDTHS, train_demo_model

        if tiny:
            return train_demo_model(Path(out), seed, widths=TINY_WIDTHS, epochs=TINY_EPOCHS)
        return train_demo_model(Path(out), seed)


def _baseline_program(loaded: LoadedModel, example: torch.Tensor) -> torch.export.ExportedProgram:
    program = loaded.info.get("program")
    if isinstance(program, torch.export.ExportedProgram):
        if _has_static_batch(program):
            return program
        # A dynamic batch lowers to a .pte that XNNPACK refuses to run; the board runs batch 1, like every artifact.
        return export_program(program.module(), example, strict=False)
    if loaded.kind == "torchscript":
        program = torchscript_to_program(loaded.model, example)
        loaded.info["program"] = program
        return program
    return export_program(loaded.model, example)


def _has_static_batch(program: torch.export.ExportedProgram) -> bool:
    users = {spec.arg.name for spec in program.graph_signature.input_specs if spec.kind.name == "USER_INPUT"}
    shapes = [n.meta.get("val") for n in program.graph.nodes if n.op == "placeholder" and n.name in users]
    return all(value is not None and isinstance(value.shape[0], int) for value in shapes)


def torchscript_to_program(module: torch.jit.ScriptModule, example: torch.Tensor) -> torch.export.ExportedProgram:
    """TorchScript -> ExportedProgram with torch's converter, so the model runs in ExecuTorch like the others."""
    from torch._export.converter import TS2EPConverter

    try:
        return TS2EPConverter(module, (example,)).convert()
    except Exception as exc:
        raise InvalidInput(
            "This TorchScript model cannot be converted to a torch.export program, so it cannot be lowered to an "
            f"ExecuTorch .pte for the board ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}). "
            "Upload a .pt2 (torch.export.save) or a state_dict with --arch instead."
        ) from exc
