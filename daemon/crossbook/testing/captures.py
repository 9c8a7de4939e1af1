"""Readers for recorded venue captures (see ``shared/captures/README.md``).

Each reader yields :class:`Record` items in file order: received frames, sent frames and REST
responses, with the local receive time in ns.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

CAPTURES_ENV = "CROSSBOOK_CAPTURES"


@dataclass(frozen=True, slots=True)
class Record:
    kind: str
    """``recv`` (a frame from the venue), ``send`` (a frame to it), ``http`` (a REST response)."""
    data: str
    ts_ns: int
    url: str | None = None
    conn: str | None = None


def captures_dir(start: Path | None = None) -> Path:
    """``$CROSSBOOK_CAPTURES``, else ``shared/captures`` beside the project checkout."""
    if os.environ.get(CAPTURES_ENV):
        return Path(os.environ[CAPTURES_ENV])
    here = (start or Path(__file__)).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "captures"
        if (parent / "pyproject.toml").exists() and candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared" / "captures"


def read_cryptofeed(path: Path) -> Iterator[Record]:
    """``*.cryptofeed.jsonl.gz``: one JSON object per line; ``data`` is the raw text."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            rec = orjson.loads(line)
            kind = rec.get("t")
            if kind in ("recv", "send", "http"):
                yield Record(kind, rec["data"], int(rec["ts"] * 1e9), rec.get("url"), rec.get("conn"))


def read_hftbacktest(path: Path) -> Iterator[Record]:
    """``*.hftbacktest.gz``: ``<ns> <raw JSON>``; the bare ``lastUpdateId`` line is the REST snapshot."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            ts, _, data = line.rstrip("\n").partition(" ")
            kind = "http" if data.startswith('{"lastUpdateId"') else "recv"
            yield Record(kind, data, int(ts))


def read_depthcharge(path: Path) -> Iterator[Record]:
    """``*.depthcharge.ndjson``: a header line, then ``{"rx_ns", ["dir":"tx",] "frame"}`` with the
    frame embedded as JSON whose number tokens are kept verbatim here."""
    with path.open("rb") as fh:
        next(fh)
        for line in fh:
            line = line.strip()
            if not line:
                continue
            head = orjson.loads(line)
            frame = _embedded_frame(line)
            yield Record("send" if head.get("dir") == "tx" else "recv", frame, int(head["rx_ns"]))


def _embedded_frame(line: bytes) -> str:
    """The text of the ``frame`` value exactly as written (so number tokens keep their digits)."""
    key = line.index(b'"frame"')
    start = line.index(b":", key) + 1
    body = line.rstrip()
    if not body.endswith(b"}"):
        raise ValueError("not a depthcharge record")
    return body[start:-1].decode().strip()  # without the record's own closing brace


def read_legacy(path: Path) -> Iterator[Record]:
    """``*.cryptofeed-legacy.txt.gz``: ``<url> <-> <ts>`` connects, ``<url> <- <ts>: <json>`` sends,
    ``<ts>: <json>`` received frames."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line.strip() or " <-> " in line:
                continue
            head, _, data = line.partition(": ")
            if " <- " in head:
                yield Record("send", data, int(float(head.rsplit(" ", 1)[1]) * 1e9))
            else:
                yield Record("recv", data, int(float(head) * 1e9))
