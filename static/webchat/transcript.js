// The chat column: transcript messages keyed by message id (so history pages, live
// events and replays after a reconnect never show a message twice), one streaming
// bubble per running turn, and local notes (pending sends, command echoes, errors).

import { el, formatText, messageItem, messageText } from "./render.js";

const LOCAL_BASE = 1e12; // local notes sort after the transcript message they follow
const STREAM_ORDER = 1e15; // streaming bubbles stay last

export class Transcript {
  constructor(list, scroller) {
    this.list = list;
    this.scroller = scroller;
    this.clear();
  }

  clear() {
    this.list.replaceChildren();
    this.ids = new Set();
    this.maxSeq = 0;
    this.localCount = 0;
    this.streams = new Map(); // runId -> {item, chatSeq}
    this.pending = new Map(); // idempotencyKey -> item
  }

  get size() {
    return this.ids.size;
  }

  // --- transcript messages --------------------------------------------------------

  /** Add transcript messages (history page or live); returns how many were new. */
  addMessages(messages) {
    const keepBottom = this.nearBottom();
    let added = 0;
    for (const message of messages) added += this.addOne(message) ? 1 : 0;
    if (keepBottom) this.scrollToBottom();
    return added;
  }

  /** A live `session.message`: also settles the pending bubble and the run's stream. */
  addLive(message) {
    const meta = message.__openclaw || {};
    const key = (message.idempotencyKey || "").replace(/:input$/, "");
    if (message.role === "user" && this.pending.has(key)) {
      this.pending.get(key).remove();
      this.pending.delete(key);
    }
    if (message.role === "assistant" && meta.runId) this.endStream(meta.runId);
    this.addMessages([message]);
  }

  addOne(message) {
    const meta = message.__openclaw || {};
    if (!meta.id || this.ids.has(meta.id)) return false;
    this.ids.add(meta.id);
    const seq = Number(meta.seq) || 0;
    this.maxSeq = Math.max(this.maxSeq, seq);
    this.insert(messageItem(message), seq);
    return true;
  }

  insert(item, order) {
    item.dataset.order = String(order);
    let before = null;
    for (let node = this.list.lastElementChild; node; node = node.previousElementSibling) {
      if (Number(node.dataset.order) <= order) break;
      before = node;
    }
    this.list.insertBefore(item, before);
  }

  // --- streaming turns ------------------------------------------------------------

  /** A `chat` delta: replace the run's bubble text (cumulative); older deltas are ignored. */
  applyDelta(payload) {
    const text = messageText(payload.message);
    let stream = this.streams.get(payload.runId);
    if (stream && (payload.seq ?? 0) <= stream.chatSeq) return;
    const keepBottom = this.nearBottom();
    if (!stream) {
      const item = el("li", { class: "msg msg-assistant streaming", dataset: { runId: payload.runId } },
        el("div", { class: "meta" }, el("span", { class: "who" }, "Assistant"),
          el("span", { class: "typing" }, el("i"), el("i"), el("i"))),
        el("div", { class: "body" }, el("div", { class: "text" })));
      stream = { item, chatSeq: 0 };
      this.streams.set(payload.runId, stream);
      this.insert(item, STREAM_ORDER + this.streams.size);
    }
    stream.chatSeq = payload.seq ?? stream.chatSeq;
    stream.item.querySelector(".text").replaceChildren(formatText(text));
    if (keepBottom) this.scrollToBottom();
  }

  endStream(runId) {
    const stream = this.streams.get(runId);
    if (!stream) return null;
    this.streams.delete(runId);
    stream.item.remove();
    return stream;
  }

  get streaming() {
    return this.streams.size > 0;
  }

  // --- local notes ----------------------------------------------------------------

  localOrder() {
    this.localCount += 1;
    return this.maxSeq + this.localCount / LOCAL_BASE + 0.5;
  }

  /** The user's message until its transcript echo arrives. */
  addPending(key, text, { command = false } = {}) {
    const item = el("li", { class: `msg msg-user pending${command ? " command" : ""}`, dataset: { pendingKey: key } },
      el("div", { class: "meta" }, el("span", { class: "who" }, "You"),
        el("span", { class: "tag" }, command ? "command" : "sending…")),
      el("div", { class: "body" }, el("div", { class: "text" }, formatText(text))));
    this.pending.set(key, item);
    this.insert(item, this.localOrder());
    this.scrollToBottom();
    return item;
  }

  /** A command is answered by the gateway; its echo is kept as a local note. */
  settleCommand(key) {
    const item = this.pending.get(key);
    if (!item) return;
    this.pending.delete(key);
    item.classList.remove("pending");
    item.querySelector(".tag").textContent = "command";
  }

  markSent(key) {
    const tag = this.pending.get(key)?.querySelector(".tag");
    if (tag) tag.textContent = "queued";
  }

  /** An inline error with its code, after the message that caused it (if any). */
  addError(error, { key = null, title = "" } = {}) {
    const pendingItem = key ? this.pending.get(key) : null;
    if (pendingItem) {
      pendingItem.classList.add("failed");
      pendingItem.querySelector(".tag").textContent = "not sent";
      this.pending.delete(key);
    }
    const code = error.label || error.code || "ERROR";
    const item = el("li", { class: "note error", role: "alert", dataset: { code } },
      el("span", { class: "code" }, code), " ", title ? `${title}: ` : "", error.message || String(error));
    this.insert(item, this.localOrder());
    this.scrollToBottom();
    return item;
  }

  addNote(text, { kind = "info" } = {}) {
    const item = el("li", { class: `note ${kind}` }, text);
    this.insert(item, this.localOrder());
    if (this.nearBottom(200)) this.scrollToBottom();
    return item;
  }

  // --- scrolling ------------------------------------------------------------------

  nearBottom(slack = 80) {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < slack;
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  /** Prepend an older page without moving what the reader is looking at. */
  prependPage(messages) {
    const before = this.scroller.scrollHeight;
    const top = this.scroller.scrollTop;
    let added = 0;
    for (const message of messages) added += this.addOne(message) ? 1 : 0;
    this.scroller.scrollTop = top + (this.scroller.scrollHeight - before);
    return added;
  }
}
