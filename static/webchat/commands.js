// Slash commands: the catalogue the gateway answers (sent as ordinary chat messages)
// and the autocompletion popup of the composer.

import { el } from "./render.js";

export const COMMANDS = [
  { text: "/new", args: "[message]", help: "Start a new session (the transcript is archived)" },
  { text: "/reset", args: "[message]", help: "Reset the session, keep its settings" },
  { text: "/stop", help: "Abort the running turn and queued follow-ups" },
  { text: "/status", help: "Session, model, tokens and queue" },
  { text: "/queue", args: "<mode> [debounce:1s cap:N drop:old|new|summarize]", help: "How messages queue while busy" },
  { text: "/queue steer", help: "Busy: steer the running turn" },
  { text: "/queue followup", help: "Busy: run after the current turn" },
  { text: "/queue collect", help: "Busy: collect into one turn" },
  { text: "/queue steer-backlog", help: "Busy: steer and keep a follow-up" },
  { text: "/queue interrupt", help: "Busy: abort the turn, run the new message" },
  { text: "/queue default", help: "Back to the configured queue mode" },
  { text: "/subagents list", help: "Active and recent sub-agents" },
  { text: "/subagents kill", args: "<#|label|all>", help: "Kill a sub-agent and its descendants" },
  { text: "/subagents steer", args: "<#|label> <message>", help: "Restart a running sub-agent with new instructions" },
  { text: "/subagents info", args: "<#|label>", help: "Everything about one sub-agent" },
  { text: "/acp delegate list", help: "Delegated workers of this session" },
  { text: "/acp delegate status", args: "<label>", help: "One delegated worker" },
  { text: "/acp delegate close", args: "<label>", help: "Close a delegated worker" },
];

export const STOP_WORDS = new Set(["stop", "esc", "abort", "wait", "exit", "interrupt"]);

/** True when the gateway answers `text` itself instead of the model. */
export function isCommand(text) {
  const t = text.trim().toLowerCase();
  return t.startsWith("/") || STOP_WORDS.has(t);
}

/** A command typed out in full (Enter sends it rather than picking a longer one). */
function isComplete(typed) {
  const lower = typed.trim().toLowerCase();
  return COMMANDS.some((c) => c.text === lower && !c.args);
}

const TARGETED = [
  { prefix: "/subagents kill ", kind: "subagent" },
  { prefix: "/subagents steer ", kind: "subagent" },
  { prefix: "/subagents info ", kind: "subagent" },
  { prefix: "/acp delegate status ", kind: "delegate" },
  { prefix: "/acp delegate close ", kind: "delegate" },
];

/** Suggestions for the typed text; `labels(kind)` gives worker labels to complete. */
export function suggest(typed, labels = () => []) {
  if (!typed.startsWith("/") || typed.includes("\n")) return [];
  const lower = typed.toLowerCase();
  const dynamic = TARGETED.flatMap(({ prefix, kind }) =>
    labels(kind).map((label) => ({ text: `${prefix}${label}`, help: kind === "delegate" ? "delegated worker" : "sub-agent" })));
  const wanted = (c) => c.text.toLowerCase().startsWith(lower) && c.text.toLowerCase() !== lower.trimEnd();
  const hits = [...COMMANDS, ...dynamic].filter(wanted);
  return hits.slice(0, 8);
}

/** The popup under the composer; Tab/Enter accept, arrows move, Escape closes. */
export class Autocomplete {
  constructor(input, list, { labels, onAccept }) {
    this.input = input;
    this.list = list;
    this.labels = labels;
    this.onAccept = onAccept;
    this.items = [];
    this.index = 0;
    input.addEventListener("input", () => this.update());
    input.addEventListener("blur", () => setTimeout(() => this.close(), 150));
  }

  get open() {
    return !this.list.hidden && this.items.length > 0;
  }

  update() {
    this.items = suggest(this.input.value, this.labels);
    this.index = 0;
    this.render();
  }

  render() {
    this.list.hidden = this.items.length === 0;
    this.list.replaceChildren(...this.items.map((item, i) => el("li", {
      role: "option", class: i === this.index ? "active" : "", "aria-selected": i === this.index ? "true" : "false",
      dataset: { value: item.text }, onmousedown: (event) => { event.preventDefault(); this.accept(i); },
    }, el("span", { class: "cmd" }, item.text), item.args ? el("span", { class: "args" }, ` ${item.args}`) : null,
    el("span", { class: "help" }, item.help || ""))));
  }

  close() {
    this.items = [];
    this.render();
  }

  /** Handle a keydown; returns true when the popup used the key. */
  key(event) {
    if (!this.open) return false;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      const step = event.key === "ArrowDown" ? 1 : -1;
      this.index = (this.index + step + this.items.length) % this.items.length;
      this.render();
      return true;
    }
    if (event.key === "Enter" && isComplete(this.input.value)) return false;
    if (event.key === "Tab" || (event.key === "Enter" && !event.shiftKey)) {
      this.accept(this.index);
      return true;
    }
    if (event.key === "Escape") {
      this.close();
      return true;
    }
    return false;
  }

  accept(index) {
    const item = this.items[index];
    if (!item) return;
    this.input.value = item.args ? `${item.text} ` : item.text;
    if (item.args) this.update();
    else this.close();
    this.input.focus();
    this.onAccept?.(item);
  }
}
