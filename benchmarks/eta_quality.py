"""ETA quality on a full seven-technique run of a demo model, through the real service and WebSocket.

At 10 %, 25 %, 50 % and 75 % of the actual run time, compare the overall ETA the user saw last with the time that was
actually left. Run from the repository root:

    .venv/bin/python -m benchmarks.eta_quality --framework pytorch
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.results_file import append_section
from tests.runner.live import TERMINAL, LiveServer, Stream, create_experiment, server_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--framework", default="pytorch", choices=["pytorch", "tensorflow"])
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgeopt-eta-"))
    commit = _commit()
    load_before = os.getloadavg()[0]
    model = work / ("demo.pt2" if args.framework == "pytorch" else "demo.keras")
    subprocess.run(
        [sys.executable, "-m", "edgeopt.cli", "demo-model", "--framework", args.framework, "--out", str(model)],
        check=True,
        env=server_env(work),
    )
    server = LiveServer(work, server_env(work)).start()
    try:
        with server.client() as client:
            fields = {"epochs": args.epochs} if args.epochs is not None else {}
            exp = create_experiment(client, model, args.framework, **fields)
            stream = Stream(server, exp["id"])
            stream.next(timeout=20)
            started = time.monotonic()
            client.post(f"/api/experiments/{exp['id']}/start").raise_for_status()
            final = stream.until(lambda m: m["type"] in TERMINAL, timeout=3600)
            ended = time.monotonic()
    finally:
        server.stop()
    total = ended - started
    load_after = os.getloadavg()[0]
    _write_trace(work, stream, started)
    samples = [
        (t - started, m["overall_progress"]["eta_seconds"])
        for m, t in zip(stream.messages, stream.arrivals, strict=True)
        if m["type"] == "progress_update"
    ]
    rows = []
    for share in (0.10, 0.25, 0.5, 0.75):
        moment = share * total
        seen = [eta for t, eta in samples if t <= moment]
        eta = seen[-1] if seen else float("nan")
        actual = total - moment
        rows.append((share, eta, actual, abs(eta - actual) / actual))
    lines = [
        f"## ETA quality, {args.framework} demo model ({dt.date.today().isoformat()})",
        "",
        f"Command: `.venv/bin/python -m benchmarks.eta_quality --framework {args.framework}`"
        + (f" `--epochs {args.epochs}`" if args.epochs is not None else ""),
        f"Code: commit {commit}; load average (1 min) {load_before:.1f} before, {load_after:.1f} after.",
        f"Outcome: {final['type']}; total run time {total:.1f} s; {len(samples)} progress updates.",
        "",
        "| at | ETA shown (s) | actual remaining (s) | error |",
        "|---|---|---|---|",
        *[f"| {int(s * 100)} % | {eta:.0f} | {act:.1f} | {err * 100:.0f} % |" for s, eta, act, err in rows],
        "",
        f"Target: every error within 35 %: {'met' if all(r[3] <= 0.35 for r in rows) else 'MISSED'}.",
        "",
    ]
    append_section("eta", "ETA quality", lines)


def _commit() -> str:
    """The commit the service ran, marked when the working tree differs from it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    return head.stdout.strip() + (" with uncommitted changes" if dirty.stdout.strip() else "")


def _write_trace(work: Path, stream: Stream, started: float) -> None:
    """What the user saw at each update and what the ETA model believed at each stage change (its log lines), so
    a wrong estimate can be traced to its cause: ``trace.jsonl`` and ``eta.log`` next to the server's log."""
    with (work / "trace.jsonl").open("w") as out:
        for message, arrived in zip(stream.messages, stream.arrivals, strict=True):
            if message["type"] != "progress_update":
                continue
            current, overall = message["current_technique"], message["overall_progress"]
            row = {
                "t": round(arrived - started, 2),
                "technique": current["name"],
                "stage": current["stage"],
                "percent": current["progress_percent"],
                "eta": overall["eta_seconds"],
            }
            out.write(json.dumps(row) + "\n")
    lines = [line for line in (work / "server.log").read_text().splitlines() if '"edgeopt.eta"' in line]
    (work / "eta.log").write_text("\n".join(json.loads(line)["message"] for line in lines) + "\n")
    print(f"Trace: {work / 'trace.jsonl'}, {work / 'eta.log'}")


if __name__ == "__main__":
    main()
