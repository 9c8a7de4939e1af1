"""Fixtures the system tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support import NatsServer, nats_server_binary


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(nats_server_binary(), tmp_path / "nats")
    (tmp_path / "nats").mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()
