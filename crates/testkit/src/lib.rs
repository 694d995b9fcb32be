//! Test doubles and harnesses for clawline.
//!
//! - [`model_server`]: a scripted model server speaking the OpenAI Chat Completions and the
//!   Anthropic Messages wire formats as their API references define them. It checks what it
//!   receives the way the real services do (auth headers, required fields, tool-call/tool-result
//!   pairing) and answers with scripted streams: text, tool calls, errors with the providers'
//!   error bodies and `Retry-After`, slow streams, truncated and malformed streams.
//! - [`oauth_server`]: an OAuth 2.0 authorization server twin (RFC 6749 code flow with PKCE
//!   S256 per RFC 7636, refresh with rotation and revocation, RFC 8628 device flow, `/userinfo`)
//!   enforcing loopback redirects, single-use expiring codes and polling intervals, with the
//!   RFC 6749 §5.2 error bodies; other twins can check its access tokens.
//! - [`minimax_oauth_server`]: MiniMax's sign-in portal (its user-code grant with PKCE, `state`
//!   echo, millisecond deadlines and `status` answers, refresh with rotation).
//! - [`embeddings_server`]: the embedding APIs of OpenAI (and Voyage's and Mistral's copies),
//!   Gemini and Ollama, with their auth, limits and error bodies.
//! - [`keyring_session`]: a private session D-Bus with a real, unlocked GNOME Keyring.
//! - [`gateway`]: spawns the real `clawline` binary on a free port with a temporary state dir.
//! - [`browser`]: drives headless Chromium over the DevTools protocol for web page tests.
//! - [`ws_client`]: a client of OpenClaw's gateway protocol (WebSocket) with Ed25519 device
//!   identity, able to misbehave on purpose.
//! - [`usage_server`]: the subscription usage endpoints of Anthropic, Codex, Gemini CLI, Copilot,
//!   MiniMax and Z.AI on one server, with their auth checks, bodies and failure switches.
//! - [`telegram_server`]: the Telegram Bot API (long polling with offsets and conflicts,
//!   webhooks with the secret header, sends with HTML/MarkdownV2 parsing, edits, reactions,
//!   callback queries, uploads and downloads) with the real error descriptions, flood control and
//!   switches for stalled, dropped, duplicated and malformed polls.
//! - [`matrix_server`]: a Matrix homeserver's client-server API (password login, `/sync` long
//!   polling, rooms, invites, idempotent sends, typing, `m.direct`, authenticated media) with the
//!   spec's error responses, rate limits and switches for stalled, dropped, duplicated and
//!   malformed syncs.
//! - [`slack_server`]: Slack's Web API, Socket Mode and signed Events API delivery, with faults.
//! - [`irc_server`]: an IRC server (CAP, SASL PLAIN, NickServ, channels, CTCP, limits), simulated people, faults.
//! - [`discord_server`]: Discord's HTTP API and Gateway (identify, heartbeats, resume, intents, buckets), with faults.
//! - [`web_server`]: a small website (article, huge page, redirects anywhere, endless body,
//!   binary file, a forged end marker, a `/secret` that must never be fetched), recording requests.
//!
//! Nothing here talks to the internet.

pub mod bedrock_server;
pub mod browser;
pub mod copilot_server;
pub mod discord_server;
pub mod embedding_batch_server;
pub mod embeddings_server;
pub mod gateway;
pub mod gemini_server;
pub mod hf_server;
pub mod http_proxy;
pub mod irc_server;
pub mod keyring_session;
pub mod load;
pub mod matrix_server;
pub mod minimax_oauth_server;
pub mod model_server;
pub mod oauth_server;
pub mod ollama_server;
pub mod openai_responses_server;
pub mod otlp_server;
pub mod prometheus_text;
pub mod slack_server;
pub mod sse_client;
pub mod telegram_server;
pub mod usage_server;
pub mod web_server;
pub mod ws_client;
