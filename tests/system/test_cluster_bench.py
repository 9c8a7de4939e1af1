"""The bench's ``cluster`` scenario, small and short: every figure is there and sane (timings are
not judged here: the bench measures them, on whatever machine runs it)."""

from __future__ import annotations

import math

import pytest

from crossbook_bench.cluster import bench_cluster
from support import nats_server_binary

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_the_cluster_scenario_reports_every_figure() -> None:
    nats_server_binary()  # skips, or fails under CI, without it
    out = bench_cluster(0.5, pairs=1, subscribers=3, edges=2, fanout_subscribers=2, takeovers=1)
    if "skipped" in out:
        pytest.skip(out["skipped"])
    run = out["pairs"]["1"]
    assert run["all"]["book_live_without_resync"]
    cluster = run["cluster"]
    assert [e["subscribers"] for e in cluster["edges"]] == [0, 3]
    assert all(e["epoch"] >= 1 for e in cluster["edges"]), "each edge followed a leader"
    assert cluster["lease_wins"] >= 1
    assert cluster["edges"][1]["latency_samples"] > 0
    assert run["efficiency_edge_vs_all"] > 0
    assert cluster["bus_messages_per_venue_message"] > 0
    assert cluster["bus_bytes_per_venue_message"] > 100, "a frame's levels as JSON text"
    assert set(out["fanout"]) == {"1_edges", "2_edges"}
    assert len(out["fanout"]["2_edges"]["edges"]) == 2
    assert out["saturated"]["leader"]["venue_messages_per_s"] > 0
    assert out["saturated"]["standby"]["venue_messages_per_s"] > 0
    takeover = out["takeover"]["rounds"]["1"]
    assert takeover["new_epoch"] > takeover["old_epoch"]
    assert 0 < takeover["seconds_from_kill"] < 10
    assert out["lease"]["runs"] == 4
    assert all(math.isfinite(v) for v in out["costs"].values()), out["costs"]
    # CPU read in 10 ms ticks over half-second windows: a light process (NATS) may read 0 ticks, and
    # the per-delivered-message cost, a difference of two readings, may have either sign here
    costs = out["costs"]
    assert all(v >= 0 for k, v in costs.items() if k != "edge_us_per_delivered_message"), costs
    assert costs["ingest_us_per_venue_message_paced"] > 0, costs
    assert costs["edge_us_per_bus_message_paced"] > 0, costs
    assert set(out["model_check"]) == {"2_edges"}, "the runs with more edges than one"
    assert all(c["measured"] >= 0 for c in out["model_check"]["2_edges"].values())
    for basis in ("paced", "saturated"):
        model = out["model"][basis]
        assert model["venue_messages_per_s"] == 100 * 2000 * 10
        assert model["edges"] >= model["edge_shards"] >= 1
        for figure in (
            "ingest_cores",
            "edge_cores",
            "nats_out_mb_per_s",
            "ingest_memory_gb",
            "edge_memory_gb",
        ):
            assert model[figure] > 0, (basis, figure)
        assert model["nats_cores"] >= 0, basis  # from NATS's CPU, which may read 0 ticks here
