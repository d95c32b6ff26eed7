// The WebChat hub: picks a session, loads its history (then older pages on scroll),
// sends messages and commands through chat.send, renders the streamed reply, and
// resumes after a reconnect from the last session event it saw (sessionSeq), so no
// message is lost or shown twice.

import { Autocomplete, isCommand } from "./commands.js";
import { Gateway, GatewayError, gatewayUrl } from "./gateway.js";
import { WorkersPanel } from "./panel.js";
import { el } from "./render.js";
import { Transcript } from "./transcript.js";

const PAGE = 50;
const $ = (selector) => document.querySelector(selector);

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function sessionTitle(row) {
  const name = row.label || row.displayName || (row.isMain ? "Main session" : row.derivedTitle);
  return name ? `${name} — ${row.key}` : row.key;
}

/** The last session events seen: contiguous up to `last`, plus those beyond a gap. */
class SeqTracker {
  constructor(last = null) {
    this.last = last;
    this.ahead = new Set();
  }

  /** True the first time `seq` is seen. */
  accept(seq) {
    if (seq === undefined || seq === null) return true;
    if (this.last === null) this.last = seq - 1;
    if (seq <= this.last || this.ahead.has(seq)) return false;
    this.ahead.add(seq);
    while (this.ahead.has(this.last + 1)) this.ahead.delete(++this.last);
    return true;
  }
}

class WebChat {
  constructor(root) {
    this.root = root;
    this.gateway = new Gateway(gatewayUrl());
    this.transcript = new Transcript($("#messages"), $("#transcript"));
    this.key = null;
    this.sessionId = null;
    this.seqs = new SeqTracker();
    this.hasMore = false;
    this.loadingOlder = false;
    this.loaded = false;
    this.unsent = new Map(); // idempotencyKey -> text, re-sent after a reconnect
    this.panel = new WorkersPanel({
      gateway: this.gateway, root: $("#workers"), viewer: $("#viewer"), actions: this.workerActions(),
      onCount: (live, total) => ($("#workers-count").textContent = total ? `${live}/${total}` : "0"),
    });
    this.autocomplete = new Autocomplete($("#input"), $("#suggestions"), { labels: (kind) => this.panel.labels(kind) });
    this.bind();
  }

  start() {
    this.gateway.addEventListener("status", (e) => this.connectionStatus(e.detail));
    this.gateway.addEventListener("ready", () => this.ready());
    this.gateway.addEventListener("gateway-event", (e) => this.onEvent(e.detail.event, e.detail.payload));
    this.gateway.start();
  }

  // --- connection ---------------------------------------------------------------------

  async ready() {
    try {
      await this.gateway.request("sessions.subscribe", {});
      const resumed = this.loaded;
      if (!resumed) {
        const defaults = this.gateway.hello.snapshot?.sessionDefaults || {};
        await this.open(this.root.dataset.initialSession || defaults.mainSessionKey || "main");
      } else {
        await this.resume();
      }
      this.loadPicker();
      this.resendUnsent();
    } catch (error) {
      this.transcript.addError(error, { title: "loading the session" });
    }
  }

  connectionStatus({ state, delayMs, error }) {
    if (state === "refused" && error) $("#conn-state").title = error.message;
    const node = $("#conn-state");
    node.dataset.state = state;
    node.textContent = {
      connecting: "Connecting…", connected: "Connected", stopped: "Offline",
      reconnecting: `Reconnecting in ${Math.ceil((delayMs || 0) / 1000)}s…`,
      refused: "Refused",
    }[state] || state;
    this.root.classList.toggle("offline", state !== "connected");
    if (state === "refused") this.loginAgain(error);
  }

  loginAgain(error) {
    const next = encodeURIComponent(location.pathname + location.search);
    const note = this.transcript.addError(error || { code: "FORBIDDEN", message: "the gateway refused the connection" },
      { title: "connection refused" });
    note.append(" ", el("a", { href: `/admin/login/?next=${next}` }, "Log in again"));
  }

  /** After a reconnect: replay the events after the last one seen, then re-read the newest page. */
  async resume() {
    const params = this.seqs.last === null ? { key: this.key } : { key: this.key, afterSeq: this.seqs.last };
    await this.gateway.request("sessions.messages.subscribe", params);
    const page = await this.gateway.request("chat.history", { sessionKey: this.key, limit: PAGE });
    if (page.sessionId !== this.sessionId) return this.reload();
    this.transcript.addMessages(page.messages);
    this.panel.refreshSoon(0);
  }

  // --- the session ----------------------------------------------------------------------

  async open(key) {
    if (this.key && this.key !== key) {
      this.gateway.request("sessions.messages.unsubscribe", { key: this.key }).catch(() => {});
    }
    this.key = key;
    await this.reload();
    this.panel.setHub(this.key);
    const url = new URL(location.href);
    url.searchParams.set("session", this.key);
    history.replaceState(null, "", url);
  }

