"""The ``cluster`` scenario: the ingest and edge roles over a real ``nats-server``, beside the ``all``
role, every process a child on loopback (README "Cluster"; :mod:`crossbook_bench.capacity` turns
the costs measured here into the capacity model).

Runs, in one invocation:

- ``pairs``: ``pairs`` times in turn, the ``all`` role (the ``latency`` scenario at 1,000 frames/s)
  and an ingest with an edge, each with the same ``subscribers`` of ``book``/``bbo`` (5 of them
  timing deltas) fed by the fake Binance at 1,000 frames/s, plus a bare edge (no subscriber):
  delivered messages per CPU-second of the edge against the ``all`` daemon's, and the venue frame
  received (by the ingest, by the ``all`` daemon) to subscriber received, p50 and p99.
- ``fanout``: 1, 2, ... ``edges`` edges of ``fanout_subscribers`` each at 500 frames/s, the CPU
  of each process (``nats-server``, ingest, edges) read from ``/proc``; the processes are not
  pinned: they share the machine's cores with the bench, whose load is ``machine_cores_busy``.
- ``saturated``: a leader and a hot standby ingest, each reading its own fake Binance as fast as
  it can, and a bare edge: CPU per venue message of each (the difference is the bus's), bus bytes
  per venue message, and the lease held throughout (lease wins and epochs).
- ``takeover``: two ingests on one fake venue and two edges; ``takeovers`` times, SIGKILL the
  leader mid-stream and time until both edges' books are ``live`` in the new epoch (from the
  kill, and from the old leader's last bus message), then check them equal to the venue's book;
  a new standby is started for the next round.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import orjson

from crossbook.core.model import BookState
from crossbook_bench import loadgen
from crossbook_bench.capacity import costs, model, model_check
from crossbook_bench.inproc import BOOK_CHANNELS, _recording, bench_memory_in_process
from crossbook_bench.runs import MANY_CLIENTS, Daemon, _daemon, _run, bench_latency

RATE = 1000.0
FANOUT_RATE = 500.0
"""Frames/s in ``fanout``: three edges, NATS, the ingest and the bench's subscribers then leave a
2-core machine some idle time (at 1,000 it saturates, and CPU per message falls as work batches)."""
WARMUP = 1.0
PROBES = 5
PER_ROUND = 3450
"""Frames a round of the recording (the recorded diffs after its snapshot)."""
VENUE = "bn"
"""The takeover's venue (the fake venue of the test kit, Binance's dialect)."""


@dataclass(frozen=True)
class Nats:
    proc: subprocess.Popen[bytes]
    url: str
    monitor: int

    def varz(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor}/varz", timeout=5) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data


def nats_binary() -> str | None:
    return shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin")


@contextlib.contextmanager
def nats_server(binary: str) -> Iterator[Nats]:
    """``nats-server`` with JetStream on random loopback ports (client, monitoring), its own store."""
    with tempfile.TemporaryDirectory() as tmp:
        ports = Path(tmp) / "ports"
        ports.mkdir()
        args = ["-a", "127.0.0.1", "-p", "-1", "-m", "-1", "-js", "-sd", f"{tmp}/store", "--ports_file_dir", str(ports)]
        proc = subprocess.Popen([binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:  # the ports file appears once it listens: no event to await
                with contextlib.suppress(ValueError, OSError):
                    found = json.loads("".join(f.read_text() for f in ports.glob("*.ports")))
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("nats-server did not start")
                time.sleep(0.01)
            yield Nats(proc, found["nats"][0], int(found["monitoring"][0].rpartition(":")[2]))
        finally:
            proc.terminate()
            proc.wait(10)


def role(name: str, url: str, node: str) -> str:
    return f'[cluster]\nrole = "{name}"\nnats_url = ["{url}"]\nnode = "{node}"\n'


def bench_cluster(
    seconds: float,
    pairs: int = 3,
    subscribers: int = 100,
    edges: int = 3,
    fanout_subscribers: int = 20,
    takeovers: int = 3,
) -> dict[str, Any]:
    binary = nats_binary()
    if binary is None:
        return {"skipped": "nats-server not installed (Debian package 'nats-server')"}
    paced = _recording(max(1, round((seconds + WARMUP + 2) * RATE / PER_ROUND)))
    if paced is None:
        return {"skipped": f"capture {loadgen.CAPTURE} not present"}
    out: dict[str, Any] = {"nats_server": binary, "rate": RATE, "subscribers": subscribers}
    with nats_server(binary) as nats:
        runs: list[dict[str, Any]] = []
        for _ in range(pairs):
            alone = bench_latency(seconds, subscribers, RATE)
            split = _run(_paced_cluster, paced, nats, seconds, [0, subscribers])
            runs.append({"all": alone, "cluster": split} | _compare(alone, split["edges"][1]))
        out["pairs"] = {str(i + 1): run for i, run in enumerate(runs)}
        out |= {key: _span([r[key] for r in runs]) for key in runs[0] if key not in ("all", "cluster")}
        out["fanout"] = {
            f"{n}_edges": _run(_paced_cluster, paced, nats, seconds, [fanout_subscribers] * n, FANOUT_RATE)
            for n in range(1, edges + 1)
        }
        frames = max(1, round((seconds + WARMUP + 3) * 20_000 / PER_ROUND))  # more than an ingest reads
        fast = _recording(frames)
        assert fast is not None
        out["saturated"] = _run(_saturated, fast, nats, seconds)
        out["takeover"] = _run(_takeovers, nats, takeovers)
    out["lease"] = _lease(out)
    out["memory"] = bench_memory_in_process()
    out["levels_per_book"] = len(orjson.loads(paced.snapshot)["bids"]) + len(orjson.loads(paced.snapshot)["asks"])
    measured = costs(out)
    out["costs"] = measured
    out["model_check"] = model_check(out["fanout"])
    out["model"] = model(measured, out["levels_per_book"], out["memory"])
    return out


def _lease(out: dict[str, Any]) -> dict[str, Any]:
    """Leader changes no kill caused: each run starts fresh ingests, so one win per run, none after."""
    paced = [run["cluster"] for run in out["pairs"].values()] + list(out["fanout"].values())
    sat = out["saturated"]
    wins = sum(r["lease_wins"] for r in paced) + sum(sat[k]["lease_wins"] for k in ("leader", "standby") if k in sat)
    resyncs = sum(e["bus_resyncs"] for r in paced for e in r["edges"]) + sat["edge"]["bus_resyncs"]
    return {
        "runs": len(paced) + 1,
        "lease_wins": wins,
        "unprovoked_leader_changes": wins - len(paced) - 1,
        "edge_bus_resyncs": resyncs,
        "saturated_epochs_followed": sat["edge"]["epochs_followed"],
    }


def _compare(alone: dict[str, Any], edge: dict[str, Any]) -> dict[str, float]:
    return {
        "efficiency_edge_vs_all": edge["client_messages_per_cpu_second"] / alone["client_messages_per_cpu_second"],
        "added_latency_p50_us": edge["latency_p50_us"] - alone["latency_p50_us"],
        "added_latency_p99_us": edge["latency_p99_us"] - alone["latency_p99_us"],
    }


def _span(values: list[float]) -> str:
    """Repeated figures as a range, ``low to high``."""
    return f"{min(values):.3g} to {max(values):.3g}" if len(values) > 1 else f"{values[0]:.3g}"


@dataclass
class _Sample:
    t: float
    cpu: dict[str, float]
    metrics: dict[str, str]
    varz: dict[str, Any]
    machine: tuple[float, float]
    """The machine's busy and total CPU time, summed over its cores (``/proc/stat``, in ticks)."""
    rss: dict[str, int]


