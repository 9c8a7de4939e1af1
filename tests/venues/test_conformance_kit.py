"""The conformance kit explains itself: defaults worked out from the connector, skips with a
reason, and failures that read as sentences."""

from __future__ import annotations

import pytest

from crossbook.testing import FakeConnection, FakeMarket, Subject, run_conformance
from crossbook.testing.conformance import Unmet, explain, resolve
from crossbook_binance import BinanceConfig, spot
from crossbook_binance.fake import BinanceDialect
from crossbook_bitstamp import BitstampConfig
from crossbook_bitstamp import factory as bitstamp
from crossbook_bitstamp.fake import BitstampDialect
from crossbook_kraken import KrakenConfig
from crossbook_kraken import factory as kraken
from crossbook_kraken.fake import KrakenDialect

pytestmark = pytest.mark.anyio


def test_defaults_follow_from_the_connector() -> None:
    binance = resolve(
        Subject("binance", spot, BinanceConfig, BinanceDialect, lambda f: {"ws_url": f.ws_url, "rest_url": f.rest_url})
    )
    assert (binance.rest_snapshots, binance.checksums, binance.detects_gaps) == (True, False, True)
    assert (binance.planned_reconnects, binance.resync_reconnects, binance.gap_reasons) == (True, False, ("gap",))
    krak = resolve(Subject("kraken", kraken, KrakenConfig, KrakenDialect, lambda f: {"ws_url": f.ws_url, "depth": 25}))
    assert (krak.rest_snapshots, krak.checksums, krak.detects_gaps, krak.depth) == (False, True, True, 25)
    assert krak.gap_reasons == ("gap", "checksum")
    assert krak.planned_reconnects is False
    overridden = resolve(
        Subject("kraken", kraken, KrakenConfig, KrakenDialect, lambda f: {"ws_url": f.ws_url}, checksums=False)
    )
    assert overridden.checksums is False, "a field set by the subject stays"


async def test_a_venue_that_cannot_see_a_loss_has_the_gap_scenario_skipped_with_the_reason() -> None:
    subject = Subject(
        "bitstamp", bitstamp, BitstampConfig, BitstampDialect, lambda f: {"ws_url": f.ws_url, "rest_url": f.rest_url}
    )
    report = await run_conformance(subject, ["gap"])
    assert report.skipped == {"gap": "the venue has neither sequence ids nor checksums: a lost message cannot be seen"}


def test_a_failure_is_a_sentence_not_an_exception_group() -> None:
    unmet = Unmet("waited 10 s for BTC-USD to resync after a lost message; BTC-USD is live")
    assert explain(ExceptionGroup("unhandled errors in a TaskGroup", [unmet])) == str(unmet)
    assert explain(BaseExceptionGroup("x", [ExceptionGroup("y", [KeyError("ws_url")])])) == "KeyError: 'ws_url'"


class SilentKraken(KrakenDialect):
    """Acks subscriptions and never sends a book."""

    def on_message(self, conn: FakeConnection, text: str) -> list[str]:
        return [frame for frame in super().on_message(conn, text) if '"channel":"book"' not in frame]


@pytest.mark.slow
async def test_a_real_failure_says_what_was_awaited_and_what_happened_instead() -> None:
    def dialect(market: FakeMarket) -> KrakenDialect:
        return SilentKraken(market)

    subject = Subject("kraken", kraken, KrakenConfig, dialect, lambda f: {"ws_url": f.ws_url}, symbols=("BTC-USD",))
    report = await run_conformance(subject, ["sync"])
    assert report.failures == {
        "sync": "waited 10 s for every book to equal the venue's after subscribing; BTC-USD is syncing"
    }
    assert "FAILED sync: waited 10 s" in str(report)
