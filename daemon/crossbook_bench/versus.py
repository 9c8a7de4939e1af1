"""crossbook against cryptofeed:
``python -m crossbook_bench.versus [--rounds R] [--pairs P] [--limit N] [--no-cryptofeed]``.

Both consume the same recorded Binance spot depth stream (``CAPTURE`` in ``shared/captures``)
from a fake Binance on 127.0.0.1 that speaks the real wire protocol: the combined-stream
WebSocket, REST ``/api/v3/depth`` (the recorded snapshot) and ``/api/v3/exchangeInfo`` (which
cryptofeed reads for its symbol map). The venue pushes the recorded diffs as fast as the client
reads. Each consumer is a child process, one at a time, each with a fresh venue: the daemon as
deployed (one ``binance`` venue), and cryptofeed's ``FeedHandler`` with its ``Binance`` L2 book
feed, run from its own venv (``CRYPTOFEED_VENV``, installed on first use) so that cryptofeed never
becomes a crossbook dependency.

The capture has ~3,450 diffs after its snapshot: too few to time a fast consumer with CPU
accounting in 10 ms ticks. ``rounds`` repeats them, each repeat led by one diff that puts the
book back exactly to the snapshot (it zeroes the levels the previous round added), then the
recorded diffs with their update ids shifted to stay contiguous. Every consumer gets the same
frames and must end on the same book, which is checked.

The window of each run starts when the venue starts serving the connected client (the REST
snapshot is held until then, so both sync inside the window) and ends when the client has
processed the last frame: cryptofeed's runner reports the monotonic time of its last book
callback; the daemon's end is seen by polling its metrics (faster near the end), so crossbook's
wall time errs long by a poll. CPU is the child's utime + stime from ``/proc`` over the window,
all threads included, measured the same way for both.

This machine's speed drifts by up to 2x within minutes, so a ratio is only as good as the two
runs behind it being side by side: ``pairs`` runs both that many times, in turn (crossbook first
in the first pair, cryptofeed first in the second, and so on, so that a steady drift favours
neither), and the pair with the median throughput ratio is reported (the upper of the middle two
for an even number), with every pair's ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import orjson

from crossbook import __version__
from crossbook.testing.captures import captures_dir
from crossbook_bench.loadgen import (
    CAPTURE,
    SENTINEL,
    SYMBOL,
    FakeBinance,
    Recording,
    api_book,
    child_env,
    close,
    cpu_seconds,
    daemon_ports,
    daemon_venue,
    load_recording,
    metric_value,
    rss_bytes,
    scrape,
    spawn_daemon,
)
from crossbook_bench.loadgen import subscribers as subscribers_of

CRYPTOFEED_VENV = Path.home() / ".cache" / "crossbook" / "bench-cryptofeed"
LIVE = 4.0


def _figures(recording: Recording, seconds: float, cpu: float) -> dict[str, Any]:
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


# -- crossbook ------------------------------------------------------------------------------------


async def run_crossbook(recording: Recording, max_seconds: float = 120.0, subscribers: int = 0) -> dict[str, Any]:
    """The daemon in a child process with one ``binance`` venue on the fake venue, and
    ``subscribers`` batched API clients of ``book`` and ``bbo`` (so deltas are encoded too)."""
    venue = FakeBinance(recording, sentinel=SENTINEL)
    n = len(recording.frames)
    with tempfile.TemporaryDirectory() as tmp, (Path(tmp) / "daemon.log").open("w+") as log:
        async with venue.serving() as port:
            proc = spawn_daemon(Path(tmp), daemon_venue(port), stderr=log)
            venue.pid = proc.pid
            try:
                api, metrics = await asyncio.to_thread(daemon_ports, proc)
                subs = await subscribers_of(api, subscribers, [f"book.{SYMBOL}", f"bbo.{SYMBOL}"], batch=True)
                rss = [(0.0, rss_bytes(proc.pid))]
                venue.ready.set()
                deadline = time.monotonic() + max_seconds
                while True:
                    body = await asyncio.to_thread(scrape, metrics)
                    now = time.monotonic()
                    count = metric_value(body, "crossbook_venue_messages_total")
                    rss.append((count, rss_bytes(proc.pid)))
                    if metric_value(body, "crossbook_skipped_events_total") >= 1:
                        cpu = cpu_seconds(proc.pid)
                        break
                    if proc.poll() is not None or now > deadline:
                        raise RuntimeError(f"daemon published {count:.0f} of ~{n} frames: {_tail(log)}")
                    wait = poll_interval(venue.started, now, count, n)
                    await asyncio.sleep(min(wait, _until_round_end(recording.round_frames, venue.started, now, count)))
                assert venue.started is not None
                figures = _figures(recording, now - venue.started[0], cpu - venue.started[1])
                top = await _api_top(api)
                close(subs)
            finally:
                proc.terminate()
                try:
                    await asyncio.to_thread(proc.wait, 10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    state = metric_value(body, "crossbook_book_state")
    by_round = _by_round(rss, recording.round_frames)
    figures |= {
        "book_state": state,
        "book_updates": metric_value(body, "crossbook_book_updates_total"),
        "resyncs": metric_value(body, "crossbook_resyncs_total"),
        "skipped_events": metric_value(body, "crossbook_skipped_events_total"),
        "connector_restarts": metric_value(body, "crossbook_connector_restarts_total"),
        "venue_connections": venue.connections,
        "subscribers": subscribers,
        "client_messages": sum(sub.messages for sub in subs),
        "client_messages_fewest": min((sub.messages for sub in subs), default=0),
        "venue_hours": recording.seconds / 3600,
        "daemon_rss_mib_before": _mib(rss[0][1]),
        "daemon_rss_mib_after": _mib(rss[-1][1]),
        "daemon_peak_rss_mib": _mib(max(size for _, size in rss)),
        "daemon_rss_mib_by_round": [_mib(size) for _, size in by_round],
        "daemon_rss_sampled_at": [int(count) for count, _ in by_round],
        "best_bid": str(top[0]),
        "best_ask": str(top[1]),
        "book_ok": state == LIVE
        and top == (recording.best_bid, recording.best_ask)
        and venue.connections == 1
        and metric_value(body, "crossbook_resyncs_total") == 0  # a resync would flatter the figures
        and metric_value(body, "crossbook_skipped_events_total") == 1,
        "version": __version__,
    }
    return figures


def _by_round(rss: list[tuple[float, int]], round_frames: list[int]) -> list[tuple[float, int]]:
    """(venue messages counted, RSS) of the first sample taken once the daemon had counted each
    round's frames (the last sample for a round never reached). The count runs two ahead of the
    frames: the connection's status and the REST snapshot count as messages too."""
    return [next(((c, size) for c, size in rss if c >= served), rss[-1]) for served in round_frames]