def _sample(nats: Nats, procs: dict[str, Daemon]) -> _Sample:
    """CPU seconds of each process, each daemon's metrics page and NATS's counters, now."""
    cpu = {"nats": loadgen.cpu_seconds(nats.proc.pid)} | {
        k: loadgen.cpu_seconds(p.pid) for k, (p, _, _) in procs.items()
    }
    pages = {k: loadgen.scrape(metrics) for k, (_, _, metrics) in procs.items()}
    ticks = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    rss = {k: loadgen.rss_bytes(p.pid) for k, (p, _, _) in procs.items()}
    machine = (sum(ticks) - ticks[3] - ticks[4], sum(ticks))  # idle and iowait are not busy
    return _Sample(time.perf_counter(), cpu, pages, nats.varz(), machine, rss)


def _machine_cores(a: _Sample, b: _Sample) -> float:
    """Cores busy between two samples, every process of the machine counted (the bench's too)."""
    return (b.machine[0] - a.machine[0]) / max(b.machine[1] - a.machine[1], 1) * (os.cpu_count() or 1)


def _delta(a: _Sample, b: _Sample, key: str, metric: str) -> float:
    return loadgen.metric_value(b.metrics[key], metric) - loadgen.metric_value(a.metrics[key], metric)


def _bus(a: _Sample, b: _Sample, venue_messages: float) -> dict[str, float]:
    """NATS's side between two samples, per venue message the ingest read."""
    per = max(venue_messages, 1)
    dt = b.t - a.t
    return {
        "nats_cpu_share": (b.cpu["nats"] - a.cpu["nats"]) / dt,
        "bus_messages_per_venue_message": (b.varz["in_msgs"] - a.varz["in_msgs"]) / per,
        "bus_bytes_per_venue_message": (b.varz["in_bytes"] - a.varz["in_bytes"]) / per,
        "nats_out_messages_per_s": (b.varz["out_msgs"] - a.varz["out_msgs"]) / dt,
        "nats_out_bytes_per_s": (b.varz["out_bytes"] - a.varz["out_bytes"]) / dt,
        "nats_cpu_us_per_message_in_or_out": (b.cpu["nats"] - a.cpu["nats"])
        / max(b.varz["in_msgs"] - a.varz["in_msgs"] + b.varz["out_msgs"] - a.varz["out_msgs"], 1)
        * 1e6,
    }


