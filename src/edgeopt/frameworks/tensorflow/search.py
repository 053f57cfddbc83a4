"""The Keras side of the strength search (``edgeopt.strength_search``): score Keras candidates on validation.

Candidates are Keras models scored in inference mode on the validation split the pipeline carved from the train
split; the chosen setting is then built once more with the technique's full fine-tune and converted, and the
pipeline measures that ``.tflite`` on the test split like any other artifact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgeopt.progress import StageReporter
from edgeopt.report import StrengthSearch
from edgeopt.strength_search import KNOBS, Candidate, SearchContext, run_search
from edgeopt.techniques import TechniqueContext

EVAL_BATCH = 256


def val_accuracy(model: Any, search: SearchContext) -> float:
    """Top-1 on the validation split of a Keras model (inference mode: BatchNorm statistics, no dropout) or of a
    ``.tflite`` predictor (``runtime.load_tflite``)."""
    predict = getattr(model, "predict", None)
    outputs = predict(search.x_val, batch_size=EVAL_BATCH, verbose=0) if predict is not None else model(search.x_val)
    return float(np.mean(np.argmax(outputs, axis=1) == search.y_val))


def choose_strength(
    ctx: TechniqueContext,
    technique: str,
    fixed: float,
    original: Any,
    evaluate: Callable[[float], Candidate],
    reporter: StageReporter,
    ladder: Sequence[float] | None = None,
) -> tuple[float, StrengthSearch | None]:
    """The setting to build: ``fixed`` (the config's) when no search runs, else the search's choice and record.

    ``original`` (the user's Keras model, or its FP32 ``.tflite`` predictor) is scored once on validation as the
    budget's reference.
    """
    if ctx.search is None or (ladder is not None and not ladder):
        return fixed, None  # no search, or no setting on the ladder changes this (narrow) model
    reporter.stage("Scoring the original model on the validation split", 0.0)
    baseline = val_accuracy(original, ctx.search)
    record = run_search(ctx.search, KNOBS[technique], baseline, evaluate, reporter, ladder=ladder)
    return record.chosen, record


def finish_record(record: StrengthSearch | None, model: Any, ctx: TechniqueContext) -> None:
    """Scores the final (fully fine-tuned) model on validation, so the record shows where the choice landed."""
    if record is not None and ctx.search is not None:
        record.chosen_val_accuracy = val_accuracy(model, ctx.search)
