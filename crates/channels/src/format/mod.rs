//! Text formatting for chat platforms: splitting long replies into chunks a platform accepts,
//! and converting the model's Markdown into each platform's markup.
//!
//! Everything here is a pure function of its input: no I/O, no configuration, no platform
//! client, and no panics on any input. Chunk the Markdown first ([`chunk_text`] keeps each
//! piece's code fences balanced) and convert each piece on its own; a converted piece can differ
//! in length from its Markdown (tables gain padding, mentions a zero-width space), so re-check
//! with [`telegram_visible_len`] where the platform's limit is tight.

pub mod chunk;
pub mod discord;
pub mod markdown;
pub mod slack_mrkdwn;
pub mod telegram_html;

pub use chunk::{ChunkMode, DISCORD_MAX_CHARS, DISCORD_MAX_LINES, TELEGRAM_MAX_CHARS, chunk_lines, chunk_text};
pub use discord::to_discord_markdown;
pub use slack_mrkdwn::to_slack_mrkdwn;
pub use telegram_html::{strip_to_plain, telegram_visible_len, to_telegram_html};
