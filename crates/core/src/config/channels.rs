//! `channels.*`, `bindings[]` and `session.*` as written and as resolved: which chat accounts
//! to connect, who may talk to the assistant through them, how their replies are cut, and which
//! agent and session a conversation lands in.
//!
//! Keys follow OpenClaw (PROTOCOL-AND-STATE §5): top-level channel keys are the defaults of every
//! account and describe the `default` account when `accounts` is absent; `accounts.<id>`
//! overrides them per account. Platforms this build has no adapter for are accepted (so an
//! OpenClaw file loads) and listed in [`ChannelSettings::unsupported`]; `clawline doctor` names
//! them. Keys that belong to another platform are refused at their key.
//!
//! This file is pure: secrets and files come through the resolver.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{Deserializer, Visitor};

use super::resolve::{Issue, Resolver, issue};
use super::schema::SecretInput;
use crate::secret::SecretString;

/// The platforms this build can connect.
pub const SUPPORTED_CHANNELS: &[&str] = &["telegram", "irc", "matrix", "slack", "discord", "webchat"];

/// Platforms OpenClaw knows that this build does not connect yet (accepted, ignored, reported).
pub const KNOWN_CHANNELS: &[&str] = &[
    "a2a",
    "buzz",
    "clickclack",
    "discord",
    "feishu",
    "googlechat",
    "imessage",
    "irc",
    "line",
    "matrix",
    "mattermost",
    "msteams",
    "nextcloud-talk",
    "nostr",
    "qa-channel",
    "raft",
    "reef",
    "signal",
    "slack",
    "sms",
    "synology-chat",
    "telegram",
    "tlon",
    "twitch",
    "webchat",
    "whatsapp",
    "zalo",
    "zalouser",
];

/// The account id used when a channel has no `accounts` map.
pub const DEFAULT_ACCOUNT: &str = "default";

/// `channels`: one entry per platform.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChannelsFile {
    /// Telegram (Bot API): long polling, or a webhook when `webhookUrl` is set.
    pub telegram: Option<TelegramFile>,
    /// IRC: TLS, SASL PLAIN or NickServ, channels and private messages.
    pub irc: Option<IrcFile>,
    /// Matrix: rooms and DMs on a homeserver, `/sync` long polling.
    pub matrix: Option<MatrixFile>,
    /// Slack: Socket Mode or the Events API, the Web API for replies.
    pub slack: Option<SlackFile>,
    /// Discord: the Gateway for events, REST for replies.
    pub discord: Option<DiscordFile>,
    /// The gateway's own web chat page (on whenever `gateway.controlUi.enabled` is): the same
    /// gate, sessions and delivery as the other channels. Its one sender is whoever holds the
    /// gateway token, so DMs are open by default.
    pub webchat: Option<WebChatFile>,
    /// OpenClaw's cross-channel defaults and per-channel models; accepted, not used yet.
    pub defaults: Option<serde_json::Value>,
    pub model_by_channel: Option<serde_json::Value>,
    /// Platforms without an adapter in this build: accepted so an OpenClaw config loads, not connected.
    pub whatsapp: Option<serde_json::Value>,
    pub signal: Option<serde_json::Value>,
    pub imessage: Option<serde_json::Value>,
    pub msteams: Option<serde_json::Value>,
    pub line: Option<serde_json::Value>,
    pub feishu: Option<serde_json::Value>,
    pub mattermost: Option<serde_json::Value>,
    pub googlechat: Option<serde_json::Value>,
    pub nostr: Option<serde_json::Value>,
    pub twitch: Option<serde_json::Value>,
    pub zalo: Option<serde_json::Value>,
    pub zalouser: Option<serde_json::Value>,
    pub a2a: Option<serde_json::Value>,
    pub buzz: Option<serde_json::Value>,
    pub clickclack: Option<serde_json::Value>,
    pub raft: Option<serde_json::Value>,
    pub reef: Option<serde_json::Value>,
    pub sms: Option<serde_json::Value>,
    pub tlon: Option<serde_json::Value>,
    #[serde(rename = "nextcloud-talk")]
    pub nextcloud_talk: Option<serde_json::Value>,
    #[serde(rename = "qa-channel")]
    pub qa_channel: Option<serde_json::Value>,
    #[serde(rename = "synology-chat")]
    pub synology_chat: Option<serde_json::Value>,
}

impl ChannelsFile {
    /// The platforms written in the file that this build does not connect.
    fn unsupported(&self) -> Vec<String> {
        let present = [
            ("whatsapp", self.whatsapp.is_some()),
            ("signal", self.signal.is_some()),
            ("imessage", self.imessage.is_some()),
            ("msteams", self.msteams.is_some()),
            ("line", self.line.is_some()),
            ("feishu", self.feishu.is_some()),
            ("mattermost", self.mattermost.is_some()),
            ("googlechat", self.googlechat.is_some()),
            ("nostr", self.nostr.is_some()),
            ("twitch", self.twitch.is_some()),
            ("zalo", self.zalo.is_some()),
            ("zalouser", self.zalouser.is_some()),
            ("a2a", self.a2a.is_some()),
            ("buzz", self.buzz.is_some()),
            ("clickclack", self.clickclack.is_some()),
            ("raft", self.raft.is_some()),
            ("reef", self.reef.is_some()),
            ("sms", self.sms.is_some()),
            ("tlon", self.tlon.is_some()),
            ("nextcloud-talk", self.nextcloud_talk.is_some()),
            ("qa-channel", self.qa_channel.is_some()),
            ("synology-chat", self.synology_chat.is_some()),
        ];
        present.iter().filter(|(_, on)| *on).map(|(id, _)| id.to_string()).collect()
    }
}

/// Declares one platform's settings struct: the keys every platform shares (access policy,
/// delivery, accounts, OpenClaw's accepted-but-unused keys) followed by the platform's own.
/// Inside `accounts.<id>` the same struct holds one account's overrides.
macro_rules! channel_file {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        pub struct $name {
            /// Off: not connected (default on when the channel is configured).
            pub enabled: Option<bool>,
            /// A label for status output.
            pub name: Option<String>,
            /// Direct messages: `pairing` (default), `allowlist`, `open` (needs `"*"` in `allowFrom`), `disabled`.
            pub dm_policy: Option<String>,
            /// Sender ids allowed to DM (numbers or strings; `"*"` for anyone).
            pub allow_from: Option<Vec<PlatformId>>,
            /// Groups: `allowlist` (default: only groups listed in `groups`), `open`, `disabled`.
            pub group_policy: Option<String>,
            /// Senders allowed to address the assistant in groups (default: anyone in an allowed group).
            pub group_allow_from: Option<Vec<PlatformId>>,
            /// Per group (`"*"` for every group): whether a mention is needed, who may talk.
            pub groups: Option<BTreeMap<String, GroupFile>>,
            /// Regular expressions that count as mentioning the assistant in groups (case-insensitive).
            pub mention_patterns: Option<Vec<String>>,
            /// Longest reply piece in characters (Telegram default 4000, IRC 350).
            pub text_chunk_limit: Option<usize>,
            /// `length` (default) fills pieces; `newline` prefers paragraph breaks.
            pub chunk_mode: Option<String>,
            /// Whether replies quote the message they answer: `first` (default), `all`, `off`.
            pub reply_to_mode: Option<String>,
            /// Text put before every reply.
            pub response_prefix: Option<String>,
            /// Largest attachment accepted or sent, in MB (default 20).
            pub media_max_mb: Option<u64>,
            /// More accounts on the same platform, by id; top-level keys are their defaults.
            pub accounts: Option<BTreeMap<String, $name>>,
            /// The account used when a send names none (default: `default`, else the first).
            pub default_account: Option<String>,
            /// Previews while a reply is written: `"partial"` (default where the platform can
            /// edit: a draft message edited as the text grows), `"off"`, or OpenClaw's object
            /// `{ mode, preview: { chunk: { minChars } } }` (a draft starts at `minChars`, default 200).
            pub streaming: Option<serde_json::Value>,
            /// OpenClaw settings accepted so its files load, not used yet.
            pub history_limit: Option<serde_json::Value>,
            pub dm_history_limit: Option<serde_json::Value>,
            pub dms: Option<serde_json::Value>,
            pub context_visibility: Option<serde_json::Value>,
            pub ack_reaction: Option<serde_json::Value>,
            pub health_monitor: Option<serde_json::Value>,
            pub exec_approvals: Option<serde_json::Value>,
            pub actions: Option<serde_json::Value>,
            pub capabilities: Option<serde_json::Value>,
            pub markdown: Option<serde_json::Value>,
            pub config_writes: Option<serde_json::Value>,
            pub commands: Option<serde_json::Value>,
            pub default_to: Option<serde_json::Value>,
            pub heartbeat_visibility: Option<serde_json::Value>,
            pub join_intro: Option<serde_json::Value>,
            pub proxy: Option<serde_json::Value>,
            pub network: Option<serde_json::Value>,
            pub thread_bindings: Option<serde_json::Value>,
            pub dangerously_allow_name_matching: Option<serde_json::Value>,
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $name {
            /// The shared keys, for resolution code common to every platform.
            fn common(&self) -> Common<'_> {
                Common {
                    enabled: self.enabled,
                    name: self.name.as_ref(),
                    dm_policy: self.dm_policy.as_ref(),
                    allow_from: self.allow_from.as_ref(),
                    group_policy: self.group_policy.as_ref(),
                    group_allow_from: self.group_allow_from.as_ref(),
                    groups: self.groups.as_ref(),
                    mention_patterns: self.mention_patterns.as_ref(),
                    text_chunk_limit: self.text_chunk_limit.as_ref(),
                    chunk_mode: self.chunk_mode.as_ref(),
                    reply_to_mode: self.reply_to_mode.as_ref(),
                    response_prefix: self.response_prefix.as_ref(),
                    media_max_mb: self.media_max_mb.as_ref(),
                    streaming: self.streaming.as_ref(),
                    default_account: self.default_account.as_ref(),
                    has_accounts: self.accounts.is_some(),
                }
            }
        }
    };
}

/// The shared keys of one level (channel or account), borrowed.
#[derive(Clone, Copy, Default)]
struct Common<'a> {
    enabled: Option<bool>,
    name: Option<&'a String>,
    dm_policy: Option<&'a String>,
    allow_from: Option<&'a Vec<PlatformId>>,
    group_policy: Option<&'a String>,
    group_allow_from: Option<&'a Vec<PlatformId>>,
    groups: Option<&'a BTreeMap<String, GroupFile>>,
    mention_patterns: Option<&'a Vec<String>>,
    text_chunk_limit: Option<&'a usize>,
    chunk_mode: Option<&'a String>,
    reply_to_mode: Option<&'a String>,
    response_prefix: Option<&'a String>,
    media_max_mb: Option<&'a u64>,
    streaming: Option<&'a serde_json::Value>,
    default_account: Option<&'a String>,
    has_accounts: bool,
}

