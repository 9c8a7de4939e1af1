"""The crossbook side of ``crossbook_bench.versus`` on a slice of the Binance capture: the fake venue
serves what the daemon needs to sync, and the daemon ingests every frame into a live book equal
to the replayed one, as fast as it reads and paced (cryptofeed is not needed here, nor installed:
which release on which Python is chosen without it). Also the in-process ``stages`` and their floor,
``ingest`` on generated Binance, Kraken and OKX frames, the paced ``fanout``/``latency`` run, and the
floor of its writes."""

from __future__ import annotations

import asyncio
import sys
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from captures import capture
from crossbook.core import exact
from crossbook_bench import cryptofeed as theirs
from crossbook_bench import floor, writes
from crossbook_bench.cryptofeed import _cryptofeed_release
from crossbook_bench.inproc import bench_stages
from crossbook_bench.loadgen import CAPTURE, load_recording, respelled
from crossbook_bench.runs import GENERATED, bench_ingest_generated, bench_latency, bench_replay_rss
from crossbook_bench.versus import _by_round, median_pair, paced_wait, run_crossbook
from crossbook_bench.writes import bench_writes


@pytest.mark.timeout(60)
@pytest.mark.slow
def test_daemon_ingests_the_recorded_slice_into_a_live_book() -> None:
    recording = load_recording(capture(CAPTURE), limit=1000, rounds=2)
    assert len(recording.frames) == 2001  # the second round is led by its reset diff

    figures = asyncio.run(run_crossbook(recording, max_seconds=40, subscribers=2))

    assert figures["book_ok"], figures
    assert figures["book_state"] == 4.0  # live
    assert figures["venue_connections"] == 1
    assert figures["resyncs"] == 0
    assert figures["skipped_events"] == 1  # only the end-of-recording sentinel
    assert figures["messages_per_s"] > 0
    # Raw batched subscribers counted book and bbo messages: at most one a channel per frame
    # (frames read together make one update). Each got its two subscribe-time messages and at
    # least one update after the book went live; no more can be relied on, as a subscriber starved
    # of CPU has its queued updates conflated, and the count is taken when the daemon has read the
    # last frame, not when every write has arrived (CI once counted 20 for the two).
    assert figures["client_messages_fewest"] > 2
    assert figures["client_messages"] < 2 * 2 * 2000
    assert Decimal(figures["best_bid"]) == recording.best_bid
    # The daemon's RSS is sampled before the frames and as it takes them, and just after each
    # round: once it has counted the round's frames (plus its status and snapshot), before the next.
    assert recording.round_frames == [1000, 2001]
    assert 0 < figures["daemon_rss_mib_before"] <= figures["daemon_peak_rss_mib"]
    assert 0 < figures["daemon_rss_mib_after"] <= figures["daemon_peak_rss_mib"]
    assert all(0 < mib <= figures["daemon_peak_rss_mib"] for mib in figures["daemon_rss_mib_by_round"])
    first, second = figures["daemon_rss_sampled_at"]
    assert 1000 <= first <= 2001 + 2
    assert 2001 <= second <= 2001 + 2


@pytest.mark.timeout(60)
@pytest.mark.slow
def test_daemon_takes_paced_frames_one_at_a_time_for_its_one_subscriber() -> None:
    recording = load_recording(capture(CAPTURE), limit=300, rounds=2)

    figures = asyncio.run(run_crossbook(recording, max_seconds=40, subscribers=1, rate=1000.0, batch=False))

    assert figures["book_ok"], figures
    assert figures["venue_rate"] == 1000.0
    assert figures["venue_frames_bunched"] == 0  # never two frames at once to catch up with the pace
    assert 300 < figures["messages_per_s"] <= 1050  # 1,000 a second, give or take a stall
    assert figures["cpu_us_per_message"] > 0
    assert (figures["subscribers"], figures["subscriber_depth"], figures["subscriber_batched"]) == (1, 20, False)
    # Unbatched, the one client got its two subscribe-time messages and more after the book went
    # live: at most one a channel per frame (and one a channel per publish while it synced).
    assert 2 < figures["client_messages"] <= 2 * 601 + 2
    assert figures["daemon_rss_sampled_at"][-1] >= 601  # a sample after the last round too


