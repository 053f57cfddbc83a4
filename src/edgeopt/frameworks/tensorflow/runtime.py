"""Run a ``.tflite`` artifact the way the board will: LiteRT with its default XNNPACK delegate, fixed threads.

XNNPACK refuses some valid files when it builds its runtime ("failed to create XNNPACK runtime", seen on a
quantization-aware NASNetMobile; which node it objected to was not found). LiteRT's own kernels run those, so such a
file is run without the default delegate, and ``xnnpack_refusal`` gives the reason for the result's notes
(``runtime_note``).

The predictor takes float images and returns float logits whatever the file's precision: for INT8 input/output
tensors it quantizes the input and dequantizes the output with the scale and zero point stored in the file, so an
INT8 model is scored on exactly the pixels a board would feed it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from edgeopt.errors import InvalidInput

CHUNK = 64  # images per invoke when the file allows a dynamic batch: fast evaluation, bounded memory


@dataclass(frozen=True)
class TensorQuant:
    """How a tensor is stored; ``scale == 0`` means float (no quantization)."""

    dtype: np.dtype
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0 and np.issubdtype(self.dtype, np.integer)

    def to_dict(self) -> dict[str, object]:
        return {"dtype": np.dtype(self.dtype).name, "scale": self.scale, "zero_point": self.zero_point}


def _quant(detail: dict) -> TensorQuant:
    scale, zero_point = detail["quantization"]
    return TensorQuant(np.dtype(detail["dtype"]), float(scale), int(zero_point))


def io_quantization(path: Path) -> dict[str, dict[str, object]]:
    """The input and output tensors' dtype, scale and zero point, as recorded in the file."""
    interpreter = Interpreter(model_path=str(path))
    return {
        "input": _quant(interpreter.get_input_details()[0]).to_dict(),
        "output": _quant(interpreter.get_output_details()[0]).to_dict(),
    }


def input_spec(path: Path) -> tuple[list[int], np.dtype]:
    """The first input tensor's shape and dtype, as recorded in the file (``edgeopt bench`` feeds it)."""
    try:
        interpreter = Interpreter(model_path=str(path))
    except ValueError as exc:
        raise InvalidInput(f"{Path(path).name} is not a valid .tflite file ({exc}).") from exc
    detail = interpreter.get_input_details()[0]
    return [int(d) for d in detail["shape"]], np.dtype(detail["dtype"])


def _to_input(x: np.ndarray, quant: TensorQuant) -> np.ndarray:
    if not quant.quantized:
        return x.astype(quant.dtype, copy=False)
    info = np.iinfo(quant.dtype)
    q = np.round(x / quant.scale) + quant.zero_point
    return np.clip(q, info.min, info.max).astype(quant.dtype)


def _from_output(y: np.ndarray, quant: TensorQuant) -> np.ndarray:
    if not quant.quantized:
        return y.astype(np.float32, copy=False)
    return ((y.astype(np.float32) - quant.zero_point) * quant.scale).astype(np.float32)


def load_tflite(path: Path, threads: int = 1) -> Callable[[np.ndarray], np.ndarray]:
    """A predict function ``NHWC float32 batch -> float32 logits`` backed by one LiteRT interpreter.

    Files converted with a dynamic batch are resized to the batch at hand (at most ``CHUNK`` per invoke; batch 1
    stays allocated for latency timing); files with a fixed batch of 1 are run image by image.
    """
    path = Path(path)
    interpreter, _ = _allocated(path, threads)
    in_detail = interpreter.get_input_details()[0]
    out_detail = interpreter.get_output_details()[0]
    in_quant, out_quant = _quant(in_detail), _quant(out_detail)
    dynamic = int(in_detail.get("shape_signature", in_detail["shape"])[0]) == -1
    state = {"batch": int(in_detail["shape"][0])}

    def run(batch: np.ndarray) -> np.ndarray:
        if batch.shape[0] != state["batch"]:
            interpreter.resize_tensor_input(in_detail["index"], [batch.shape[0], *batch.shape[1:]])
            interpreter.allocate_tensors()
            state["batch"] = batch.shape[0]
        interpreter.set_tensor(in_detail["index"], _to_input(batch, in_quant))
        interpreter.invoke()
        return _from_output(interpreter.get_tensor(out_detail["index"]), out_quant).copy()

    def predict(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        step = CHUNK if dynamic else 1
        if x.shape[0] <= step:
            return run(x)
        outputs = []
        for start in range(0, x.shape[0], step):
            chunk = x[start : start + step]
            if dynamic and chunk.shape[0] < step:  # pad the tail so the allocation is reused
                padded = np.concatenate([chunk, np.repeat(chunk[-1:], step - chunk.shape[0], axis=0)])
                outputs.append(run(padded)[: chunk.shape[0]])
            else:
                outputs.append(run(chunk))
        return np.concatenate(outputs)

    return predict


def _allocated(path: Path, threads: int = 1) -> tuple[Interpreter, str | None]:
    """An interpreter with its tensors allocated, with XNNPACK where it accepts the file; and why it did not."""
    try:
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
    except ValueError as exc:
        raise InvalidInput(f"{path.name} is not a valid .tflite file ({exc}).") from exc
    try:
        interpreter.allocate_tensors()
        return interpreter, None
    except RuntimeError as exc:
        if "XNNPACK" not in str(exc):
            raise
        refusal = " ".join(str(exc).split())
    builtin = Interpreter(
        model_path=str(path),
        num_threads=threads,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    builtin.allocate_tensors()
    return builtin, refusal


def xnnpack_refusal(path: Path) -> str | None:
    """XNNPACK's error when it refuses to run ``path`` (LiteRT's kernels then run it), or None when it runs it."""
    return _allocated(Path(path))[1]


def runtime_note(path: Path) -> str:
    """The result's sentence when the board's default runtime setup cannot run ``path``, else ""."""
    refusal = xnnpack_refusal(path)
    if refusal is None:
        return ""
    return (
        f" LiteRT's default XNNPACK delegate refuses this file ({refusal[:200]}), so it was measured on LiteRT's "
        "built-in kernels, and on the board it must be loaded the same way: Interpreter(model_path=..., "
        "experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES); the default Interpreter "
        "raises on it. The board estimates assume XNNPACK and may be optimistic."
    )


def accuracy(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a predictor; for tests and technique self-checks (the pipeline measures on its own)."""
    return float(np.mean(np.argmax(predict(x), axis=1) == y))
