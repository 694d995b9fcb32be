//! Hybrid ranking: vector and full-text candidates merged into one list, the way OpenClaw's
//! memory ranks them, with its defaults.
//!
//! 1. Each leg brings `maxResults × candidateMultiplier` candidates. A vector hit scores its
//!    cosine similarity; a text hit scores its BM25 rank `r` (negative, lower is better) as
//!    `-r / (1 - r)`, which maps it into 0..1.
//! 2. `combined = vectorWeight · vector + textWeight · text` (a leg that missed counts 0). With
//!    no embeddings the text score is the score, relative to the best text hit (which scores 1):
//!    BM25 values are tiny in a small corpus (a word in half the files has almost no IDF), so an
//!    absolute threshold would hide every text-only result of a personal memory.
//! 3. Dated daily notes (`memory/…/YYYY-MM-DD.md`) decay with a half-life (30 days); other
//!    files are evergreen.
//! 4. MMR re-orders for variety: each pick maximises `λ · score − (1 − λ) · max Jaccard
//!    similarity` of its words to the picks so far (λ 0.7).
//! 5. Results under `minScore` (0.35) are dropped — except a chunk that contains every word of
//!    the query (leaving out English function words), which is never hidden by the threshold —
//!    and `maxResults` (6) are kept.
//!
//! This file is pure: no I/O.

use std::collections::HashSet;

/// Ranking knobs (`memory.search.query`).
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    pub max_results: usize,
    pub min_score: f64,
    pub vector_weight: f64,
    pub text_weight: f64,
    pub candidate_multiplier: usize,
    /// `None`: no MMR re-ordering.
    pub mmr_lambda: Option<f64>,
    /// `None`: no decay.
    pub half_life_days: Option<f64>,
}

impl Default for Ranking {
    fn default() -> Self {
        use clawline_core::config::memory::defaults as d;
        Ranking {
            max_results: d::MAX_RESULTS,
            min_score: d::MIN_SCORE,
            vector_weight: d::VECTOR_WEIGHT,
            text_weight: d::TEXT_WEIGHT,
            candidate_multiplier: d::CANDIDATE_MULTIPLIER,
            mmr_lambda: Some(d::MMR_LAMBDA),
            half_life_days: Some(d::HALF_LIFE_DAYS),
        }
    }
}

impl Ranking {
    /// How many candidates each leg fetches.
    pub fn candidates(&self) -> usize {
        (self.max_results * self.candidate_multiplier.max(1)).max(1)
    }
}

/// A chunk found by one leg or both.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: i64,
    pub path: String,
    pub start_line: usize,
    pub end_line: usize,
    pub text: String,
    /// Cosine similarity, when the vector leg found it.
    pub vector: Option<f64>,
    /// BM25 rank (negative), when the text leg found it.
    pub bm25: Option<f64>,
}

/// A ranked result.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub candidate: Candidate,
    pub score: f64,
    /// Contains every word of the query.
    pub exact: bool,
}

/// BM25 rank → 0..1 (higher is better).
pub fn text_score(rank: f64) -> f64 {
    if rank < 0.0 { -rank / (1.0 - rank) } else { 1.0 / (1.0 + rank) }
}

/// Lower-cased words of two or more letters or digits.
pub fn words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| w.chars().count() >= 2).map(str::to_lowercase).collect()
}

/// English function words, which carry no topic: a question's "where is the" must not outrank
/// its "boat" (in a small corpus BM25 cannot tell them apart, every word being about as rare).
const STOPWORDS: &[&str] = &[
    "a", "about", "all", "am", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by", "can", "could", "did",
    "do", "does", "for", "from", "had", "has", "have", "he", "her", "his", "how", "if", "in", "into", "is", "it",
    "its", "me", "my", "no", "not", "of", "on", "or", "our", "she", "so", "than", "that", "the", "their", "them",
    "then", "there", "these", "they", "this", "to", "us", "was", "we", "were", "what", "when", "where", "which", "who",
    "whom", "why", "will", "with", "would", "you", "your",
];

/// The words of a query that say what it is about: [`words`] without [`STOPWORDS`], or all of
/// them when nothing else is left.
pub fn query_words(query: &str) -> HashSet<String> {
    let all = words(query);
    let content: HashSet<String> = all.iter().filter(|w| !STOPWORDS.contains(&w.as_str())).cloned().collect();
    if content.is_empty() { all } else { content }
}

