//! Choosing which model and which credential answer a call: routes, cooldowns, fallback.
//!
//! [`cooldown`] decides what a failure benches and for how long; [`router`] walks the routes.

pub mod cooldown;
pub mod router;

pub use cooldown::{CooldownBook, Resting, Verdict};
pub use router::{Answer, FallbackNote, Route, Router};
