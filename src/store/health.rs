//! The store's health as `/healthz` reports it, kept by the writes the service makes anyway,
//! so that a probe writes nothing (a probe used to run a write transaction of its own, and a
//! flood of probes took the writer from publishers).
//!
//! Every write notes its outcome here: a commit marks the store healthy; a failure of the
//! database itself (I/O, corruption) marks it failing until the next commit; the write lock
//! held elsewhere past the busy timeout marks it failing for `FRESH`, then a probe looks
//! again. A write that has held the writer far longer than any write should counts as failing
//! too. When nothing has proved the store healthy for `FRESH`, a probe takes the write lock
//! and lets it go (`Store::probe_writer`), at most one probe at a time and once per `FRESH`
//! however many arrive; that writes nothing. A probe never queues behind a write in progress:
//! that write is healthy until it has waited the busy timeout.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::StoreError;

/// How long a commit or a probe proves the store healthy for, and how long a failure to get
/// the write lock is believed before a probe looks again.
const FRESH: Duration = Duration::from_secs(1);

/// A write holding the writer this long means the store is stuck (the busy timeout is 5 s).
const STUCK: Duration = Duration::from_secs(30);

pub(super) struct Health {
    start: Instant,
    /// When a commit or a probe last succeeded, ms since `start` plus one (0: never).
    last_ok: AtomicU64,
    /// When the write holding the writer began, ms since `start` plus one (0: none).
    writing_since: AtomicU64,
    failure: Mutex<Option<Failure>>,
    /// Held by the one probe that looks, so that a flood of probes makes one look.
    probe: Mutex<()>,
}

struct Failure {
    why: String,
    /// Only a commit clears it (the database failed), rather than a probe that gets the
    /// write lock (which someone else held).
    sticky: bool,
    /// When it was noted, as `last_ok`.
    at: u64,
}

/// What a probe needs to do after `Health::check`.
pub(super) enum Verdict {
    Healthy,
    /// Nothing proved the store healthy lately: `probe`.
    Probe,
}

impl Health {
    pub(super) fn new() -> Health {
        Health {
            start: Instant::now(),
            last_ok: AtomicU64::new(0),
            writing_since: AtomicU64::new(0),
            failure: Mutex::new(None),
            probe: Mutex::new(()),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }

    fn fresh(&self, at: u64) -> bool {
        at != 0 && self.now().saturating_sub(at) < FRESH.as_millis() as u64
    }

    fn note(&self, result: std::result::Result<(), &StoreError>) {
        match result {
            Ok(()) => self.set(None),
            Err(e) => {
                if let Some(sticky) = failure_kind(e) {
                    self.set(Some((e, sticky)));
                }
            }
        }
    }

    /// Records the store healthy (`None`) or failing, logging a change of state once: probes
    /// and writes may note the same state many times a second.
    fn set(&self, failing: Option<(&StoreError, bool)>) {
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        match failing {
            None => {
                self.last_ok.store(self.now(), Ordering::Relaxed);
                if failure.take().is_some() {
                    log::info!("the store is healthy again");
                }
            }
            Some((e, sticky)) => {
                if failure.is_none() {
                    log::error!("the store is failing, /healthz answers 503: {e}");
                }
                *failure = Some(Failure {
                    why: e.to_string(),
                    sticky,
                    at: self.now(),
                });
            }
        }
    }

    /// The writer is taken; `write_ended` follows whatever happens.
    pub(super) fn write_began(&self) {
        self.writing_since.store(self.now(), Ordering::Relaxed);
    }

    /// How long the write in progress has held the writer (zero when none is).
    pub(super) fn write_held(&self) -> Duration {
        match self.writing_since.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            since => Duration::from_millis(self.now().saturating_sub(since)),
        }
    }

    /// Notes how a write ended: committed (`Ok`) or not (`Err`). A refusal by the store's
    /// rules or a constraint says nothing of its health and changes nothing here.
    pub(super) fn write_ended(&self, result: std::result::Result<(), &StoreError>) {
        self.writing_since.store(0, Ordering::Relaxed);
        self.note(result);
    }

    /// The store's health without touching the database: `Err` when it is failing, `Probe`
    /// when nothing has proved it healthy for `FRESH`.
    pub(super) fn check(&self) -> std::result::Result<Verdict, StoreError> {
        if let Some(f) = &*self.failure.lock().unwrap_or_else(|p| p.into_inner()) {
            if f.sticky || self.fresh(f.at) {
                return Err(StoreError::Failing(f.why.clone()));
            }
            return Ok(Verdict::Probe);
        }
        let since = self.writing_since.load(Ordering::Relaxed);
        let held = self.now().saturating_sub(since);
        if since != 0 && held >= STUCK.as_millis() as u64 {
            return Err(StoreError::Failing(format!(
                "a write has held the database for {} s",
                held / 1000
            )));
        }
        if self.fresh(self.last_ok.load(Ordering::Relaxed)) {
            Ok(Verdict::Healthy)
        } else {
            Ok(Verdict::Probe)
        }
    }

