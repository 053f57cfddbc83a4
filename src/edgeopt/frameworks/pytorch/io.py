"""Loads every PyTorch model format EdgeOpt accepts into a ``LoadedModel``.

Formats (decided from the file's bytes by ``edgeopt.formats``, never from its name):
- ``.pt2`` (torch.export): the program carries its input spec. EdgeOpt's own demo model is rebuilt as an eager
  module from the metadata in the archive; any other program is used as its GraphModule.
- state dict + architecture name (torchvision resnet18, vgg16, vgg19, mobilenet_v2) or a state dict of the demo CNN.
- TorchScript: evaluated and measured, but not transformed (``transformable=False`` with the reason).
- a whole pickled ``nn.Module``: only with ``EDGEOPT_TRUST_PICKLES=1`` (unpickling runs arbitrary code).
A named architecture without a file takes the pretrained weights from the torch hub cache, or random weights
only when asked explicitly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeopt.catalog import TECHNIQUE_NAMES
from edgeopt.errors import InvalidInput, Unsupported
from edgeopt.frameworks import LoadedModel, ModelSource
from edgeopt.frameworks.pytorch.demo import DEMO_ARCH, METADATA_FILE, build_demo
from edgeopt.settings import Settings

ARCHITECTURES: tuple[str, ...] = ("resnet18", "vgg16", "vgg19", "mobilenet_v2")
DEFAULT_ARCH_INPUT = (224, 224)
IMAGENET_NORMALIZATION = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
GRAPH_TECHNIQUES = ", ".join(TECHNIQUE_NAMES)
TORCHSCRIPT_REASON = (
    "TorchScript models can be evaluated and measured but not transformed: every technique "
    f"({GRAPH_TECHNIQUES}) needs the torch.export graph or the eager module. Upload a .pt2 "
    "(torch.export.export + torch.export.save) or a state_dict with --arch instead."
)


def load_pytorch(source: ModelSource, num_classes_hint: int | None, settings: Settings) -> LoadedModel:
    """Loads ``source``; ``num_classes_hint`` (the dataset's class count) sizes the head of named architectures."""
    if source.path is None:
        if source.arch is None:
            raise InvalidInput("Give a model file or an architecture name (--arch).", field="model")
        return _load_architecture(source, num_classes_hint, settings, state_dict=None)
    path = Path(source.path)
    if not path.is_file():
        raise InvalidInput(f"Model file {path} does not exist.", field="model")
    from edgeopt.formats import check_model_file

    kind = check_model_file(path, "pytorch", trust_pickles=settings.trust_pickles).kind
    if kind == "pt2":
        return _load_pt2(path)
    if kind == "torchscript":
        return _load_torchscript(path, source)
    if kind == "pickle":
        return _load_pickle(path, source)
    state_dict = _state_dict_from(torch.load(path, map_location="cpu", weights_only=True))
    if source.arch is not None:
        return _load_architecture(source, num_classes_hint, settings, state_dict=state_dict)
    if _looks_like_demo(state_dict):
        return _load_demo_state_dict(state_dict, source)
    raise InvalidInput(
        f"{path.name} is a state_dict (weights only); name its architecture with --arch "
        f"({', '.join(ARCHITECTURES)}) or upload a .pt2 from torch.export.save.",
        field="arch",
    )


def require_module(loaded: LoadedModel, technique: str) -> nn.Module:
    """The model as an ``nn.Module`` a technique may transform, or ``Unsupported`` saying why not."""
    if not loaded.transformable:
        raise Unsupported(f"{technique} cannot run on this model: {loaded.not_transformable_reason}")
    model = loaded.model
    if isinstance(model, torch.export.ExportedProgram | torch.fx.GraphModule):
        # Real layers and no batch-1 guard: PT2E calibration and QAT re-export with a dynamic batch.
        from edgeopt.frameworks.pytorch.graph_modules import editable_module

        return editable_module(model)
    if not isinstance(model, nn.Module):
        raise Unsupported(f"{technique} needs a torch.nn.Module, got {type(model).__name__}.")
    return model


# --- .pt2 -----------------------------------------------------------------------------------------------------


def _load_pt2(path: Path) -> LoadedModel:
    import torchao.quantization.pt2e  # noqa: F401  registers the quantized ops a quantized program refers to

    extra = {METADATA_FILE: ""}
    try:
        program = torch.export.load(str(path), extra_files=extra)
    except Exception as exc:
        raise InvalidInput(f"{path.name} is a torch.export archive that cannot be loaded: {_first_line(exc)}.") from exc
    input_shape = _program_input_shape(program, path.name)
    metadata = json.loads(extra[METADATA_FILE]) if extra[METADATA_FILE] else {}
    info: dict[str, Any] = {"source_file": path.name, "format": "pt2", "program": program}
    if metadata.get("arch") == DEMO_ARCH:
        module = build_demo(metadata)
        module.load_state_dict(program.state_dict)
        module.eval()
        info["arch"] = DEMO_ARCH
        model: Any = module
    else:
        model = program.module()
    num_classes = _num_classes(program.module(), input_shape)
    return LoadedModel("pytorch", model, "exported", input_shape, num_classes, info=info)


def _program_input_shape(program: torch.export.ExportedProgram, name: str) -> tuple[int, int, int]:
    users = [s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    shapes = [placeholders[u].meta.get("val") for u in users if u in placeholders]
    if len(shapes) != 1 or shapes[0] is None or len(shapes[0].shape) != 4:
        raise InvalidInput(
            f"{name} must take exactly one NCHW image tensor; its inputs are "
            f"{[tuple(s.shape) if s is not None else None for s in shapes]}."
        )
    _, c, h, w = (int(v) for v in shapes[0].shape)
    return h, w, c


# --- TorchScript and pickles ----------------------------------------------------------------------------------


def _load_torchscript(path: Path, source: ModelSource) -> LoadedModel:
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise InvalidInput(f"{path.name} is a TorchScript archive that cannot be loaded: {_first_line(exc)}.") from exc
    module.eval()
    input_shape = _input_shape_from_first_conv(module, source)
    return LoadedModel(
        "pytorch",
        module,
        "torchscript",
        input_shape,
        _num_classes(module, input_shape),
        transformable=False,
        not_transformable_reason=TORCHSCRIPT_REASON,
        info={"source_file": path.name, "format": "torchscript"},
    )


def _load_pickle(path: Path, source: ModelSource) -> LoadedModel:
    # Reached only with settings.trust_pickles (check_model_file refuses otherwise).
    module = torch.load(path, map_location="cpu", weights_only=False)  # noqa: S614 - trusted by the user's setting
    if not isinstance(module, nn.Module):
        raise InvalidInput(f"{path.name} unpickles to a {type(module).__name__}, not a torch.nn.Module.")
    module.eval()
    input_shape = _input_shape_from_first_conv(module, source)
    return LoadedModel(
        "pytorch", module, "pickle", input_shape, _num_classes(module, input_shape),
        info={"source_file": path.name, "format": "pickle"},
    )  # fmt: skip


# --- state dicts and named architectures ----------------------------------------------------------------------


def _state_dict_from(loaded: Any) -> dict[str, torch.Tensor]:
    """Accepts a bare state dict or the common checkpoint wrappers {"state_dict": ...}/{"model": ...}."""
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    tensors = {k.removeprefix("module."): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise InvalidInput("The file holds no tensors, so it is not a model's state_dict.")
    return tensors


def _demo_convs(state_dict: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    return [v for k, v in state_dict.items() if k.startswith("features.") and k.endswith(".weight") and v.dim() == 4]


def _looks_like_demo(state_dict: dict[str, torch.Tensor]) -> bool:
    convs = _demo_convs(state_dict)
    keys = {k.split(".")[0] for k in state_dict}
    return keys == {"features", "classifier"} and bool(convs) and "classifier.weight" in state_dict


def _load_demo_state_dict(state_dict: dict[str, torch.Tensor], source: ModelSource) -> LoadedModel:
    convs = _demo_convs(state_dict)
    config = {
        "in_channels": int(convs[0].shape[1]),
        "num_classes": int(state_dict["classifier.weight"].shape[0]),
        "widths": [int(c.shape[0]) for c in convs],
    }
    module = build_demo(config)
    _load_strict(module, state_dict, DEMO_ARCH)
    module.eval()
    h, w = source.input_size or (32, 32)  # global average pooling: any size works; 32x32 is what it was trained on
    info = {"arch": DEMO_ARCH, "format": "state_dict"}
    return LoadedModel("pytorch", module, "state_dict", (h, w, config["in_channels"]), config["num_classes"], info=info)


def hub_weights_file(arch: str) -> Path:
    """Where torchvision's pretrained ImageNet weights for ``arch`` sit in the torch hub cache."""
    from torchvision.models import get_model_weights

    url = get_model_weights(arch).IMAGENET1K_V1.url  # type: ignore[attr-defined]
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def _load_architecture(
    source: ModelSource,
    num_classes_hint: int | None,
    settings: Settings,
    state_dict: dict[str, torch.Tensor] | None,
) -> LoadedModel:
    import torchvision

    arch = source.arch or ""
    if arch not in ARCHITECTURES:
        raise InvalidInput(f"Unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}.", field="arch")
    num_classes = source.num_classes or num_classes_hint
    info: dict[str, Any] = {"arch": arch}
    if state_dict is not None:
        head = _head_size(state_dict, arch)
        module = torchvision.models.get_model(arch, weights=None, num_classes=head)
        _load_strict(module, state_dict, arch)
        info["weights"] = "uploaded state_dict"
    else:
        module = torchvision.models.get_model(arch, weights=None)
        weights = hub_weights_file(arch)
        if weights.is_file():
            module.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            info.update(weights=f"ImageNet pretrained ({weights.name})", normalization=IMAGENET_NORMALIZATION)
        elif source.random_init or settings.allow_random_init:
            info["weights"] = "random initialisation (asked for explicitly)"
        else:
            raise InvalidInput(
                f"Pretrained weights for {arch} are not in the local cache: put {weights.name} in {weights.parent} "
                "(or set TORCH_HOME), upload a state_dict with --arch, or ask for random initialisation.",
                field="arch",
            )
    if num_classes is not None and _head(module).out_features != num_classes:
        _resize_head(module, num_classes)
        info["head_resized_to"] = num_classes
    module.eval()
    h, w = source.input_size or DEFAULT_ARCH_INPUT
    kind = "state_dict" if state_dict is not None else "architecture"
    return LoadedModel("pytorch", module, kind, (h, w, 3), _head(module).out_features, info=info)


def _head(module: nn.Module) -> nn.Linear:
    """The last Linear layer: ``fc`` in ResNets, ``classifier[-1]`` in VGG and MobileNetV2."""
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return linears[-1]


def _resize_head(module: nn.Module, num_classes: int) -> None:
    old = _head(module)
    for parent in module.modules():
        for name, child in parent.named_children():
            if child is old:
                setattr(parent, name, nn.Linear(old.in_features, num_classes))
                return


def _head_size(state_dict: dict[str, torch.Tensor], arch: str) -> int:
    key = (
        "fc.weight"
        if arch.startswith("resnet")
        else max((k for k in state_dict if k.startswith("classifier.") and k.endswith(".weight")), default="")
    )
    if key not in state_dict:
        raise InvalidInput(f"The state_dict has no classifier weights for {arch}; is it really a {arch}?", field="arch")
    return int(state_dict[key].shape[0])


def _load_strict(module: nn.Module, state_dict: dict[str, torch.Tensor], arch: str) -> None:
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise InvalidInput(
            f"The state_dict does not match {arch}: {_first_line(exc)}. Check --arch, or upload a .pt2 instead.",
            field="arch",
        ) from exc


# --- shapes -----------------------------------------------------------------------------------------------------


def _input_shape_from_first_conv(module: nn.Module, source: ModelSource) -> tuple[int, int, int]:
    """Channels from the first convolution's weights; size from ``source.input_size`` or 224x224."""
    for name, tensor in list(module.state_dict().items()):
        if name.endswith("weight") and tensor.dim() == 4:
            h, w = source.input_size or DEFAULT_ARCH_INPUT
            return h, w, int(tensor.shape[1])
    raise InvalidInput("The model has no convolution, so its input shape is unknown; upload a .pt2 instead.")


@torch.no_grad()
def _num_classes(module: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Runs one dummy image: the only way that works for graphs, scripts and eager modules alike."""
    h, w, c = input_shape
    try:
        output = module(torch.zeros(1, c, h, w))
    except Exception as exc:
        raise InvalidInput(
            f"The model does not run on a 1x{c}x{h}x{w} image ({_first_line(exc)}); give the input size it expects."
        ) from exc
    if not isinstance(output, torch.Tensor) or output.dim() != 2:
        got = (
            f"a tensor of shape {tuple(output.shape)}"
            if isinstance(output, torch.Tensor)
            else f"a {type(output).__name__}"
        )
        raise InvalidInput(
            f"The model returned {got} for one image; EdgeOpt needs a classifier that returns one (batch, classes) "
            "tensor of logits. Export the model with its classification head (pooling, flatten, final linear "
            "layer) and, if it returns several outputs, wrap it so forward returns only the logits."
        )
    return int(output.shape[1])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
