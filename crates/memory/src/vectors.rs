//! The in-memory half of vector search: every chunk's embedding reduced to two bits per
//! dimension (96 bytes for a 384-dimension model), and the shortlist those bits give for a
//! query. The exact vectors stay in SQLite (`chunk_vectors`); the index fetches the shortlist's
//! and scores them exactly, so a result's similarity is always the true cosine.
//!
//! A shortlist is made in two narrowing steps:
//!
//! 1. **Hamming distance** between the query's sign bits and every chunk's (a few XOR + POPCNT
//!    per chunk), keeping the `wide` nearest. The distances are small integers, so the cut is a
//!    histogram, not a sort.
//! 2. **Asymmetric score** of those: the query's real values against each chunk's two-bit
//!    reconstruction (sign, and whether the magnitude is above the chunk's median magnitude,
//!    each level standing for the mean magnitude on its side), three table lookups per byte of
//!    code. It ranks far closer to the true cosine than Hamming does; the best `exact` go on to
//!    exact scoring.
//!
//! Memory is `dims / 4 + 16` bytes per chunk (11 MB for 100,000 chunks of 384 dimensions). An
//! index no larger than the exact shortlist is scored exactly in full, so small memories lose
//! nothing.
//!
//! This file is pure: no I/O, no SQL. It must not decide which chunks exist (the database does;
//! see `index.rs`).

/// How many chunks each step keeps for `k` wanted results out of `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortlist {
    /// Kept by Hamming distance.
    pub wide: usize,
    /// Kept by asymmetric score, then scored exactly.
    pub exact: usize,
}

impl Shortlist {
    /// The default sizes: `wide` is 40 per wanted result or 2 % of the index, whichever is
    /// more; `exact` is 4 per wanted result. For 24 candidates over 100,000 chunks that is
    /// 2,000 and 96 (see the benchmark for the recall these give: doubling `exact` gained 2
    /// points of recall for a millisecond).
    pub fn for_query(k: usize, n: usize) -> Shortlist {
        let wide = (k * 40).max(n / 50).min(n);
        Shortlist { wide, exact: (k * 4).min(wide) }
    }
}

/// Sign bits of a set of vectors, with the chunk id of each.
#[derive(Debug, Clone, Default)]
pub struct VectorIndex {
    dims: usize,
    /// `u64` words per code.
    words: usize,
    ids: Vec<i64>,
    /// Sign bits, `words` per chunk.
    bits: Vec<u64>,
    /// "Magnitude above the chunk's median" bits, `words` per chunk.
    mags: Vec<u64>,
    /// Each chunk's mean magnitude below and above its median.
    levels: Vec<[f32; 2]>,
}

/// The sign bits of `v`, `words` words long (bit `i` of word `i / 64` is `v[i] > 0`).
fn sign_bits(v: &[f32], words: usize, out: &mut Vec<u64>) {
    let start = out.len();
    out.resize(start + words, 0);
    for (i, x) in v.iter().enumerate() {
        if *x > 0.0 {
            out[start + i / 64] |= 1 << (i % 64);
        }
    }
}

#[inline(always)]
fn distances_portable(bits: &[u64], words: usize, q: &[u64], out: &mut [u16]) {
    for (d, code) in out.iter_mut().zip(bits.chunks_exact(words)) {
        *d = code.iter().zip(q).map(|(a, b)| (a ^ b).count_ones() as u16).sum();
    }
}

/// The same compiled for CPUs with POPCNT (nearly all x86-64 since 2008).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
fn distances_popcnt(bits: &[u64], words: usize, q: &[u64], out: &mut [u16]) {
    distances_portable(bits, words, q, out);
}