channel_file! {
    /// `channels.telegram`: a bot on the Bot API.
    TelegramFile {
        /// The bot token from @BotFather. `TELEGRAM_BOT_TOKEN` is used for the default account
        /// when neither this nor `tokenFile` is set.
        bot_token: Option<SecretInput>,
        /// A file holding the token (relative paths start at the config file's folder).
        token_file: Option<String>,
        /// The API's base URL, for a proxy or a local Bot API server (default `https://api.telegram.org`).
        api_root: Option<String>,
        /// Webhook mode: the public HTTPS URL Telegram should POST updates to. Without it the
        /// account long-polls.
        webhook_url: Option<String>,
        /// The secret Telegram sends back in `X-Telegram-Bot-Api-Secret-Token` (1-256 of `A-Za-z0-9_-`).
        webhook_secret: Option<SecretInput>,
        /// The local path the gateway serves the webhook on (default `/channels/telegram/<account>/webhook`).
        webhook_path: Option<String>,
        /// Long-poll timeout in seconds (default 30, 1-50).
        poll_timeout_seconds: Option<u64>,
        /// OpenClaw's Telegram settings accepted, not used yet.
        link_preview: Option<serde_json::Value>,
        webhook_host: Option<serde_json::Value>,
        webhook_port: Option<serde_json::Value>,
        webhook_cert_path: Option<serde_json::Value>,
        auto_topic_label: Option<serde_json::Value>,
        custom_commands: Option<serde_json::Value>,
        direct: Option<serde_json::Value>,
        error_policy: Option<serde_json::Value>,
        reaction_level: Option<serde_json::Value>,
        reaction_notifications: Option<serde_json::Value>,
        rich_messages: Option<serde_json::Value>,
        silent_error_replies: Option<serde_json::Value>,
        trusted_local_file_roots: Option<serde_json::Value>,
    }
}

channel_file! {
    /// `channels.irc`: one connection to an IRC network.
    IrcFile {
        /// The server's host name.
        host: Option<String>,
        /// The port (default 6697 with TLS, 6667 without).
        port: Option<u16>,
        /// TLS (default true).
        tls: Option<bool>,
        /// A PEM file of certificates to trust for this server besides the system's: a network
        /// or bouncer (ZNC, soju) with its own certificate authority or a self-signed one.
        ca_file: Option<String>,
        /// The nickname (default `clawline`); a taken nick gets `_` appended until it is free again.
        nick: Option<String>,
        /// The user name sent with USER (default: the nick).
        username: Option<String>,
        /// The real name sent with USER (default `clawline`).
        realname: Option<String>,
        /// The server password (PASS), if the server wants one.
        password: Option<SecretInput>,
        /// A file holding the server password.
        password_file: Option<String>,
        /// Channels to join, e.g. `["#ops"]` (keys as `"#chan key"`).
        channels: Option<Vec<String>>,
        /// SASL PLAIN account (IRCv3): authenticates before registration completes.
        sasl: Option<IrcSaslFile>,
        /// NickServ identification after connecting.
        nickserv: Option<NickServFile>,
    }
}

channel_file! {
    /// `channels.matrix`: a Matrix account on a homeserver (client-server API v3).
    MatrixFile {
        /// The homeserver's base URL, e.g. `https://matrix.example.org`.
        homeserver: Option<String>,
        /// The account, e.g. `@clawline:example.org` (needed with `password`).
        user_id: Option<String>,
        /// An access token (from Element's settings, or a login); else `password` logs in.
        access_token: Option<SecretInput>,
        /// The account's password, used to log in when there is no `accessToken`.
        password: Option<SecretInput>,
        /// The device to log in as (default `CLAWLINE`), so restarts reuse one device.
        device_id: Option<String>,
        /// The device's display name (default `clawline`).
        device_name: Option<String>,
        /// End-to-end encryption: not supported yet (`true` is refused; encrypted rooms are reported).
        encryption: Option<bool>,
        /// Which invites to accept: `always` (default; the gate still decides who is answered),
        /// `allowlist` (inviters or rooms in `autoJoinAllowlist`), `off`.
        auto_join: Option<String>,
        auto_join_allowlist: Option<Vec<PlatformId>>,
        /// OpenClaw's name for `groups` in Matrix (room id → rule); used when `groups` is not set.
        rooms: Option<BTreeMap<String, GroupFile>>,
        /// Events of the first sync ever fetched per room (default 10); they are never answered.
        initial_sync_limit: Option<u32>,
        /// Replies in threads: `inbound` (default: in the thread a message came from), `always`, `off`.
        thread_replies: Option<String>,
        /// OpenClaw's Matrix settings accepted, not used yet.
        dm: Option<serde_json::Value>,
        allowlist_only: Option<serde_json::Value>,
        allow_bots: Option<serde_json::Value>,
        avatar_url: Option<serde_json::Value>,
        ack_reaction_scope: Option<serde_json::Value>,
        bot_loop_protection: Option<serde_json::Value>,
        reaction_notifications: Option<serde_json::Value>,
        startup_verification: Option<serde_json::Value>,
        startup_verification_cooldown_hours: Option<serde_json::Value>,
    }
}

channel_file! {
    /// `channels.slack`: a Slack app, over Socket Mode (default) or the Events API over HTTP.
    SlackFile {
        /// The bot token (`xoxb-…`), for the Web API.
        bot_token: Option<SecretInput>,
        /// The app-level token (`xapp-…`) with `connections:write`, for Socket Mode.
        app_token: Option<SecretInput>,
        /// The signing secret, for the Events API over HTTP (`mode: "http"`).
        signing_secret: Option<SecretInput>,
        /// `socket` (default: no public URL needed) or `http` (Slack POSTs events to the gateway).
        mode: Option<String>,
        /// Where the gateway takes Events API requests (default `/channels/slack/<account>/events`).
        webhook_path: Option<String>,
        /// The Web API's base URL (default `https://slack.com/api`), for proxies and tests.
        base_url: Option<String>,
        /// OpenClaw's name for `groups` in Slack (channel id → rule); used when `groups` is not set.
        channels: Option<BTreeMap<String, GroupFile>>,
        /// OpenClaw's Slack settings accepted, not used yet.
        user_token: Option<serde_json::Value>,
        user_token_read_only: Option<serde_json::Value>,
        allow_bots: Option<serde_json::Value>,
        bot_loop_protection: Option<serde_json::Value>,
        dm: Option<serde_json::Value>,
        implicit_mentions: Option<serde_json::Value>,
        post_as: Option<serde_json::Value>,
        presence_events: Option<serde_json::Value>,
        reaction_allowlist: Option<serde_json::Value>,
        reaction_notifications: Option<serde_json::Value>,
        relay: Option<serde_json::Value>,
        reply_to_mode_by_chat_type: Option<serde_json::Value>,
        require_mention: Option<serde_json::Value>,
        slash_command: Option<serde_json::Value>,
        thread: Option<serde_json::Value>,
        typing_reaction: Option<serde_json::Value>,
        unfurl_links: Option<serde_json::Value>,
        unfurl_media: Option<serde_json::Value>,
    }
}

channel_file! {
    /// `channels.discord`: a bot on the Discord Gateway (v10) and REST API.
    DiscordFile {
        /// The bot token from the Developer Portal.
        token: Option<SecretInput>,
        /// The REST API's base URL (default `https://discord.com/api/v10`), for proxies and tests.
        base_url: Option<String>,
        /// The Gateway's WebSocket URL (default: the one `GET /gateway/bot` names).
        gateway_url: Option<String>,
        /// Lines per message before a reply is split (default 17, as OpenClaw).
        max_lines_per_message: Option<usize>,
        /// OpenClaw's Discord settings accepted, not used yet.
        guilds: Option<serde_json::Value>,
        intents: Option<serde_json::Value>,
        allow_bots: Option<serde_json::Value>,
        application_id: Option<serde_json::Value>,
        activities: Option<serde_json::Value>,
        activity: Option<serde_json::Value>,
        activity_type: Option<serde_json::Value>,
        activity_url: Option<serde_json::Value>,
        agent_components: Option<serde_json::Value>,
        auto_presence: Option<serde_json::Value>,
        ack_reaction_scope: Option<serde_json::Value>,
        bot_loop_protection: Option<serde_json::Value>,
        dm: Option<serde_json::Value>,
        inbound_worker: Option<serde_json::Value>,
        mention_aliases: Option<serde_json::Value>,
        pluralkit: Option<serde_json::Value>,
        slash_command: Option<serde_json::Value>,
        status: Option<serde_json::Value>,
        suppress_embeds: Option<serde_json::Value>,
        thread: Option<serde_json::Value>,
        voice: Option<serde_json::Value>,
    }
}

channel_file! {
    /// `channels.webchat`: the web chat page served by the gateway.
    WebChatFile {}
}

/// `channels.irc.sasl`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IrcSaslFile {
    /// The account name (default: the nick).
    pub username: Option<String>,
    pub password: Option<SecretInput>,
    pub password_file: Option<String>,
}

/// `channels.irc.nickserv`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NickServFile {
    pub enabled: Option<bool>,
    /// The service's nick (default `NickServ`).
    pub service: Option<String>,
    pub password: Option<SecretInput>,
    pub password_file: Option<String>,
    /// OpenClaw's registration settings; accepted, not used (clawline never registers nicks).
    pub register: Option<serde_json::Value>,
    pub register_email: Option<serde_json::Value>,
}

/// `channels.<id>.groups.<groupId>`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GroupFile {
    /// Only answer when mentioned (default true); other messages are kept as context only.
    pub require_mention: Option<bool>,
    /// Senders allowed in this group (overrides `groupAllowFrom`).
    pub allow_from: Option<Vec<PlatformId>>,
    /// `false` ignores the group.
    pub enabled: Option<bool>,
    /// OpenClaw per-group settings accepted, not used yet.
    pub system_prompt: Option<serde_json::Value>,
    pub skills: Option<serde_json::Value>,
    pub tools: Option<serde_json::Value>,
    pub tools_by_sender: Option<serde_json::Value>,
    pub topics: Option<serde_json::Value>,
}

/// An id as written: `123456789` or `"123456789"` or `"*"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformId(pub String);

