//! Reply formatting: Markdown as models write it, converted for Telegram (HTML) and Slack
//! (mrkdwn), and a long answer cut into platform-sized pieces.
//!
//!     cargo bench -p clawline-channels --bench format

use clawline_channels::format::chunk::{ChunkMode, chunk_text};
use clawline_channels::format::slack_mrkdwn::to_slack_mrkdwn;
use clawline_channels::format::telegram_html::to_telegram_html;

fn main() {
    divan::main();
}

fn answer() -> String {
    let para = "Here is **what I found** in `notes/todo.md`: the _draft_ is due Friday, see \
                [the brief](https://example.com/brief) for details.\n\n- first item\n- second item with `code`\n\n\
                ```rust\nfn main() { println!(\"hi\"); }\n```\n\n";
    para.repeat(20)
}

#[divan::bench]
fn markdown_to_telegram_html() -> String {
    to_telegram_html(divan::black_box(&answer()))
}

#[divan::bench]
fn markdown_to_slack_mrkdwn() -> String {
    to_slack_mrkdwn(divan::black_box(&answer()))
}

#[divan::bench]
fn chunk_for_telegram() -> Vec<String> {
    chunk_text(divan::black_box(&answer()), 4096, ChunkMode::Length)
}
