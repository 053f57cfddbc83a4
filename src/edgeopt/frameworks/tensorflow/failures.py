"""One readable line instead of a TensorFlow stack: the guard around every Keras technique's ``apply``.

TensorFlow, tfmot and the TFLite converter raise many exception types whose text is a multi-line stack or a graph
dump. EdgeOpt's own errors (``Unsupported`` -> skipped, ``TechniqueFailed``, ``Cancelled``) pass through; anything
else becomes a ``TechniqueFailed`` with one sentence that says what failed and what to do; the exception itself
(type, text, stack) goes to EdgeOpt's log, never to the user.
The root causes found so far are fixed where they arise; this guard is for the ones not yet seen.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from edgeopt.errors import EdgeOptError, TechniqueFailed

F = TypeVar("F", bound=Callable[..., Any])


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
                f"{self.name} stopped on an error inside TensorFlow for this model that EdgeOpt does not yet handle "
                "(the details are in EdgeOpt's log). Please report it with the model's architecture; the other "
                "techniques' results are unaffected."
            ) from exc

    return guarded  # type: ignore[return-value]
