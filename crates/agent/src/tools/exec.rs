//! `exec`: run one program in the workspace, without a shell.
//!
//! The command line is split into words (single and double quotes group words, a backslash
//! escapes one character) and the program is executed directly, so there is no shell expansion
//! to abuse: pipes, redirects, `;`, `&&`, backticks and `$` are refused with an explanation.
//!
//! Policy (`tools.exec`): with `security: "allowlist"` (the default) the program must be named
//! in `safeBins`, and arguments that are paths (absolute, or containing `..`) must stay inside
//! the workspace; `"full"` lifts both; `"deny"` removes the tool. Always: the working directory
//! is inside the workspace, the environment is replaced by a minimal one (no API keys leak into
//! commands), stdin is empty, the whole process group is killed at the timeout, and output is
//! capped. Around all of that, the kernel [`sandbox`](super::sandbox) (`tools.exec.sandbox`,
//! on by default) keeps the program off the network and lets it write only in the workspace,
//! whatever the program is.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use clawline_core::config::schema::{ExecAsk, ExecSecurity, SandboxMode};
use serde_json::{Map, Value, json};
use tokio::io::AsyncReadExt;

use super::{ToolContext, ToolOutput, path, str_arg, uint_arg};

const SEARCH_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub(super) fn schema() -> (&'static str, Value) {
    (
        "Run one program in the workspace and return its exit code and output. No shell: quotes group words, but pipes, redirects, variables and globs are not available.",
        json!({
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "Program and arguments, e.g. \"grep -n TODO notes.md\"."},
                "workdir": {"type": "string", "description": "Directory inside the workspace (default: the workspace)."},
                "timeoutSeconds": {"type": "integer", "minimum": 1, "description": "Kill the program after this many seconds."}
            },
            "required": ["command"]
        }),
    )
}

/// Splits a command line into words, refusing shell syntax.
pub(crate) fn split(command: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => word.push(ch),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch @ ('"' | '\\')) => word.push(ch),
                            Some(ch) => {
                                word.push('\\');
                                word.push(ch);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(ch) => word.push(ch),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(ch) => word.push(ch),
                    None => return Err("the command ends with a lone backslash".into()),
                }
            }
            '|' | '&' | ';' | '<' | '>' | '`' | '$' | '(' | ')' | '\n' => {
                return Err(format!(
                    "`{}` is shell syntax, and exec runs a single program without a shell. Run each step as its own exec call, or quote the character if it is part of an argument.",
                    if c == '\n' { "newline".to_string() } else { c.to_string() }
                ));
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err("the command is empty".into());
    }
    Ok(words)
}

/// Finds `program` on the fixed search path.
fn locate(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    SEARCH_PATH.split(':').map(|d| Path::new(d).join(program)).find(|p| p.is_file())
}

/// Options of allow-listed programs that run other programs or change the system, refused in
/// allowlist mode whatever their value (`sort --compress-program=sh`, `date --set=…`).
const DANGEROUS_OPTIONS: &[(&str, &[&str])] = &[
    ("sort", &["--compress-program"]),
    ("date", &["-s", "--set"]),
    ("find", &["-exec", "-execdir", "-ok", "-okdir", "-delete", "-fprint", "-fprintf", "-fls"]),
    ("xargs", &[""]),
    ("env", &[""]),
    (
        "tar",
        &[
            "--to-command",
            "--use-compress-program",
            "-I",
            "--checkpoint-action",
            "--info-script",
            "--new-volume-script",
        ],
    ),
    ("git", &["-c", "--exec-path", "--upload-pack", "--receive-pack", "--config-env"]),
];

fn dangerous_option(program: &str, arg: &str) -> bool {
    let name = program.rsplit('/').next().unwrap_or(program);
    DANGEROUS_OPTIONS.iter().filter(|(p, _)| *p == name).any(|(_, opts)| {
        opts.iter().any(|o| {
            o.is_empty()
                || arg == *o
                || arg.starts_with(&format!("{o}="))
                || (o.len() == 2 && !o.starts_with("--") && arg.starts_with(o))
        })
    })
}

