//! A JSON5 reader that keeps where every value came from.
//!
//! Config errors must name the file, line, column and key, and `clawline config set` must edit a
//! commented file without losing its comments. Both need byte spans for every key and value,
//! which general-purpose JSON5 crates do not expose, so this module parses JSON5 into a tree of
//! [`Node`]s carrying [`Span`]s, deserializes typed structs from that tree through serde
//! ([`from_node`]), and edits the source text in place ([`edit`]).
//!
//! It must not evaluate anything (no `${ENV}` expansion happens here) and must never panic on
//! any input: every failure is a [`ParseError`] with a position.

mod de;
pub mod edit;
mod parser;
mod position;
mod value;

pub use de::{DeError, from_node};
pub use parser::{MAX_DEPTH, ParseError, parse};
pub use position::{LineCol, line_col};
pub use value::{Key, Node, Number, Span, Value, split_path};
