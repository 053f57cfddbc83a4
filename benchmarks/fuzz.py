"""Fuzz the whole OpenAPI schema of a live ``edgeopt serve`` with schemathesis; the service must never answer 5xx.

A real server runs in a subprocess (PostgreSQL with ``--database-url``, in a schema of its own that is dropped
afterwards; SQLite otherwise). The schemathesis command line runs every phase (examples, coverage, fuzzing, stateful
sequences through the links it infers) against ``/openapi.json`` with the ``not_a_server_error`` check, repeating
fuzzing and stateful sequences until ``--max-time`` is spent. Reported: the cases schemathesis generated and how
many failed, and, counted independently from the server's own access log, every answer by status (5xx must be 0).
The short run inside ``make test`` is ``tests/service/test_fuzz.py``. Run from the repository root:

    .venv/bin/python -m benchmarks.fuzz --max-examples 200 --max-time 240 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from sqlalchemy.engine import make_url

from benchmarks.api_load import service_database
from benchmarks.results_file import append_section
from tests.runner.live import LiveServer, server_env

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CASES = re.compile(r"(\d+) generated(?:, (\d+) passed)?(?:, (\d+) failed)?(?:, (\d+) errored)?(?:, (\d+) skipped)?")


def _statuses(log: Path) -> Counter[int]:
    """Answers by HTTP status from the server's JSON access log (one line per request)."""
    counts: Counter[int] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        if '"edgeopt.access"' not in line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record.get("status"), int):
            counts[record["status"]] += 1
    return counts


def _cases(output: str) -> dict[str, int]:
    """schemathesis's own summary line: ``Test cases: N generated, N passed, N failed``."""
    tail = output[output.rfind("Test cases:") :] if "Test cases:" in output else ""
    match = CASES.search(tail)
    if not match:
        return {}
    keys = ("generated", "passed", "failed", "errored", "skipped")
    return {key: int(value) for key, value in zip(keys, match.groups(), strict=True) if value is not None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-examples", type=int, default=200, help="Examples per operation and phase.")
    parser.add_argument("--max-time", type=int, default=240, help="Seconds for the whole schemathesis run.")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default=None, help="A PostgreSQL server (SQLAlchemy URL); default SQLite.")
    parser.add_argument("--no-write", action="store_true", help="Print the results without appending them.")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="edgeopt-fuzz-") as tmp,
        service_database(args.database_url, Path(tmp)) as database_url,
    ):
        storage = Path(tmp)
        server = LiveServer(storage, server_env(storage, EDGEOPT_DATABASE_URL=database_url)).start()
        command = [
            str(SCHEMATHESIS),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            str(args.max_examples),
            "--max-time",
            str(args.max_time),
            "--seed",
            str(args.seed),
            "--workers",
            "1",
            "--continue-on-failure",
            "--no-color",
        ]
        started = time.monotonic()
        try:
            run = subprocess.run(command, capture_output=True, text=True, check=False, cwd=storage)
        finally:
            server.stop()
        elapsed = time.monotonic() - started
        statuses = _statuses(storage / "server.log")
        server_log_errors = [
            line for line in (storage / "server.log").read_text(errors="replace").splitlines() if '"error"' in line
        ]
    cases = _cases(run.stdout)
    server_errors = sum(count for status, count in statuses.items() if status >= 500)
    backend = make_url(args.database_url).get_backend_name() if args.database_url else "sqlite"
    lines = [
        f"## schemathesis over the whole schema on {backend} ({dt.date.today().isoformat()})",
        "",
        f"Command: `.venv/bin/python -m benchmarks.fuzz --max-examples {args.max_examples} --max-time {args.max_time}"
        f" --seed {args.seed}" + (" --database-url <PostgreSQL server>`" if args.database_url else "`"),
        "",
        f"- schemathesis: `{' '.join(['schemathesis', *command[1:2], '<server>/openapi.json', *command[3:]])}`, "
        f"exit code {run.returncode}, {elapsed:.0f} s",
        "- cases: " + (", ".join(f"{value} {key}" for key, value in cases.items()) or "no summary line found"),
        f"- requests the server answered: {sum(statuses.values())}; by status: "
        + ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items())),
        f"- 5xx answers: {server_errors}; error lines in the server log: {len(server_log_errors)}",
    ]
    if run.returncode != 0 or server_errors:
        lines += ["", "```", run.stdout[-4000:], "```"]
    if args.no_write:
        print("\n".join(lines))
    else:
        append_section("fuzz", "API fuzzing", [*lines, ""])
    if run.returncode != 0 or server_errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
