//! Tool-loop detection for one run: the same call over and over, or call after call failing.
//!
//! A call is "the same" when the tool name and its arguments are equal as JSON (object keys
//! in any order). The guard is asked before each call runs and told each result; when it
//! says stop, the run loop gives the remaining calls a "not run" result and ends the run with
//! the guard's message. It only counts: what to tell the model or the user is the run's.

use std::collections::HashMap;

use clawline_core::config::LoopDetection;
use serde_json::Value;

/// Why the guard stopped a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopStop {
    pub message: String,
}

/// The counts of one run.
#[derive(Debug)]
pub struct LoopGuard {
    limits: Option<LoopDetection>,
    seen: HashMap<String, u32>,
    failing: u32,
}

impl LoopGuard {
    pub fn new(limits: Option<LoopDetection>) -> Self {
        LoopGuard { limits, seen: HashMap::new(), failing: 0 }
    }

    /// Asked before a call runs: `Err` when this call would be one too many of its kind.
    pub fn before(&mut self, name: &str, arguments: &Value) -> Result<(), LoopStop> {
        let Some(limits) = self.limits else { return Ok(()) };
        // serde_json's maps are ordered by key, so equal objects print equally.
        let key = format!("{name}\u{0}{arguments}");
        let n = self.seen.entry(key).or_insert(0);
        if *n >= limits.max_identical_calls {
            return Err(LoopStop {
                message: format!(
                    "stopped: the model asked for `{name}` with the same arguments {} times in this run \
                     (tools.loopDetection.maxIdenticalCalls is {})",
                    *n + 1,
                    limits.max_identical_calls
                ),
            });
        }
        *n += 1;
        Ok(())
    }

    /// Told after a call returned: `Err` when too many failed in a row.
    pub fn after(&mut self, is_error: bool) -> Result<(), LoopStop> {
        let Some(limits) = self.limits else { return Ok(()) };
        self.failing = if is_error { self.failing + 1 } else { 0 };
        if self.failing >= limits.max_consecutive_errors {
            return Err(LoopStop {
                message: format!(
                    "stopped: {} tool calls failed in a row (tools.loopDetection.maxConsecutiveErrors)",
                    self.failing
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMITS: LoopDetection = LoopDetection { max_identical_calls: 3, max_consecutive_errors: 2 };

    #[test]
    fn the_fourth_identical_call_is_refused_whatever_the_key_order() {
        let mut g = LoopGuard::new(Some(LIMITS));
        assert!(g.before("read", &json!({"path": "a", "n": 1})).is_ok());
        assert!(g.before("read", &json!({"n": 1, "path": "a"})).is_ok());
        assert!(g.before("read", &json!({"path": "b", "n": 1})).is_ok(), "other arguments");
        assert!(g.before("ls", &json!({"path": "a", "n": 1})).is_ok(), "other tool");
        assert!(g.before("read", &json!({"path": "a", "n": 1})).is_ok());
        let stop = g.before("read", &json!({"path": "a", "n": 1})).expect_err("fourth");
        assert!(stop.message.contains("`read` with the same arguments 4 times"), "{}", stop.message);
    }

    #[test]
    fn failures_in_a_row_stop_and_a_success_resets() {
        let mut g = LoopGuard::new(Some(LIMITS));
        assert!(g.after(true).is_ok());
        assert!(g.after(false).is_ok());
        assert!(g.after(true).is_ok());
        assert!(g.after(true).is_err());
    }

    #[test]
    fn off_means_off() {
        let mut g = LoopGuard::new(None);
        for _ in 0..100 {
            assert!(g.before("read", &json!({})).is_ok());
            assert!(g.after(true).is_ok());
        }
    }
}