impl<'de> Deserialize<'de> for PlatformId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PlatformId;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a sender or group id (a number or a string)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PlatformId, E> {
                Ok(PlatformId(v.trim().to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PlatformId, E> {
                Ok(PlatformId(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PlatformId, E> {
                Ok(PlatformId(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<PlatformId, E> {
                if v.fract() == 0.0 && v.abs() < 9.0e15 {
                    Ok(PlatformId(format!("{}", v as i64)))
                } else {
                    Err(E::custom(format!("{v} is not a whole number; write ids as strings")))
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl schemars::JsonSchema for PlatformId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PlatformId".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"description": "A sender or group id", "anyOf": [{"type": "string"}, {"type": "integer"}]})
    }
}

/// `bindings[]`: which agent answers which conversations.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BindingFile {
    pub agent_id: String,
    #[serde(rename = "match")]
    pub matches: BindingMatchFile,
    /// OpenClaw's per-binding session settings; accepted, not used yet.
    pub session: Option<serde_json::Value>,
}

/// `bindings[].match`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BindingMatchFile {
    pub channel: String,
    /// One account, or `"*"` for every account (default: every account).
    pub account_id: Option<String>,
    pub peer: Option<PeerMatchFile>,
    pub guild_id: Option<PlatformId>,
    pub team_id: Option<PlatformId>,
    pub roles: Option<Vec<PlatformId>>,
}

/// `bindings[].match.peer`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PeerMatchFile {
    /// `direct` (also `dm`), `group` or `channel`.
    pub kind: String,
    /// The peer's id, or `"*"` for every peer of that kind.
    pub id: PlatformId,
}

/// `session.*`: how conversations map to session keys.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SessionFile {
    /// Direct messages: `main` (default: every DM shares the agent's main session), `per-peer`,
    /// `per-channel-peer`, `per-account-channel-peer`.
    pub dm_scope: Option<String>,
    /// Groups: `per-group` (default) or `main`.
    pub group_scope: Option<String>,
    /// One person across platforms: canonical id → `["telegram:123", "discord:456"]`.
    pub identity_links: Option<BTreeMap<String, Vec<String>>>,
    /// OpenClaw settings accepted, not used yet.
    pub scope: Option<serde_json::Value>,
    pub reset: Option<serde_json::Value>,
    pub main_key: Option<serde_json::Value>,
    pub store: Option<serde_json::Value>,
}

/// Who may start a conversation in direct messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmPolicy {
    Pairing,
    Allowlist,
    Open,
    Disabled,
}

/// Which groups the assistant answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupPolicy {
    Allowlist,
    Open,
    Disabled,
}

/// How reply text is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkMode {
    Length,
    Newline,
}

/// Which reply pieces quote the message they answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyToMode {
    Off,
    First,
    All,
}

/// A group's rule, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRule {
    pub require_mention: bool,
    /// `None`: the account's `groupAllowFrom` applies.
    pub allow_from: Option<Vec<String>>,
    pub enabled: bool,
}

/// Who gets through, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessSettings {
    pub dm_policy: DmPolicy,
    pub allow_from: Vec<String>,
    pub group_policy: GroupPolicy,
    /// Empty: anyone in an allowed group.
    pub group_allow_from: Vec<String>,
    /// By group id; `"*"` applies to groups not listed.
    pub groups: BTreeMap<String, GroupRule>,
    /// Checked, case-insensitive patterns.
    pub mention_patterns: Vec<String>,
}

/// Whether a reply is previewed while it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamMode {
    /// One message when the answer is complete.
    Off,
    /// A draft message, edited as the answer grows, that becomes the answer's first piece.
    Partial,
}

/// How replies are cut and addressed, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySettings {
    pub text_chunk_limit: usize,
    pub chunk_mode: ChunkMode,
    pub reply_to_mode: ReplyToMode,
    pub response_prefix: Option<String>,
    pub media_max_bytes: u64,
    /// Previews (only where the platform can edit messages).
    pub streaming: StreamMode,
    /// Characters written before the draft appears.
    pub preview_min_chars: usize,
}

impl DeliverySettings {
    /// The defaults for a platform with this chunk limit (tests and adapters without config).
    pub fn with_limit(text_chunk_limit: usize) -> DeliverySettings {
        DeliverySettings {
            text_chunk_limit,
            chunk_mode: ChunkMode::Length,
            reply_to_mode: ReplyToMode::First,
            response_prefix: None,
            media_max_bytes: 20 * 1024 * 1024,
            streaming: StreamMode::Partial,
            preview_min_chars: DEFAULT_PREVIEW_MIN_CHARS,
        }
    }
}

/// OpenClaw's `streaming.preview.chunk.minChars` default.
pub const DEFAULT_PREVIEW_MIN_CHARS: usize = 200;

/// Telegram webhook mode.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub url: String,
    pub secret: Option<SecretString>,
    /// Where the gateway serves it.
    pub path: String,
}

/// IRC connection settings, resolved.
#[derive(Debug, Clone)]
pub struct IrcSettings {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// Extra trusted certificates (PEM text from `caFile`), checked to hold at least one.
    pub ca_pem: Option<String>,
    pub nick: String,
    pub username: String,
    pub realname: String,
    /// PASS, when the server wants one.
    pub server_password: Option<SecretString>,
    /// SASL PLAIN `(account, password)`.
    pub sasl: Option<(String, SecretString)>,
    /// NickServ `(service nick, password)`.
    pub nickserv: Option<(String, SecretString)>,
    /// Channels to join (lowercase; `#chan` or `#chan key`).
    pub channels: Vec<String>,
}

/// Telegram settings, resolved.
#[derive(Debug, Clone)]
pub struct TelegramSettings {
    pub token: SecretString,
    pub api_root: String,
    pub webhook: Option<WebhookSettings>,
    pub poll_timeout_secs: u64,
}

/// Which invites a Matrix account accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoJoin {
    Always,
    Allowlist,
    Off,
}

/// Where Matrix replies go relative to threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadReplies {
    Off,
    Inbound,
    Always,
}

/// Matrix settings, resolved.
#[derive(Debug, Clone)]
pub struct MatrixSettings {
    pub homeserver: String,
    pub user_id: Option<String>,
    pub access_token: Option<SecretString>,
    pub password: Option<SecretString>,
    pub device_id: String,
    pub device_name: String,
    pub auto_join: AutoJoin,
    /// Inviters and room ids whose invites are accepted under `allowlist`.
    pub auto_join_allowlist: Vec<String>,
    pub initial_sync_limit: u32,
    pub thread_replies: ThreadReplies,
}

/// How Slack delivers events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlackMode {
    /// A WebSocket clawline opens (`apps.connections.open`): no public URL needed.
    Socket,
    /// Slack POSTs signed Events API requests to the gateway.
    Http,
}

/// Slack settings, resolved.
#[derive(Debug, Clone)]
pub struct SlackSettings {
    pub bot_token: SecretString,
    pub app_token: Option<SecretString>,
    pub signing_secret: Option<SecretString>,
    pub mode: SlackMode,
    pub api_base: String,
    pub webhook_path: String,
}

/// Discord settings, resolved.
#[derive(Debug, Clone)]
pub struct DiscordSettings {
    pub token: SecretString,
    pub api_base: String,
    pub gateway_url: Option<String>,
    pub max_lines: usize,
}

/// What is specific to the account's platform.
#[derive(Debug, Clone)]
pub enum Platform {
    /// The gateway's own web chat: nothing to connect to.
    WebChat,
    Discord(DiscordSettings),
    Telegram(TelegramSettings),
    Irc(IrcSettings),
    Matrix(MatrixSettings),
    Slack(SlackSettings),
}

/// One account to connect.
#[derive(Debug, Clone)]
pub struct ChannelAccount {
    pub channel: String,
    pub account_id: String,
    pub name: Option<String>,
    pub access: AccessSettings,
    pub delivery: DeliverySettings,
    pub platform: Platform,
}

impl ChannelAccount {
    /// Every secret the account holds (for log redaction).
    pub fn secrets(&self) -> Vec<&SecretString> {
        match &self.platform {
            Platform::Telegram(t) => {
                let mut out = vec![&t.token];
                out.extend(t.webhook.iter().filter_map(|w| w.secret.as_ref()));
                out
            }
            Platform::Irc(i) => {
                let mut out: Vec<&SecretString> = i.server_password.iter().collect();
                out.extend(i.sasl.iter().map(|(_, p)| p));
                out.extend(i.nickserv.iter().map(|(_, p)| p));
                out
            }
            Platform::Matrix(m) => m.access_token.iter().chain(m.password.iter()).collect(),
            Platform::Discord(d) => vec![&d.token],
            Platform::WebChat => Vec::new(),
            Platform::Slack(k) => {
                std::iter::once(&k.bot_token).chain(k.app_token.iter()).chain(k.signing_secret.iter()).collect()
            }
        }
    }

    /// Where the account connects, without credentials (`https://api.telegram.org`, `ircs://host:6697`).
    pub fn endpoint(&self) -> String {
        match &self.platform {
            Platform::Telegram(t) => t.api_root.clone(),
            Platform::Irc(i) => format!("{}://{}:{}", if i.tls { "ircs" } else { "irc" }, i.host, i.port),
            Platform::Matrix(m) => m.homeserver.clone(),
            Platform::Slack(k) => k.api_base.clone(),
            Platform::Discord(d) => d.api_base.clone(),
            Platform::WebChat => "in-process (the gateway's /webchat page)".into(),
        }
    }

    /// Whether credentials would cross the network unencrypted.
    pub fn cleartext(&self) -> bool {
        let loopback = |host: &str| matches!(host, "127.0.0.1" | "localhost" | "::1" | "[::1]");
        let plain_http = |url: &str| {
            url.starts_with("http://")
                && !["http://127.0.0.1", "http://localhost", "http://[::1]"].iter().any(|p| url.starts_with(p))
        };
        match &self.platform {
            Platform::Telegram(t) => plain_http(&t.api_root),
            Platform::Irc(i) => {
                !i.tls
                    && !loopback(&i.host)
                    && (i.server_password.is_some() || i.sasl.is_some() || i.nickserv.is_some())
            }
            Platform::Matrix(m) => plain_http(&m.homeserver),
            Platform::Slack(k) => plain_http(&k.api_base),
            Platform::Discord(d) => plain_http(&d.api_base),
            Platform::WebChat => false,
        }
    }
}

/// How a DM maps to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DmScope {
    #[default]
    Main,
    PerPeer,
    PerChannelPeer,
    PerAccountChannelPeer,
}

