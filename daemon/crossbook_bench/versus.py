"""crossbook against cryptofeed: ``python -m crossbook_bench.versus [--rounds R] [--pairs P]
[--paced-rate F] [--paced-rounds R] [--limit N] [--no-cryptofeed] [--venv PREFIX]``.

Both consume the same recorded Binance spot depth stream (``CAPTURE`` in ``shared/captures``)
from a fake Binance on 127.0.0.1 that speaks the real wire protocol: the combined-stream
WebSocket, REST ``/api/v3/depth`` (the recorded snapshot) and ``/api/v3/exchangeInfo`` (which
cryptofeed reads for its symbol map). Each consumer is a child process, one at a time, each with a
fresh venue: the daemon as deployed (one ``binance`` venue, and one API client, below), and
cryptofeed's ``FeedHandler`` with its ``Binance`` L2 book feed and one book callback.

Two regimes, each reported on its own:

- ``backlog``: the venue pushes the frames as fast as the client reads them, so a client that
  falls behind finds several waiting and reads them together: a backlog drained flat out. Its
  figures are throughput and CPU per frame at full load. ``rounds`` (20) rounds of the recording.
- ``paced``: the venue sends one frame, then the next only at a steady ``paced_rate`` (1,000
  frames/s; ``loadgen.FakeBinance``'s ``rate``, as the bench's ``latency`` scenario), not the
  recording's own timing: a steady rate is the same for every run and far above the recording's
  ~10 frames/s, so a run is short, yet each frame arrives alone and is processed alone, as on a
  live connection. The venue never sends two frames back to back to catch up with its pace
  (``FakeBinance.alone``: at least half an interval between two; without it ~1 frame in 5 went
  out at once after a late timer), so it may fall a little behind the rate (``messages_per_s``).
  Wall time is then the venue's, so the figure is CPU per frame (a wake-up, a read and, for the
  daemon, writes for each frame). ``paced_rounds`` (3: ~10,350 frames, ~10 s a run) rounds.

The capture has ~3,450 diffs after its snapshot: too few to time a fast consumer with CPU
accounting in 10 ms ticks. ``rounds`` repeats them, each repeat led by one diff that puts the
book back exactly to the snapshot (it zeroes the levels the previous round added), then the
recorded diffs with their update ids shifted to stay contiguous. Every consumer gets the same
frames and must end on the same book, which is checked (``book_ok``) in both regimes.

The daemon has exactly one subscriber, as deployed with one consumer: a WebSocket client of the
consolidated ``book.BTC-USDT`` at depth 20 and ``bbo.BTC-USDT``, not batched (``?batch=1`` is an
opt-in; a normal client does not ask for it, so each message is its own frame). Its figures so
include serving that client (diffing, encoding, writing); cryptofeed's include only calling its
callback, which hands the book to nothing.

cryptofeed runs from its own venv, never crossbook's (so it never becomes a crossbook dependency),
created on first use under ``~/.cache/crossbook/`` as ``bench-cryptofeed-py<X.Y>-cryptofeed<V>``
(the Python's and cryptofeed's versions in the name, so that a venv of another Python or release
is never reused). Its current release, 3.0.1, requires Python >= 3.13 (its ``Requires-Python``),
while crossbook runs on 3.11: so the first of these found on the machine is used
(``CRYPTOFEED_RELEASES``): a Python 3.13 with cryptofeed 3.0.1, else a Python 3.12 with 2.5.0 (the
newest release 3.12 can install); pyenv's installed versions are looked at even when not
selected, then ``python3.13``/``python3.12`` on ``PATH``. Only without either, the Python running
this with 2.4.1 (the newest for 3.11), and the result says so (``cryptofeed_note``). uvloop is
installed beside it, which the runner enables (cryptofeed's ``uvloop`` option). The result and the
table say which cryptofeed and which Python ran (``cryptofeed_version``, ``cryptofeed_python``).

The window of each run starts when the venue starts serving the connected client (the REST
snapshot is held until then, so both sync inside the window) and ends when the client has
processed the last frame: cryptofeed's runner reports the monotonic time of its last book
callback; the daemon's end is seen by polling its metrics (faster near the end; paced, when the
venue has sent each round's frames), so crossbook's wall time errs long by a poll. CPU is the
child's utime + stime from ``/proc`` over the window, all threads included, measured the same way
for both.

This machine's speed drifts by up to 2x within minutes, so a ratio is only as good as the two
runs behind it being side by side: ``pairs`` runs both that many times in each regime, in turn
(crossbook first in the first pair, cryptofeed first in the second, and so on, so that a steady
drift favours neither), and the pair with the median ratio is reported (the upper of the middle
two for an even number), with every pair's ratio: by throughput for ``backlog`` (as before), by
CPU per frame for ``paced`` (where both keep the venue's pace). Ratios are crossbook's advantage:
``throughput`` is crossbook's frames/s over cryptofeed's, ``cpu_per_message`` cryptofeed's CPU per
frame over crossbook's (above 1, crossbook uses less). The result keeps the ``backlog`` regime at
its top level (``crossbook``, ``cryptofeed``, ``ratio``, ...), where it was before the ``paced``
regime came, which is under ``paced``.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable, Coroutine
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import orjson

from crossbook import __version__
from crossbook.testing.captures import captures_dir
from crossbook_bench.cryptofeed import CRYPTOFEED_VENV, Cryptofeed, cryptofeed_python, run_cryptofeed, side_figures
from crossbook_bench.loadgen import (
    CAPTURE,
    SENTINEL,
    SYMBOL,
    FakeBinance,
    Recording,
    api_book,
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

LIVE = 4.0
SUBSCRIBERS = 1
"""The daemon's API clients in the comparison: one, of ``book`` (at ``DEPTH``) and ``bbo``, not batched."""
DEPTH = 20
PACED_RATE = 1000.0
"""The ``paced`` regime's frames per second."""
PACED_ROUNDS = 3


