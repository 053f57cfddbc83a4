"""Files under ``EDGEOPT_STORAGE_DIR``: streamed uploads, atomic placement, a sweep keeping disk and DB in step.

The rules this module keeps:
- An upload is parsed from the raw request stream and written in 1 MiB chunks to a temporary file in the folder it
  will end up in, hashed and counted as it goes; memory does not grow with the file, and the limit is enforced the
  moment it is passed (the partial file is deleted), not after the whole body has been spooled somewhere.
- A stored file's name is built by the service (``<file id>-<sanitised stem><suffix the format needs>``); the
  client's filename only contributes a sanitised stem, so ``../../x.pt`` cannot leave the experiment's folder.
- The file is fsynced and renamed into place before its ``ModelFile`` row is committed, and deleted if the commit
  fails. A crash between the two leaves a file that no row names; ``sweep`` (run at start-up) deletes exactly
  those, plus leftover temporary files, so neither an orphan file nor a row pointing to nothing survives.

Folder layout: ``models/<experiment id>/`` holds the original model and (by convention for the job runner)
artifacts in sub-folders; ``datasets/<experiment id>/`` holds a custom dataset archive. Deleting an experiment
removes both folders.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import anyio
import anyio.to_thread
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import ClientDisconnect, Request

from edgeopt.errors import InvalidInput
from edgeopt.service.db.models import Experiment, ModelFile, new_id
from edgeopt.service.status import transition

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024  # bytes written (and hashed) per disk write
TEMP_PREFIX = ".upload-"
TEMP_SUFFIX = ".part"
# Everything but the file part of a multipart body (its headers, small text fields) must stay below this.
MAX_MULTIPART_OVERHEAD = 64 * 1024
STORED_NAME = re.compile(r"^(?P<id>[0-9a-f]{32})-[A-Za-z0-9._-]+$")
MODELS = "models"
DATASETS = "datasets"
AREAS = (MODELS, DATASETS)


def too_large(limit: int) -> InvalidInput:
    return InvalidInput(
        f"The file is larger than the upload limit of {limit:,} bytes; raise EDGEOPT_MAX_UPLOAD_BYTES to accept it.",
        field="file",
        status_code=413,
    )


def safe_stem(filename: str | None) -> str:
    """A harmless name stem from a client's filename: no folders, no dots in front, only ``[A-Za-z0-9._-]``."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")
    return stem[:80].rstrip("._-") or "upload"


def discard_upload(path: Path) -> None:
    """Delete an upload's file, and its experiment's folder when that is left empty (a refused first upload)."""
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty (other files, another upload streaming) or already gone
        path.parent.rmdir()


def _open_temp(folder: Path, temp_path: Path) -> BinaryIO:
    """The temporary file, in a folder that a refused upload racing this one may have just removed."""
    for _ in range(3):
        folder.mkdir(parents=True, exist_ok=True)
        try:
            return temp_path.open("xb")
        except FileNotFoundError:
            continue
    return temp_path.open("xb")


@dataclass
class ReceivedFile:
    """An upload fully written to a temporary file next to its destination, not yet placed or recorded."""

    temp_path: Path
    original_filename: str
    sha256: str
    size_bytes: int

    def discard(self) -> None:
        discard_upload(self.temp_path)


@dataclass
class PlacedFile:
    """An upload renamed to its final name; ``id`` is the id its ``ModelFile`` row must take."""

    id: str
    path: Path
    received: ReceivedFile

    def discard(self) -> None:
        discard_upload(self.path)


@dataclass
class _FilePartWriter:
    """Collects multipart callbacks for one file field; the parser calls these synchronously per received chunk."""

    field_name: str
    max_bytes: int
    handle: BinaryIO
    filename: str | None = None
    size: int = 0
    pending: bytearray = field(default_factory=bytearray)
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    overhead: int = 0
    found: bool = False
    _header_name: bytes = b""
    _header_value: bytes = b""
    _disposition: bytes = b""
    _in_file: bool = False

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._in_file = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        is_target = options.get(b"name") == self.field_name.encode() and b"filename" in options
        if is_target and self.found:
            raise InvalidInput(f"Send exactly one file in the '{self.field_name}' field.", field=self.field_name)
        if is_target:
            self.found = True
            self._in_file = True
            self.filename = options[b"filename"].decode("utf-8", errors="replace")
            if "\x00" in self.filename:  # PostgreSQL refuses NUL in text: it is never part of a real file name
                raise InvalidInput("The file name contains a NUL character; rename the file.", field=self.field_name)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        count = end - start
        if not self._in_file:
            self.overhead += count
            if self.overhead > MAX_MULTIPART_OVERHEAD:
                raise InvalidInput("The form holds too much besides the file; send only the file.", field="file")
            return
        self.size += count
        if self.size > self.max_bytes:
            raise too_large(self.max_bytes)
        self.pending += data[start:end]

    def on_part_end(self) -> None:
        self._in_file = False

    def flush(self) -> None:
        """Hash and write what has been buffered; run in a worker thread so the event loop never waits on disk."""
        if self.pending:
            chunk = bytes(self.pending)
            self.pending.clear()
            self.digest.update(chunk)
            self.handle.write(chunk)

    def finish(self) -> None:
        self.flush()
        self.handle.flush()
        os.fsync(self.handle.fileno())


