//! `exec` under the kernel sandbox: a command that the policy lets run still cannot write
//! outside the workspace, read what is outside it, open a connection or signal the gateway;
//! and a fixture of hostile command strings is refused or contained, in both policy modes.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use clawline_agent::tools::{self, ToolContext, ToolOutput, sandbox};
use clawline_core::config::schema::{ExecSecurity, SandboxMode};
use clawline_core::config::{DEFAULT_SAFE_BINS, ExecSettings, ToolSettings};
use serde_json::json;

const CANARY: &str = "canary-4e1b9d-contents";

struct Scene {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    workspace: PathBuf,
    outside: PathBuf,
    listener: TcpListener,
}

impl Scene {
    fn new() -> Scene {
        let ws_dir = tempfile::tempdir().unwrap();
        let out_dir = tempfile::tempdir().unwrap();
        let workspace = ws_dir.path().canonicalize().unwrap();
        let outside = out_dir.path().canonicalize().unwrap();
        std::fs::write(outside.join("secret.txt"), CANARY).unwrap();
        std::fs::write(workspace.join("notes.md"), "b\na\nTODO: c\n").unwrap();
        std::fs::create_dir(workspace.join("sub")).unwrap();
        std::os::unix::fs::symlink(&outside, workspace.join("link")).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Scene { _dirs: (ws_dir, out_dir), workspace, outside, listener }
    }

    fn ctx(&self, security: ExecSecurity) -> ToolContext {
        let settings = ToolSettings {
            deny: vec![],
            allow: None,
            web_fetch: Default::default(),
            exec: ExecSettings {
                security,
                safe_bins: DEFAULT_SAFE_BINS.iter().map(|s| s.to_string()).collect(),
                timeout_secs: 2,
                max_output_chars: 2000,
                sandbox: SandboxMode::Require,
                ask: clawline_core::config::schema::ExecAsk::Off,
                approval_timeout_secs: 120,
            },
            loop_detection: None,
        };
        ToolContext { workspace: self.workspace.clone(), settings, memory: None, approvals: None }
    }

    fn fill(&self, line: &str) -> String {
        line.replace("{OUT}", &self.outside.to_string_lossy())
            .replace("{WS}", &self.workspace.to_string_lossy())
            .replace("{PORT}", &self.listener.local_addr().unwrap().port().to_string())
            .replace("{PID}", &std::process::id().to_string())
            .replace("{NL}", "\n")
            .replace("{NUL}", "\0")
            .replace("{NOW}", &now().to_string())
            .replace("{LONG}", &"A".repeat(100_000))
    }

    async fn exec(&self, security: ExecSecurity, command: &str) -> ToolOutput {
        tools::call("exec", &json!({ "command": command }), &self.ctx(security)).await
    }

