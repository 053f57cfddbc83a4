"""Scale-out check: the demo model's 7-technique experiment on 1 and on 2 Celery worker processes.

Real processes throughout: ``edgeopt serve`` (enqueues only), ``edgeopt worker`` x N (``--concurrency 1`` and one
thread each: ``EDGEOPT_THREADS=1``, ``OMP_NUM_THREADS=1`` and the other thread-pool variables), PostgreSQL (a schema
of its own, dropped afterwards) and Redis. For each worker count the wall time is measured from ``start`` to the
``experiment_completed`` message; the ratio 2-worker / 1-worker is
reported, and each technique's accuracy and size are compared between the two runs (same seed). With
``--concurrent 3`` three experiments are also submitted at once to the two workers and compared to the one-worker
run; with ``--cli`` the same experiment also runs once through ``edgeopt optimize`` (same seed) and is compared too.
The CPU seconds the workers got during each run are reported next to the wall time (CPU seconds / wall seconds is
how many cores they actually had), with ``uptime`` before and after: on a shared host that says how far the ratio
measured the fan-out and how far the other jobs. Run from the repository root (minutes of CPU on both cores; never
in the default test suite):

    .venv/bin/python -m benchmarks.scale \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test --redis-url redis://127.0.0.1:6379/0 \\
        --concurrent 3 --cli
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
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

import psutil
from sqlalchemy import text

from benchmarks.results_file import append_section
from edgeopt.catalog import TECHNIQUE_NAMES
from edgeopt.measure import THREAD_ENV_VARS
from edgeopt.service.db.migrate import upgrade
from edgeopt.service.db.session import make_engine
from tests.runner.live import LiveServer, create_experiment, report_figures, server_env

# Each worker process (and the CLI run) trains and measures on one thread, so N workers ask for N cores.
ONE_THREAD = dict.fromkeys(THREAD_ENV_VARS, "1")


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
        **ONE_THREAD,
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


def _cpu_seconds(procs: list[Any]) -> float:
    """User + system CPU seconds used so far by the worker processes and their pool children."""
    total = 0.0
    for proc in procs:
        try:
            tree = psutil.Process(proc.pid)
            for member in [tree, *tree.children(recursive=True)]:
                times = member.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _cli(model: Path, out: Path, env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    """The same experiment through ``edgeopt optimize`` (seed 0, as the service's): wall seconds and report."""
    command = [sys.executable, "-m", "edgeopt.cli", "optimize", str(model), "--framework", "pytorch",
               "--dataset", "digits", "--device", "rpi4", "--seed", "0", "--out", str(out)]  # fmt: skip
    started = time.monotonic()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.monotonic() - started, json.loads((out / "report.json").read_text())


def _run(server: LiveServer, model: Path, count: int) -> tuple[float, list[dict[str, Any]]]:
    """Start ``count`` experiments at once; seconds until the last completed, and each one's report.

    Polled over HTTP once a second rather than read from WebSockets: a socket left unread while another experiment
    is awaited would fall behind and be closed by the server.
    """
    with server.client() as client:
        exps = [create_experiment(client, model, "pytorch", techniques=list(TECHNIQUE_NAMES)) for _ in range(count)]
        started = time.monotonic()
        for exp in exps:
            assert client.post(f"/api/experiments/{exp['id']}/start").status_code == 202
        waiting = {exp["id"] for exp in exps}
        while waiting:
            if time.monotonic() - started > 3 * 3600:
                raise RuntimeError(f"experiments {sorted(waiting)} did not finish in 3 hours")
            time.sleep(1.0)
            for experiment_id in list(waiting):
                status = client.get(f"/api/experiments/{experiment_id}").json()["status"]
                if status in ("failed", "cancelled", "interrupted"):
                    raise RuntimeError(f"experiment {experiment_id} ended {status}")
                if status == "completed":
                    waiting.discard(experiment_id)
        wall = time.monotonic() - started
        return wall, [client.get(f"/api/experiments/{exp['id']}/results").json() for exp in exps]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--concurrent", type=int, default=0, help="also submit this many experiments to 2 workers")
    parser.add_argument("--cli", action="store_true", help="also run the experiment once with `edgeopt optimize`")
    parser.add_argument("--model", type=Path, help="the demo model (`edgeopt demo-model`) if already trained")
    args = parser.parse_args()
    uptime_before = _uptime()

    admin = make_engine(args.database_url)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = args.model or root / "demo.pt2"
        if args.model is None:
            subprocess.run(
                [sys.executable, "-m", "edgeopt.cli", "demo-model", "--framework", "pytorch", "--out", str(model)],
                check=True,
                env=server_env(root),
            )
        walls: dict[int, float] = {}
        cpus: dict[int, float] = {}
        reports: dict[int, dict[str, Any]] = {}
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
                cpu = _cpu_seconds(procs)
                wall, (report,) = _run(server, model, 1)
                walls[workers], reports[workers] = wall, report
                cpus[workers] = _cpu_seconds(procs) - cpu
                print(f"{workers} worker(s): {wall:.1f} s, {cpus[workers]:.0f} CPU s ({_uptime()})", flush=True)
                if workers == 2:  # each part is written as soon as it is measured: a later one may not finish
                    _write(args, walls, cpus, reports, uptime_before)
                if workers == 2 and args.concurrent:
                    cpu = _cpu_seconds(procs)
                    wall, many = _run(server, model, args.concurrent)
                    _write_concurrent(wall, _cpu_seconds(procs) - cpu, many, reports[1])
            finally:
                _stop(server, procs)
                with admin.begin() as connection:
                    connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
        if args.cli:  # after the service's figures are written: this run alone takes as long as the 1-worker one
            cli_wall, cli_report = _cli(
                model, root / "cli", server_env(root / "cli-storage", EDGEOPT_LATENCY_SECONDS="0.5", **ONE_THREAD)
            )
            same = report_figures(cli_report) == report_figures(reports[1])
            lines = [
                f"`edgeopt optimize` (CLI, seed 0, run after the above) on the same model: {cli_wall:.1f} s; accuracy "
                f"and size of every technique identical to the one-worker service run: {'yes' if same else 'no'}. "
                f"`uptime` after it: `{_uptime()}`.",
                *_differences(report_figures(reports[1]), report_figures(cli_report), "CLI"),
                "",
            ]
            append_section("scale", "Scale-out: techniques on Celery workers", lines)


def _differences(one: dict[str, Any], other: dict[str, Any], label: str) -> list[str]:
    """Table rows of the techniques whose (accuracy, bytes) differ from the one-worker run."""
    differing = [t for t in sorted(set(one) | set(other)) if one.get(t) != other.get(t)]
    if not differing:
        return []
    return [
        "",
        f"| technique | 1 worker (accuracy, bytes) | {label} |",
        "|---|---|---|",
        *(f"| {t} | {one.get(t)} | {other.get(t)} |" for t in differing),
    ]


def _write(
    args: argparse.Namespace,
    walls: dict[int, float],
    cpus: dict[int, float],
    reports: dict[int, dict[str, Any]],
    uptime_before: str,
) -> None:
    ratio = walls[2] / walls[1]
    one = report_figures(reports[1])
    flags = (f" --concurrent {args.concurrent}" if args.concurrent else "") + (" --cli" if args.cli else "")
    rows = [
        f"## {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `python -m benchmarks.scale --database-url ... --redis-url ...{flags}`",
        "",
        f"Host: {platform.machine()}, {os.cpu_count()} CPU cores shared with other engineers' work. Demo model "
        "(PyTorch), digits, all 7 techniques, default epochs, seed 0, one run each; workers `--concurrency 1`, "
        "one thread each (EDGEOPT_THREADS=1, OMP_NUM_THREADS=1 and the other pools' variables), "
        "EDGEOPT_LATENCY_SECONDS=0.5.",
        "",
        f"- `uptime` before: `{uptime_before}`",
        f"- `uptime` after the two runs: `{_uptime()}`",
        "",
        "| workers | wall s (start to experiment_completed) | worker CPU s | cores the workers got (CPU s / wall s) |",
        "|---|---|---|---|",
        *(f"| {n} | {walls[n]:.1f} | {cpus[n]:.0f} | {cpus[n] / walls[n]:.2f} |" for n in (1, 2)),
        "",
        f"Ratio 2 / 1 workers: **{ratio:.2f}** (target at most 0.65). Accuracy and size of every technique identical "
        f"between the two runs: {'yes' if one == report_figures(reports[2]) else 'no'}.",
        *_differences(one, report_figures(reports[2]), "2 workers"),
        "",
        "| technique (1-worker run) | accuracy | bytes |",
        "|---|---|---|",
        *(f"| {t} | {acc} | {size} |" for t, (acc, size) in one.items()),
    ]
    rows.append("")
    append_section("scale", "Scale-out: techniques on Celery workers", rows)


def _write_concurrent(wall: float, cpu: float, many: list[dict[str, Any]], reference: dict[str, Any]) -> None:
    one = report_figures(reference)
    identical = all(report_figures(r) == one for r in many)
    rows = [
        f"{len(many)} experiments submitted at once to 2 workers: all completed in {wall:.1f} s ({cpu:.0f} worker "
        f"CPU s, {cpu / wall:.2f} cores); accuracy and size of every technique identical to the one-worker run: "
        f"{'yes' if identical else 'no'}. `uptime` after: `{_uptime()}`.",
    ]
    for index, report in enumerate(many, 1):
        rows += _differences(one, report_figures(report), f"concurrent #{index}")
    rows.append("")
    append_section("scale", "Scale-out: techniques on Celery workers", rows)


if __name__ == "__main__":
    main()