def test_paced_the_daemon_is_scraped_once_a_round_and_then_every_2_ms() -> None:
    assert paced_wait([1000, 2001], 0, 1000.0) == pytest.approx(1.002)
    assert paced_wait([1000, 2001], 1000, 1000.0) == pytest.approx(1.003)
    assert paced_wait([1000, 2001], 1990, 500.0) == pytest.approx(0.024)
    assert paced_wait([1000, 2001], 2001, 1000.0) == pytest.approx(0.002)  # all sent: until it has taken them


def test_cryptofeed_runs_on_the_newest_python_found_else_on_this_one(monkeypatch: pytest.MonkeyPatch) -> None:
    found: dict[str, Path] = {}
    monkeypatch.setattr(theirs, "find_python", found.get)
    python, minor, release, note = _cryptofeed_release()
    assert (python, release) == (Path(sys.executable), "2.4.1")
    assert minor == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert "no Python 3.13 (cryptofeed 3.0.1) or Python 3.12 (cryptofeed 2.5.0) found" in note
    found["3.12"] = Path("/opt/python3.12")
    assert _cryptofeed_release() == (
        Path("/opt/python3.12"),
        "3.12",
        "2.5.0",
        "no Python 3.13 found (cryptofeed 3.0.1 needs it): cryptofeed 2.5.0 on 3.12",
    )
    found["3.13"] = Path("/opt/python3.13")
    assert _cryptofeed_release() == (Path("/opt/python3.13"), "3.13", "3.0.1", "")


def test_the_rss_after_a_round_is_the_first_sample_taken_once_its_frames_are_counted() -> None:
    samples = [(0.0, 1 << 20), (999.0, 2 << 20), (1001.0, 3 << 20), (1500.0, 4 << 20), (2002.0, 5 << 20)]
    assert _by_round(samples, [1000, 2001]) == [(1001.0, 3 << 20), (2002.0, 5 << 20)]
    assert _by_round(samples, [1000, 9999]) == [(1001.0, 3 << 20), (2002.0, 5 << 20)]  # never reached: the last


@pytest.mark.timeout(120)
@pytest.mark.slow
def test_a_replay_of_an_hour_serves_as_many_rounds_as_cover_it() -> None:
    once = load_recording(capture(CAPTURE))
    assert 300 < once.seconds < 400  # the recording spans 346 s of Binance's time

    figures = bench_replay_rss(hours=0.15)  # 540 s: two rounds

    assert figures["book_ok"], figures
    assert figures["venue_hours"] == pytest.approx(2 * once.seconds / 3600)
    assert figures["messages"] == 2 * len(once.frames) + 1
    assert len(figures["daemon_rss_mib_by_round"]) == 2
    assert 0 < figures["daemon_rss_mib_before"] < figures["daemon_rss_mib_after"] <= figures["daemon_peak_rss_mib"]
    first, second = figures["daemon_rss_sampled_at"]
    assert len(once.frames) <= first <= 2 * len(once.frames) + 3  # the second round has its reset frame
    assert second >= 2 * len(once.frames) + 1


