"""The cluster's capacity model: per-role costs measured by the ``cluster`` scenario
(:mod:`crossbook_bench.cluster`), the formula they give, checked against its loopback runs with
several edges and applied to a large deployment (README "Cluster").

With ``V`` venue messages/s (venues * symbols * messages a book a second), ``S`` subscribers each
receiving ``d`` messages/s, edges sharded by symbol into ``G`` groups so that following its shard
takes an edge ``f`` of its core, and ``E`` edges (one core each):

- ingest cores = V * c_ingest (a hot standby adds V * c_standby)
- G = ceil(V * c_bus / f), E = max(G, ceil(S * d * c_deliver / (1 - f)))
- edge cores = S * d * c_deliver + (E / G) * V * c_bus
- NATS in = V * b bytes/s, out = (E / G) * V * b; NATS cores = V * m * (1 + E / G) * c_nats
- memory = books * levels * (2 * v (leader, standby) + (E / G) * (v + k)) + S * h

``c_*`` are µs of CPU per message, ``m`` bus messages and ``b`` bus bytes per venue message, ``v``
and ``k`` bytes per level of a venue and a consolidated book, ``h`` bytes per idle subscriber.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

TARGET = {"venues": 100, "symbols": 2000, "subscribers": 10_000}
VENUE_MESSAGES_PER_BOOK_S = 10.0
"""A book's venue messages a second (Binance's ``@depth@100ms``). A subscriber of one symbol's
``book`` and ``bbo`` on 100 venues then sees 1,000 venue frames/s: what the scenario feeds."""
EDGE_BUS_SHARE = 0.25
"""The share of an edge's core given to following its shard of the bus (``f``)."""


def costs(out: dict[str, Any]) -> dict[str, float]:
    """The per-role, per-core costs, medians over the ``pairs`` runs (paced at 1,000 frames/s)."""
    runs = [run["cluster"] for run in out["pairs"].values()]

    def median(get: Any) -> float:
        return float(statistics.median(get(run) for run in runs))

    sat = out["saturated"]
    leader, standby = sat["leader"], sat["standby"]
    return {
        "ingest_us_per_venue_message_paced": median(lambda r: r["ingest_cpu_us_per_venue_message"]),
        "ingest_us_per_venue_message_saturated": leader["cpu_us_per_venue_message"],
        "standby_us_per_venue_message_saturated": standby["cpu_us_per_venue_message"],
        "edge_us_per_bus_message_paced": median(lambda r: r["edges"][0]["cpu_us_per_bus_message"]),
        "edge_us_per_bus_message_saturated": sat["edge"]["cpu_us_per_bus_message"],
        "edge_us_per_delivered_message": median(
            lambda r: (
                (r["edges"][1]["cpu_share"] - r["edges"][0]["cpu_share"])
                / max(r["edges"][1]["client_messages_per_s"], 1)
                * 1e6
            )
        ),
        "nats_us_per_message_in_or_out_paced": median(lambda r: r["nats_cpu_us_per_message_in_or_out"]),
        "nats_us_per_message_in_or_out_saturated": sat["nats_cpu_us_per_message_in_or_out"],
        "bus_messages_per_venue_message": median(lambda r: r["bus_messages_per_venue_message"]),
        "bus_bytes_per_venue_message": median(lambda r: r["bus_bytes_per_venue_message"]),
        "delivered_per_subscriber_s": median(
            lambda r: r["edges"][1]["client_messages_per_s"] / max(r["edges"][1]["subscribers"], 1)
        ),
    }