/// How a group maps to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupScope {
    #[default]
    PerGroup,
    Main,
}

/// A binding, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub agent_id: String,
    pub channel: String,
    /// `None`: every account.
    pub account_id: Option<String>,
    /// `(kind, id)`; id `"*"` matches every peer of the kind.
    pub peer: Option<(String, String)>,
    pub guild_id: Option<String>,
    pub team_id: Option<String>,
    pub roles: Vec<String>,
}

/// Session mapping, resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionRouting {
    pub dm_scope: DmScope,
    pub group_scope: GroupScope,
    /// `channel:peer` (lowercased) → canonical id.
    pub identity_links: BTreeMap<String, String>,
}

/// Everything the channel layer needs from the config.
#[derive(Debug, Clone, Default)]
pub struct ChannelSettings {
    pub accounts: Vec<ChannelAccount>,
    /// Platforms in the file this build cannot connect.
    pub unsupported: Vec<String>,
    /// Accounts configured but switched off (`enabled: false`), as `channel:account`.
    pub disabled: Vec<String>,
    pub bindings: Vec<Binding>,
    pub session: SessionRouting,
}

const TELEGRAM_API_ROOT: &str = "https://api.telegram.org";

fn ids(list: Option<&Vec<PlatformId>>) -> Vec<String> {
    list.into_iter().flatten().map(|p| p.0.clone()).filter(|s| !s.is_empty()).collect()
}

/// The account's value: the account's own, else the channel's.
fn pick<'a, T: ?Sized>(acct: Common<'a>, top: Common<'a>, f: impl Fn(Common<'a>) -> Option<&'a T>) -> Option<&'a T> {
    f(acct).or_else(|| f(top))
}

/// Where a key was found, for error messages: the account's own, else the channel's.
struct At<'a> {
    path: &'a str,
    base: &'a str,
}

impl At<'_> {
    fn key(&self, own: bool, key: &str) -> String {
        if own { format!("{}.{key}", self.path) } else { format!("{}.{key}", self.base) }
    }
}