def test_each_repeated_round_spells_the_same_numbers_anew() -> None:
    levels = [["61824.00000000", "4.46334000"], ["61810.75000000", "0.00000000"], ["7", "1.5E-8"]]
    spellings = [respelled(levels, r) for r in range(24)]
    assert spellings[0] == levels
    for spelled in spellings:
        assert [[Decimal(p), Decimal(s)] for p, s in spelled] == [[Decimal(p), Decimal(s)] for p, s in levels]
        assert all(len(t) <= exact.PLAIN_MAX for level in spelled for t in level)  # parsed on the fast path
    texts = [text for spelled in spellings for level in spelled[:2] for text in level]
    assert len(set(texts)) == len(texts)  # no round finds another's texts in the parse cache
    assert {spelled[2][1] for spelled in spellings} == {"1.5E-8"}  # not a plain decimal: kept
    assert respelled(levels, 24) == levels
    recording = load_recording(capture(CAPTURE), limit=50, rounds=3)
    first, third = orjson.loads(recording.frames[0])["data"], orjson.loads(recording.frames[-50])["data"]
    assert first["b"] != third["b"]
    assert [[Decimal(p), Decimal(s)] for p, s in first["b"]] == [[Decimal(p), Decimal(s)] for p, s in third["b"]]


@pytest.mark.timeout(90)
@pytest.mark.slow
def test_a_paced_run_times_deltas_and_counts_what_it_delivers() -> None:
    capture(CAPTURE)  # skips (fails under CI) without the recording
    figures = bench_latency(seconds=1.0, subscribers=3, rate=200.0)
    assert figures["book_live_without_resync"] is True
    assert 50 < figures["venue_messages_per_s"] < 1000  # 200 a second, give or take a stall
    assert figures["client_messages_per_s"] > 100  # 3 subscribers of book and bbo
    assert figures["client_messages_per_cpu_second"] > figures["client_messages_per_s"]  # a core not used up
    assert 100 < figures["client_bytes_per_message"] < 2_000  # a delta of a few levels, a bbo
    assert figures["latency_samples"] > 100
    assert 0 < figures["latency_p50_us"] <= figures["latency_p99_us"] <= figures["latency_max_us"]


@pytest.mark.timeout(90)
@pytest.mark.slow
def test_a_paced_run_with_held_writes_delays_what_it_delivers() -> None:
    capture(CAPTURE)  # skips (fails under CI) without the recording
    figures = bench_latency(seconds=0.5, subscribers=2, rate=200.0, linger_ms=20)
    assert figures["linger_ms"] == 20
    assert figures["book_live_without_resync"] is True
    assert figures["latency_samples"] > 20
    # A held write waits 20 ms from its first message, queued after the daemon received it, and
    # later ones less: measured p50 13.5-13.9 ms (0.45 ms without linger_ms, max 1.8-2.6 ms).
    assert figures["latency_max_us"] >= 20_000
    assert 5_000 < figures["latency_p50_us"] < 20_000 + 100_000  # held once, not again and again


@pytest.mark.timeout(60)
def test_the_write_floor_times_every_send_and_the_reader_gets_every_byte() -> None:
    figures = bench_writes(seconds=0.2, subscribers=5, rate=200.0, payload=1000)
    assert figures["writes"] == 40 * 5
    assert figures["all_bytes_read"] is True
    assert 0 < figures["cpu_us_per_write"] < 10_000
    one, two = figures["messages_per_cpu_second_1_a_write"], figures["messages_per_cpu_second_2_a_write"]
    assert two == pytest.approx(2 * one)
    assert one == pytest.approx(1e6 / figures["cpu_us_per_write"])
    assert figures["median_subscriber_wait_us"] == pytest.approx(3 * figures["cpu_us_per_write"])


@pytest.mark.timeout(60)
@pytest.mark.slow
def test_the_write_floor_fails_clearly_when_its_reader_does_not_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(port: int, count: int, report: object) -> None:
        raise SystemExit(3)  # as a reader that cannot open its sockets

    monkeypatch.setattr(writes, "WRITES_CONNECT_SECONDS", 2.0)
    monkeypatch.setattr(writes, "_drain", broken)
    with pytest.raises(RuntimeError, match="connected 0 of 5"):
        bench_writes(seconds=0.1, subscribers=5)


