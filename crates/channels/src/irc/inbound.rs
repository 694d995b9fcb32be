//! IRC `PRIVMSG` lines → normalized inbound messages.
//!
//! A message to our nick is a direct conversation with its sender; a message to a channel is a
//! group conversation in that channel. IRC has no stable user ids, so the sender's id is their
//! nick, case-folded (say so in `allowFrom`; on networks without enforced nick registration a
//! nick can be taken by someone else). Its "message id" — what a reply points at — is the
//! sender's nick too, since IRC replies address people, not messages. CTCP requests (VERSION,
//! PING, ACTION, …) and NOTICEs are never answered. Pure: no I/O.

use clawline_core::routing::PeerKind;

use super::api::{Message, ctcp, fold};
use super::replay;
use crate::message::{InboundMessage, Sender};

/// Whether `text` addresses `nick`: `nick: …`, `nick, …`, or the nick as a word anywhere.
pub fn addresses(text: &str, nick: &str) -> bool {
    let nick = fold(nick);
    let folded = fold(text);
    folded.split(|c: char| !(c.is_ascii_alphanumeric() || "-_[]\\`^{}|".contains(c))).any(|w| w == nick)
}

/// The normalized message of a `PRIVMSG`, if it is one clawline answers. Its platform id is the
/// server's `msgid` tag when it sends one, else one made from the line's `server-time` stamp
/// (so a replayed line repeats it), else one `unique` makes.
pub fn to_inbound(
    m: &Message,
    account_id: &str,
    own_nick: &str,
    unique: &mut dyn FnMut() -> String,
) -> Option<InboundMessage> {
    if m.command != "PRIVMSG" {
        return None;
    }
    let (target, text) = (m.param(0)?, m.param(1)?);
    if ctcp(text).is_some() {
        return None;
    }
    let nick = m.nick()?;
    if fold(nick) == fold(own_nick) {
        return None;
    }
    let direct = fold(target) == fold(own_nick);
    let (peer_kind, peer_id) = if direct { (PeerKind::Direct, fold(nick)) } else { (PeerKind::Group, fold(target)) };
    let at = replay::server_time_ms(m);
    let platform_id = match (m.tag("msgid"), at) {
        (Some(id), _) if !id.is_empty() => format!("msgid:{id}"),
        (_, Some(at)) => replay::stamped_id(at, &fold(nick), &fold(target), text),
        _ => unique(),
    };
    Some(InboundMessage {
        channel: "irc".into(),
        account_id: account_id.to_string(),
        platform_id,
        message_id: nick.to_string(),
        sender: Sender { id: fold(nick), name: nick.to_string(), username: None, is_bot: false },
        peer_kind,
        peer_id,
        thread: None,
        parent: None,
        guild_id: None,
        team_id: None,
        roles: Vec::new(),
        mentioned: !direct && addresses(text, own_nick),
        text: text.to_string(),
        attachments: Vec::new(),
        reply_to: None,
        button: None,
        timestamp_ms: at.unwrap_or_else(clawline_store::now_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irc::api::parse;

    fn one(line: &str) -> Option<InboundMessage> {
        let mut n = 0;
        to_inbound(&parse(line).unwrap(), "default", "Claw", &mut || {
            n += 1;
            format!("u{n}")
        })
    }

    #[test]
    fn private_and_channel_messages() {
        let d = one(":Alice!a@h PRIVMSG claw :hi there").unwrap();
        assert_eq!(
            (d.peer_kind, d.peer_id.as_str(), d.sender.id.as_str(), d.message_id.as_str()),
            (PeerKind::Direct, "alice", "alice", "Alice")
        );
        let g = one(":Alice!a@h PRIVMSG #Ops :claw: deploy?").unwrap();
        assert_eq!((g.peer_kind, g.peer_id.as_str()), (PeerKind::Group, "#ops"));
        assert!(g.mentioned);
        assert!(!one(":Alice!a@h PRIVMSG #ops :clawing at it").unwrap().mentioned);
        let tagged = one("@msgid=xyz :Alice!a@h PRIVMSG #ops :x").unwrap();
        assert_eq!(tagged.platform_id, "msgid:xyz");
        let line = "@time=2026-12-03T10:00:00.000Z :Alice!a@h PRIVMSG #ops :x";
        let (a, b) = (one(line).unwrap(), one(line).unwrap());
        assert_eq!(a.platform_id, b.platform_id, "a stamped line played back twice is the same message");
        assert_eq!(a.timestamp_ms, 1_796_292_000_000);
    }

    #[test]
    fn ctcp_notices_and_our_own_lines_are_ignored() {
        assert!(one(":Alice!a@h PRIVMSG claw :\x01VERSION\x01").is_none());
        assert!(one(":Alice!a@h PRIVMSG #ops :\x01ACTION waves\x01").is_none());
        assert!(one(":Alice!a@h NOTICE claw :hello").is_none());
        assert!(one(":claw!c@h PRIVMSG #ops :echo").is_none());
        assert!(one(":server PRIVMSG").is_none());
    }
}
