//! Retention: a background thread that prunes delivered messages, their attempts and events
//! older than `retention_days`, and old idempotency keys, in small batches with pauses so
//! that it never holds the writer for long, then checkpoints the WAL so it stays small.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::store::{IDEMPOTENCY_WINDOW_MS, Store};

/// How often a pass runs.
const INTERVAL: Duration = Duration::from_secs(60);
/// Rows deleted per transaction.
const BATCH: usize = 500;
/// Pause between batches, so deliveries and intake get the writer in between.
const PAUSE: Duration = Duration::from_millis(20);

/// Runs passes until `stop` receives a message or is closed.
pub fn start(
    store: Arc<Store>,
    retention_days: u32,
    stop: Receiver<()>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("retention".into())
        .spawn(move || {
            // The interval runs on the monotonic clock: a wall clock stepped back does not
            // hold passes off, and the test clock's jumps are seen within one short wait.
            let mut next = crate::time::mono() + INTERVAL;
            loop {
                let left = next.saturating_duration_since(crate::time::mono());
                match stop.recv_timeout(crate::time::wait(left)) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                if crate::time::mono() < next {
                    continue;
                }
                next = crate::time::mono() + INTERVAL;
                if let Err(e) = pass(&store, retention_days, &stop) {
                    log::error!("retention pass failed: {e}");
                }
            }
        })
}

fn pass(store: &Store, retention_days: u32, stop: &Receiver<()>) -> crate::store::Result<()> {
    let now = crate::time::now_ms();
    let cutoff = now - i64::from(retention_days) * 24 * 3600 * 1000;
    let mut total = 0;
    loop {
        let n = store.prune(cutoff, now - IDEMPOTENCY_WINDOW_MS, BATCH)?;
        total += n;
        if n < BATCH || !stop.is_empty() {
            break;
        }
        std::thread::sleep(PAUSE);
    }
    if total > 0 {
        log::info!("retention: pruned {total} delivered messages older than {retention_days} days");
    }
    store.checkpoint()
}
