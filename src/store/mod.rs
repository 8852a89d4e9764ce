//! The store: the one SQLite file and every SQL statement in the program. It owns the
//! connections; nothing outside this module sees rusqlite. Rows are plain structs, separate
//! from the wire types of the API.
//!
//! Writes go through one connection behind a mutex, so they queue in the process instead of
//! spinning on SQLite's busy handler; reads use a small pool of their own connections, which
//! WAL lets run beside the writer.
//!
//! A durable write commits under `synchronous=NORMAL` and then flushes the write-ahead log
//! (`flush.rs`) after the writer is released, so that other writers go on while the disk
//! works; the caller answers only after the flush. See ARCHITECTURE.md.

mod checks;
mod components_incidents;
mod counts;
mod endpoints;
mod events;
pub mod fixture;
mod flush;
mod health;
mod monitors;
mod queue;
mod recovery;
mod retention;
mod schema;
mod timings;
mod tx;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};

use crate::id::{EVENT_ID_KEY_LEN, EventIds};

pub use checks::{
    CheckCounts, CheckHistory, CheckRow, MINUTE_ROWS_MS, NewCheck, RAW_CHECKS_MS, history_ms,
};
pub use components_incidents::{
    ComponentInput, ComponentRef, ComponentRow, IncidentPatch, IncidentRow, IncidentSource,
    IncidentStatus, NewIncident, Refusal, Refused,
};
pub use endpoints::{EndpointPatch, EndpointRow, NewEndpoint};
pub use events::{
    AttemptRow, EventRow, IDEMPOTENCY_WINDOW_MS, Idempotency, MessageFilter, MessageRow,
    MessageStatus, NewEvent, PublishResult,
};
pub use monitors::{
    MonitorKind, MonitorPatch, MonitorRow, MonitorSettings, MonitorState, MonitorStateUpdate,
    MonitorStatus, SlaArming,
};
pub use queue::{
    DispatchEndpoint, EndpointSeq, MessageOutcome, MessageSeq, QueuedMessage, RequestOutcome,
    Verdict,
};
pub use recovery::{Recovery, RecoveryChange};
pub use timings::Timings;
pub use tx::{Emitted, Tx};

