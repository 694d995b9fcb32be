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

use serde::Deserialize;
use serde::de::{Deserializer, Visitor};

use super::resolve::{Issue, Resolver, issue};
use super::schema::SecretInput;
use crate::secret::SecretString;

/// The platforms this build can connect.
pub const SUPPORTED_CHANNELS: &[&str] = &["telegram"];

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
    pub telegram: Option<ChannelFile>,
    /// Platforms without an adapter in this build: accepted so an OpenClaw config loads, not connected.
    pub discord: Option<serde_json::Value>,
    pub slack: Option<serde_json::Value>,
    pub matrix: Option<serde_json::Value>,
    pub irc: Option<serde_json::Value>,
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
            ("discord", self.discord.is_some()),
            ("slack", self.slack.is_some()),
            ("matrix", self.matrix.is_some()),
            ("irc", self.irc.is_some()),
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

/// One platform's settings (and, inside `accounts`, one account's overrides).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChannelFile {
    /// Off: not connected (default on when the channel is configured).
    pub enabled: Option<bool>,
    /// A label for status output.
    pub name: Option<String>,
    /// The bot token (Telegram: from @BotFather). `TELEGRAM_BOT_TOKEN` is used for the default
    /// account when neither this nor `tokenFile` is set.
    pub bot_token: Option<SecretInput>,
    /// A file holding the token (relative paths start at the config file's folder).
    pub token_file: Option<String>,
    /// The API's base URL, for a proxy or a local Bot API server (Telegram: `https://api.telegram.org`).
    pub api_root: Option<String>,
    /// Telegram webhook mode: the public HTTPS URL Telegram should POST updates to. Without it the
    /// account long-polls.
    pub webhook_url: Option<String>,
    /// The secret Telegram sends back in `X-Telegram-Bot-Api-Secret-Token` (1-256 of `A-Za-z0-9_-`).
    pub webhook_secret: Option<SecretInput>,
    /// The local path the gateway serves the webhook on (default `/channels/telegram/<account>/webhook`).
    pub webhook_path: Option<String>,
    /// Long-poll timeout in seconds (default 30, 1-50).
    pub poll_timeout_seconds: Option<u64>,
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
    /// Longest reply piece in characters (Telegram default 4000, at most 4096).
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
    pub accounts: Option<BTreeMap<String, ChannelFile>>,
    /// The account used when a send names none (default: `default`, else the first).
    pub default_account: Option<String>,
    /// OpenClaw settings accepted so its files load, not used yet.
    pub streaming: Option<serde_json::Value>,
    pub history_limit: Option<serde_json::Value>,
    pub dm_history_limit: Option<serde_json::Value>,
    pub context_visibility: Option<serde_json::Value>,
    pub ack_reaction: Option<serde_json::Value>,
    pub health_monitor: Option<serde_json::Value>,
    pub exec_approvals: Option<serde_json::Value>,
    pub actions: Option<serde_json::Value>,
    pub capabilities: Option<serde_json::Value>,
    pub link_preview: Option<serde_json::Value>,
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

/// How replies are cut and addressed, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySettings {
    pub text_chunk_limit: usize,
    pub chunk_mode: ChunkMode,
    pub reply_to_mode: ReplyToMode,
    pub response_prefix: Option<String>,
    pub media_max_bytes: u64,
}

/// Telegram webhook mode.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub url: String,
    pub secret: Option<SecretString>,
    /// Where the gateway serves it.
    pub path: String,
}

