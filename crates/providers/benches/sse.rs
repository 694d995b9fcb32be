//! SSE decoding: an OpenAI Chat Completions stream of 200 text deltas, fed in 1 KiB pieces
//! as it arrives from the network.
//!
//!     cargo bench -p clawline-providers --bench sse

use clawline_providers::sse::SseDecoder;

fn main() {
    divan::main();
}

fn stream() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..200 {
        s.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1780000000,\"model\":\"gpt-x\",\
             \"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"word{i} \"}},\"finish_reason\":null}}]}}\n\n"
        ));
    }
    s.push_str("data: [DONE]\n\n");
    s.into_bytes()
}

#[divan::bench]
fn decode_200_deltas(b: divan::Bencher) {
    let bytes = stream();
    b.counter(divan::counter::BytesCount::new(bytes.len())).bench(|| {
        let mut d = SseDecoder::with_limit(1 << 20);
        let mut out = Vec::with_capacity(256);
        for piece in bytes.chunks(1024) {
            d.push(piece, &mut out).expect("decode");
        }
        d.finish(&mut out).expect("finish");
        out.len()
    });
}