/// Why the store could not do what was asked.
#[derive(Debug)]
pub enum StoreError {
    /// SQLite refused or failed; the message says why.
    Sqlite(rusqlite::Error),
    /// The database was written by a newer StatusSentry.
    TooNew { found: i64, supported: i64 },
    /// The database file could not be opened at all.
    Open(PathBuf, rusqlite::Error),
    /// The database failed an integrity check; the text is SQLite's first complaint.
    Corrupt(PathBuf, String),
    /// The database reached `storage.max_size`, or the disk is full.
    Full,
    /// The write-ahead log could not be flushed to disk: the write is committed but may not
    /// survive a power cut.
    Sync(PathBuf, String),
    /// The store's own rules refuse the operation; the text says which.
    Refused(String),
    /// No database at this path, where one had to exist.
    Missing(PathBuf),
    /// The file could not be made; the error says why.
    File(PathBuf, std::io::Error),
    /// The last write failed in the database itself, or a write is stuck: `/healthz` says
    /// so until a write commits again.
    Failing(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Sqlite(e) => write!(f, "database error: {e}"),
            StoreError::TooNew { found, supported } => write!(
                f,
                "the database has schema version {found}, but this statussentry understands only up to {supported}; \
                 run a newer statussentry or restore a backup"
            ),
            StoreError::Open(path, e) => write!(f, "cannot open database {}: {e}", path.display()),
            StoreError::Missing(path) => write!(f, "no database at {}", path.display()),
            StoreError::File(path, e) => write!(f, "cannot create {}: {e}", path.display()),
            StoreError::Full => write!(
                f,
                "the database has reached storage.max_size or the disk is full; new events are refused \
                 until retention frees space or the limit is raised"
            ),
            StoreError::Corrupt(path, why) => write!(
                f,
                "database {} failed its integrity check ({why}); restore a backup, the file was left as it is",
                path.display()
            ),
            StoreError::Sync(path, why) => write!(
                f,
                "cannot flush {} to disk ({why}); durable writes are refused until a restart",
                path.display()
            ),
            StoreError::Refused(why) => write!(f, "{why}"),
            StoreError::Failing(why) => write!(f, "the database is failing: {why}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::Full,
            _ => StoreError::Sqlite(e),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// How much a write must survive.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Survives power loss before the call returns (the write-ahead log is flushed to disk):
    /// whatever the API acknowledges.
    Full,
    /// Survives a crash of the process (the commit is in the operating system's hands). Used
    /// for delivery bookkeeping, where losing the last moments to a power cut means a resend,
    /// which at-least-once already allows.
    Normal,
}

pub struct Store {
    path: PathBuf,
    /// `storage.max_size`: new events are refused once the pages in use reach it.
    max_bytes: Option<u64>,
    writer: Mutex<Connection>,
    /// Flushes of the write-ahead log. `None` when the file is not in WAL mode; the writer
    /// then keeps `synchronous=FULL` and every commit flushes itself.
    wal: Option<flush::Flusher>,
    readers: Mutex<Vec<Connection>>,
    /// Event ids from event `seq`s, with this database's key.
    event_ids: EventIds,
    /// Messages by status as committed, for `/metrics` (`counts.rs`).
    message_counts: counts::MessageCounts,
    /// What the writes say of the store's health, for `/healthz` (`health.rs`).
    health: health::Health,
    /// The verdict of the integrity check run after the start (`check_integrity`): unset
    /// while it runs; an error is SQLite's first complaint, and refuses every write.
    integrity: std::sync::OnceLock<std::result::Result<(), String>>,
    /// Interrupts the integrity check while it runs.
    integrity_interrupt: Mutex<Option<rusqlite::InterruptHandle>>,
}

const MAX_IDLE_READERS: usize = 8;

/// Retention's search for delivered messages accepted before `?1`, at most `?2`, and the
/// metrics' oldest pending message: both through `messages_by_status (status, created_at)`,
/// which a unit test checks in their plans.
const PRUNE_DELIVERED: &str = "SELECT seq, endpoint_seq, event_seq FROM messages
     WHERE status = 'delivered' AND created_at < ?1 LIMIT ?2";
const OLDEST_PENDING: &str = "SELECT min(created_at) FROM messages WHERE status = 'pending'";

/// How long a statement waits for a write lock held by another connection before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The most a truncating checkpoint holds the writer waiting for readers to leave the log.
const CHECKPOINT_WAIT: Duration = Duration::from_millis(100);

/// Page cache per reader connection, KiB (the writer keeps SQLite's default of 2,000).
const READER_CACHE_KIB: u32 = 512;

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(
        "PRAGMA foreign_keys = ON;
         PRAGMA synchronous = FULL;
         PRAGMA cache_size = -2000;
         PRAGMA temp_store = MEMORY;",
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    // The bundled SQLite has STAT4, which otherwise re-plans a cached statement whenever a
    // value bound to a range on an indexed column changes: the dispatcher's queue read
    // (`seq > ?`) was compiled anew on every call. The plans here do not depend on values.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// Makes `path` as an empty file readable and writable by its owner only (0600, whatever the
/// umask), before SQLite opens it: a database holds every signing secret. SQLite gives the
/// `-wal` and `-shm` files it makes beside a database the database file's mode. With
/// `existing_ok`, a file already there (and its `-wal` and `-shm`) that others may read is
/// narrowed to 0600, or reported when that is not ours to do (another user's file); without,
/// it is refused.
fn create_private(path: &Path, existing_ok: bool) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        // The umask narrows the mode given at creation; this sets it whatever the umask.
        Ok(file) => file
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| StoreError::File(path.into(), e)),
        Err(e) if existing_ok && e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mut files = vec![path.to_path_buf()];
            for suffix in ["-wal", "-shm"] {
                let mut beside = path.as_os_str().to_owned();
                beside.push(suffix);
                files.push(beside.into());
            }
            for file in files {
                let Ok(meta) = std::fs::metadata(&file) else {
                    continue;
                };
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 == 0 {
                    continue;
                }
                // Only the file's owner (or root) may change its mode.
                match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
                    Ok(()) => log::warn!(
                        "{} was mode {mode:o}, readable by other users, and holds every signing secret: now 600",
                        file.display()
                    ),
                    Err(e) => log::warn!(
                        "{} (mode {mode:o}) can be read by other users and holds every signing secret, and cannot be narrowed ({e}); chmod 600 it",
                        file.display()
                    ),
                }
            }
            Ok(())
        }
        Err(e) => Err(StoreError::File(path.into(), e)),
    }
}

