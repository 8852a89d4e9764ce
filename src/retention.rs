//! Retention: a background thread that prunes delivered messages, their attempts and events
//! older than `retention_days`, incidents resolved longer ago than that (never open ones),
//! and old idempotency keys, folds monitors' check history older than a day into hour rows
//! (and drops what is older than each keeps), all in small batches with pauses so that it
//! never holds the writer for long, then checkpoints the WAL so it stays small (unless
//! `storage.checkpoints = false` leaves that to another process, such as Litestream).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::store::{IDEMPOTENCY_WINDOW_MS, Store};
use crate::supervise::{Beat, IDLE_WAKE, Supervisor, WRITER_BOUND};

/// How often a pass runs.
const INTERVAL: Duration = Duration::from_secs(60);
/// Rows deleted per transaction.
const BATCH: usize = 500;
/// Pause between batches, so deliveries and intake get the writer in between.
const PAUSE: Duration = Duration::from_millis(20);
/// Minute rows of check history folded (or hour and minute rows dropped) per transaction,
/// about: 30 hours of one monitor. Measured at fleet size in BENCHMARKS.md ("Check history
/// by the hour").
const FOLD_BATCH: usize = 1800;
/// Folding batches between two checkpoints beside the writer: each writes about 40 pages.
const FOLD_CHECKPOINT: usize = 16;
/// Pruning batches between two checkpoints beside the writer: each writes about 200 pages.
const PRUNE_CHECKPOINT: usize = 2;

/// How often the scan for events without messages starts over from the first event: events
/// it passed because their messages were kept lose them when their endpoint is deleted, and a
/// forward-only scan would never see them again.
const EVENT_RESCAN: Duration = Duration::from_secs(24 * 3600);

/// Where the scan for events without messages (`Store::prune_events`) goes on from: each
/// pass goes on where the last stopped, so the events it passes over (kept by a failed
/// message, which stays until its endpoint goes) are read once a day, not once a minute.
struct EventCursor {
    after: i64,
    since: Instant,
}

impl EventCursor {
    fn new() -> EventCursor {
        EventCursor {
            after: 0,
            since: Instant::now(),
        }
    }
}