impl Resolver<'_> {
    pub(crate) fn channels(
        &self,
        file: &ChannelsFile,
        bindings: &[BindingFile],
        session: &SessionFile,
        agents: &[String],
        issues: &mut Vec<Issue>,
    ) -> ChannelSettings {
        let mut out = ChannelSettings { unsupported: file.unsupported(), ..Default::default() };
        if let Some(tg) = &file.telegram {
            let accounts = tg.accounts.iter().flatten().map(|(id, a)| (id.clone(), a)).collect();
            self.channel_accounts(
                "telegram",
                tg,
                accounts,
                TelegramFile::common,
                &mut out,
                issues,
                |r, acct, top, at, id, issues| r.telegram(acct, top, at, id, issues).map(Platform::Telegram),
            );
        }
        if let Some(mx) = &file.matrix {
            let accounts = mx.accounts.iter().flatten().map(|(id, a)| (id.clone(), a)).collect();
            self.channel_accounts(
                "matrix",
                mx,
                accounts,
                MatrixFile::common,
                &mut out,
                issues,
                |r, acct, top, at, _id, issues| r.matrix(acct, top, at, issues).map(Platform::Matrix),
            );
            // OpenClaw calls Matrix's group rules `rooms`; they apply where `groups` is not set.
            for a in out.accounts.iter_mut().filter(|a| a.channel == "matrix" && a.access.groups.is_empty()) {
                let own = mx.accounts.as_ref().and_then(|m| m.get(&a.account_id)).and_then(|f| f.rooms.as_ref());
                if let Some(rooms) = own.or(mx.rooms.as_ref()) {
                    a.access.groups = rooms.iter().map(|(id, g)| (id.clone(), group_rule(g))).collect();
                }
            }
        }
        if let Some(dc) = &file.discord {
            let accounts = dc.accounts.iter().flatten().map(|(id, a)| (id.clone(), a)).collect();
            self.channel_accounts(
                "discord",
                dc,
                accounts,
                DiscordFile::common,
                &mut out,
                issues,
                |r, acct, top, at, _id, issues| r.discord(acct, top, at, issues).map(Platform::Discord),
            );
        }
        if let Some(sl) = &file.slack {
            let accounts = sl.accounts.iter().flatten().map(|(id, a)| (id.clone(), a)).collect();
            self.channel_accounts(
                "slack",
                sl,
                accounts,
                SlackFile::common,
                &mut out,
                issues,
                |r, acct, top, at, id, issues| r.slack(acct, top, at, id, issues).map(Platform::Slack),
            );
            for a in out.accounts.iter_mut().filter(|a| a.channel == "slack" && a.access.groups.is_empty()) {
                let own = sl.accounts.as_ref().and_then(|m| m.get(&a.account_id)).and_then(|f| f.channels.as_ref());
                if let Some(chans) = own.or(sl.channels.as_ref()) {
                    a.access.groups = chans.iter().map(|(id, g)| (id.clone(), group_rule(g))).collect();
                }
            }
        }
        if let Some(irc) = &file.irc {
            let accounts = irc.accounts.iter().flatten().map(|(id, a)| (id.clone(), a)).collect();
            self.channel_accounts(
                "irc",
                irc,
                accounts,
                IrcFile::common,
                &mut out,
                issues,
                |r, acct, top, at, _id, issues| r.irc(acct, top, at, issues).map(Platform::Irc),
            );
        }
        // The web chat is a channel whether or not the file mentions it.
        let wc = file.webchat.clone().unwrap_or_default();
        if wc.accounts.is_some() {
            issues.push(issue(
                "channels.webchat.accounts",
                "the web chat has one account",
                Some("put its settings directly under channels.webchat".into()),
            ));
        }
        self.channel_accounts("webchat", &wc, Vec::new(), WebChatFile::common, &mut out, issues, |_, _, _, _, _, _| {
            Some(Platform::WebChat)
        });
        for a in out.accounts.iter_mut().filter(|a| a.channel == "webchat") {
            // Everyone who reaches the page has the gateway token already.
            if wc.dm_policy.is_none() {
                a.access.dm_policy = DmPolicy::Open;
                if a.access.allow_from.is_empty() {
                    a.access.allow_from = vec!["*".into()];
                }
            }
        }
        out.session = session_routing(session, issues);
        for (i, b) in bindings.iter().enumerate() {
            let path = format!("bindings[{i}]");
            if !agents.iter().any(|a| a == &b.agent_id) {
                issues.push(issue(
                    format!("{path}.agentId"),
                    format!("agent `{}` is not defined", b.agent_id),
                    Some(format!("define it under agents.list, or use one of: {}", agents.join(", "))),
                ));
            }
            let channel = b.matches.channel.trim().to_ascii_lowercase();
            if !KNOWN_CHANNELS.contains(&channel.as_str()) {
                issues.push(issue(
                    format!("{path}.match.channel"),
                    format!("`{}` is not a channel", b.matches.channel),
                    Some(format!("use one of: {}", SUPPORTED_CHANNELS.join(", "))),
                ));
            }
            let peer = b.matches.peer.as_ref().and_then(|p| {
                let kind = match p.kind.as_str() {
                    "direct" | "dm" => "direct",
                    "group" => "group",
                    "channel" => "channel",
                    other => {
                        issues.push(issue(
                            format!("{path}.match.peer.kind"),
                            format!("`{other}` is not a peer kind"),
                            Some("use direct, group or channel".into()),
                        ));
                        return None;
                    }
                };
                Some((kind.to_string(), p.id.0.clone()))
            });
            out.bindings.push(Binding {
                agent_id: b.agent_id.clone(),
                channel,
                account_id: b.matches.account_id.clone().filter(|a| a != "*"),
                peer,
                guild_id: b.matches.guild_id.as_ref().map(|g| g.0.clone()),
                team_id: b.matches.team_id.as_ref().map(|t| t.0.clone()),
                roles: ids(b.matches.roles.as_ref()),
            });
        }
        out
    }

    /// Resolves each account of one platform: the shared keys here, the platform's own in `platform`.
    #[allow(clippy::too_many_arguments)]
    fn channel_accounts<F: Default>(
        &self,
        channel: &str,
        top: &F,
        listed: Vec<(String, &F)>,
        common: fn(&F) -> Common<'_>,
        out: &mut ChannelSettings,
        issues: &mut Vec<Issue>,
        platform: impl Fn(&Self, &F, &F, &At<'_>, &str, &mut Vec<Issue>) -> Option<Platform>,
    ) {
        let base = format!("channels.{channel}");
        let empty = F::default();
        let listed: Vec<(String, &F, String)> = if listed.is_empty() {
            vec![(DEFAULT_ACCOUNT.to_string(), &empty, base.clone())]
        } else {
            listed
                .into_iter()
                .map(|(id, a)| {
                    let path = format!("{base}.accounts.{id}");
                    (id, a, path)
                })
                .collect()
        };
        let ct = common(top);
        if let Some(d) = ct.default_account
            && !listed.iter().any(|(id, _, _)| id == d)
        {
            issues.push(issue(format!("{base}.defaultAccount"), format!("account `{d}` is not defined"), None));
        }
        for (account_id, acct, path) in listed {
            let ca = common(acct);
            if ca.has_accounts {
                issues.push(issue(format!("{path}.accounts"), "accounts cannot have accounts", None));
            }
            if !ca.enabled.or(ct.enabled).unwrap_or(true) {
                out.disabled.push(format!("{channel}:{account_id}"));
                continue;
            }
            let at = At { path: &path, base: &base };
            let access = access(ca, ct, &at, issues);
            let delivery = delivery(channel, ca, ct, &at, issues);
            let Some(platform) = platform(self, acct, top, &at, &account_id, issues) else { continue };
            out.accounts.push(ChannelAccount {
                channel: channel.to_string(),
                account_id,
                name: pick(ca, ct, |c| c.name).cloned(),
                access,
                delivery,
                platform,
            });
        }
    }

    /// The text of a file a key names (relative to the config file's folder), or an issue at
    /// `key` saying it cannot read that `what` ("secret file", "CA file").
    pub(crate) fn read_text(
        &self,
        file: &str,
        what: &str,
        key: &str,
        issues: &mut Vec<Issue>,
    ) -> Option<(PathBuf, String)> {
        let p = self.path(file);
        match (self.read_file)(&p) {
            Ok(text) => Some((p, text)),
            Err(e) => {
                issues.push(issue(
                    key,
                    format!("cannot read {what} {}: {e}", p.display()),
                    Some("check the path (relative paths start at the config file's folder)".into()),
                ));
                None
            }
        }
    }

    /// A secret from a `SecretInput` key or a `…File` key (the first one set), by the account's own first.
    fn secret_or_file(
        &self,
        own: (Option<&SecretInput>, Option<&String>),
        top: (Option<&SecretInput>, Option<&String>),
        at: &At<'_>,
        keys: (&str, &str),
        issues: &mut Vec<Issue>,
    ) -> Option<SecretString> {
        let from = |(input, file): (Option<&SecretInput>, Option<&String>), own: bool, issues: &mut Vec<Issue>| {
            if let Some(i) = input {
                return Some(self.secret(i, &at.key(own, keys.0), issues));
            }
            let file = file?;
            let key = at.key(own, keys.1);
            Some(self.read_text(file, "secret file", &key, issues).and_then(|(p, v)| {
                if v.trim().is_empty() {
                    issues.push(issue(key, format!("{} is empty", p.display()), None));
                    return None;
                }
                Some(SecretString::new(v.trim().to_string()))
            }))
        };
        match from(own, true, issues) {
            Some(found) => found,
            None => from(top, false, issues).flatten(),
        }
    }

    fn telegram(
        &self,
        acct: &TelegramFile,
        top: &TelegramFile,
        at: &At<'_>,
        account_id: &str,
        issues: &mut Vec<Issue>,
    ) -> Option<TelegramSettings> {
        let own_token = acct.bot_token.is_some() || acct.token_file.is_some();
        let mut token = self.secret_or_file(
            (acct.bot_token.as_ref(), acct.token_file.as_ref()),
            (top.bot_token.as_ref(), top.token_file.as_ref()),
            at,
            ("botToken", "tokenFile"),
            issues,
        );
        let configured = own_token || top.bot_token.is_some() || top.token_file.is_some();
        if !configured {
            match (self.env)("TELEGRAM_BOT_TOKEN").filter(|v| !v.trim().is_empty()) {
                Some(v) if account_id == DEFAULT_ACCOUNT => token = Some(SecretString::new(v.trim().to_string())),
                _ => issues.push(issue(
                    format!("{}.botToken", at.path),
                    format!("telegram account `{account_id}` has no bot token"),
                    Some("set botToken (\"${TELEGRAM_BOT_TOKEN}\" reads the environment) or tokenFile".into()),
                )),
            }
        }
        if let Some(t) = &token
            && !valid_telegram_token(t.expose())
        {
            issues.push(issue(
                at.key(own_token, "botToken"),
                "this is not a Telegram bot token",
                Some("a token looks like 123456789:AAE…, as @BotFather gives it".into()),
            ));
            token = None;
        }
        let api_root = acct.api_root.as_ref().or(top.api_root.as_ref()).map_or(TELEGRAM_API_ROOT, |s| s.as_str());
        let api_root = api_root.trim_end_matches('/').to_string();
        if !(api_root.starts_with("https://") || api_root.starts_with("http://")) {
            issues.push(issue(
                at.key(acct.api_root.is_some(), "apiRoot"),
                format!("`{api_root}` is not an http(s) URL"),
                None,
            ));
        }
        let poll = acct.poll_timeout_seconds.or(top.poll_timeout_seconds).unwrap_or(30);
        if !(1..=50).contains(&poll) {
            issues.push(issue(
                at.key(acct.poll_timeout_seconds.is_some(), "pollTimeoutSeconds"),
                format!("{poll} is out of range"),
                Some("use 1 to 50 seconds".into()),
            ));
        }
        let webhook = acct.webhook_url.as_ref().or(top.webhook_url.as_ref()).map(|url| {
            let secret_input = acct.webhook_secret.as_ref().or(top.webhook_secret.as_ref());
            let secret_key = at.key(acct.webhook_secret.is_some(), "webhookSecret");
            let secret = secret_input.and_then(|s| self.secret(s, &secret_key, issues));
            let well_formed = |s: &SecretString| {
                (1..=256).contains(&s.expose().len())
                    && s.expose().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            };
            if secret.as_ref().is_some_and(|s| !well_formed(s)) {
                issues.push(issue(secret_key, "Telegram accepts 1-256 characters of A-Z, a-z, 0-9, _ and -", None));
            }
            if !url.starts_with("https://") && !url.starts_with("http://") {
                issues.push(issue(
                    at.key(acct.webhook_url.is_some(), "webhookUrl"),
                    format!("`{url}` is not a URL"),
                    None,
                ));
            }
            let path = acct
                .webhook_path
                .as_ref()
                .or(top.webhook_path.as_ref())
                .cloned()
                .unwrap_or_else(|| format!("/channels/telegram/{account_id}/webhook"));
            WebhookSettings { url: url.clone(), secret, path }
        });
        if let Some(w) = &webhook
            && w.secret.is_none()
        {
            issues.push(issue(
                at.key(acct.webhook_url.is_some(), "webhookUrl"),
                "a webhook needs webhookSecret, so only Telegram can post to it",
                Some("set webhookSecret to a random string of letters and digits".into()),
            ));
        }
        Some(TelegramSettings { token: token?, api_root, webhook, poll_timeout_secs: poll })
    }

    fn matrix(
        &self,
        acct: &MatrixFile,
        top: &MatrixFile,
        at: &At<'_>,
        issues: &mut Vec<Issue>,
    ) -> Option<MatrixSettings> {
        let Some(homeserver) =
            acct.homeserver.as_ref().or(top.homeserver.as_ref()).map(|h| h.trim().trim_end_matches('/').to_string())
        else {
            issues.push(issue(
                format!("{}.homeserver", at.path),
                "Matrix needs the homeserver's URL",
                Some("e.g. homeserver: \"https://matrix.example.org\"".into()),
            ));
            return None;
        };
        if !(homeserver.starts_with("https://") || homeserver.starts_with("http://")) {
            issues.push(issue(
                at.key(acct.homeserver.is_some(), "homeserver"),
                format!("`{homeserver}` is not an http(s) URL"),
                None,
            ));
        }
        let user_id = acct.user_id.as_ref().or(top.user_id.as_ref()).cloned();
        if let Some(u) = &user_id
            && !(u.starts_with('@') && u.contains(':'))
        {
            issues.push(issue(
                at.key(acct.user_id.is_some(), "userId"),
                format!("`{u}` is not a Matrix user id"),
                Some("like @clawline:example.org".into()),
            ));
        }
        let access_token = acct
            .access_token
            .as_ref()
            .map(|t| (t, true))
            .or(top.access_token.as_ref().map(|t| (t, false)))
            .and_then(|(t, own)| self.secret(t, &at.key(own, "accessToken"), issues));
        let password = acct
            .password
            .as_ref()
            .map(|t| (t, true))
            .or(top.password.as_ref().map(|t| (t, false)))
            .and_then(|(t, own)| self.secret(t, &at.key(own, "password"), issues));
        if access_token.is_none() && password.is_none() {
            issues.push(issue(
                format!("{}.accessToken", at.path),
                "Matrix needs accessToken, or userId and password to log in",
                None,
            ));
        }
        if access_token.is_none() && password.is_some() && user_id.is_none() {
            issues.push(issue(format!("{}.userId", at.path), "logging in with a password needs userId", None));
        }
        if acct.encryption.or(top.encryption) == Some(true) {
            issues.push(issue(
                at.key(acct.encryption.is_some(), "encryption"),
                "end-to-end encryption is not supported by clawline yet",
                Some("remove encryption: true; encrypted rooms are listed in `clawline channels status` and not answered".into()),
            ));
        }
        let auto_join = match acct.auto_join.as_ref().or(top.auto_join.as_ref()).map_or("always", |s| s.as_str()) {
            "always" => AutoJoin::Always,
            "allowlist" => AutoJoin::Allowlist,
            "off" => AutoJoin::Off,
            other => {
                issues.push(issue(
                    at.key(acct.auto_join.is_some(), "autoJoin"),
                    format!("`{other}` is not an autoJoin mode"),
                    Some("use always, allowlist or off".into()),
                ));
                AutoJoin::Always
            }
        };
        let thread_replies =
            match acct.thread_replies.as_ref().or(top.thread_replies.as_ref()).map_or("inbound", |s| s.as_str()) {
                "off" => ThreadReplies::Off,
                "inbound" => ThreadReplies::Inbound,
                "always" => ThreadReplies::Always,
                other => {
                    issues.push(issue(
                        at.key(acct.thread_replies.is_some(), "threadReplies"),
                        format!("`{other}` is not a threadReplies mode"),
                        Some("use off, inbound or always".into()),
                    ));
                    ThreadReplies::Inbound
                }
            };
        Some(MatrixSettings {
            homeserver,
            user_id,
            access_token,
            password,
            device_id: acct.device_id.as_ref().or(top.device_id.as_ref()).cloned().unwrap_or_else(|| "CLAWLINE".into()),
            device_name: acct
                .device_name
                .as_ref()
                .or(top.device_name.as_ref())
                .cloned()
                .unwrap_or_else(|| "clawline".into()),
            auto_join,
            auto_join_allowlist: ids(acct.auto_join_allowlist.as_ref().or(top.auto_join_allowlist.as_ref())),
            initial_sync_limit: acct.initial_sync_limit.or(top.initial_sync_limit).unwrap_or(10),
            thread_replies,
        })
    }

    fn discord(
        &self,
        acct: &DiscordFile,
        top: &DiscordFile,
        at: &At<'_>,
        issues: &mut Vec<Issue>,
    ) -> Option<DiscordSettings> {
        let token = acct
            .token
            .as_ref()
            .map(|t| (t, true))
            .or(top.token.as_ref().map(|t| (t, false)))
            .and_then(|(t, own)| self.secret(t, &at.key(own, "token"), issues));
        if token.is_none() && acct.token.is_none() && top.token.is_none() {
            issues.push(issue(
                format!("{}.token", at.path),
                "Discord needs the bot token",
                Some("set token (\"${DISCORD_BOT_TOKEN}\" reads the environment)".into()),
            ));
        }
        let api_base =
            acct.base_url.as_ref().or(top.base_url.as_ref()).map_or("https://discord.com/api/v10", |s| s.as_str());
        let api_base = api_base.trim_end_matches('/').to_string();
        if !(api_base.starts_with("https://") || api_base.starts_with("http://")) {
            issues.push(issue(
                at.key(acct.base_url.is_some(), "baseUrl"),
                format!("`{api_base}` is not an http(s) URL"),
                None,
            ));
        }
        let gateway_url = acct.gateway_url.as_ref().or(top.gateway_url.as_ref()).cloned();
        if let Some(g) = &gateway_url
            && !(g.starts_with("wss://") || g.starts_with("ws://"))
        {
            issues.push(issue(
                at.key(acct.gateway_url.is_some(), "gatewayUrl"),
                format!("`{g}` is not a ws(s) URL"),
                None,
            ));
        }
        let max_lines = acct.max_lines_per_message.or(top.max_lines_per_message).unwrap_or(17).max(1);
        Some(DiscordSettings { token: token?, api_base, gateway_url, max_lines })
    }

    fn slack(
        &self,
        acct: &SlackFile,
        top: &SlackFile,
        at: &At<'_>,
        account_id: &str,
        issues: &mut Vec<Issue>,
    ) -> Option<SlackSettings> {
        let get = |own: Option<&SecretInput>, shared: Option<&SecretInput>, key: &str, issues: &mut Vec<Issue>| {
            own.map(|t| (t, true))
                .or(shared.map(|t| (t, false)))
                .and_then(|(t, o)| self.secret(t, &at.key(o, key), issues))
        };
        let bot_token = get(acct.bot_token.as_ref(), top.bot_token.as_ref(), "botToken", issues);
        let app_token = get(acct.app_token.as_ref(), top.app_token.as_ref(), "appToken", issues);
        let signing_secret = get(acct.signing_secret.as_ref(), top.signing_secret.as_ref(), "signingSecret", issues);
        if bot_token.as_ref().is_some_and(|t| !t.expose().starts_with("xoxb-")) {
            issues.push(issue(
                at.key(acct.bot_token.is_some(), "botToken"),
                "a Slack bot token starts with xoxb-",
                None,
            ));
        }
        if app_token.as_ref().is_some_and(|t| !t.expose().starts_with("xapp-")) {
            issues.push(issue(
                at.key(acct.app_token.is_some(), "appToken"),
                "a Slack app-level token starts with xapp-",
                Some("create one under Basic Information → App-Level Tokens with connections:write".into()),
            ));
        }
        let mode = match acct.mode.as_ref().or(top.mode.as_ref()).map_or("socket", |s| s.as_str()) {
            "socket" => SlackMode::Socket,
            "http" => SlackMode::Http,
            other => {
                issues.push(issue(
                    at.key(acct.mode.is_some(), "mode"),
                    format!("`{other}` is not a Slack mode"),
                    Some("use socket or http".into()),
                ));
                SlackMode::Socket
            }
        };
        if mode == SlackMode::Socket && app_token.is_none() {
            issues.push(issue(
                format!("{}.appToken", at.path),
                "Socket Mode needs the app-level token (xapp-…)",
                Some("set appToken, or mode: \"http\" with signingSecret".into()),
            ));
        }
        if mode == SlackMode::Http && signing_secret.is_none() {
            issues.push(issue(
                format!("{}.signingSecret", at.path),
                "the Events API over HTTP needs the signing secret",
                None,
            ));
        }
        if bot_token.is_none() {
            issues.push(issue(format!("{}.botToken", at.path), "Slack needs the bot token (xoxb-…) to reply", None));
        }
        let api_base = acct.base_url.as_ref().or(top.base_url.as_ref()).map_or("https://slack.com/api", |s| s.as_str());
        let api_base = api_base.trim_end_matches('/').to_string();
        if !(api_base.starts_with("https://") || api_base.starts_with("http://")) {
            issues.push(issue(
                at.key(acct.base_url.is_some(), "baseUrl"),
                format!("`{api_base}` is not an http(s) URL"),
                None,
            ));
        }
        let webhook_path = acct
            .webhook_path
            .as_ref()
            .or(top.webhook_path.as_ref())
            .cloned()
            .unwrap_or_else(|| format!("/channels/slack/{account_id}/events"));
        Some(SlackSettings { bot_token: bot_token?, app_token, signing_secret, mode, api_base, webhook_path })
    }

    fn irc(&self, acct: &IrcFile, top: &IrcFile, at: &At<'_>, issues: &mut Vec<Issue>) -> Option<IrcSettings> {
        let Some(host) =
            acct.host.as_ref().or(top.host.as_ref()).map(|h| h.trim().to_string()).filter(|h| !h.is_empty())
        else {
            issues.push(issue(
                format!("{}.host", at.path),
                "IRC needs the server's host name",
                Some("e.g. host: \"irc.libera.chat\"".into()),
            ));
            return None;
        };
        let tls = acct.tls.or(top.tls).unwrap_or(true);
        let port = acct.port.or(top.port).unwrap_or(if tls { 6697 } else { 6667 });
        if port == 0 {
            issues.push(issue(at.key(acct.port.is_some(), "port"), "0 is not a port", None));
        }
        let ca_pem = acct.ca_file.as_ref().map(|f| (f, true)).or(top.ca_file.as_ref().map(|f| (f, false))).and_then(
            |(file, own)| {
                let key = at.key(own, "caFile");
                if !tls {
                    issues.push(issue(
                        key,
                        "caFile is for TLS connections",
                        Some("set tls: true, or drop caFile".into()),
                    ));
                    return None;
                }
                let (p, text) = self.read_text(file, "CA file", &key, issues)?;
                if !text.contains("-----BEGIN CERTIFICATE-----") {
                    issues.push(issue(
                        key,
                        format!("{} holds no PEM certificate", p.display()),
                        Some("it should contain -----BEGIN CERTIFICATE----- blocks".into()),
                    ));
                    return None;
                }
                Some(text)
            },
        );
        let nick = acct.nick.as_ref().or(top.nick.as_ref()).cloned().unwrap_or_else(|| "clawline".into());
        let nick_ok = |n: &str| {
            !n.is_empty()
                && n.len() <= 30
                && !n.starts_with(|c: char| c.is_ascii_digit() || c == '-')
                && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_[]\\`^{}|".contains(c))
        };
        if !nick_ok(&nick) {
            issues.push(issue(
                at.key(acct.nick.is_some(), "nick"),
                format!("`{nick}` is not a valid IRC nickname"),
                Some("letters, digits and -_[]\\`^{}|, not starting with a digit or -".into()),
            ));
        }
        let line_safe = |v: &str| !v.contains(['\r', '\n', '\0']);
        let username = acct.username.as_ref().or(top.username.as_ref()).cloned().unwrap_or_else(|| nick.clone());
        let realname = acct.realname.as_ref().or(top.realname.as_ref()).cloned().unwrap_or_else(|| "clawline".into());
        for (key, v, own) in
            [("username", &username, acct.username.is_some()), ("realname", &realname, acct.realname.is_some())]
        {
            if !line_safe(v) || v.trim().is_empty() || (key == "username" && v.contains(' ')) {
                issues.push(issue(at.key(own, key), format!("`{v}` cannot be sent on an IRC line"), None));
            }
        }
        let server_password = self.secret_or_file(
            (acct.password.as_ref(), acct.password_file.as_ref()),
            (top.password.as_ref(), top.password_file.as_ref()),
            at,
            ("password", "passwordFile"),
            issues,
        );
        let sasl =
            acct.sasl.as_ref().map(|s| (s, true)).or(top.sasl.as_ref().map(|s| (s, false))).and_then(|(s, own)| {
                let sub = At { path: &format!("{}.sasl", at.path), base: &format!("{}.sasl", at.base) };
                let password = self.secret_or_file(
                    (s.password.as_ref(), s.password_file.as_ref()),
                    (None, None),
                    &sub,
                    ("password", "passwordFile"),
                    issues,
                );
                if password.is_none() && s.password.is_none() && s.password_file.is_none() {
                    issues.push(issue(at.key(own, "sasl.password"), "SASL needs a password", None));
                }
                Some((s.username.clone().unwrap_or_else(|| nick.clone()), password?))
            });
        let nickserv =
            acct.nickserv.as_ref().or(top.nickserv.as_ref()).filter(|n| n.enabled.unwrap_or(true)).and_then(|n| {
                let sub = At { path: &format!("{}.nickserv", at.path), base: &format!("{}.nickserv", at.base) };
                let password = self.secret_or_file(
                    (n.password.as_ref(), n.password_file.as_ref()),
                    (None, None),
                    &sub,
                    ("password", "passwordFile"),
                    issues,
                )?;
                Some((n.service.clone().unwrap_or_else(|| "NickServ".into()), password))
            });
        let mut channels = Vec::new();
        for (i, c) in acct.channels.as_ref().or(top.channels.as_ref()).into_iter().flatten().enumerate() {
            let c = c.trim();
            let name = c.split(' ').next().unwrap_or_default();
            if !name.starts_with(['#', '&', '+', '!']) || name.len() < 2 || !line_safe(c) || name.contains(',') {
                issues.push(issue(
                    format!("{}[{i}]", at.key(acct.channels.is_some(), "channels")),
                    format!("`{c}` is not an IRC channel"),
                    Some("channels start with # (\"#ops\", or \"#ops key\" with a key)".into()),
                ));
                continue;
            }
            channels.push(c.to_string());
        }
        Some(IrcSettings {
            host,
            port,
            tls,
            ca_pem,
            nick,
            username,
            realname,
            server_password,
            sasl,
            nickserv,
            channels,
        })
    }
}