impl Store {
    /// Opens (creating if needed, readable by its owner only) and migrates the database at
    /// `path`. `max_bytes` is `storage.max_size`: once the database's pages in use reach it,
    /// writes that would add events fail with `StoreError::Full` and change nothing.
    pub fn open(path: &Path, max_bytes: Option<u64>) -> Result<Store> {
        create_private(path, true)?;
        Store::open_file(path, max_bytes)
    }

    /// Like [`Store::open`], for a database that must already exist: the operator's tools
    /// use it, so that a path that names no database is reported, never made into a new one.
    pub fn open_existing(path: &Path, max_bytes: Option<u64>) -> Result<Store> {
        // An empty file is no database the service wrote: its open writes at once.
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() && m.len() > 0 => Store::open_file(path, max_bytes),
            _ => Err(StoreError::Missing(path.into())),
        }
    }

    fn open_file(path: &Path, max_bytes: Option<u64>) -> Result<Store> {
        // The file exists by now; SQLite must not make one of its own (with its own mode).
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut writer = Connection::open_with_flags(path, flags)
            .map_err(|e| StoreError::Open(path.into(), e))?;
        // Every error while opening names the file: it is what the operator has to look at.
        let opening = |e: rusqlite::Error| StoreError::Open(path.into(), e);
        writer.busy_timeout(BUSY_TIMEOUT).map_err(opening)?;
        // WAL first: it is a property of the file, and the other settings assume it.
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(opening)?;
        if !mode.eq_ignore_ascii_case("wal") {
            log::warn!(
                "database journal mode is {mode}, not WAL; concurrent reads will wait for writes"
            );
        }
        configure(&writer).map_err(opening)?;
        // A file SQLite cannot read as a database at all fails above or in the migration; the
        // full `quick_check`, which reads every page (10.5 s for 1 GB from a cold cache), runs
        // after the start (`check_integrity`).
        // Keep the WAL file from staying large after a burst once it has been checkpointed.
        writer
            .execute_batch("PRAGMA journal_size_limit = 67108864;")
            .map_err(opening)?;
        schema::migrate(&mut writer).map_err(|e| match e {
            StoreError::Sqlite(e) => StoreError::Open(path.into(), e),
            StoreError::Refused(why) => StoreError::Corrupt(path.into(), why),
            other => other,
        })?;
        // The key of the event id permutation, made once per database from the kernel's CSPRNG.
        let mut fresh = [0u8; EVENT_ID_KEY_LEN];
        crate::id::fill_random(&mut fresh);
        let fresh = crate::secret::to_hex(&fresh);
        writer
            .execute(
                "INSERT OR IGNORE INTO settings (key, value) VALUES ('event_id_key', ?1)",
                [fresh],
            )
            .map_err(opening)?;
        let key: String = writer
            .query_row(
                "SELECT value FROM settings WHERE key = 'event_id_key'",
                [],
                |r| r.get(0),
            )
            .map_err(opening)?;
        let event_ids = crate::secret::from_hex::<EVENT_ID_KEY_LEN>(&key)
            .map(|k| EventIds::new(&k))
            .ok_or_else(|| {
                StoreError::Corrupt(
                    path.into(),
                    format!(
                        "settings.event_id_key must be {} hex digits",
                        2 * EVENT_ID_KEY_LEN
                    ),
                )
            })?;
        // Commits leave the log in the operating system's hands; durable writes flush it
        // through the flusher after releasing the writer. The log file lives as long as a connection
        // to the database is open, and the writer is open as long as the store.
        let wal = if mode.eq_ignore_ascii_case("wal") {
            writer
                .execute_batch("PRAGMA synchronous = NORMAL")
                .map_err(opening)?;
            let mut wal_path = path.as_os_str().to_owned();
            wal_path.push("-wal");
            let wal_path = PathBuf::from(wal_path);
            let flusher = flush::Flusher::open(&wal_path)
                .map_err(|e| StoreError::Sync(wal_path.clone(), e.to_string()))?;
            Some(flusher)
        } else {
            None
        };
        let message_counts = counts::MessageCounts::start(&writer).map_err(opening)?;
        Ok(Store {
            path: path.to_path_buf(),
            max_bytes,
            writer: Mutex::new(writer),
            wal,
            readers: Mutex::new(Vec::new()),
            event_ids,
            message_counts,
            health: health::Health::new(),
            integrity: std::sync::OnceLock::new(),
            integrity_interrupt: Mutex::new(None),
        })
    }

    /// Runs `PRAGMA quick_check` over the whole file on a connection of its own, beside the
    /// service, and keeps the verdict: a damaged database then refuses every write (so that
    /// nothing more is written into it) and fails `/healthz`, and the log says so once. The
    /// check reads every page, so it runs after the start instead of delaying it
    /// (ARCHITECTURE.md, Storage). `stop_integrity_check` cuts it short at shutdown, which
    /// leaves no verdict.
    pub fn check_integrity(&self) {
        let started = std::time::Instant::now();
        let checked = (|| -> rusqlite::Result<String> {
            let conn = Connection::open_with_flags(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.busy_timeout(Duration::from_secs(5))?;
            *self
                .integrity_interrupt
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(conn.get_interrupt_handle());
            // The first complaint is enough to refuse the file; the rest is for the operator's
            // own `sqlite3`.
            let verdict = conn.query_row("PRAGMA quick_check(1)", [], |r| r.get(0));
            *self
                .integrity_interrupt
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = None;
            verdict
        })();
        let seconds = started.elapsed().as_secs_f64();
        let verdict = match checked {
            Ok(text) if text == "ok" => Ok(()),
            Ok(text) => Err(text),
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted) => {
                log::info!("the integrity check of the database was stopped by the shutdown");
                return;
            }
            // Only the file's own errors say it is damaged. A check that could not run (no
            // descriptor left, the lock held by an operator's `sqlite3`, no memory, a passing
            // I/O error) says nothing of the file, and must not refuse every write until a
            // restart: it is left unsettled, and runs again at the next start.
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
                ) =>
            {
                Err(e.to_string())
            }
            Err(e) => {
                log::warn!(
                    "the integrity check of database {} could not run ({e}); it runs again at the next start",
                    self.path.display()
                );
                return;
            }
        };
        match &verdict {
            Ok(()) => log::info!(
                "database {} passed its integrity check (quick_check) in {seconds:.1} s",
                self.path.display()
            ),
            Err(why) => log::error!(
                "{}; every write is refused and /healthz answers 503 until it is replaced",
                StoreError::Corrupt(self.path.clone(), why.clone())
            ),
        }
        let _ = self.integrity.set(verdict);
    }

    /// Interrupts a running `check_integrity`, so that a shutdown need not wait for it.
    pub fn stop_integrity_check(&self) {
        if let Some(handle) = self
            .integrity_interrupt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            handle.interrupt();
        }
    }

    /// Whether the integrity check found the file damaged: nothing more is written into it,
    /// so nothing more that would need recording (a delivery) should be done.
    pub fn is_damaged(&self) -> bool {
        self.damaged().is_err()
    }

    /// The integrity check's verdict as an error, once it has found damage.
    fn damaged(&self) -> Result<()> {
        match self.integrity.get() {
            Some(Err(why)) => Err(StoreError::Corrupt(self.path.clone(), why.clone())),
            _ => Ok(()),
        }
    }

    /// Runs `f` in one immediate transaction on the writer connection; with
    /// `Durability::Full` it returns once the commit is on disk.
    fn write<T>(
        &self,
        durability: Durability,
        f: impl FnOnce(&Transaction) -> Result<T>,
    ) -> Result<T> {
        self.write_held(durability, f).map(|(value, _)| value)
    }

    /// `write`, and how long it held the writer: from taking the lock to the end of the
    /// commit, not counting the wait for the lock (which is what others cost the caller, not
    /// what the caller costs them) or the flush (which runs with the writer released).
    fn write_held<T>(
        &self,
        durability: Durability,
        f: impl FnOnce(&Transaction) -> Result<T>,
    ) -> Result<(T, std::time::Duration)> {
        // Nothing more is written into a file the integrity check found damaged.
        self.damaged()?;
        let (value, commit, held) = {
            let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            let taken = Instant::now();
            self.health.write_began();
            // Whatever a failed write left staged on this thread was never committed.
            counts::take_staged();
            let result = (|| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let value = f(&tx)?;
                // The changes of status this transaction's statements staged (`counts.rs`).
                let delta = counts::take_staged();
                counts::persist(&tx, &delta)?;
                tx.commit()?;
                Ok((value, delta))
            })();
            self.health.write_ended(result.as_ref().map(|_| ()));
            let (value, delta) = result?;
            self.message_counts.apply(&delta);
            (
                value,
                self.wal.as_ref().map_or(0, flush::Flusher::committed),
                taken.elapsed(),
            )
        };
        // The flush runs with the writer released, so other writers go on meanwhile.
        // `fdatasync` acts on the file, not on the descriptor, so the flusher's own descriptor
        // covers what the writer connection wrote.
        if let (Durability::Full, Some(wal)) = (durability, &self.wal) {
            wal.flush(commit)?;
        }
        Ok((value, held))
    }

    /// Runs `f` on a reader connection from the pool.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|e| StoreError::Open(self.path.clone(), e))?;
                configure(&c)?;
                // Readers see recent pages, which the OS caches as well; a smaller cache per
                // reader keeps the resident size down when several are open.
                c.execute_batch(&format!("PRAGMA cache_size = -{READER_CACHE_KIB}"))?;
                c
            }
        };
        let result = f(&conn);
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < MAX_IDLE_READERS {
            pool.push(conn);
        }
        result
    }

    /// How many endpoints there are and how many messages wait, for the start-up line.
    pub fn counts(&self) -> Result<(i64, i64)> {
        let endpoints =
            self.read(|c| Ok(c.query_row("SELECT count(*) FROM endpoints", [], |r| r.get(0))?))?;
        let by_status = self.message_counts.get();
        Ok((
            endpoints,
            by_status[MessageStatus::Pending.index()].1
                + by_status[MessageStatus::Parked.index()].1,
        ))
    }

    /// The store's side of `/metrics`: messages by status (from memory), the oldest pending
    /// message's age (one step down `messages_by_status`), endpoints by state and monitors by
    /// status (a pass over those tables, which hold what an operator configured).
    pub fn gauges(&self, now: i64) -> Result<Gauges> {
        self.read(|c| {
            let mut g = Gauges {
                // Kept in memory: a scrape counts no message (`counts.rs`).
                messages: self.message_counts.get(),
                endpoints: [("enabled", 0), ("backing_off", 0), ("disabled", 0)],
                ..Default::default()
            };
            let oldest: Option<i64> = c
                .prepare_cached(OLDEST_PENDING)?
                .query_row([], |r| r.get(0))?;
            g.oldest_pending_age_secs = oldest.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
            let (enabled, backing_off, disabled) = c.query_row(
                "SELECT coalesce(sum(enabled = 1 AND coalesce(backoff_until, 0) <= ?1), 0),
                        coalesce(sum(enabled = 1 AND backoff_until > ?1), 0),
                        coalesce(sum(enabled = 0), 0) FROM endpoints",
                [now],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            g.endpoints = [
                ("enabled", enabled),
                ("backing_off", backing_off),
                ("disabled", disabled),
            ];
            g.monitors = monitors::monitor_counts(c)?;
            Ok(g)
        })
    }

    /// Writes a consistent copy of the database to `dest` (which must not exist), made durable,
    /// while the service may keep running: `VACUUM INTO` reads one snapshot, and WAL lets
    /// writers go on meanwhile. Returns how many events the copy holds, read back from it
    /// after an integrity check.
    pub fn backup(&self, dest: &Path) -> Result<i64> {
        // The copy holds every signing secret, so it is made 0600 before SQLite writes into it
        // (`VACUUM INTO` takes an empty file); `create_new` refuses an existing one.
        create_private(dest, false)?;
        let copied = self.copy_into(dest);
        if copied.is_err() {
            // Only the file made just now goes; an unfinished copy is no backup.
            let _ = std::fs::remove_file(dest);
        }
        copied
    }

    fn copy_into(&self, dest: &Path) -> Result<i64> {
        let dest_text = dest.to_str().ok_or_else(|| {
            StoreError::Open(dest.into(), rusqlite::Error::InvalidPath(dest.into()))
        })?;
        self.read(|c| Ok(c.execute("VACUUM INTO ?1", [dest_text])?))?;
        let sync = std::fs::File::open(dest).and_then(|f| f.sync_all());
        if let Err(e) = sync {
            log::warn!("cannot fsync the backup {}: {e}", dest.display());
        }
        let copy = Connection::open_with_flags(dest, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| StoreError::Open(dest.into(), e))?;
        let check: String = copy.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(StoreError::Corrupt(dest.into(), check));
        }
        Ok(copy.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?)
    }

    // ---- settings ----

    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT value FROM settings WHERE key = ?1")?
                    .query_row([key], |r| r.get(0))
                    .optional()?,
            )
        })
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.write(Durability::Full, |tx| {
            tx.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
            Ok(())
        })
    }

    /// The store's health for `/healthz`, without a write (`health.rs`): no flush of the log
    /// has failed since the start; the last write the service made committed, or failed for
    /// a reason other than the database's (a refusal, a constraint); no write has held the
    /// writer for 30 s; and, when nothing has committed in the last second, the write lock can
    /// be taken (`probe_writer`; once a second at most, however many probes arrive); and the
    /// integrity check run after the start has found no damage (or has not finished).
    pub fn health_check(&self) -> Result<()> {
        self.damaged()?;
        if let Some(e) = self.wal.as_ref().and_then(flush::Flusher::failure) {
            return Err(e);
        }
        match self.health.check()? {
            health::Verdict::Healthy => Ok(()),
            health::Verdict::Probe => self.health.probe(|| self.probe_writer()),
        }
    }

    /// Begins an immediate transaction, reads a row and rolls back: proves the database can
    /// be read and its write lock taken (waiting the busy timeout at most), and writes nothing.
    /// A write in progress in this process proves as much when it ends, and notes its outcome
    /// itself; the probe does not queue behind it (a long write would hold every probe, and
    /// `/healthz` with them), since `Health::check` already fails a write held past `STUCK`.
    fn probe_writer(&self) -> Result<()> {
        let mut conn = match self.writer.try_lock() {
            Ok(conn) => conn,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                // Past the busy timeout the write is waiting on a lock held elsewhere (or on
                // a stalled disk); before it, it is a write like any other.
                let held = self.health.write_held();
                if held >= BUSY_TIMEOUT {
                    return Err(StoreError::Failing(format!(
                        "a write has waited on the database for {} s",
                        held.as_secs()
                    )));
                }
                return Ok(());
            }
        };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached("SELECT count(*) FROM settings")?
            .query_row([], |r| r.get::<_, i64>(0))?;
        tx.rollback()?;
        Ok(())
    }
}