def _until_round_end(round_frames: list[int], started: tuple[float, float] | None, now: float, count: float) -> float:
    """Seconds until the daemon has counted the frames of the round it is in, so that an RSS
    sample lands just after each round's end."""
    ahead = next((served - count for served in round_frames if served > count), None)
    eta = None if ahead is None else _eta(ahead, started, now, count)
    return 0.05 if eta is None else max(0.002, eta)


def _eta(frames: float, started: tuple[float, float] | None, now: float, count: float) -> float | None:
    """Seconds the daemon takes for ``frames`` more at its rate so far (None before it has one)."""
    if started is None or count <= 0:
        return None
    return frames * (now - started[0]) / count


def _mib(size: int) -> float:
    return round(size / 2**20, 1)


def poll_interval(started: tuple[float, float] | None, now: float, count: float, n: int) -> float:
    """A quarter of the time the rest should take at the rate so far: few scrapes (which cost the
    daemon CPU), yet the end is seen within a few ms."""
    eta = _eta(n - count, started, now, count)
    return 0.05 if eta is None else min(0.2, max(0.002, eta / 4))


def _tail(log: IO[str]) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-2000:]


async def _api_top(api: int) -> tuple[Decimal | None, Decimal | None]:
    """Best bid and ask of the daemon's ``book`` channel snapshot."""
    bids, asks = await api_book(api, SYMBOL, 1)
    return (bids[0][0] if bids else None, asks[0][0] if asks else None)


