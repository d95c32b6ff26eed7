// Rendering of transcript messages: safe text formatting, tool cards, timestamps.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Plain text with ``` fences, `code`, **bold** and links; never raw HTML. */
export function formatText(text) {
  const fragment = document.createDocumentFragment();
  const parts = String(text ?? "").split(/```/);
  parts.forEach((part, index) => {
    if (index % 2 === 1) {
      const body = part.replace(/^[\w+-]*\n/, "");
      fragment.append(el("pre", {}, el("code", {}, body.replace(/\n$/, ""))));
    } else if (part) {
      fragment.append(...inline(part));
    }
  });
  return fragment;
}

function inline(text) {
  const nodes = [];
  const pattern = /(`[^`\n]+`)|(\*\*[^*\n]+\*\*)|(https?:\/\/[^\s<>()]+)/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    if (match.index > last) nodes.push(document.createTextNode(text.slice(last, match.index)));
    const [token] = match;
    if (match[1]) nodes.push(el("code", {}, token.slice(1, -1)));
    else if (match[2]) nodes.push(el("strong", {}, token.slice(2, -2)));
    else nodes.push(el("a", { href: token, target: "_blank", rel: "noopener noreferrer" }, token));
    last = match.index + token.length;
  }
  if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
  return nodes;
}

export function messageText(message) {
  const content = message?.content;
  if (typeof content === "string") return content;
  return (content || [])
    .filter((block) => block && block.type === "text")
    .map((block) => block.text || "")
    .join("");
}

export function clockTime(ms) {
  if (!ms) return "";
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export function relativeTime(ms, now = Date.now()) {
  if (!ms) return "—";
  const seconds = Math.max(0, Math.round((now - ms) / 1000));
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ago`;
  return `${Math.floor(seconds / 86400)}d ago`;
}

function shortJson(value, limit = 160) {
  let text;
  try {
    text = typeof value === "string" ? value : JSON.stringify(value);
  } catch {
    text = String(value);
  }
  return text.length > limit ? `${text.slice(0, limit)}…` : text;
}

function toolCallCard(block) {
  return el(
    "details",
    { class: "tool-card" },
    el("summary", {}, el("span", { class: "tool-icon", "aria-hidden": "true" }, "⚙"), " ", block.name || "tool",
      el("span", { class: "tool-args" }, shortJson(block.arguments ?? block.args ?? {}, 90))),
    el("pre", {}, el("code", {}, JSON.stringify(block.arguments ?? block.args ?? {}, null, 2))),
  );
}

function toolResultCard(block) {
  const failed = block.isError ? " failed" : "";
  return el(
    "details",
    { class: `tool-card result${failed}` },
    el("summary", {}, el("span", { class: "tool-icon", "aria-hidden": "true" }, block.isError ? "✕" : "↩"), " ",
      `${block.toolName || "tool"} result`, el("span", { class: "tool-args" }, shortJson(block.text ?? "", 90))),
    el("pre", {}, el("code", {}, block.text ?? "")),
  );
}

function provenanceNote(message) {
  const provenance = message.provenance || {};
  const source = provenance.sourceSessionKey || provenance.source_session_key;
  if (provenance.kind !== "inter_session" && !source) return null;
  const kind = provenance.deliveryKind ? `${provenance.deliveryKind} ` : "";
  return el("div", { class: "provenance" }, `${kind}from ${source || "another session"}`);
}

/** The body of one transcript message (text, tool calls, tool results). */
export function messageBody(message) {
  const body = el("div", { class: "body" });
  const content = typeof message.content === "string" ? [{ type: "text", text: message.content }] : message.content || [];
  for (const block of content) {
    if (!block) continue;
    if (block.type === "text" && block.text) body.append(el("div", { class: "text" }, formatText(block.text)));
    else if (block.type === "toolCall" || block.type === "tool_use") body.append(toolCallCard(block));
    else if (block.type === "toolResult" || block.type === "tool_result") body.append(toolResultCard(block));
  }
  return body;
}

const CHILD_RESULT = /<<<BEGIN_UNTRUSTED_CHILD_RESULT>>>\n?([\s\S]*?)\n?<<<END_UNTRUSTED_CHILD_RESULT>>>/;

/** Messages from other sessions (announces, follow-up replies) fold into one line. */
function internalItem(message, meta) {
  const provenance = message.provenance || {};
  const text = messageText(message);
  const result = text.match(CHILD_RESULT)?.[1]?.trim();
  const task = text.match(/^task: (.+)$/m)?.[1];
  const status = text.match(/^status: (.+)$/m)?.[1];
  const source = task || provenance.sourceSessionKey || "another session";
  const what = provenance.deliveryKind || "message";
  const preview = result || text.split("\n").find((line) => line.trim() && !line.startsWith("<<<")) || "";
  return el("li", { class: "msg msg-internal", dataset: { id: meta.id || "", seq: meta.seq ?? "", runId: meta.runId || "" } },
    el("details", { class: "internal" },
      el("summary", {}, el("span", { class: "internal-kind" }, `↪ ${what} from ${source}`),
        status ? el("span", { class: "tag" }, status) : null, el("time", {}, clockTime(message.timestamp)),
        el("span", { class: "internal-preview" }, preview)),
      el("pre", {}, el("code", {}, text))));
}

const ROLE_NAMES = { user: "You", assistant: "Assistant", tool: "Tool", system: "System" };

/** One <li> for a transcript message. */
export function messageItem(message, { extraClass = "" } = {}) {
  const role = message.role || "assistant";
  const meta = message.__openclaw || {};
  if (role === "user" && (message.provenance || {}).kind === "inter_session") return internalItem(message, meta);
  const dataset = { id: meta.id || "", seq: meta.seq ?? "", runId: meta.runId || "" };
  const aborted = message.stopReason === "aborted" ? el("span", { class: "tag" }, "aborted") : null;
  return el(
    "li",
    { class: `msg msg-${role} ${extraClass}`.trim(), dataset },
    el("div", { class: "meta" }, el("span", { class: "who" }, ROLE_NAMES[role] || role),
      el("time", {}, clockTime(message.timestamp)), aborted),
    provenanceNote(message),
    messageBody(message),
  );
}