/// The parts of an argument that could name a file: the whole argument, the value after `=`,
/// and for short options the text after the option letters (`-o/etc/x` → `/etc/x`).
fn path_candidates(arg: &str) -> Vec<&str> {
    let mut out = vec![arg];
    if let Some(rest) = arg.strip_prefix('-') {
        if let Some((_, v)) = arg.split_once('=') {
            out.push(v);
        }
        let letters = rest.trim_start_matches('-');
        let tail = letters.trim_start_matches(|c: char| c.is_ascii_alphanumeric() && c != '.');
        if !tail.is_empty() && tail.len() < letters.len() {
            out.push(tail);
        }
    }
    out
}

/// Checks that path-like arguments stay in the workspace (allowlist mode).
fn check_args(workspace: &Path, workdir: &Path, program: &str, args: &[String]) -> Result<(), String> {
    for arg in args {
        if dangerous_option(program, arg) {
            return Err(format!(
                "`{arg}` is not allowed with `{program}`: it can run other programs or change the system (tools.exec.security \"full\" lifts this)"
            ));
        }
        for value in path_candidates(arg) {
            let pathlike =
                value.starts_with('/') || value.starts_with('~') || value.split(['/', '=']).any(|part| part == "..");
            if !pathlike {
                continue;
            }
            let rel = match Path::new(value).strip_prefix(workspace) {
                Ok(r) => r.to_path_buf(),
                Err(_) if value.starts_with('/') || value.starts_with('~') => {
                    return Err(format!(
                        "argument `{arg}` points outside the workspace; exec may only touch files in the workspace (tools.exec.security \"full\" lifts this)"
                    ));
                }
                Err(_) => workdir.strip_prefix(workspace).unwrap_or(Path::new("")).join(value),
            };
            path::resolve(workspace, &rel.to_string_lossy()).map_err(|e| format!("argument `{arg}`: {e}"))?;
        }
    }
    Ok(())
}

/// Waits for the owner's decision on exactly `argv` in `workdir`. `Ok` carries a note for the
/// result (`None` when a standing grant covered it); `Err` is the refusal to return.
async fn approve(ctx: &ToolContext, argv: &[String], workdir: &Path) -> Result<Option<String>, ToolOutput> {
    use crate::approvals::{AskExec, Outcome};
    let shown = argv.join(" ");
    let Some(scope) = &ctx.approvals else {
        return Err(ToolOutput::err(format!(
            "`{shown}` needs the owner's approval (tools.exec.ask), and this call has no one to ask. Use an allowed program."
        )));
    };
    let wait = Duration::from_secs(ctx.settings.exec.approval_timeout_secs);
    let ask = AskExec {
        agent_id: scope.agent_id.clone(),
        session_key: scope.session_key.clone(),
        run_id: scope.run_id.clone(),
        argv: argv.to_vec(),
        cwd: workdir.to_string_lossy().into_owned(),
    };
    match scope.broker.ask(ask, wait).await {
        Ok(Outcome::Granted) => Ok(None),
        Ok(Outcome::Allowed { always, .. }) => Ok(Some(
            if always {
                "approved by the owner (always, for this exact command)"
            } else {
                "approved by the owner (once)"
            }
            .into(),
        )),
        Ok(Outcome::Denied { .. }) => Err(ToolOutput::err(format!(
            "The owner denied `{shown}`. Do not try to run it another way; ask the user what they want instead."
        ))),
        Ok(Outcome::Expired { after, .. }) => Err(ToolOutput::err(format!(
            "`{shown}` needed the owner's approval and got no decision within {} seconds; it did not run.",
            after.as_secs()
        ))),
        Err(e) => Err(ToolOutput::err(format!("`{shown}` needs approval, but the request could not be stored: {e}"))),
    }
}

/// Kills the whole process group when dropped (timeout or a cancelled run).
struct GroupKiller(Option<i32>);

impl Drop for GroupKiller {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // SAFETY: kill(2) on a process group we created; no memory is touched.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

async fn read_capped(mut r: impl tokio::io::AsyncRead + Unpin, cap: usize) -> (Vec<u8>, usize) {
    let mut kept = Vec::new();
    let mut dropped = 0;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                dropped += n.saturating_sub(room);
            }
        }
    }
    (kept, dropped)
}

fn render(name: &str, bytes: &[u8], dropped: usize, cap_chars: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let (shown, cut) = clawline_core::text::truncate_chars(&text, cap_chars);
    let mut out = format!("--- {name} ---\n{shown}");
    if !out.ends_with('\n') {
        out.push('\n');
    }
    if cut || dropped > 0 {
        out.push_str(&format!("[{name} truncated: {} more bytes]\n", dropped + (text.len() - shown.len())));
    }
    out
}

