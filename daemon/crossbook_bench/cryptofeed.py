"""cryptofeed's side of ``versus``: its own venv (never crossbook's), a runner script with its
Binance L2 book feed on the fake venue, and the figures both sides report."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from crossbook_bench.loadgen import FakeBinance, Recording, child_env, cpu_seconds

CRYPTOFEED_VENV = Path.home() / ".cache" / "crossbook" / "bench-cryptofeed"
"""The prefix of cryptofeed's venvs: ``-py<X.Y>-cryptofeed<V>`` is appended (:func:`cryptofeed_python`)."""
CRYPTOFEED_RELEASES = (("3.13", "3.0.1"), ("3.12", "2.5.0"))
"""(Python, cryptofeed release) tried in turn: the newest release each Python can install (3.0.x
requires Python >= 3.13, 2.5.0 >= 3.12)."""
CRYPTOFEED_FALLBACK = "2.4.1"
"""On the Python running this when none of ``CRYPTOFEED_RELEASES``' is found: the newest for 3.11."""


def side_figures(recording: Recording, seconds: float, cpu: float) -> dict[str, Any]:
    n = len(recording.frames)
    return {
        "messages": n,
        "level_updates": recording.level_updates,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "messages_per_s": n / seconds,
        "level_updates_per_s": recording.level_updates / seconds,
        "cpu_us_per_message": cpu / n * 1e6,
    }


RUNNER = r'''
"""cryptofeed's Binance L2 book feed against the fake venue: argv port, frames, log file.

Written for cryptofeed 3.0.1 and run on 2.4.1 and 2.5.0 too (the fallbacks): the same
``FeedHandler``, ``Binance`` feed, ``L2_BOOK`` callback ``(book, receipt_timestamp)``, endpoint
classes in ``cryptofeed.connection`` and config keys (``uvloop``, ``log``) in all three."""
import asyncio, json, platform, sys, time
from importlib.metadata import version

import cryptofeed.connection as connection
from cryptofeed import FeedHandler
from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint
from cryptofeed.defines import ASK, BID, L2_BOOK
from cryptofeed.exchanges import Binance
from websockets.asyncio.client import connect

port, expected, log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
release = version("cryptofeed")


def plain(address, **kwargs):
    # cryptofeed accepts wss:// addresses only; the fake venue has no TLS (neither side pays for it)
    return connect(address.replace("wss://", "ws://", 1), **kwargs)


connection.connect = plain
Binance.websocket_endpoints = [WebsocketEndpoint(f"wss://127.0.0.1:{port}")]
Binance.rest_endpoints = [
    RestEndpoint(
        f"http://127.0.0.1:{port}",
        routes=Routes("/api/v3/exchangeInfo", l2book="/api/v3/depth?symbol={}&limit={}"),
    )
]
seen = {"callbacks": 0, "messages": 0, "levels": 0}


async def book(ob, receipt):
    seen["callbacks"] += 1
    if ob.delta is None:
        return  # the snapshot
    seen["messages"] += 1
    seen["levels"] += len(ob.delta[BID]) + len(ob.delta[ASK])
    if seen["messages"] == expected:
        done, cpu = time.monotonic(), time.process_time()
        bids, asks = ob.book.bids, ob.book.asks
        out = dict(seen, done=done, cpu=cpu, bids=len(bids), asks=len(asks), version=release)
        out["python"] = platform.python_version()
        out["best_bid"] = str(bids.index(0)[0]) if bids else None
        out["best_ask"] = str(asks.index(0)[0]) if asks else None
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


fh = FeedHandler(config={"uvloop": True, "log": {"filename": log, "level": "WARNING"}})
fh.add_feed(Binance(symbols=["BTC-USDT"], channels=[L2_BOOK], callbacks={L2_BOOK: book}))
if int(release.split(".")[0]) < 3:
    # 2.x's FeedHandler.run asks for the current loop, which uvloop >= 0.22 does not make; 3.x runs
    # its own (asyncio.Runner with uvloop's loop factory)
    asyncio.set_event_loop(asyncio.new_event_loop())
fh.run()
'''


@dataclass(frozen=True)
class Cryptofeed:
    """cryptofeed's venv for the comparison, or why there is none."""

    python: Path | None
    """The venv's interpreter, or ``None``: cryptofeed could not be had."""
    version: str
    """cryptofeed's version, or why it could not be had."""
    python_version: str = ""
    """The venv's Python, e.g. ``3.13.0`` (with its base interpreter's path)."""
    note: str = ""
    """Why not cryptofeed's current release on its Python (the fallback), if so."""


def cryptofeed_python(venv: Path = CRYPTOFEED_VENV) -> Cryptofeed:
    """cryptofeed from its own venv, ``venv`` with ``-py<X.Y>-cryptofeed<V>`` appended (created on
    first use): the first of ``CRYPTOFEED_RELEASES`` whose Python is on this machine
    (:func:`find_python`), else ``CRYPTOFEED_FALLBACK`` on the Python running this."""
    base, minor, release, note = _cryptofeed_release()
    path = venv.with_name(f"{venv.name}-py{minor}-cryptofeed{release}")
    python = path / "bin" / "python"
    check = [
        str(python),
        "-c",
        "import platform, sys, cryptofeed, uvloop; from importlib.metadata import version;"
        " print(version('cryptofeed'), platform.python_version(), sys._base_executable)",
    ]
    found = subprocess.run(check, capture_output=True, text=True) if python.exists() else None
    if found is None or found.returncode != 0 or found.stdout.split()[:1] != [release]:
        try:
            steps = [
                [str(base), "-m", "venv", str(path)],
                [str(python), "-m", "pip", "install", "-q", f"cryptofeed=={release}", "uvloop"],
            ]
            for step in steps:
                done = subprocess.run(step, capture_output=True, text=True, timeout=900)
                if done.returncode != 0:
                    return Cryptofeed(None, f"{' '.join(step)} failed: {(done.stderr or done.stdout)[-500:]}")
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Cryptofeed(None, f"cannot install cryptofeed {release} in {path}: {exc}")
        found = subprocess.run(check, capture_output=True, text=True)
        if found.returncode != 0:
            return Cryptofeed(None, f"cryptofeed does not import in {path}: {found.stderr[-500:]}")
    version, python_version, executable = found.stdout.split(maxsplit=2)
    return Cryptofeed(python, version, f"{python_version} ({executable.strip()})", note)


