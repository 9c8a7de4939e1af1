"""Benchmark: ``python -m crossbook_bench [--only SCENARIO ...] [--seconds S]``.

Bounded scenarios, all on this machine (loopback only), printed as a table and as JSON:

1. ``core``: pre-generated sim deltas for 3 venues pushed through the engine (venue books and
   consolidation) and the hub (diffing and encoding for subscribed sessions, no sockets).
2. ``ingest``: the recorded Binance spot depth stream (``shared/captures``, ``--rounds`` times
   over) pushed by a fake Binance (WebSocket + REST) as fast as the daemon, a child process,
   reads it, with one batched subscriber of ``book``/``bbo``: level updates/s and CPU per frame
   through parser, sync, venue book, consolidation and encoded deltas; the book must end live
   and equal to the replayed one. Then the same for Kraken v2 and OKX on ``--frames`` frames of
   ~20 levels that their test kits' fake venues generate (sequence ids, Kraken's checksums), the
   book ending equal to the fake market's (Binance's too, when its recording is absent).
3. ``fanout``: the fake venue at ``--venue-rate`` frames/s (by default more than the daemon takes,
   so the figures are its capacity); venue frames/s taken and messages/s delivered to 1, 100 and
   1,000 batched subscribers of ``book.BTC-USDT`` and ``bbo.BTC-USDT``. Frames read together make
   one update per channel, so a saturated daemon sends fewer, later states: its fan-out capacity
   is ``client_messages_per_cpu_second`` of a run it keeps up with (``latency_1k``).
4. ``latency``: 100 subscribers, the venue at ``--latency-rate`` (and at 1,000) frames/s: venue
   frame received by the daemon -> subscriber received, p50/p99/max, timed by 5 probes.
5. ``e2e``: the daemon with 3 sim venues at ``--rate`` messages/s each and ``--subscribers``
   websockets clients: delivered messages/s, latency, peak RSS. ``stalled``: the same beside
   ``--stalled`` subscribers that never read.
6. ``memory``: bytes per level of a venue book and of a consolidated book, bytes per idle
   subscriber in the hub, the daemon's RSS per idle WebSocket subscriber, and its RSS after an
   hour of the venue's time (the ``ingest`` recording replayed, ~11 rounds) and after each round.
7. ``captures``: every built-in connector's parser and book syncs on its real captures.
8. ``versus``: crossbook against cryptofeed on the same stream (:mod:`crossbook_bench.versus`), the
   daemon with one unbatched subscriber of ``book``/``bbo``, cryptofeed's newest release on a Python
   that can run it: CPU per frame with the frames served as fast as each reads (``--rounds``) and
   paced at 1,000 frames/s, each frame alone.
9. ``stages``: the ``ingest`` frames in this process, no sockets: µs per frame in parse + book
   sync, in the engine (venue and consolidated books), and in the hub (views, diffs, encoding
   for one session of ``book`` and ``bbo``): where a frame's time goes, without I/O. Beside them,
   the same work inlined in one loop (:mod:`crossbook_bench.floor`): what the structure costs.
10. ``writes``: the floor under ``fanout`` and ``latency``: CPU per bare ``send()`` of a batched
    update's bytes to each of 100 loopback sockets that another process drains, 1,000 rounds a
    second (as ``latency_1k``'s frames come), and what it bounds on one core with nothing else
    to do: messages per CPU-second at 1 and 2 messages a write, the messages a write must carry
    for 1M a second, and the median subscriber's wait for the writes up to its own.
11. ``cluster``: the ingest and edge roles over a real ``nats-server`` beside the ``all`` role
    (:mod:`crossbook_bench.cluster`): efficiency, added latency, fan-out with per-process CPU,
    takeover after SIGKILL, lease stability, and the capacity model (:mod:`crossbook_bench.capacity`).
"""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import urlencode

import orjson

from crossbook import __version__, compiled
from crossbook.service.server import linger_seconds
from crossbook_bench.cluster import bench_cluster
from crossbook_bench.inproc import bench_captures, bench_core, bench_stages
from crossbook_bench.runs import (
    bench_e2e,
    bench_fanout,
    bench_ingest,
    bench_ingest_generated,
    bench_latency,
    bench_memory,
)
from crossbook_bench.versus import bench_versus, positive
from crossbook_bench.writes import bench_writes

