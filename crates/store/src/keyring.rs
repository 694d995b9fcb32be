//! The OS keyring: the freedesktop Secret Service (GNOME Keyring, KWallet, KeePassXC), reached
//! through libsecret's `secret-tool`, as a home for the master key.
//!
//! Using the command keeps D-Bus and its C library out of the build: the keyring is used where a
//! desktop session provides one (`secret-tool` installed and a session bus to talk to), and
//! nothing changes where it does not. The secret goes to `secret-tool store` on standard input
//! and comes back from `secret-tool lookup` on standard output, never on a command line. A
//! locked keyring may show an unlock prompt; every call gives up after [`TIMEOUT`].
//!
//! This file must not log secrets, and must not decide where the master key lives (that is
//! [`crate::key_source`]).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a keyring call may take (an unlock prompt included).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Why the keyring could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the OS keyring (Secret Service) {0}")]
pub struct KeyringError(pub String);

/// A Secret Service reached through `secret-tool`.
#[derive(Debug, Clone)]
pub struct SecretService {
    program: PathBuf,
    /// Set for the child only (the bus address of a test session, for instance).
    env: Vec<(String, String)>,
}

impl SecretService {
    /// The Secret Service of this session, when there is one to talk to: `secret-tool` on
    /// `PATH` and a session bus (`DBUS_SESSION_BUS_ADDRESS`, or `$XDG_RUNTIME_DIR/bus`).
    pub fn detect() -> Option<SecretService> {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let bus = var("DBUS_SESSION_BUS_ADDRESS").is_some()
            || var("XDG_RUNTIME_DIR").is_some_and(|d| PathBuf::from(d).join("bus").exists());
        if !bus {
            return None;
        }
        let path = var("PATH")?;
        let program = std::env::split_paths(&path).map(|d| d.join("secret-tool")).find(|p| p.is_file())?;
        Some(SecretService { program, env: Vec::new() })
    }

    /// A Secret Service through a given `secret-tool` with extra environment for it.
    pub fn with_program(program: impl Into<PathBuf>, env: Vec<(String, String)>) -> SecretService {
        SecretService { program: program.into(), env }
    }

    /// The secret stored under `attributes`, or `None` when there is none.
    pub fn lookup(&self, attributes: &[(&str, &str)]) -> Result<Option<String>, KeyringError> {
        let (code, out, err) = self.run(&["lookup"], attributes, None)?;
        match code {
            0 => Ok(Some(out)),
            // `secret-tool lookup` exits 1 without a message when nothing matches.
            1 if err.trim().is_empty() => Ok(None),
            _ => Err(KeyringError(format!("could not be read: {}", describe(&err, code)))),
        }
    }

    /// Stores `secret` under `attributes` (replacing what was there), labelled `label`.
    pub fn store(&self, label: &str, attributes: &[(&str, &str)], secret: &str) -> Result<(), KeyringError> {
        let (code, _, err) = self.run(&["store", "--label", label], attributes, Some(secret))?;
        if code == 0 {
            Ok(())
        } else {
            Err(KeyringError(format!("refused to store the key: {}", describe(&err, code))))
        }
    }

    /// Removes what is stored under `attributes`.
    pub fn clear(&self, attributes: &[(&str, &str)]) -> Result<(), KeyringError> {
        let (code, _, err) = self.run(&["clear"], attributes, None)?;
        match code {
            0 => Ok(()),
            1 if err.trim().is_empty() => Ok(()),
            _ => Err(KeyringError(format!("could not remove the key: {}", describe(&err, code)))),
        }
    }

    /// Runs `secret-tool <args> <attr value>…`, feeding `input`; `(exit code, stdout, stderr)`.
    fn run(
        &self,
        args: &[&str],
        attributes: &[(&str, &str)],
        input: Option<&str>,
    ) -> Result<(i32, String, String), KeyringError> {
        let mut cmd = Command::new(&self.program);
        cmd.args(args);
        for (k, v) in attributes {
            cmd.arg(k).arg(v);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| KeyringError(format!("cannot be reached: {} did not start: {e}", self.program.display())))?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(text.as_bytes()).map_err(|e| KeyringError(format!("cannot be reached: {e}")))?;
        }
        // Read both pipes off this thread so a chatty child cannot block on a full pipe.
        let reader = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut s = String::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_string(&mut s);
                }
                s
            })
        };
        let out = reader(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
        let err = reader(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() >= TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(KeyringError(format!(
                        "did not answer in {} s (is it locked and waiting for a password?)",
                        TIMEOUT.as_secs()
                    )));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(KeyringError(format!("cannot be reached: {e}"))),
            }
        };
        let out = out.join().unwrap_or_default();
        let err = err.join().unwrap_or_default();
        Ok((status.code().unwrap_or(-1), out, err))
    }
}

fn describe(stderr: &str, code: i32) -> String {
    let msg = stderr.trim().trim_start_matches("secret-tool:").trim();
    if msg.is_empty() { format!("secret-tool exited with {code}") } else { msg.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_is_a_clear_error() {
        let s = SecretService::with_program("/nonexistent/secret-tool", vec![]);
        let e = s.lookup(&[("application", "clawline")]).unwrap_err();
        assert!(e.to_string().contains("did not start"), "{e}");
    }

    #[test]
    fn messages_lose_the_program_prefix() {
        assert_eq!(describe("secret-tool: Cannot autolaunch D-Bus\n", 1), "Cannot autolaunch D-Bus");
        assert_eq!(describe("", 2), "secret-tool exited with 2");
    }
}
