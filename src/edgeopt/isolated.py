"""Run one call on an untrusted file in a child process with memory, time and pixel limits.

Inspecting an upload (inflating a zip, reading image headers, the weights-only unpickling of a ``.pt2``) and decoding
a custom dataset cost what the file says, not what it weighs: a few hundred kilobytes can ask for gigabytes. Done in
the API process, that memory stays with the service (the allocator keeps it) and one upload can take it down. Here
the call runs in a child process forked from a clean forkserver, under ``RLIMIT_AS`` (so an allocation past the
limit fails with ``MemoryError`` inside the child), with PIL's decompression-bomb limit set to the per-image pixel
limit, and killed when it passes its time. Whatever it allocated goes back to the system when it exits.

The call's own refusals (``InvalidInput``) come back as they are; running out of memory or time becomes a 413 that
says which limit was reached and which setting raises it. The child only ever receives paths and plain values and
sends back plain values (pickled between two processes of this service, never read from the upload).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import resource
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from edgeopt.errors import InvalidInput

T = TypeVar("T")
# Imported once by the forkserver, so each child starts with them loaded instead of importing them again.
PRELOAD = ["edgeopt.errors", "edgeopt.formats", "edgeopt.data", "edgeopt.data.budget", "PIL.Image", "numpy"]
EXIT_GRACE_S = 5.0
# Children at once: more uploads wait their turn, so a burst of bombs costs at most this many times the memory limit.
MAX_CHILDREN = max(2, os.cpu_count() or 2)
_children = threading.BoundedSemaphore(
    MAX_CHILDREN
)  # after its answer, how long the child may take to exit before it is killed


@dataclass(frozen=True)
class Limits:
    """What one isolated call may use; ``what`` names the work in the refusal (``"Checking the dataset"``)."""

    memory_bytes: int  # address space of the child (RLIMIT_AS), imports included
    seconds: float  # wall-clock time, start-up included
    image_pixels: int | None = None  # PIL refuses to decode a larger image (Image.MAX_IMAGE_PIXELS)
    what: str = "Checking the file"
    memory_setting: str = "EDGEOPT_ISOLATED_MEMORY_BYTES"
    time_setting: str = "EDGEOPT_ISOLATED_TIMEOUT_S"


_context: Any = None


def _get_context() -> Any:
    global _context
    if _context is None:
        context = multiprocessing.get_context("forkserver")
        # A service started as ``python -m edgeopt.cli`` has each child re-run that module as ``__mp_main__``
        # (multiprocessing's main-module fix-up); with its imports preloaded in the forkserver that costs
        # milliseconds instead of seconds. A console script's main is preloaded by the forkserver itself.
        main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        main_name = getattr(main_spec, "name", None)
        main = [main_name] if main_name and not main_name.endswith("__main__") else []
        context.set_forkserver_preload([*PRELOAD, *main])
        _context = context
    return _context


def start() -> None:
    """Start the forkserver now (seconds: it imports ``PRELOAD``) rather than on the first upload."""
    _get_context()
    from multiprocessing import forkserver

    forkserver.ensure_running()


def _child(
    connection: multiprocessing.connection.Connection, limits: Limits, func: Callable[..., Any], args: Any
) -> None:
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        if limits.image_pixels is not None:
            from PIL import Image

            Image.MAX_IMAGE_PIXELS = limits.image_pixels
        answer: tuple[Any, ...] = ("ok", func(*args))
    except InvalidInput as exc:
        answer = ("refused", str(exc), exc.field, exc.status_code)
    except MemoryError:
        answer = ("memory",)
    except BaseException as exc:  # sent back whole: the service logs it, the user gets a sentence
        answer = ("failed", f"{type(exc).__name__}: {exc}", traceback.format_exc())
    try:
        connection.send(answer)
    except MemoryError:
        connection.send(("memory",))
    finally:
        connection.close()


def _memory_refusal(limits: Limits) -> InvalidInput:
    return InvalidInput(
        f"{limits.what} needs more than {limits.memory_bytes / 1024**2:,.0f} MB of memory, the limit for one upload; "
        f"upload a smaller file, or raise {limits.memory_setting} if the file is what you meant.",
        field="file",
        status_code=413,
    )


def run_isolated(func: Callable[..., T], *args: Any, limits: Limits) -> T:
    """``func(*args)`` in a limited child process; its ``InvalidInput`` is raised here, its value returned.

    ``func`` must be importable at module level (the child imports it by name) and its arguments and result plain.
    Raises ``InvalidInput`` (413) past the memory or time limit and ``RuntimeError`` for any other failure.
    """
    with _children:
        answer, code = _run(func, args, limits)
    if answer is None:
        raise InvalidInput(
            f"{limits.what} took longer than {limits.seconds:g} s, the limit for one upload; upload a smaller "
            f"file, or raise {limits.time_setting} if the file is what you meant.",
            field="file",
            status_code=413,
        )
    kind = answer[0]
    if kind == "ok":
        return answer[1]  # type: ignore[no-any-return]
    if kind == "refused":
        raise InvalidInput(answer[1], field=answer[2], status_code=answer[3])
    if kind == "memory":
        raise _memory_refusal(limits)
    if kind == "died":
        raise InvalidInput(
            f"{limits.what} failed: the checking process ended without an answer (exit code {code}); the file "
            "is damaged or too large to read.",
            field="file",
            status_code=413 if code is not None and code < 0 else 400,
        )
    raise RuntimeError(f"{limits.what} failed in its child process: {answer[1]}\n{answer[2]}")


def _run(func: Callable[..., Any], args: tuple[Any, ...], limits: Limits) -> tuple[tuple[Any, ...] | None, int | None]:
    """The child's answer (None: out of time, killed) and its exit code."""
    context = _get_context()
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sender, limits, func, args), daemon=True)
    process.start()
    sender.close()
    answered = False
    try:
        answered = receiver.poll(limits.seconds)
        answer = receiver.recv() if answered else None
    except EOFError:  # the child died without answering: killed by the kernel, or crashed in native code
        answer = ("died",)
    finally:
        receiver.close()
        process.join(EXIT_GRACE_S if answered else 0)
        if process.is_alive():
            process.kill()
            process.join()
        code = process.exitcode
        process.close()
    return answer, code