/// One account to connect.
#[derive(Debug, Clone)]
pub struct ChannelAccount {
    pub channel: String,
    pub account_id: String,
    pub name: Option<String>,
    pub token: SecretString,
    pub api_root: String,
    pub webhook: Option<WebhookSettings>,
    pub poll_timeout_secs: u64,
    pub access: AccessSettings,
    pub delivery: DeliverySettings,
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

fn ids(list: &Option<Vec<PlatformId>>) -> Vec<String> {
    list.iter().flatten().map(|p| p.0.clone()).filter(|s| !s.is_empty()).collect()
}

/// The account's value: the account's own, else the channel's.
fn pick<'a, T>(
    acct: &'a ChannelFile,
    top: &'a ChannelFile,
    f: impl Fn(&'a ChannelFile) -> Option<&'a T>,
) -> Option<&'a T> {
    f(acct).or_else(|| f(top))
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
            self.channel_accounts("telegram", tg, &mut out, issues);
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
                roles: ids(&b.matches.roles),
            });
        }
        out
    }

    fn channel_accounts(&self, channel: &str, top: &ChannelFile, out: &mut ChannelSettings, issues: &mut Vec<Issue>) {
        let base = format!("channels.{channel}");
        let listed: Vec<(String, ChannelFile, String)> = match &top.accounts {
            Some(map) if !map.is_empty() => {
                map.iter().map(|(id, a)| (id.clone(), a.clone(), format!("{base}.accounts.{id}"))).collect()
            }
            _ => vec![(DEFAULT_ACCOUNT.to_string(), ChannelFile::default(), base.clone())],
        };
        if let Some(d) = &top.default_account
            && !listed.iter().any(|(id, _, _)| id == d)
        {
            issues.push(issue(format!("{base}.defaultAccount"), format!("account `{d}` is not defined"), None));
        }
        for (account_id, acct, path) in listed {
            if acct.accounts.is_some() {
                issues.push(issue(format!("{path}.accounts"), "accounts cannot have accounts", None));
            }
            let enabled = acct.enabled.or(top.enabled).unwrap_or(true);
            if !enabled {
                out.disabled.push(format!("{channel}:{account_id}"));
                continue;
            }
            if let Some(account) = self.channel_account(channel, &account_id, &acct, top, &path, &base, issues) {
                out.accounts.push(account);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn channel_account(
        &self,
        channel: &str,
        account_id: &str,
        acct: &ChannelFile,
        top: &ChannelFile,
        path: &str,
        base: &str,
        issues: &mut Vec<Issue>,
    ) -> Option<ChannelAccount> {
        // Where a key was found, for error messages: the account's own, else the channel's.
        let at = |own: bool, key: &str| if own { format!("{path}.{key}") } else { format!("{base}.{key}") };
        let mut token = None;
        if let Some(t) = pick(acct, top, |f| f.bot_token.as_ref()) {
            token = self.secret(t, &at(acct.bot_token.is_some(), "botToken"), issues);
        } else if let Some(file) = pick(acct, top, |f| f.token_file.as_ref()) {
            let p = self.path(file);
            match (self.read_file)(&p) {
                Ok(v) if !v.trim().is_empty() => token = Some(SecretString::new(v.trim().to_string())),
                Ok(_) => issues.push(issue(
                    at(acct.token_file.is_some(), "tokenFile"),
                    format!("{} is empty", p.display()),
                    None,
                )),
                Err(e) => issues.push(issue(
                    at(acct.token_file.is_some(), "tokenFile"),
                    format!("cannot read {}: {e}", p.display()),
                    Some("check the path (relative paths start at the config file's folder)".into()),
                )),
            }
        } else if account_id == DEFAULT_ACCOUNT
            && let Some(v) = (self.env)("TELEGRAM_BOT_TOKEN").filter(|v| !v.trim().is_empty())
        {
            token = Some(SecretString::new(v.trim().to_string()));
        } else {
            issues.push(issue(
                format!("{path}.botToken"),
                format!("{channel} account `{account_id}` has no bot token"),
                Some("set botToken (\"${TELEGRAM_BOT_TOKEN}\" reads the environment) or tokenFile".into()),
            ));
        }
        if let Some(t) = &token
            && !valid_telegram_token(t.expose())
        {
            issues.push(issue(
                at(acct.bot_token.is_some() || acct.token_file.is_some(), "botToken"),
                "this is not a Telegram bot token",
                Some("a token looks like 123456789:AAE…, as @BotFather gives it".into()),
            ));
            token = None;
        }
        let api_root = pick(acct, top, |f| f.api_root.as_ref()).map_or(TELEGRAM_API_ROOT, |s| s.as_str());
        let api_root = api_root.trim_end_matches('/').to_string();
        if !(api_root.starts_with("https://") || api_root.starts_with("http://")) {
            issues.push(issue(
                at(acct.api_root.is_some(), "apiRoot"),
                format!("`{api_root}` is not an http(s) URL"),
                None,
            ));
        }
        let poll = *pick(acct, top, |f| f.poll_timeout_seconds.as_ref()).unwrap_or(&30);
        if !(1..=50).contains(&poll) {
            issues.push(issue(
                at(acct.poll_timeout_seconds.is_some(), "pollTimeoutSeconds"),
                format!("{poll} is out of range"),
                Some("use 1 to 50 seconds".into()),
            ));
        }
        let webhook = pick(acct, top, |f| f.webhook_url.as_ref()).map(|url| {
            let secret = pick(acct, top, |f| f.webhook_secret.as_ref())
                .and_then(|s| self.secret(s, &at(acct.webhook_secret.is_some(), "webhookSecret"), issues));
            let well_formed = |s: &SecretString| {
                (1..=256).contains(&s.expose().len())
                    && s.expose().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            };
            if secret.as_ref().is_some_and(|s| !well_formed(s)) {
                issues.push(issue(
                    at(acct.webhook_secret.is_some(), "webhookSecret"),
                    "Telegram accepts 1-256 characters of A-Z, a-z, 0-9, _ and -",
                    None,
                ));
            }
            if !url.starts_with("https://") && !url.starts_with("http://") {
                issues.push(issue(at(acct.webhook_url.is_some(), "webhookUrl"), format!("`{url}` is not a URL"), None));
            }
            let path = pick(acct, top, |f| f.webhook_path.as_ref())
                .cloned()
                .unwrap_or_else(|| format!("/channels/{channel}/{account_id}/webhook"));
            WebhookSettings { url: url.clone(), secret, path }
        });
        if let Some(w) = &webhook
            && w.secret.is_none()
        {
            issues.push(issue(
                at(acct.webhook_url.is_some(), "webhookUrl"),
                "a webhook needs webhookSecret, so only Telegram can post to it",
                Some("set webhookSecret to a random string of letters and digits".into()),
            ));
        }
        let access = access(acct, top, &at, issues);
        let delivery = delivery(channel, acct, top, &at, issues);
        Some(ChannelAccount {
            channel: channel.to_string(),
            account_id: account_id.to_string(),
            name: pick(acct, top, |f| f.name.as_ref()).cloned(),
            token: token?,
            api_root,
            webhook,
            poll_timeout_secs: poll,
            access,
            delivery,
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

fn access(
    acct: &ChannelFile,
    top: &ChannelFile,
    at: &dyn Fn(bool, &str) -> String,
    issues: &mut Vec<Issue>,
) -> AccessSettings {
    let dm_raw = pick(acct, top, |f| f.dm_policy.as_ref()).map_or("pairing", |s| s.as_str());
    let dm_policy = match dm_raw {
        "pairing" => DmPolicy::Pairing,
        "allowlist" => DmPolicy::Allowlist,
        "open" => DmPolicy::Open,
        "disabled" => DmPolicy::Disabled,
        other => {
            issues.push(issue(
                at(acct.dm_policy.is_some(), "dmPolicy"),
                format!("`{other}` is not a DM policy"),
                Some("use pairing, allowlist, open or disabled".into()),
            ));
            DmPolicy::Pairing
        }
    };
    let allow_from = ids(if acct.allow_from.is_some() { &acct.allow_from } else { &top.allow_from });
    if dm_policy == DmPolicy::Open && !allow_from.iter().any(|a| a == "*") {
        issues.push(issue(
            at(acct.dm_policy.is_some(), "dmPolicy"),
            "dmPolicy \"open\" lets anyone talk to the assistant and needs \"*\" in allowFrom to say so",
            Some("add allowFrom: [\"*\"], or use pairing".into()),
        ));
    }
    let group_raw = pick(acct, top, |f| f.group_policy.as_ref()).map_or("allowlist", |s| s.as_str());
    let group_policy = match group_raw {
        "allowlist" => GroupPolicy::Allowlist,
        "open" => GroupPolicy::Open,
        "disabled" => GroupPolicy::Disabled,
        other => {
            issues.push(issue(
                at(acct.group_policy.is_some(), "groupPolicy"),
                format!("`{other}` is not a group policy"),
                Some("use allowlist, open or disabled".into()),
            ));
            GroupPolicy::Allowlist
        }
    };
    let group_allow_from =
        ids(if acct.group_allow_from.is_some() { &acct.group_allow_from } else { &top.group_allow_from });
    let groups_file = if acct.groups.is_some() { &acct.groups } else { &top.groups };
    let groups = groups_file
        .iter()
        .flatten()
        .map(|(id, g)| {
            let rule = GroupRule {
                require_mention: g.require_mention.unwrap_or(true),
                allow_from: g.allow_from.as_ref().map(|_| ids(&g.allow_from)),
                enabled: g.enabled.unwrap_or(true),
            };
            (id.clone(), rule)
        })
        .collect();
    let mention_patterns: Vec<String> = pick(acct, top, |f| f.mention_patterns.as_ref()).cloned().unwrap_or_default();
    for (i, p) in mention_patterns.iter().enumerate() {
        if let Err(e) = crate::pattern::Pattern::new(p) {
            issues.push(issue(
                format!("{}[{i}]", at(acct.mention_patterns.is_some(), "mentionPatterns")),
                format!("not a pattern: {e}"),
                None,
            ));
        }
    }
    AccessSettings { dm_policy, allow_from, group_policy, group_allow_from, groups, mention_patterns }
}

fn delivery(
    channel: &str,
    acct: &ChannelFile,
    top: &ChannelFile,
    at: &dyn Fn(bool, &str) -> String,
    issues: &mut Vec<Issue>,
) -> DeliverySettings {
    let (default_limit, max_limit) = match channel {
        "telegram" => (4000, 4096),
        _ => (4000, 4000),
    };
    let limit = *pick(acct, top, |f| f.text_chunk_limit.as_ref()).unwrap_or(&default_limit);
    let limit = if (100..=max_limit).contains(&limit) {
        limit
    } else {
        issues.push(issue(
            at(acct.text_chunk_limit.is_some(), "textChunkLimit"),
            format!("{limit} is out of range"),
            Some(format!("{channel} accepts 100 to {max_limit} characters per message")),
        ));
        default_limit
    };
    let chunk_mode = match pick(acct, top, |f| f.chunk_mode.as_ref()).map_or("length", |s| s.as_str()) {
        "length" => ChunkMode::Length,
        "newline" => ChunkMode::Newline,
        other => {
            issues.push(issue(
                at(acct.chunk_mode.is_some(), "chunkMode"),
                format!("`{other}` is not a chunk mode"),
                Some("use length or newline".into()),
            ));
            ChunkMode::Length
        }
    };
    let reply_to_mode = match pick(acct, top, |f| f.reply_to_mode.as_ref()).map_or("first", |s| s.as_str()) {
        "off" => ReplyToMode::Off,
        "first" | "batched" => ReplyToMode::First,
        "all" => ReplyToMode::All,
        other => {
            issues.push(issue(
                at(acct.reply_to_mode.is_some(), "replyToMode"),
                format!("`{other}` is not a reply mode"),
                Some("use off, first or all".into()),
            ));
            ReplyToMode::First
        }
    };
    let media_mb = *pick(acct, top, |f| f.media_max_mb.as_ref()).unwrap_or(&20);
    DeliverySettings {
        text_chunk_limit: limit,
        chunk_mode,
        reply_to_mode,
        response_prefix: pick(acct, top, |f| f.response_prefix.as_ref()).cloned().filter(|s| !s.is_empty()),
        media_max_bytes: media_mb.saturating_mul(1024 * 1024),
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
        };
        load(text, &ctx)
    }

    const TOKEN: &str = "123456789:AAEhBP0av28fWkDJT3w_T0mQ-h3kYhkkA0s";

    #[test]
    fn a_bare_telegram_section_is_one_default_account_with_safe_defaults() {
        let c = load_with("{ channels: { telegram: {} } }", &[("TELEGRAM_BOT_TOKEN", TOKEN)]).unwrap().config;
        let a = &c.channels.accounts[0];
        assert_eq!((a.channel.as_str(), a.account_id.as_str()), ("telegram", "default"));
        assert_eq!(a.token.expose(), TOKEN);
        assert_eq!(a.api_root, "https://api.telegram.org");
        assert_eq!(a.access.dm_policy, DmPolicy::Pairing);
        assert_eq!(a.access.group_policy, GroupPolicy::Allowlist);
        assert_eq!(a.delivery.text_chunk_limit, 4000);
        assert!(a.webhook.is_none());
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
        assert_eq!(by("personal").api_root, "http://127.0.0.1:9");
        assert!(!by("personal").access.groups["-100"].require_mention);
        assert_eq!(by("work").access.dm_policy, DmPolicy::Open);
        assert_eq!(by("work").token.expose(), "42:file-token-abcdefghijklmnopqrstuvwxyz");
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
}