/// The hash of a word as [`words`] would give it (lower-cased), computed without allocating.
/// Final sigma is folded into sigma, so a word hashes the same wherever it stands.
fn word_hash(word: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut buf = [0u8; 4];
    for c in word.chars().flat_map(char::to_lowercase) {
        let c = if c == 'ς' { 'σ' } else { c };
        for b in c.encode_utf8(&mut buf).bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}

/// A text's words (as [`words`] splits them) as sorted, distinct hashes: a compact set for
/// fast Jaccard similarity and word lookups.
fn word_hashes(text: &str) -> Vec<u64> {
    let mut v: Vec<u64> =
        text.split(|c: char| !c.is_alphanumeric()).filter(|w| w.chars().nth(1).is_some()).map(word_hash).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// |a ∩ b| / |a ∪ b| of two sorted, distinct lists. The merge is branch-free (MMR runs it for
/// every pair of candidates, and a mispredicted branch per step was most of a search's ranking).
fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 0.0;
    }
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        inter += usize::from(x == y);
        i += usize::from(x <= y);
        j += usize::from(y <= x);
    }
    inter as f64 / (a.len() + b.len() - inter) as f64
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The day a dated daily note is for (`memory/…/YYYY-MM-DD.md`), in days since the epoch.
pub fn note_day(path: &str) -> Option<i64> {
    if !path.starts_with("memory/") {
        return None;
    }
    let name = path.rsplit('/').next()?;
    let stem = name.strip_suffix(".md").or_else(|| name.strip_suffix(".MD"))?;
    let b = stem.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |s: &str| s.parse::<i64>().ok();
    let (y, m, d) = (num(&stem[..4])?, num(&stem[5..7])?, num(&stem[8..])?);
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then(|| days_from_civil(y, m, d))
}

/// The decay multiplier of `path` at `now_ms`.
pub fn decay(path: &str, now_ms: i64, half_life_days: f64) -> f64 {
    match note_day(path) {
        Some(day) if half_life_days > 0.0 => {
            let age = (now_ms as f64 / 86_400_000.0 - day as f64).max(0.0);
            0.5f64.powf(age / half_life_days)
        }
        _ => 1.0,
    }
}

/// Ranks merged candidates for `query`. `hybrid` is false when there are no embeddings.
pub fn rank(query: &str, candidates: Vec<Candidate>, r: &Ranking, now_ms: i64, hybrid: bool) -> Vec<Scored> {
    let query_hashes: Vec<u64> = query_words(query).iter().map(|w| word_hash(w)).collect();
    let best_text = candidates.iter().filter_map(|c| c.bm25.map(text_score)).fold(0.0, f64::max);
    let mut scored: Vec<(Scored, Vec<u64>)> = candidates
        .into_iter()
        .map(|c| {
            let text = c.bm25.map(text_score).unwrap_or(0.0);
            let base = if hybrid {
                r.vector_weight * c.vector.unwrap_or(0.0) + r.text_weight * text
            } else if best_text > 0.0 {
                text / best_text
            } else {
                0.0
            };
            let score = r.half_life_days.map_or(base, |h| base * decay(&c.path, now_ms, h));
            let hashes = word_hashes(&c.text);
            let exact = !query_hashes.is_empty() && query_hashes.iter().all(|q| hashes.binary_search(q).is_ok());
            (Scored { candidate: c, score, exact }, hashes)
        })
        .collect();
    scored.sort_by(|a, b| b.0.score.total_cmp(&a.0.score).then(a.0.candidate.id.cmp(&b.0.candidate.id)));
    let shown = |s: &Scored| s.exact || s.score >= r.min_score;
    match r.mmr_lambda {
        Some(lambda) => mmr(scored, lambda, shown, r.max_results),
        None => scored.into_iter().map(|(s, _)| s).filter(|s| shown(s)).take(r.max_results).collect(),
    }
}

