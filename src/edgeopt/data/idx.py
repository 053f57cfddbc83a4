"""Reader for the IDX format MNIST and Fashion-MNIST ship in.

The header is parsed for real (two zero bytes, a type code, the number of dimensions, then one big-endian uint32
per dimension) and the payload length is checked against it, so a truncated download or a file of the wrong kind
fails here with its name in the message instead of as a reshape error deep in a technique.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from edgeopt.errors import InvalidInput

# IDX type code -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_TYPES: dict[int, str] = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_DIMS = 8


def _read_bytes(path: Path) -> bytes:
    """Return the file's bytes, gunzipped when it is gzip (by content, not by name: mirrors rename freely)."""
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise InvalidInput(f"{path} is a damaged gzip file ({exc}); download it again.") from exc


def parse_idx(data: bytes, *, source: str = "IDX data") -> np.ndarray:
    """Decode one IDX payload into an array of the shape and type its header declares."""
    if len(data) < 4:
        raise InvalidInput(f"{source} is not an IDX file: {len(data)} bytes, shorter than the 4-byte header.")
    zero, type_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or type_code not in _IDX_TYPES or not 1 <= ndim <= _MAX_DIMS:
        raise InvalidInput(
            f"{source} is not an IDX file: magic number 0x{data[:4].hex()} (expected 0x0000 then a type code in "
            f"{sorted(hex(c) for c in _IDX_TYPES)} and 1..{_MAX_DIMS} dimensions)."
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise InvalidInput(f"{source} is truncated inside its header ({len(data)} of {header_len} bytes).")
    dims = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = np.dtype(_IDX_TYPES[type_code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header_len
    if actual != expected:
        raise InvalidInput(
            f"{source} is corrupt: its header declares shape {tuple(dims)} ({expected} bytes of data) but it holds "
            f"{actual} bytes; download it again."
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, gzipped or not."""
    path = Path(path)
    return parse_idx(_read_bytes(path), source=str(path))


def write_idx(path: str | Path, array: np.ndarray, *, compress: bool = False) -> None:
    """Write ``array`` as IDX; used by tests and by anyone preparing a small MNIST-format set by hand."""
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_TYPES.items()}
    dtype = np.dtype(array.dtype).newbyteorder("=")
    if dtype not in codes:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    header = struct.pack(">HBB", 0, codes[dtype], array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array).astype(_IDX_TYPES[codes[dtype]]).tobytes()
    Path(path).write_bytes(gzip.compress(payload) if compress else payload)
