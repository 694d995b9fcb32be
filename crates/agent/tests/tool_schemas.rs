//! The tool schemas the model sees are an interface: this test pins them to
//! `tests/golden/tool_schemas.json`. After a deliberate change, regenerate it with
//! `CLAWLINE_BLESS=1 cargo test -p clawline-agent --test tool_schemas` and document the change.

mod common;

use clawline_testkit::model_server::{Api, ModelServer};

#[tokio::test]
async fn schemas_match_the_golden_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, None).await;
    let config = common::config(dir.path(), &server, Api::OpenAi, "");
    let specs = clawline_agent::tools::specs(&config.tools, true);
    let actual = serde_json::to_string_pretty(&specs).unwrap() + "\n";
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/tool_schemas.json");
    if std::env::var_os("CLAWLINE_BLESS").is_some() {
        std::fs::write(&golden, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    assert_eq!(actual, expected, "tool schemas changed; see the comment at the top of this file");
    // Small enough to keep a one-line turn's request under the 8 KB budget.
    let compact = serde_json::to_string(&specs).unwrap();
    assert!(compact.len() < 4500, "tool schemas are {} bytes", compact.len());
}