/// `<digits>:<35 or so characters of A-Za-z0-9_->`.
fn valid_telegram_token(t: &str) -> bool {
    match t.split_once(':') {
        Some((id, secret)) => {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_digit())
                && secret.len() >= 20
                && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        }
        None => false,
    }
}

fn group_rule(g: &GroupFile) -> GroupRule {
    GroupRule {
        require_mention: g.require_mention.unwrap_or(true),
        allow_from: g.allow_from.as_ref().map(|l| ids(Some(l))),
        enabled: g.enabled.unwrap_or(true),
    }
}

fn access(acct: Common<'_>, top: Common<'_>, at: &At<'_>, issues: &mut Vec<Issue>) -> AccessSettings {
    let dm_raw = pick(acct, top, |c| c.dm_policy).map_or("pairing", |s| s.as_str());
    let dm_policy = match dm_raw {
        "pairing" => DmPolicy::Pairing,
        "allowlist" => DmPolicy::Allowlist,
        "open" => DmPolicy::Open,
        "disabled" => DmPolicy::Disabled,
        other => {
            issues.push(issue(
                at.key(acct.dm_policy.is_some(), "dmPolicy"),
                format!("`{other}` is not a DM policy"),
                Some("use pairing, allowlist, open or disabled".into()),
            ));
            DmPolicy::Pairing
        }
    };
    let allow_from = ids(acct.allow_from.or(top.allow_from));
    if dm_policy == DmPolicy::Open && !allow_from.iter().any(|a| a == "*") {
        issues.push(issue(
            at.key(acct.dm_policy.is_some(), "dmPolicy"),
            "dmPolicy \"open\" lets anyone talk to the assistant and needs \"*\" in allowFrom to say so",
            Some("add allowFrom: [\"*\"], or use pairing".into()),
        ));
    }
    let group_raw = pick(acct, top, |c| c.group_policy).map_or("allowlist", |s| s.as_str());
    let group_policy = match group_raw {
        "allowlist" => GroupPolicy::Allowlist,
        "open" => GroupPolicy::Open,
        "disabled" => GroupPolicy::Disabled,
        other => {
            issues.push(issue(
                at.key(acct.group_policy.is_some(), "groupPolicy"),
                format!("`{other}` is not a group policy"),
                Some("use allowlist, open or disabled".into()),
            ));
            GroupPolicy::Allowlist
        }
    };
    let group_allow_from = ids(acct.group_allow_from.or(top.group_allow_from));
    let groups = acct.groups.or(top.groups).into_iter().flatten().map(|(id, g)| (id.clone(), group_rule(g))).collect();
    let mention_patterns: Vec<String> = pick(acct, top, |c| c.mention_patterns).cloned().unwrap_or_default();
    for (i, p) in mention_patterns.iter().enumerate() {
        if let Err(e) = crate::pattern::Pattern::new(p) {
            issues.push(issue(
                format!("{}[{i}]", at.key(acct.mention_patterns.is_some(), "mentionPatterns")),
                format!("not a pattern: {e}"),
                None,
            ));
        }
    }
    AccessSettings { dm_policy, allow_from, group_policy, group_allow_from, groups, mention_patterns }
}

