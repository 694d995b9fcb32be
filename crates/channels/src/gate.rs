//! The access gate: whether a journaled message is answered, kept as context, answered with a
//! pairing code, or dropped — OpenClaw's `dmPolicy` / `groupPolicy` rules (PROTOCOL-AND-STATE §5).
//!
//! Direct messages: `disabled` drops; `open` answers; otherwise a sender in `allowFrom` or
//! approved by pairing is answered, and anyone else is dropped (`allowlist`) or offered a
//! pairing code (`pairing`, the default). Groups: `disabled` drops; `allowlist` (the default)
//! answers only in groups listed under `groups` (or `"*"`); a group's `allowFrom` (else
//! `groupAllowFrom`) limits who may address the assistant; with `requireMention` (the default)
//! a message that does not mention the assistant is kept as context only. Messages from bots
//! are dropped, so two assistants cannot talk each other into a loop. The decision is pure;
//! the caller looks up pairing approvals.

use clawline_core::config::channels::{AccessSettings, DmPolicy, GroupPolicy};
use clawline_core::pattern::Pattern;
use clawline_core::routing::PeerKind;

use crate::message::InboundMessage;

/// What to do with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Answer,
    /// Not addressed to the assistant: recorded, not answered.
    ContextOnly(String),
    /// An unknown sender under `dmPolicy: "pairing"`.
    Pair,
    Drop(String),
}

/// One account's compiled rules.
#[derive(Debug, Clone)]
pub struct Gate {
    access: AccessSettings,
    patterns: Vec<Pattern>,
}

fn listed(list: &[String], id: &str) -> bool {
    list.iter().any(|a| a == "*" || a == id)
}

impl Gate {
    /// Compiles the account's rules (patterns were checked when the config loaded; a pattern
    /// that fails here is skipped).
    pub fn new(access: AccessSettings) -> Gate {
        let patterns = access.mention_patterns.iter().filter_map(|p| Pattern::new(p).ok()).collect();
        Gate { access, patterns }
    }

    /// Whether the sender is allowed to DM by the config alone (without pairing approvals).
    pub fn dm_allowed_by_config(&self, sender_id: &str) -> bool {
        listed(&self.access.allow_from, sender_id)
    }

    /// Whether a DM needs to know about pairing approvals to be decided.
    pub fn needs_approvals(&self, msg: &InboundMessage) -> bool {
        msg.peer_kind == PeerKind::Direct
            && matches!(self.access.dm_policy, DmPolicy::Pairing | DmPolicy::Allowlist)
            && !self.dm_allowed_by_config(&msg.sender.id)
    }

    /// Decides; `approved` says whether pairing approved this sender for the account.
    pub fn decide(&self, msg: &InboundMessage, approved: bool) -> Verdict {
        if msg.sender.is_bot {
            return Verdict::Drop("sent by a bot".into());
        }
        match msg.peer_kind {
            PeerKind::Direct => self.direct(msg, approved),
            PeerKind::Group | PeerKind::Channel => self.group(msg),
        }
    }

    fn direct(&self, msg: &InboundMessage, approved: bool) -> Verdict {
        match self.access.dm_policy {
            DmPolicy::Disabled => Verdict::Drop("direct messages are disabled (dmPolicy: disabled)".into()),
            DmPolicy::Open => Verdict::Answer,
            _ if approved || self.dm_allowed_by_config(&msg.sender.id) => Verdict::Answer,
            DmPolicy::Allowlist => Verdict::Drop(format!("sender {} is not in allowFrom", msg.sender.id)),
            DmPolicy::Pairing => Verdict::Pair,
        }
    }

    fn group(&self, msg: &InboundMessage) -> Verdict {
        let a = &self.access;
        if a.group_policy == GroupPolicy::Disabled {
            return Verdict::Drop("groups are disabled (groupPolicy: disabled)".into());
        }
        // A thread follows its own rule, else its channel's (a Discord thread of a listed channel).
        let parent = msg.parent.as_ref().map(|(_, id)| id.as_str());
        let rule =
            a.groups.get(&msg.peer_id).or_else(|| parent.and_then(|p| a.groups.get(p))).or_else(|| a.groups.get("*"));
        if a.group_policy == GroupPolicy::Allowlist && rule.is_none() {
            return Verdict::Drop(format!("group {} is not listed under groups (groupPolicy: allowlist)", msg.peer_id));
        }
        if rule.is_some_and(|r| !r.enabled) {
            return Verdict::Drop(format!("group {} is switched off", msg.peer_id));
        }
        let senders = rule.and_then(|r| r.allow_from.as_deref()).unwrap_or(&a.group_allow_from);
        if !senders.is_empty() && !listed(senders, &msg.sender.id) {
            return Verdict::Drop(format!("sender {} may not address the assistant in this group", msg.sender.id));
        }
        let require_mention = rule.is_none_or(|r| r.require_mention);
        if require_mention && !self.mentioned(msg) {
            return Verdict::ContextOnly("not mentioned (requireMention)".into());
        }
        Verdict::Answer
    }

