//! The memory index end to end over a real workspace folder: incremental sync counted in
//! embedded texts, deletions, hostile files, an embedder that fails or answers wrongly, a model
//! change, text-only mode with its reason, and `get` confined to memory files.
//!
//! The embedder here is a test double with a known, deterministic geometry (hashed word
//! counts), so rankings are predictable; the index cannot tell it from a real model.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use clawline_memory::index::{MemoryIndex, Mode, Settings};
use support::*;

#[tokio::test]
async fn sync_search_and_status_in_hybrid_mode() {
    let (_d, root) = workspace();
    std::fs::write(root.join("MEMORY.md"), "# Preferences\nThe user drinks oolong tea every morning.\n").unwrap();
    std::fs::write(
        root.join("memory/2026-11-30.md"),
        "Met Dana at the climbing gym; she is training for Fontainebleau.\n",
    )
    .unwrap();
    let e = WordHash::new("v1");
    let index = open(&root, Some(e.clone()));
    let r = index.sync(false, &quiet()).await.unwrap();
    assert_eq!((r.files, r.files_indexed, r.chunks_added, r.embedded), (2, 2, 2, 2), "{r:?}");
    assert!(r.embed_error.is_none() && r.skipped.is_empty());

    let out = index.search("what tea does the user drink").await.unwrap();
    assert_eq!(out.mode, Mode::Hybrid);
    assert_eq!(out.results[0].candidate.path, "MEMORY.md");
    assert_eq!((out.results[0].candidate.start_line, out.results[0].candidate.end_line), (1, 2));
    let out = index.search("Dana climbing").await.unwrap();
    assert_eq!(out.results[0].candidate.path, "memory/2026-11-30.md");
    assert!(out.results[0].exact);

    let s = index.status().await.unwrap();
    assert_eq!(s.mode, Mode::Hybrid);
    assert_eq!((s.files, s.chunks, s.vectors, s.dims), (2, 2, 2, Some(DIMS)));

    // Nothing changed: nothing is read again or embedded.
    let r = index.sync(false, &quiet()).await.unwrap();
    assert_eq!((r.files_unchanged, r.files_indexed, r.embedded), (2, 0, 0));
}

#[tokio::test]
async fn an_edit_embeds_only_its_changed_chunks_and_a_deletion_removes_them() {
    let (_d, root) = workspace();
    let note = long_note("alpha", 16);
    std::fs::write(root.join("memory/project.md"), &note).unwrap();
    std::fs::write(root.join("memory/other.md"), long_note("beta", 2)).unwrap();
    let e = WordHash::new("v1");
    let index = open(&root, Some(e.clone()));
    let first = index.sync(false, &quiet()).await.unwrap();
    let chunks = first.chunks_added;
    assert!(chunks >= 6, "{first:?}");
    assert_eq!(e.embedded(), chunks);

    // Change one paragraph in the middle.
    let edited = note.replace("alpha4w10 ", "completely different words here ");
    std::fs::write(root.join("memory/project.md"), edited).unwrap();
    // (The size changed, so the unforced sync sees it whatever the clock's resolution.)
    let r = index.sync(false, &quiet()).await.unwrap();
    assert_eq!(r.files_indexed, 1, "only the edited file is chunked again: {r:?}");
    assert!(r.chunks_added >= 1 && r.chunks_added <= 2, "{r:?}");
    assert_eq!(r.embedded, r.chunks_added, "only new chunks are embedded: {r:?}");
    assert_eq!(r.chunks_removed, r.chunks_added);
    assert_eq!(e.embedded(), chunks + r.embedded);
    let hit = index.search("completely different words").await.unwrap();
    assert!(hit.results[0].candidate.path.ends_with("project.md") && hit.results[0].exact);

    // Putting the old text back costs nothing: the cache has its vectors.
    std::fs::write(root.join("memory/project.md"), &note).unwrap();
    let r = index.sync(false, &quiet()).await.unwrap();
    assert_eq!(r.embedded, 0, "{r:?}");
    assert!(r.cache_hits >= 1, "{r:?}");

    std::fs::remove_file(root.join("memory/project.md")).unwrap();
    let r = index.sync(false, &quiet()).await.unwrap();
    assert_eq!(r.files_removed, 1);
    let s = index.status().await.unwrap();
    assert_eq!(s.files, 1);
    assert_eq!(s.chunks, s.vectors);
    assert!(index.search("alpha4w10").await.unwrap().results.is_empty());
}

