"""The PyTorch side of the strength search (``edgeopt.strength_search``): score eager candidates on validation.

Candidates are eager modules scored on the validation split the pipeline carved from the train split; the chosen
setting is then built once more with the technique's full fine-tune and exported, and the pipeline measures that
artifact on the test split like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from edgeopt import strength_search
from edgeopt.frameworks.pytorch.training import accuracy
from edgeopt.progress import StageReporter
from edgeopt.report import StrengthSearch
from edgeopt.strength_search import Candidate, SearchContext
from edgeopt.techniques import TechniqueContext


def val_accuracy(module: nn.Module, search: SearchContext) -> float:
    return accuracy(module, search.x_val, search.y_val)


def choose_strength(
    ctx: TechniqueContext,
    technique: str,
    fixed: float,
    original: nn.Module,
    evaluate: Callable[[float], Candidate],
    reporter: StageReporter,
    ladder: Sequence[float] | None = None,
) -> tuple[float, StrengthSearch | None]:
    """The setting to build: ``fixed`` (the config's) when no search runs, else the search's choice and record."""
    search = ctx.search

    def score() -> float:  # called only when a search runs
        return val_accuracy(original, search)  # type: ignore[arg-type]

    return strength_search.choose_strength(search, technique, fixed, score, evaluate, reporter, ladder)


def finish_record(record: StrengthSearch | None, module: nn.Module, ctx: TechniqueContext) -> None:
    """Scores the final (fully fine-tuned) model on validation, so the record shows where the choice landed."""
    if record is not None and ctx.search is not None:
        record.chosen_val_accuracy = val_accuracy(module, ctx.search)