  /** Load the newest page, then subscribe from the seq it was read at. Events that
   * arrive meanwhile are held and applied after the page (those it covers are dropped). */
  reload() {
    this.reloading ??= this.loadNewest().finally(() => (this.reloading = null));
    return this.reloading;
  }

  async loadNewest() {
    const held = (this.held = []);
    let page;
    try {
      page = await this.gateway.request("chat.history", { sessionKey: this.key, limit: PAGE });
    } finally {
      this.held = null;
    }
    this.key = page.sessionKey || this.key;
    this.sessionId = page.sessionId;
    this.seqs = new SeqTracker(page.sessionSeq ?? null);
    this.transcript.clear();
    this.transcript.addMessages(page.messages);
    this.hasMore = Boolean(page.hasMore);
    this.transcript.scrollToBottom();
    this.showSentinel();
    for (const { event, payload } of held) this.onEvent(event, payload);
    const params = page.sessionSeq === undefined ? { key: this.key } : { key: this.key, afterSeq: page.sessionSeq };
    await this.gateway.request("sessions.messages.subscribe", params);
    this.loaded = true;
    this.loadState();
  }

  async loadState() {
    try {
      const detail = await this.gateway.request("sessions.get", { key: this.key, limit: 1 });
      this.sessionRow(detail.session);
    } catch {
      this.setBusy(false); // a session that does not exist yet is idle
    }
  }

  async loadOlder() {
    if (!this.hasMore || this.loadingOlder || !this.gateway.connected) return;
    this.loadingOlder = true;
    try {
      const params = { sessionKey: this.key, limit: PAGE, offset: this.transcript.size };
      const page = await this.gateway.request("chat.history", params);
      if (page.sessionId === this.sessionId) {
        this.transcript.prependPage(page.messages);
        this.hasMore = Boolean(page.hasMore);
      }
    } catch (error) {
      this.transcript.addError(error, { title: "loading older messages" });
    } finally {
      this.loadingOlder = false;
      this.showSentinel();
    }
    // A page too short to scroll leaves the sentinel in view: no new intersection fires.
    if (this.hasMore && $("#transcript").scrollTop < 40) setTimeout(() => this.loadOlder(), 0);
  }

  showSentinel() {
    const sentinel = $("#history-sentinel");
    sentinel.textContent = this.hasMore ? "Loading older messages…" : this.transcript.size ? "Start of the conversation" : "";
    sentinel.dataset.more = this.hasMore ? "true" : "false";
  }

  async loadPicker() {
    try {
      const result = await this.gateway.request("sessions.list", { limit: 100, includeDerivedTitles: true });
      const picker = $("#session-picker");
      const rows = result.sessions.filter((row) => !row.spawnedBy);
      const mainKey = this.gateway.hello?.snapshot?.sessionDefaults?.mainSessionKey;
      if (!rows.some((row) => row.key === this.key)) rows.unshift({ key: this.key, isMain: this.key === mainKey });
      rows.sort((a, b) => (b.isMain ? 1 : 0) - (a.isMain ? 1 : 0));
      picker.replaceChildren(...rows.map((row) => el("option", { value: row.key, selected: row.key === this.key },
        sessionTitle(row))));
    } catch {
      /* the picker keeps its last state */
    }
  }

  // --- events ---------------------------------------------------------------------------

  onEvent(event, payload) {
    if (this.held) return this.held.push({ event, payload });
    if (event === "sessions.changed" && payload.sessionKey !== this.key) {
      if (this.panel.concerns(payload)) this.panel.refreshSoon();
      if (payload.reason === "create" || payload.reason === "delete") this.loadPicker();
      return;
    }
    if (payload.sessionKey !== this.key || !this.seqs.accept(payload.sessionSeq)) return;
    if (payload.session) this.sessionRow(payload.session);
    if (event === "session.message") this.onMessage(payload);
    else if (event === "chat") this.onChat(payload);
    else if (event === "agent") this.onAgent(payload);
    else if (event === "sessions.changed") this.onSessionChanged(payload);
  }

  onMessage(payload) {
    if (this.rotated(payload.session)) return this.reload();
    this.transcript.addLive(payload.message);
    const provenance = payload.message?.provenance || {};
    if (provenance.kind === "inter_session") this.panel.refreshSoon();
  }

  onChat(payload) {
    if (payload.state === "delta") {
      this.transcript.applyDelta(payload);
      return this.turn("streaming", "Replying…");
    }
    this.transcript.endStream(payload.runId);
    if (payload.state === "final") this.turn("ended", "Turn ended");
    else if (payload.state === "aborted") this.turn("aborted", "Turn ended: aborted");
    else if (payload.state === "error") {
      this.turn("error", "Turn ended with an error");
      this.transcript.addError({ code: "RUN_ERROR", message: payload.errorMessage || "the run failed" });
    }
  }

  onAgent(payload) {
    const data = payload.data || {};
    if (payload.stream === "tool" && data.phase === "start") this.turn("tool", `Running ${data.name}…`);
    if (payload.stream === "lifecycle" && data.phase === "start") this.turn("started", "Thinking…");
  }

