"""The web view: its HTTP side against a daemon in this process, then the page in a real browser
(Debian's chromium, headless, driven by selenium through Debian's chromedriver) against a daemon
on sim venues in a child process, opened at the address the daemon's log tells a person to open."""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import shutil
import signal
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as connect_sync

from support import ROOT, DaemonProcess, daemon_process, running_daemon

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WEB = ROOT / "daemon" / "crossbook" / "service" / "web"
MAX_TAPE_ROWS = 50
"""views.js's bound on the trades tape."""

SIM = """
plugins = ["scripted_plugin"]
{venues}
[server]
max_ops_per_second = 1000
{server}
"""
VENUE = """
[venues.{name}]
connector = "sim"
symbols = ["BTC-USDT", "ETH-USDT"]
rate = {rate}
trade_rate = {trade_rate}
"""
CRASHING = """
[venues.{name}]
connector = "scripted"
symbols = ["BTC-USDT", "ETH-USDT"]
crash = true
"""


def sim_config(path: Path, rate: float = 20, trade_rate: float = 2, down: str = "", server: str = "") -> Path:
    """Three sim venues (``down``: that one's connector crashes at every start instead)."""
    venues = "".join(
        (CRASHING if name == down else VENUE).format(name=name, rate=rate, trade_rate=trade_rate)
        for name in ("sim-a", "sim-b", "sim-c")
    )
    path.write_text(SIM.format(venues=venues, server=server))
    return path


# -- HTTP: the page, its assets, /v1/info and the origin check ---------------------------------


def test_the_package_ships_every_web_file() -> None:
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["crossbook"]
    for path in WEB.iterdir():
        name = path.relative_to(ROOT / "daemon" / "crossbook").as_posix()
        assert any(fnmatch.fnmatch(name, glob) for glob in globs), name


@pytest.mark.anyio
async def test_the_page_and_its_modules_are_served(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, VENUE.format(name="sim-a", rate=1, trade_rate=0)) as (_, addresses):
        base = f"http://127.0.0.1:{addresses.api_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            page = await http.get("/")
            assert page.status_code == 200
            assert page.headers["content-type"] == "text/html; charset=utf-8"
            assert "connect-src 'self'" in page.headers["content-security-policy"]
            assert '<script type="module" src="/web/app.js">' in page.text
            modules = {"app.js"}
            for name in ("app.js", "views.js"):  # every module the page imports is served
                source = (await http.get(f"/web/{name}")).text
                modules |= set(re.findall(r'from "\./([\w.]+)"', source))
            for name in modules:
                reply = await http.get(f"/web/{name}")
                assert reply.status_code == 200, name
                assert reply.headers["content-type"] == "text/javascript; charset=utf-8"
                assert reply.content == (WEB / name).read_bytes()
            assert (await http.get("/web/style.css")).headers["content-type"] == "text/css; charset=utf-8"
            for missing in ("/web/nope.js", "/web/../webview.py", "/index.html"):
                assert (await http.get(missing)).status_code == 404


