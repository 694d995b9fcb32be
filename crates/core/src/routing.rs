//! Where a channel conversation goes: which agent answers it (`bindings[]`) and which session
//! key it lives under (`session.dmScope`, `session.groupScope`, `session.identityLinks`).
//!
//! The rules are OpenClaw's (PROTOCOL-AND-STATE §4.1), so a conversation keeps its session
//! when a user moves between the two. The most specific binding wins: exact peer, then the
//! parent peer (a thread's channel), then a peer wildcard, then guild with roles, guild, team,
//! a named account, the channel; with none, the default agent. Pure: no I/O.

use crate::config::channels::{Binding, DmScope, GroupScope, SessionRouting};
use crate::session_key::SessionKey;

/// What kind of conversation a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerKind {
    /// A one-to-one chat with the assistant.
    Direct,
    /// A group chat (Telegram groups, Matrix rooms, IRC channels).
    Group,
    /// A channel inside a server or workspace (Discord, Slack).
    Channel,
}

impl PeerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerKind::Direct => "direct",
            PeerKind::Group => "group",
            PeerKind::Channel => "channel",
        }
    }
}

/// A thread inside a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThreadKind {
    /// A reply thread (Discord, Slack, Matrix).
    Thread,
    /// A Telegram forum topic.
    Topic,
}

/// The facts routing looks at.
#[derive(Debug, Clone, Copy)]
pub struct Conversation<'a> {
    pub channel: &'a str,
    pub account_id: &'a str,
    pub kind: PeerKind,
    /// The chat's id; for a direct chat, the sender's.
    pub peer_id: &'a str,
    /// The conversation this one sits in (a Discord thread's channel).
    pub parent: Option<(PeerKind, &'a str)>,
    pub thread: Option<(ThreadKind, &'a str)>,
    pub guild_id: Option<&'a str>,
    pub team_id: Option<&'a str>,
    pub roles: &'a [String],
}

/// How specific a binding is for a conversation; larger wins. `None`: it does not apply.
fn rank(b: &Binding, c: &Conversation<'_>) -> Option<u8> {
    if !b.channel.eq_ignore_ascii_case(c.channel) {
        return None;
    }
    if b.account_id.as_deref().is_some_and(|a| a != c.account_id) {
        return None;
    }
    if let Some((kind, id)) = &b.peer {
        let same_kind = |k: PeerKind| kind == k.as_str();
        if same_kind(c.kind) && id == c.peer_id {
            return Some(8);
        }
        if let Some((pk, pid)) = c.parent
            && same_kind(pk)
            && id == pid
        {
            return Some(7);
        }
        if same_kind(c.kind) && id == "*" {
            return Some(6);
        }
        return None;
    }
    if let Some(g) = &b.guild_id {
        if c.guild_id != Some(g.as_str()) {
            return None;
        }
        if b.roles.is_empty() {
            return Some(4);
        }
        return b.roles.iter().any(|r| c.roles.contains(r)).then_some(5);
    }
    if let Some(t) = &b.team_id {
        return (c.team_id == Some(t.as_str())).then_some(3);
    }
    if !b.roles.is_empty() {
        return None;
    }
    Some(if b.account_id.is_some() { 2 } else { 1 })
}

/// The agent that answers `c`: the most specific binding's (the first written among equals),
/// else `default_agent`.
pub fn agent_for<'a>(bindings: &'a [Binding], default_agent: &'a str, c: &Conversation<'_>) -> &'a str {
    let mut best: Option<(u8, &Binding)> = None;
    for b in bindings {
        if let Some(r) = rank(b, c)
            && best.is_none_or(|(br, _)| r > br)
        {
            best = Some((r, b));
        }
    }
    best.map_or(default_agent, |(_, b)| b.agent_id.as_str())
}

/// A key part made safe: lowercase, and characters a session key cannot hold become `_`.
fn part(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || "_.-@+".contains(c) { c } else { '_' }
        })
        .collect();
    if cleaned.is_empty() { "_".to_string() } else { cleaned }
}

