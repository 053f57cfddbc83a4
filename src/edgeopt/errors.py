"""Error hierarchy shared by the engine, the CLI and the service.

The split matters to callers: ``InvalidInput`` is the user's fault (HTTP 4xx, CLI exit 2) and its message must
say what was wrong and how to fix it; ``TechniqueFailed`` is isolated to one run and reported in the result;
``Unsupported`` means a technique cannot honestly do what its name says for this model or framework, and the run
is reported as ``skipped`` with that sentence.
"""

from __future__ import annotations


class EdgeOptError(Exception):
    """Base class; ``str(error)`` is always a sentence a user can act on."""


class InvalidInput(EdgeOptError):
    """Bad model, dataset, option or file supplied by the user."""

    def __init__(self, message: str, *, field: str | None = None, status_code: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.status_code = status_code


class NotFound(InvalidInput):
    """A named thing (experiment, run, artifact) does not exist."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status_code=404)


class TechniqueFailed(EdgeOptError):
    """A technique ran and failed; the pipeline records it and goes on with the next one."""


class Unsupported(EdgeOptError):
    """A technique cannot transform this kind of model; the run is reported as ``skipped`` with this reason."""


class Cancelled(EdgeOptError):
    """The user cancelled the experiment; raised at the next stage boundary."""
