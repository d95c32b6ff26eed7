// The workers panel: the hub session's sub-agents and delegated ACP workers, live
// (refreshed on their sessions.changed events and every few seconds), and a read-only
// transcript viewer with the actions follow-up, steer, kill and close.

import { el, formatText, messageItem, relativeTime } from "./render.js";

const POLL_MS = 5000;
const ENDED = new Set(["done", "ok", "error", "killed", "timeout", "aborted", "closed", "failed"]);

export class WorkersPanel {
  constructor({ gateway, root, viewer, onCount, actions }) {
    this.gateway = gateway;
    this.root = root;
    this.viewer = new TranscriptViewer(viewer, { gateway, actions, panel: this });
    this.onCount = onCount;
    this.hub = null;
    this.workers = [];
    this.timer = null;
    this.refreshing = null;
    setInterval(() => this.tickTimes(), 15000);
  }

  setHub(key) {
    this.hub = key;
    this.workers = [];
    this.render();
    this.viewer.close();
    this.refreshSoon(0);
  }

  /** Coalesce refreshes (events can come in bursts). */
  refreshSoon(delay = 250) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), delay);
  }

  /** Is a sessions.changed about one of our workers (or a new one)? */
  concerns(payload) {
    const row = payload.session || {};
    return row.spawnedBy === this.hub || this.workers.some((w) => w.key === payload.sessionKey);
  }

  async refresh() {
    clearTimeout(this.timer);
    if (!this.hub || !this.gateway.connected) return this.schedulePoll();
    if (this.refreshing) return this.refreshing;
    this.refreshing = this.load().finally(() => {
      this.refreshing = null;
      this.schedulePoll();
    });
    return this.refreshing;
  }

  schedulePoll() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), POLL_MS);
  }

  async load() {
    const hub = this.hub;
    const methods = new Set(this.gateway.hello?.features?.methods || []);
    const call = (method, params) => (methods.has(method) ? this.gateway.request(method, params).catch(() => null) : null);
    const [listed, subagents, delegates] = await Promise.all([
      call("sessions.list", { spawnedBy: hub, includeLastMessage: true, limit: 100 }),
      call("subagents.list", { sessionKey: hub }),
      call("acp.delegate.list", { sessionKey: hub }),
    ]);
    if (hub !== this.hub) return;
    this.workers = mergeWorkers(listed?.sessions || [], subagentViews(subagents), delegateRows(delegates));
    this.render();
    this.viewer.refreshIfShowing(this.workers);
  }

  labels(kind) {
    return this.workers.filter((w) => w.kind === kind && w.label).map((w) => w.label);
  }

  /** How a slash command names this worker: its label when unique, else its key. */
  target(worker) {
    const same = this.workers.filter((w) => w.kind === worker.kind && w.label === worker.label);
    return worker.label && same.length === 1 ? worker.label : worker.key;
  }

  render() {
    const groups = { subagent: [], delegate: [] };
    for (const worker of this.workers) groups[worker.kind].push(worker);
    this.fill(this.root.querySelector("[data-list=subagent]"), groups.subagent, "No sub-agents yet. Ask the hub to spawn one.");
    this.fill(this.root.querySelector("[data-list=delegate]"), groups.delegate, "No delegated workers.");
    this.onCount?.(this.workers.filter((w) => !ENDED.has(w.state)).length, this.workers.length);
  }

  fill(list, workers, emptyText) {
    list.replaceChildren(...(workers.length ? workers.map((w) => this.card(w)) : [el("li", { class: "empty" }, emptyText)]));
  }

  card(worker) {
    return el("li", {},
      el("button", {
        class: `worker state-${worker.state}`, type: "button", onclick: () => this.viewer.open(worker),
        dataset: { key: worker.key, label: worker.label || "", kind: worker.kind },
      },
      el("div", { class: "worker-head" }, el("span", { class: "worker-label" }, worker.label || shortKey(worker.key)),
        el("span", { class: `chip state-${worker.state}`, "data-testid": "worker-state" }, worker.state)),
      el("div", { class: "worker-meta" }, el("span", { class: "runtime" }, worker.runtime),
        worker.duration ? el("span", {}, worker.duration) : null,
        el("span", { class: "activity", dataset: { ts: worker.lastActivity || "" } }, relativeTime(worker.lastActivity))),
      worker.preview ? el("div", { class: "worker-preview" }, worker.preview) : null));
  }

  tickTimes() {
    for (const node of this.root.querySelectorAll(".activity[data-ts]")) node.textContent = relativeTime(Number(node.dataset.ts));
  }
}

// --- merging the three sources -------------------------------------------------------

function subagentViews(result) {
  const views = new Map();
  for (const view of [...(result?.recent || []), ...(result?.active || [])]) views.set(view.sessionKey, view);
  return views;
}

function delegateRows(result) {
  const rows = new Map();
  const items = result?.delegates || result?.sessions || result?.items || [];
  for (const row of items) rows.set(row.sessionKey || row.key, row);
  return rows;
}

