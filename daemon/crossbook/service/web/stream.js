// The page's one connection to the public WebSocket API (batched frames), reopened with a capped,
// jittered backoff. Every channel message's seq is checked: a gap starts the channel over.

const BACKOFF_FIRST = 0.5;
const BACKOFF_CAP = 10;

export class Stream {
  // onMessage(msg) gets every channel message in order; onState(state, detail) the connection's
  // state: "connecting", "open", "closed" (detail: the close event); onOpen() subscribes.
  constructor(token, { onMessage, onState, onOpen }) {
    const query = new URLSearchParams({ batch: "1" });
    if (token) query.set("token", token);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.url = `${scheme}//${location.host}/v1/stream?${query}`;
    this.onMessage = onMessage;
    this.onState = onState;
    this.onOpen = onOpen;
    this.nextId = 1;
    this.waiting = new Map(); // request id -> resolve
    this.seqs = new Map(); // channel -> last seq
    this.depths = new Map(); // channel -> depth asked for
    this.leaving = new Set(); // channels being unsubscribed
    this.attempt = 0;
    this.ws = null;
    this.stopped = false;
  }

  // Closes the connection for good (a token refused: the page asks for another).
  stop() {
    this.stopped = true;
    if (this.ws) this.ws.close();
  }

  connect() {
    this.onState("connecting");
    const ws = (this.ws = new WebSocket(this.url));
    ws.onopen = () => {
      this.attempt = 0;
      this.seqs.clear();
      this.leaving.clear();
      this.onState("open");
      this.onOpen();
    };
    ws.onmessage = (event) => {
      for (const msg of JSON.parse(event.data)) this.dispatch(msg);
    };
    ws.onclose = (event) => {
      for (const resolve of this.waiting.values()) resolve(null);
      this.waiting.clear();
      this.onState("closed", event);
      if (this.stopped) return;
      const delay = Math.min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** this.attempt++) * (0.5 + Math.random() / 2);
      setTimeout(() => this.connect(), delay * 1000);
    };
  }

  dispatch(msg) {
    if (msg.channel === undefined || msg.seq === undefined) {
      const resolve = this.waiting.get(msg.id);
      if (resolve) {
        this.waiting.delete(msg.id);
        resolve(msg);
      }
      if (msg.type === "unsubscribed") this.seqs.delete(msg.channel);
      return;
    }
    if (this.leaving.has(msg.channel)) return; // sent before an unsubscribe took effect
    const last = this.seqs.get(msg.channel);
    if (last !== undefined && msg.seq !== last + 1) {
      console.warn(`${msg.channel}: seq ${msg.seq} after ${last}; subscribing again`);
      this.restart(msg.channel);
      return;
    }
    this.seqs.set(msg.channel, msg.seq);
    this.onMessage(msg);
  }

  // Sends a request; resolves with its reply (null if the connection closed first).
  request(op, fields = {}) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return Promise.resolve(null);
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ op, id, ...fields }));
    return new Promise((resolve) => this.waiting.set(id, resolve));
  }

  subscribe(channels, depth) {
    for (const channel of channels) this.depths.set(channel, depth);
    return this.request("subscribe", depth ? { channels, depth } : { channels });
  }

  // Until the reply, the channels' messages are dropped; a later subscription starts at seq 1.
  async unsubscribe(channels) {
    for (const channel of channels) this.leaving.add(channel);
    const reply = await this.request("unsubscribe", { channels });
    for (const channel of channels) {
      this.leaving.delete(channel);
      this.seqs.delete(channel);
    }
    return reply;
  }

  // A channel whose seq jumped starts over: its next message is a fresh snapshot.
  async restart(channel) {
    const depth = this.depths.get(channel);
    await this.unsubscribe([channel]);
    await this.subscribe([channel], depth);
  }
}