impl Store {
    /// Refuses a write that adds events once `storage.max_size` is reached; call it inside the
    /// write's transaction so that the refusal rolls everything back.
    fn ensure_room<T>(&self, tx: &Transaction, events: &[T]) -> Result<()> {
        match self.max_bytes {
            Some(max) if !events.is_empty() && used_bytes(tx)? >= max => Err(StoreError::Full),
            _ => Ok(()),
        }
    }
}

/// Bytes the database's pages hold, free pages excluded: what `storage.max_size` limits.
fn used_bytes(c: &Connection) -> Result<u64> {
    let (pages, free, size): (i64, i64, i64) = c.query_row(
        "SELECT (SELECT page_count FROM pragma_page_count()), (SELECT freelist_count FROM pragma_freelist_count()),
                (SELECT page_size FROM pragma_page_size())",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(((pages - free).max(0) * size) as u64)
}

// ---- rows ----

/// Values read from the store at scrape time, for `/metrics` (`metrics.rs` renders them).
#[derive(Default)]
pub struct Gauges {
    /// Messages by status: pending, parked, delivered, failed.
    pub messages: [(&'static str, i64); 4],
    pub oldest_pending_age_secs: f64,
    /// Endpoints by state: enabled, backing_off, disabled.
    pub endpoints: [(&'static str, i64); 3],
    /// Monitors by status: up, down. Empty until monitors exist.
    pub monitors: Vec<(&'static str, i64)>,
}

#[cfg(test)]
pub mod testkit;
#[cfg(test)]
mod tests;
