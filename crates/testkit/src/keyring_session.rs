//! A private desktop keyring for tests: a session D-Bus (`dbus-daemon`) with a real GNOME
//! Keyring (`gnome-keyring-daemon`, Secret Service component) unlocked on it, in a temporary home.
//!
//! [`KeyringSession::start`] needs Debian's `dbus-daemon`, `gnome-keyring` and `libsecret-tools`
//! (`scripts/test` installs them); it returns `Err` with what is missing otherwise, so a test can
//! say why it did not run. Give a child process [`KeyringSession::env`] to put it in the session.
//! Dropping the session stops both daemons. Nothing here touches the user's own keyring.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running private session bus with an unlocked keyring.
pub struct KeyringSession {
    _home: tempfile::TempDir,
    bus: String,
    dbus: Child,
    keyring: Child,
    secret_tool: PathBuf,
}

impl Drop for KeyringSession {
    fn drop(&mut self) {
        for child in [&mut self.keyring, &mut self.dbus] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

impl KeyringSession {
    /// Starts the bus and the keyring and waits until the keyring answers.
    pub fn start() -> Result<KeyringSession, String> {
        let missing: Vec<&str> =
            ["dbus-daemon", "gnome-keyring-daemon", "secret-tool"].into_iter().filter(|p| find(p).is_none()).collect();
        if !missing.is_empty() {
            return Err(format!(
                "not installed: {} (apt-get install dbus-daemon gnome-keyring libsecret-tools)",
                missing.join(", ")
            ));
        }
        let home = tempfile::tempdir().map_err(|e| e.to_string())?;
        let runtime = home.path().join("run");
        std::fs::create_dir_all(&runtime).map_err(|e| e.to_string())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700));
        }
        let base_env = |cmd: &mut Command, home: &Path| {
            cmd.env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", home)
                .env("XDG_RUNTIME_DIR", home.join("run"))
                .env("XDG_DATA_HOME", home.join("data"));
        };
        let mut cmd = Command::new("dbus-daemon");
        base_env(&mut cmd, home.path());
        let mut dbus = cmd
            .args(["--session", "--nofork", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("dbus-daemon did not start: {e}"))?;
        let mut line = String::new();
        let stdout = dbus.stdout.take().ok_or("dbus-daemon has no stdout")?;
        BufReader::new(stdout).read_line(&mut line).map_err(|e| e.to_string())?;
        let bus = line.trim().to_string();
        if bus.is_empty() {
            let _ = dbus.kill();
            return Err("dbus-daemon printed no address".into());
        }
        let mut cmd = Command::new("gnome-keyring-daemon");
        base_env(&mut cmd, home.path());
        let mut keyring = match cmd
            .env("DBUS_SESSION_BUS_ADDRESS", &bus)
            .args(["--foreground", "--unlock", "--components=secrets"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(k) => k,
            Err(e) => {
                let _ = dbus.kill();
                return Err(format!("gnome-keyring-daemon did not start: {e}"));
            }
        };
        // The login keyring's password, then end of input: it is created unlocked.
        if let Some(mut stdin) = keyring.stdin.take() {
            let _ = stdin.write_all(b"clawline-test-keyring");
        }
        let session = KeyringSession {
            secret_tool: find("secret-tool").unwrap_or_else(|| PathBuf::from("secret-tool")),
            _home: home,
            bus,
            dbus,
            keyring,
        };
        session.wait_ready()?;
        Ok(session)
    }

    /// Stores and reads back a probe item until the keyring answers (it registers on the bus a
    /// moment after it starts).
    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut store = self.secret_tool_command();
            let stored = store
                .args(["store", "--label", "probe", "clawline-testkit", "probe"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .and_then(|mut c| {
                    if let Some(mut i) = c.stdin.take() {
                        let _ = i.write_all(b"probe");
                    }
                    c.wait()
                })
                .is_ok_and(|s| s.success());
            if stored {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("the keyring did not answer on the private bus within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn secret_tool_command(&self) -> Command {
        let mut cmd = Command::new(&self.secret_tool);
        cmd.env_clear().envs(self.env());
        cmd
    }

    /// The environment that puts a process in this session.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("DBUS_SESSION_BUS_ADDRESS".into(), self.bus.clone()),
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        ]
    }

    /// The `secret-tool` the session was checked with.
    pub fn secret_tool(&self) -> &Path {
        &self.secret_tool
    }

    /// Runs `secret-tool <args>` in the session; `(success, stdout)`.
    pub fn run_secret_tool(&self, args: &[&str]) -> (bool, String) {
        match self.secret_tool_command().args(args).stdin(Stdio::null()).output() {
            Ok(o) => (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned()),
            Err(_) => (false, String::new()),
        }
    }
}
