"""The web view's HTTP side, on the API port: the page at ``/`` and its assets at ``/web/<file>``
(static files shipped in the package's ``web/`` folder, read once), and ``GET /v1/info``, what a
browser must know before it opens the stream: whether it needs a token (a browser cannot see a
handshake's 401), the version, and, to a caller that may read the stream, the venues and symbols.
"""

from __future__ import annotations

from http import HTTPStatus
from importlib import resources
from typing import Any

from websockets.datastructures import Headers
from websockets.http11 import Response

from crossbook import __version__
from crossbook.api.hub import Hub

INFO_PATH = "/v1/info"
ASSETS_PATH = "/web/"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
SECURITY_HEADERS = (
    ("Cache-Control", "no-cache"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    # The page loads only its own files and talks only to its own origin (the stream included).
    ("Content-Security-Policy", "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
)


def _assets() -> dict[str, tuple[str, bytes]]:
    """URL path -> (content type, body) of every file in the package's ``web/`` folder."""
    files: dict[str, tuple[str, bytes]] = {}
    for entry in (resources.files("crossbook.service") / "web").iterdir():
        suffix = entry.name[entry.name.rfind(".") :]
        if entry.is_file() and suffix in TYPES:
            body = entry.read_bytes()
            files[ASSETS_PATH + entry.name] = (TYPES[suffix], body)
            if entry.name == "index.html":
                files["/"] = (TYPES[suffix], body)
    return files


class WebView:
    """Answers the web view's paths; anything else is not its business (``None``)."""

    def __init__(self) -> None:
        self.files = _assets()

    def page(self, path: str) -> Response | None:
        """The page or one of its assets, or ``None`` for a path that is neither."""
        found = self.files.get(path)
        if found is None:
            return None
        content_type, body = found
        headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))), *SECURITY_HEADERS])
        return Response(HTTPStatus.OK.value, HTTPStatus.OK.phrase, headers, body)


def info(hub: Hub, token_required: bool, authorized: bool) -> dict[str, Any]:
    """``GET /v1/info``: the venues and symbols only to a caller the stream would accept."""
    body: dict[str, Any] = {
        "version": __version__,
        "token_required": token_required,
        "authorized": authorized,
    }
    if authorized:
        engine = hub.engine
        body["symbols"] = engine.symbols
        body["venues"] = [
            {"venue": venue, "connector": hub.venue_connectors.get(venue, venue), "symbols": list(symbols)}
            for venue, symbols in engine.venue_symbols.items()
        ]
        body["max_depth"] = hub.max_depth
    return body


def same_origin(origin: str, host: str | None, tls: bool) -> bool:
    """Whether a browser's ``Origin`` is the origin the request was sent to (the web view's own)."""
    return host is not None and origin == f"{'https' if tls else 'http'}://{host}"
