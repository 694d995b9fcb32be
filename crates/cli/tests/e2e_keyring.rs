//! End to end: the real binary in a desktop session with a GNOME Keyring (testkit's private
//! `KeyringSession`) keeps its master key there — no key file, a stored key that still opens
//! after a restart, `doctor` saying where the key is — and outside that session fails plainly.
//!
//! Skipped with a notice where the keyring tools are not installed, unless
//! `CLAWLINE_REQUIRE_KEYRING=1`.

mod common;

use clawline_testkit::gateway::GatewayProcess;
use clawline_testkit::keyring_session::KeyringSession;
use clawline_testkit::model_server::{Api, ModelServer};
use common::*;

#[tokio::test]
async fn the_master_key_lives_in_the_session_keyring() {
    let session = match KeyringSession::start() {
        Ok(s) => s,
        Err(why) if std::env::var("CLAWLINE_REQUIRE_KEYRING").as_deref() != Ok("1") => {
            eprintln!("skipping the keyring test: {why}");
            return;
        }
        Err(why) => panic!("the keyring lane is required here: {why}"),
    };
    let owned = session.env();
    let keyring_env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    write_config(dir.path(), &server, Api::OpenAi, "");

    let mut env_all = env();
    env_all.extend(keyring_env.iter().copied());
    let gw = GatewayProcess::spawn(&bin(), dir.path(), &env_all).await.unwrap_or_else(|e| panic!("{e}"));
    drop(gw);
    let credentials = dir.path().join("credentials");
    assert!(!credentials.join("master.key").exists(), "no key file in a session with a keyring");
    assert!(credentials.join("master.key.keyring").exists());

    let added = cli_env(
        dir.path(),
        &["auth", "add", "openai", "--from-env", "K"],
        &[&[("K", "sk-kept-in-sealed-form")], &keyring_env[..]].concat(),
    )
    .await;
    assert!(added.status.success(), "{}", stderr(&added));
    let listed = cli_env(dir.path(), &["auth", "list"], &keyring_env).await;
    assert!(listed.status.success() && stdout(&listed).contains("openai:default"), "{}", stderr(&listed));
    let doctor = cli_env(dir.path(), &["doctor"], &keyring_env).await;
    assert!(stdout(&doctor).contains("in the OS keyring (Secret Service)"), "{}", stdout(&doctor));

    // Outside the session the key cannot be read, and the command says why instead of making one.
    let outside = cli(dir.path(), &["auth", "list"]).await;
    assert!(!outside.status.success());
    assert!(stderr(&outside).contains("no Secret Service is reachable"), "{}", stderr(&outside));
    assert!(!credentials.join("master.key").exists());
}
