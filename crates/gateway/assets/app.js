// clawline web chat. Plain JavaScript, no build step.
// Talks to the gateway's own API: GET /api/sessions/history and POST /api/chat (server-sent
// events). The token comes from the URL fragment (#token=…) or the form, and is kept in
// sessionStorage only. All text is inserted with textContent: nothing from the model or the
// transcript is ever parsed as HTML.
"use strict";

const TOKEN_KEY = "clawline.token";
const state = { token: null, sessionKey: "main", busy: false };
const $ = (id) => document.getElementById(id);

function takeTokenFromFragment() {
  const m = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function setStatus(text) { $("status").textContent = text; }

function add(cls, text) {
  const el = document.createElement("div");
  el.className = cls;
  el.textContent = text;
  $("messages").appendChild(el);
  el.scrollIntoView({ block: "end" });
  return el;
}

function showTokenForm(message) {
  $("composer").hidden = true;
  $("token-form").hidden = false;
  const err = $("token-error");
  err.hidden = !message;
  err.textContent = message || "";
  $("token-input").focus();
}

function showChat() {
  $("token-form").hidden = true;
  $("composer").hidden = false;
  $("input").focus();
}

async function api(path, options) {
  const opts = options || {};
  opts.headers = Object.assign({ "Authorization": "Bearer " + state.token }, opts.headers || {});
  const resp = await fetch(path, opts);
  if (resp.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    showTokenForm("The token was not accepted.");
    throw new Error("unauthorized");
  }
  return resp;
}

function textOf(content) {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content.filter((b) => b.type === "text").map((b) => b.text).join("\n");
}

function renderRecord(r) {
  if (r.type === "custom_message") {
    add("note" + (/fail|interrupt/.test(r.customType) ? " error" : ""), r.content);
    return;
  }
  if (r.type !== "message") return;
  const m = r.message;
  if (m.role === "user") {
    add("msg user", textOf(m.content));
  } else if (m.role === "assistant") {
    const text = textOf(m.content);
    if (text) add("msg assistant", text).dataset.state = "done";
    for (const b of m.content) {
      if (b.type === "toolCall") add("tool", "⚙ " + b.name + " " + JSON.stringify(b.arguments));
    }
  } else if (m.role === "toolResult") {
    const t = textOf(m.content);
    add("tool" + (m.isError ? " failed" : ""), "↳ " + (t.length > 300 ? t.slice(0, 300) + "…" : t));
  }
}

async function loadHistory() {
  const resp = await api("/api/sessions/history?key=" + encodeURIComponent(state.sessionKey) + "&limit=200");
  if (!resp.ok) {
    add("note error", "Could not load the conversation (HTTP " + resp.status + ").");
    return;
  }
  const body = await resp.json();
  $("session").textContent = body.sessionKey;
  $("messages").textContent = "";
  for (const r of body.records) renderRecord(r);
}

// Reads a text/event-stream body and calls onEvent(name, data) for each event.
async function readEvents(resp, onEvent) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

function newId() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return "web-" + Date.now() + "-" + Math.random().toString(16).slice(2);
}

async function send(text) {
  state.busy = true;
  $("send").disabled = true;
  add("msg user", text);
  let bubble = null;
  const tools = {};
  setStatus("thinking…");
  try {
    const resp = await api("/api/chat", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ message: text, sessionKey: state.sessionKey, idempotencyKey: newId() }),
    });
    if (!resp.ok) {
      let message = "HTTP " + resp.status;
      try { message = (await resp.json()).error.message; } catch (_) { /* keep the status */ }
      add("note error", message);
      return;
    }
    await readEvents(resp, (name, ev) => {
      if (name === "started") {
        setStatus(ev.model);
      } else if (name === "text") {
        if (!bubble) {
          bubble = add("msg assistant", "");
          bubble.dataset.state = "streaming";
        }
        bubble.textContent += ev.delta;
        bubble.scrollIntoView({ block: "end" });
      } else if (name === "tool_start") {
        if (bubble) { bubble.dataset.state = "done"; bubble = null; }
        tools[ev.id] = add("tool", "⚙ " + ev.name + " " + JSON.stringify(ev.arguments));
      } else if (name === "tool_end") {
        const out = ev.output.length > 300 ? ev.output.slice(0, 300) + "…" : ev.output;
        add("tool" + (ev.isError ? " failed" : ""), "↳ " + out);
      } else if (name === "done") {
        if (bubble) bubble.dataset.state = "done";
        setStatus("");
      } else if (name === "error") {
        if (bubble) bubble.dataset.state = "done";
        add("note error", ev.message + (ev.hint ? " (" + ev.hint + ")" : ""));
        setStatus("");
      }
    });
  } catch (e) {
    if (e.message !== "unauthorized") add("note error", "Connection problem: " + e.message);
  } finally {
    if (bubble) bubble.dataset.state = "done";
    state.busy = false;
    $("send").disabled = false;
    setStatus("");
    $("input").focus();
  }
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("input").value.trim();
  if (!text || state.busy) return;
  $("input").value = "";
  send(text);
});

$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    $("composer").requestSubmit();
  }
});

$("token-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  state.token = $("token-input").value.trim();
  sessionStorage.setItem(TOKEN_KEY, state.token);
  try {
    await loadHistory();
    showChat();
  } catch (_) { /* the form is shown again with the reason */ }
});

(async function start() {
  state.token = takeTokenFromFragment();
  if (!state.token) { showTokenForm(""); return; }
  try {
    await loadHistory();
    showChat();
  } catch (_) { /* handled in api() */ }
})();