def model_check(fanout: dict[str, Any]) -> dict[str, Any]:
    """The formula's scaling with the number of edges: each process's cores in the ``fanout`` runs
    with 2 or more edges, predicted from the traffic each carried and the per-message costs of the
    run with one edge, against those measured."""
    one = fanout["1_edges"]
    edge = one["edges"][0]
    per_delivered = edge["cpu_share"] / max(edge["client_messages_per_s"], 1)
    per_venue = one["ingest_cpu_share"] / max(one["venue_messages_per_s"], 1)

    def nats_messages(run: dict[str, Any]) -> float:
        return float(
            run["nats_out_messages_per_s"] + run["venue_messages_per_s"] * run["bus_messages_per_venue_message"]
        )

    per_nats = one["nats_cpu_share"] / max(nats_messages(one), 1)
    out = {}
    for name, run in fanout.items():
        if run is one:
            continue
        predicted = {
            "ingest": run["venue_messages_per_s"] * per_venue,
            "edges": sum(e["client_messages_per_s"] for e in run["edges"]) * per_delivered,
            "nats": nats_messages(run) * per_nats,
        }
        measured = {
            "ingest": run["ingest_cpu_share"],
            "edges": sum(e["cpu_share"] for e in run["edges"]),
            "nats": run["nats_cpu_share"],
        }
        predicted["total"], measured["total"] = sum(predicted.values()), sum(measured.values())
        out[name] = {
            f"{k}_cores": {"predicted": predicted[k], "measured": measured[k], "error": predicted[k] / measured[k] - 1}
            for k in predicted
        }
    return out


def model(
    c: dict[str, float], levels: int, memory: dict[str, float], target: dict[str, int] = TARGET
) -> dict[str, Any]:
    """The formula (module doc) applied to ``target``, twice: with the costs measured paced (each
    message alone, as a live venue sends them at 1,000 frames/s: an upper bound) and saturated
    (messages read in batches, as a busy process does: a lower bound)."""
    return {basis: _model(c, basis, levels, memory, target) for basis in ("paced", "saturated")}


def _model(
    c: dict[str, float], basis: str, levels: int, memory: dict[str, float], target: dict[str, int]
) -> dict[str, Any]:
    books = target["venues"] * target["symbols"]
    v_rate = books * VENUE_MESSAGES_PER_BOOK_S
    subs, d = target["subscribers"], c["delivered_per_subscriber_s"]
    c_bus, c_del = c[f"edge_us_per_bus_message_{basis}"] / 1e6, c["edge_us_per_delivered_message"] / 1e6
    shards = math.ceil(v_rate * c_bus / EDGE_BUS_SHARE)
    deliver = subs * d * c_del
    edges = max(shards, math.ceil(deliver / (1 - EDGE_BUS_SHARE)))
    per_book = edges / shards
    bus_bytes = v_rate * c["bus_bytes_per_venue_message"]
    book_bytes = books * levels * memory["venue_book_bytes_per_level"]
    cons_bytes = books * levels * memory["consolidated_bytes_per_level"]
    standby = c["standby_us_per_venue_message_saturated"]
    return {
        "inputs": target
        | {
            "venue_messages_per_book_s": VENUE_MESSAGES_PER_BOOK_S,
            "levels_per_book": levels,
            "delivered_per_subscriber_s": d,
            "edge_bus_share": EDGE_BUS_SHARE,
        },
        "venue_messages_per_s": v_rate,
        "ingest_cores": v_rate * c[f"ingest_us_per_venue_message_{basis}"] / 1e6,
        "standby_cores": v_rate * standby / 1e6,
        "edge_shards": shards,
        "edges": edges,
        "edge_cores": deliver + per_book * v_rate * c_bus,
        "nats_in_mb_per_s": bus_bytes / 1e6,
        "nats_out_mb_per_s": bus_bytes * per_book / 1e6,
        "nats_cores": v_rate
        * c["bus_messages_per_venue_message"]
        * (1 + per_book)
        * c[f"nats_us_per_message_in_or_out_{basis}"]
        / 1e6,
        "ingest_memory_gb": 2 * book_bytes / 1e9,
        "edge_memory_gb": (per_book * (book_bytes + cons_bytes) + subs * memory["hub_bytes_per_idle_subscriber"]) / 1e9,
    }