  onSessionChanged(payload) {
    if (payload.reason === "create" || payload.reason === "delete") this.loadPicker();
    if (payload.reason === "delete") return this.reload();
    if (this.rotated(payload.session)) this.reload();
  }

  /** Did a reset give the session a new transcript? (A session created after the page
   * loaded just adopts its first sessionId.) */
  rotated(row) {
    if (!row?.sessionId) return false;
    if (this.sessionId === null) this.sessionId = row.sessionId;
    return row.sessionId !== this.sessionId;
  }

  /** Busy/idle is the session's own state, independent of any one turn ending. */
  sessionRow(row) {
    if (!row || row.key !== this.key) return;
    this.setBusy(row.state === "busy");
  }

  setBusy(busy) {
    const chip = $("#session-state");
    chip.dataset.state = busy === null ? "unknown" : busy ? "busy" : "idle";
    chip.textContent = busy === null ? "…" : busy ? "busy" : "idle";
    this.busy = Boolean(busy);
    $("#stop").hidden = !this.busy && !this.transcript.streaming;
  }

  turn(state, text) {
    const node = $("#turn-state");
    node.dataset.state = state;
    node.textContent = text;
    $("#stop").hidden = !this.busy && !this.transcript.streaming;
  }

  // --- sending --------------------------------------------------------------------------

  async send(text, key = uuid()) {
    const command = isCommand(text);
    if (!this.unsent.has(key)) this.transcript.addPending(key, text, { command });
    this.unsent.set(key, text);
    try {
      const result = await this.gateway.request("chat.send", { sessionKey: this.key, message: text, idempotencyKey: key });
      this.unsent.delete(key);
      if (command) this.transcript.settleCommand(key);
      else this.transcript.markSent(key);
      if (result?.status === "started") this.turn("queued", "Sent, waiting for the turn…");
      return result;
    } catch (error) {
      if (error.code === "UNAVAILABLE" && !this.gateway.connected) return null; // re-sent on reconnect
      this.unsent.delete(key);
      this.transcript.addError(error, { key });
      throw error;
    }
  }

  /** Messages whose chat.send was cut by a disconnect go again with the same key (idempotent). */
  resendUnsent() {
    for (const [key, text] of [...this.unsent]) this.send(text, key).catch(() => {});
  }

  async stop() {
    this.turn("stopping", "Stopping…");
    try {
      const result = await this.gateway.request("chat.abort", { sessionKey: this.key });
      if (!result.aborted) this.turn("idle", "Nothing to stop");
    } catch (error) {
      this.transcript.addError(error, { title: "stop" });
    }
  }

  workerActions() {
    const invoke = async (args) => {
      const reply = await this.gateway.request("tools.invoke", { sessionKey: this.key, tool: "sessions_send", args });
      const result = reply.result || {};
      if (result.status === "error" || result.error) {
        throw new GatewayError({ code: result.code || "INVALID_REQUEST", message: result.error || "follow-up refused" });
      }
      return `Follow-up ${result.status || "sent"}; the reply comes back to this chat.`;
    };
    const command = async (text) => {
      await this.send(text);
      return `Sent \`${text}\`; the answer is in the chat.`;
    };
    return {
      followup: (worker, message) => invoke(worker.kind === "delegate" && worker.label
        ? { label: worker.label, message, timeoutSeconds: 0 }
        : { sessionKey: worker.key, message, timeoutSeconds: 0 }),
      steer: (worker, message, target) => command(`/subagents steer ${target} ${message}`),
      kill: (worker, message, target) => command(`/subagents kill ${target}`),
      close: (worker) => command(`/acp delegate close ${worker.label || worker.key}`),
    };
  }

  // --- the page -------------------------------------------------------------------------

  bind() {
    const input = $("#input");
    $("#composer").addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    input.addEventListener("keydown", (event) => {
      if (this.autocomplete.key(event)) return event.preventDefault();
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    input.addEventListener("input", () => this.grow());
    $("#stop").addEventListener("click", () => this.stop());
    $("#session-picker").addEventListener("change", (event) => {
      this.open(event.target.value).catch((error) => this.transcript.addError(error));
    });
    $("#panel-toggle").addEventListener("click", () => this.root.classList.toggle("panel-open"));
    $("#panel-close").addEventListener("click", () => this.root.classList.remove("panel-open"));
    $(".chat").addEventListener("click", () => this.root.classList.remove("panel-open")); // the scrim on phones
    new IntersectionObserver((entries) => entries.some((e) => e.isIntersecting) && this.loadOlder(), { root: $("#transcript") })
      .observe($("#history-sentinel"));
  }

  submit() {
    const input = $("#input");
    const text = input.value.trim();
    if (!text || !this.key) return;
    input.value = "";
    this.grow();
    this.autocomplete.close();
    this.send(text).catch(() => {});
  }

  grow() {
    const input = $("#input");
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight, 180)}px`;
  }
}

const root = document.getElementById("webchat");
if (root) {
  const app = new WebChat(root);
  window.webchat = app; // for operators' consoles and the browser tests
  app.start();
}