async def _with_idle_timeout(chunks: AsyncIterator[bytes], idle_timeout_s: float | None) -> AsyncIterator[bytes]:
    """The body's chunks; 408 when the next one takes longer than ``idle_timeout_s`` to arrive."""
    iterator = aiter(chunks)
    while True:
        with anyio.move_on_after(idle_timeout_s) as waited:  # None: wait forever
            chunk = await anext(iterator, None)
        if waited.cancelled_caught:
            raise InvalidInput(
                f"The upload stalled: nothing arrived for {idle_timeout_s:g} s. Send the file again.",
                field="file",
                status_code=408,
            )
        if chunk is None:
            return
        yield chunk


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable: the directory entry is only on disk once the folder itself is synced."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Storage:
    """The storage dir: where uploads are received, placed, recorded and cleaned up."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def area_dir(self, area: str, experiment_id: str) -> Path:
        if area not in AREAS or not re.fullmatch(r"[0-9a-f]{32}", experiment_id):
            raise ValueError(f"not a storage folder: {area}/{experiment_id}")
        return self.root / area / experiment_id

    def absolute(self, relative: str) -> Path:
        """The real path of a stored file; refuses a recorded path that would point outside the storage dir."""
        candidate = (self.root / relative).resolve()
        if not candidate.is_relative_to(self.root):
            raise ValueError(f"stored path escapes the storage dir: {relative!r}")
        return candidate

    def relative(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.root).as_posix()

    async def receive(
        self,
        request: Request,
        folder: Path,
        *,
        max_bytes: int,
        idle_timeout_s: float | None = None,
        field_name: str = "file",
    ) -> ReceivedFile:
        """Stream the multipart field ``field_name`` of ``request`` into a temporary file inside ``folder``.

        With ``idle_timeout_s``, a body that sends nothing for that long is refused with 408 and its partial file
        deleted: a client that stalls cannot keep a request (and its file handle) open forever.
        """
        content_type, params = parse_options_header(request.headers.get("content-type", ""))
        boundary = params.get(b"boundary")
        if content_type != b"multipart/form-data" or not boundary:
            raise InvalidInput(
                f"Send the file as multipart/form-data in a field named '{field_name}'.",
                field=field_name,
                status_code=422,
            )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes + MAX_MULTIPART_OVERHEAD:
            raise too_large(max_bytes)  # refused before reading a byte of the body
        temp_path = folder / f"{TEMP_PREFIX}{uuid.uuid4().hex}{TEMP_SUFFIX}"
        try:
            with _open_temp(folder, temp_path) as handle:
                writer = _FilePartWriter(field_name=field_name, max_bytes=max_bytes, handle=handle)
                parser = MultipartParser(boundary, writer.callbacks())  # type: ignore[arg-type]
                async for chunk in _with_idle_timeout(request.stream(), idle_timeout_s):
                    parser.write(chunk)
                    if len(writer.pending) >= CHUNK_SIZE:
                        await anyio.to_thread.run_sync(writer.flush)
                parser.finalize()
                await anyio.to_thread.run_sync(writer.finish)
        except ClientDisconnect as exc:
            discard_upload(temp_path)
            raise InvalidInput("The upload was interrupted before the file was complete.", field=field_name) from exc
        except FormParserError as exc:
            discard_upload(temp_path)
            raise InvalidInput(f"The multipart body is malformed ({exc}).", field=field_name) from exc
        except BaseException:
            discard_upload(temp_path)
            raise
        if not writer.found:
            discard_upload(temp_path)
            raise InvalidInput(f"No file was sent in the '{field_name}' field.", field=field_name, status_code=422)
        return ReceivedFile(temp_path, writer.filename or "", writer.digest.hexdigest(), writer.size)

    def place(self, received: ReceivedFile, suffix: str) -> PlacedFile:
        """Rename the finished upload to its final, service-chosen name in the same folder.

        The name starts with the id its ``ModelFile`` row will get, so the sweep can tell an unrecorded upload from
        any other file (a job's artifacts) with certainty.
        """
        file_id = new_id()
        final = received.temp_path.parent / f"{file_id}-{safe_stem(received.original_filename)}{suffix}"
        if final.parent != received.temp_path.parent or not STORED_NAME.match(final.name):
            raise ValueError(f"refusing unsafe stored name {final.name!r}")
        os.replace(received.temp_path, final)
        _fsync_dir(final.parent)
        return PlacedFile(file_id, final, received)

    def record(
        self,
        session: Session,
        experiment: Experiment,
        placed: PlacedFile,
        *,
        role: str,
        format: str,
        technique: str | None = None,
        replaces_role: bool = True,
    ) -> ModelFile:
        """Commit the row for a placed file (with whatever changes the caller made to ``experiment``).

        If the commit fails, the file is deleted so nothing points nowhere and nothing is left unnamed. The files of
        rows this one replaces (the previous original model or dataset) are deleted only after the commit.
        """
        replaced = [f for f in experiment.files if f.role == role] if replaces_role else []
        received = placed.received
        row = ModelFile(
            id=placed.id,
            experiment_id=experiment.id,
            role=role,
            technique=technique,
            format=format,
            path=self.relative(placed.path),
            original_filename=received.original_filename[:255],
            sha256=received.sha256,
            size_bytes=received.size_bytes,
        )
        try:
            for old in replaced:
                experiment.files.remove(old)
            experiment.files.append(row)
            session.commit()
        except BaseException:
            session.rollback()
            placed.discard()
            raise
        for old in replaced:
            self._unlink_quietly(old.path)
        return row

    def _unlink_quietly(self, relative: str) -> None:
        try:
            self.absolute(relative).unlink(missing_ok=True)
        except (OSError, ValueError) as exc:  # the sweep at next start-up will retry
            logger.warning("could not delete replaced file %s: %s", relative, exc)

    def remove_experiment(self, experiment_id: str) -> None:
        for area in AREAS:
            shutil.rmtree(self.area_dir(area, experiment_id), ignore_errors=True)

    def sweep(self, factory: sessionmaker[Session]) -> SweepReport:
        """Bring disk and database back in step after a crash; run before the service accepts requests."""
        report = SweepReport()
        with factory() as session:
            experiment_ids = set(session.scalars(select(Experiment.id)))
            recorded = {row.path: row for row in session.scalars(select(ModelFile))}
            for area in AREAS:
                area_root = self.root / area
                if not area_root.is_dir():
                    continue
                for folder in area_root.iterdir():
                    if (
                        folder.is_dir()
                        and re.fullmatch(r"[0-9a-f]{32}", folder.name)
                        and folder.name not in experiment_ids
                    ):
                        shutil.rmtree(folder, ignore_errors=True)  # the experiment's row was deleted
                        report.removed.append(f"{area}/{folder.name}/")
                        continue
                    self._sweep_folder(folder, recorded, report)
            for relative, row in recorded.items():
                if not self.absolute(relative).is_file():
                    report.dangling_rows.append(relative)
                    session.delete(row)
                    if row.role == "original":
                        transition(session, row.experiment_id, "lose_model")
            session.commit()
        if report.removed or report.dangling_rows:
            logger.warning(
                "storage sweep removed files %s and rows for missing files %s", report.removed, report.dangling_rows
            )
        return report

    def _sweep_folder(self, folder: Path, recorded: dict[str, ModelFile], report: SweepReport) -> None:
        if not folder.is_dir():
            return
        for entry in folder.iterdir():
            if not entry.is_file():
                continue
            is_temp = entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(TEMP_SUFFIX)
            is_unrecorded_upload = STORED_NAME.match(entry.name) and self.relative(entry) not in recorded
            if is_temp or is_unrecorded_upload:
                entry.unlink(missing_ok=True)
                report.removed.append(self.relative(folder) + "/" + entry.name)


@dataclass
class SweepReport:
    removed: list[str] = field(default_factory=list)
    dangling_rows: list[str] = field(default_factory=list)