    /// The platform saw a mention, the message replies to the assistant, or a pattern matches.
    pub fn mentioned(&self, msg: &InboundMessage) -> bool {
        msg.mentioned
            || msg.reply_to.as_ref().is_some_and(|r| r.to_assistant)
            || self.patterns.iter().any(|p| p.is_match(&msg.text))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use clawline_core::config::channels::GroupRule;

    use super::*;
    use crate::message::{ReplyRef, Sender};

    fn access() -> AccessSettings {
        AccessSettings {
            dm_policy: DmPolicy::Pairing,
            allow_from: vec!["100".into()],
            group_policy: GroupPolicy::Allowlist,
            group_allow_from: vec![],
            groups: BTreeMap::new(),
            mention_patterns: vec![r"\bclaw\b".into()],
        }
    }

    fn msg(kind: PeerKind, sender: &str, text: &str) -> InboundMessage {
        InboundMessage {
            channel: "telegram".into(),
            account_id: "default".into(),
            platform_id: "1:1".into(),
            message_id: "1".into(),
            sender: Sender { id: sender.into(), name: "x".into(), username: None, is_bot: false },
            peer_kind: kind,
            peer_id: if kind == PeerKind::Direct { sender.into() } else { "-5".into() },
            thread: None,
            parent: None,
            guild_id: None,
            team_id: None,
            roles: vec![],
            text: text.into(),
            attachments: vec![],
            mentioned: false,
            reply_to: None,
            button: None,
            timestamp_ms: 0,
        }
    }

    #[test]
    fn direct_messages_follow_the_dm_policy() {
        let mut a = access();
        let g = Gate::new(a.clone());
        assert_eq!(g.decide(&msg(PeerKind::Direct, "100", "hi"), false), Verdict::Answer);
        assert_eq!(g.decide(&msg(PeerKind::Direct, "7", "hi"), false), Verdict::Pair);
        assert_eq!(g.decide(&msg(PeerKind::Direct, "7", "hi"), true), Verdict::Answer);
        assert!(g.needs_approvals(&msg(PeerKind::Direct, "7", "hi")));
        assert!(!g.needs_approvals(&msg(PeerKind::Direct, "100", "hi")));
        a.dm_policy = DmPolicy::Allowlist;
        let g = Gate::new(a.clone());
        assert!(matches!(g.decide(&msg(PeerKind::Direct, "7", "hi"), false), Verdict::Drop(_)));
        a.dm_policy = DmPolicy::Disabled;
        assert!(matches!(Gate::new(a.clone()).decide(&msg(PeerKind::Direct, "100", "hi"), true), Verdict::Drop(_)));
        a.dm_policy = DmPolicy::Open;
        assert_eq!(Gate::new(a).decide(&msg(PeerKind::Direct, "7", "hi"), false), Verdict::Answer);
        let mut bot = msg(PeerKind::Direct, "100", "hi");
        bot.sender.is_bot = true;
        assert!(matches!(g.decide(&bot, true), Verdict::Drop(_)));
    }

    #[test]
    fn groups_need_a_listing_an_allowed_sender_and_a_mention() {
        let mut a = access();
        let g = Gate::new(a.clone());
        assert!(matches!(g.decide(&msg(PeerKind::Group, "7", "hi"), false), Verdict::Drop(_)));
        a.groups.insert("-5".into(), GroupRule { require_mention: true, allow_from: None, enabled: true });
        let g = Gate::new(a.clone());
        assert!(matches!(g.decide(&msg(PeerKind::Group, "7", "hi all"), false), Verdict::ContextOnly(_)));
        assert_eq!(g.decide(&msg(PeerKind::Group, "7", "hey Claw, help"), false), Verdict::Answer);
        let mut m = msg(PeerKind::Group, "7", "hi");
        m.mentioned = true;
        assert_eq!(g.decide(&m, false), Verdict::Answer);
        let mut r = msg(PeerKind::Group, "7", "and this?");
        r.reply_to = Some(ReplyRef { message_id: "9".into(), to_assistant: true, text: None });
        assert_eq!(g.decide(&r, false), Verdict::Answer);
        a.groups.insert(
            "-5".into(),
            GroupRule { require_mention: false, allow_from: Some(vec!["8".into()]), enabled: true },
        );
        let g = Gate::new(a.clone());
        assert!(matches!(g.decide(&msg(PeerKind::Group, "7", "hi"), false), Verdict::Drop(_)));
        assert_eq!(g.decide(&msg(PeerKind::Group, "8", "hi"), false), Verdict::Answer);
        a.groups.clear();
        a.group_policy = GroupPolicy::Open;
        let g = Gate::new(a.clone());
        assert!(matches!(g.decide(&msg(PeerKind::Group, "7", "hi"), false), Verdict::ContextOnly(_)));
        a.group_policy = GroupPolicy::Disabled;
        assert!(matches!(Gate::new(a).decide(&m, false), Verdict::Drop(_)));
    }
}