/// Maximal marginal relevance re-ordering of score-sorted items, until `want` picks pass
/// `shown` (the others are dropped as they come). Each item's similarity to the picks so far is
/// kept up to date with the newest pick only, so the work is quadratic, not cubic.
fn mmr(mut pool: Vec<(Scored, Vec<u64>)>, lambda: f64, shown: impl Fn(&Scored) -> bool, want: usize) -> Vec<Scored> {
    let mut nearest = vec![0.0f64; pool.len()];
    let mut picked: Vec<Scored> = Vec::with_capacity(want);
    while !pool.is_empty() && picked.len() < want {
        let mut best = 0;
        let mut best_value = f64::NEG_INFINITY;
        for (i, (s, _)) in pool.iter().enumerate() {
            let value = lambda * s.score - (1.0 - lambda) * nearest[i];
            if value > best_value {
                best_value = value;
                best = i;
            }
        }
        let (item, words) = pool.remove(best);
        nearest.remove(best);
        for (i, (_, w)) in pool.iter().enumerate() {
            nearest[i] = nearest[i].max(jaccard(w, &words));
        }
        if shown(&item) {
            picked.push(item);
        }
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: i64, path: &str, text: &str, vector: Option<f64>, bm25: Option<f64>) -> Candidate {
        Candidate { id, path: path.into(), start_line: 1, end_line: 1, text: text.into(), vector, bm25 }
    }

    #[test]
    fn bm25_ranks_map_into_the_unit_interval() {
        assert!((text_score(-1.0) - 0.5).abs() < 1e-12);
        assert!(text_score(-9.0) > text_score(-1.0));
        assert!((text_score(0.0) - 1.0).abs() < 1e-12);
        assert!(text_score(-1e9) < 1.0);
    }

    #[test]
    fn daily_notes_decay_with_a_half_life_and_evergreen_files_do_not() {
        assert_eq!(note_day("memory/2026-12-02.md"), Some(days_from_civil(2026, 12, 2)));
        assert!(note_day("memory/journal/2026-02-30.md").is_some());
        assert_eq!(note_day("MEMORY.md"), None);
        assert_eq!(note_day("memory/2026-13-01.md"), None);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        let now = days_from_civil(2026, 12, 31) * 86_400_000;
        assert!((decay("memory/2026-12-01.md", now, 30.0) - 0.5).abs() < 1e-9);
        assert_eq!(decay("MEMORY.md", now, 30.0), 1.0);
        assert_eq!(decay("notes/2026-12-01.md", now, 30.0), 1.0, "only notes under memory/");
    }

    #[test]
    fn weights_threshold_and_the_exact_match_exception() {
        let r = Ranking { mmr_lambda: None, half_life_days: None, ..Ranking::default() };
        let out = rank(
            "blue car",
            vec![
                cand(1, "a.md", "we sold the blue car", Some(0.2), Some(-0.5)),
                cand(2, "b.md", "a vehicle of azure colour", Some(0.9), None),
                cand(3, "c.md", "the weather", Some(0.3), None),
            ],
            &r,
            0,
            true,
        );
        let ids: Vec<i64> = out.iter().map(|s| s.candidate.id).collect();
        // 2: 0.63 kept; 1: 0.14 + 0.1 = 0.24 under the threshold but an exact match; 3: 0.21 dropped.
        assert_eq!(ids, [2, 1]);
        assert!(out[1].exact && !out[0].exact);
        assert!((out[0].score - 0.63).abs() < 1e-9);
    }

    #[test]
    fn jaccard_of_sorted_sets() {
        assert_eq!(jaccard(&[1, 2, 3], &[2, 3, 4]), 0.5);
        assert_eq!(jaccard(&[1, 5], &[2, 6]), 0.0);
        assert_eq!(jaccard(&[7], &[7]), 1.0);
        assert_eq!(jaccard(&[], &[]), 0.0);
        assert_eq!(jaccard(&[1, 2, 3, 9], &[3]), 0.25);
    }

    #[test]
    fn exact_matches_ignore_case_in_any_script() {
        let r = Ranking { mmr_lambda: Some(0.7), half_life_days: None, min_score: 0.99, ..Ranking::default() };
        let out = rank(
            "ΟΔΟΣ Straße",
            vec![
                cand(1, "a.md", "η οδος και η STRASSE", Some(0.1), None),
                cand(2, "b.md", "Η ΟΔΟΣ, die straße.", Some(0.1), None),
            ],
            &r,
            0,
            true,
        );
        let ids: Vec<i64> = out.iter().map(|s| s.candidate.id).collect();
        assert_eq!(ids, [2], "only the chunk with both words is kept under the threshold");
        assert_eq!(word_hash("ΟΔΟΣ"), word_hash("οδοσ"));
        assert_eq!(word_hashes("A a Bb bB"), vec![word_hash("bb")]);
    }

    #[test]
    fn text_only_scores_are_relative_to_the_best_hit() {
        let r = Ranking { mmr_lambda: None, half_life_days: None, ..Ranking::default() };
        let out = rank(
            "where is the boat",
            vec![
                cand(1, "a.md", "the boat is at pier 7", None, Some(-1e-6)),
                cand(2, "b.md", "is it", None, Some(-3e-7)),
            ],
            &r,
            0,
            false,
        );
        assert_eq!(out.len(), 1, "the weaker hit is under 35% of the best: {out:?}");
        assert!((out[0].score - 1.0).abs() < 1e-9);
    }

    #[test]
    fn mmr_prefers_variety_over_a_near_duplicate() {
        let r = Ranking { half_life_days: None, min_score: 0.0, ..Ranking::default() };
        let out = rank(
            "trip",
            vec![
                cand(1, "a.md", "paris trip in may with anna", Some(0.9), None),
                cand(2, "b.md", "paris trip in may with anna and bob", Some(0.89), None),
                cand(3, "c.md", "budget spreadsheet for the office", Some(0.8), None),
            ],
            &r,
            0,
            true,
        );
        let ids: Vec<i64> = out.iter().map(|s| s.candidate.id).collect();
        assert_eq!(ids, [1, 3, 2]);
    }
}