# -- cryptofeed -----------------------------------------------------------------------------------

RUNNER = r'''
"""cryptofeed's Binance L2 book feed against the fake venue: argv port, frames, log file."""
import asyncio, json, sys, time
from importlib.metadata import version

import cryptofeed.connection as connection
from cryptofeed import FeedHandler
from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint
from cryptofeed.defines import ASK, BID, L2_BOOK
from cryptofeed.exchanges import Binance
from websockets.asyncio.client import connect

port, expected, log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]


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
        out = dict(seen, done=done, cpu=cpu, bids=len(bids), asks=len(asks), version=version("cryptofeed"))
        out["best_bid"] = str(bids.index(0)[0]) if bids else None
        out["best_ask"] = str(asks.index(0)[0]) if asks else None
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


fh = FeedHandler(config={"uvloop": True, "log": {"filename": log, "level": "WARNING"}})
fh.add_feed(Binance(symbols=["BTC-USDT"], channels=[L2_BOOK], callbacks={L2_BOOK: book}))
asyncio.set_event_loop(asyncio.new_event_loop())  # FeedHandler.run asks for one; uvloop >= 0.22 makes none
fh.run()
'''


def cryptofeed_python(venv: Path = CRYPTOFEED_VENV) -> tuple[Path | None, str]:
    """A Python that imports cryptofeed, from its own venv (created on first use): (python, version),
    or (None, why not)."""
    python = venv / "bin" / "python"
    check = [
        str(python),
        "-c",
        "from importlib.metadata import version; import cryptofeed; print(version('cryptofeed'))",
    ]
    found = subprocess.run(check, capture_output=True, text=True) if python.exists() else None
    if found is None or found.returncode != 0:
        try:
            steps = [
                [sys.executable, "-m", "venv", str(venv)],
                [str(python), "-m", "pip", "install", "-q", "cryptofeed"],
            ]
            for step in steps:
                done = subprocess.run(step, capture_output=True, text=True, timeout=900)
                if done.returncode != 0:
                    return None, f"{' '.join(step)} failed: {(done.stderr or done.stdout)[-500:]}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"cannot install cryptofeed in {venv}: {exc}"
        found = subprocess.run(check, capture_output=True, text=True)
        if found.returncode != 0:
            return None, f"cryptofeed does not import in {venv}: {found.stderr[-500:]}"
    return python, found.stdout.strip()


