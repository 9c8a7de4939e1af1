"""A simulated venue market (sans-I/O: time and randomness are passed in).

Every sim venue quotes around one random-walk mid per symbol shared by all sim venues in the
process, shifted by a venue-specific offset and noise, on its own tick grid. So the consolidated
book differs from any single venue and now and then crosses or locks, as real ones do. Floats
drive the simulation only; every price and size it emits is an exact Decimal on the venue's grid.
"""

from __future__ import annotations

import math
import random
import zlib
from decimal import Decimal

from crossbook.plugin import BookDelta, BookSnapshot, Level, Side, Trade

BASE_PRICES = {"BTC": 65000.0, "ETH": 3200.0, "SOL": 150.0}
STEP_NS = 100_000_000
"""The shared mid moves once per 100 ms."""
VOL_PER_STEP = 0.00005
"""Log-return standard deviation per step (~0.5 bp)."""


def stable_hash(text: str) -> int:
    return zlib.crc32(text.encode())


class SharedMid:
    """A random-walk mid for one symbol, a pure function of the step index it has reached."""

    def __init__(self, symbol: str, seed: int = 0) -> None:
        self.rng = random.Random(stable_hash(symbol) ^ seed)
        self.step: int | None = None
        self.log_mid = math.log(BASE_PRICES.get(symbol.split("-")[0], 100.0))

    def at(self, now_ns: int) -> float:
        step = now_ns // STEP_NS
        if self.step is None:
            self.step = step
        # Catch up at most a minute of steps: a sleeping host must not stall the simulation.
        for _ in range(min(step - self.step, 600)):
            self.log_mid += self.rng.gauss(0.0, VOL_PER_STEP)
        self.step = max(self.step, step)
        return math.exp(self.log_mid)


_MIDS: dict[tuple[str, int], SharedMid] = {}


def shared_mid(symbol: str, seed: int = 0) -> SharedMid:
    """The mid every sim venue of this process quotes ``symbol`` around."""
    mid = _MIDS.get((symbol, seed))
    if mid is None:
        mid = _MIDS[(symbol, seed)] = SharedMid(symbol, seed)
    return mid


def default_tick(venue: str, base_price: float) -> Decimal:
    """A venue-specific tick: 1, 5 or 10 units of 10^(digits-5) of the price."""
    unit = Decimal(1).scaleb(math.floor(math.log10(base_price)) - 5)
    return unit * (1, 5, 10)[stable_hash(venue) % 3]