# -- crossbook ------------------------------------------------------------------------------------


async def run_crossbook(
    recording: Recording,
    max_seconds: float = 120.0,
    subscribers: int = 0,
    *,
    rate: float | None = None,
    batch: bool = True,
    depth: int = DEPTH,
) -> dict[str, Any]:
    """The daemon in a child process with one ``binance`` venue on the fake venue, and
    ``subscribers`` API clients of ``book`` (``depth`` levels) and ``bbo`` (so deltas are encoded
    too), batched (``?batch=1``) or not. The venue serves ``rate`` frames a second, or as fast as
    the daemon reads (``None``)."""
    venue = FakeBinance(recording, rate=rate, alone=rate is not None, sentinel=SENTINEL)
    n = len(recording.frames)
    with tempfile.TemporaryDirectory() as tmp, (Path(tmp) / "daemon.log").open("w+") as log:
        async with venue.serving() as port:
            proc = spawn_daemon(Path(tmp), daemon_venue(port), stderr=log)
            venue.pid = proc.pid
            try:
                api, metrics = await asyncio.to_thread(daemon_ports, proc)
                channels = [f"book.{SYMBOL}", f"bbo.{SYMBOL}"]
                subs = await subscribers_of(api, subscribers, channels, batch=batch, depth=depth)
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
                    if rate is None:
                        wait = poll_interval(venue.started, now, count, n)
                        wait = min(wait, _until_round_end(recording.round_frames, venue.started, now, count))
                    else:
                        wait = paced_wait(recording.round_frames, venue.sent, rate)
                    await asyncio.sleep(wait)
                assert venue.started is not None
                figures = side_figures(recording, now - venue.started[0], cpu - venue.started[1])
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
        "venue_rate": rate,
        "venue_frames_bunched": venue.bunched,
        "subscribers": subscribers,
        "subscriber_depth": depth,
        "subscriber_batched": batch,
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
        "python": platform.python_version(),
    }
    return figures