pub(super) async fn run(args: &Map<String, Value>, ctx: &ToolContext) -> ToolOutput {
    let settings = &ctx.settings.exec;
    let command = match str_arg(args, "command") {
        Ok(c) => c.to_string(),
        Err(e) => return e,
    };
    let words = match split(&command) {
        Ok(w) => w,
        Err(e) => return ToolOutput::err(e),
    };
    let workdir = match args.get("workdir") {
        None | Some(Value::Null) => ctx.workspace.clone(),
        Some(Value::String(s)) if s.trim().is_empty() => ctx.workspace.clone(),
        Some(Value::String(s)) => match path::resolve(&ctx.workspace, s) {
            Ok(p) if p.is_dir() => p,
            Ok(_) => return ToolOutput::err(format!("workdir `{s}` is not a directory in the workspace.")),
            Err(e) => return ToolOutput::err(format!("workdir: {e}")),
        },
        Some(other) => return ToolOutput::err(format!("`workdir` must be a string, got {other}.")),
    };
    let timeout = match uint_arg(args, "timeoutSeconds") {
        Ok(t) => t.unwrap_or(settings.timeout_secs).clamp(1, settings.timeout_secs),
        Err(e) => return e,
    };
    let program = &words[0];
    let miss = if settings.security == ExecSecurity::Allowlist {
        if !settings.safe_bins.iter().any(|b| b == program) {
            Some(format!(
                "`{program}` is not in the exec allow-list (tools.exec.safeBins: {}). Use an allowed program, or ask the user to add it.",
                settings.safe_bins.join(", ")
            ))
        } else {
            check_args(&ctx.workspace, &workdir, program, &words[1..]).err()
        }
    } else {
        None
    };
    let needs_approval = match settings.ask {
        ExecAsk::Off => {
            if let Some(why) = miss {
                return ToolOutput::err(why);
            }
            false
        }
        ExecAsk::OnMiss => miss.is_some(),
        ExecAsk::Always => true,
    };
    let mut approval_note = None;
    if needs_approval {
        match approve(ctx, &words, &workdir).await {
            Ok(note) => approval_note = note,
            Err(refusal) => return refusal,
        }
    }
    let Some(resolved) = locate(program) else {
        return ToolOutput::err(format!("program `{program}` was not found on {SEARCH_PATH}."));
    };
    let mut cmd = tokio::process::Command::new(&resolved);
    cmd.args(&words[1..])
        .current_dir(&workdir)
        .env_clear()
        .env("PATH", SEARCH_PATH)
        .env("HOME", &ctx.workspace)
        .env("LANG", "C.UTF-8")
        .env("TERM", "dumb")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    // If the gateway dies, even by SIGKILL, the program dies with it instead of running on.
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    if settings.sandbox != SandboxMode::Off {
        let status = super::sandbox::status();
        if settings.sandbox == SandboxMode::Require && !status.complete() {
            return ToolOutput::err(format!(
                "exec is unavailable: tools.exec.sandbox is \"require\" but this machine's kernel grants only {status}. The user can run `clawline doctor` for details."
            ));
        }
        if let Err(e) = super::sandbox::confine(&mut cmd, &ctx.workspace, status) {
            return ToolOutput::err(format!("cannot prepare the sandbox for `{program}`: {e}"));
        }
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return ToolOutput::err(format!("cannot start `{program}`: {e}")),
    };
    let _killer = GroupKiller(child.id().map(|id| id as i32));
    let cap = settings.max_output_chars;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out_task = tokio::spawn(async move {
        match stdout {
            Some(s) => read_capped(s, cap * 4).await,
            None => (Vec::new(), 0),
        }
    });
    let err_task = tokio::spawn(async move {
        match stderr {
            Some(s) => read_capped(s, cap * 4).await,
            None => (Vec::new(), 0),
        }
    });
    let status = tokio::time::timeout(Duration::from_secs(timeout), child.wait()).await;
    // The program has ended (or timed out): whatever it left running in its group goes too, so a
    // background child holding the output pipes cannot keep this call waiting.
    drop(_killer);
    if status.is_err() {
        let _ = child.wait().await;
    }
    let drain = Duration::from_secs(2);
    let (out, out_dropped) = tokio::time::timeout(drain, out_task).await.ok().and_then(Result::ok).unwrap_or_default();
    let (err, err_dropped) = tokio::time::timeout(drain, err_task).await.ok().and_then(Result::ok).unwrap_or_default();
    let mut text = match &status {
        Ok(Ok(s)) => match s.code() {
            Some(code) => format!("exit code {code}\n"),
            None => "killed by a signal\n".to_string(),
        },
        Ok(Err(e)) => format!("could not wait for the program: {e}\n"),
        Err(_) => format!("killed after {timeout} s (timeout)\n"),
    };
    if let Some(note) = approval_note {
        text.push_str(&format!("({note})\n"));
    }
    if !out.is_empty() || out_dropped > 0 {
        text.push_str(&render("stdout", &out, out_dropped, cap));
    }
    if !err.is_empty() || err_dropped > 0 {
        text.push_str(&render("stderr", &err, err_dropped, cap));
    }
    let success = matches!(&status, Ok(Ok(s)) if s.success());
    ToolOutput { text, is_error: !success }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_words_and_refuses_shell_syntax() {
        assert_eq!(split("grep -n 'a b' \"c \\\"d\\\"\" e\\ f").unwrap(), ["grep", "-n", "a b", "c \"d\"", "e f"]);
        assert_eq!(split("  echo  ''  ").unwrap(), ["echo", ""]);
        for bad in ["ls | wc", "a; b", "a && b", "cat < x", "echo $HOME", "echo `id`", "a > b", "x\ny"] {
            assert!(split(bad).unwrap_err().contains("shell syntax"), "{bad}");
        }
        assert_eq!(split("echo 'a|b;c'").unwrap(), ["echo", "a|b;c"]);
        assert!(split("echo 'open").is_err());
        assert!(split("   ").is_err());
    }

    #[tokio::test]
    async fn a_background_child_does_not_keep_the_call_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().canonicalize().unwrap();
        let mut settings = clawline_core::config::ToolSettings {
            deny: vec![],
            allow: None,
            web_fetch: Default::default(),
            exec: clawline_core::config::ExecSettings {
                security: ExecSecurity::Full,
                safe_bins: vec![],
                timeout_secs: 30,
                max_output_chars: 1000,
                sandbox: SandboxMode::Auto,
                ask: clawline_core::config::schema::ExecAsk::Off,
                approval_timeout_secs: 120,
            },
            loop_detection: None,
        };
        settings.exec.security = ExecSecurity::Full;
        let ctx = ToolContext { workspace: ws, settings, memory: None, approvals: None };
        let args = json!({"command": "sh -c 'sleep 60 & echo started'"});
        let started = std::time::Instant::now();
        let out = super::super::call("exec", &args, &ctx).await;
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "took {:?}", started.elapsed());
        assert!(out.text.contains("exit code 0") && out.text.contains("started"), "{}", out.text);
    }

    #[test]
    fn path_arguments_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().canonicalize().unwrap();
        let check = |program: &str, args: &[&str]| {
            check_args(&ws, &ws, program, &args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
        };
        assert!(check("grep", &["-n", "notes.md"]).is_ok());
        assert!(check("head", &["-n5", "notes.md"]).is_ok());
        assert!(check("cat", &[&ws.join("a").to_string_lossy()]).is_ok());
        assert!(check("cat", &["/etc/passwd"]).is_err());
        assert!(check("cat", &["../x"]).is_err());
        assert!(check("grep", &["--file=/etc/shadow"]).is_err());
        assert!(check("cat", &["~/.ssh/id_rsa"]).is_err());
        // Paths glued to short options, and options that run programs or change the system.
        assert!(check("sort", &["-o/home/u/.bashrc", "payload.txt"]).is_err());
        assert!(check("date", &["-f/home/u/.clawline/clawline.json"]).is_err());
        assert!(check("date", &["-f../../x"]).is_err());
        assert!(check("sort", &["--compress-program=sh", "big.txt"]).is_err());
        assert!(check("date", &["-s", "2020-01-01"]).is_err());
        assert!(check("date", &["--set=2020-01-01"]).is_err());
        assert!(check("sort", &["-o", "sorted.txt", "in.txt"]).is_ok());
        std::fs::create_dir(ws.join("sub")).unwrap();
        assert!(check_args(&ws, &ws.join("sub"), "cat", &["../ok.txt".to_string()]).is_ok());
    }
}
