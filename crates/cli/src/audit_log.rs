//! The CLI's side of the audit log: commands that change credentials, tokens, config,
//! pairing or secrets leave a row in `<state>/observability.sqlite`, whatever their outcome.
//!
//! Which commands count and what they acted on is decided in one place ([`of`]), from the
//! parsed command line, so no command can forget; the row is written after the command ran
//! and before the process exits. Never the values: a `config set` row names the key, a
//! `secrets set` row the secret's id.

use crate::cli::{AuthCommand, Command, ConfigCommand, PairingCommand, SecretsCommand};
use crate::setup::Paths;

/// `(action, target)` when `cmd` is audited.
pub fn of(cmd: &Command) -> Option<(&'static str, String)> {
    Some(match cmd {
        Command::Config(ConfigCommand::Set { path, .. }) => ("config.set", path.clone()),
        Command::Token(t) if t.rotate => ("token.rotate", String::new()),
        Command::Auth(AuthCommand::Add { provider, name, .. }) => ("auth.add", format!("{provider}:{name}")),
        Command::Auth(AuthCommand::Login { provider, name, .. }) => ("auth.login", format!("{provider}:{name}")),
        Command::Auth(AuthCommand::Remove { profile, .. }) => ("auth.remove", profile.clone()),
        Command::Pairing(PairingCommand::Approve { channel, code, .. }) => {
            ("pairing.approve", format!("channel={channel} code={code}"))
        }
        Command::Pairing(PairingCommand::Dismiss { channel, code }) => {
            ("pairing.dismiss", format!("channel={channel} code={code}"))
        }
        Command::Secrets(SecretsCommand::Set { id, .. }) => ("secrets.set", id.clone()),
        Command::Secrets(SecretsCommand::Rm { id }) => ("secrets.rm", id.clone()),
        _ => return None,
    })
}

/// Writes the row (blocking on a helper thread until it is on disk). A state directory that
/// does not exist yet gets no row: nothing was changed in it.
pub async fn record(paths: &Paths, action: &str, target: &str, outcome: &str) {
    if !paths.state.root.exists() {
        return;
    }
    let path = paths.state.observability();
    let row = clawline_observe::AuditRow::now("cli", action, target, outcome.chars().take(300).collect::<String>());
    let done = tokio::task::spawn_blocking(move || {
        let journal = clawline_observe::Journal::open(&path)?;
        journal.record(clawline_observe::Record::Audit(row));
        journal.flush(std::time::Duration::from_secs(5))
    })
    .await;
    if !matches!(done, Ok(Ok(()))) {
        eprintln!("warning: could not write the audit log row for `{action}`");
    }
}