/// Runs passes until `stop` receives a message or is closed.
///
/// The thread is restarted if it panics (`supervise.rs`): all it keeps between passes is
/// where the scan for events without messages goes on, which a restart begins again from the
/// start, and a batch cut short rolls back, so the next pass simply deletes it again.
pub fn start(
    store: Arc<Store>,
    retention_days: u32,
    checkpoints: bool,
    stop: Receiver<()>,
    supervisor: &Supervisor,
) -> std::io::Result<JoinHandle<()>> {
    supervisor.spawn_restarting("retention", WRITER_BOUND, move |beat| {
        let mut events = EventCursor::new();
        let mut due = crate::time::mono() + INTERVAL;
        loop {
            // Waits out the interval in short sleeps, beating between them. The interval runs
            // on the monotonic clock, and the test clock's jumps are seen within one wait.
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
            // The next pass is due an interval after this one began, not after it ended: a
            // pass reads the time once, at its start, so time that passed while it ran (a
            // long pass, a suspended machine, the test clock's jump) is covered by the next
            // pass, at once if an interval has gone by. Counted from the end, a pass would wait
            // a whole interval more with that time's work undone.
            due = crate::time::mono() + INTERVAL;
            if let Err(e) = pass(
                &store,
                retention_days,
                checkpoints,
                &stop,
                beat,
                &mut events,
            ) {
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
    events: &mut EventCursor,
) -> crate::store::Result<()> {
    let now = crate::time::now_ms();
    let cutoff = now - i64::from(retention_days) * 24 * 3600 * 1000;
    let (mut messages, mut events_gone) = (0, 0);
    // What a pass costs is real time spent, so it is read on the real clock, not on
    // `time::mono`, which the test clock moves.
    let started = Instant::now();
    // The longest batch, waiting for the writer and reading ahead included, and the longest
    // hold of the writer by one batch: what the pass cost other writers at most (the
    // full-size benchmark reads both from the log line).
    let (mut longest, mut held) = (Duration::ZERO, Duration::ZERO);
    let mut batches = 0;
    // Beside Litestream (`checkpoints` off) the log is its to copy, never ours, and the
    // writer's own checkpoints stay as they are.
    let _log_copied_beside = checkpoints.then(|| store.log_copied_beside()).transpose()?;
    loop {
        beat.beat();
        let batch_started = Instant::now();
        let pruned = store.prune_batch(cutoff, now - IDEMPOTENCY_WINDOW_MS, BATCH)?;
        longest = longest.max(batch_started.elapsed());
        held = held.max(pruned.held);
        messages += pruned.messages;
        events_gone += pruned.events;
        if (pruned.messages < BATCH && pruned.keys < BATCH) || !stop.is_empty() {
            break;
        }
        // What the batches wrote is copied out of the log beside the writer, as folding does
        // below, and the writer's commits meanwhile leave it alone (`log_copied_beside`): a
        // batch writes about 200 pages, and the commit that took the log past 1,000 copied it
        // back into the file and synced both inside the writer, which held it 45-135 ms
        // beside a backup (BENCHMARKS.md, "Retention at month size").
        batches += 1;
        if checkpoints && batches % PRUNE_CHECKPOINT == 0 {
            store.checkpoint_beside()?;
        }
        std::thread::sleep(PAUSE);
    }
    // Events that have no message (none matched when they were accepted, or their endpoint
    // was deleted), on from where the last pass stopped.
    if events.since.elapsed() >= EVENT_RESCAN {
        *events = EventCursor::new();
    }
    loop {
        beat.beat();
        let batch_started = Instant::now();
        let scan = store.prune_events(cutoff, events.after, BATCH)?;
        longest = longest.max(batch_started.elapsed());
        held = held.max(scan.held);
        events_gone += scan.deleted;
        events.after = scan.next;
        if scan.done || !stop.is_empty() {
            break;
        }
        if scan.deleted > 0 {
            std::thread::sleep(PAUSE);
        }
    }
    if messages + events_gone > 0 {
        log::info!(
            "retention: pruned {messages} delivered messages and {events_gone} events older than {retention_days} days in {:.2} s, longest batch {:.1} ms, longest writer hold {:.1} ms",
            started.elapsed().as_secs_f64(),
            longest.as_secs_f64() * 1000.0,
            held.as_secs_f64() * 1000.0
        );
    }
    // Incidents resolved before the cutoff, with the copies of their components; open ones
    // stay however old.
    let mut incidents = 0;
    loop {
        beat.beat();
        let n = store.prune_incidents(cutoff, BATCH)?;
        incidents += n;
        if n < BATCH || !stop.is_empty() {
            break;
        }
        std::thread::sleep(PAUSE);
    }
    if incidents > 0 {
        log::info!(
            "retention: pruned {incidents} incidents resolved more than {retention_days} days ago"
        );
    }
    // Check history: minutes older than a day into hours, and what each monitor no longer
    // keeps (monitors that are not being checked too), a few monitors at a time. A pass after
    // an upgrade folds a whole window of minutes per monitor, in as many batches as it takes.
    let keep_ms = i64::from(retention_days) * 24 * 3600 * 1000;
    let started = Instant::now();
    let (mut folded, mut longest, mut after, mut writing) = (0, Duration::ZERO, 0, 0);
    loop {
        beat.beat();
        // Its read ahead, on a reader, is not part of what it costs other writers.
        let (n, next, held) = store.fold_check_hours(now, keep_ms, after, FOLD_BATCH)?;
        longest = longest.max(held);
        folded += n;
        match next {
            Some(seq) if stop.is_empty() => after = seq,
            _ => break,
        }
        // A batch that only looked costs the others nothing worth a pause. What batches
        // wrote is copied out of the log beside the writer every `FOLD_CHECKPOINT` of them
        // (`checkpoint_beside`), before it reaches the 1,000 pages at which the writer would
        // copy it inside a commit.
        if n > 0 {
            writing += 1;
            // Beside Litestream (`checkpoints` off) the log is its to copy, never ours.
            if checkpoints && writing % FOLD_CHECKPOINT == 0 {
                store.checkpoint_beside()?;
            }
            std::thread::sleep(PAUSE);
        }
    }
    if folded > 0 {
        log::info!(
            "retention: folded {folded} rows of check history older than a day into hours, or dropped them past their window, in {:.2} s, longest batch {:.1} ms",
            started.elapsed().as_secs_f64(),
            longest.as_secs_f64() * 1000.0
        );
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