SCENARIOS = [
    "core",
    "ingest",
    "fanout",
    "latency",
    "e2e",
    "stalled",
    "memory",
    "captures",
    "stages",
    "versus",
    "writes",
    "cluster",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crossbook_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per scenario")
    parser.add_argument("--subscribers", type=int, default=10, help="core, e2e: API subscribers")
    parser.add_argument("--rate", type=float, default=1000.0, help="e2e: messages/s of each of the 3 sim venues")
    parser.add_argument("--venue-rate", type=float, default=10_000.0, help="fanout: Binance frames/s of the fake venue")
    parser.add_argument("--latency-rate", type=float, default=10_000.0, help="latency: frames/s of the fake venue")
    parser.add_argument("--rounds", type=int, default=20, help="ingest, versus: times the recorded diffs are served")
    parser.add_argument(
        "--frames",
        type=int,
        default=30_000,
        help="ingest: generated frames (Kraken, OKX; Binance without its recording)",
    )
    parser.add_argument(
        "--linger-ms", type=_linger_ms, default=10, help="latency: also at 1,000 frames/s, subscribers held this long"
    )
    parser.add_argument(
        "--pairs",
        type=positive,
        default=3,
        help="versus: runs of each side, in turn; cluster: runs of all and cluster, in turn",
    )
    parser.add_argument("--only", choices=SCENARIOS, action="append", help="run these scenarios (repeatable)")
    parser.add_argument("--stalled", type=int, default=100, help="stalled: subscribers that never read")
    args = parser.parse_args(argv)
    only = set(args.only or SCENARIOS)
    results: dict[str, dict[str, Any]] = {"build": {"version": __version__, "compiled": compiled()}}
    if "core" in only:
        results["core"] = bench_core(args.seconds, args.subscribers)
    if "ingest" in only:
        results["ingest"] = {"binance": bench_ingest(args.rounds, 1, args.frames)}
        for connector in ("kraken", "okx"):
            results["ingest"][connector] = bench_ingest_generated(connector, args.frames)
    if "fanout" in only:
        results["fanout"] = bench_fanout(args.seconds, [1, 100, 1000], args.venue_rate)
    if "latency" in only:
        results["latency"] = bench_latency(args.seconds, 100, args.latency_rate)
        results["latency_1k"] = bench_latency(args.seconds, 100, 1000.0)
        results["latency_1k_linger"] = bench_latency(args.seconds, 100, 1000.0, linger_ms=args.linger_ms)
    if "e2e" in only:
        results["e2e"] = bench_e2e(args.seconds, args.subscribers, args.rate)
    if "memory" in only:
        results["memory"] = bench_memory()
    if "captures" in only:
        results["captures"] = bench_captures()
    if "stalled" in only:
        results["stalled"] = bench_e2e(args.seconds, args.subscribers, args.rate, args.stalled)
    if "stages" in only:
        results["stages"] = bench_stages()
    if "versus" in only:
        results["versus"] = bench_versus(rounds=args.rounds, pairs=args.pairs)
    if "writes" in only:
        results["writes"] = bench_writes(args.seconds)
    if "cluster" in only:
        results["cluster"] = bench_cluster(args.seconds, args.pairs)
    for scenario, figures in results.items():
        _table(scenario, figures)
    print(orjson.dumps(results).decode())
    return 0


def _linger_ms(text: str) -> int:
    """An argparse type: what a stream URL's ``linger_ms`` takes (the server's own check)."""
    try:
        seconds = linger_seconds(urlencode({"linger_ms": text}))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    assert seconds is not None
    return round(seconds * 1000)


def _table(name: str, figures: dict[str, Any], indent: str = "") -> None:
    print(f"{indent}[{name}]")
    for key, value in figures.items():
        if isinstance(value, dict):
            _table(key, value, indent + "  ")
        elif isinstance(value, float):
            print(f"{indent}  {key:<36} {value:>14,.1f}")
        else:
            print(f"{indent}  {key:<36} {value!s:>14}")


if __name__ == "__main__":
    raise SystemExit(main())