/// The session key of conversation `c` for `agent_id`.
pub fn session_key(agent_id: &str, routing: &SessionRouting, c: &Conversation<'_>) -> SessionKey {
    let channel = part(c.channel);
    match c.kind {
        PeerKind::Direct => {
            let peer = part(c.peer_id);
            let linked = routing.identity_links.get(&format!("{channel}:{}", c.peer_id.to_ascii_lowercase()));
            let peer = linked.map_or(peer, |canonical| part(canonical));
            match routing.dm_scope {
                DmScope::Main => SessionKey::main(agent_id),
                DmScope::PerPeer => SessionKey::scoped(agent_id, &format!("direct:{peer}")),
                DmScope::PerChannelPeer => SessionKey::scoped(agent_id, &format!("{channel}:direct:{peer}")),
                DmScope::PerAccountChannelPeer => {
                    SessionKey::scoped(agent_id, &format!("{channel}:{}:direct:{peer}", part(c.account_id)))
                }
            }
        }
        PeerKind::Group | PeerKind::Channel => {
            if routing.group_scope == GroupScope::Main {
                return SessionKey::main(agent_id);
            }
            let mut rest = format!("{channel}:{}:{}", c.kind.as_str(), part(c.peer_id));
            if let Some((kind, id)) = c.thread {
                let label = match kind {
                    ThreadKind::Thread => "thread",
                    ThreadKind::Topic => "topic",
                };
                rest.push_str(&format!(":{label}:{}", part(id)));
            }
            SessionKey::scoped(agent_id, &rest)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv<'a>(kind: PeerKind, peer: &'a str) -> Conversation<'a> {
        Conversation {
            channel: "telegram",
            account_id: "default",
            kind,
            peer_id: peer,
            parent: None,
            thread: None,
            guild_id: None,
            team_id: None,
            roles: &[],
        }
    }

    fn bind(agent: &str, f: impl FnOnce(&mut Binding)) -> Binding {
        let mut b = Binding {
            agent_id: agent.into(),
            channel: "telegram".into(),
            account_id: None,
            peer: None,
            guild_id: None,
            team_id: None,
            roles: vec![],
        };
        f(&mut b);
        b
    }

    #[test]
    fn dm_scopes_give_openclaws_keys() {
        let mut r = SessionRouting::default();
        let c = conv(PeerKind::Direct, "123456789");
        assert_eq!(session_key("main", &r, &c).as_str(), "agent:main:main");
        r.dm_scope = DmScope::PerPeer;
        assert_eq!(session_key("main", &r, &c).as_str(), "agent:main:direct:123456789");
        r.dm_scope = DmScope::PerChannelPeer;
        assert_eq!(session_key("main", &r, &c).as_str(), "agent:main:telegram:direct:123456789");
        r.dm_scope = DmScope::PerAccountChannelPeer;
        assert_eq!(session_key("main", &r, &c).as_str(), "agent:main:telegram:default:direct:123456789");
        r.dm_scope = DmScope::PerPeer;
        r.identity_links.insert("telegram:123456789".into(), "alice".into());
        assert_eq!(session_key("main", &r, &c).as_str(), "agent:main:direct:alice");
    }

    #[test]
    fn groups_threads_and_topics() {
        let mut r = SessionRouting::default();
        let mut c = conv(PeerKind::Group, "-1001234");
        assert_eq!(session_key("main", &r, &c).as_str(), "agent:main:telegram:group:-1001234");
        c.thread = Some((ThreadKind::Topic, "7"));
        assert_eq!(session_key("main", &r, &c).as_str(), "agent:main:telegram:group:-1001234:topic:7");
        let mut d = conv(PeerKind::Channel, "C0ABC");
        d.channel = "slack";
        d.thread = Some((ThreadKind::Thread, "1700000000.0001"));
        assert_eq!(session_key("ops", &r, &d).as_str(), "agent:ops:slack:channel:c0abc:thread:1700000000.0001");
        r.group_scope = GroupScope::Main;
        assert_eq!(session_key("main", &r, &c).as_str(), "agent:main:main");
        // Ids a key cannot hold are made safe, never refused.
        let m = Conversation { channel: "matrix", ..conv(PeerKind::Group, "!Room:Example.org") };
        assert_eq!(
            session_key("main", &SessionRouting::default(), &m).as_str(),
            "agent:main:matrix:group:_room_example.org"
        );
    }

    #[test]
    fn the_most_specific_binding_wins() {
        let bindings = vec![
            bind("channel", |_| {}),
            bind("account", |b| b.account_id = Some("default".into())),
            bind("wild", |b| b.peer = Some(("group".into(), "*".into()))),
            bind("exact", |b| b.peer = Some(("group".into(), "-42".into()))),
            bind("parent", |b| b.peer = Some(("channel".into(), "C1".into()))),
            bind("other-account", |b| b.account_id = Some("work".into())),
        ];
        assert_eq!(agent_for(&bindings, "main", &conv(PeerKind::Group, "-42")), "exact");
        assert_eq!(agent_for(&bindings, "main", &conv(PeerKind::Group, "-43")), "wild");
        assert_eq!(agent_for(&bindings, "main", &conv(PeerKind::Direct, "5")), "account");
        let mut thread = conv(PeerKind::Channel, "T9");
        thread.parent = Some((PeerKind::Channel, "C1"));
        assert_eq!(agent_for(&bindings, "main", &thread), "parent");
        let mut elsewhere = conv(PeerKind::Direct, "5");
        elsewhere.account_id = "personal";
        assert_eq!(agent_for(&bindings, "main", &elsewhere), "channel");
        elsewhere.channel = "discord";
        assert_eq!(agent_for(&bindings, "main", &elsewhere), "main");
    }

    #[test]
    fn guilds_roles_and_teams() {
        let bindings = vec![
            Binding { channel: "discord".into(), ..bind("guild", |b| b.guild_id = Some("G".into())) },
            Binding {
                channel: "discord".into(),
                ..bind("mods", |b| {
                    b.guild_id = Some("G".into());
                    b.roles = vec!["mod".into()];
                })
            },
            Binding { channel: "slack".into(), ..bind("team", |b| b.team_id = Some("T1".into())) },
        ];
        let roles = vec!["mod".to_string()];
        let mut c = Conversation { channel: "discord", guild_id: Some("G"), ..conv(PeerKind::Channel, "C") };
        assert_eq!(agent_for(&bindings, "main", &c), "guild");
        c.roles = &roles;
        assert_eq!(agent_for(&bindings, "main", &c), "mods");
        let s = Conversation { channel: "slack", team_id: Some("T1"), ..conv(PeerKind::Channel, "C") };
        assert_eq!(agent_for(&bindings, "main", &s), "team");
    }
}