@pytest.mark.anyio
async def test_info_says_whether_a_token_is_needed_and_the_pages_origin_is_allowed(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("sekrit\n")
    server = f'[server]\ntokens_file = "{tokens}"\nallowed_origins = ["https://ok.example"]\n'
    async with running_daemon(tmp_path, VENUE.format(name="sim-a", rate=1, trade_rate=0) + server) as (_, addresses):
        base = f"http://127.0.0.1:{addresses.api_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            anonymous = (await http.get("/v1/info")).json()
            assert anonymous == {"version": "0.1.0", "token_required": True, "authorized": False}
            wrong = (await http.get("/v1/info", headers={"Authorization": "Bearer nope"})).json()
            assert wrong["authorized"] is False
            assert "symbols" not in wrong
            known = (await http.get("/v1/info", headers={"Authorization": "Bearer sekrit"})).json()
            assert known["authorized"] is True
            assert known["symbols"] == ["BTC-USDT", "ETH-USDT"]
            assert known["venues"] == [{"venue": "sim-a", "connector": "sim", "symbols": ["BTC-USDT", "ETH-USDT"]}]
        stream = f"ws://127.0.0.1:{addresses.api_port}/v1/stream?token=sekrit"
        async with connect(stream, origin=base) as ws:  # type: ignore[arg-type]  # the page's own origin
            await ws.send('{"op":"ping","id":1}')
            assert orjson.loads(await ws.recv()) == {"type": "pong", "id": 1}
        for origin in ("http://evil.example", f"https://127.0.0.1:{addresses.api_port}"):
            with pytest.raises(InvalidStatus) as refused:
                await connect(stream, origin=origin)  # type: ignore[arg-type]
            assert refused.value.response.status_code == 403
    async with running_daemon(tmp_path, VENUE.format(name="sim-a", rate=1, trade_rate=0)) as (_, addresses):
        async with httpx.AsyncClient(timeout=10) as http:
            info = (await http.get(f"http://127.0.0.1:{addresses.api_port}/v1/info")).json()
        assert (info["token_required"], info["authorized"], info["max_depth"]) == (False, True, 50)


# -- the page in a browser ---------------------------------------------------------------------


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless chromium through Debian's chromedriver (selenium never fetches a browser itself)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing = "selenium (pip install -e '.[test]')"
    else:
        found = shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)
        missing = "" if found else "chromium and chromedriver (Debian packages chromium, chromium-driver)"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} required under CI")
        pytest.skip(f"{missing} not installed")

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def no_errors(driver: Any) -> None:
    """The page logged no error (an exception in a module, a failed request) to the console."""
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors


def web_url(daemon: DaemonProcess) -> str:
    """Where the daemon's log tells a person to point a browser."""
    found = re.search(r"web view: open (http://\S+) in a browser", daemon.log)
    assert found, daemon.log
    return found.group(1)


def until(driver: Any, condition: Callable[[Any], Any], what: str, timeout: float = 20) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition, what)


SHOWN = """
const b = document.getElementById("bbo").dataset, l = document.getElementById("ladder").dataset;
return {seq: Number(b.seq), ts: b.ts, bid: b.bid, ask: b.ask, crossed: b.crossed, locked: b.locked,
        ladder_seq: Number(l.seq), ladder_bid: l.bid, ladder_ask: l.ask, symbol: l.symbol};
"""
"""What the page shows, read in one script: a consistent picture, never half of two renders."""


def shown(driver: Any) -> dict[str, Any]:
    return dict(driver.execute_script(SHOWN))


def bbo_after(seq: int) -> Callable[[Any], Any]:
    """What the page shows once its bbo is past ``seq`` (else False)."""

    def check(driver: Any) -> Any:
        page = shown(driver)
        return page["seq"] > seq and page

    return check


