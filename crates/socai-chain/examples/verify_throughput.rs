//! Verification throughput on synthetic ~450-byte entries, beside bare SHA-256 of the same bytes.
//!
//! `cargo run --release -p socai-chain --example verify_throughput [entries] [threads]`

use serde_json::json;
use socai_chain::entry::Entry;
use socai_chain::hash::sha256;
use socai_chain::{ChainVerifier, Hash, leaf_hash, verify_chunk};
use std::time::Instant;

const CHUNK_ENTRIES: usize = 4096;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);

    let entries = make_entries(n);
    let bytes: usize = entries.iter().map(Vec::len).sum();
    let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
    println!(
        "{n} entries, {:.0} bytes each on average, {threads} threads",
        bytes as f64 / n as f64
    );

    let rate = |label: &str, f: &dyn Fn(&[&[u8]])| {
        let start = Instant::now();
        f(&refs);
        let secs = start.elapsed().as_secs_f64();
        println!("{label:<42} {:>10.0} entries/s", n as f64 / secs);
    };
    rate("baseline: sha256, 1 thread", &|refs| {
        std::hint::black_box(refs.iter().fold(0u8, |x, e| x ^ sha256(e).0[0]));
    });
    rate("Entry::decode_header, 1 thread", &|refs| {
        for e in refs {
            std::hint::black_box(Entry::decode_header(e).unwrap());
        }
    });
    rate("Entry::decode (builds the Value), 1 thread", &|refs| {
        for e in refs {
            std::hint::black_box(Entry::decode(e).unwrap());
        }
    });
    let decoded: Vec<Entry> = refs.iter().map(|e| Entry::decode(e).unwrap()).collect();
    rate("Entry::to_canonical (JCS), 1 thread", &|_| {
        for e in &decoded {
            std::hint::black_box(e.to_canonical());
        }
    });
    rate("verify_chunk + push_chunk, 1 thread", &|refs| {
        verify(refs, 1)
    });
    rate(&format!("baseline: sha256, {threads} threads"), &|refs| {
        std::thread::scope(|s| {
            for part in refs.chunks(refs.len().div_ceil(threads)) {
                s.spawn(move || part.iter().fold(0u8, |x, e| x ^ sha256(e).0[0]));
            }
        });
    });
    rate(
        &format!("verify_chunk + push_chunk, {threads} threads"),
        &|refs| verify(refs, threads),
    );
}

/// Chunks verified on `threads` workers (round robin), joined in order on this thread.
fn verify(refs: &[&[u8]], threads: usize) {
    let chunks: Vec<&[&[u8]]> = refs.chunks(CHUNK_ENTRIES).collect();
    let results = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let chunks = &chunks;
                s.spawn(move || {
                    (t..chunks.len())
                        .step_by(threads)
                        .map(|i| {
                            (
                                i,
                                verify_chunk((i * CHUNK_ENTRIES) as u64, chunks[i]).unwrap(),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<_> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_by_key(|(i, _)| *i);
        all
    });
    let mut chain = ChainVerifier::new();
    for (_, chunk) in &results {
        chain.push_chunk(chunk).unwrap();
    }
    std::hint::black_box(chain.root());
}

fn make_entries(n: u64) -> Vec<Vec<u8>> {
    let mut prev = Hash::ZERO;
    (0..n)
        .map(|seq| {
            let entry = Entry {
                seq,
                prev,
                recorded_at: format!("2026-06-09T01:{:02}:{:02}.123456Z", seq / 60 % 60, seq % 60),
                event: json!({
                    "id": format!("01JD9Q4W8G3N6V{seq:012}"),
                    "type": "dossier.accepted",
                    "agency": "G09.20",
                    "procedure": "1.004227",
                    "dossier": format!("G09.20-20260609-{seq:07}"),
                    "occurred_at": "2026-06-09T08:15:00+07:00",
                    "schema": 1,
                    "data": {"due_at": "2026-06-16T17:00:00+07:00", "digitized_inputs": true, "reused_data": false},
                }),
                personal_commitment: seq.is_multiple_of(2).then(|| sha256(&seq.to_be_bytes())),
            };
            let bytes = entry.to_canonical();
            prev = leaf_hash(&bytes);
            bytes
        })
        .collect()
}
