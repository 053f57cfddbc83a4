"""Board agents and their measurements: ``edgeopt agent`` registers a board, leases jobs, posts measured latency.

Revision ID: 0003_board
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_board"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, *, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "board_agents",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("device", sa.String(length=32), nullable=True),
        sa.Column("is_raspberry_pi", sa.Boolean(), nullable=False),
        sa.Column("machine", sa.String(length=64), nullable=False),
        sa.Column("cpu", sa.String(length=300), nullable=False),
        sa.Column("cores", sa.Integer(), nullable=False),
        sa.Column("accept_any_device", sa.Boolean(), nullable=False),
        sa.Column("runtimes", sa.JSON(), nullable=False),
        _timestamp("created_at", nullable=False),
        _timestamp("last_seen_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_board_agents"),
    )
    op.create_table(
        "board_measurements",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column(
            "experiment_id",
            sa.String(length=32),
            sa.ForeignKey("experiments.id", name="fk_board_measurements_experiment_id_experiments", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("technique", sa.String(length=32), nullable=False),
        sa.Column(
            "agent_id",
            sa.String(length=32),
            sa.ForeignKey("board_agents.id", name="fk_board_measurements_agent_id_board_agents", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _timestamp("lease_expires_at", nullable=True),
        sa.Column("artifact_sha256", sa.String(length=64), nullable=True),
        sa.Column("board", sa.String(length=300), nullable=False),
        sa.Column("device", sa.String(length=32), nullable=True),
        sa.Column("is_raspberry_pi", sa.Boolean(), nullable=False),
        sa.Column("runtime", sa.String(length=64), nullable=True),
        sa.Column("threads", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("latency_p90_ms", sa.Float(), nullable=True),
        sa.Column("noisy", sa.Boolean(), nullable=False),
        sa.Column("input_shape", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _timestamp("created_at", nullable=False),
        _timestamp("measured_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_board_measurements"),
        sa.UniqueConstraint("experiment_id", "technique", name="uq_board_measurements_experiment_technique"),
    )
    op.create_index("ix_board_measurements_experiment_id", "board_measurements", ["experiment_id"])
    op.create_index("ix_board_measurements_status", "board_measurements", ["status"])


def downgrade() -> None:
    op.drop_index("ix_board_measurements_status", table_name="board_measurements")
    op.drop_index("ix_board_measurements_experiment_id", table_name="board_measurements")
    op.drop_table("board_measurements")
    op.drop_table("board_agents")
