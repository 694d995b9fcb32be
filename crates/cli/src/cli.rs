//! The command line, as clap sees it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// clawline: a self-hosted personal AI assistant gateway.
///
/// One small process connects your chat apps and a web chat page to the models you choose,
/// runs an agent with tools for every conversation, and keeps everything in a local state
/// directory (~/.clawline by default).
///
/// Start with `clawline gateway`, then open the printed address in a browser.
#[derive(Parser, Debug)]
#[command(name = "clawline", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// State directory [env: CLAWLINE_STATE_DIR, OPENCLAW_STATE_DIR; default: ~/.clawline]
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Config file [env: CLAWLINE_CONFIG_PATH, OPENCLAW_CONFIG_PATH; default: <state>/clawline.json]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway: OpenClaw protocol (CLI, TUI, Control UI), web chat, OpenAI-compatible API and agent runs on one port.
    ///
    /// On first start this creates the state directory, a commented config file and a gateway
    /// token (printed once; `clawline token` shows it again).
    Gateway(GatewayArgs),

    /// Send one message to an agent and print the answer.
    ///
    /// Goes through the running gateway when one answers; otherwise (or with --local) runs the
    /// agent in this process.
    Agent(AgentArgs),

    /// Check, read or change the config file.
    #[command(subcommand)]
    Config(ConfigCommand),

    /// Inspect conversations.
    #[command(subcommand)]
    Sessions(SessionsCommand),

    /// Find problems in the configuration and state, and say how to fix them.
    Doctor(DoctorArgs),

    /// Print the gateway token (or make a new one with --rotate).
    Token(TokenArgs),

    /// List the models clawline can use, and why any cannot.
    #[command(subcommand)]
    Models(ModelsCommand),

    /// Store, sign in, list or remove model-provider credentials (auth profiles, encrypted at rest).
    ///
    /// A provider's credentials are tried in order: the config file's key (or <ID>_API_KEY),
    /// stored profiles (OAuth, then tokens, then API keys), then <ID>_API_KEYS. A rate-limited
    /// key rests and the next one is used. A running gateway picks up changes within 5 s.
    #[command(subcommand)]
    Auth(AuthCommand),

    /// Inspect, update or search an agent's long-term memory index (MEMORY.md, USER.md,
    /// memory/*.md and memory.search.extraPaths).
    ///
    /// `status` says whether search is hybrid (vectors + full text) or text-only, and why.
    #[command(subcommand)]
    Memory(MemoryCommand),

    /// See what the chat platforms (Telegram, …) are doing: connected or not, since when, last
    /// message in and out, last error, undeliverable replies.
    #[command(subcommand)]
    Channels(ChannelsCommand),

    /// Let people who messaged the assistant in, by the pairing code they were given
    /// (channels with `dmPolicy: "pairing"`, the default).
    #[command(subcommand)]
    Pairing(PairingCommand),

    /// Keep secrets (bot tokens, API keys) encrypted in the state directory instead of in the
    /// config file; the config names them as `{ source: "store", id: "<ID>" }`.
    #[command(subcommand)]
    Secrets(SecretsCommand),

    /// What the models cost: runs, calls, tokens and dollars, from <state>/observability.sqlite.
    ///
    /// Costs come from the prices in the config (`models.providers.<id>.models[].cost`, or the
    /// built-in catalog); a model without prices counts tokens only.
    Usage(UsageArgs),

    /// The audit log: config changes, pairing and device decisions, credential and token
    /// changes, and every command the agent's `exec` ran, newest first.
    Audit(AuditArgs),
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Only this far back (`24h`, `7d`).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// At most this many rows.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct UsageArgs {
    /// From when: `today` (since 00:00 UTC, as budgets count), a duration back from now (`24h`,
    /// `7d`, `30m`), or a UTC date (`2026-12-01`).
    #[arg(long, default_value = "today", value_name = "WHEN")]
    pub since: String,
    /// One line per `agent`, `model` (as actually called), `channel` (where turns came from) or `day`.
    #[arg(long, default_value = "agent", value_name = "WHAT")]
    pub by: String,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum SecretsCommand {
    /// Store (or replace) a secret, read from standard input or an environment variable.
    Set {
        /// The name the config uses, e.g. `telegram-bot`.
        id: String,
        /// Read the value from this environment variable instead of standard input.
        #[arg(long, value_name = "VAR")]
        from_env: Option<String>,
    },
    /// The stored secrets' names (never their values).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Forget a stored secret.
    Rm { id: String },
}