fn delivery(
    channel: &str,
    acct: Common<'_>,
    top: Common<'_>,
    at: &At<'_>,
    issues: &mut Vec<Issue>,
) -> DeliverySettings {
    let (default_limit, max_limit) = match channel {
        "telegram" => (4000, 4096),
        // An IRC line is 512 bytes with the prefix; pieces are cut again by bytes when sent.
        "irc" => (350, 400),
        "discord" => (2000, 2000),
        // The page shows any length; pieces only keep one bubble readable.
        "webchat" => (16_000, 100_000),
        _ => (4000, 4000),
    };
    let limit = *pick(acct, top, |c| c.text_chunk_limit).unwrap_or(&default_limit);
    let limit = if (100..=max_limit).contains(&limit) {
        limit
    } else {
        issues.push(issue(
            at.key(acct.text_chunk_limit.is_some(), "textChunkLimit"),
            format!("{limit} is out of range"),
            Some(format!("{channel} accepts 100 to {max_limit} characters per message")),
        ));
        default_limit
    };
    let chunk_mode = match pick(acct, top, |c| c.chunk_mode).map_or("length", |s| s.as_str()) {
        "length" => ChunkMode::Length,
        "newline" => ChunkMode::Newline,
        other => {
            issues.push(issue(
                at.key(acct.chunk_mode.is_some(), "chunkMode"),
                format!("`{other}` is not a chunk mode"),
                Some("use length or newline".into()),
            ));
            ChunkMode::Length
        }
    };
    let reply_to_mode = match pick(acct, top, |c| c.reply_to_mode).map_or("first", |s| s.as_str()) {
        "off" => ReplyToMode::Off,
        "first" | "batched" => ReplyToMode::First,
        "all" => ReplyToMode::All,
        other => {
            issues.push(issue(
                at.key(acct.reply_to_mode.is_some(), "replyToMode"),
                format!("`{other}` is not a reply mode"),
                Some("use off, first or all".into()),
            ));
            ReplyToMode::First
        }
    };
    let media_mb = *pick(acct, top, |c| c.media_max_mb).unwrap_or(&20);
    // The page edits in place for free, so it shows the answer from its first word.
    let default_min = if channel == "webchat" { 0 } else { DEFAULT_PREVIEW_MIN_CHARS };
    let (streaming, preview_min_chars) = match pick(acct, top, |c| c.streaming) {
        None => (StreamMode::Partial, default_min),
        Some(v) => streaming(v, &at.key(acct.streaming.is_some(), "streaming"), issues),
    };
    DeliverySettings {
        text_chunk_limit: limit,
        chunk_mode,
        reply_to_mode,
        response_prefix: pick(acct, top, |c| c.response_prefix).cloned().filter(|s| !s.is_empty()),
        media_max_bytes: media_mb.saturating_mul(1024 * 1024),
        streaming,
        preview_min_chars,
    }
}

/// `streaming` as OpenClaw writes it: a boolean, a mode, or `{ mode, preview: { chunk: { minChars } } }`.
/// OpenClaw's `block` and `progress` modes also show the answer while it is written; clawline
/// does that with the draft, so they mean `partial` here.
fn streaming(v: &serde_json::Value, key: &str, issues: &mut Vec<Issue>) -> (StreamMode, usize) {
    let mode_of = |m: &str, key: &str, issues: &mut Vec<Issue>| match m {
        "off" | "none" => StreamMode::Off,
        "partial" | "block" | "progress" | "on" => StreamMode::Partial,
        other => {
            issues.push(issue(key, format!("`{other}` is not a streaming mode"), Some("use partial or off".into())));
            StreamMode::Partial
        }
    };
    match v {
        serde_json::Value::Bool(true) => (StreamMode::Partial, DEFAULT_PREVIEW_MIN_CHARS),
        serde_json::Value::Bool(false) => (StreamMode::Off, DEFAULT_PREVIEW_MIN_CHARS),
        serde_json::Value::String(m) => (mode_of(m, key, issues), DEFAULT_PREVIEW_MIN_CHARS),
        serde_json::Value::Object(o) => {
            let mode = match o.get("mode") {
                None => StreamMode::Partial,
                Some(serde_json::Value::String(m)) => mode_of(m, &format!("{key}.mode"), issues),
                Some(_) => {
                    issues.push(issue(format!("{key}.mode"), "expected a string", Some("use partial or off".into())));
                    StreamMode::Partial
                }
            };
            let min = o.get("preview").and_then(|p| p.get("chunk")).and_then(|c| c.get("minChars"));
            let min = match min {
                None => DEFAULT_PREVIEW_MIN_CHARS,
                Some(n) => match n.as_u64() {
                    Some(n) if n <= 4096 => n as usize,
                    _ => {
                        issues.push(issue(
                            format!("{key}.preview.chunk.minChars"),
                            format!("{n} is not a character count"),
                            Some("use a whole number from 0 to 4096".into()),
                        ));
                        DEFAULT_PREVIEW_MIN_CHARS
                    }
                },
            };
            (mode, min)
        }
        _ => {
            issues.push(issue(key, "expected \"partial\", \"off\", a boolean or an object", None));
            (StreamMode::Partial, DEFAULT_PREVIEW_MIN_CHARS)
        }
    }
}

