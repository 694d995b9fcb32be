//! Telling replayed IRC lines from new ones, with IRCv3 `server-time`.
//!
//! Plain IRC has no history: a message said while clawline was away is never seen, and nothing
//! is seen twice. A bouncer (ZNC, soju) or a server with history changes that: on connect it
//! plays its buffer back, stamped with the time each line was first said (`@time=…`). Answered
//! as new, that buffer would be answered again after every reconnect. So when the server stamps
//! lines, the account keeps a watermark — the newest server time it journaled — in the journal
//! cursor, and a connection ignores stamped messages older than the watermark it started with.
//! What was said while clawline was away (newer than the watermark) is answered. The first start
//! ever has no watermark; it uses the local clock, so nothing from before clawline first
//! connected is answered (a server clock behind the local one by more than a moment could hide a
//! message said in the first seconds of that first start). Lines without a stamp are always new.
//!
//! Pure: no I/O. This file does not decide who is answered.

use super::api::Message;

const PREFIX: &str = "servertime:";

/// The server time of a line (`@time=2026-12-03T10:00:00.000Z`), Unix ms.
pub fn server_time_ms(m: &Message) -> Option<i64> {
    let t = humantime::parse_rfc3339(m.tag("time")?).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

/// The journal cursor that stores a watermark.
pub fn cursor(watermark_ms: i64) -> String {
    format!("{PREFIX}{watermark_ms}")
}

/// The watermark in a stored cursor (`None` for no cursor or one this file did not write).
pub fn watermark(cursor: Option<&str>) -> Option<i64> {
    cursor?.strip_prefix(PREFIX)?.parse().ok()
}

/// Whether a message stamped `at` is older than what the connection had already seen.
pub fn is_replayed(at: Option<i64>, watermark_ms: i64) -> bool {
    at.is_some_and(|t| t < watermark_ms)
}

/// A platform id for a stamped line without `msgid`: the same line played back twice gets the
/// same id, so the journal drops the repeat.
pub fn stamped_id(at: i64, nick: &str, target: &str, text: &str) -> String {
    // FNV-1a: stable across builds and platforms, which std's hasher does not promise.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("t:{at}:{nick}:{target}:{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irc::api::parse;

    #[test]
    fn stamps_parse_and_watermarks_round_trip() {
        let m = parse("@time=2026-12-03T10:00:00.250Z :a!a@h PRIVMSG #c :hi").unwrap();
        assert_eq!(server_time_ms(&m), Some(1_796_292_000_250));
        assert_eq!(server_time_ms(&parse(":a!a@h PRIVMSG #c :hi").unwrap()), None);
        assert_eq!(server_time_ms(&parse("@time=yesterday :a!a@h PRIVMSG #c :hi").unwrap()), None);
        assert_eq!(watermark(Some(&cursor(42))), Some(42));
        assert_eq!(watermark(Some("something-else")), None);
        assert_eq!(watermark(None), None);
    }

    #[test]
    fn only_stamped_lines_older_than_the_watermark_are_replays() {
        assert!(is_replayed(Some(99), 100));
        assert!(!is_replayed(Some(100), 100), "a tie is journaled; its stable id drops a repeat");
        assert!(!is_replayed(None, 100), "unstamped lines are live");
    }

    #[test]
    fn the_same_line_gets_the_same_id_and_another_line_another() {
        let a = stamped_id(1, "alice", "#ops", "deploy?");
        assert_eq!(a, stamped_id(1, "alice", "#ops", "deploy?"));
        assert_ne!(a, stamped_id(1, "alice", "#ops", "deploy!"));
        assert_ne!(a, stamped_id(2, "alice", "#ops", "deploy?"));
    }
}