def _cryptofeed_release() -> tuple[Path, str, str, str]:
    """(base interpreter, its Python ``X.Y``, cryptofeed release, why not the newest or "")."""
    newest_python, newest = CRYPTOFEED_RELEASES[0]
    for minor, release in CRYPTOFEED_RELEASES:
        base = find_python(minor)
        if base is not None:
            why = f"no Python {newest_python} found (cryptofeed {newest} needs it): cryptofeed {release} on {minor}"
            return base, minor, release, "" if release == newest else why
    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    wanted = " or ".join(f"Python {m} (cryptofeed {r})" for m, r in CRYPTOFEED_RELEASES)
    why = f"no {wanted} found: cryptofeed {CRYPTOFEED_FALLBACK} on this Python {minor}"
    return Path(sys.executable), minor, CRYPTOFEED_FALLBACK, why


def find_python(minor: str) -> Path | None:
    """An interpreter of Python ``minor`` (``"3.13"``) on this machine: pyenv's, the newest patch
    release installed (selected or not), else ``python<minor>`` on ``PATH``; one that runs and is
    that version (a pyenv shim of a version not selected refuses to run)."""
    candidates: list[str] = []
    pyenv = shutil.which("pyenv")
    if pyenv is not None:
        listed = _output([pyenv, "versions", "--bare"])
        patches = [v for v in (listed or "").split() if re.fullmatch(rf"{re.escape(minor)}\.\d+", v)]
        for patch in sorted(patches, key=lambda v: int(v.rpartition(".")[2]), reverse=True):
            which = _output([pyenv, "which", f"python{minor}"], PYENV_VERSION=patch)
            if which:
                candidates.append(which.strip())
    on_path = shutil.which(f"python{minor}")
    if on_path is not None:
        candidates.append(on_path)
    for candidate in candidates:
        if _output([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]) == f"{minor}\n":
            return Path(candidate)
    return None


def _output(command: list[str], **env: str) -> str | None:
    """What ``command`` prints, or ``None`` if it fails."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=os.environ | env)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


async def run_cryptofeed(
    recording: Recording, python: Path, max_seconds: float = 120.0, *, rate: float | None = None
) -> dict[str, Any]:
    """cryptofeed's FeedHandler in a child process (``RUNNER``) on the fake venue, which serves
    ``rate`` frames a second, or as fast as the runner reads (``None``)."""
    venue = FakeBinance(recording, rate=rate, alone=rate is not None)
    venue.ready.set()  # the runner times itself: nothing to wait for
    n = len(recording.frames)
    with tempfile.TemporaryDirectory() as tmp:
        script, log = Path(tmp) / "cryptofeed_runner.py", Path(tmp) / "cryptofeed.log"
        script.write_text(RUNNER)
        async with venue.serving() as port:
            proc = await asyncio.create_subprocess_exec(
                str(python),
                str(script),
                str(port),
                str(n),
                str(log),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=tmp,
                env=child_env() | {"XDG_CACHE_HOME": tmp},  # 3.x caches the fake's symbol map there
            )
            venue.pid = proc.pid
            try:
                assert proc.stdout is not None
                line = await asyncio.wait_for(_result_line(proc.stdout), max_seconds)
                cpu = cpu_seconds(proc.pid)  # the runner is idle now: all frames were consumed
            except (TimeoutError, EOFError) as exc:
                raise RuntimeError(f"cryptofeed did not process {n} frames ({venue.sent} sent): {exc}") from exc
            finally:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
    out = orjson.loads(line)
    assert venue.started is not None
    figures = side_figures(recording, out["done"] - venue.started[0], cpu - venue.started[1])
    best = (_dec(out["best_bid"]), _dec(out["best_ask"]))
    figures |= {
        "book_callbacks": out["callbacks"],
        "processed_depth_messages": out["messages"],
        "processed_level_updates": out["levels"],
        "book_levels": [out["bids"], out["asks"]],
        "venue_connections": venue.connections,
        "venue_rate": rate,
        "venue_frames_bunched": venue.bunched,
        "best_bid": out["best_bid"],
        "best_ask": out["best_ask"],
        "book_ok": best == (recording.best_bid, recording.best_ask)
        and (out["bids"], out["asks"]) == (len(recording.bids), len(recording.asks))
        and venue.connections == 1,
        "version": out["version"],
        "python": out["python"],
    }
    return figures


async def _result_line(stream: asyncio.StreamReader) -> bytes:
    """The runner's JSON line (cryptofeed's own output may come first)."""
    tail = b""
    while line := await stream.readline():
        if line.startswith(b'{"callbacks"'):
            return line
        tail = (tail + line)[-2000:]
    raise EOFError(f"the runner exited: {tail.decode(errors='replace')}")


def _dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)