@contextlib.contextmanager
def _nodes(tables: dict[str, tuple[str, str]]) -> Iterator[dict[str, Daemon]]:
    """Daemons in child processes: name -> (their TOML, ``[server]`` keys)."""
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(_daemon(toml, keys)) for name, (toml, keys) in tables.items()}


async def _stop(procs: dict[str, Daemon]) -> None:
    """SIGTERM every daemon while this loop still serves their venues and subscribers."""
    for proc, _, _ in procs.values():
        proc.terminate()
    for proc, _, _ in procs.values():
        await anyio.to_thread.run_sync(proc.wait, 30)


async def _paced_cluster(
    recording: loadgen.Recording, nats: Nats, seconds: float, edges: list[int], rate: float = RATE
) -> dict[str, Any]:
    """An ingest fed at ``rate`` frames/s and edges with these numbers of subscribers."""
    venue = loadgen.FakeBinance(recording, rate=rate)
    async with venue.serving() as port:
        table = loadgen.daemon_venue(port)
        tables = {"ingest": (table + role("ingest", nats.url, "ingest-a"), "")}
        tables |= {f"edge{i}": (table + role("edge", nats.url, f"edge-{i}"), MANY_CLIENTS) for i in range(len(edges))}
        with _nodes(tables) as procs:
            subs = {}
            for i, n in enumerate(edges):
                api = procs[f"edge{i}"][1]
                subs[i] = await loadgen.subscribers(api, n, BOOK_CHANNELS, batch=True, probes=min(n, PROBES))
            venue.ready.set()
            await anyio.sleep(WARMUP)
            for group in subs.values():
                for sub in group:
                    sub.latencies_ns.clear()
            got0 = {i: sum(s.messages for s in group) for i, group in subs.items()}
            a = await anyio.to_thread.run_sync(_sample, nats, procs)
            await anyio.sleep(seconds)
            got1 = {i: sum(s.messages for s in group) for i, group in subs.items()}
            b = await anyio.to_thread.run_sync(_sample, nats, procs)
            for group in subs.values():
                loadgen.close(group)
            await _stop(procs)
    dt = b.t - a.t
    venue_messages = _delta(a, b, "ingest", "crossbook_venue_messages_total")
    ingest_cpu = b.cpu["ingest"] - a.cpu["ingest"]
    per_edge = []
    for i, n in enumerate(edges):
        key, cpu = f"edge{i}", b.cpu[f"edge{i}"] - a.cpu[f"edge{i}"]
        bus_messages = _delta(a, b, key, "crossbook_venue_messages_total")
        delivered = got1[i] - got0[i]
        state = loadgen.metric_value(b.metrics[key], "crossbook_book_state")
        edge = {
            "subscribers": n,
            "cpu_share": cpu / dt,
            "bus_messages_per_s": bus_messages / dt,
            "cpu_us_per_bus_message": cpu / max(bus_messages, 1) * 1e6,
            "client_messages_per_s": delivered / dt,
            "client_messages_per_cpu_second": delivered / max(cpu, 1e-9),
            "bus_resyncs": loadgen.metric_value(b.metrics[key], "crossbook_cluster_bus_resyncs_total"),
            "epoch": loadgen.metric_value(b.metrics[key], "crossbook_cluster_epoch"),
            "book_live": state == BookState.LIVE.value,
            "rss_mib": b.rss[key] / 2**20,
        }
        if n:
            edge |= loadgen.percentiles([x for s in subs[i][:PROBES] for x in s.latencies_ns])
        per_edge.append(edge)
    return {
        "venue_messages_per_s": venue_messages / dt,
        "ingest_cpu_share": ingest_cpu / dt,
        "ingest_cpu_us_per_venue_message": ingest_cpu / max(venue_messages, 1) * 1e6,
        "lease_wins": loadgen.metric_value(b.metrics["ingest"], "crossbook_cluster_lease_wins_total"),
        "machine_cores_busy": _machine_cores(a, b),
        "ingest_rss_mib": b.rss["ingest"] / 2**20,
        "edges": per_edge,
    } | _bus(a, b, venue_messages)


