"""Keep what the frameworks print out of the user's terminal.

PyTorch, ExecuTorch, TensorFlow and their C++ cores write deprecation notices, ``cpuinfo`` warnings and oneDNN
banners straight to file descriptors 1 and 2, below Python's ``sys.stderr``; redirecting the Python objects alone
does not catch them. ``library_output_to(path)`` points both descriptors at a log file for the duration and hands
back a stream on the real terminal, where the CLI draws its own progress display.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO


@contextmanager
def library_output_to(log_path: Path | None) -> Iterator[TextIO]:
    """Send fd 1 and fd 2 to ``log_path`` (appending) and yield a stream on the original stderr.

    With ``log_path`` None nothing is redirected (``--verbose``) and the stream is ``sys.stderr`` itself.
    """
    if log_path is None:
        yield sys.stderr
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved_err), "w", buffering=1, encoding="utf-8", errors="replace")
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield terminal
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            terminal.close()