@pytest.mark.timeout(60)
@pytest.mark.slow
def test_stages_split_a_frames_time_without_io() -> None:
    capture(CAPTURE)  # skips (fails under CI) without the recording
    figures = bench_stages(rounds=1)  # asserts the book ends live, and the floor's book equal to it
    stages = [figures[f"{s}_us_per_frame"] for s in ("parse_sync", "engine", "hub")]
    assert all(us > 0 for us in stages)
    assert figures["total_us_per_frame"] == pytest.approx(sum(stages))
    assert figures["total_over_floor"] == pytest.approx(figures["total_us_per_frame"] / figures["floor_us_per_frame"])
    assert figures["frames"] == len(load_recording(capture(CAPTURE)).frames)


def test_the_floor_keeps_the_consolidated_book_and_refuses_a_gap() -> None:
    snapshot = orjson.dumps({"lastUpdateId": 10, "bids": [["99.0", "1"], ["98.5", "2"]], "asks": [["100.0", "3"]]})

    def diff(first: int, last: int, bids: list[list[str]], asks: list[list[str]]) -> bytes:
        return orjson.dumps({"stream": "x", "data": {"U": first, "u": last, "b": bids, "a": asks}})

    frames = [
        diff(5, 10, [["1", "1"]], []),  # covered by the snapshot: dropped
        diff(9, 12, [["99.0", "0"], ["98.7", "4"]], [["100.5", "1"]]),
        diff(13, 13, [], [["100.0", "0.50"]]),
    ]
    seconds, top = floor.replay(snapshot, frames, "v", 2)
    assert seconds > 0
    assert top == [
        [[Decimal("98.7"), Decimal("4")], [Decimal("98.5"), Decimal("2")]],
        [[Decimal("100.0"), Decimal("0.50")], [Decimal("100.5"), Decimal("1")]],
    ]
    with pytest.raises(ValueError, match="gap"):
        floor.replay(snapshot, [diff(12, 13, [], [])], "v", 2)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("connector", sorted(GENERATED))
@pytest.mark.slow
def test_daemon_ingests_generated_frames_into_the_venues_book(connector: str) -> None:
    figures = bench_ingest_generated(connector, 300)

    assert figures["book_ok"], figures  # the daemon's whole consolidated book equals the fake market's
    assert figures["book_live_without_resync"], figures  # every sequence id (and Kraken checksum) held
    assert figures["messages"] == 300
    assert 300 * 10 < figures["level_updates"] <= 300 * 20  # counted in the frames sent, up to 20 a frame


def test_versus_reports_the_pair_with_the_median_ratio_and_every_pairs_ratio() -> None:
    def run(messages_per_s: float, cpu_us: float) -> dict[str, float]:
        return {"messages_per_s": messages_per_s, "cpu_us_per_message": cpu_us}

    # A slow spell in the second pair halved crossbook's run only: the median pair is the third.
    runs = [(run(300, 3), run(100, 9)), (run(150, 6), run(100, 9)), (run(200, 5), run(100, 10))]
    figures = median_pair(runs)
    assert figures["throughput_ratio_of_each_pair"] == [1.5, 2.0, 3.0]
    assert figures["crossbook"] is runs[2][0]
    assert figures["cryptofeed"] is runs[2][1]
    assert figures["ratio"] == {"throughput": 2.0, "cpu_per_message": 2.0}


def test_paced_versus_reports_the_pair_with_the_median_cpu_ratio() -> None:
    def run(cpu_us: float) -> dict[str, float]:
        return {"messages_per_s": 1000.0, "cpu_us_per_message": cpu_us}

    runs = [(run(100), run(300)), (run(200), run(300)), (run(100), run(150))]
    figures = median_pair(runs, "cpu_per_message")
    assert figures["cpu_per_message_ratio_of_each_pair"] == [1.5, 1.5, 3.0]
    assert figures["crossbook"] is runs[2][0]  # the upper of equal ratios: the later pair
    assert figures["ratio"] == {"throughput": 1.0, "cpu_per_message": 1.5}