async def _saturated(recording: loadgen.Recording, nats: Nats, seconds: float) -> dict[str, Any]:
    """Two ingests (leader and standby), each on its own fake Binance served as fast as it reads,
    and a bare edge: CPU per venue message of each, the lease held under that load."""
    venues = [loadgen.FakeBinance(recording), loadgen.FakeBinance(recording)]
    async with venues[0].serving() as port0, venues[1].serving() as port1:
        tables = {
            f"ingest{i}": (loadgen.daemon_venue(p) + role("ingest", nats.url, f"ingest-{i}"), "")
            for i, p in enumerate((port0, port1))
        }
        tables["edge"] = (loadgen.daemon_venue(port0) + role("edge", nats.url, "edge-0"), "")
        with _nodes(tables) as procs:
            for venue in venues:
                venue.ready.set()
            await anyio.sleep(WARMUP)
            a = await anyio.to_thread.run_sync(_sample, nats, procs)
            await anyio.sleep(seconds)
            b = await anyio.to_thread.run_sync(_sample, nats, procs)
            await _stop(procs)
    dt = b.t - a.t
    out: dict[str, Any] = {}

    def leading(key: str) -> tuple[float, float]:
        page = b.metrics[key]
        wins = loadgen.metric_value(page, "crossbook_cluster_lease_wins_total")
        return wins > 0, loadgen.metric_value(page, "crossbook_cluster_leader")

    leader = max(("ingest0", "ingest1"), key=leading)  # the standby never won, or leads no more
    for key in ("ingest0", "ingest1"):
        messages = _delta(a, b, key, "crossbook_venue_messages_total")
        out["leader" if key == leader else "standby"] = {
            "venue_messages_per_s": messages / dt,
            "cpu_share": (b.cpu[key] - a.cpu[key]) / dt,
            "cpu_us_per_venue_message": (b.cpu[key] - a.cpu[key]) / max(messages, 1) * 1e6,
            "lease_wins": loadgen.metric_value(b.metrics[key], "crossbook_cluster_lease_wins_total"),
        }
    bus_messages = _delta(a, b, "edge", "crossbook_venue_messages_total")
    edge_cpu = b.cpu["edge"] - a.cpu["edge"]
    out["edge"] = {
        "bus_messages_per_s": bus_messages / dt,
        "cpu_share": edge_cpu / dt,
        "cpu_us_per_bus_message": edge_cpu / max(bus_messages, 1) * 1e6,
        "bus_resyncs": loadgen.metric_value(b.metrics["edge"], "crossbook_cluster_bus_resyncs_total"),
        "epochs_followed": len({loadgen.metric_value(s.metrics["edge"], "crossbook_cluster_epoch") for s in (a, b)}),
    }
    led = out["leader"]["venue_messages_per_s"] * dt
    return out | {"seconds": dt, "machine_cores_busy": _machine_cores(a, b)} | _bus(a, b, led)


def _gauge(port: int, name: str) -> float:
    return loadgen.metric_value(loadgen.scrape(port), name)


async def _until(check: Callable[[], bool], within: float, what: str) -> float:
    """Seconds until ``check()`` (run in a thread: it reads other processes' metrics) holds."""
    return (await _each([check], within, what))[0]


async def _each(checks: list[Callable[[], bool]], within: float, what: str) -> list[float]:
    """Seconds until each of ``checks`` first holds, polled together every few ms."""
    start, done = time.monotonic(), dict[int, float]()
    try:
        with anyio.fail_after(within):
            while len(done) < len(checks):
                for i, check in enumerate(checks):
                    if i not in done and await anyio.to_thread.run_sync(check):
                        done[i] = time.monotonic() - start
                await anyio.sleep(0.005)  # other processes' state: no event to await
    except TimeoutError:
        raise TimeoutError(f"cluster bench: not within {within} s: {what}") from None
    return [done[i] for i in range(len(checks))]


