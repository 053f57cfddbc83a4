"""ptq_int4 for Keras: ai-edge-quantizer INT4 weight recipes applied to the FP32 ``.tflite``.

Two recipe kinds write real 4-bit weight tensors (packed two per byte): ``dynamic_wi4_afp32`` (LiteRT quantizes
activations on the fly and runs integer kernels) and ``weight_only_wi4_afp32`` (a DEQUANTIZE op restores float
weights and the layers compute in float).

When the strength is searched (the pipeline's default) or ``int8_layers`` is set, the result is mixed precision
with ``dynamic_wi4_afp32``: every weighted op is ranked by how much 4 bits on it alone move the logits (LiteRT, a
slice of the TRAIN split), and the ``int8_layers`` most sensitive keep 8-bit weights. The search bisects that count
for the fewest 8-bit layers whose validation accuracy keeps the budget; each candidate is the real quantized file.

Without either, the older selection runs: each recipe kind is tried with every weighted layer at int4, and with the
first and the last weighted layer at int8 (the input convolution and the classifier are the most sensitive to 4
bits and hold a tiny share of the weights; on the demo CNN all-int4 lost 5 points, this kept all but 0.6).
Candidates are scored in LiteRT on a slice of the TRAIN split against the FP32 file, in order of preference
(smallest and fastest first); the first within ``TOLERANCE`` of FP32 is kept, else the best. The test split is never
used to choose.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from edgeopt.errors import InvalidInput, TechniqueFailed
from edgeopt.frameworks.tensorflow.convert import to_tflite
from edgeopt.frameworks.tensorflow.failures import readable_failures
from edgeopt.frameworks.tensorflow.runtime import accuracy, load_tflite
from edgeopt.report import StrengthSearch
from edgeopt.strength_search import Candidate as SearchCandidate
from edgeopt.strength_search import int8_ladder, search_note
from edgeopt.techniques import PtqInt4Config, TechniqueConfig, TechniqueContext, TechniqueOutput

SELECTION_IMAGES = 512  # train images used to compare the candidates
SENSITIVITY_IMAGES = 128  # train images whose logits rank the ops' sensitivity to 4 bits
MIXED_RECIPE = "dynamic_wi4_afp32"  # mixed precision keeps LiteRT's integer kernels
TOLERANCE = 0.01  # a candidate within 1 point of FP32 on the selection slice is good enough
WEIGHTED_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"})
RUNTIME_NOTE = {
    "dynamic_wi4_afp32": "LiteRT quantizes activations to int8 at run time and runs integer kernels on the "
    "packed weights",
    "weight_only_wi4_afp32": "LiteRT dequantizes the weights to float and the layers compute in float32",
}


@dataclass(frozen=True)
class Candidate:
    recipe: str  # ai-edge-quantizer's name for the recipe kind
    edge_int8: bool  # first and last weighted layers kept at int8

    @property
    def label(self) -> str:
        return self.recipe + (" (first/last layer int8)" if self.edge_int8 else " (all layers int4)")


CANDIDATES = (
    Candidate("dynamic_wi4_afp32", False),
    Candidate("dynamic_wi4_afp32", True),
    Candidate("weight_only_wi4_afp32", False),
    Candidate("weight_only_wi4_afp32", True),
)


def weighted_op_names(fp32: Path) -> list[str]:
    """Output tensor names of the weighted ops in the file, in order (what a recipe's regex matches)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(fp32))
    tensors = interpreter.get_tensor_details()
    weighted = [op for op in interpreter._get_ops_details() if op["op_name"] in WEIGHTED_OPS]  # noqa: SLF001
    if not weighted:
        raise TechniqueFailed("The model has no convolution or dense layer whose weights INT4 could store.")
    return [tensors[op["outputs"][0]]["name"] for op in weighted]


def edge_layer_names(fp32: Path) -> tuple[str, str]:
    """Output tensor names of the first and last weighted ops in the file."""
    names = weighted_op_names(fp32)
    return names[0], names[-1]


def _scope(names: Sequence[str]) -> str:
    # ai-edge-quantizer matches an op's "scope": its output tensor names, each followed by ";".
    return "|".join(f"^{re.escape(name)};$" for name in sorted(set(names)))


def quantize_weights(
    fp32: Path, out: Path, recipe: str, *, int8: Sequence[str] = (), only: Sequence[str] | None = None
) -> Path:
    """Per-channel symmetric int4 weights (every weighted op, or ``only`` those), the ops in ``int8`` at 8 bits."""
    from ai_edge_quantizer import qtyping, quantizer, recipe_manager

    manager = recipe_manager.RecipeManager()
    add = manager.add_dynamic_config if recipe.startswith("dynamic") else manager.add_weight_only_config
    every = qtyping.TFLOperationName.ALL_SUPPORTED
    channelwise = qtyping.QuantGranularity.CHANNELWISE
    add(regex=".*" if only is None else _scope(only), operation_name=every, num_bits=4, granularity=channelwise)
    if int8:  # later configs override earlier ones for the layers they match
        add(regex=_scope(int8), operation_name=every, num_bits=8, granularity=channelwise)
    quant = quantizer.Quantizer(str(fp32))
    quant.load_quantization_recipe(manager.get_quantization_recipe())
    out.unlink(missing_ok=True)
    quant.quantize(enable_progress_report=False).export_model(str(out))
    return out


def quantize_int4(fp32: Path, out: Path, candidate: Candidate, edges: tuple[str, str]) -> Path:
    """Apply one candidate (per-channel symmetric int4 weights) to an FP32 ``.tflite``."""
    return quantize_weights(fp32, out, candidate.recipe, int8=edges if candidate.edge_int8 else ())


def sensitivity_order(
    fp32: Path, names: Sequence[str], x: np.ndarray, probe: Path, recipe: str = MIXED_RECIPE
) -> list[str]:
    """``names`` from most to least sensitive to 4 bits: the logit error with that op alone at 4 bits (LiteRT).

    Needs no labels, so train images serve; one quantization of a small model takes a few hundredths of a second.
    """
    reference = load_tflite(fp32)(x)
    error = {}
    try:
        for name in names:
            quantize_weights(fp32, probe, recipe, only=[name])
            error[name] = float(np.mean((load_tflite(probe)(x) - reference) ** 2))
    finally:
        probe.unlink(missing_ok=True)
    return sorted(names, key=lambda name: -error[name])


def weight_types(path: Path) -> dict[str, tuple[str, str]]:
    """Per weighted op (by output tensor name): its kind and the stored type of its weights (INT4, INT8, FLOAT32).

    Read from the file itself, so notes count what the recipe really quantized: LiteRT's dynamic recipe, for one,
    leaves depthwise convolutions in float.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    types = {value: key for key, value in vars(schema.TensorType).items() if not key.startswith("_")}
    ops = {value: key for key, value in vars(schema.BuiltinOperator).items() if not key.startswith("_")}
    found: dict[str, tuple[str, str]] = {}
    for index in range(graph.OperatorsLength()):
        op = graph.Operators(index)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = ops.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "")
        if kind in WEIGHTED_OPS and op.InputsLength() > 1:
            weight, output = graph.Tensors(op.Inputs(1)), graph.Tensors(op.Outputs(0))
            found[output.Name().decode()] = (kind, types.get(weight.Type(), "?"))
    return found


def layer_label(tensor_name: str) -> str:
    """A readable name for an op's output tensor: the layer that produced it (``model/Conv_1/Conv2D`` -> Conv_1)."""
    last = tensor_name.split(";")[-1].split("/")
    return last[-2] if len(last) > 1 else last[-1]


def _selection_slice(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(x))[:SELECTION_IMAGES]
    return x[order], y[order]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


class PtqInt4:
    name: ClassVar[str] = "ptq_int4"
    searches_strength: ClassVar[bool] = True
    runs_on_fixed_graph: ClassVar[bool] = True  # it rewrites the FP32 .tflite, which a bare graph converts to

    @readable_failures
    def apply(self, ctx: TechniqueContext, config: TechniqueConfig) -> TechniqueOutput:
        if not isinstance(config, PtqInt4Config):
            config = PtqInt4Config.model_validate(config.model_dump())
        if config.group_size is not None:
            raise InvalidInput(
                "ptq_int4 group_size is not available for TensorFlow: ai-edge-quantizer applies grouped INT4 to "
                "fully-connected layers only and leaves convolutions in float. Leave it unset (per output channel).",
                field="config.ptq_int4.group_size",
            )
        work = ctx.work_dir
        ctx.reporter.stage("Converting the model to an FP32 .tflite", 0.05)
        fp32 = to_tflite(ctx.model.model, work / f"{self.name}.fp32.tflite")
        if ctx.search is not None or config.int8_layers is not None:
            try:
                return self._mixed_precision(ctx, config, fp32)
            finally:
                fp32.unlink(missing_ok=True)
        candidate_file = work / f"{self.name}.candidate.tflite"
        artifact = work / f"{self.name}.tflite"
        x, y = _selection_slice(ctx.data.x_train, ctx.data.y_train, config.seed)
        scores: dict[str, float] = {}
        failures: dict[str, str] = {}
        try:
            edges = edge_layer_names(fp32)
            reference = accuracy(load_tflite(fp32), x, y)
            best: tuple[float, Candidate] | None = None
            for index, candidate in enumerate(CANDIDATES):
                ctx.reporter.stage(f"Quantizing weights to INT4: {candidate.label}", 0.15 + 0.2 * index)
                try:
                    quantize_int4(fp32, candidate_file, candidate, edges)
                    score = accuracy(load_tflite(candidate_file), x, y)
                except Exception as exc:  # noqa: BLE001 - a recipe the runtime cannot run is reported, not fatal
                    failures[candidate.label] = _first_line(exc)
                    continue
                scores[candidate.label] = score
                if best is None or score > best[0]:
                    best = (score, candidate)
                    candidate_file.replace(artifact)
                if score >= reference - TOLERANCE:
                    break
            if best is None:
                detail = "; ".join(f"{k}: {v}" for k, v in failures.items())
                raise TechniqueFailed(f"No INT4 recipe produced a model LiteRT can run ({detail}).")
        finally:
            fp32.unlink(missing_ok=True)
            candidate_file.unlink(missing_ok=True)
        chosen = best[1]
        ctx.reporter.stage("Quantized", 1.0)
        layers = "the first and last weighted layers int8, the rest int4" if chosen.edge_int8 else "all int4"
        compared = ", ".join(f"{k} {v:.1%}" for k, v in scores.items())
        notes = (
            f"ai-edge-quantizer {chosen.recipe}, per-channel symmetric weights ({layers}), 4-bit values packed two "
            f"per byte; {RUNTIME_NOTE[chosen.recipe]}. Chosen on {len(x)} train images (FP32 {reference:.1%}; "
            f"{compared})."
        )
        if failures:
            notes += " Not usable: " + "; ".join(f"{k} ({v})" for k, v in failures.items()) + "."
        if not config.symmetric:
            notes += " symmetric=False is not offered: LiteRT's int4 kernels take symmetric weights only."
        return TechniqueOutput(
            artifact=artifact,
            precision="int4",
            model=ctx.model.model,
            notes=notes,
            extra={
                "recipe": chosen.recipe,
                "edge_layers_int8": chosen.edge_int8,
                "selection_scores": scores,
                "selection_fp32": reference,
            },
        )

    def _mixed_precision(self, ctx: TechniqueContext, config: PtqInt4Config, fp32: Path) -> TechniqueOutput:
        """``int8_layers`` of the most sensitive ops at 8 bits (searched for the budget unless set), the rest int4."""
        from edgeopt.frameworks.tensorflow.search import choose_strength, val_accuracy

        reporter = ctx.reporter.sub(0.1, 0.9)
        artifact = ctx.work_dir / f"{self.name}.tflite"
        candidate_file = ctx.work_dir / f"{self.name}.candidate.tflite"
        # Only the ops the recipe really gives 4-bit weights are ranked and counted (it leaves some in float).
        quantize_weights(fp32, candidate_file, MIXED_RECIPE)
        names = [name for name, (_, kind) in weight_types(candidate_file).items() if kind == "INT4"]
        if not names:
            raise TechniqueFailed(f"ai-edge-quantizer's {MIXED_RECIPE} gave no layer of this model 4-bit weights.")
        reporter.stage("Ranking the layers by their sensitivity to 4 bits", 0.0)
        x, _ = _selection_slice(ctx.data.x_train, ctx.data.y_train, config.seed)
        ranked = sensitivity_order(fp32, names, x[:SENSITIVITY_IMAGES], candidate_file)
        fp32_bytes = fp32.stat().st_size
        scores: dict[float, float] = {}

        def evaluate(k: float) -> SearchCandidate:
            quantize_weights(fp32, candidate_file, MIXED_RECIPE, int8=ranked[: int(k)])
            scores[k] = val_accuracy(load_tflite(candidate_file), ctx.search)  # type: ignore[arg-type]
            return SearchCandidate(val_accuracy=scores[k], size_ratio=fp32_bytes / candidate_file.stat().st_size)

        ladder = [float(k) for k in int8_ladder(len(ranked))]
        fixed = float(config.int8_layers or 0)
        chosen, record = choose_strength(ctx, self.name, fixed, load_tflite(fp32), evaluate, reporter, ladder=ladder)
        keep = ranked[: int(chosen)]
        reporter.stage(f"Quantizing weights: {len(keep)} layer(s) at 8 bits, the rest at 4", 0.95)
        quantize_weights(fp32, artifact, MIXED_RECIPE, int8=keep)
        candidate_file.unlink(missing_ok=True)
        if record is not None:  # no training follows: the chosen trial's score is the final model's
            record.chosen_val_accuracy = scores.get(chosen)
        ctx.reporter.stage("Quantized", 1.0)
        return TechniqueOutput(
            artifact=artifact,
            precision="int4",
            model=ctx.model.model,
            notes=_mixed_notes(record, weight_types(artifact), keep),
            search=record,
            extra={"recipe": MIXED_RECIPE, "int8_layers": [layer_label(name) for name in keep]},
        )


def _mixed_notes(record: StrengthSearch | None, stored: dict[str, tuple[str, str]], keep: Sequence[str]) -> str:
    counts = {kind: sum(1 for _, t in stored.values() if t == kind) for kind in ("INT4", "INT8", "FLOAT32")}
    notes = (search_note(record) + " " if record else "") + (
        f"ai-edge-quantizer {MIXED_RECIPE}, per-channel symmetric weights: {counts['INT4']} of {len(stored)} weighted "
        f"layers hold 4-bit weights packed two per byte; {RUNTIME_NOTE[MIXED_RECIPE]}."
    )
    if keep:
        labels = [layer_label(name) for name in keep]
        shown = ", ".join(labels[:8]) + (f" and {len(labels) - 8} more" if len(labels) > 8 else "")
        notes += (
            f" Mixed precision: the {len(keep)} layer(s) most sensitive to 4 bits (each ranked by how far 4 bits on "
            f"it alone move the logits, on train images) keep 8-bit weights: {shown}."
        )
    floats = sorted({kind for kind, t in stored.values() if t == "FLOAT32"})
    if counts["FLOAT32"]:
        notes += (
            f" {counts['FLOAT32']} layer(s) keep float weights because the recipe does not quantize them "
            f"({', '.join(floats)})."
        )
    return notes
