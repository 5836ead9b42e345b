//! Validation on its own thread, so it overlaps the single writer's appends: the writer core
//! hashes and commits while the other validates the next batch. Bounded: at most two validated
//! batches wait for the writer.

use socai_model::{Event, Validator};
use std::sync::mpsc::{Receiver, sync_channel};

/// A validated batch: its events, the number (1-based) of its last input line, its input bytes.
pub struct Batch {
    pub events: Vec<Event>,
    pub last_line: u64,
    pub bytes: u64,
}

/// Validates `(line number, bytes)` items on a new thread and sends them in batches of
/// `batch_size`. Stops at the first unreadable or invalid line (sent as an error message naming
/// the line) or when the receiver is dropped.
pub fn validate_in_background<I>(
    items: I,
    validator: Validator,
    batch_size: usize,
) -> Receiver<Result<Batch, String>>
where
    I: Iterator<Item = std::io::Result<(u64, Vec<u8>)>> + Send + 'static,
{
    let (tx, rx) = sync_channel(2);
    std::thread::spawn(move || {
        let mut batch = Batch {
            events: Vec::with_capacity(batch_size),
            last_line: 0,
            bytes: 0,
        };
        for item in items {
            let (line, bytes) = match item {
                Ok(x) => x,
                Err(e) => {
                    let _ = tx.send(Err(format!("reading after line {}: {e}", batch.last_line)));
                    return;
                }
            };
            batch.bytes += bytes.len() as u64 + 1;
            batch.last_line = line;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match validator.validate(&bytes) {
                Ok(event) => batch.events.push(event),
                Err(rejection) => {
                    let _ = tx.send(Err(format!("line {line}: {rejection}")));
                    return;
                }
            }
            if batch.events.len() >= batch_size {
                let fresh = Batch {
                    events: Vec::with_capacity(batch_size),
                    last_line: line,
                    bytes: 0,
                };
                if tx.send(Ok(std::mem::replace(&mut batch, fresh))).is_err() {
                    return;
                }
            }
        }
        if !batch.events.is_empty() {
            let _ = tx.send(Ok(batch));
        }
    });
    rx
}
