//! Exec approvals (`tools.exec.ask`): a command the policy would refuse waits for the owner;
//! the decision covers exactly the argv and cwd asked about; "allow always" lets that command,
//! and only that command, run again without asking; a denial, an expiry, a second decision and
//! shell syntax are all refused, and nothing runs that was not approved.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clawline_agent::approvals::{ApprovalEvent, Approvals, Decision, ResolveError};
use clawline_agent::tools::{self, ApprovalScope, ToolContext, ToolOutput};
use clawline_core::config::schema::{ExecAsk, ExecSecurity, SandboxMode};
use clawline_core::config::{DEFAULT_SAFE_BINS, ExecSettings, ToolSettings};
use clawline_store::{ExecApprovalRow, Store};
use serde_json::json;
use tokio::sync::broadcast;

struct Scene {
    _dir: tempfile::TempDir,
    workspace: PathBuf,
    broker: Arc<Approvals>,
    events: broadcast::Receiver<ApprovalEvent>,
}

impl Scene {
    fn new() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let workspace = dir.path().join("ws");
        std::fs::create_dir_all(workspace.join("sub")).unwrap();
        let workspace = workspace.canonicalize().unwrap();
        let store = Store::open(&dir.path().join("state.sqlite")).unwrap();
        let broker = Approvals::new(store);
        let events = broker.subscribe();
        Scene { _dir: dir, workspace, broker, events }
    }

    fn ctx(&self, ask: ExecAsk, approval_timeout_secs: u64) -> ToolContext {
        let settings = ToolSettings {
            deny: vec![],
            allow: None,
            web_fetch: Default::default(),
            exec: ExecSettings {
                security: ExecSecurity::Allowlist,
                safe_bins: DEFAULT_SAFE_BINS.iter().map(|s| s.to_string()).collect(),
                timeout_secs: 5,
                max_output_chars: 2000,
                sandbox: SandboxMode::Auto,
                ask,
                approval_timeout_secs,
            },
            loop_detection: None,
        };
        let approvals = Some(ApprovalScope {
            broker: self.broker.clone(),
            agent_id: "main".into(),
            session_key: "agent:main:main".into(),
            run_id: "run-1".into(),
        });
        ToolContext { workspace: self.workspace.clone(), settings, memory: None, approvals }
    }

    /// Runs `command` while answering its approval request with `decision` (`None`: no answer).
    async fn run_answering(
        &mut self,
        ctx: &ToolContext,
        command: &str,
        workdir: Option<&str>,
        decision: Option<Decision>,
    ) -> (ToolOutput, Option<ExecApprovalRow>) {
        let mut args = json!({ "command": command });
        if let Some(w) = workdir {
            args["workdir"] = json!(w);
        }
        let call = tools::call("exec", &args, ctx);
        tokio::pin!(call);
        let mut asked = None;
        loop {
            tokio::select! {
                out = &mut call => return (out, asked),
                ev = self.events.recv() => {
                    if let Ok(ApprovalEvent::Requested(row)) = ev {
                        if let Some(d) = decision {
                            self.broker.resolve(&row.id, d, "test-owner").await.unwrap();
                        }
                        asked = Some(row);
                    }
                }
            }
        }
    }

    fn exists(&self, name: &str) -> bool {
        self.workspace.join(name).exists()
    }
}

#[tokio::test]
async fn a_command_outside_the_allow_list_runs_only_once_the_owner_allows_it() {
    let mut s = Scene::new();
    let ctx = s.ctx(ExecAsk::OnMiss, 30);

    // Allowed programs do not ask.
    let (out, asked) = s.run_answering(&ctx, "echo hi", None, None).await;
    assert!(!out.is_error && asked.is_none(), "{}", out.text);

    let (out, asked) = s.run_answering(&ctx, "touch once.txt", None, Some(Decision::AllowOnce)).await;
    let asked = asked.expect("an approval was requested");
    assert_eq!(asked.argv, ["touch", "once.txt"]);
    assert_eq!(asked.cwd, s.workspace.to_string_lossy());
    assert_eq!(
        (asked.agent_id.as_str(), asked.session_key.as_str(), asked.run_id.as_str()),
        ("main", "agent:main:main", "run-1")
    );
    assert!(!out.is_error && out.text.contains("approved by the owner (once)"), "{}", out.text);
    assert!(s.exists("once.txt"));

    // Once means once: the same command asks again, and a denial means it does not run.
    std::fs::remove_file(s.workspace.join("once.txt")).unwrap();
    let (out, asked) = s.run_answering(&ctx, "touch once.txt", None, Some(Decision::Deny)).await;
    assert!(asked.is_some());
    assert!(out.is_error && out.text.contains("The owner denied `touch once.txt`"), "{}", out.text);
    assert!(!s.exists("once.txt"));
}

