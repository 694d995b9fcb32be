//! The local-embeddings lane shared by the tests that need the real model.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use clawline_memory::local::is_model;

/// `(model dir, reference file)`, or `None` when the lane may be skipped.
pub fn lane() -> Option<(PathBuf, PathBuf)> {
    let env = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/local-embeddings/env");
    let text = std::fs::read_to_string(&env).unwrap_or_default();
    let value = |k: &str| text.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).map(PathBuf::from);
    match (value("MINILM_DIR"), value("MINILM_REFERENCE")) {
        (Some(m), Some(r)) if is_model(&m) && r.is_file() => Some((m, r)),
        _ if std::env::var("CLAWLINE_SKIP_LOCAL_EMBEDDINGS").as_deref() == Ok("1") => {
            eprintln!("local embeddings: skipped (CLAWLINE_SKIP_LOCAL_EMBEDDINGS=1)");
            None
        }
        _ => panic!(
            "target/local-embeddings/env is missing: run scripts/local-embeddings first, or set CLAWLINE_SKIP_LOCAL_EMBEDDINGS=1"
        ),
    }
}
