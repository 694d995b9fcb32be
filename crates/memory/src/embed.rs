//! What the index needs from an embedding model, whoever runs it: a remote API (see the
//! providers crate) or a model in this process.
//!
//! An [`Embedder`] turns texts into vectors. It need not be trusted: the index checks that it
//! answered one vector per text, all of one length, with finite numbers, and reports the
//! embedder's failure instead of storing anything wrong. This file must not do I/O.

use std::future::Future;
use std::pin::Pin;

/// What a text is embedded for (some models embed queries and documents differently).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Query,
    Document,
}

/// Why an embedding call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{provider}/{model}: {message}")]
pub struct EmbedError {
    pub provider: String,
    pub model: String,
    pub message: String,
}

pub type EmbedFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<Vec<f32>>, EmbedError>> + Send + 'a>>;
/// One entry per text: its vector, or `None` when the bulk route left it out.
pub type BulkFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<Option<Vec<f32>>>, EmbedError>> + Send + 'a>>;

/// An embedding model.
pub trait Embedder: Send + Sync {
    /// The provider id (`openai`, `local`, …), part of the cache key.
    fn provider(&self) -> &str;
    /// The model id, part of the cache key.
    fn model(&self) -> &str;
    /// How many texts one call may carry.
    fn max_batch(&self) -> usize {
        64
    }
    /// One vector per text, in order.
    fn embed<'a>(&'a self, texts: &'a [String], purpose: Purpose) -> EmbedFuture<'a>;
    /// Documents embedded by a slower, cheaper route (a provider's batch API), when this
    /// embedder has one and wants it for this many texts; `None`: embed them directly. Texts
    /// the route leaves out are embedded directly afterwards.
    fn bulk<'a>(&'a self, _texts: &'a [String]) -> Option<BulkFuture<'a>> {
        None
    }
    /// Whether [`Embedder::bulk`] would take `count` texts (checked before the index looks up
    /// which of them still need a vector, so embedders without a bulk route cost nothing).
    fn wants_bulk(&self, _count: usize) -> bool {
        false
    }
}

/// Checks an embedder's answer for `expected` texts: the vectors' common length.
pub fn check(answer: &[Vec<f32>], expected: usize, dims: Option<usize>) -> Result<usize, String> {
    if answer.len() != expected {
        return Err(format!("answered {} vectors for {expected} texts", answer.len()));
    }
    let want = dims.or_else(|| answer.first().map(Vec::len)).unwrap_or(0);
    if want == 0 {
        return Err("answered empty vectors".into());
    }
    for v in answer {
        if v.len() != want {
            return Err(format!("answered a vector of {} dimensions where {want} were expected", v.len()));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err("answered a vector with NaN or infinite values".into());
        }
    }
    Ok(want)
}

/// `v` scaled to unit length (cosine similarity becomes a dot product); zero stays zero.
pub fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    if norm == 0.0 { v.to_vec() } else { v.iter().map(|x| (f64::from(*x) / norm) as f32).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_checked() {
        assert_eq!(check(&[vec![1.0, 2.0], vec![3.0, 4.0]], 2, None), Ok(2));
        assert!(check(&[vec![1.0]], 2, None).unwrap_err().contains("1 vectors for 2"));
        assert!(check(&[vec![1.0, 2.0]], 1, Some(3)).unwrap_err().contains("2 dimensions where 3"));
        assert!(check(&[vec![f32::NAN]], 1, None).unwrap_err().contains("NaN"));
        assert!(check(&[vec![]], 1, None).is_err());
        let n = normalized(&[3.0, 4.0]);
        assert!((n[0] - 0.6).abs() < 1e-6 && (n[1] - 0.8).abs() < 1e-6);
    }
}
