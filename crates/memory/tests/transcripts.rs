//! Transcripts as a memory source: indexed when first seen, again only past the delta
//! thresholds or when finished, only new chunks embedded, removed with their session, found by
//! search and read back by `get`; a keeper that fails leaves the files indexed.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use clawline_memory::index::MemoryIndex;
use clawline_memory::transcripts::{
    DeltaThresholds, DigestsFuture, RenderFuture, TranscriptDigest, Transcripts, path_of,
};
use support::*;

/// Conversations kept in memory: messages per session id, and whether each is current.
#[derive(Default)]
struct Keeper {
    sessions: Mutex<BTreeMap<String, (Vec<String>, bool)>>,
    failing: Mutex<Option<String>>,
}

impl Keeper {
    fn say(&self, id: &str, text: &str) {
        self.sessions.lock().unwrap().entry(id.into()).or_insert_with(|| (Vec::new(), true)).0.push(text.into());
    }
    fn finish(&self, id: &str) {
        if let Some(s) = self.sessions.lock().unwrap().get_mut(id) {
            s.1 = false;
        }
    }
    fn delete(&self, id: &str) {
        self.sessions.lock().unwrap().remove(id);
    }
}

impl Transcripts for Keeper {
    fn digests(&self) -> DigestsFuture<'_> {
        Box::pin(async move {
            if let Some(e) = self.failing.lock().unwrap().clone() {
                return Err(e);
            }
            Ok(self
                .sessions
                .lock()
                .unwrap()
                .iter()
                .map(|(id, (msgs, current))| TranscriptDigest {
                    id: id.clone(),
                    messages: msgs.len() as u64,
                    bytes: msgs.iter().map(|m| m.len() as u64).sum(),
                    current: *current,
                })
                .collect())
        })
    }
    fn render<'a>(&'a self, id: &'a str) -> RenderFuture<'a> {
        Box::pin(async move {
            Ok(self
                .sessions
                .lock()
                .unwrap()
                .get(id)
                .map(|(msgs, _)| msgs.iter().enumerate().map(|(i, m)| format!("[{i}] {m}\n")).collect::<String>()))
        })
    }
}

/// A message long enough that a few of them fill a chunk.
fn message(topic: &str, i: usize) -> String {
    (0..40).map(|j| format!("{topic}{i}w{j}")).collect::<Vec<_>>().join(" ")
}

fn index_with(root: &std::path::Path, e: &Arc<WordHash>, keeper: &Arc<Keeper>, t: DeltaThresholds) -> MemoryIndex {
    open(root, Some(e.clone())).with_transcripts(keeper.clone() as Arc<dyn Transcripts>, t)
}

#[tokio::test]
async fn transcripts_are_indexed_on_delta_thresholds_and_removed_with_their_session() {
    let (_d, root) = workspace();
    std::fs::write(root.join("MEMORY.md"), "The user prefers tea.\n").unwrap();
    let e = WordHash::new("m1");
    let keeper = Arc::new(Keeper::default());
    for i in 0..3 {
        keeper.say("s1", &message("alpha", i));
    }
    keeper.say("s1", "We agreed the rollout of quasar happens on Thursday.");
    let index = index_with(&root, &e, &keeper, DeltaThresholds { bytes: 100_000, messages: 5 });

    let r = index.sync(false, &quiet()).await.unwrap();
    assert_eq!((r.files_indexed, r.sessions, r.sessions_indexed), (1, 1, 1), "{r:?}");
    assert!(r.embed_error.is_none() && r.sessions_error.is_none(), "{r:?}");
    let first_embedded = e.embedded();
    let status = index.status().await.unwrap();
    assert_eq!((status.files, status.sessions), (1, 1));

    // Search finds the conversation, and get reads it back by the path search gave.
    let found = index.search("quasar rollout Thursday").await.unwrap();
    let hit = found.results.iter().find(|s| s.candidate.path == path_of("s1")).expect("the transcript is found");
    assert!(hit.candidate.text.contains("quasar"));
    let got = index.get(&path_of("s1"), hit.candidate.start_line, 50).await.unwrap();
    assert!(got.text.contains("quasar"), "{got:?}");

    // Fewer new messages than the threshold: not indexed again.
    for i in 3..6 {
        keeper.say("s1", &message("alpha", i));
    }
    let r = index.sync(false, &quiet()).await.unwrap();
    assert_eq!(r.sessions_indexed, 0, "{r:?}");
    assert_eq!(e.embedded(), first_embedded);

    // Past it: indexed again, and only the new chunks are embedded.
    for i in 6..9 {
        keeper.say("s1", &message("alpha", i));
    }
    let r = index.sync(false, &quiet()).await.unwrap();
    assert_eq!(r.sessions_indexed, 1, "{r:?}");
    assert!(r.chunks_kept >= 1 && r.chunks_added >= 1, "{r:?}");
    assert_eq!(e.embedded() - first_embedded, r.chunks_added, "only new chunks are embedded");

    // A finished conversation is indexed to its end however little it grew.
    keeper.say("s1", "Last words about zephyr.");
    keeper.finish("s1");
    let r = index.sync(false, &quiet()).await.unwrap();
    assert_eq!(r.sessions_indexed, 1, "{r:?}");
    assert!(index.search("zephyr").await.unwrap().results.iter().any(|s| s.candidate.path == path_of("s1")));
    let r = index.sync(false, &quiet()).await.unwrap();
    assert_eq!(r.sessions_indexed, 0, "a finished transcript is not indexed twice: {r:?}");

    // Deleting the session removes its chunks; the file stays.
    keeper.delete("s1");
    let r = index.sync(false, &quiet()).await.unwrap();
    assert_eq!(r.sessions_removed, 1, "{r:?}");
    assert!(r.chunks_removed >= 3, "{r:?}");
    let status = index.status().await.unwrap();
    assert_eq!((status.files, status.sessions), (1, 0));
    assert!(index.search("quasar").await.unwrap().results.is_empty());
    assert!(index.get(&path_of("s1"), 1, 5).await.is_err());
    assert!(!index.search("tea").await.unwrap().results.is_empty());
}

#[tokio::test]
async fn a_failing_keeper_is_reported_and_files_are_indexed_anyway() {
    let (_d, root) = workspace();
    std::fs::write(root.join("MEMORY.md"), "Notes about the garden.\n").unwrap();
    let e = WordHash::new("m1");
    let keeper = Arc::new(Keeper::default());
    keeper.say("s1", "the greenhouse heater broke");
    let index = index_with(&root, &e, &keeper, DeltaThresholds::default());
    index.sync(false, &quiet()).await.unwrap();

    *keeper.failing.lock().unwrap() = Some("database is locked".into());
    std::fs::write(root.join("MEMORY.md"), "Notes about the orchard.\n").unwrap();
    let r = index.sync(true, &quiet()).await.unwrap();
    assert!(r.sessions_error.as_deref().is_some_and(|e| e.contains("database is locked")), "{r:?}");
    assert_eq!(r.sessions_removed, 0, "an unlisted keeper does not delete what was indexed");
    assert!(!index.search("orchard").await.unwrap().results.is_empty());
    assert!(!index.search("greenhouse").await.unwrap().results.is_empty());
}

#[tokio::test]
async fn without_transcripts_a_session_path_is_not_readable() {
    let (_d, root) = workspace();
    let index = open(&root, None);
    let err = index.get(&path_of("s1"), 1, 5).await.unwrap_err();
    assert!(err.to_string().contains("not a memory file"), "{err}");
}