    /// Panics if anything escaped: a file outside changed, the listener was reached.
    fn assert_contained(&self, what: &str) {
        let names: Vec<String> = std::fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["secret.txt"], "{what}: something was written outside the workspace");
        assert_eq!(std::fs::read_to_string(self.outside.join("secret.txt")).unwrap(), CANARY, "{what}");
        match self.listener.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => panic!("{what}: the listener on loopback was reached: {other:?}"),
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn ran(out: &ToolOutput) -> bool {
    out.text.starts_with("exit code") || out.text.starts_with("killed")
}

#[test]
fn this_machine_grants_the_whole_sandbox() {
    // The lanes that claim containment need it; `clawline doctor` reports the same probe.
    let status = sandbox::status();
    println!("sandbox: {status}");
    assert!(status.complete(), "the kernel sandbox is incomplete here: {status}");
}

#[tokio::test]
async fn a_sandboxed_command_writes_only_in_the_workspace() {
    let s = Scene::new();
    let out = s.exec(ExecSecurity::Full, "sh -c 'echo inside > made.txt && cat made.txt'").await;
    assert!(out.text.contains("exit code 0") && out.text.contains("inside"), "{}", out.text);
    assert_eq!(std::fs::read_to_string(s.workspace.join("made.txt")).unwrap(), "inside\n");

    let target = s.outside.join("pwned");
    let out = s.exec(ExecSecurity::Full, &format!("sh -c 'echo x > {}'", target.display())).await;
    assert!(out.is_error && out.text.contains("ermission denied"), "{}", out.text);
    let out = s.exec(ExecSecurity::Full, "touch link/pwned").await;
    assert!(out.is_error, "{}", out.text);
    let out = s.exec(ExecSecurity::Full, &format!("cat {}/secret.txt", s.outside.display())).await;
    assert!(out.is_error && !out.text.contains(CANARY), "{}", out.text);
    // The gateway's environment (API keys) and the home directory are out of reach.
    let out = s.exec(ExecSecurity::Full, &format!("cat /proc/{}/environ", std::process::id())).await;
    assert!(out.is_error, "{}", out.text);
    if let Some(home) = std::env::var_os("HOME").filter(|h| Path::new(h).is_dir()) {
        let out = s.exec(ExecSecurity::Full, &format!("ls {}", Path::new(&home).display())).await;
        assert!(out.is_error, "{}", out.text);
    }
    s.assert_contained("direct checks");
}

#[tokio::test]
async fn a_sandboxed_command_has_no_privilege_even_as_root() {
    use std::os::unix::fs::MetadataExt;
    let s = Scene::new();
    // Setting the clock to the current second changes nothing if it were allowed.
    let out = s.exec(ExecSecurity::Full, &format!("date -s @{}", now())).await;
    assert!(out.is_error && out.text.contains("not permitted"), "{}", out.text);
    let owner = std::fs::metadata(s.workspace.join("notes.md")).unwrap().uid();
    let other = if owner == 0 { 65534 } else { 0 };
    let out = s.exec(ExecSecurity::Full, &format!("chown {other} notes.md")).await;
    assert!(out.is_error, "{}", out.text);
    assert_eq!(std::fs::metadata(s.workspace.join("notes.md")).unwrap().uid(), owner);
    // No signal reaches a process outside the sandbox.
    let out = s.exec(ExecSecurity::Full, &format!("kill -0 {}", std::process::id())).await;
    assert!(out.is_error, "{}", out.text);
}

#[tokio::test]
async fn a_sandboxed_command_cannot_open_a_connection() {
    let s = Scene::new();
    let port = s.listener.local_addr().unwrap().port();
    let out = s.exec(ExecSecurity::Full, &format!("bash -c 'echo hi > /dev/tcp/127.0.0.1/{port}'")).await;
    assert!(out.is_error, "{}", out.text);
    let script = format!("import socket; socket.create_connection(('127.0.0.1', {port}), 2)");
    let out = s.exec(ExecSecurity::Full, &format!("python3 -c \"{script}\"")).await;
    assert!(out.is_error, "{}", out.text);
    s.assert_contained("connections");
}

#[tokio::test]
async fn hostile_commands_are_refused_or_contained() {
    let fixture = include_str!("fixtures/hostile_commands.txt");
    let lines: Vec<&str> = fixture.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).collect();
    assert!(lines.len() >= 100, "the fixture has {} commands", lines.len());
    let s = Scene::new();
    for security in [ExecSecurity::Allowlist, ExecSecurity::Full] {
        let (mut refused, mut contained) = (0, 0);
        for line in &lines {
            let command = s.fill(line);
            let out = s.exec(security, &command).await;
            assert!(!out.text.contains(CANARY), "{security:?} `{line}` leaked the secret:\n{}", out.text);
            s.assert_contained(&format!("{security:?} `{line}`"));
            if ran(&out) { contained += 1 } else { refused += 1 }
        }
        println!("{security:?}: {refused} refused by the policy, {contained} ran inside the sandbox");
        if security == ExecSecurity::Allowlist {
            // Nothing outside the default allow-list ever starts.
            assert!(refused > contained, "{refused} refused, {contained} ran");
        }
    }
}
