"""Runs record the worker that produced them and how often a worker took them; experiments their task batch.

``optimization_runs.worker_host`` / ``worker_pid``: the Celery worker (or embedded worker process) that ran the
technique. ``attempts``: how many deliveries of the technique's task a worker started (a worker that died mid-task
is retried once). ``experiments.run_token``: names the Celery tasks of the experiment's current start, so a cancel
revokes exactly them and a restarted experiment's new tasks are never mistaken for revoked ones.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("optimization_runs") as batch:
        batch.add_column(sa.Column("worker_host", sa.String(255), nullable=True))
        batch.add_column(sa.Column("worker_pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(sa.Column("run_token", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.drop_column("run_token")
    with op.batch_alter_table("optimization_runs") as batch:
        batch.drop_column("attempts")
        batch.drop_column("worker_pid")
        batch.drop_column("worker_host")
