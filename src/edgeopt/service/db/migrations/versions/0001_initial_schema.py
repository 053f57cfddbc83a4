"""Initial schema: experiments, their files, runs, recommendation and live progress.

Revision ID: 0001
Revises:
Create Date: 2026-11-29

Written for both SQLite and PostgreSQL: portable column types only, constraint names spelled out (they follow
``models.NAMING_CONVENTION``) so later migrations can refer to them on either backend.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, *, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _experiment_fk(table: str) -> sa.Column:
    return sa.Column(
        "experiment_id",
        sa.String(length=32),
        sa.ForeignKey("experiments.id", name=f"fk_{table}_experiment_id_experiments", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("framework", sa.String(length=32), nullable=False),
        sa.Column("dataset", sa.String(length=100), nullable=False),
        sa.Column("device", sa.String(length=32), nullable=False),
        sa.Column("goal", sa.String(length=32), nullable=False),
        sa.Column("constraints", sa.JSON(), nullable=False),
        sa.Column("techniques", sa.JSON(), nullable=False),
        sa.Column("arch", sa.String(length=32), nullable=True),
        sa.Column("epochs", sa.Integer(), nullable=True),
        sa.Column("technique_configs", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("baseline", sa.JSON(), nullable=True),
        sa.Column("lineage", sa.JSON(), nullable=True),
        _timestamp("created_at", nullable=False),
        _timestamp("updated_at", nullable=False),
        _timestamp("started_at", nullable=True),
        _timestamp("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_experiments"),
    )
    op.create_index("ix_experiments_created_at", "experiments", ["created_at"])
    op.create_index("ix_experiments_status", "experiments", ["status"])

    op.create_table(
        "model_files",
        sa.Column("id", sa.String(length=32), nullable=False),
        _experiment_fk("model_files"),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("technique", sa.String(length=32), nullable=True),
        sa.Column("format", sa.String(length=32), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("original_filename", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        _timestamp("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_files"),
        sa.UniqueConstraint("path", name="uq_model_files_path"),
    )
    op.create_index("ix_model_files_experiment_id", "model_files", ["experiment_id"])

    op.create_table(
        "optimization_runs",
        sa.Column("id", sa.String(length=32), nullable=False),
        _experiment_fk("optimization_runs"),
        sa.Column("technique", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("accuracy", sa.Float(), nullable=True),
        sa.Column("accuracy_drop", sa.Float(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("compressed_size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("compression_ratio", sa.Float(), nullable=True),
        sa.Column("params", sa.BigInteger(), nullable=True),
        sa.Column("flops", sa.BigInteger(), nullable=True),
        sa.Column("sparsity", sa.Float(), nullable=True),
        sa.Column("latency_host_ms", sa.Float(), nullable=True),
        sa.Column("latency_host_p90_ms", sa.Float(), nullable=True),
        sa.Column("precision", sa.String(length=16), nullable=True),
        sa.Column("artifact", sa.String(length=255), nullable=True),
        sa.Column("estimates", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        _timestamp("started_at", nullable=True),
        _timestamp("finished_at", nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_optimization_runs"),
        sa.UniqueConstraint("experiment_id", "technique", name="uq_optimization_runs_experiment_technique"),
    )
    op.create_index("ix_optimization_runs_experiment_id", "optimization_runs", ["experiment_id"])

    op.create_table(
        "recommendations",
        sa.Column("id", sa.String(length=32), nullable=False),
        _experiment_fk("recommendations"),
        sa.Column("goal", sa.String(length=32), nullable=False),
        sa.Column("constraints", sa.JSON(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        _timestamp("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_recommendations"),
        sa.UniqueConstraint("experiment_id", name="uq_recommendations_experiment_id"),
    )

    op.create_table(
        "experiment_progress",
        sa.Column("id", sa.String(length=32), nullable=False),
        _experiment_fk("experiment_progress"),
        sa.Column("current_technique", sa.String(length=32), nullable=True),
        sa.Column("stage", sa.String(length=200), nullable=False),
        sa.Column("technique_percent", sa.Float(), nullable=False),
        sa.Column("technique_eta_s", sa.Float(), nullable=True),
        sa.Column("completed_techniques", sa.Integer(), nullable=False),
        sa.Column("total_techniques", sa.Integer(), nullable=False),
        sa.Column("overall_percent", sa.Float(), nullable=False),
        sa.Column("overall_eta_s", sa.Float(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        _timestamp("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_experiment_progress"),
        sa.UniqueConstraint("experiment_id", name="uq_experiment_progress_experiment_id"),
    )


def downgrade() -> None:
    op.drop_table("experiment_progress")
    op.drop_table("recommendations")
    op.drop_index("ix_optimization_runs_experiment_id", table_name="optimization_runs")
    op.drop_table("optimization_runs")
    op.drop_index("ix_model_files_experiment_id", table_name="model_files")
    op.drop_table("model_files")
    op.drop_index("ix_experiments_status", table_name="experiments")
    op.drop_index("ix_experiments_created_at", table_name="experiments")
    op.drop_table("experiments")
