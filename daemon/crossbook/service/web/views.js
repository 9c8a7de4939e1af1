// The page's panels. Each keeps a fixed or bounded set of DOM rows and updates them in place.

import { subtractDecimal } from "./book.js";

export const MAX_TAPE_ROWS = 50;
export const MAX_HEALTH_ROWS = 200;
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#edc948", "#76b7b2", "#ff9da7", "#9c755f"];

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function time(ns) {
  return new Date(Number(ns) / 1e6).toISOString().slice(11, 23);
}

// One colour per venue, in the order venues are first seen (the list reply's order).
export class Colours {
  constructor(legend) {
    this.legend = legend;
    this.map = new Map();
  }

  of(venue) {
    let colour = this.map.get(venue);
    if (colour === undefined) {
      colour = PALETTE[this.map.size % PALETTE.length];
      this.map.set(venue, colour);
      const item = el("span", "venue", venue);
      item.style.setProperty("--venue", colour);
      this.legend.append(item);
    }
    return colour;
  }
}

// The consolidated ladder: `depth` ask rows (best at the bottom) above `depth` bid rows (best on
// top); each level's size drawn as a bar split by venue.
export class Ladder {
  constructor(table, depth, colours) {
    this.table = table;
    this.colours = colours;
    this.asks = this.rows(table.querySelector("#asks"), depth, "ask");
    this.bids = this.rows(table.querySelector("#bids"), depth, "bid");
    this.spread = table.querySelector("#spread");
  }

  rows(body, depth, side) {
    body.replaceChildren();
    const rows = [];
    for (let i = 0; i < depth; i++) {
      const tr = el("tr", side);
      const price = el("td", "price");
      const size = el("td", "size");
      const bar = el("td", "bar");
      const fill = el("div", "fill");
      bar.append(fill);
      tr.append(price, size, bar);
      body.append(tr);
      rows.push({ tr, price, size, fill, segments: [] });
    }
    return rows;
  }

  render(book) {
    const bids = book.levels(true);
    const asks = book.levels(false);
    let max = 0;
    for (const level of [...bids.slice(0, this.bids.length), ...asks.slice(0, this.asks.length)]) {
      max = Math.max(max, Number(level[1]));
    }
    this.bids.forEach((row, i) => this.level(row, bids[i], max));
    const n = this.asks.length;
    this.asks.forEach((row, i) => this.level(row, asks[n - 1 - i], max));
    const bid = bids[0];
    const ask = asks[0];
    this.spread.textContent = bid && ask ? `spread ${subtractDecimal(ask[0], bid[0])}` : "";
    const data = this.table.dataset;
    data.seq = book.seq;
    data.ts = book.ts ?? "";
    data.bid = bid ? bid[0] : "";
    data.ask = ask ? ask[0] : "";
  }

  level(row, level, max) {
    if (!level) {
      row.price.textContent = row.size.textContent = "";
      row.fill.style.width = "0";
      row.tr.title = "";
      return;
    }
    const [price, size, venues] = level;
    row.price.textContent = price;
    row.size.textContent = size;
    row.fill.style.width = `${max ? (100 * Number(size)) / max : 0}%`;
    const names = Object.keys(venues).sort();
    while (row.segments.length < names.length) {
      const segment = el("span", "segment");
      row.fill.append(segment);
      row.segments.push(segment);
    }
    while (row.segments.length > names.length) row.segments.pop().remove();
    names.forEach((venue, i) => {
      const segment = row.segments[i];
      segment.style.background = this.colours.of(venue);
      segment.style.width = `${(100 * Number(venues[venue])) / Number(size)}%`;
      segment.dataset.venue = venue;
    });
    row.tr.title = names.map((venue) => `${venue} ${venues[venue]}`).join("\n");
  }
}

// Cumulative size against price, bids left of the spread, asks right of it.
export class DepthChart {
  constructor(canvas) {
    this.canvas = canvas;
  }

  render(book) {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || canvas.width;
    const height = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
    if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const sides = [book.levels(true), book.levels(false)].map((levels) => {
      let total = 0;
      return levels.map(([price, size]) => [Number(price), (total += Number(size))]);
    });
    const prices = sides.flat().map(([price]) => price);
    if (prices.length < 2) return;
    const low = Math.min(...prices);
    const high = Math.max(...prices);
    const top = Math.max(...sides.map((side) => (side.length ? side[side.length - 1][1] : 0)));
    const pad = 14;
    const x = (price) => (high === low ? width / 2 : ((price - low) / (high - low)) * width);
    const y = (total) => height - pad - (total / top) * (height - 2 * pad);
    const colours = [["#2e8b57", "rgba(46,139,87,0.25)"], ["#c0392b", "rgba(192,57,43,0.25)"]];
    sides.forEach((side, i) => {
      if (!side.length) return;
      ctx.beginPath();
      ctx.moveTo(x(side[0][0]), y(0));
      let previous = 0;
      for (const [price, total] of side) {
        ctx.lineTo(x(price), y(previous));
        ctx.lineTo(x(price), y(total));
        previous = total;
      }
      ctx.lineTo(x(side[side.length - 1][0]), y(0));
      ctx.closePath();
      ctx.fillStyle = colours[i][1];
      ctx.fill();
      ctx.strokeStyle = colours[i][0];
      ctx.stroke();
    });
    ctx.fillStyle = "#999";
    ctx.font = "11px sans-serif";
    ctx.fillText(String(low), 2, height - 2);
    const highText = String(high);
    ctx.fillText(highText, width - ctx.measureText(highText).width - 2, height - 2);
    ctx.fillText(`Σ ${top.toPrecision(4)}`, 2, 11);
  }
}