#[tokio::test]
async fn hostile_files_are_skipped_with_reasons_and_search_keeps_working() {
    let (_d, root) = workspace();
    std::fs::write(root.join("memory/good.md"), "The spare key is under the blue flowerpot.\n").unwrap();
    std::fs::write(root.join("memory/binary.md"), b"\x89PNG\r\n\x1a\n\0\0\0").unwrap();
    std::fs::write(root.join("memory/latin1.md"), b"caf\xe9 cr\xe8me").unwrap();
    // 50 MB, sparse: over the size limit before a byte is read.
    std::fs::File::create(root.join("memory/huge.md")).unwrap().set_len(50 * 1024 * 1024).unwrap();
    #[cfg(unix)]
    {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.md"), "secret").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.md"), root.join("memory/leak.md")).unwrap();
        std::os::unix::fs::symlink(root.join("memory"), root.join("memory/loop")).unwrap();
        std::mem::forget(outside);
    }
    let index = open(&root, Some(WordHash::new("v1")));
    let r = index.sync(false, &quiet()).await.unwrap();
    let reason = |name: &str| r.skipped.iter().find(|s| s.path.ends_with(name)).map(|s| s.reason.clone());
    assert!(reason("binary.md").unwrap().contains("binary"), "{r:?}");
    assert!(reason("latin1.md").unwrap().contains("not UTF-8"), "{r:?}");
    assert!(reason("huge.md").unwrap().contains("over the"), "{r:?}");
    #[cfg(unix)]
    assert!(reason("leak.md").unwrap().contains("outside the workspace"), "{r:?}");
    assert_eq!(r.chunks_added, 1);
    let out = index.search("where is the spare key").await.unwrap();
    assert_eq!(out.results[0].candidate.path, "memory/good.md");
    let s = index.status().await.unwrap();
    assert_eq!(s.skipped.len(), r.skipped.len(), "status lists what was left out");
}

#[tokio::test]
async fn a_failing_or_wrong_embedder_is_reported_and_text_search_goes_on() {
    let (_d, root) = workspace();
    std::fs::write(root.join("MEMORY.md"), "Anniversary dinner is booked at Lucia's for the 14th.\n").unwrap();
    let e = WordHash::new("v1");
    e.fail(Some("HTTP 503: overloaded"));
    let index = open(&root, Some(e.clone()));
    let r = index.sync(false, &quiet()).await.unwrap();
    assert!(r.embed_error.as_deref().unwrap().contains("overloaded"), "{r:?}");
    let s = index.status().await.unwrap();
    let Mode::TextOnly { reason } = &s.mode else { panic!("{s:?}") };
    assert!(reason.contains("embedding failed") && reason.contains("overloaded"), "{reason}");
    let out = index.search("anniversary dinner").await.unwrap();
    assert!(matches!(out.mode, Mode::TextOnly { .. }));
    assert_eq!(out.results.len(), 1, "found by text");

    // The provider recovers: the next sync embeds what was missing.
    e.fail(None);
    let r = index.sync(false, &quiet()).await.unwrap();
    assert_eq!((r.embedded, r.embed_error.as_deref()), (1, None));
    assert_eq!(index.status().await.unwrap().mode, Mode::Hybrid);

    // An answer of the wrong length is refused, not stored.
    std::fs::write(root.join("memory/new.md"), "Passport renewal due in March.\n").unwrap();
    *e.dims.lock().unwrap() = 32;
    let r = index.sync(false, &quiet()).await.unwrap();
    assert!(r.embed_error.as_deref().unwrap().contains("32 dimensions where 64"), "{r:?}");
    let s = index.status().await.unwrap();
    assert_eq!((s.chunks, s.vectors), (2, 1));
    assert!(matches!(s.mode, Mode::TextOnly { .. }), "status says some chunks are text-only: {s:?}");
    assert_eq!(index.search("passport renewal").await.unwrap().results.len(), 1);
}

