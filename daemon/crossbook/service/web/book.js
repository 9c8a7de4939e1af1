// The consolidated book as the API sends it: a snapshot, then deltas of absolute level sizes.
// Prices and sizes stay the API's exact decimal text; numbers are made of them only to draw.

// Compares two non-negative plain decimal strings ("65000.1", "0.001") exactly.
export function compareDecimal(a, b) {
  const [ai, af = ""] = a.split(".");
  const [bi, bf = ""] = b.split(".");
  if (ai.length !== bi.length) return ai.length - bi.length;
  if (ai !== bi) return ai < bi ? -1 : 1;
  const n = Math.max(af.length, bf.length);
  const x = af.padEnd(n, "0");
  const y = bf.padEnd(n, "0");
  return x < y ? -1 : x > y ? 1 : 0;
}

// a - b, exactly, as plain decimal text.
export function subtractDecimal(a, b) {
  const places = Math.max((a.split(".")[1] || "").length, (b.split(".")[1] || "").length);
  const scaled = (s) => {
    const [i, f = ""] = s.split(".");
    return BigInt(i + f.padEnd(places, "0"));
  };
  let diff = scaled(a) - scaled(b);
  const negative = diff < 0n;
  if (negative) diff = -diff;
  let digits = diff.toString().padStart(places + 1, "0");
  if (places) digits = `${digits.slice(0, -places)}.${digits.slice(-places)}`.replace(/\.?0+$/, "");
  return (negative ? "-" : "") + digits;
}

export class Book {
  constructor() {
    this.clear();
  }

  clear() {
    this.bids = new Map(); // price text -> [size text, {venue: size text}]
    this.asks = new Map();
    this.seq = 0;
    this.ts = null;
  }

  // Applies a snapshot or delta message of a book channel.
  apply(msg) {
    if (msg.type === "snapshot") {
      this.bids.clear();
      this.asks.clear();
    }
    for (const [side, levels] of [[this.bids, msg.bids], [this.asks, msg.asks]]) {
      for (const [price, size, venues] of levels) {
        if (size === "0") side.delete(price);
        else side.set(price, [size, venues || {}]);
      }
    }
    this.seq = msg.seq;
    this.ts = msg.ts;
  }

  // Levels of one side, best first: [price, size, venues].
  levels(bids) {
    const side = bids ? this.bids : this.asks;
    const out = [...side].map(([price, [size, venues]]) => [price, size, venues]);
    out.sort((x, y) => (bids ? compareDecimal(y[0], x[0]) : compareDecimal(x[0], y[0])));
    return out;
  }
}