impl VectorIndex {
    pub fn new(dims: usize) -> VectorIndex {
        VectorIndex {
            dims,
            words: dims.div_ceil(64),
            ids: Vec::new(),
            bits: Vec::new(),
            mags: Vec::new(),
            levels: Vec::new(),
        }
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Adds chunk `id`. A vector of the wrong length is refused (the database would not hold
    /// one; this keeps the codes aligned whatever happens).
    pub fn push(&mut self, id: i64, v: &[f32]) -> bool {
        if v.len() != self.dims {
            return false;
        }
        self.ids.push(id);
        sign_bits(v, self.words, &mut self.bits);
        let mut magnitudes: Vec<f32> = v.iter().map(|x| x.abs()).collect();
        let middle = magnitudes.len() / 2;
        let (_, median, _) = magnitudes.select_nth_unstable_by(middle, f32::total_cmp);
        let median = *median;
        let start = self.mags.len();
        self.mags.resize(start + self.words, 0);
        let (mut low, mut high, mut n_high) = (0f32, 0f32, 0usize);
        for (i, x) in v.iter().enumerate() {
            // Strictly above a zero median: a sparse vector's zeros are its low level.
            if x.abs() > median || (x.abs() == median && median > 0.0) {
                self.mags[start + i / 64] |= 1 << (i % 64);
                high += x.abs();
                n_high += 1;
            } else {
                low += x.abs();
            }
        }
        let n_low = v.len() - n_high;
        self.levels.push([low / n_low.max(1) as f32, high / n_high.max(1) as f32]);
        true
    }

    /// Keeps only the chunks `keep` says yes to, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(i64) -> bool) {
        let mut at = 0;
        for i in 0..self.ids.len() {
            if keep(self.ids[i]) {
                self.ids[at] = self.ids[i];
                self.levels[at] = self.levels[i];
                self.bits.copy_within(i * self.words..(i + 1) * self.words, at * self.words);
                self.mags.copy_within(i * self.words..(i + 1) * self.words, at * self.words);
                at += 1;
            }
        }
        self.ids.truncate(at);
        self.levels.truncate(at);
        self.bits.truncate(at * self.words);
        self.mags.truncate(at * self.words);
    }

    /// Hamming distance of every code to `q`'s bits. (Two threads over halves of a 100,000-chunk
    /// index measured no faster: the step is about a millisecond, and search runs it between
    /// the text leg's two threads and the exact lookups.)
    fn distances(&self, q: &[u64]) -> Vec<u16> {
        let mut out = vec![0u16; self.ids.len()];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU has POPCNT (checked just above).
            unsafe { distances_popcnt(&self.bits, self.words, q, &mut out) };
            return out;
        }
        distances_portable(&self.bits, self.words, q, &mut out);
        out
    }

    /// The positions of the `keep` smallest distances (ties at the cut taken in index order).
    fn nearest(dist: &[u16], keep: usize, dims: usize) -> Vec<usize> {
        let mut histogram = vec![0usize; dims + 1];
        for d in dist {
            histogram[usize::from(*d).min(dims)] += 1;
        }
        let (mut cut, mut below) = (0usize, 0usize);
        for (d, count) in histogram.iter().enumerate() {
            if below + count >= keep {
                cut = d;
                break;
            }
            below += count;
        }
        let mut at_cut = keep - below;
        let mut out = Vec::with_capacity(keep);
        for (i, d) in dist.iter().enumerate() {
            let d = usize::from(*d);
            if d < cut {
                out.push(i);
            } else if d == cut && at_cut > 0 {
                out.push(i);
                at_cut -= 1;
            }
        }
        out
    }

