"""The recording file format: what ``[record]`` writes and ``crossbook replay`` reads.

A file is a sequence of blocks, each written with one ``write()``: a zstd skippable frame holding
the length of the zstd frame that follows (so a reader finds block boundaries without decoding),
then that frame, compressed with a content checksum. The blocks are independent: after a crash
(``kill -9``) every block but a partly written last one reads back, and ``zstdcat`` reads the file
as it is. A block decompresses to JSON lines, one record each, an array whose first item is its
kind:

- ``["file", VERSION, run, index, t_ns, venues]``: first in every file. ``run`` names the daemon
  process, ``index`` counts its files; ``venues`` maps each venue to ``{"connector", "symbols",
  "config"}`` (secrets masked).
- ``["start", t_ns, venue, spec]``: a connector was built (at start-up and on each restart);
  ``spec`` as in ``venues``.
- ``["open", t_ns, mono, venue, conn, stream, takeover, reason]``: a connection opened; ``conn``
  numbers it within the run, ``stream`` is its index in the connector's streams.
- ``["recv", t_ns, mono, venue, conn, stream, frame]``: a frame, as received (``frame`` is text,
  or ``{"b": base64}`` for a binary one).
- ``["close", t_ns, venue, conn, stream]``: a connection ended.
- ``["snap", t_ns, venue, symbol, body]``: a REST snapshot response body (``{"b": base64}``).
- ``["timer", t_ns, mono, venue, conn, stream, kind, reason]``: a connection's timer fired.
- ``["down", t_ns, venue, reason]``: a connector stopped (its books went down).
- ``["tick", t_ns]``: the staleness check changed a book's state.
- ``["flush"]``: subscribers were told: the inputs since the last flush were read together.
- ``["lost", count]``: records dropped before this point (the writer fell behind, or failed).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import zstandard

VERSION = 1
SUFFIX = ".jsonl.zst"
SKIPPABLE_MAGIC = 0x184D2A5B
"""A zstd skippable frame (0x184D2A50-0x184D2A5F): decoders that do not know it skip it."""
_HEADER = struct.Struct("<III")
"""Skippable frame magic, its payload size (4), and the payload: the next zstd frame's size."""
KINDS = {"file", "start", "open", "recv", "close", "snap", "timer", "down", "tick", "flush", "lost"}


class RecordingError(Exception):
    """A file is not a readable recording; the message names the file and where."""


def payload(data: str | bytes) -> Any:
    """A frame or body as a JSON value: text as is, bytes as ``{"b": base64}``."""
    return data if isinstance(data, str) else {"b": base64.b64encode(data).decode()}


def unpayload(value: Any) -> str | bytes:
    """The frame or body back, as it was given to :func:`payload`."""
    if isinstance(value, dict):
        return base64.b64decode(value["b"], validate=True)
    if not isinstance(value, str):
        raise TypeError(f"a payload is text or {{'b': base64}}, not {type(value).__name__}")
    return value


def block(lines: list[bytes], compressor: zstandard.ZstdCompressor) -> bytes:
    """One block of records (each an encoded JSON line), ready to be written at once."""
    frame = compressor.compress(b"".join(lines))
    return _HEADER.pack(SKIPPABLE_MAGIC, 4, len(frame)) + frame


def compressor() -> zstandard.ZstdCompressor:
    return zstandard.ZstdCompressor(level=3, write_checksum=True, write_content_size=True)


class RecordingReader:
    """The records of one file, block by block. A partly written last block (a crash) ends the
    file: :attr:`truncated` says so afterwards. Anything else unreadable raises
    :class:`RecordingError`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.truncated = 0
        """Bytes of a partly written last block (0: none)."""
        self.blocks = 0

    def records(self) -> Iterator[list[Any]]:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise RecordingError(f"{self.path}: cannot read: {exc.strerror or exc}") from None
        dctx = zstandard.ZstdDecompressor()
        pos = 0
        first = True
        while pos < len(data):
            if len(data) - pos < _HEADER.size:
                self.truncated = len(data) - pos
                return
            magic, size, length = _HEADER.unpack_from(data, pos)
            if magic != SKIPPABLE_MAGIC or size != 4:
                what = "not a crossbook recording" if pos == 0 else "corrupt"
                raise RecordingError(f"{self.path}: {what} (no block header at byte {pos})")
            start = pos + _HEADER.size
            if len(data) - start < length:
                self.truncated = len(data) - pos
                return
            try:
                text = dctx.decompress(data[start : start + length])
            except zstandard.ZstdError as exc:
                raise RecordingError(f"{self.path}: block {self.blocks + 1} at byte {pos} is corrupt: {exc}") from None
            for number, line in enumerate(text.splitlines(), 1):
                record = self._record(line, number, pos)
                if first and record[0] != "file":
                    raise RecordingError(f"{self.path}: does not start with a file header")
                if first and record[1] != VERSION:
                    raise RecordingError(f"{self.path}: format version {record[1]!r}; this crossbook reads {VERSION}")
                first = False
                yield record
            self.blocks += 1
            pos = start + length

    def _record(self, line: bytes, number: int, pos: int) -> list[Any]:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise RecordingError(f"{self.path}: block at byte {pos}, line {number}: not JSON ({exc})") from None
        if not isinstance(record, list) or not record or record[0] not in KINDS:
            raise RecordingError(f"{self.path}: block at byte {pos}, line {number}: not a record: {line[:80]!r}")
        return record
