//! Tool profiles and groups: `tools.profile`, and `group:<name>` entries in `tools.allow`,
//! `tools.alsoAllow` and `tools.deny`, with OpenClaw's names.
//!
//! Resolution: the allow-list is `tools.allow` when given, else the profile's tools (`full`,
//! the default, allows everything); `tools.alsoAllow` adds to it; `tools.deny` removes from
//! it and always wins. Groups expand to the tool names they stand for, including tools this
//! build does not have yet, so a config written for OpenClaw keeps its meaning.
//!
//! This module only expands names; it knows nothing about what a tool does.

use serde::Deserialize;

/// `tools.profile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ToolProfile {
    /// Status only: `session_status`.
    Minimal,
    /// Files, commands, web, sessions, memory and scheduling.
    Coding,
    /// Sending messages and the session tools.
    Messaging,
    /// No restriction.
    Full,
}

/// The groups and what they contain.
pub const GROUPS: &[(&str, &[&str])] = &[
    ("group:fs", &["read", "write", "edit", "ls", "apply_patch"]),
    ("group:runtime", &["exec", "process", "code_execution"]),
    ("group:web", &["web_search", "x_search", "web_fetch"]),
    ("group:memory", &["memory_search", "memory_get"]),
    (
        "group:sessions",
        &[
            "sessions",
            "sessions_list",
            "sessions_history",
            "sessions_search",
            "sessions_send",
            "sessions_spawn",
            "sessions_yield",
            "subagents",
            "session_status",
        ],
    ),
    ("group:messaging", &["message"]),
    ("group:ui", &["browser", "screen", "dashboard", "terminal", "portal", "canvas", "show_widget"]),
    ("group:automation", &["heartbeat_respond", "cron", "gateway"]),
];

impl ToolProfile {
    /// The entries (groups or names) the profile allows; `None` for no restriction.
    fn entries(self) -> Option<&'static [&'static str]> {
        match self {
            ToolProfile::Minimal => Some(&["session_status"]),
            ToolProfile::Coding => {
                Some(&["group:fs", "group:runtime", "group:web", "group:sessions", "group:memory", "cron", "ask_user"])
            }
            ToolProfile::Messaging => {
                Some(&["group:messaging", "sessions_list", "sessions_history", "sessions_send", "session_status"])
            }
            ToolProfile::Full => None,
        }
    }
}

/// The tools a group stands for; `None` when `name` is not a known group.
pub fn group(name: &str) -> Option<&'static [&'static str]> {
    GROUPS.iter().find(|(g, _)| *g == name).map(|(_, tools)| *tools)
}

/// Expands group entries into tool names (deduplicated, order kept). Unknown groups are
/// returned in the error.
pub fn expand<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for e in entries {
        let names: Vec<&str> =
            if e.starts_with("group:") { group(e).ok_or_else(|| e.to_string())?.to_vec() } else { vec![e] };
        for n in names {
            if !out.iter().any(|o| o == n) {
                out.push(n.to_string());
            }
        }
    }
    Ok(out)
}

/// The effective allow-list (`None`: everything) from a profile, `tools.allow` and `tools.alsoAllow`.
pub fn allow_list(
    profile: Option<ToolProfile>,
    allow: Option<&[String]>,
    also_allow: &[String],
) -> Result<Option<Vec<String>>, String> {
    let base: Option<Vec<String>> = match allow {
        Some(a) => Some(expand(a.iter().map(String::as_str))?),
        None => match profile.and_then(ToolProfile::entries) {
            Some(entries) => Some(expand(entries.iter().copied())?),
            None => None,
        },
    };
    Ok(match base {
        None => None,
        Some(mut list) => {
            for n in expand(also_allow.iter().map(String::as_str))? {
                if !list.contains(&n) {
                    list.push(n);
                }
            }
            Some(list)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn profiles_and_groups_expand() {
        assert_eq!(allow_list(None, None, &[]).unwrap(), None);
        assert_eq!(allow_list(Some(ToolProfile::Full), None, &s(&["exec"])).unwrap(), None);
        assert_eq!(allow_list(Some(ToolProfile::Minimal), None, &[]).unwrap(), Some(s(&["session_status"])));
        let coding = allow_list(Some(ToolProfile::Coding), None, &[]).unwrap().unwrap();
        for t in ["read", "ls", "exec", "web_fetch", "memory_search", "sessions_list", "cron"] {
            assert!(coding.contains(&t.to_string()), "{t}");
        }
        assert!(!coding.contains(&"message".to_string()));
        let messaging = allow_list(Some(ToolProfile::Messaging), None, &s(&["group:memory"])).unwrap().unwrap();
        assert_eq!(
            messaging,
            s(&[
                "message",
                "sessions_list",
                "sessions_history",
                "sessions_send",
                "session_status",
                "memory_search",
                "memory_get"
            ])
        );
    }

    #[test]
    fn allow_replaces_the_profile_and_unknown_groups_are_named() {
        let list = allow_list(Some(ToolProfile::Coding), Some(&s(&["read", "group:fs"])), &[]).unwrap().unwrap();
        assert_eq!(list, s(&["read", "write", "edit", "ls", "apply_patch"]));
        assert_eq!(allow_list(None, Some(&s(&["group:nope"])), &[]).unwrap_err(), "group:nope");
        assert_eq!(expand(["group:bogus"]).unwrap_err(), "group:bogus");
    }
}
