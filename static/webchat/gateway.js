// A gateway protocol (v4) client for the browser: handshake, requests matched by id,
// events, and reconnect with backoff. The page's admin session cookie authenticates
// the upgrade, so no token lives in the page.

const CLIENT = { id: "webchat-ui", version: "1.0", platform: "web", mode: "webchat" };
const SCOPES = ["operator.read", "operator.write", "operator.admin"];
const REQUEST_TIMEOUT_MS = 30000;
const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000];

export class GatewayError extends Error {
  constructor(shape) {
    super(shape?.message || "request failed");
    this.code = shape?.code || "UNAVAILABLE";
    this.detailCode = shape?.details?.code || null;
    this.details = shape?.details || null;
  }

  /** "INVALID_REQUEST/QUEUE_FULL" or just the wire code. */
  get label() {
    return this.detailCode && this.detailCode !== this.code ? `${this.code}/${this.detailCode}` : this.code;
  }
}

export class Gateway extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.socket = null;
    this.hello = null;
    this.pending = new Map();
    this.nextId = 1;
    this.attempt = 0;
    this.stopped = false;
    this.retryTimer = null;
  }

  start() {
    this.stopped = false;
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.socket?.close(1000);
    this.status("stopped");
  }

  get connected() {
    return this.hello !== null && this.socket?.readyState === WebSocket.OPEN;
  }

  /** Send one request; resolves with the payload or rejects with a GatewayError. */
  request(method, params = {}, { timeoutMs = REQUEST_TIMEOUT_MS } = {}) {
    if (!this.connected) {
      return Promise.reject(new GatewayError({ code: "UNAVAILABLE", message: "not connected" }));
    }
    const id = `${this.nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new GatewayError({ code: "AGENT_TIMEOUT", message: `${method} timed out` }));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.socket.send(JSON.stringify({ type: "req", id, method, params }));
    });
  }

  // --- connection lifecycle -------------------------------------------------------

  open() {
    this.status("connecting");
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.onmessage = (message) => this.receive(socket, message.data);
    socket.onclose = () => this.closed(socket);
  }

  closed(socket) {
    if (socket !== this.socket) return;
    const wasConnected = this.hello !== null;
    this.hello = null;
    this.failPending();
    if (wasConnected) this.dispatchEvent(new CustomEvent("disconnected"));
    if (this.stopped) return;
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt += 1;
    this.status("reconnecting", { delayMs: delay });
    this.retryTimer = setTimeout(() => this.open(), delay + Math.random() * 100);
  }

  failPending() {
    for (const { reject, timer } of this.pending.values()) {
      clearTimeout(timer);
      reject(new GatewayError({ code: "UNAVAILABLE", message: "connection lost" }));
    }
    this.pending.clear();
  }

  status(state, detail = {}) {
    this.dispatchEvent(new CustomEvent("status", { detail: { state, ...detail } }));
  }

  // --- inbound frames -------------------------------------------------------------

  receive(socket, raw) {
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return;
    }
    if (frame.type === "event" && frame.event === "connect.challenge") return this.handshake(socket);
    if (frame.type === "res") return this.response(frame);
    if (frame.type === "event") {
      this.dispatchEvent(new CustomEvent("gateway-event", { detail: { event: frame.event, payload: frame.payload || {} } }));
    }
  }

  handshake(socket) {
    const id = "connect";
    const params = { minProtocol: 4, maxProtocol: 4, client: CLIENT, role: "operator", scopes: SCOPES };
    this.pending.set(id, {
      resolve: (hello) => this.ready(hello),
      reject: (error) => {
        // A refused handshake (e.g. the admin session expired) will not pass on a retry.
        this.stopped = true;
        this.status("refused", { error });
        socket.close();
      },
      timer: null,
    });
    socket.send(JSON.stringify({ type: "req", id, method: "connect", params }));
  }

  ready(hello) {
    this.hello = hello;
    const resumed = this.attempt > 0;
    this.attempt = 0;
    this.status("connected");
    this.dispatchEvent(new CustomEvent("ready", { detail: { hello, resumed } }));
  }

  response(frame) {
    const entry = this.pending.get(frame.id);
    if (!entry) return;
    this.pending.delete(frame.id);
    clearTimeout(entry.timer);
    if (frame.ok) entry.resolve(frame.payload);
    else entry.reject(new GatewayError(frame.error));
  }
}

/** The gateway WebSocket URL of this page's origin. */
export function gatewayUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}