// The consolidated best bid and offer, with crossed and locked shown.
export class BboPanel {
  constructor(root) {
    this.root = root;
    this.parts = {};
    for (const id of ["bid", "bid-size", "bid-venues", "ask", "ask-size", "ask-venues", "flag"]) {
      this.parts[id] = root.querySelector(`#bbo-${id}`);
    }
  }

  render(msg) {
    const p = this.parts;
    for (const side of ["bid", "ask"]) {
      const level = msg ? msg[side] : null;
      p[side].textContent = level ? level[0] : "—";
      p[`${side}-size`].textContent = level ? level[1] : "";
      p[`${side}-venues`].textContent = level ? level[2].join(" ") : "";
    }
    const flag = msg && msg.crossed ? "crossed" : msg && msg.locked ? "locked" : "";
    p.flag.textContent = flag;
    p.flag.className = flag;
    const data = this.root.dataset;
    data.seq = msg ? msg.seq : 0;
    data.ts = msg ? msg.ts : "";
    data.bid = msg && msg.bid ? msg.bid[0] : "";
    data.ask = msg && msg.ask ? msg.ask[0] : "";
    data.crossed = Boolean(msg && msg.crossed);
    data.locked = Boolean(msg && msg.locked);
  }
}

// A row per venue book: state (from the status channel and the list reply), the venue's last
// message age and the book's resyncs (from the list reply, asked for every second).
export class Health {
  constructor(body, colours) {
    this.body = body;
    this.colours = colours;
    this.rows = new Map(); // "venue symbol" -> {tr, cells}
  }

  row(venue, symbol) {
    const key = `${venue} ${symbol}`;
    let row = this.rows.get(key);
    if (row === undefined) {
      if (this.rows.size >= MAX_HEALTH_ROWS) return null;
      const tr = el("tr");
      tr.dataset.venue = venue;
      tr.dataset.symbol = symbol;
      const name = el("td", "venue", venue);
      name.style.setProperty("--venue", this.colours.of(venue));
      const cells = { state: el("td", "state"), age: el("td", "age"), resyncs: el("td", "resyncs") };
      tr.append(name, el("td", "", symbol), cells.state, cells.age, cells.resyncs);
      this.body.append(tr);
      row = { tr, cells };
      this.rows.set(key, row);
    }
    return row;
  }

  state(venue, symbol, state, reason) {
    const row = this.row(venue, symbol);
    if (row === null) return;
    row.tr.dataset.state = state;
    row.cells.state.textContent = reason ? `${state} (${reason})` : state;
    row.cells.state.className = `state ${state}`;
  }

  listing(reply) {
    const seen = new Set();
    for (const venue of reply.venues) {
      for (const book of venue.symbols) {
        const row = this.row(venue.venue, book.symbol);
        if (row === null) continue;
        seen.add(`${venue.venue} ${book.symbol}`);
        if (row.tr.dataset.state !== book.state) this.state(venue.venue, book.symbol, book.state);
        const age = venue.last_message_age;
        row.cells.age.textContent = age === null ? "—" : `${age.toFixed(1)} s ago`;
        row.cells.resyncs.textContent = book.resyncs;
      }
    }
    for (const [key, row] of this.rows) {
      if (!seen.has(key)) {
        row.tr.remove();
        this.rows.delete(key);
      }
    }
  }
}

// The latest trades, newest on top, at most MAX_TAPE_ROWS rows.
export class Tape {
  constructor(body, colours) {
    this.body = body;
    this.colours = colours;
  }

  clear() {
    this.body.replaceChildren();
  }

  add(msg) {
    const tr = el("tr", msg.type === "trade" ? msg.side : "notice");
    if (msg.type === "trade") {
      const venue = el("td", "venue", msg.venue);
      venue.style.setProperty("--venue", this.colours.of(msg.venue));
      tr.append(el("td", "", time(msg.ts)), venue, el("td", "", msg.side), el("td", "", msg.price), el("td", "", msg.size));
    } else {
      const note = el("td", "", `${msg.dropped} trade(s) dropped while this page was behind`);
      note.colSpan = 4;
      tr.append(el("td", "", time(msg.ts)), note);
    }
    this.body.prepend(tr);
    while (this.body.childElementCount > MAX_TAPE_ROWS) this.body.lastElementChild.remove();
  }
}
