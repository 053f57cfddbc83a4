"""Calls for ``edgeopt.isolated`` tests, in a module of their own: the child imports a call's module, and the test
modules import PyTorch (through the conftest), which alone would fill a small address-space limit."""

from __future__ import annotations

import time

from edgeopt.errors import InvalidInput


def allocate(megabytes: int) -> int:
    return len(bytearray(megabytes * 1024**2))


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def refuse() -> None:
    raise InvalidInput("The file is not what it claims.", field="file", status_code=415)