def paced_wait(round_frames: list[int], sent: int, rate: float) -> float:
    """Paced, the daemon takes each frame as it comes: seconds until the venue has sent the frames
    of the round it is in (and 2 ms for the daemon to take the last), so that the daemon is
    scraped (which costs it CPU) about once a round, an RSS sample landing just after each round's
    end, and every 2 ms once every frame is sent."""
    ahead = next((served - sent for served in round_frames if served > sent), 0)
    return ahead / rate + 0.002


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
    paced_rate: float = PACED_RATE,
    paced_rounds: int = PACED_ROUNDS,
) -> dict[str, Any]:
    """crossbook and cryptofeed on the same frames in both regimes, ``pairs`` times in turn in
    each: the ``backlog`` regime at the top level (figures of each side in the pair with the median
    crossbook/cryptofeed throughput ratio, its ratios, and every pair's), the ``paced`` one under
    ``paced`` (the pair with the median CPU-per-frame ratio), and which cryptofeed ran on which
    Python.

    ``limit``: the first diffs after the snapshot only; ``rounds``: how often they are served as
    fast as each side reads, ``paced_rounds``: how often at ``paced_rate`` frames a second.
    """
    if pairs < 1:
        raise ValueError(f"pairs must be 1 or more, not {pairs}")
    if paced_rate <= 0 or paced_rounds < 1:
        raise ValueError(f"paced_rate must be above 0 and paced_rounds 1 or more, not {paced_rate}, {paced_rounds}")
    path = capture or captures_dir() / CAPTURE
    if not path.exists():
        raise FileNotFoundError(f"capture {path} not present")
    backlog = load_recording(path, limit, rounds)
    paced = load_recording(path, limit, paced_rounds)
    found = cryptofeed_python(venv) if cryptofeed else Cryptofeed(None, "not requested")
    result: dict[str, Any] = {
        "capture": path.name,
        "rounds": rounds,
        "messages": len(backlog.frames),
        "level_updates": backlog.level_updates,
        "regime": "backlog",
        "subscriber": f"{SUBSCRIBERS} of book.{SYMBOL} (depth {DEPTH}) and bbo.{SYMBOL}, not batched",
        "crossbook_python": platform.python_version(),
        "cryptofeed_version": found.version if found.python else None,
        "cryptofeed_python": found.python_version or None,
    }
    if found.note:
        result["cryptofeed_note"] = found.note
    paced_result: dict[str, Any] = {
        "rate": paced_rate,
        "rounds": paced_rounds,
        "messages": len(paced.frames),
        "level_updates": paced.level_updates,
    }
    if found.python is None:
        result["crossbook"] = asyncio.run(_ours(backlog, None, timeout))
        result["cryptofeed"] = {"skipped": found.version}
        paced_result["crossbook"] = asyncio.run(_ours(paced, paced_rate, timeout))
        paced_result["cryptofeed"] = {"skipped": found.version}
        return result | {"paced": paced_result}
    result |= {"pairs": pairs} | _side_by_side(backlog, None, found.python, pairs, timeout, "throughput")
    paced_result |= _side_by_side(paced, paced_rate, found.python, pairs, timeout, "cpu_per_message")
    return result | {"paced": paced_result}


def _ours(recording: Recording, rate: float | None, timeout: float) -> Coroutine[Any, Any, dict[str, Any]]:
    """crossbook's run in the comparison: one unbatched subscriber of ``book`` and ``bbo``."""
    paced = 0.0 if rate is None else len(recording.frames) / rate
    return run_crossbook(recording, timeout + paced, SUBSCRIBERS, rate=rate, batch=False, depth=DEPTH)


def _side_by_side(
    recording: Recording, rate: float | None, python: Path, pairs: int, timeout: float, by: str
) -> dict[str, Any]:
    """``pairs`` runs of each side, in turn (crossbook first in even pairs): :func:`median_pair`."""
    paced = 0.0 if rate is None else len(recording.frames) / rate
    runs = []
    for pair in range(pairs):
        if pair % 2:
            theirs = asyncio.run(run_cryptofeed(recording, python, timeout + paced, rate=rate))
            runs.append((asyncio.run(_ours(recording, rate, timeout)), theirs))
        else:
            ours = asyncio.run(_ours(recording, rate, timeout))
            runs.append((ours, asyncio.run(run_cryptofeed(recording, python, timeout + paced, rate=rate))))
    return median_pair(runs, by)


RATIOS: dict[str, Callable[[dict[str, Any], dict[str, Any]], float]] = {
    "throughput": lambda ours, theirs: float(ours["messages_per_s"] / theirs["messages_per_s"]),
    "cpu_per_message": lambda ours, theirs: float(theirs["cpu_us_per_message"] / ours["cpu_us_per_message"]),
}
"""crossbook's advantage, each above 1 where crossbook does better: its frames/s over
cryptofeed's, and cryptofeed's CPU per frame over its own."""


