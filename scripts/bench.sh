#!/usr/bin/env bash
# Reproduces the README's Performance figures on this machine: builds the release binary and
# the measuring tools, then runs, in order (nothing else should run meanwhile: 2 cores):
#
#   1. clawline-measure          spawn → /readyz and idle RSS (minimal, then web chat + 3 channels)
#   2. clawline-load             sequential turns (the gateway's added latency), then 1,000
#                                sessions × 3 turns, 16 at a time, over the OpenAI API and the
#                                WebSocket protocol (throughput, p50/p95/p99, RSS at 1,000 sessions),
#                                then 200 Telegram chats through the Bot API twin
#   3. cargo bench               the divan micro-benchmarks (frames, SSE, transcript append,
#                                session lookup, formatting, metrics) and memory search
#
#   scripts/bench.sh             # everything (about 15 minutes on 2 cores, most of it building)
#   scripts/bench.sh --quick     # 1 and 2 only, with fewer runs and sessions
#
# Every load is on loopback, bounded in count and time, against the testkit model twin.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=${1:-}
runs=20; sessions=1000
if [ "$quick" = --quick ]; then runs=5; sessions=200; fi

cargo build --release --locked -p clawline -p clawline-testkit --bin clawline --bin clawline-measure --bin clawline-load
bin=target/release/clawline
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r), $(date -u +%F)"
echo "== binary: $(du -h "$bin" | cut -f1)"

echo "== start-up and idle memory"
target/release/clawline-measure --bin "$bin" --runs "$runs"
target/release/clawline-measure --bin "$bin" --runs "$runs" --channels

echo "== one turn at a time (the gateway's own cost per turn)"
target/release/clawline-load --bin "$bin" --entry openai --sessions "$sessions" --turns 1 --concurrency 1
echo "== $sessions sessions × 3 turns, 16 at a time"
target/release/clawline-load --bin "$bin" --entry openai --sessions "$sessions" --turns 3 --concurrency 16
target/release/clawline-load --bin "$bin" --entry ws --sessions "$sessions" --turns 3 --concurrency 16
echo "== a chat app: 200 Telegram chats × 3 messages, 16 at a time (the Bot API twin)"
target/release/clawline-load --bin "$bin" --entry telegram --sessions 200 --turns 3 --concurrency 16
echo "== a channel: 200 Telegram chats × 3 messages, 16 at a time (the Bot API twin)"
target/release/clawline-load --bin "$bin" --entry telegram --sessions 200 --turns 3 --concurrency 16

[ "$quick" = --quick ] && exit 0
echo "== micro-benchmarks"
cargo bench --locked -p clawline-gateway --bench protocol -p clawline-providers --bench sse \
  -p clawline-store --bench transcript -p clawline-channels --bench format -p clawline-observe --bench metrics
cargo bench --locked -p clawline-memory --features local --bench memory_search
