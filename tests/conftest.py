"""Shared fixtures, and each test marked with its part of the suite (``unit``, ``venues`` or
``system``, from its folder). Async tests use ``@pytest.mark.anyio`` on the asyncio backend."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

PARTS = ("unit", "venues", "system")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        part = Path(str(item.path)).parent.name
        if part in PARTS:
            item.add_marker(part)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """``logs.setup`` changes process-wide logging (root handlers and level; the crossbook,
    websockets and httpx levels): put it back, or a later test in this process loses, say,
    websockets' DEBUG log of frames."""
    root = logging.getLogger()
    handlers = root.handlers[:]
    touched = [root, *(logging.getLogger(name) for name in ("crossbook", "websockets", "httpx"))]
    levels = [logger.level for logger in touched]
    yield
    root.handlers[:] = handlers
    for logger, level in zip(touched, levels, strict=True):
        logger.setLevel(level)
