"""``edgeopt agent``: a board measures its experiments' artifacts for the service and posts the figures back.

It registers what this machine is (``board.identify``: a Raspberry Pi by its device-tree model, anything else by its
CPU, never labelled a Pi), asks ``/api/agents/{id}/jobs/next`` for an artifact of an experiment that targets this
board, downloads it (checking its SHA-256), times it with ``bench.bench`` and posts the result. While it measures it
renews the job's lease, so a slow board keeps its job and a killed one gives it back when the lease runs out
(``service/routes/agents.py``). It speaks plain HTTP with the standard library: nothing to install beyond
``edgeopt[board]``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, TextIO

from edgeopt import catalog
from edgeopt.board import BoardIdentity, identify
from edgeopt.errors import InvalidInput

HEADER = "X-API-Key"  # security.HEADER; not imported to keep the service's web stack off a board
TIMEOUT_S = 60
RETRY_S = (1, 2, 5, 10, 30)  # waits after the service could not be reached, then 30 s each time


class ServiceError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class Unreachable(Exception):
    pass


class Agent:
    def __init__(
        self,
        server: str,
        api_key: str | None,
        *,
        threads: int | None = None,
        accept_any_device: bool = False,
        poll_seconds: float = 5.0,
        log: TextIO | None = None,
    ) -> None:
        if not server.startswith(("http://", "https://")):
            raise InvalidInput(f"--server takes a URL like http://192.168.1.10:8000, not {server!r}.")
        if threads is not None and threads < 1:
            raise InvalidInput(f"--threads must be at least 1, not {threads}.")
        if poll_seconds <= 0:
            raise InvalidInput("--poll-seconds must be positive.")
        self.server = server.rstrip("/")
        self.api_key = api_key
        self.threads = threads
        self.accept_any_device = accept_any_device
        self.poll_seconds = poll_seconds
        self.log = log or sys.stderr
        self.identity: BoardIdentity = identify()
        self.agent_id: str | None = None

    # --- HTTP -------------------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.server + path, data=data, method=method)  # noqa: S310 - http(s) only
        request.add_header("Content-Type", "application/json")
        if self.api_key:
            request.add_header(HEADER, self.api_key)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read() or b"{}").get("detail", exc.reason)
            except ValueError:
                detail = exc.reason
            raise ServiceError(exc.code, str(detail)) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(f"cannot reach {self.server} ({reason})") from exc

    def _download(self, path: str, dest: Path) -> str:
        request = urllib.request.Request(self.server + path)  # noqa: S310
        if self.api_key:
            request.add_header(HEADER, self.api_key)
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, dest.open("wb") as out:  # noqa: S310
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
        except urllib.error.HTTPError as exc:
            raise ServiceError(exc.code, str(exc.reason)) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise Unreachable(f"download from {self.server} failed ({getattr(exc, 'reason', exc)})") from exc
        return digest.hexdigest()

    def say(self, line: str) -> None:
        print(f"edgeopt agent: {line}", file=self.log, flush=True)

    # --- the work ---------------------------------------------------------------------------------------------
    def register(self) -> str:
        runtimes = [
            runtime
            for runtime, package in (("executorch-xnnpack", "executorch"), ("litert-xnnpack", "ai_edge_litert"))
            if importlib.util.find_spec(package) is not None
        ]
        body = {
            "name": self.identity.name,
            "device": self.identity.device,
            "is_raspberry_pi": self.identity.is_raspberry_pi,
            "machine": self.identity.machine[:64],
            "cpu": self.identity.cpu[:300],
            "cores": self.identity.cores,
            "runtimes": runtimes,
            "accept_any_device": self.accept_any_device,
        }
        try:
            _, agent = self._request("POST", "/api/agents", body)
        except ServiceError as exc:
            if exc.status == 401:
                raise InvalidInput(
                    f"The service at {self.server} refused the API key: pass the one it was started with "
                    "(--api-key or EDGEOPT_AGENT_API_KEY)."
                ) from exc
            raise InvalidInput(f"The service at {self.server} refused to register this board: {exc.detail}") from exc
        except Unreachable as exc:
            raise InvalidInput(f"Cannot register: {exc}; check the URL and that edgeopt serve runs there.") from exc
        self.agent_id = agent["id"]
        return agent["id"]

    def run(self, max_jobs: int | None = None) -> int:
        """Poll and measure until stopped (or ``max_jobs`` done); returns the number of jobs done."""
        ident = self.identity
        if ident.device is None and not self.accept_any_device:
            boards = ", ".join(d.title for d in catalog.DEVICES)
            raise InvalidInput(
                f"This machine is {ident.name}, not one of the boards EdgeOpt targets ({boards}), so it would take "
                "no jobs; pass --accept-any-device to measure other boards' experiments here anyway."
            )
        self.register()
        target = ident.device if ident.device else "any board (--accept-any-device)"
        self.say(f"registered {ident.name} as agent {self.agent_id}; taking jobs for {target}")
        done = failures = 0
        while max_jobs is None or done < max_jobs:
            try:
                status, job = self._request("POST", f"/api/agents/{self.agent_id}/jobs/next")
                failures = 0
            except Unreachable as exc:
                wait = RETRY_S[min(failures, len(RETRY_S) - 1)]
                failures += 1
                self.say(f"{exc}; retrying in {wait} s")
                time.sleep(wait)
                continue
            except ServiceError as exc:
                if exc.status == 401:
                    raise InvalidInput(f"The service at {self.server} now refuses the API key.") from exc
                if exc.status == 404:  # the service's database was reset: introduce this board again
                    self.register()
                    continue
                self.say(f"the service answered {exc}; retrying in {self.poll_seconds:g} s")
                time.sleep(self.poll_seconds)
                continue
            if status == 204 or not job:
                time.sleep(self.poll_seconds)
                continue
            self.measure(job)
            done += 1
        return done

    def measure(self, job: dict[str, Any]) -> None:
        from edgeopt.bench import bench

        where = f"/api/agents/{self.agent_id}/jobs/{job['id']}"
        label = f"{job['technique']} of experiment {job['experiment_id'][:8]}"
        lease_s = max(1.0, float(job["lease_seconds"]))
        stop = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(where, lease_s / 3.0, stop), daemon=True)
        renewer.start()
        self.say(f"measuring {label} (lease {lease_s:g} s, attempt {job.get('attempts', 1)})")
        try:
            with tempfile.TemporaryDirectory(prefix="edgeopt-agent-") as tmp:
                path = Path(tmp) / Path(job["artifact"]).name
                digest = self._download(job["download_url"], path)
                if job.get("sha256") and digest != job["sha256"]:
                    raise InvalidInput(f"The downloaded {path.name} does not match the service's SHA-256.")
                threads = self.threads or job.get("threads") or self.identity.cores
                result = bench(path, threads=int(threads))
            body: dict[str, Any] = {
                "latency_ms": result.latency_ms.host,
                "latency_p90_ms": result.latency_ms.host_p90,
                "noisy": result.latency_ms.noisy,
                "threads": result.threads,
                "runtime": result.runtime,
                "input_shape": result.input_shape,
            }
            self.say(f"{label}: {result.latency_ms.host:.3f} ms median at {result.threads} threads")
        except InvalidInput as exc:
            body = {"error": str(exc)}
            self.say(f"{label}: could not measure: {exc}")
        except (ServiceError, Unreachable) as exc:
            self.say(f"{label}: download failed ({exc}); the job returns to the queue when its lease ends")
            return
        finally:
            stop.set()
            renewer.join(timeout=5)
        try:
            self._request("POST", f"{where}/result", body)
        except (ServiceError, Unreachable) as exc:
            self.say(f"{label}: the service did not take the result ({exc})")

    def _renew(self, where: str, every_s: float, stop: threading.Event) -> None:
        while not stop.wait(every_s):
            try:
                self._request("POST", f"{where}/renew")
            except ServiceError as exc:
                self.say(f"lease renewal refused ({exc.detail})")
                return
            except Unreachable:
                continue

