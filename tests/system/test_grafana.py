"""The Grafana dashboard and the Prometheus scrape config in config/, checked with Debian's
``prometheus`` scraping a running daemon and its ``promtool`` reading every dashboard expression."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from support import ROOT, DaemonProcess, daemon_process

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

DASHBOARD = ROOT / "config" / "grafana" / "crossbook.json"
SCRAPE_CONFIG = ROOT / "config" / "prometheus.yml"
VENUES = ("sim-a", "sim-b", "sim-c")  # the embedded default config's
SYMBOLS = ("BTC-USDT", "ETH-USDT")

AREAS = {
    "venue states": "crossbook_book_state",
    "message rates": "crossbook_venue_messages_total",
    "resyncs by reason": "crossbook_resyncs_total",
    "venue lag": "crossbook_venue_lag_seconds_bucket",
    "API clients": "crossbook_clients",
    "conflations": "crossbook_conflations_total",
    "latency quantiles": "crossbook_latency_seconds_bucket",
    "RSS": "process_resident_memory_bytes",
    "CPU": "process_cpu_seconds_total",
}
"""A metric each area of the dashboard must query."""

SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}
"""The sample names a metric family of each type is exposed as."""


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required under CI (Debian package 'prometheus')")
        pytest.skip(f"{name} not installed (Debian package 'prometheus')")
    return path


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dash["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def expressions(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target, and the selector in each ``label_values`` variable."""
    found = [(f"{p['title']}/{t['refId']}", t["expr"]) for p in panels(dash) for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"]["query"])
        assert m, f"variable {var['name']}: not a label_values query"
        found.append((f"${var['name']}", m.group(1)))
    return found


def regex(value: str) -> str:
    """``value`` as a regex inside a PromQL string, as Grafana writes a variable for ``=~``."""
    return re.escape(value).replace("\\", "\\\\")


def substitute(expr: str, instance: str, venues: tuple[str, ...] = VENUES) -> str:
    """Grafana's part: the template variables (multi-value ones as a regex alternation) and the
    interval variables."""
    values = {
        "instance": regex(instance),
        "venue": "(" + "|".join(regex(v) for v in venues) + ")",
        "__rate_interval": "1m",
        "__interval": "15s",
        "__range": "1h",
    }
    out = re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", lambda m: values[m.group(1) or m.group(2)], expr)
    assert "$" not in out, out
    assert "[[" not in out, out
    return out


KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless"}
KEYWORDS |= {"inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers left once strings, label
    matchers, ranges and grouping label lists are removed, that are not functions or keywords."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    idents = re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?", expr)
    return {m.group(1) for m in idents if m.group(2) is None and m.group(1).lower() not in KEYWORDS}


def exported_names(exposition: str) -> set[str]:
    """Every sample name the exposition's families can have, samples seen yet or not."""
    return {f.name + suffix for f in text_string_to_metric_families(exposition) for suffix in SAMPLE_SUFFIXES[f.type]}


def with_samples(exposition: str) -> set[str]:
    return {s.name for f in text_string_to_metric_families(exposition) for s in f.samples}


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with daemon_process() as running:
        yield running


def scrape(daemon: DaemonProcess) -> str:
    return httpx.get(f"http://127.0.0.1:{daemon.metrics_port}/metrics", timeout=10).text


def test_the_dashboard_is_importable_with_a_panel_per_area() -> None:
    dash = dashboard()
    assert [i["name"] for i in dash["__inputs"]] == ["DS_PROMETHEUS"]
    assert dash["__inputs"][0]["pluginId"] == "prometheus"
    assert dash["id"] is None
    assert dash["uid"] == "crossbook"
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids))
    for p in panels(dash):
        g = p["gridPos"]
        assert g["x"] >= 0, p["title"]
        assert g["x"] + g["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, p["title"]
            assert p["targets"], p["title"]
    cells = [
        (x, y)
        for p in panels(dash)
        for g in [p["gridPos"]]
        for x in range(g["x"], g["x"] + g["w"])
        for y in range(g["y"], g["y"] + g["h"])
    ]
    assert len(cells) == len(set(cells)), "panels overlap"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["venue"]["query"]["query"].startswith("label_values(")
    assert variables["venue"]["datasource"]["uid"] == "${DS_PROMETHEUS}"
    used = set().union(*(metric_names(e) for _, e in expressions(dash)))
    assert {area: name for area, name in AREAS.items() if name not in used} == {}
    for where, expr in expressions(dash):
        if where != "$instance":
            assert 'instance=~"$instance"' in expr, where
        if "venue" in expr and where != "$venue":
            assert 'venue=~"$venue"' in expr, where


def test_metric_names_are_read_from_expressions() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{b=~"x|y", c="d{"}[1m:5s]))) / on (e) b_total offset 1e-3'
    )
    assert metric_names(expr) == {"a_bucket", "b_total"}
    assert metric_names('count(x{venue="by"} == 4) or vector(0)') == {"x"}