#[tokio::test]
async fn without_an_embedder_search_is_text_only_and_says_why() {
    let (_d, root) = workspace();
    std::fs::write(root.join("USER.md"), "Name: Robin. Prefers short answers.\n").unwrap();
    let index = open(&root, None);
    index.sync(false, &quiet()).await.unwrap();
    let out = index.search("short answers").await.unwrap();
    assert_eq!(out.mode, Mode::TextOnly { reason: "memory.search.provider is none".into() });
    assert_eq!(out.results[0].candidate.path, "USER.md");
}

#[tokio::test]
async fn another_model_replaces_the_vectors() {
    let (_d, root) = workspace();
    std::fs::write(root.join("MEMORY.md"), "Bike lock code is 4417.\n").unwrap();
    let index = open(&root, Some(WordHash::new("v1")));
    index.sync(false, &quiet()).await.unwrap();
    drop(index);
    let v2 = WordHash::new("v2");
    let index = open(&root, Some(v2.clone()));
    let Mode::TextOnly { reason } = index.status().await.unwrap().mode else { panic!() };
    assert!(reason.contains("vectors of test/v1, not test/v2"), "{reason}");
    let r = index.sync(false, &quiet()).await.unwrap();
    assert_eq!(r.embedded, 1, "the unchanged file is embedded again for the new model");
    assert_eq!(index.status().await.unwrap().mode, Mode::Hybrid);
}

#[tokio::test]
async fn get_reads_lines_of_memory_files_only() {
    let (_d, root) = workspace();
    std::fs::write(root.join("MEMORY.md"), "one\ntwo\nthree\nfour\n").unwrap();
    std::fs::write(root.join("AGENTS.md"), "not memory").unwrap();
    let index = open(&root, None);
    index.sync(false, &quiet()).await.unwrap();
    let ex = index.get("MEMORY.md", 2, 2).await.unwrap();
    assert_eq!((ex.from, ex.to, ex.total_lines, ex.text.as_str()), (2, 3, 4, "two\nthree"));
    let past = index.get("MEMORY.md", 10, 5).await.unwrap();
    assert!(past.text.is_empty());
    for p in ["AGENTS.md", "../etc/passwd", "/etc/passwd"] {
        let e = index.get(p, 1, 5).await.unwrap_err();
        assert!(e.to_string().contains("not a memory file"), "{p}: {e}");
    }
}

#[tokio::test]
async fn a_searcher_sees_another_writers_vector_changes() {
    let (_d, root) = workspace();
    // More chunks than the exact shortlist, so the sign-bit shortlist is what finds them.
    for f in 0..80 {
        std::fs::write(root.join(format!("memory/topic-{f}.md")), long_note(&format!("t{f}x"), 8)).unwrap();
    }
    std::fs::write(root.join("MEMORY.md"), "The user drinks oolong tea every morning.\n").unwrap();
    let writer = open(&root, Some(WordHash::new("v1")));
    let r = writer.sync(false, &quiet()).await.unwrap();
    assert!(r.chunks_added > 250, "{r:?}");
    let searcher = open(&root, Some(WordHash::new("v1")));
    let first = searcher.search("oolong tea every morning").await.unwrap();
    let old_id = first.results[0].candidate.id;
    assert_eq!(first.results[0].candidate.path, "MEMORY.md");

    // Another index on the same file (as `clawline memory index` beside a running gateway).
    std::fs::write(root.join("MEMORY.md"), "The user switched to espresso coffee.\n").unwrap();
    let r = writer.sync(false, &quiet()).await.unwrap();
    assert_eq!((r.chunks_added, r.chunks_removed), (1, 1), "{r:?}");

    let near = searcher.nearest("The user switched to espresso coffee.", 24).await.unwrap();
    assert!(near[0].1 > 0.99, "the new chunk is found by its own text: {near:?}");
    let found = searcher.search("espresso coffee").await.unwrap();
    assert_eq!(found.results[0].candidate.id, near[0].0);
    let near = searcher.nearest("oolong tea every morning", 24).await.unwrap();
    assert!(near.iter().all(|(id, _)| *id != old_id), "the removed chunk is gone: {near:?}");
    // A chunk of a topic file is found by its own text too.
    let chunk = searcher.search("t17x3w5").await.unwrap().results[0].candidate.clone();
    let near = searcher.nearest(&chunk.text, 24).await.unwrap();
    assert_eq!(near[0].0, chunk.id, "{near:?}");
    assert!(near[0].1 > 0.99, "{near:?}");
}

