"""torch.export programs and their lowering to ExecuTorch ``.pte`` files with the XNNPACK delegate.

Every PyTorch artifact the user downloads goes through ``to_pte`` so the baseline and every technique are lowered
the same way and compared like for like.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.export import ExportedProgram

from edgeopt.errors import TechniqueFailed


def export_program(
    module: torch.nn.Module, example: torch.Tensor, strict: bool = True, *, dynamic_batch: bool = False
) -> ExportedProgram:
    """``torch.export`` of ``module`` in eval mode, with the example's fixed batch (1 for artifacts).

    ``dynamic_batch=True`` leaves the batch dimension free, for graphs that are calibrated or trained on batches
    (PT2E calibration, QAT) before the final batch-1 export.

    ``strict=True`` by default: ResNet-style graphs exported non-strict fail later in the PT2E quantizer with
    "Input partition has more than one output node" (docs/library-notes.md). Export errors (data-dependent control
    flow, unsupported Python) become ``TechniqueFailed`` with a sentence that says what to upload instead.
    """
    if isinstance(module, torch.nn.Module) and not isinstance(module, torch.fx.GraphModule):
        module.eval()
    dynamic_shapes = None
    if dynamic_batch:
        if example.shape[0] < 2:  # torch.export specialises a dimension whose example size is 1
            example = example.expand(2, *example.shape[1:]).contiguous()
        dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=65536)},)
    try:
        return torch.export.export(module, (example,), strict=strict, dynamic_shapes=dynamic_shapes)
    except Exception as exc:  # torch.export raises many unrelated types (UserError, Unsupported, TypeError...)
        raise TechniqueFailed(
            "The model cannot be captured by torch.export (for example data-dependent control flow in forward): "
            f"{_first_line(exc)}. Upload a model whose forward is traceable, as a .pt2 from torch.export.export."
        ) from exc


def drop_unused_attributes(module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Removes parameters, buffers and submodules the graph never reads.

    After ``convert_pt2e`` the original FP32 weights stay attached to the GraphModule although the graph reads only
    the quantized copies; exported as they are, the ``.pt2`` would be bigger than the FP32 model
    (docs/library-notes.md).
    """
    module.graph.eliminate_dead_code()
    used = {node.target for node in module.graph.nodes if node.op == "get_attr"}
    for name, _ in list(module.named_parameters()) + list(module.named_buffers()):
        if name not in used and not any(u.startswith(name + ".") for u in used):
            owner_path, _, attr = name.rpartition(".")
            owner = module.get_submodule(owner_path) if owner_path else module
            delattr(owner, attr)
    module.delete_all_unused_submodules()
    module.recompile()
    return module


def save_pt2(program: ExportedProgram, path: Path) -> Path:
    """Writes the program with ``torch.export.save``; reload it with ``import torchao.quantization.pt2e`` first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(path))
    return path


def to_pte(program_or_module: ExportedProgram | torch.nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Lowers to ExecuTorch with every supported op delegated to XNNPACK and writes the ``.pte`` file.

    Ops XNNPACK does not take stay on ExecuTorch's portable kernels inside the same file, so the artifact always
    runs; it is only slower where that happens. XNNPACK compiles its part when the file is loaded, and it refuses
    some ops its partitioner accepted (a constant pad between quantized tensors, as in Swin's window padding:
    ``xnn_status_invalid_parameter``): so the file is loaded once here, and if that fails it is lowered again with
    those ops (``REFUSED_AT_LOAD``) left on the portable kernels.
    """
    program = (
        program_or_module
        if isinstance(program_or_module, ExportedProgram)
        else export_program(program_or_module, example)
    )
    _lower(program, path, excluded=())
    if not _loads(path):
        _lower(program, path, excluded=REFUSED_AT_LOAD)
        if not _loads(path):
            raise TechniqueFailed(
                "The ExecuTorch file was written, but XNNPACK refused to compile part of it when it was loaded, "
                "even with the ops it is known to refuse left on portable kernels; the details are in EdgeOpt's "
                "log. Please report it with the model's architecture."
            )
    return path


# XNNPACK partitioner configs whose ops XNNPACK may refuse to compile at load time although the partitioner took them.
REFUSED_AT_LOAD = ("ConstantPadConfig",)


def _lower(program: ExportedProgram, path: Path, excluded: tuple[str, ...]) -> None:
    from executorch.backends.xnnpack.partition.config import ALL_PARTITIONER_CONFIGS
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    configs = [config for config in ALL_PARTITIONER_CONFIGS if config.__name__ not in excluded]
    try:
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner(configs=configs)])
        executorch_program = edge.to_executorch()
    except Exception as exc:
        raise TechniqueFailed(f"Lowering to ExecuTorch (.pte) failed: {_first_line(exc)}.") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        executorch_program.write_to_file(handle)


def _loads(path: Path) -> bool:
    """Whether the ExecuTorch runtime loads the file's method (XNNPACK compiles its part then)."""
    import logging

    from executorch.runtime import Runtime

    try:
        Runtime.get().load_program(path).load_method("forward")
    except RuntimeError:
        logging.getLogger(__name__).warning("ExecuTorch could not load %s", path.name, exc_info=True)
        return False
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
