"""Every change of an experiment's status, as one guarded transition.

``TRANSITIONS`` is the only table of which status may follow which. ``transition`` applies one as a compare-and-set:
``UPDATE experiments SET status = <to> WHERE id = <id> AND status IN (<from>)`` (a ``DELETE`` for ``delete``), whose
row count says whether this caller won. Routes (start, cancel, delete, uploads) and the job runner all go through
it, so two requests racing on the same experiment can never both win: on PostgreSQL the second statement waits for
the first one's row lock and then re-checks the status, on SQLite writers are serialised. The loser is answered by
``refusal`` (409 with the reason, or 404 when the experiment is gone), never by a stale-row error (500), and a
worker is only ever spawned for an experiment this module moved to ``running``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from edgeopt.errors import InvalidInput, NotFound
from edgeopt.service.db.models import ACTIVE_STATUSES, EXPERIMENT_STATUSES, Experiment, utcnow

KEEP = "keep"  # target of a transition that only claims the row under its current status (a dataset upload)
DELETED = "deleted"  # target of the transition that removes the row


@dataclass(frozen=True)
class Transition:
    sources: frozenset[str]
    target: str


UPLOADABLE = frozenset({"created", "ready"})
RESTARTABLE = frozenset({"ready", "failed", "cancelled", "interrupted"})

TRANSITIONS: dict[str, Transition] = {
    # Files can be (re)placed only before the experiment has run: results must describe the files they came from.
    "upload_model": Transition(UPLOADABLE, "ready"),
    "upload_dataset": Transition(UPLOADABLE, KEEP),
    # An interrupted, failed or cancelled experiment resumes, keeping its completed runs.
    "start": Transition(RESTARTABLE, "queued"),
    "cancel_queued": Transition(frozenset({"queued"}), "cancelled"),
    # The job runner's own steps.
    "run": Transition(frozenset({"queued"}), "running"),
    "complete": Transition(frozenset({"running"}), "completed"),
    "fail": Transition(frozenset({"running"}), "failed"),
    "cancel_running": Transition(frozenset({"running"}), "cancelled"),
    "interrupt": Transition(frozenset({"running"}), "interrupted"),
    # Start-up sweep: the uploaded model's file is missing from storage, so the experiment needs a new upload.
    "lose_model": Transition(frozenset({"ready"}), "created"),
    # A queued or running experiment has a worker (or is about to) touching its files.
    "delete": Transition(frozenset(EXPERIMENT_STATUSES) - ACTIVE_STATUSES, DELETED),
}


def transition(session: Session, experiment_id: str, action: str, **values: Any) -> bool:
    """Apply ``action`` to the experiment if its status allows it; True if this call made the change.

    ``values`` are further columns set in the same statement (``error``, ``started_at``...). The caller commits;
    until then the row stays locked against any other transition (PostgreSQL row lock, SQLite write lock).
    """
    rule = TRANSITIONS[action]
    guard = (Experiment.id == experiment_id, Experiment.status.in_(rule.sources))
    if rule.target == DELETED:
        statement: Any = delete(Experiment).where(*guard)
    else:
        changes: dict[str, Any] = {"updated_at": utcnow(), **values}
        if rule.target != KEEP:
            changes["status"] = rule.target
        statement = update(Experiment).where(*guard).values(**changes)
    result = session.execute(statement.execution_options(synchronize_session=False))
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]  # a CursorResult for UPDATE/DELETE


def require(session: Session, experiment_id: str, action: str, **values: Any) -> None:
    """``transition`` for a route: if it is refused, roll back and raise what the user should be told."""
    if transition(session, experiment_id, action, **values):
        return
    current = session.scalar(select(Experiment.status).where(Experiment.id == experiment_id))
    session.rollback()
    raise refusal(action, experiment_id, current)


def refusal(action: str, experiment_id: str, current: str | None) -> InvalidInput:
    """Why ``action`` cannot happen to an experiment whose status is ``current`` (None: it does not exist)."""
    if current is None:
        return NotFound(f"No experiment with id {experiment_id!r}.")
    if action in ("upload_model", "upload_dataset"):
        message = (
            f"The experiment is {current}; files can only be uploaded before it starts. "
            "Create a new experiment to optimize another model."
        )
    elif action == "start" and current in ACTIVE_STATUSES:
        message = f"The experiment is already {current}."
    elif action == "start" and current == "created":
        message = "Upload a model (or choose an architecture) before starting."
    elif action == "start":
        message = (
            "The experiment has completed; change the goal through its recommendation, or create a new experiment "
            "to run it again."
        )
    elif action == "delete":
        message = f"The experiment is {current}; cancel it before deleting it."
    elif action in ("cancel_queued", "cancel"):
        message = f"The experiment is {current}; only a queued or running one can be cancelled."
    else:
        message = f"The experiment is {current}; it cannot be changed that way now."
    return InvalidInput(message, status_code=409)