class SimBook:
    """One simulated venue book: dense levels on a tick grid around the venue's mid."""

    def __init__(
        self,
        venue: str,
        symbol: str,
        *,
        levels: int,
        tick: Decimal | None,
        rng: random.Random,
        mid: SharedMid,
        size_decimals: int = 4,
    ) -> None:
        self.symbol = symbol
        self.levels = levels
        self.rng = rng
        self.mid = mid
        base = BASE_PRICES.get(symbol.split("-")[0], 100.0)
        self.tick = tick if tick is not None else default_tick(venue, base)
        self.size_exp = -size_decimals
        self.offset = ((stable_hash(venue + symbol) % 61) - 30) / 1e6  # within +-0.3 bp
        self.noise = 0.0
        self.noise_step: int | None = None
        self.half_spread = 0.0001  # 1 bp
        self.bids: dict[int, Decimal] = {}
        self.asks: dict[int, Decimal] = {}
        self.best_bid = 0
        self.best_ask = 0
        self.trade_id = 0
        self._prices: dict[int, Decimal] = {}

    def price(self, index: int) -> Decimal:
        price = self._prices.get(index)
        if price is None:
            if len(self._prices) > 100_000:
                self._prices.clear()
            price = self._prices[index] = self.tick * index
        return price

    def _size(self, depth: int) -> Decimal:
        scale = 0.2 + 0.02 * depth
        units = max(1, int(self.rng.lognormvariate(0.0, 1.0) * scale * 10**-self.size_exp))
        return Decimal(units).scaleb(self.size_exp)

    def _targets(self, now_ns: int) -> tuple[int, int]:
        shared = self.mid.at(now_ns)
        if self.mid.step != self.noise_step:  # the venue's noise moves with the shared mid's steps
            self.noise_step = self.mid.step
            self.noise = 0.9 * self.noise + self.rng.gauss(0.0, 0.00002)
        mid = shared * (1.0 + self.offset + self.noise) / float(self.tick)
        half = max(0.5, mid * self.half_spread)
        bid = math.floor(mid - half)
        return bid, max(bid + 1, math.ceil(mid + half))

    def snapshot(self, now_ns: int) -> BookSnapshot:
        self.best_bid, self.best_ask = self._targets(now_ns)
        self.bids = {self.best_bid - i: self._size(i) for i in range(self.levels)}
        self.asks = {self.best_ask + i: self._size(i) for i in range(self.levels)}
        p = self.price
        return BookSnapshot(
            self.symbol,
            [(p(i), s) for i, s in self.bids.items()],
            [(p(i), s) for i, s in self.asks.items()],
            recv_ns=now_ns,
            venue_ns=now_ns,
        )

    def step(self, now_ns: int) -> BookDelta:
        """Move with the mid, then change a few sizes near the top (Poisson count)."""
        bid_t, ask_t = self._targets(now_ns)
        bids: list[Level] = []
        asks: list[Level] = []
        self._shift(self.bids, self.best_bid, bid_t, -1, bids)
        self._shift(self.asks, self.best_ask, ask_t, 1, asks)
        self.best_bid, self.best_ask = bid_t, ask_t
        rng = self.rng
        for _ in range(self._poisson(3.0)):
            is_bid = rng.random() < 0.5
            depth = min(int(rng.expovariate(0.15)), self.levels - 1)
            book, out = (self.bids, bids) if is_bid else (self.asks, asks)
            index = bid_t - depth if is_bid else ask_t + depth
            size = Decimal(0) if depth and rng.random() < 0.2 else self._size(depth)
            if size:
                book[index] = size
            elif book.pop(index, None) is None:
                continue
            out.append((self.price(index), size))
        return BookDelta(self.symbol, bids, asks, recv_ns=now_ns, venue_ns=now_ns)

    def _shift(self, book: dict[int, Decimal], old: int, new: int, way: int, out: list[Level]) -> None:
        """Re-anchor one side from best index ``old`` to ``new`` (``way`` -1 for bids, +1 asks).

        The side always spans ``levels`` indices from its best; only the indices that leave or
        enter that span change, so the cost is the size of the move, not the depth.
        """
        if old == new:
            return
        p = self.price
        span = way * (self.levels - 1)
        old_lo, old_hi = sorted((old, old + span))
        new_lo, new_hi = sorted((new, new + span))
        for lo, hi in ((old_lo, min(old_hi, new_lo - 1)), (max(old_lo, new_hi + 1), old_hi)):
            for index in range(lo, hi + 1):
                if book.pop(index, None) is not None:
                    out.append((p(index), Decimal(0)))
        for lo, hi in ((new_lo, min(new_hi, old_lo - 1)), (max(new_lo, old_hi + 1), new_hi)):
            for index in range(lo, hi + 1):
                size = book[index] = self._size(abs(index - new))
                out.append((p(index), size))

    def _poisson(self, lam: float) -> int:
        n, threshold, prod = 0, math.exp(-lam), self.rng.random()
        while prod > threshold:
            n += 1
            prod *= self.rng.random()
        return n

    def trade(self, now_ns: int) -> Trade:
        """A trade at the touch; the aggressor takes the opposite side's best price."""
        buy = self.rng.random() < 0.5
        self.trade_id += 1
        price = self.price(self.best_ask if buy else self.best_bid)
        return Trade(
            self.symbol,
            price,
            self._size(0),
            Side.BUY if buy else Side.SELL,
            str(self.trade_id),
            recv_ns=now_ns,
            venue_ns=now_ns,
        )