#[tokio::test]
async fn text_search_over_far_apart_ids_merges_both_halves() {
    let (_d, root) = workspace();
    let path = root.join(".index/main.sqlite");
    {
        let conn = clawline_memory::db::open(&path, "unicode61").unwrap();
        // Ids far enough apart that the text leg is searched in two halves.
        for (id, text) in [
            (1, "harbour lighthouse keeper"),
            (2, "lighthouse"),
            (50_000, "lighthouse lighthouse keeper harbour"),
            (50_001, "unrelated words"),
        ] {
            conn.execute(
                "INSERT INTO chunks(id, path, source, start_line, end_line, hash, text, updated_at) VALUES (?1, 'MEMORY.md', 'memory', 1, 1, ?1, ?2, 0)",
                rusqlite::params![id, text],
            )
            .unwrap();
            conn.execute("INSERT INTO chunks_fts(rowid, text) VALUES (?1, ?2)", rusqlite::params![id, text]).unwrap();
        }
    }
    let index = MemoryIndex::open(&path, &root, Settings::default(), None, "none").unwrap();
    let out = index.search("lighthouse keeper harbour").await.unwrap();
    let ids: Vec<i64> = out.results.iter().map(|r| r.candidate.id).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids.contains(&1) && ids.contains(&2) && ids.contains(&50_000), "{ids:?}");
    assert!(out.results[0].candidate.id == 50_000 || out.results[0].candidate.id == 1);
}