#[derive(Subcommand, Debug)]
pub enum ChannelsCommand {
    /// Each account as the running gateway observes it (connected means messages are flowing,
    /// not that a socket is open).
    Status {
        /// Also ask each platform who the bot is (checks the token and the network).
        #[arg(long)]
        probe: bool,
        #[arg(long)]
        json: bool,
        /// The gateway's URL (default: http://127.0.0.1:<gateway.port>).
        #[arg(long, env = "CLAWLINE_GATEWAY_URL")]
        url: Option<String>,
        /// The gateway token (default: the one stored in this state directory).
        #[arg(long, env = "CLAWLINE_GATEWAY_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Replies that could not be delivered (kept for a day of retries, then here).
    DeadLetters {
        /// Only this channel.
        channel: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum PairingCommand {
    /// Pending pairing requests (codes live one hour) and the senders approved so far.
    List {
        /// Only this channel (telegram, …).
        channel: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Approve a code: its sender may talk to the assistant from now on. The first sender ever
    /// approved becomes the owner.
    Approve {
        /// The channel the code came from (telegram, …).
        channel: String,
        /// The 8-character code the sender was given.
        code: String,
        /// Only for this account of the channel.
        #[arg(long)]
        account: Option<String>,
        /// Tell the sender they are in (sent by the running gateway, or at its next start).
        #[arg(long)]
        notify: bool,
    },
    /// Drop a pending request without approving it.
    Dismiss { channel: String, code: String },
}

#[derive(Subcommand, Debug)]
pub enum MemoryCommand {
    /// What the index holds, which embedder it uses, the search mode and why, skipped files.
    Status {
        /// The agent (default: the default agent).
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Bring the index up to date (only changed files are read; only new text is embedded).
    Index {
        #[arg(long)]
        agent: Option<String>,
        /// Read and chunk every file again (vectors of unchanged text still come from the cache).
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// Search memory as the agent's memory_search tool does.
    Search {
        /// What to look for.
        query: String,
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        json: bool,
        /// At most this many results.
        #[arg(long)]
        max: Option<usize>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Models of the configured providers (and of providers found in the environment), with
    /// whether each can be called now.
    List {
        /// Also list every built-in provider that is not set up, and how to set it up.
        #[arg(long)]
        all: bool,
        /// Ask providers that can list their models (Ollama, vLLM, OpenRouter, Bedrock, …).
        #[arg(long)]
        discover: bool,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Store a credential. The secret is read from standard input (one line), never from the
    /// command line: `printf %s "$KEY" | clawline auth add openai --name work`.
    Add {
        /// Provider id, e.g. `openai`, `anthropic`, `amazon-bedrock`.
        provider: String,
        /// Profile name; the profile id is `<provider>:<name>`.
        #[arg(long, default_value = "default")]
        name: String,
        /// `api_key`, `token` or `aws-sdk` (AWS credentials are read from AWS_ACCESS_KEY_ID,
        /// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and AWS_REGION).
        #[arg(long, default_value = "api_key")]
        kind: String,
        /// Only this agent uses the profile (default: every agent).
        #[arg(long)]
        agent: Option<String>,
        /// A note shown by `auth list`, e.g. an e-mail address.
        #[arg(long)]
        label: Option<String>,
        /// Read the secret from this environment variable instead of standard input.
        #[arg(long, value_name = "VAR")]
        from_env: Option<String>,
    },
    /// Sign in with OAuth and store the tokens as a profile (refreshed automatically).
    ///
    /// Browser sign-ins (Anthropic, OpenAI Codex, Google, Chutes) send the browser back to a
    /// listener on 127.0.0.1; on a machine without a browser, open the printed address
    /// elsewhere and paste the address it ends on (or use --paste). Device sign-ins (GitHub
    /// Copilot, Qwen, Kimi, MiniMax) print a code to enter on the provider's page.
    Login {
        /// Provider id, e.g. `openai-codex`, `github-copilot`, `qwen-portal`.
        provider: String,
        /// Profile name; the profile id is `<provider>:<name>`.
        #[arg(long, default_value = "default")]
        name: String,
        /// Only this agent uses the profile (default: every agent).
        #[arg(long)]
        agent: Option<String>,
        /// Do not listen for the browser; paste the address it ends on instead.
        #[arg(long)]
        paste: bool,
        /// Do not try to open a browser.
        #[arg(long)]
        no_open: bool,
    },
    /// How much of each signed-in subscription is left (Claude, Codex, Gemini, Copilot, MiniMax, Z.AI).
    Usage {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// List stored profiles (never their secrets).
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Remove a stored profile.
    Remove {
        /// Profile id, `<provider>:<name>`.
        profile: String,
        /// The agent it belongs to (default: the every-agent profile).
        #[arg(long)]
        agent: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct GatewayArgs {
    /// `run` (the default; accepted for OpenClaw compatibility).
    #[arg(value_parser = ["run"], hide = true)]
    pub action: Option<String>,

    /// Port to listen on (overrides gateway.port; 0 picks a free one).
    #[arg(long)]
    pub port: Option<u16>,
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The message to send.
    #[arg(short, long)]
    pub message: String,

    /// Agent id (default: the default agent).
    #[arg(long)]
    pub agent: Option<String>,

    /// Conversation to continue: `main` (default), a name such as `work`, or a full key
    /// such as `agent:main:work`.
    #[arg(long)]
    pub session_key: Option<String>,

    /// Print one JSON object with the result instead of streaming text.
    #[arg(long)]
    pub json: bool,

    /// Run in this process instead of through the gateway.
    #[arg(long)]
    pub local: bool,

    /// Gateway URL [env: CLAWLINE_GATEWAY_URL; default: http://127.0.0.1:<gateway.port>]
    #[arg(long)]
    pub url: Option<String>,

    /// Gateway token [env: CLAWLINE_GATEWAY_TOKEN; default: from the config or the state store]
    #[arg(long)]
    pub token: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Check the config file; print every problem with its line, column and key.
    Validate,
    /// Print the value at a key path, e.g. `gateway.port` (secrets are redacted).
    Get {
        /// Dotted key path; `models.providers.local.models[0].id` style indexes work.
        path: String,
    },
    /// Set the value at a key path, keeping the file's comments. The value is JSON5
    /// (`19000`, `true`, `"text"`, `["a","b"]`); anything that does not parse is a string.
    Set {
        /// Dotted key path.
        path: String,
        /// New value.
        value: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum SessionsCommand {
    /// List sessions, most recent first.
    List {
        /// Only this agent's sessions.
        #[arg(long)]
        agent: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// Replace the stored token with a new one (restart the gateway to use it).
    #[arg(long)]
    pub rotate: bool,
}