function mergeWorkers(rows, views, delegates) {
  const byKey = new Map(rows.map((row) => [row.key, row]));
  for (const key of [...views.keys(), ...delegates.keys()]) if (!byKey.has(key)) byKey.set(key, { key });
  const workers = [...byKey.values()].map((row) => worker(row, views.get(row.key), delegates.get(row.key)));
  return workers.sort((a, b) => (b.lastActivity || 0) - (a.lastActivity || 0));
}

function worker(row, view, delegate) {
  const isDelegate = Boolean(delegate) || row.classification === "acp" || Boolean(row.hubDelegated);
  const harness = delegate?.agent || delegate?.harnessAgent || delegate?.harness || row.acpAgent || "";
  const state = isDelegate
    ? delegate?.state || row.state || "idle"
    : view?.status || row.status || row.state || "idle";
  const last = Math.max(row.updatedAt || 0, view?.endedAt || 0, view?.startedAt || 0, delegate?.lastActivityAt || 0) || null;
  return {
    key: row.key,
    kind: isDelegate ? "delegate" : "subagent",
    label: delegate?.label || view?.label || row.label || "",
    runtime: isDelegate ? `ACP${harness ? ` · ${harness}` : ""}` : "sub-agent",
    state: String(state).toLowerCase(),
    busy: row.state === "busy",
    duration: view?.runtime || "",
    lastActivity: last,
    preview: row.lastMessagePreview || "",
    task: view?.task || "",
  };
}

function shortKey(key) {
  const parts = key.split(":");
  return parts.length > 3 ? `${parts[2]}:${parts[3].slice(0, 8)}` : key;
}

// --- the read-only transcript viewer -------------------------------------------------

class TranscriptViewer {
  constructor(dialog, { gateway, actions, panel }) {
    this.dialog = dialog;
    this.gateway = gateway;
    this.actions = actions;
    this.panel = panel;
    this.worker = null;
    this.list = dialog.querySelector("[data-viewer=messages]");
    this.input = dialog.querySelector("[data-viewer=input]");
    this.status = dialog.querySelector("[data-viewer=status]");
    dialog.querySelector("[data-viewer=close]").addEventListener("click", () => this.close());
    dialog.addEventListener("close", () => (this.worker = null));
    for (const button of dialog.querySelectorAll("[data-action]")) {
      button.addEventListener("click", (event) => {
        event.preventDefault();
        this.act(button.dataset.action);
      });
    }
  }

  async open(worker) {
    this.worker = worker;
    this.header(worker);
    this.list.replaceChildren(el("li", { class: "note" }, "Loading…"));
    this.status.textContent = "";
    if (!this.dialog.open) this.dialog.showModal();
    await this.load();
  }

  header(worker) {
    this.dialog.querySelector("[data-viewer=title]").textContent = worker.label || worker.key;
    this.dialog.querySelector("[data-viewer=meta]").replaceChildren(
      el("span", { class: `chip state-${worker.state}` }, worker.state), " ", worker.runtime, " · ", el("code", {}, worker.key));
    for (const button of this.dialog.querySelectorAll("[data-action]")) {
      button.hidden = !button.dataset.kinds.split(" ").includes(worker.kind);
    }
  }

  close() {
    if (this.dialog.open) this.dialog.close();
    this.worker = null;
  }

  async load() {
    const key = this.worker?.key;
    if (!key) return;
    try {
      const history = await this.gateway.request("chat.history", { sessionKey: key, limit: 200 });
      if (key !== this.worker?.key) return;
      const items = history.messages.map((m) => messageItem(m));
      this.list.replaceChildren(...(items.length ? items : [el("li", { class: "note" }, "No messages yet.")]));
      this.list.scrollTop = this.list.scrollHeight;
    } catch (error) {
      const code = el("span", { class: "code" }, error.label || "ERROR");
      this.list.replaceChildren(el("li", { class: "note error" }, code, " ", error.message));
    }
  }

  refreshIfShowing(workers) {
    if (!this.worker) return;
    const fresh = workers.find((w) => w.key === this.worker.key);
    if (fresh) {
      this.worker = fresh;
      this.header(fresh);
    }
    this.load();
  }

  async act(action) {
    const worker = this.worker;
    if (!worker) return;
    const message = this.input.value.trim();
    if ((action === "followup" || action === "steer") && !message) {
      this.say("Type a message first.", true);
      this.input.focus();
      return;
    }
    try {
      const text = await this.actions[action](worker, message, this.panel.target(worker));
      this.input.value = "";
      this.say(text || "Done.");
      this.panel.refreshSoon(300);
    } catch (error) {
      this.say(`${error.label || "ERROR"}: ${error.message}`, true);
    }
  }

  say(text, failed = false) {
    this.status.className = failed ? "viewer-status error" : "viewer-status";
    this.status.replaceChildren(formatText(text));
  }
}