def test_every_dashboard_expression_parses_with_promtool(tmp_path: Path) -> None:
    promtool = tool("promtool")
    example = ("127.0.0.1:9464", ("sim-a", "sim-b"))
    rules = [
        {"record": "dashboard:" + re.sub(r"\W+", "_", where).strip("_").lower(), "expr": substitute(expr, *example)}
        for where, expr in expressions(dashboard())
    ]
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))  # JSON is YAML
    check = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(rules)} rules found" in check.stdout
    check = subprocess.run(
        [promtool, "check", "config", str(SCRAPE_CONFIG)], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_dashboard_expressions_name_only_exported_metrics(daemon: DaemonProcess) -> None:
    exported = exported_names(scrape(daemon))
    assert {"crossbook_latency_seconds_bucket", "crossbook_resyncs_total", "process_cpu_seconds_total"} <= exported
    unknown = {where: metric_names(expr) - exported for where, expr in expressions(dashboard())}
    assert {where: names for where, names in unknown.items() if names} == {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def prometheus(tmp_path: Path, metrics_port: int) -> Iterator[str]:
    """Debian's Prometheus on loopback, running config/prometheus.yml aimed at the daemon, scraping
    every 250 ms; yields its base URL."""
    binary = tool("prometheus")
    config = SCRAPE_CONFIG.read_text()
    for old, new in (
        ("127.0.0.1:9464", f"127.0.0.1:{metrics_port}"),
        ("scrape_interval: 15s", "scrape_interval: 250ms"),
    ):
        assert config.count(old) == 1, old
        config = config.replace(old, new)
    (tmp_path / "prometheus.yml").write_text(config)
    port = free_port()
    with (tmp_path / "prometheus.log").open("w") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


async def query(client: httpx.AsyncClient, expr: str) -> list[dict[str, Any]]:
    resp = await client.get("/api/v1/query", params={"query": expr})
    body = resp.json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]  # type: ignore[no-any-return]


T = TypeVar("T")


async def poll(what: str | Callable[[], str], check: Callable[[], Awaitable[T | None]], log: Path) -> T:
    """``check()`` until it returns something, for at most 20 s (Prometheus has no change event
    to await)."""
    for _ in range(200):
        if (result := await check()) is not None:
            return result
        await anyio.sleep(0.1)
    described = what() if callable(what) else what
    pytest.fail(f"{described}: not within 20 s\n{await anyio.Path(log).read_text()}")


async def subscribed(api_port: int) -> None:
    """A client on the books, so the daemon sends and times updates (latency, messages sent)."""
    async with connect(f"ws://127.0.0.1:{api_port}/v1/stream") as ws:
        await ws.send('{"op":"subscribe","id":1,"channels":["book.BTC-USDT","bbo.ETH-USDT"]}')
        async for _ in ws:
            pass


@pytest.mark.slow  # Prometheus applies its scrape targets on a 5 s tick
async def test_prometheus_scrapes_the_daemon_and_every_panel_queries(daemon: DaemonProcess, tmp_path: Path) -> None:
    log = tmp_path / "prometheus.log"
    instance = f"127.0.0.1:{daemon.metrics_port}"
    with prometheus(tmp_path, daemon.metrics_port) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client, anyio.create_task_group() as tg:
            tg.start_soon(subscribed, daemon.api_port)

            async def ready() -> bool | None:
                with contextlib.suppress(httpx.TransportError):
                    return (await client.get("/-/ready")).status_code == 200 or None
                return None

            await poll("Prometheus ready", ready, log)

            # The expected series: every book of the sim venues, live, scraped from the daemon.
            async def live() -> list[dict[str, Any]] | None:
                states = await query(client, 'crossbook_book_state{job="crossbook"}')
                done = len(states) == len(VENUES) * len(SYMBOLS) and all(s["value"][1] == "4" for s in states)
                return states if done else None

            states = await poll("live books in Prometheus", live, log)
            assert {(s["metric"]["venue"], s["metric"]["symbol"], s["metric"]["instance"]) for s in states} == {
                (v, s, instance) for v in VENUES for s in SYMBOLS
            }

            # Grafana's label_values: the variables' options.
            resp = await client.get("/api/v1/label/venue/values", params={"match[]": "crossbook_book_state"})
            assert resp.json()["data"] == list(VENUES)
            resp = await client.get("/api/v1/label/instance/values", params={"match[]": "crossbook_build_info"})
            assert resp.json()["data"] == [instance]

            # Every panel's expression evaluates, and returns data once its metrics have samples.
            exposition = await client.get(f"http://127.0.0.1:{daemon.metrics_port}/metrics")
            sampled = with_samples(exposition.text)
            pending = {where: substitute(e, instance) for where, e in expressions(dashboard()) if where[0] != "$"}

            async def panel_data() -> bool | None:
                for where, expr in list(pending.items()):
                    if await query(client, expr) or not metric_names(expr) <= sampled:
                        del pending[where]
                return not pending or None

            await poll(lambda: f"data for the panels {sorted(pending)}", panel_data, log)

            latency_bucket = f'crossbook_latency_seconds_bucket{{instance="{instance}"}}'
            p99 = f"histogram_quantile(0.99, sum by (le) (rate({latency_bucket}[1m])))"

            async def latency() -> float | None:
                value = float((await query(client, p99))[0]["value"][1])
                return value if math.isfinite(value) else None

            assert 0 < await poll("a latency quantile", latency, log) <= 1
            rss = await query(client, f'process_resident_memory_bytes{{instance="{instance}"}}')
            assert float(rss[0]["value"][1]) > 10e6
            tg.cancel_scope.cancel()