/// Waits until `ok` holds, up to 20 s (a deadline, not a measurement).
async fn eventually(what: &str, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !ok().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_watcher_indexes_edits_and_deletions_once_files_are_still() {
    use clawline_memory::watch::{WatchSettings, spawn};
    let (_d, root) = workspace();
    std::fs::write(root.join("MEMORY.md"), "The user drinks oolong tea.\n").unwrap();
    let e = WordHash::new("v1");
    let index = Arc::new(open(&root, Some(e.clone())));
    let syncs = Arc::new(AtomicUsize::new(0));
    let counter = syncs.clone();
    let settings =
        WatchSettings { poll: std::time::Duration::from_millis(20), debounce: std::time::Duration::from_millis(100) };
    let watcher = spawn(&index, settings, move |r| {
        assert!(r.is_ok(), "{r:?}");
        counter.fetch_add(1, Ordering::SeqCst);
    });
    // The first look syncs.
    eventually("the first sync", async || syncs.load(Ordering::SeqCst) >= 1).await;
    assert_eq!(index.status().await.unwrap().chunks, 1);

    std::fs::write(root.join("memory/2026-12-02.md"), "Booked the ferry to Hydra for Friday.\n").unwrap();
    eventually("the new note is found", async || {
        index.search("ferry Hydra").await.unwrap().results.iter().any(|r| r.candidate.path == "memory/2026-12-02.md")
    })
    .await;
    assert_eq!(e.embedded(), 2, "only the new note was embedded");

    std::fs::remove_file(root.join("memory/2026-12-02.md")).unwrap();
    eventually("the deleted note is gone", async || index.status().await.unwrap().files == 1).await;

    // Nothing changes: no more syncs (three syncs so far: start, new note, deletion).
    eventually("the third sync is reported", async || syncs.load(Ordering::SeqCst) >= 3).await;
    let before = syncs.load(Ordering::SeqCst);
    assert_eq!(before, 3);
    let idle_until = std::time::Instant::now() + std::time::Duration::from_millis(300);
    while std::time::Instant::now() < idle_until {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(syncs.load(Ordering::SeqCst), before, "an unchanged workspace is not synced again");

    // Dropping the index stops the watcher.
    drop(index);
    tokio::time::timeout(std::time::Duration::from_secs(20), watcher).await.expect("the watcher stops").unwrap();
}

#[tokio::test]
async fn syncs_started_together_embed_each_chunk_once() {
    let (_d, root) = workspace();
    std::fs::write(root.join("MEMORY.md"), long_note("tea", 6)).unwrap();
    let e = WordHash::new("v1");
    *e.delay.lock().unwrap() = Some(std::time::Duration::from_millis(50));
    let index = open(&root, Some(e.clone()));
    let (p1, p2) = (quiet(), quiet());
    let (a, b) = tokio::join!(index.sync(false, &p1), index.sync(false, &p2));
    let (a, b) = (a.unwrap(), b.unwrap());
    let chunks = index.status().await.unwrap().chunks;
    assert!(chunks > 1);
    assert_eq!(a.embedded + b.embedded, chunks, "{a:?} {b:?}");
    assert_eq!(e.embedded(), chunks);
}

#[tokio::test]
async fn a_large_sync_goes_through_the_batch_route_and_the_rest_directly() {
    let (_d, root) = workspace();
    std::fs::write(root.join("MEMORY.md"), long_note("atlas", 12)).unwrap();
    let e = WordHash::new("m1");
    let index = open(&root, Some(e.clone()));

    // Below the route's threshold: all direct.
    *e.bulk.lock().unwrap() = Some(Bulk { min: 1000, ..Bulk::default() });
    let r = index.sync(false, &quiet()).await.unwrap();
    assert!(r.embedded > 3 && r.batch_embedded == 0, "{r:?}");

    // Above it, leaving every third text out: those are embedded directly, nothing twice.
    std::fs::write(root.join("memory/big.md"), long_note("borealis", 12)).unwrap();
    *e.bulk.lock().unwrap() = Some(Bulk { min: 2, skip: 3, fail: None });
    let before = e.embedded();
    let r = index.sync(false, &quiet()).await.unwrap();
    assert!(r.batch_embedded >= 2, "{r:?}");
    assert_eq!(r.batch_embedded, e.bulk_texts.load(Ordering::SeqCst));
    assert_eq!(r.batch_embedded + r.embedded, r.chunks_added, "each new chunk embedded once: {r:?}");
    assert_eq!(e.embedded() - before, r.embedded);
    assert_eq!(r.cache_hits, 0, "batch results are not counted as cache hits: {r:?}");
    let s = index.status().await.unwrap();
    assert_eq!(s.vectors, s.chunks);
    assert!(!index.search("borealis3w7").await.unwrap().results.is_empty());

    // A failing route: reported, and everything embedded directly.
    std::fs::write(root.join("memory/more.md"), long_note("cygnus", 6)).unwrap();
    *e.bulk.lock().unwrap() = Some(Bulk { min: 2, skip: 0, fail: Some("batch quota exhausted".into()) });
    let r = index.sync(false, &quiet()).await.unwrap();
    assert!(r.batch_error.as_deref().is_some_and(|m| m.contains("batch quota exhausted")), "{r:?}");
    assert_eq!((r.batch_embedded, r.embedded), (0, r.chunks_added), "{r:?}");
    assert!(r.embed_error.is_none());
}
