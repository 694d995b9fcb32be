// clawline web chat. Plain JavaScript, no build step.
// The page is a channel of the gateway like Telegram or Slack: each message is posted to
// POST /api/webchat/messages (stored before it is acknowledged), and answers arrive on the
// GET /api/webchat/events stream (server-sent events: ready, typing, message, edit, resync),
// a draft growing in place until it is the answer. The conversation's history comes from
// GET /api/sessions/history. The token comes from the URL fragment (#token=…) or the form, and
// is kept in sessionStorage only. All text is inserted with textContent: nothing from the
// model or the transcript is ever parsed as HTML.
"use strict";

const TOKEN_KEY = "clawline.token";
const state = { token: null, sessionKey: null, agentId: null, listening: false };
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
  const resp = await api("/api/sessions/history?key=" + encodeURIComponent(state.sessionKey) +
    "&agentId=" + encodeURIComponent(state.agentId) + "&limit=200");
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

function bubble(id) {
  return document.querySelector('.msg.assistant[data-id="' + CSS.escape(id) + '"]');
}

// One event from the channel.
function onPageEvent(name, ev) {
  if (name === "ready") {
    state.sessionKey = ev.sessionKey;
    state.agentId = ev.agentId;
    loadHistory().then(showChat, () => {});
  } else if (name === "typing") {
    setStatus("typing…");
  } else if (name === "message") {
    const el = add("msg assistant", ev.text);
    el.dataset.id = ev.id;
    el.dataset.state = ev.draft ? "streaming" : "done";
    setStatus(ev.draft ? "typing…" : "");
  } else if (name === "edit") {
    const el = bubble(ev.id);
    if (!el) {
      // The draft was shown before this page loaded the history: the history has the answer.
      if (!ev.draft) loadHistory().catch(() => {});
      return;
    }
    el.textContent = ev.text;
    el.dataset.state = ev.draft ? "streaming" : "done";
    el.scrollIntoView({ block: "end" });
    setStatus(ev.draft ? "typing…" : "");
  } else if (name === "resync") {
    loadHistory().catch(() => {});
  }
}

// Listens to the channel for as long as the page is open, reconnecting after a drop.
async function listen() {
  if (state.listening) return;
  state.listening = true;
  try {
    for (;;) {
      try {
        const resp = await api("/api/webchat/events");
        if (!resp.ok) {
          let message = "HTTP " + resp.status;
          try { message = (await resp.json()).error.message; } catch (_) { /* keep the status */ }
          add("note error", message);
          return;
        }
        setStatus("");
        await readEvents(resp, onPageEvent);
      } catch (e) {
        if (e.message === "unauthorized") return;
      }
      setStatus("reconnecting…");
      await new Promise((r) => setTimeout(r, 1000));
    }
  } finally {
    state.listening = false;
  }
}

async function send(text) {
  add("msg user", text);
  const body = JSON.stringify({ text: text, id: newId() });
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const resp = await api("/api/webchat/messages", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: body,
      });
      if (resp.status === 202) return;
      if (resp.status !== 503) {
        let message = "HTTP " + resp.status;
        try { message = (await resp.json()).error.message; } catch (_) { /* keep the status */ }
        add("note error", message);
        return;
      }
    } catch (e) {
      if (e.message === "unauthorized") return;
    }
    // Not stored yet: the same id again is safe, the gateway keeps a message once.
    await new Promise((r) => setTimeout(r, 1000));
  }
  add("note error", "The message could not be sent; check that the gateway is running.");
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("input").value.trim();
  if (!text) return;
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
  listen();
});

(function start() {
  state.token = takeTokenFromFragment();
  if (!state.token) { showTokenForm(""); return; }
  listen();
})();