async def _takeovers(nats: Nats, rounds: int) -> dict[str, Any]:
    """SIGKILL the leading ingest ``rounds`` times, a standby running each time (see module doc)."""
    import nats as nats_py  # a cluster scenario's own listener on the bus

    from crossbook.testing.fakevenue import FakeVenue
    from crossbook.testing.market import FakeMarket
    from crossbook_binance.fake import BinanceDialect

    symbol = loadgen.SYMBOL
    market = FakeMarket([symbol], seed=5, levels=90)  # changes reach 5 levels beyond: < depth 100
    fake = FakeVenue(BinanceDialect(market), market)
    last: dict[int, float] = {}

    async def heard(msg: Any) -> None:
        last[orjson.loads(msg.data)["ep"]] = time.monotonic()

    moving = [False]

    async def move() -> None:
        while True:
            if moving[0]:
                await fake.step(symbol)
            await anyio.sleep(0.01)

    results = []
    async with fake.running(), anyio.create_task_group() as tg:
        nc = await nats_py.connect(nats.url)
        await nc.subscribe(f"crossbook.v1.book.{VENUE}.*", cb=heard)
        table = (
            f'[venues.{VENUE}]\nconnector = "binance"\nsymbols = ["{symbol}"]\nws_url = "{fake.ws_url}"\n'
            f'rest_url = "{fake.rest_url}"\n[consolidated]\ndepth = 100\n'
        )
        tg.start_soon(move)
        with contextlib.ExitStack() as stack:
            procs: dict[str, Daemon] = {}

            async def start(name: str, kind: str) -> Daemon:
                procs[name] = await anyio.to_thread.run_sync(
                    stack.enter_context, _daemon(table + role(kind, nats.url, name))
                )
                return procs[name]

            def standby_live(metrics: int) -> bool:
                page = loadgen.scrape(metrics)
                standby = loadgen.metric_value(page, "crossbook_cluster_lease_state") == 0
                return standby and loadgen.metric_value(page, "crossbook_book_state") == BookState.LIVE.value

            first = await start("ingest-0", "ingest")
            await _until(lambda: _gauge(first[2], "crossbook_cluster_leader") == 1, 20, "a leader")
            leader, standby = "ingest-0", "ingest-1"
            edges = [await start(f"edge-{i}", "edge") for i in range(2)]
            for r in range(rounds):
                spare = await start(standby, "ingest")
                await _until(partial(standby_live, spare[2]), 20, "the standby live")
                await _until(lambda: all(_exact(e, market) for e in edges), 20, "the edges live and exact")
                old = int(_gauge(edges[0][2], "crossbook_cluster_epoch"))
                moving[0] = True
                await anyio.sleep(0.5)  # the market moving on the bus before the kill
                killed = time.monotonic()
                procs[leader][0].send_signal(signal.SIGKILL)
                live = await _each([partial(_followed, e, old) for e in edges], 10, "takeover")
                new = int(_gauge(edges[0][2], "crossbook_cluster_epoch"))
                taken = killed + max(live)
                moving[0] = False
                exact = await _until(lambda: all(_exact(e, market) for e in edges), 10, "exact")
                results.append(
                    {
                        "seconds_from_kill": taken - killed,
                        "seconds_from_last_message": taken - last.get(old, killed),
                        "seconds_until_exact_after_stream_paused": exact,
                        "old_epoch": old,
                        "new_epoch": new,
                    }
                )
                leader, standby = standby, f"ingest-{r + 2}"
            await _stop(procs)
        await nc.close()
        tg.cancel_scope.cancel()
    return {
        "rounds": {str(i + 1): r for i, r in enumerate(results)},
        "seconds_from_kill": _span([r["seconds_from_kill"] for r in results]),
        "seconds_from_last_message": _span([r["seconds_from_last_message"] for r in results]),
    }


def _followed(edge: Daemon, old: int) -> bool:
    page = loadgen.scrape(edge[2])
    new = loadgen.metric_value(page, "crossbook_cluster_epoch") > old
    return new and loadgen.metric_value(page, "crossbook_book_state") == BookState.LIVE.value


def _exact(edge: Daemon, market: Any) -> bool:
    """Whether ``edge`` serves the market's whole book, live (its consolidated book has one venue)."""
    if loadgen.metric_value(loadgen.scrape(edge[2]), "crossbook_book_state") != BookState.LIVE.value:
        return False
    truth = market.books[loadgen.SYMBOL]
    return anyio.from_thread.run(loadgen.api_book, edge[1], loadgen.SYMBOL, 100) == (truth.bids(), truth.asks())