def save_screenshot(driver: Any, tmp_path: Path, name: str) -> Path:
    """A CI artefact: under ``$CROSSBOOK_ARTEFACTS`` when set, else the test's temporary folder."""
    folder = Path(os.environ.get("CROSSBOOK_ARTEFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    assert driver.save_screenshot(str(path)), path
    print(f"screenshot: {path}")
    return path


class BboHistory:
    """Every ``bbo`` message of one symbol, by seq, read over the API by a thread of its own."""

    def __init__(self, ws: ClientConnection, symbol: str) -> None:
        self.messages: dict[int, dict[str, Any]] = {}
        self.changed = threading.Condition()
        self.ws = ws
        ws.send(orjson.dumps({"op": "subscribe", "id": 1, "channels": [f"bbo.{symbol}"]}).decode())
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    @classmethod
    @contextlib.contextmanager
    def of(cls, port: int, symbol: str) -> Iterator[BboHistory]:
        with connect_sync(f"ws://127.0.0.1:{port}/v1/stream?batch=1") as ws:
            history = cls(ws, symbol)
            yield history
            ws.close()
            history.thread.join(10)

    def _read(self) -> None:
        for frame in self.ws:
            for msg in orjson.loads(frame):
                if msg.get("type") == "bbo":
                    with self.changed:
                        assert msg["seq"] == len(self.messages) + 1, msg  # no gap
                        self.messages[msg["seq"]] = msg
                        self.changed.notify_all()

    def at(self, seq: int) -> dict[str, Any]:
        with self.changed:
            assert self.changed.wait_for(lambda: seq in self.messages, timeout=10), seq
            return self.messages[seq]

    def seq_of(self, ts: float) -> int | None:
        """The seq of the one message stamped ``ts`` (as the page's numbers hold it), if one."""
        with self.changed:
            assert self.changed.wait_for(lambda: any(float(m["ts"]) >= ts for m in self.messages.values()), 10)
            found = [seq for seq, m in self.messages.items() if float(m["ts"]) == ts]
        return found[0] if len(found) == 1 else None


def side(level: list[Any] | None) -> str:
    return "" if level is None else str(level[0])


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_page_shows_the_apis_book_and_a_venue_going_down(tmp_path: Path, browser: Any) -> None:
    config = sim_config(tmp_path / "crossbook.toml")
    with daemon_process("--config", str(config)) as daemon:
        with BboHistory.of(daemon.api_port, "BTC-USDT") as history:
            browser.get(web_url(daemon))
            until(browser, lambda d: shown(d)["seq"] >= 2 and shown(d)["ladder_seq"] >= 1, "the ladder and bbo updates")
            # The page's seq counts its own subscription's messages and ours counts ours: after each
            # one's first message (a snapshot of the moment), both get the same updates in the same
            # order, so one update's place in both, found by its timestamp, pairs every seq.
            offset = None
            last = 0
            for _ in range(8):
                page = until(browser, bbo_after(last), "a new bbo")
                last = page["seq"]
                if offset is None:
                    ours = history.seq_of(float(page["ts"]))
                    if ours is None:
                        continue
                    offset = ours - page["seq"]
                api = history.at(page["seq"] + offset)
                assert float(api["ts"]) == float(page["ts"]), (api, page)
                assert (page["bid"], page["ask"]) == (side(api["bid"]), side(api["ask"]))
                assert (page["crossed"], page["locked"]) == (str(api["crossed"]).lower(), str(api["locked"]).lower())
                assert (page["ladder_bid"], page["ladder_ask"]) == (page["bid"], page["ask"])
            assert offset is not None, "no bbo of the page's was found among the API's"

        ladder = browser.execute_script(
            """return [...document.querySelectorAll("#ladder tbody tr")].filter(r => r.cells.length === 3)
                .map(r => [r.className, r.cells[0].textContent,
                           [...r.querySelectorAll(".segment")].map(s => [s.dataset.venue, s.style.background])]);"""
        )
        assert [row[0] for row in ladder] == ["ask"] * 20 + ["bid"] * 20
        assert all(row[1] for row in ladder), "20 levels a side"
        colours: dict[str, set[str]] = {}
        for _, _, segments in ladder:
            for venue, colour in segments:
                colours.setdefault(venue, set()).add(colour)
        assert set(colours) == {"sim-a", "sim-b", "sim-c"}, "each level's size split by venue"
        assert all(len(c) == 1 for c in colours.values()), colours
        assert len({next(iter(c)) for c in colours.values()}) == 3, "a colour per venue"
        save_screenshot(browser, tmp_path, "web-view.png")

        from selenium.webdriver.support.ui import Select

        Select(browser.find_element("id", "symbol")).select_by_value("ETH-USDT")
        eth = "the ETH-USDT ladder"
        until(browser, lambda d: (s := shown(d))["symbol"] == "ETH-USDT" and s["ladder_seq"] >= 1, eth)
        assert browser.current_url.endswith("#ETH-USDT")

        # sim-c's connector now crashes at every start: its books go down, and the table says so.
        sim_config(config, down="sim-c")
        daemon.proc.send_signal(signal.SIGHUP)
        row = '#health tr[data-venue="sim-c"][data-symbol="BTC-USDT"]'

        down = f"const r = document.querySelector('{row}'); return r && r.dataset.state === 'down' && r.textContent"
        # Its state comes with the status channel, at once; its age with the next list reply.
        text = until(browser, lambda d: (t := d.execute_script(down)) and "—" in t and t, "sim-c down, never heard")
        assert "down (" in text, "with the reason"
        rows = "return [...document.querySelectorAll('#health tr[data-venue]')]"
        rows += ".map(r => r.dataset.venue + ' ' + r.dataset.state)"
        states = browser.execute_script(rows)
        assert sorted(states) == ["sim-a live"] * 2 + ["sim-b live"] * 2 + ["sim-c down"] * 2
        save_screenshot(browser, tmp_path, "web-view-venue-down.png")
        no_errors(browser)


HEAP = """
const rows = document.querySelectorAll("#tape tbody tr").length;
return {rows, elements: document.querySelectorAll("*").length, seq: Number(document.getElementById("bbo").dataset.seq)};
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_page_stays_light_while_updates_stream(tmp_path: Path, browser: Any) -> None:
    config = sim_config(tmp_path / "crossbook.toml", rate=200, trade_rate=40)
    with daemon_process("--config", str(config)) as daemon:
        browser.get(web_url(daemon))
        until(browser, lambda d: d.execute_script(HEAP)["rows"] >= MAX_TAPE_ROWS, "a full trades tape")

        def measure() -> tuple[int, int]:
            """The JS heap after a full collection, and the elements in the document."""
            browser.execute_cdp_cmd("HeapProfiler.collectGarbage", {})
            heap = browser.execute_cdp_cmd("Runtime.getHeapUsage", {})["usedSize"]
            return int(heap), int(browser.execute_script(HEAP)["elements"])

        start = browser.execute_script(HEAP)
        heap, elements = first = measure()
        samples = [first]
        for _ in range(8):  # seconds of streaming, measured each second
            time.sleep(1)  # not a wait for an event: the duration measured, while the page runs on
            samples.append(measure())
        end = browser.execute_script(HEAP)
        print(f"JS heap bytes and document elements each second: {samples}; bbo seq {start['seq']} -> {end['seq']}")
        assert end["seq"] - start["seq"] > 100, "updates streamed"
        assert end["rows"] == MAX_TAPE_ROWS
        # Ladder rows are fixed; a level's venue segments (one to three) are all that may vary.
        assert max(e for _, e in samples) <= elements + 2 * 20 * 2, samples
        assert max(h for h, _ in samples) <= heap * 1.5 + 1_000_000, samples
        no_errors(browser)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_with_a_tokens_file_the_page_asks_for_a_token(tmp_path: Path, browser: Any) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# the page's token\nsekrit\n")
    server = f'tokens_file = "{tokens}"\nallowed_origins = ["https://elsewhere.example"]'
    config = sim_config(tmp_path / "crossbook.toml", server=server)
    with daemon_process("--config", str(config)) as daemon:
        browser.get(web_url(daemon))
        until(browser, lambda d: d.find_element("id", "login").is_displayed(), "the token form")
        assert not browser.find_element("id", "view").is_displayed()
        field = browser.find_element("id", "token")
        field.send_keys("wrong\n")
        until(browser, lambda d: d.find_element("id", "login-error").text, "the token refused")
        field.clear()
        field.send_keys("sekrit\n")
        until(browser, lambda d: shown(d)["ladder_seq"] >= 1 and shown(d)["seq"] >= 1, "the ladder, with the token")
        assert not browser.find_element("id", "login").is_displayed()
        browser.refresh()  # the token is kept for the tab's session
        until(browser, lambda d: shown(d)["ladder_seq"] >= 1, "the ladder after a reload")
        assert not browser.find_element("id", "login").is_displayed()
        no_errors(browser)