fn session_routing(s: &SessionFile, issues: &mut Vec<Issue>) -> SessionRouting {
    let dm_scope = match s.dm_scope.as_deref().unwrap_or("main") {
        "main" => DmScope::Main,
        "per-peer" => DmScope::PerPeer,
        "per-channel-peer" => DmScope::PerChannelPeer,
        "per-account-channel-peer" => DmScope::PerAccountChannelPeer,
        other => {
            issues.push(issue(
                "session.dmScope",
                format!("`{other}` is not a DM scope"),
                Some("use main, per-peer, per-channel-peer or per-account-channel-peer".into()),
            ));
            DmScope::Main
        }
    };
    let group_scope = match s.group_scope.as_deref().unwrap_or("per-group") {
        "per-group" => GroupScope::PerGroup,
        "main" => GroupScope::Main,
        other => {
            issues.push(issue(
                "session.groupScope",
                format!("`{other}` is not a group scope"),
                Some("use per-group or main".into()),
            ));
            GroupScope::PerGroup
        }
    };
    let mut identity_links = BTreeMap::new();
    for (canonical, list) in s.identity_links.iter().flatten() {
        for (i, entry) in list.iter().enumerate() {
            match entry.split_once(':') {
                Some((ch, peer)) if !ch.is_empty() && !peer.is_empty() => {
                    identity_links.insert(
                        format!("{}:{}", ch.to_ascii_lowercase(), peer.to_ascii_lowercase()),
                        canonical.clone(),
                    );
                }
                _ => issues.push(issue(
                    format!("session.identityLinks.{canonical}[{i}]"),
                    format!("`{entry}` is not `<channel>:<peerId>`"),
                    Some("for example \"telegram:123456789\"".into()),
                )),
            }
        }
    }
    SessionRouting { dm_scope, group_scope, identity_links }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigErrors, LoadContext, Loaded, load};
    use std::path::Path;

    fn load_with(text: &str, env: &[(&str, &str)]) -> Result<Loaded, ConfigErrors> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let env_fn = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let read = |p: &Path| {
            if p == Path::new("/cfg/tg.token") {
                Ok("42:file-token-abcdefghijklmnopqrstuvwxyz\n".to_string())
            } else if p == Path::new("/cfg/znc.pem") {
                Ok("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_string())
            } else if p == Path::new("/cfg/notes.txt") {
                Ok("not a certificate".to_string())
            } else {
                Err("no such file".to_string())
            }
        };
        let ctx = LoadContext {
            file_label: "/cfg/clawline.json",
            config_dir: Path::new("/cfg"),
            state_dir: Path::new("/state"),
            env: &env_fn,
            presets: &[],
            read_file: &read,
            stored: None,
        };
        load(text, &ctx)
    }

    const TOKEN: &str = "123456789:AAEhBP0av28fWkDJT3w_T0mQ-h3kYhkkA0s";

    fn tg(a: &ChannelAccount) -> &TelegramSettings {
        match &a.platform {
            Platform::Telegram(t) => t,
            other => panic!("not telegram: {other:?}"),
        }
    }

    #[test]
    fn a_bare_telegram_section_is_one_default_account_with_safe_defaults() {
        let c = load_with("{ channels: { telegram: {} } }", &[("TELEGRAM_BOT_TOKEN", TOKEN)]).unwrap().config;
        let a = &c.channels.accounts[0];
        assert_eq!((a.channel.as_str(), a.account_id.as_str()), ("telegram", "default"));
        assert_eq!(tg(a).token.expose(), TOKEN);
        assert_eq!(tg(a).api_root, "https://api.telegram.org");
        assert_eq!(a.access.dm_policy, DmPolicy::Pairing);
        assert_eq!(a.access.group_policy, GroupPolicy::Allowlist);
        assert_eq!(a.delivery.text_chunk_limit, 4000);
        assert!(tg(a).webhook.is_none());
        assert_eq!(c.channels.session.dm_scope, DmScope::Main);
    }

    #[test]
    fn accounts_inherit_the_channel_keys_and_override_them() {
        let text = format!(
            r#"{{ channels: {{ telegram: {{
                 dmPolicy: "allowlist", allowFrom: [111, "222"], apiRoot: "http://127.0.0.1:9/",
                 groups: {{ "-100": {{ requireMention: false }} }},
                 accounts: {{
                   personal: {{ botToken: "{TOKEN}" }},
                   work: {{ tokenFile: "tg.token", dmPolicy: "open", allowFrom: ["*"], enabled: true }},
                   off: {{ enabled: false }},
                 }} }}, whatsapp: {{ anything: 1 }} }},
               session: {{ dmScope: "per-channel-peer", identityLinks: {{ alice: ["telegram:111"] }} }},
               bindings: [{{ agentId: "main", match: {{ channel: "telegram", accountId: "work" }} }}] }}"#
        );
        let c = load_with(&text, &[]).unwrap().config;
        let by = |id: &str| c.channels.accounts.iter().find(|a| a.account_id == id).unwrap();
        assert_eq!(by("personal").access.allow_from, ["111", "222"]);
        assert_eq!(tg(by("personal")).api_root, "http://127.0.0.1:9");
        assert!(!by("personal").access.groups["-100"].require_mention);
        assert_eq!(by("work").access.dm_policy, DmPolicy::Open);
        assert_eq!(tg(by("work")).token.expose(), "42:file-token-abcdefghijklmnopqrstuvwxyz");
        assert_eq!(c.channels.disabled, ["telegram:off"]);
        assert_eq!(c.channels.unsupported, ["whatsapp"]);
        assert_eq!(c.channels.session.identity_links["telegram:111"], "alice");
        assert_eq!(c.channels.bindings[0].account_id.as_deref(), Some("work"));
    }

    #[test]
    fn mistakes_are_named_at_their_key() {
        let e = load_with("{ channels: { telegram: { botToken: 'nope' } } }", &[]).unwrap_err().0.remove(0);
        assert_eq!(e.path, "channels.telegram.botToken");
        let e = load_with("{ channels: { telegram: {} } }", &[]).unwrap_err().0.remove(0);
        assert!(e.hint.unwrap().contains("TELEGRAM_BOT_TOKEN"), "{}", e.message);
        let text = format!("{{ channels: {{ telegram: {{ botToken: '{TOKEN}',\n dmPolicy: 'open' }} }} }}");
        let e = load_with(&text, &[]).unwrap_err().0.remove(0);
        assert_eq!((e.path.as_str(), e.line), ("channels.telegram.dmPolicy", 2));
        let text = format!("{{ channels: {{ telegram: {{ botToken: '{TOKEN}', homeserver: 'x' }} }} }}");
        let e = load_with(&text, &[]).unwrap_err().0.remove(0);
        assert_eq!(e.message, "unknown key `homeserver`");
        let text = format!("{{ channels: {{ telegram: {{ botToken: '{TOKEN}', mentionPatterns: ['(x'] }} }} }}");
        assert_eq!(load_with(&text, &[]).unwrap_err().0[0].path, "channels.telegram.mentionPatterns[0]");
        let text =
            format!("{{ channels: {{ telegram: {{ botToken: '{TOKEN}', webhookUrl: 'https://x.example/tg' }} }} }}");
        assert!(load_with(&text, &[]).unwrap_err().0[0].message.contains("webhookSecret"));
        let e = load_with("{ bindings: [{ agentId: 'ghost', match: { channel: 'telegram' } }] }", &[])
            .unwrap_err()
            .0
            .remove(0);
        assert_eq!(e.path, "bindings[0].agentId");
        let e = load_with("{ session: { dmScope: 'per-user' } }", &[]).unwrap_err().0.remove(0);
        assert_eq!(e.path, "session.dmScope");
    }

    #[test]
    fn telegram_tokens_are_recognized() {
        assert!(valid_telegram_token("123456789:AAEhBP0av28fWkDJT3w_T0mQ-h3kYhkkA0s"));
        assert!(!valid_telegram_token("AAEhBP0av28fWkDJT3w_T0mQ-h3kYhkkA0s"));
        assert!(!valid_telegram_token("12a:AAEhBP0av28fWkDJT3w_T0mQ-h3kYhkkA0s"));
        assert!(!valid_telegram_token("123:short"));
    }

    #[test]
    fn irc_accounts_resolve_with_tls_by_default_and_refuse_what_cannot_go_on_a_line() {
        let text = r##"{ channels: { irc: { host: "irc.example.org", nick: "claw", channels: ["#ops", "#private key"],
                       sasl: { password: "sasl-pass" }, nickserv: { password: "ns-pass" }, allowFrom: ["alice"] } } }"##;
        let c = load_with(text, &[]).unwrap().config;
        let a = &c.channels.accounts[0];
        let Platform::Irc(i) = &a.platform else { panic!("{a:?}") };
        assert_eq!((i.host.as_str(), i.port, i.tls), ("irc.example.org", 6697, true));
        assert_eq!((i.nick.as_str(), i.username.as_str()), ("claw", "claw"));
        assert_eq!(i.channels, ["#ops", "#private key"]);
        assert_eq!(i.sasl.as_ref().map(|(u, p)| (u.as_str(), p.expose())), Some(("claw", "sasl-pass")));
        assert_eq!(i.nickserv.as_ref().map(|(s, _)| s.as_str()), Some("NickServ"));
        assert_eq!(a.delivery.text_chunk_limit, 350);
        assert_eq!(a.endpoint(), "ircs://irc.example.org:6697");
        assert!(!a.cleartext());
        assert_eq!(a.secrets().len(), 2);

        let plain = load_with("{ channels: { irc: { host: 'irc.example.org', tls: false, password: 'pw' } } }", &[])
            .unwrap()
            .config;
        assert!(plain.channels.accounts[0].cleartext(), "a password over plain TCP to another machine");
        let e = load_with("{ channels: { irc: { nick: 'claw' } } }", &[]).unwrap_err().0.remove(0);
        assert_eq!(e.path, "channels.irc.host");
        let e = load_with("{ channels: { irc: { host: 'h', nick: '9lives' } } }", &[]).unwrap_err().0.remove(0);
        assert_eq!(e.path, "channels.irc.nick");
        let e = load_with("{ channels: { irc: { host: 'h', channels: ['ops'] } } }", &[]).unwrap_err().0.remove(0);
        assert_eq!(e.path, "channels.irc.channels[0]");
        let e = load_with("{ channels: { irc: { host: 'h', botToken: 'x' } } }", &[]).unwrap_err().0.remove(0);
        assert_eq!(e.message, "unknown key `botToken`", "keys of another platform are refused");
    }

    #[test]
    fn an_irc_ca_file_is_read_at_load_and_must_hold_a_certificate_for_a_tls_connection() {
        let c = load_with("{ channels: { irc: { host: 'znc.lan', caFile: 'znc.pem' } } }", &[]).unwrap().config;
        let Platform::Irc(i) = &c.channels.accounts[0].platform else { panic!() };
        assert!(i.ca_pem.as_deref().is_some_and(|p| p.contains("BEGIN CERTIFICATE")));
        for (file, tls, says) in [
            ("notes.txt", "true", "holds no PEM certificate"),
            ("missing.pem", "true", "cannot read CA file /cfg/missing.pem"),
            ("znc.pem", "false", "caFile is for TLS connections"),
        ] {
            let text = format!("{{ channels: {{ irc: {{ host: 'znc.lan', tls: {tls}, caFile: '{file}' }} }} }}");
            let e = load_with(&text, &[]).unwrap_err().0.remove(0);
            assert_eq!(e.path, "channels.irc.caFile");
            assert!(e.message.contains(says), "{}", e.message);
        }
    }

    #[test]
    fn matrix_slack_and_discord_accounts_resolve_and_say_what_is_missing() {
        let c = load_with(
            "{ channels: { matrix: { homeserver: 'https://m.example.org/', userId: '@bot:m.example.org', password: 'pw',
                 rooms: { '!r:m.example.org': { requireMention: false } } },
               slack: { botToken: 'xoxb-1', appToken: 'xapp-1' },
               discord: { token: 'abc.def.ghi' } } }",
            &[],
        )
        .unwrap()
        .config;
        let by = |ch: &str| c.channels.accounts.iter().find(|a| a.channel == ch).unwrap();
        let Platform::Matrix(m) = &by("matrix").platform else { panic!() };
        assert_eq!(
            (m.homeserver.as_str(), m.device_id.as_str(), m.auto_join),
            ("https://m.example.org", "CLAWLINE", AutoJoin::Always)
        );
        assert!(!by("matrix").access.groups["!r:m.example.org"].require_mention, "Matrix `rooms` are its groups");
        let Platform::Slack(k) = &by("slack").platform else { panic!() };
        assert_eq!((k.mode, k.api_base.as_str()), (SlackMode::Socket, "https://slack.com/api"));
        let Platform::Discord(d) = &by("discord").platform else { panic!() };
        assert_eq!((d.api_base.as_str(), d.max_lines), ("https://discord.com/api/v10", 17));
        assert_eq!(by("discord").delivery.text_chunk_limit, 2000);
        assert!(c.channels.unsupported.is_empty());

        let first = |text: &str| load_with(text, &[]).unwrap_err().0.remove(0);
        assert_eq!(first("{ channels: { matrix: { homeserver: 'https://m' } } }").path, "channels.matrix.accessToken");
        assert_eq!(
            first("{ channels: { matrix: { homeserver: 'https://m', accessToken: 't', encryption: true } } }").path,
            "channels.matrix.encryption"
        );
        assert_eq!(first("{ channels: { slack: { botToken: 'xoxb-1' } } }").path, "channels.slack.appToken");
        assert_eq!(
            first("{ channels: { slack: { botToken: 'xoxb-1', mode: 'http' } } }").path,
            "channels.slack.signingSecret"
        );
        assert_eq!(
            first("{ channels: { slack: { botToken: 'oops', appToken: 'xapp-1' } } }").path,
            "channels.slack.botToken"
        );
        assert_eq!(first("{ channels: { discord: {} } }").path, "channels.discord.token");
        assert_eq!(
            first("{ channels: { discord: { token: 't', gatewayUrl: 'http://x' } } }").path,
            "channels.discord.gatewayUrl"
        );
    }
}
