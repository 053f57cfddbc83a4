"""Load check: 200 WebSocket clients on one running experiment, and the API's latency meanwhile.

Every client must receive every message, in the same order. Delivery lag is measured per message as the time
between the first and the last of the 200 clients receiving it (the messages carry no server timestamp: their
shape is fixed by the contract). Meanwhile one client polls ``GET /api/experiments`` and the p50/p99 of its
latency are reported. Run from the repository root:

    .venv/bin/python -m benchmarks.ws_load --clients 200
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from benchmarks.results_file import append_section
from tests.runner.live import TERMINAL, LiveServer, create_experiment, server_env


async def _client(url: str, ready: asyncio.Event, counter: list[int], total: int) -> list[tuple[str, float]]:
    received: list[tuple[str, float]] = []
    async with connect(url, open_timeout=60, max_queue=None) as socket:
        first = json.loads(await socket.recv())
        assert first["type"] == "snapshot"
        counter[0] += 1
        if counter[0] == total:
            ready.set()
        async for raw in socket:
            received.append((raw if isinstance(raw, str) else raw.decode(), time.monotonic()))
            if json.loads(received[-1][0])["type"] in TERMINAL:
                break
    return received


async def _poll(base: str, stop: asyncio.Event) -> list[float]:
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        while not stop.is_set():
            start = time.perf_counter()
            response = await client.get("/api/experiments")
            latencies.append((time.perf_counter() - start) * 1000)
            response.raise_for_status()
            await asyncio.sleep(0.05)
    return latencies


Received = list[tuple[str, float]]


async def run(server: LiveServer, experiment_id: str, clients: int) -> tuple[list[Received], list[float]]:
    url = f"{server.ws_url}/ws/experiments/{experiment_id}"
    ready = asyncio.Event()
    counter = [0]
    tasks = [asyncio.create_task(_client(url, ready, counter, clients)) for _ in range(clients)]
    await asyncio.wait_for(ready.wait(), timeout=120)
    stop = asyncio.Event()
    poller = asyncio.create_task(_poll(server.url, stop))
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        (await client.post(f"/api/experiments/{experiment_id}/start")).raise_for_status()
    streams = await asyncio.gather(*tasks)
    stop.set()
    return streams, await poller


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--techniques", default="ptq_int8,ptq_int4,prune_structured")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgeopt-load-"))
    model = work / "demo.pt2"
    subprocess.run([sys.executable, "-m", "edgeopt.cli", "demo-model", "--framework", "pytorch", "--out", str(model)],
                   check=True, env=server_env(work))
    server = LiveServer(work, server_env(work)).start()
    try:
        with server.client() as client:
            exp = create_experiment(client, model, "pytorch", techniques=args.techniques.split(","), epochs=1)
        streams, latencies = asyncio.run(run(server, exp["id"], args.clients))
    finally:
        server.stop()
    reference = [text for text, _ in streams[0]]
    complete = sum(1 for stream in streams if [text for text, _ in stream] == reference)
    lags = [
        (max(stream[i][1] for stream in streams) - min(stream[i][1] for stream in streams)) * 1000
        for i in range(len(reference))
    ]
    p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) >= 100 else max(latencies)
    lines = [
        f"## WebSocket load ({dt.date.today().isoformat()})",
        "",
        f"Command: `.venv/bin/python -m benchmarks.ws_load --clients {args.clients} --techniques {args.techniques}`",
        "",
        f"- clients: {args.clients}; messages per client: {len(reference)}; clients that received every message "
        f"in order: {complete} of {len(streams)}",
        f"- delivery lag (first to last client, per message): median {statistics.median(lags):.1f} ms, "
        f"max {max(lags):.1f} ms",
        f"- GET /api/experiments during the run: {len(latencies)} requests, median "
        f"{statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms",
        "",
    ]
    append_section("ws_load", "WebSocket load", lines)


if __name__ == "__main__":
    main()
