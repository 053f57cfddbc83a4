"""Dataset uploads that decode to far more than they weigh are refused before decoding, and the service stays small.

Each payload is built here. The server runs in its own process (``edgeopt serve``) so its memory can be watched
alone: the pixel bomb is four 6000x6000 PNGs (about 140 KB zipped, 144 million pixels), the zip bomb is an entry of
zeros that inflates past the dataset's inflated-bytes budget (lowered here so the test builds it in a second).
"""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from PIL import Image

from tests.runner.live import LiveServer, server_env
from tests.service.conftest import experiment_body

INFLATED_BUDGET = 32 * 1024**2
RSS_LIMIT = 500 * 1024**2


def pixel_bomb() -> bytes:
    png = io.BytesIO()
    Image.new("L", (6000, 6000)).save(png, format="PNG")  # one colour: compresses to ~35 KB
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("cats/1.png", "cats/2.png", "dogs/1.png", "dogs/2.png"):
            archive.writestr(name, png.getvalue())
    return buffer.getvalue()


def zip_bomb(inflated: int = 2 * INFLATED_BUDGET) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name in ("cats/1.png", "dogs/1.png"):
            with archive.open(name, "w") as entry:
                zeros = bytes(1024**2)
                for _ in range(inflated // len(zeros) // 2):
                    entry.write(zeros)
    return buffer.getvalue()


class PeakRss:
    """The largest resident set size of a process, sampled every 20 ms while the block runs."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    env = server_env(tmp_path, EDGEOPT_MAX_DATASET_INFLATED_BYTES=str(INFLATED_BUDGET))
    live = LiveServer(tmp_path, env).start()
    yield live
    live.stop()


@pytest.mark.parametrize(
    ("payload", "message"),
    [(pixel_bomb, "pixels; at most"), (zip_bomb, "over the dataset limit")],
    ids=["pixel_bomb", "zip_bomb"],
)
def test_bombs_are_refused_before_decoding_and_the_service_stays_small(
    server: LiveServer, tmp_path: Path, payload: object, message: str
) -> None:
    body = payload()  # type: ignore[operator]  # one of the builders above
    assert len(body) < 1024**2 * 2  # small on the wire
    with httpx.Client(base_url=server.url, timeout=120) as client:
        experiment = client.post("/api/experiments", json=experiment_body()).json()
        assert server.process is not None
        with PeakRss(server.process.pid) as rss:
            response = client.post(
                f"/api/experiments/{experiment['id']}/dataset", files={"file": ("bomb.zip", body)}
            )
        assert response.status_code == 413, response.text
        assert message in response.json()["detail"]
        assert client.get(f"/api/experiments/{experiment['id']}").json()["dataset"] == "digits"
    assert rss.peak < RSS_LIMIT, f"the service reached {rss.peak / 1024**2:.0f} MB"
    assert not [p for p in (tmp_path / "datasets").rglob("*") if p.is_file()]
