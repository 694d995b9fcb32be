//! Store hot paths: appending a message to a session's transcript (one transaction, on the
//! store's own thread, as every finished run step does) and looking a session up by key.
//!
//!     cargo bench -p clawline-store --bench transcript
//!
//! The database is a fresh file in a temporary directory (WAL, `synchronous = NORMAL`, as in
//! production), on this machine's disk; 1,000 sessions exist before the lookups are timed.

use std::sync::OnceLock;

use clawline_core::message::{Message, UserContent, UserMessage};
use clawline_core::transcript::NewRecord;
use clawline_store::Store;

fn main() {
    divan::main();
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    store: Store,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("bench.sqlite")).expect("store");
        rt.block_on(async {
            for i in 0..1000 {
                store.ensure_session(&format!("agent:main:s{i}"), "main", "/tmp").await.expect("session");
            }
        });
        Fixture { rt, store, _dir: dir }
    })
}

fn user(text: &str) -> NewRecord {
    NewRecord::Message(Message::User(UserMessage {
        content: UserContent::Text(text.to_string()),
        timestamp: 1_780_000_000_000,
        idempotency_key: None,
    }))
}

#[divan::bench]
fn append_one_message(b: divan::Bencher) {
    let f = fixture();
    b.bench(|| {
        f.rt.block_on(f.store.append("agent:main:s1", vec![user("what's on my calendar today?")], None))
            .expect("append")
    });
}

#[divan::bench]
fn session_lookup_by_key(b: divan::Bencher) {
    let f = fixture();
    let mut i = 0usize;
    b.bench_local(|| {
        i = (i + 7) % 1000;
        f.rt.block_on(f.store.get_session(&format!("agent:main:s{i}"))).expect("lookup")
    });
}
