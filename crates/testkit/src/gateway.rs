//! Spawns the real `clawline` binary for end-to-end tests.
//!
//! The gateway is started with `--port 0` and a temporary state directory; its stdout is read
//! until it prints `listening on http://<addr>`, then `/readyz` is polled. Output is kept for
//! assertions and for the failure message. The child is killed when the handle drops.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Environment variables kept for spawned processes; everything else is removed, so tests never
/// pick up a provider key (clawline knows dozens of variables: `GEMINI_API_KEY`, `GH_TOKEN`,
/// `AWS_*`, …), a proxy setting or a state directory from the developer's shell or the CI runner.
pub const KEPT_ENV: &[&str] = &["PATH", "LANG", "LC_ALL", "TMPDIR", "TZ", "RUST_LOG", "LLVM_PROFILE_FILE"];

/// A command for the clawline binary with a hermetic environment and `state_dir`.
pub fn command(bin: &Path, state_dir: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_clear();
    for var in KEPT_ENV {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    // HOME is the state directory, so `~/…` lookups (VS Code's Copilot credentials, say) find nothing real.
    cmd.env("HOME", state_dir).env("CLAWLINE_STATE_DIR", state_dir).env("NO_COLOR", "1").env("RUST_BACKTRACE", "1");
    cmd
}

/// A running gateway process.
pub struct GatewayProcess {
    child: Child,
    pub base_url: String,
    pub state_dir: PathBuf,
    output: Arc<Mutex<Vec<String>>>,
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pump(reader: impl std::io::Read + Send + 'static, sink: Arc<Mutex<Vec<String>>>, tag: &'static str) {
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(format!("{tag}{line}"));
        }
    });
}

impl GatewayProcess {
    /// Starts `bin gateway --port 0` with `CLAWLINE_STATE_DIR=state_dir` plus `env`, and waits
    /// until it is ready (at most 30 s).
    pub async fn spawn(bin: &Path, state_dir: &Path, env: &[(&str, &str)]) -> Result<GatewayProcess, String> {
        let mut cmd = command(bin, state_dir);
        cmd.args(["gateway", "--port", "0"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let output = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            pump(out, output.clone(), "");
        }
        if let Some(err) = child.stderr.take() {
            pump(err, output.clone(), "[stderr] ");
        }
        let mut gw = GatewayProcess { child, base_url: String::new(), state_dir: state_dir.to_path_buf(), output };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(url) =
                gw.lines().iter().find_map(|l| l.split("listening on ").nth(1).map(|u| u.trim().to_string()))
            {
                gw.base_url = url;
                break;
            }
            if let Ok(Some(status)) = gw.child.try_wait() {
                return Err(format!("gateway exited with {status} before listening:\n{}", gw.lines().join("\n")));
            }
            if Instant::now() > deadline {
                return Err(format!("gateway did not start in 30 s:\n{}", gw.lines().join("\n")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let client = reqwest::Client::new();
        while Instant::now() < deadline {
            if let Ok(r) = client.get(format!("{}/readyz", gw.base_url)).send().await
                && r.status().is_success()
            {
                return Ok(gw);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(format!("gateway never became ready:\n{}", gw.lines().join("\n")))
    }

    /// Everything the process printed so far (stderr lines prefixed `[stderr] `).
    pub fn lines(&self) -> Vec<String> {
        self.output.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, like a crash or the OOM killer: no cleanup runs.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait (at most 10 s) for a clean exit. Returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        // SAFETY: kill(2) with a pid we own and a valid signal number has no memory effects.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
        None
    }
}
