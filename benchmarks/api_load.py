"""Load check of the REST API: concurrent clients creating, uploading, reading and deleting experiments.

A real ``edgeopt serve`` runs in a subprocess. Each client loops until the time is up: create an experiment, upload a
small dataset archive to it, read it back, read the list, and delete it (a client's first and every tenth experiment
stay, so the check afterwards has rows and files to compare). Reported: the answers per operation and status,
p50/p99 latency, and a consistency check of database against storage (no file row without its file, no stored file
without its row, no folder of a deleted experiment). With ``--database-url`` the server uses that PostgreSQL
server, in a schema of its own that is dropped afterwards; without it, a SQLite file. Run from the repository root:

    .venv/bin/python -m benchmarks.api_load --clients 100 --seconds 60 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from benchmarks.results_file import append_section
from edgeopt.service.db.models import Experiment, ModelFile
from edgeopt.service.db.session import make_engine
from edgeopt.service.storage import AREAS
from tests.runner.live import LiveServer, server_env

KEEP_EVERY = 10  # a client's first experiment and every tenth after it stay, for the consistency check to compare
Sample = tuple[str, int, float]  # operation, HTTP status (0: no answer), latency in ms


def _dataset_archive() -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(
        buffer,
        x_train=rng.random((20, 8, 8, 1), dtype=np.float32),
        y_train=np.arange(20) % 2,
        x_test=rng.random((6, 8, 8, 1), dtype=np.float32),
        y_test=np.arange(6) % 2,
    )
    return buffer.getvalue()


async def _timed(samples: list[Sample], operation: str, request: object) -> httpx.Response | None:
    start = time.perf_counter()
    try:
        response = await request  # type: ignore[misc]  # an httpx coroutine
    except httpx.HTTPError:
        samples.append((operation, 0, (time.perf_counter() - start) * 1000))
        return None
    samples.append((operation, response.status_code, (time.perf_counter() - start) * 1000))
    return response


async def _client(base: str, deadline: float, archive: bytes, samples: list[Sample]) -> None:
    body = {"name": "load", "framework": "pytorch", "dataset": "digits", "device": "rpi4"}
    round_number = 0
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        while time.monotonic() < deadline:
            round_number += 1
            created = await _timed(samples, "create", client.post("/api/experiments", json=body))
            if created is None or created.status_code != 201:
                continue
            path = f"/api/experiments/{created.json()['id']}"
            files = {"file": ("data.npz", archive)}
            await _timed(samples, "upload", client.post(f"{path}/dataset", files=files))
            await _timed(samples, "get", client.get(path))
            await _timed(samples, "list", client.get("/api/experiments", params={"limit": 20}))
            if round_number % KEEP_EVERY != 1:
                await _timed(samples, "delete", client.delete(path))


def _consistency(database_url: str, storage: Path) -> list[str]:
    """Every disagreement between the database and the storage dir, as sentences (empty: consistent)."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            experiment_ids = set(connection.scalars(select(Experiment.id)))
            recorded = set(connection.scalars(select(ModelFile.path)))
    finally:
        engine.dispose()
    problems = [f"row without its file: {path}" for path in sorted(recorded) if not (storage / path).is_file()]
    for area in AREAS:
        root = storage / area
        for folder in sorted(root.iterdir()) if root.is_dir() else []:
            if folder.name not in experiment_ids:
                problems.append(f"folder of a deleted experiment: {area}/{folder.name}")
            for entry in sorted(p for p in folder.rglob("*") if p.is_file()):
                relative = entry.relative_to(storage).as_posix()
                if relative not in recorded:
                    problems.append(f"file without its row: {relative}")
    return problems


def _percentile(values: list[float], fraction: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


def _private_schema(server_url: str) -> tuple[str, str]:
    """A fresh schema on the PostgreSQL server and the URL whose connections use it."""
    schema = f"edgeopt_load_{uuid.uuid4().hex[:12]}"
    admin = make_engine(server_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    url = make_url(server_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return schema, url.render_as_string(hide_password=False)


def _drop_schema(server_url: str, schema: str) -> None:
    admin = make_engine(server_url)
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@contextmanager
def service_database(server_url: str | None, storage: Path) -> Iterator[str]:
    """The database a benchmark's server uses: a private schema on ``server_url`` (dropped afterwards), else SQLite."""
    if server_url is None:
        yield f"sqlite:///{storage / 'edgeopt.db'}"
        return
    schema, database_url = _private_schema(server_url)
    try:
        yield database_url
    finally:
        _drop_schema(server_url, schema)


def _report(samples: list[Sample], problems: list[str], args: argparse.Namespace, elapsed: float) -> list[str]:
    backend = make_url(args.database_url).get_backend_name() if args.database_url else "sqlite"
    statuses = Counter(status for _, status, _ in samples)
    server_errors = sum(count for status, count in statuses.items() if status >= 500 or status == 0)
    latencies = [ms for _, _, ms in samples]
    lines = [
        f"## API load, {args.clients} clients for {args.seconds:g} s on {backend} ({dt.date.today().isoformat()})",
        "",
        f"Command: `.venv/bin/python -m benchmarks.api_load --clients {args.clients} --seconds {args.seconds:g}"
        + (" --database-url <PostgreSQL server>`" if args.database_url else "`"),
        "",
        f"- requests: {len(samples)} in {elapsed:.1f} s ({len(samples) / elapsed:.0f}/s); answers by status: "
        + ", ".join(f"{status or 'no answer'}: {count}" for status, count in sorted(statuses.items())),
        f"- 5xx or no answer: {server_errors}",
        f"- latency, all requests: p50 {_percentile(latencies, 0.5):.0f} ms, p99 {_percentile(latencies, 0.99):.0f} ms",
        "",
        "| operation | requests | statuses | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    for operation in ("create", "upload", "get", "list", "delete"):
        rows = [(status, ms) for op, status, ms in samples if op == operation]
        if not rows:
            continue
        counts = Counter(status for status, _ in rows)
        times = [ms for _, ms in rows]
        summary = ", ".join(f"{status}: {count}" for status, count in sorted(counts.items()))
        p50, p99 = _percentile(times, 0.5), _percentile(times, 0.99)
        lines.append(f"| {operation} | {len(rows)} | {summary} | {p50:.0f} | {p99:.0f} |")
    lines += ["", f"- consistency afterwards: {'database and storage agree' if not problems else len(problems)}"]
    lines += [f"  - {problem}" for problem in problems[:20]]
    return lines


async def _load(base: str, clients: int, seconds: float) -> tuple[list[Sample], float]:
    archive = _dataset_archive()
    samples: list[Sample] = []
    start = time.monotonic()
    await asyncio.gather(*(_client(base, start + seconds, archive, samples) for _ in range(clients)))
    return samples, time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--database-url", default=None, help="A PostgreSQL server (SQLAlchemy URL); default SQLite.")
    parser.add_argument("--no-write", action="store_true", help="Print the results without appending them.")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="edgeopt-api-load-") as tmp,
        service_database(args.database_url, Path(tmp)) as database_url,
    ):
        storage = Path(tmp)
        server = LiveServer(storage, server_env(storage, EDGEOPT_DATABASE_URL=database_url)).start()
        try:
            samples, elapsed = asyncio.run(_load(server.url, args.clients, args.seconds))
        finally:
            server.stop()
        problems = _consistency(database_url, storage)
    lines = _report(samples, problems, args, elapsed)
    if args.no_write:
        print("\n".join(lines))
    else:
        append_section("api_load", "API load", [*lines, ""])


if __name__ == "__main__":
    main()
