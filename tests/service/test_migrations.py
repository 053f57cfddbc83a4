"""The one migration history runs on SQLite and PostgreSQL, matches the models, and goes down and up again."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from edgeopt.report import LatencyStats, RunResult
from edgeopt.service.db.migrate import current_revision, downgrade, head_revision, upgrade
from edgeopt.service.db.models import Base, Experiment, OptimizationRun, utcnow
from edgeopt.service.db.session import make_engine, make_session_factory

TABLES = {
    "experiments",
    "model_files",
    "optimization_runs",
    "recommendations",
    "experiment_progress",
    "board_agents",
    "board_measurements",
}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_creates_the_schema_the_models_describe(database_url: str) -> None:
    assert current_revision(database_url) is None
    upgrade(database_url)
    assert current_revision(database_url) == head_revision()
    assert _tables(database_url) == TABLES
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert differences == []  # a model changed without a migration would show up here


def test_downgrade_and_upgrade_round_trip(database_url: str) -> None:
    upgrade(database_url)
    upgrade(database_url)  # a second upgrade is a no-op, as `edgeopt serve` does it at every start
    downgrade(database_url, "base")
    assert _tables(database_url) == set()
    assert current_revision(database_url) is None
    upgrade(database_url)
    assert _tables(database_url) == TABLES


def test_rows_round_trip_with_aware_timestamps_and_json(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    factory = make_session_factory(engine)
    started = datetime(2026, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC)
    result = RunResult(
        technique="ptq_int8",
        status="completed",
        accuracy=0.97,
        size_bytes=3_000_000_000,  # beyond 32-bit: BigInteger on both backends
        latency_ms=LatencyStats(host=1.5, host_p90=1.9),
        config={"calibration_samples": 256},
    )
    try:
        with factory() as session:
            experiment = Experiment(
                framework="pytorch",
                dataset="digits",
                device="rpi4",
                goal="balanced",
                constraints={"max_accuracy_drop": 0.01},
                techniques=["ptq_int8"],
                started_at=started,
            )
            run = OptimizationRun(technique="ptq_int8", started_at=utcnow())
            run.apply_result(result)
            experiment.runs.append(run)
            session.add(experiment)
            session.commit()
            experiment_id = experiment.id
        with factory() as session:
            loaded = session.get(Experiment, experiment_id)
            assert loaded is not None
            assert loaded.started_at == started and loaded.started_at.tzinfo is not None
            assert loaded.created_at.tzinfo is not None
            assert loaded.constraints == {"max_accuracy_drop": 0.01}
            (loaded_run,) = loaded.runs
            assert loaded_run.size_bytes == 3_000_000_000
            assert loaded_run.latency_host_ms == 1.5
            assert loaded_run.to_result() == result
    finally:
        engine.dispose()
