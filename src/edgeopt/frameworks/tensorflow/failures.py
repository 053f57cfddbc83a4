"""One readable line instead of a TensorFlow stack: the guard around every Keras technique's ``apply``.

TensorFlow, tfmot and the TFLite converter raise many exception types whose text is a multi-line stack or a graph
dump. EdgeOpt's own errors (``Unsupported`` -> skipped, ``TechniqueFailed``, ``Cancelled``) pass through; anything
else becomes a ``TechniqueFailed`` whose message is the first meaningful line, so the report shows a sentence.
The root causes found so far are fixed where they arise; this guard is for the ones not yet seen.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from edgeopt.errors import EdgeOptError, TechniqueFailed

F = TypeVar("F", bound=Callable[..., Any])


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's text (TensorFlow puts the gist there), else its type."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line and not line.startswith(("Traceback", "File ")):
            return line[:limit]
    return type(exc).__name__


def readable_failures(apply: F) -> F:
    """Decorate a technique's ``apply`` so an unexpected exception reaches the report as one sentence."""

    @functools.wraps(apply)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return apply(self, *args, **kwargs)
        except EdgeOptError:
            raise
        except Exception as exc:  # noqa: BLE001 - turned into a sentence, the stack stays in the server log
            raise TechniqueFailed(
                f"{self.name} stopped on an error inside TensorFlow for this model ({type(exc).__name__}: "
                f"{first_line(exc)})."
            ) from exc

    return guarded  # type: ignore[return-value]
