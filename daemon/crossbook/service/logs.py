"""Logging to stderr: one line per event with level and logger.

Under systemd (``JOURNAL_STREAM`` set) lines carry a syslog priority prefix (``<6>``) instead of
our own timestamp, which journald adds; ``json`` writes one JSON object per line.
"""

from __future__ import annotations

import logging
import os
import sys

import orjson

PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
FORMATS = ("text", "json")


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{PRIORITY.get(record.levelno, 6)}>"
        text = f"{record.levelname} {record.name}: {super().format(record)}"
        return "\n".join(prefix + line for line in text.splitlines())


class JsonFormatter(logging.Formatter):
    def __init__(self, timestamps: bool) -> None:
        super().__init__()
        self.timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {"level": record.levelname.lower(), "logger": record.name}
        out["message"] = record.getMessage()
        if self.timestamps:
            out = {"ts": record.created, **out}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def setup(verbosity: int = 0, fmt: str | None = None) -> None:
    """``fmt``: ``text`` or ``json`` (default: ``$CROSSBOOK_LOG_FORMAT``, else ``text``)."""
    fmt = fmt or os.environ.get("CROSSBOOK_LOG_FORMAT") or "text"
    journal = bool(os.environ.get("JOURNAL_STREAM"))
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(timestamps=not journal))
    elif journal:
        handler.setFormatter(JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("websockets").setLevel(max(level, logging.WARNING))
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))