#[tokio::test]
async fn allow_always_covers_exactly_that_argv_in_that_directory() {
    let mut s = Scene::new();
    let ctx = s.ctx(ExecAsk::OnMiss, 1);
    let (out, asked) = s.run_answering(&ctx, "touch a.txt", None, Some(Decision::AllowAlways)).await;
    assert!(asked.is_some() && !out.is_error, "{}", out.text);
    assert!(out.text.contains("always, for this exact command"), "{}", out.text);
    std::fs::remove_file(s.workspace.join("a.txt")).unwrap();

    // The same argv in the same directory: no question.
    let (out, asked) = s.run_answering(&ctx, "touch a.txt", None, None).await;
    assert!(asked.is_none() && !out.is_error, "{}", out.text);
    assert!(s.exists("a.txt"));

    // A changed argv, or the same argv elsewhere, is a new question; unanswered, it never runs.
    for (command, workdir, file) in [
        ("touch b.txt", None, "b.txt"),
        ("touch a.txt -c", None, "a.txt-never"),
        ("touch a.txt", Some("sub"), "sub/a.txt"),
    ] {
        let (out, asked) = s.run_answering(&ctx, command, workdir, None).await;
        assert!(asked.is_some(), "{command} in {workdir:?} should ask");
        assert!(out.is_error && out.text.contains("no decision within 1 seconds"), "{}", out.text);
        assert!(!s.exists(file), "{file} was created");
    }
}

#[tokio::test]
async fn a_request_is_decided_once_and_not_after_it_expired() {
    let mut s = Scene::new();
    let ctx = s.ctx(ExecAsk::OnMiss, 1);
    let (_, asked) = s.run_answering(&ctx, "touch late.txt", None, None).await;
    let id = asked.unwrap().id;
    let err = s.broker.resolve(&id, Decision::AllowOnce, "slow-owner").await.unwrap_err();
    assert!(matches!(&err, ResolveError::Closed { status, .. } if status == "expired"), "{err}");
    assert!(!s.exists("late.txt"));

    let ctx = s.ctx(ExecAsk::OnMiss, 30);
    let (_, asked) = s.run_answering(&ctx, "touch first.txt", None, Some(Decision::Deny)).await;
    let id = asked.unwrap().id;
    let err = s.broker.resolve(&id, Decision::AllowAlways, "second-owner").await.unwrap_err();
    assert!(matches!(&err, ResolveError::Closed { status, .. } if status == "denied"), "{err}");
    assert!(matches!(s.broker.resolve("no-such-id", Decision::Deny, "x").await, Err(ResolveError::Unknown(_))));
    assert!(s.broker.pending().await.unwrap().is_empty());
}

#[tokio::test]
async fn ask_always_asks_for_allowed_programs_too_and_shell_syntax_never_reaches_the_owner() {
    let mut s = Scene::new();
    let ctx = s.ctx(ExecAsk::Always, 30);
    let (out, asked) = s.run_answering(&ctx, "echo hello", None, Some(Decision::AllowOnce)).await;
    assert!(asked.is_some() && out.text.contains("hello"), "{}", out.text);

    let (out, asked) = s.run_answering(&ctx, "touch x.txt; rm -rf /", None, Some(Decision::AllowOnce)).await;
    assert!(asked.is_none(), "shell syntax is refused before anyone is asked");
    assert!(out.is_error && out.text.contains("shell syntax"), "{}", out.text);

    // Without an approver (e.g. POST /tools/invoke), a command that needs approval is refused.
    let mut lonely = s.ctx(ExecAsk::OnMiss, 30);
    lonely.approvals = None;
    let out = tools::call("exec", &json!({"command": "touch y.txt"}), &lonely).await;
    assert!(out.is_error && out.text.contains("no one to ask"), "{}", out.text);
    assert!(!s.exists("y.txt"));
}

#[tokio::test]
async fn a_cancelled_run_closes_its_request() {
    let mut s = Scene::new();
    let ctx = s.ctx(ExecAsk::OnMiss, 30);
    let args = json!({"command": "touch never.txt"});
    let call = tools::call("exec", &args, &ctx);
    let asked = tokio::select! {
        _ = call => panic!("the call finished without a decision"),
        ev = s.events.recv() => match ev.unwrap() { ApprovalEvent::Requested(r) => r, other => panic!("{other:?}") },
    };
    // The call future was dropped by the select: the run is gone.
    let closed = tokio::time::timeout(Duration::from_secs(5), s.events.recv()).await.unwrap().unwrap();
    let ApprovalEvent::Resolved(row) = closed else { panic!("{closed:?}") };
    assert_eq!((row.id.as_str(), row.status.as_str()), (asked.id.as_str(), "cancelled"));
    assert!(s.broker.resolve(&asked.id, Decision::AllowOnce, "owner").await.is_err());
    assert!(!s.exists("never.txt"));
}