def median_pair(runs: list[tuple[dict[str, Any], dict[str, Any]]], by: str = "throughput") -> dict[str, Any]:
    """Of (crossbook, cryptofeed) runs side by side: both sides' figures in the pair with the
    median ``by`` ratio (:data:`RATIOS`; the upper of the middle two for an even number), its
    ratios, and every pair's ``by`` ratio, lowest first (``<by>_ratio_of_each_pair``)."""
    ratios = sorted((RATIOS[by](ours, theirs), i) for i, (ours, theirs) in enumerate(runs))
    median = ratios[len(ratios) // 2][1]
    ours, theirs = runs[median]
    return {
        "crossbook": ours,
        "cryptofeed": theirs,
        "ratio": {name: ratio(ours, theirs) for name, ratio in RATIOS.items()},
        f"{by}_ratio_of_each_pair": [r for r, _ in ratios],
    }


def _print(result: dict[str, Any]) -> None:
    print(f"{result['capture']}: crossbook on Python {result['crossbook_python']}, subscriber: {result['subscriber']}")
    if result["cryptofeed_version"]:
        print(f"  cryptofeed {result['cryptofeed_version']} on Python {result['cryptofeed_python']}")
    if "cryptofeed_note" in result:
        print(f"  ({result['cryptofeed_note']})")
    paced = result["paced"]
    regimes = [
        (f"backlog: {result['messages']:,} frames as fast as each reads", result, "throughput"),
        (f"paced: {paced['messages']:,} frames at {paced['rate']:,.0f}/s", paced, "cpu_per_message"),
    ]
    keys = ["seconds", "messages_per_s", "level_updates_per_s", "cpu_us_per_message", "book_ok", "version", "python"]
    for title, figures, by in regimes:
        print(title)
        print(f"  {'':<22}{'crossbook':>16}{'cryptofeed':>16}")
        for key in keys:
            sides = ("crossbook", "cryptofeed")
            cells = [_cell(figures[side].get(key, figures[side].get("skipped", ""))) for side in sides]
            print(f"  {key:<22}{cells[0]:>16}{cells[1]:>16}")
        ratio = figures.get("ratio")
        if ratio:
            throughput, cpu = ratio["throughput"], ratio["cpu_per_message"]
            print(f"  crossbook/cryptofeed frames/s: {throughput:.2f}x; cryptofeed/crossbook CPU a frame: {cpu:.2f}x")
        if f"{by}_ratio_of_each_pair" in figures:
            each = ", ".join(f"{r:.2f}x" for r in figures[f"{by}_ratio_of_each_pair"])
            print(f"  {by} ratio of each of {result['pairs']} pairs: {each}")


def _cell(value: Any) -> str:
    return f"{value:,.2f}" if isinstance(value, float) else str(value)[:15]


def positive(text: str) -> int:
    """An argparse type: a whole number of 1 or more."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _rate(text: str) -> float:
    """An argparse type: frames a second, above 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {value}")
    return value


def _cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crossbook_bench.versus", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="backlog: times the recorded diffs are served")
    parser.add_argument("--pairs", type=positive, default=3, help="runs of each side in each regime, in turn")
    parser.add_argument("--paced-rate", type=_rate, default=PACED_RATE, help="paced: frames a second")
    parser.add_argument("--paced-rounds", type=positive, default=PACED_ROUNDS, help="paced: times the diffs are served")
    parser.add_argument("--limit", type=int, help="serve only the first N recorded diffs")
    parser.add_argument("--no-cryptofeed", action="store_true", help="the crossbook side only")
    parser.add_argument(
        "--venv", type=Path, default=CRYPTOFEED_VENV, help="prefix of cryptofeed's venv (-pyX.Y-cryptofeedV appended)"
    )
    args = parser.parse_args(argv)
    result = bench_versus(
        rounds=args.rounds,
        pairs=args.pairs,
        limit=args.limit,
        cryptofeed=not args.no_cryptofeed,
        venv=args.venv,
        paced_rate=args.paced_rate,
        paced_rounds=args.paced_rounds,
    )
    _print(result)
    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(_cli())
