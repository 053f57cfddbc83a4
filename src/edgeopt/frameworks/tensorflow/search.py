"""The Keras side of the strength search (``edgeopt.strength_search``): score Keras candidates on validation.

Candidates are Keras models scored in inference mode on the validation split the pipeline carved from the train
split; the chosen setting is then built once more with the technique's full fine-tune and converted, and the
pipeline measures that ``.tflite`` on the test split like any other artifact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgeopt import strength_search
from edgeopt.progress import StageReporter
from edgeopt.report import StrengthSearch
from edgeopt.strength_search import Candidate, SearchContext
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
    search = ctx.search

    def score() -> float:  # called only when a search runs
        return val_accuracy(original, search)  # type: ignore[arg-type]

    return strength_search.choose_strength(search, technique, fixed, score, evaluate, reporter, ladder)


def finish_record(record: StrengthSearch | None, model: Any, ctx: TechniqueContext) -> None:
    """Scores the final (fully fine-tuned) model on validation, so the record shows where the choice landed."""
    if record is not None and ctx.search is not None:
        record.chosen_val_accuracy = val_accuracy(model, ctx.search)