    /// Runs `look` unless another probe settled the question within `FRESH`; one probe at a
    /// time, so that probes arriving meanwhile wait for its answer instead of looking too.
    pub(super) fn probe(
        &self,
        look: impl FnOnce() -> std::result::Result<(), StoreError>,
    ) -> std::result::Result<(), StoreError> {
        let _one = self.probe.lock().unwrap_or_else(|p| p.into_inner());
        if let Verdict::Healthy = self.check()? {
            return Ok(());
        }
        let result = look();
        // What a probe finds is never sticky: the next one may look again after `FRESH`.
        self.set(result.as_ref().err().map(|e| (e, false)));
        result
    }
}

/// Whether an error is the database failing rather than a write being refused, and if so
/// whether only a commit may clear it (`Some(true)`) or also a probe that gets the write lock
/// (`Some(false)`: someone else held it).
fn failure_kind(e: &StoreError) -> Option<bool> {
    use rusqlite::ErrorCode::*;
    match e {
        StoreError::Sqlite(e) => match e.sqlite_error_code() {
            Some(DatabaseBusy | DatabaseLocked) => Some(false),
            Some(
                SystemIoFailure
                | DatabaseCorrupt
                | NotADatabase
                | CannotOpen
                | ReadOnly
                | FileLockingProtocolFailed,
            ) => Some(true),
            _ => None,
        },
        StoreError::Open(..)
        | StoreError::Missing(_)
        | StoreError::File(..)
        | StoreError::Corrupt(..)
        | StoreError::Sync(..) => Some(true),
        StoreError::Failing(_) => Some(false),
        StoreError::TooNew { .. } | StoreError::Full | StoreError::Refused(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: i32) -> StoreError {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            None,
        ))
    }

    /// A health whose clock started `ago` before now, so that times can be back-dated.
    fn started(ago: Duration) -> Health {
        let start = Instant::now()
            .checked_sub(ago)
            .expect("a monotonic clock running for longer than the test needs");
        Health {
            start,
            ..Health::new()
        }
    }

    #[test]
    fn writes_keep_the_flag_and_a_refusal_says_nothing() {
        let h = Health::new();
        // Nothing has committed yet: a probe must look.
        assert!(matches!(h.check(), Ok(Verdict::Probe)));
        h.write_began();
        h.write_ended(Ok(()));
        assert!(matches!(h.check(), Ok(Verdict::Healthy)));
        h.write_began();
        h.write_ended(Err(&sqlite(rusqlite::ffi::SQLITE_IOERR)));
        match h.check() {
            Err(StoreError::Failing(why)) => assert!(why.contains("disk I/O"), "{why}"),
            _ => panic!("an I/O error must fail the health check"),
        }
        // Neither a refusal nor a probe clears a failure of the database: only a commit.
        h.write_ended(Err(&sqlite(rusqlite::ffi::SQLITE_CONSTRAINT)));
        h.write_ended(Err(&StoreError::Refused("no".into())));
        assert!(h.check().is_err());
        assert!(h.probe(|| Ok(())).is_err());
        h.write_ended(Ok(()));
        assert!(matches!(h.check(), Ok(Verdict::Healthy)));
        h.write_ended(Err(&sqlite(rusqlite::ffi::SQLITE_CONSTRAINT)));
        assert!(matches!(h.check(), Ok(Verdict::Healthy)));
    }

    #[test]
    fn a_lock_held_elsewhere_fails_until_a_probe_gets_it() {
        let h = started(FRESH * 3);
        h.note(Err(&sqlite(rusqlite::ffi::SQLITE_BUSY)));
        assert!(h.check().is_err(), "believed for FRESH");
        // Back-dated past FRESH: a probe looks again, and finds the lock free.
        h.failure.lock().unwrap().as_mut().unwrap().at = 1;
        assert!(matches!(h.check(), Ok(Verdict::Probe)));
        assert!(h.probe(|| Ok(())).is_ok());
        assert!(matches!(h.check(), Ok(Verdict::Healthy)));
    }

    #[test]
    fn a_stuck_write_fails_the_check() {
        let h = started(STUCK + Duration::from_secs(1));
        // A write that began at `start` and has not ended.
        h.writing_since.store(1, Ordering::Relaxed);
        assert!(matches!(h.check(), Err(StoreError::Failing(_))));
        h.write_ended(Ok(()));
        assert!(matches!(h.check(), Ok(Verdict::Healthy)));
    }

    #[test]
    fn the_time_a_write_has_held_the_writer_is_known() {
        let h = started(Duration::from_secs(10));
        assert_eq!(h.write_held(), Duration::ZERO);
        h.writing_since.store(1, Ordering::Relaxed);
        assert!(h.write_held() >= Duration::from_secs(10));
        h.write_ended(Ok(()));
        assert_eq!(h.write_held(), Duration::ZERO);
    }

    #[test]
    fn an_idle_store_is_probed_once_per_fresh_period() {
        let h = Health::new();
        let mut looks = 0;
        for _ in 0..100 {
            h.probe(|| {
                looks += 1;
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(looks, 1, "one look per FRESH, however many probes");
        // A failed look is believed for FRESH, without looking again.
        let failed = Health::new();
        let mut looks = 0;
        for _ in 0..100 {
            let r = failed.probe(|| {
                looks += 1;
                Err(sqlite(rusqlite::ffi::SQLITE_BUSY))
            });
            assert!(r.is_err());
        }
        assert_eq!(looks, 1);
    }
}
