//! Retention: a background thread that prunes delivered messages, their attempts and events
//! older than `retention_days`, and old idempotency keys, in small batches with pauses so
//! that it never holds the writer for long, then checkpoints the WAL so it stays small
//! (unless `storage.checkpoints = false` leaves that to another process, such as Litestream).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::store::{IDEMPOTENCY_WINDOW_MS, Store};
use crate::supervise::{Beat, IDLE_WAKE, Supervisor, WRITER_BOUND};

/// How often a pass runs.
const INTERVAL: Duration = Duration::from_secs(60);
/// Rows deleted per transaction.
const BATCH: usize = 500;
/// Pause between batches, so deliveries and intake get the writer in between.
const PAUSE: Duration = Duration::from_millis(20);

/// Runs passes until `stop` receives a message or is closed.
///
/// The thread is restarted if it panics (`supervise.rs`): it holds nothing between passes,
/// and a batch cut short rolls back, so the next pass simply deletes it again.
pub fn start(
    store: Arc<Store>,
    retention_days: u32,
    checkpoints: bool,
    stop: Receiver<()>,
    supervisor: &Supervisor,
) -> std::io::Result<JoinHandle<()>> {
    supervisor.spawn_restarting("retention", WRITER_BOUND, move |beat| {
        loop {
            // Waits out the interval in short sleeps, beating between them. The interval runs
            // on the monotonic clock, and the test clock's jumps are seen within one wait.
            let due = crate::time::mono() + INTERVAL;
            loop {
                beat.beat();
                let left = due.saturating_duration_since(crate::time::mono());
                if left.is_zero() {
                    break;
                }
                match stop.recv_timeout(crate::time::wait(left.min(IDLE_WAKE))) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            }
            beat.work();
            if let Err(e) = pass(&store, retention_days, checkpoints, &stop, beat) {
                log::error!("retention pass failed: {e}");
            }
        }
    })
}

fn pass(
    store: &Store,
    retention_days: u32,
    checkpoints: bool,
    stop: &Receiver<()>,
    beat: &Beat,
) -> crate::store::Result<()> {
    let now = crate::time::now_ms();
    let cutoff = now - i64::from(retention_days) * 24 * 3600 * 1000;
    let mut total = 0;
    loop {
        beat.beat();
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
    beat.beat();
    // The checkpoint waits for every reader, holding the writer meanwhile. Beside Litestream,
    // whose read transaction never ends, it would stall every write for the busy timeout and
    // then give up; Litestream checkpoints the log itself.
    if checkpoints {
        store.checkpoint()
    } else {
        Ok(())
    }
}
