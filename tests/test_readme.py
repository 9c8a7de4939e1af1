"""The README tells the truth: its plugin example works and CI runs its test command."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.client import connect

from crossbook.client import BookMirror, Mirror
from support import running_daemon

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def code_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_test_command() -> None:
    test_command = next(b.strip() for b in code_blocks("sh") if "pytest" in b)
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_plugin_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = next(b for b in code_blocks("python") if "crossbook_add_connectors" in b)
    package = tmp_path / "crossbook_fixed"
    package.mkdir()
    (package / "__init__.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "crossbook_fixed", raising=False)
    toml = 'plugins = ["crossbook_fixed"]\n[venues.myvenue]\nconnector = "fixed"\nsymbols = ["BTC-USDT"]\n'
    toml += 'price = "250.5"\n'
    async with (
        running_daemon(tmp_path, toml) as (_, addresses),
        connect(f"ws://127.0.0.1:{addresses.api_port}/v1/stream") as ws,
    ):
        await ws.send('{"op":"subscribe","id":1,"channels":["book.BTC-USDT"]}')
        assert orjson.loads(await ws.recv())["type"] == "ack"
        mirror = Mirror()
        while not mirror.books.get("book.BTC-USDT", BookMirror()).bids:  # the connector may start after us
            mirror.apply(orjson.loads(await ws.recv()))
        book = mirror.books["book.BTC-USDT"]
        assert book.top("bids") == [("250.5", "1", {"myvenue": "1"})]
        assert book.top("asks") == [("251.5", "1", {"myvenue": "1"})]