async def run_cryptofeed(recording: Recording, python: Path, max_seconds: float = 120.0) -> dict[str, Any]:
    """cryptofeed's FeedHandler in a child process (``RUNNER``) on the fake venue."""
    venue = FakeBinance(recording)
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
                env=child_env(),
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
    figures = _figures(recording, out["done"] - venue.started[0], cpu - venue.started[1])
    best = (_dec(out["best_bid"]), _dec(out["best_ask"]))
    figures |= {
        "book_callbacks": out["callbacks"],
        "processed_depth_messages": out["messages"],
        "processed_level_updates": out["levels"],
        "book_levels": [out["bids"], out["asks"]],
        "venue_connections": venue.connections,
        "best_bid": out["best_bid"],
        "best_ask": out["best_ask"],
        "book_ok": best == (recording.best_bid, recording.best_ask)
        and (out["bids"], out["asks"]) == (len(recording.bids), len(recording.asks))
        and venue.connections == 1,
        "version": out["version"],
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


# -- both -----------------------------------------------------------------------------------------


def bench_versus(
    *,
    rounds: int = 20,
    pairs: int = 3,
    limit: int | None = None,
    capture: Path | None = None,
    cryptofeed: bool = True,
    venv: Path = CRYPTOFEED_VENV,
    timeout: float = 300.0,
) -> dict[str, Any]:
    """crossbook and cryptofeed on the same frames, ``pairs`` times in turn: figures of each in the
    pair with the median crossbook/cryptofeed throughput ratio, its ratios, and every pair's.

    ``limit``: the first diffs after the snapshot only; ``rounds``: how often they are served.
    """
    if pairs < 1:
        raise ValueError(f"pairs must be 1 or more, not {pairs}")
    path = capture or captures_dir() / CAPTURE
    if not path.exists():
        raise FileNotFoundError(f"capture {path} not present")
    recording = load_recording(path, limit, rounds)
    result: dict[str, Any] = {
        "capture": path.name,
        "rounds": rounds,
        "messages": len(recording.frames),
        "level_updates": recording.level_updates,
    }
    python, found = cryptofeed_python(venv) if cryptofeed else (None, "not requested")
    if python is None:
        result["crossbook"] = asyncio.run(run_crossbook(recording, timeout))
        result["cryptofeed"] = {"skipped": found}
        return result
    runs = []
    for pair in range(pairs):
        if pair % 2:
            theirs = asyncio.run(run_cryptofeed(recording, python, timeout))
            runs.append((asyncio.run(run_crossbook(recording, timeout)), theirs))
        else:
            ours = asyncio.run(run_crossbook(recording, timeout))
            runs.append((ours, asyncio.run(run_cryptofeed(recording, python, timeout))))
    return result | {"pairs": pairs} | median_pair(runs)


def median_pair(runs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """Of (crossbook, cryptofeed) runs side by side: both sides' figures in the pair with the
    median throughput ratio (the upper of the middle two for an even number), its ratios, and
    every pair's throughput ratio, lowest first."""
    ratios = sorted((ours["messages_per_s"] / theirs["messages_per_s"], i) for i, (ours, theirs) in enumerate(runs))
    ratio, median = ratios[len(ratios) // 2]
    ours, theirs = runs[median]
    return {
        "crossbook": ours,
        "cryptofeed": theirs,
        "ratio": {"throughput": ratio, "cpu_per_message": theirs["cpu_us_per_message"] / ours["cpu_us_per_message"]},
        "throughput_ratio_of_each_pair": [r for r, _ in ratios],
    }


def _print(result: dict[str, Any]) -> None:
    print(f"{result['capture']}: {result['messages']:,} messages, {result['level_updates']:,} level updates")
    keys = ["seconds", "messages_per_s", "level_updates_per_s", "cpu_us_per_message", "book_ok", "version"]
    print(f"  {'':<22}{'crossbook':>16}{'cryptofeed':>16}")
    for key in keys:
        cells = [_cell(result[side].get(key, result[side].get("skipped", ""))) for side in ("crossbook", "cryptofeed")]
        print(f"  {key:<22}{cells[0]:>16}{cells[1]:>16}")
    for key, value in result.get("ratio", {}).items():
        print(f"  crossbook/cryptofeed {key}: {value:.2f}x")
    if "throughput_ratio_of_each_pair" in result:
        each = ", ".join(f"{r:.2f}x" for r in result["throughput_ratio_of_each_pair"])
        print(f"  throughput ratio of each of {result['pairs']} pairs: {each}")


def _cell(value: Any) -> str:
    return f"{value:,.2f}" if isinstance(value, float) else str(value)[:15]


def positive(text: str) -> int:
    """An argparse type: a whole number of 1 or more."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crossbook_bench.versus", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="times the recorded diffs are served")
    parser.add_argument("--pairs", type=positive, default=3, help="runs of each side, in turn")
    parser.add_argument("--limit", type=int, help="serve only the first N recorded diffs")
    parser.add_argument("--no-cryptofeed", action="store_true", help="the crossbook side only")
    parser.add_argument("--venv", type=Path, default=CRYPTOFEED_VENV, help="cryptofeed's own venv")
    args = parser.parse_args(argv)
    result = bench_versus(
        rounds=args.rounds, pairs=args.pairs, limit=args.limit, cryptofeed=not args.no_cryptofeed, venv=args.venv
    )
    _print(result)
    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(_cli())
