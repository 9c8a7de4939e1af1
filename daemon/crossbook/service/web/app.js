// The web view: learns from GET /v1/info whether a token is needed, then follows one symbol's
// consolidated book, bbo and trades, and every venue book's health, over the WebSocket API.
// Messages update the page's state as they come; the DOM is redrawn at most once a frame.

import { Book } from "./book.js";
import { Stream } from "./stream.js";
import { BboPanel, Colours, DepthChart, Health, Ladder, MAX_TAPE_ROWS, Tape } from "./views.js";

const DEPTH = 20;
const LIST_EVERY_MS = 1000;
const TOKEN_KEY = "crossbook-token";
const $ = (id) => document.getElementById(id);

async function fetchInfo(token) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const reply = await fetch("/v1/info", { headers, cache: "no-store" });
  return reply.json();
}

// Shows the token form until a token the server accepts is entered.
function askToken() {
  const form = $("login");
  form.hidden = false;
  $("token").focus();
  return new Promise((resolve) => {
    form.onsubmit = async (event) => {
      event.preventDefault();
      const token = $("token").value.trim();
      if (token && (await fetchInfo(token)).authorized) {
        form.hidden = true;
        resolve(token);
      } else {
        $("login-error").textContent = "that token is not accepted";
      }
    };
  });
}

class App {
  constructor(token) {
    this.token = token;
    this.colours = new Colours($("legend"));
    this.book = new Book();
    this.bbo = null;
    this.trades = []; // not drawn yet, newest last
    this.ladder = new Ladder($("ladder"), DEPTH, this.colours);
    this.chart = new DepthChart($("depth-chart"));
    this.bboPanel = new BboPanel($("bbo"));
    this.health = new Health($("health").tBodies[0], this.colours);
    this.tape = new Tape($("tape").tBodies[0], this.colours);
    this.symbol = null;
    this.subscribed = null; // the symbol subscribed to on the current connection
    this.frame = 0;
    this.picker = $("symbol");
    this.picker.onchange = () => this.watch(this.picker.value);
    $("depth").textContent = DEPTH;
    this.stream = new Stream(token, {
      onMessage: (msg) => this.message(msg),
      onState: (state) => this.connection(state),
      onOpen: () => this.opened(),
    });
    this.stream.connect();
    setInterval(() => this.list(), LIST_EVERY_MS);
  }

  async opened() {
    this.subscribed = null;
    const listing = await this.list();
    if (!listing) return;
    const wanted = decodeURIComponent(location.hash.slice(1));
    const symbol = listing.symbols.includes(wanted) ? wanted : this.symbol || listing.symbols[0];
    await this.stream.subscribe(["status"]);
    await this.watch(symbol);
  }

  async list() {
    const listing = await this.stream.request("list");
    if (!listing) return null;
    this.health.listing(listing);
    const picker = this.picker;
    if ([...picker.options].map((o) => o.value).join() !== listing.symbols.join()) {
      picker.replaceChildren(...listing.symbols.map((s) => new Option(s, s)));
      if (this.symbol) picker.value = this.symbol;
    }
    if (this.subscribed && !listing.symbols.includes(this.subscribed) && listing.symbols.length) {
      this.subscribed = null; // a reload removed it, and its channels with it
      this.watch(listing.symbols[0]);
    }
    return listing;
  }

  channels(symbol) {
    return [`book.${symbol}`, `bbo.${symbol}`, `trades.${symbol}`];
  }

  async watch(symbol) {
    if (this.subscribed) await this.stream.unsubscribe(this.channels(this.subscribed));
    this.symbol = symbol;
    this.picker.value = symbol;
    history.replaceState(null, "", `#${encodeURIComponent(symbol)}`);
    this.book.clear();
    this.bbo = null;
    this.trades = [];
    this.tape.clear();
    this.ladder.table.dataset.symbol = symbol;
    this.draw();
    this.subscribed = symbol;
    await this.stream.subscribe(this.channels(symbol), DEPTH);
  }

  message(msg) {
    const symbol = this.symbol;
    if (msg.channel === "status") {
      this.health.state(msg.venue, msg.symbol, msg.state, msg.reason);
      return;
    }
    if (msg.channel === `book.${symbol}`) this.book.apply(msg);
    else if (msg.channel === `bbo.${symbol}`) this.bbo = msg;
    else if (msg.channel === `trades.${symbol}`) {
      this.trades.push(msg);
      if (this.trades.length > MAX_TAPE_ROWS) this.trades.shift();
    } else return;
    this.draw();
  }

  draw() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.ladder.render(this.book);
      this.chart.render(this.book);
      this.bboPanel.render(this.bbo);
      for (const trade of this.trades) this.tape.add(trade);
      this.trades = [];
    });
  }

  async connection(state) {
    const badge = $("connection");
    badge.dataset.state = state;
    badge.textContent = state === "open" ? "live" : state;
    $("view").hidden = false;
    if (state === "closed" && this.token && !(await fetchInfo(this.token)).authorized) {
      sessionStorage.removeItem(TOKEN_KEY); // revoked: ask again
      this.stream.stop();
      location.reload();
    }
  }
}

async function main() {
  let token = sessionStorage.getItem(TOKEN_KEY);
  const info = await fetchInfo(token);
  $("version").textContent = `crossbook ${info.version}`;
  if (!info.token_required) token = null;
  else if (!token || !info.authorized) {
    token = await askToken();
    sessionStorage.setItem(TOKEN_KEY, token);
  }
  window.crossbook = new App(token);
}

main();
