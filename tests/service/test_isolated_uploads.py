"""Uploads are checked and datasets decoded in a limited child process, so no upload can grow the API process.

The payloads are built here. The dataset budgets are raised for the server so that the pixel bomb passes the header
checks (``tests/service/test_dataset_budget.py`` covers those) and reaches the decoder, where the child's memory
limit stops it; the API process, measured alone, stays small, and nothing of a refused upload is left on disk.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from edgeopt.errors import InvalidInput
from edgeopt.isolated import Limits, run_isolated
from tests.runner.live import LiveServer, server_env
from tests.service.conftest import experiment_body
from tests.service.isolated_targets import allocate, refuse, sleep
from tests.service.test_dataset_budget import RSS_LIMIT, PeakRss

CHILD_MEMORY = 1024**3
BOMB_SIDE = 6000
BOMB_IMAGES = 8  # 8 x 36 M pixels: 1.15 GB as the float32 stack the loader builds, past the child's 1 GiB


def big_pixel_bomb() -> bytes:
    png = io.BytesIO()
    Image.new("L", (BOMB_SIDE, BOMB_SIDE)).save(png, format="PNG")  # one colour: compresses to ~35 KB
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for index in range(BOMB_IMAGES):
            archive.writestr(f"{('cats', 'dogs')[index % 2]}/{index}.png", png.getvalue())
    return buffer.getvalue()


def saved_model_zip_bomb(inflated: int = 256 * 1024**2) -> bytes:
    """A "SavedModel" whose saved_model.pb is zeros inflating a thousandfold (issue 15's temp-folder leak)."""
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("m/saved_model.pb", "w", force_zip64=True) as entry,
    ):
        zeros = bytes(1024**2)
        for _ in range(inflated // len(zeros)):
            entry.write(zeros)
    return buffer.getvalue()


def leftovers(storage: Path) -> list[Path]:
    """Every file and folder an upload left under the storage's upload areas."""
    return sorted(p for area in ("models", "datasets") for p in (storage / area).rglob("*"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    env = server_env(
        tmp_path,
        EDGEOPT_MAX_DATASET_PIXELS=str(10**9),
        EDGEOPT_MAX_IMAGE_PIXELS=str(BOMB_SIDE * BOMB_SIDE),
        EDGEOPT_ISOLATED_MEMORY_BYTES=str(CHILD_MEMORY),
        TMPDIR=str(tmp_path / "tmp"),
    )
    (tmp_path / "tmp").mkdir()
    live = LiveServer(tmp_path, env).start()
    yield live
    live.stop()


def test_a_pixel_bomb_past_the_budget_checks_dies_in_the_child_not_the_service(
    server: LiveServer, tmp_path: Path
) -> None:
    body = big_pixel_bomb()
    assert len(body) < 1024**2  # small on the wire
    with httpx.Client(base_url=server.url, timeout=120) as client:
        experiment = client.post("/api/experiments", json=experiment_body()).json()
        assert server.process is not None
        with PeakRss(server.process.pid) as rss:
            response = client.post(f"/api/experiments/{experiment['id']}/dataset", files={"file": ("bomb.zip", body)})
        assert response.status_code == 413, response.text
        assert "Decoding the dataset needs more than 1,024 MB of memory" in response.json()["detail"]
        assert "EDGEOPT_ISOLATED_MEMORY_BYTES" in response.json()["detail"]
        assert client.get(f"/api/experiments/{experiment['id']}").json()["dataset"] == "digits"
    assert rss.peak < RSS_LIMIT, f"the service reached {rss.peak / 1024**2:.0f} MB"
    assert leftovers(tmp_path) == []


def test_a_zipped_saved_model_bomb_is_refused_and_leaves_nothing(server: LiveServer, tmp_path: Path) -> None:
    body = saved_model_zip_bomb()
    with httpx.Client(base_url=server.url, timeout=120) as client:
        experiment = client.post("/api/experiments", json=experiment_body(framework="tensorflow")).json()
        assert server.process is not None
        with PeakRss(server.process.pid) as rss:
            response = client.post(f"/api/experiments/{experiment['id']}/upload", files={"file": ("m.zip", body)})
        assert response.status_code == 400, response.text
        assert "zip bomb" in response.json()["detail"]
        assert client.get(f"/api/experiments/{experiment['id']}").json()["status"] == "created"
    assert rss.peak < RSS_LIMIT, f"the service reached {rss.peak / 1024**2:.0f} MB"
    assert leftovers(tmp_path) == []
    # The server's temp folder holds only multiprocessing's own folder for the forkserver's socket (removed at exit):
    # no edgeopt-savedmodel-* or any other folder of the refused upload.
    assert [p.name for p in (tmp_path / "tmp").iterdir() if not p.name.startswith("pymp-")] == []


# --- the child process's limits, directly ------------------------------------------------------------------------


def test_past_its_memory_the_child_fails_and_the_caller_gets_a_413_sentence() -> None:
    limits = Limits(memory_bytes=512 * 1024**2, seconds=60, what="Checking the test file")
    assert run_isolated(allocate, 64, limits=limits) == 64 * 1024**2
    with pytest.raises(InvalidInput, match=r"Checking the test file needs more than 512 MB of memory") as caught:
        run_isolated(allocate, 2048, limits=limits)
    assert caught.value.status_code == 413


def test_past_its_time_the_child_is_killed_and_the_caller_gets_a_413_sentence() -> None:
    limits = Limits(memory_bytes=1024**3, seconds=1, what="Checking the test file")
    with pytest.raises(InvalidInput, match=r"took longer than 1 s") as caught:
        run_isolated(sleep, 600, limits=limits)
    assert caught.value.status_code == 413


def test_the_childs_refusal_reaches_the_caller_unchanged() -> None:
    with pytest.raises(InvalidInput, match="not what it claims") as caught:
        run_isolated(refuse, limits=Limits(memory_bytes=1024**3, seconds=60))
    assert (caught.value.status_code, caught.value.field) == (415, "file")