    /// The chunk ids to score exactly for query `q` (normalized, `dims` long): see the module
    /// documentation. Every chunk when the index is no larger than `sizes.exact`.
    pub fn shortlist(&self, q: &[f32], sizes: Shortlist) -> Vec<i64> {
        let n = self.ids.len();
        if q.len() != self.dims || n == 0 {
            return Vec::new();
        }
        if n <= sizes.exact {
            return self.ids.clone();
        }
        let mut qbits = Vec::with_capacity(self.words);
        sign_bits(q, self.words, &mut qbits);
        let wide: Vec<usize> = if sizes.wide < n {
            Self::nearest(&self.distances(&qbits), sizes.wide, self.dims)
        } else {
            (0..n).collect()
        };
        // One table per code byte: the sum of the query's values over each of the 256 bit
        // patterns of that byte.
        let bytes = self.words * 8;
        let mut table = vec![[0f32; 256]; bytes];
        for (byte, t) in table.iter_mut().enumerate() {
            for pattern in 1..256usize {
                let low = pattern.trailing_zeros() as usize;
                let value = q.get(byte * 8 + low).copied().unwrap_or(0.0);
                t[pattern] = t[pattern & (pattern - 1)] + value;
            }
        }
        // With s the sign bits, m the magnitude bits, T(x) the table sum over x's set bits and
        // Q the sum of the query: Σ qᵢ·signᵢ = 2T(s) − Q, and Σ qᵢ·signᵢ·mᵢ = 2T(s∧m) − T(m),
        // so q · reconstruction = low·(2T(s) − Q) + (high − low)·(2T(s∧m) − T(m)).
        let q_sum: f32 = q.iter().sum();
        let mut scored: Vec<(f32, usize)> = wide
            .into_iter()
            .map(|i| {
                let signs = &self.bits[i * self.words..(i + 1) * self.words];
                let mags = &self.mags[i * self.words..(i + 1) * self.words];
                let (mut t_s, mut t_sm, mut t_m) = (0f32, 0f32, 0f32);
                for (tables, (sw, mw)) in table.chunks_exact(8).zip(signs.iter().zip(mags)) {
                    let (sb, mb, smb) = (sw.to_le_bytes(), mw.to_le_bytes(), (sw & mw).to_le_bytes());
                    for (b, t) in tables.iter().enumerate() {
                        t_s += t[usize::from(sb[b])];
                        t_m += t[usize::from(mb[b])];
                        t_sm += t[usize::from(smb[b])];
                    }
                }
                let [low, high] = self.levels[i];
                (low * (2.0 * t_s - q_sum) + (high - low) * (2.0 * t_sm - t_m), i)
            })
            .collect();
        let keep = sizes.exact.min(scored.len());
        if keep < scored.len() {
            scored.select_nth_unstable_by(keep, |a, b| b.0.total_cmp(&a.0));
            scored.truncate(keep);
        }
        scored.into_iter().map(|(_, i)| self.ids[i]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u64, dims: usize) -> Vec<f32> {
        let mut s = seed | 1;
        let v: Vec<f32> = (0..dims)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect();
        crate::embed::normalized(&v)
    }

    #[test]
    fn a_small_index_is_scored_in_full() {
        let mut ix = VectorIndex::new(8);
        for id in 1..=5 {
            assert!(ix.push(id, &unit(id as u64, 8)));
        }
        assert!(!ix.push(9, &[1.0; 3]), "wrong length refused");
        let mut got = ix.shortlist(&unit(3, 8), Shortlist { wide: 100, exact: 10 });
        got.sort();
        assert_eq!(got, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn the_nearest_vector_survives_both_steps() {
        let dims = 96;
        let mut ix = VectorIndex::new(dims);
        for id in 0..5000 {
            ix.push(id, &unit(id as u64 + 10, dims));
        }
        // A query close to chunk 1234: the chunk plus a little noise.
        let target = unit(1244, dims);
        let noise = unit(99, dims);
        let q = crate::embed::normalized(&target.iter().zip(&noise).map(|(a, b)| a + 0.2 * b).collect::<Vec<_>>());
        let list = ix.shortlist(&q, Shortlist { wide: 200, exact: 20 });
        assert_eq!(list.len(), 20);
        assert!(list.contains(&1234), "{list:?}");
    }

    #[test]
    fn nearest_cuts_ties_exactly() {
        let dist = [3u16, 1, 2, 1, 0, 2, 2];
        assert_eq!(VectorIndex::nearest(&dist, 3, 8), vec![1, 3, 4]);
        assert_eq!(VectorIndex::nearest(&dist, 4, 8), vec![1, 2, 3, 4]);
        assert_eq!(VectorIndex::nearest(&dist, 7, 8).len(), 7);
    }

    #[test]
    fn retain_keeps_codes_with_their_ids() {
        let mut ix = VectorIndex::new(70);
        for id in 0..10 {
            ix.push(id, &unit(id as u64 + 1, 70));
        }
        let before: Vec<u64> = ix.bits[7 * ix.words..8 * ix.words].to_vec();
        ix.retain(|id| id % 2 == 1);
        assert_eq!(ix.ids, vec![1, 3, 5, 7, 9]);
        assert_eq!(&ix.bits[3 * ix.words..4 * ix.words], &before[..]);
        // The chunk itself is its own nearest neighbour.
        let q = unit(8, 70);
        assert!(ix.shortlist(&q, Shortlist { wide: 2, exact: 1 }).contains(&7));
    }

    #[test]
    fn popcount_paths_agree() {
        let mut ix = VectorIndex::new(200);
        for id in 0..50 {
            ix.push(id, &unit(id as u64 + 3, 200));
        }
        let mut q = Vec::new();
        sign_bits(&unit(77, 200), ix.words, &mut q);
        let mut portable = vec![0u16; 50];
        distances_portable(&ix.bits, ix.words, &q, &mut portable);
        assert_eq!(ix.distances(&q), portable);
    }
}
