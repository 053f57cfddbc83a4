"""Scale-out check: the demo model's 7-technique experiment on 1 and on 2 Celery worker processes.

Real processes throughout: ``edgeopt serve`` (enqueues only), ``edgeopt worker`` x N (``--concurrency 1`` each, the
same ``EDGEOPT_THREADS`` each), PostgreSQL (a schema of its own, dropped afterwards) and Redis. For each worker count
the wall time is measured from ``start`` to the ``experiment_completed`` message; the ratio 2-worker / 1-worker is
reported, and each technique's accuracy and size are compared between the two runs (same seed). With
``--concurrent 3`` three experiments are also submitted at once to the two workers and compared to the one-worker
run. Run from the repository root (minutes of CPU on both cores; never in the default test suite):

    .venv/bin/python -m benchmarks.scale \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test --redis-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text

from benchmarks.results_file import append_section
from edgeopt.catalog import TECHNIQUE_NAMES
from edgeopt.service.db.migrate import upgrade
from edgeopt.service.db.session import make_engine
from tests.runner.live import TERMINAL, LiveServer, Stream, create_experiment, server_env


def _with_schema(url: str, schema: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


def _topology(workdir: Path, database_url: str, redis_url: str, workers: int) -> tuple[LiveServer, list[Any]]:
    env = server_env(
        workdir,
        EDGEOPT_DATABASE_URL=database_url,
        EDGEOPT_BROKER_URL=redis_url,
        EDGEOPT_TASK_QUEUE=f"edgeopt-bench-{uuid.uuid4().hex[:8]}",
        EDGEOPT_LATENCY_SECONDS="0.5",  # the default: latency timed as a user's experiment would be
    )
    procs = []
    for index in range(workers):
        log = (workdir / f"worker{index}.log").open("ab")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "edgeopt.cli", "worker", "--hostname", f"bench{index}@%h"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    deadline = time.monotonic() + 180
    while not all(" ready." in (workdir / f"worker{i}.log").read_text() for i in range(workers)):
        if time.monotonic() > deadline:
            raise RuntimeError("workers did not start")
        time.sleep(0.5)
    return LiveServer(workdir, env).start(), procs


def _stop(server: LiveServer, procs: list[Any]) -> None:
    server.stop()
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _run(server: LiveServer, model: Path, count: int) -> tuple[float, list[dict[str, Any]]]:
    """Start ``count`` experiments at once; seconds until the last completed, and each one's report."""
    with server.client() as client:
        exps = [create_experiment(client, model, "pytorch", techniques=list(TECHNIQUE_NAMES)) for _ in range(count)]
        streams = [Stream(server, exp["id"]) for exp in exps]
        for stream in streams:
            stream.next(timeout=30)
        started = time.monotonic()
        for exp in exps:
            assert client.post(f"/api/experiments/{exp['id']}/start").status_code == 202
    reports = []
    for stream in streams:
        final = stream.until(lambda m: m["type"] in TERMINAL, timeout=3600)
        if final["type"] != "experiment_completed":
            raise RuntimeError(f"experiment ended {final}")
        reports.append(final["report"])
        stream.close()
    return time.monotonic() - started, reports


def _figures(report: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {run["technique"]: (run.get("accuracy"), run.get("size_bytes")) for run in report["runs"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--concurrent", type=int, default=0, help="also submit this many experiments to 2 workers")
    args = parser.parse_args()

    admin = make_engine(args.database_url)
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = root / "demo.pt2"
        subprocess.run(
            [sys.executable, "-m", "edgeopt.cli", "demo-model", "--framework", "pytorch", "--out", str(model)],
            check=True,
            env=server_env(root),
        )
        walls: dict[int, float] = {}
        reports: dict[int, dict[str, Any]] = {}
        concurrent: tuple[float, list[dict[str, Any]]] | None = None
        for workers in (1, 2):
            schema = f"edgeopt_bench_{uuid.uuid4().hex[:12]}"
            with admin.begin() as connection:
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
            url = _with_schema(args.database_url, schema)
            upgrade(url)
            workdir = root / f"w{workers}"
            workdir.mkdir()
            server, procs = _topology(workdir, url, args.redis_url, workers)
            try:
                wall, (report,) = _run(server, model, 1)
                walls[workers], reports[workers] = wall, report
                print(f"{workers} worker(s): {wall:.1f} s", flush=True)
                if workers == 2 and args.concurrent:
                    concurrent = _run(server, model, args.concurrent)
                    print(f"{args.concurrent} experiments on 2 workers: {concurrent[0]:.1f} s", flush=True)
            finally:
                _stop(server, procs)
                with admin.begin() as connection:
                    connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()

    ratio = walls[2] / walls[1]
    same = _figures(reports[1]) == _figures(reports[2])
    load = os.getloadavg()
    extra = f" --concurrent {args.concurrent}" if args.concurrent else ""
    rows += [
        f"## {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `python -m benchmarks.scale --database-url ... --redis-url ...{extra}`",
        f"Host: {platform.machine()}, {os.cpu_count()} CPU cores shared with other engineers' work (load average "
        f"at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}), so the ratio is one noisy sample. Demo model "
        "(PyTorch), digits, all 7 techniques, default epochs, one run each; workers `--concurrency 1`, "
        "EDGEOPT_THREADS=1.",
        "",
        "| workers | wall s (start to experiment_completed) |",
        "|---|---|",
        f"| 1 | {walls[1]:.1f} |",
        f"| 2 | {walls[2]:.1f} |",
        "",
        f"Ratio 2 / 1 workers: **{ratio:.2f}** (target at most 0.65). Accuracy and size of every technique identical "
        f"between the two runs: {'yes' if same else 'no'}.",
    ]
    if concurrent is not None:
        wall, many = concurrent
        identical = all(_figures(r) == _figures(reports[1]) for r in many)
        rows += [
            "",
            f"{len(many)} experiments submitted at once to 2 workers: all completed in {wall:.1f} s; accuracy and size "
            f"identical to the one-worker run: {'yes' if identical else 'no'}.",
        ]
    rows.append("")
    append_section("scale", "Scale-out: techniques on Celery workers", rows)


if __name__ == "__main__":
    main()
