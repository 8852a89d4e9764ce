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

mod counts;
pub mod fixture;
mod flush;
mod health;
mod queue;
mod schema;
mod sources;
mod timings;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};
use serde_json::Value;

use crate::id::{EVENT_ID_KEY_LEN, EventIds};

pub use queue::{DispatchEndpoint, QueuedMessage, RequestOutcome, Verdict};
pub use sources::{
    CheckContext, CheckRow, ComponentInput, ComponentRef, ComponentRow, Emitted, IncidentPatch,
    IncidentRow, MonitorPatch, MonitorRow, MonitorSettings, NewIncident, Refusal,
};

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
const PRUNE_DELIVERED: &str = "SELECT seq, endpoint_seq FROM messages
     WHERE status = 'delivered' AND created_at < ?1 LIMIT ?2";
const OLDEST_PENDING: &str = "SELECT min(created_at) FROM messages WHERE status = 'pending'";

/// The list routes' statements, one per filter so that each has a plan of its own, which a
/// unit test reads (`a_page_of_each_list_reads_an_index_range`): a statement with `?2 IS NULL
/// OR type = ?2` for every filter cannot use an index for any, and read every row newer than
/// the page's matches (a filter matching nothing read the table).
const EVENTS_PAGE: &str =
    "SELECT seq, id, payload FROM events WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2";
/// Through `events_by_type (type, seq)`.
const EVENTS_OF_TYPE: &str = "SELECT seq, id, payload FROM events
     WHERE type = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3";
const MESSAGES_PAGE: &str = "SELECT seq FROM messages WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2";
/// Through `messages_by_event`; the other filters are checked on its few rows.
const MESSAGES_OF_EVENT: &str = "SELECT seq FROM messages
     WHERE event_seq = ?1 AND seq < ?2 AND (?3 IS NULL OR endpoint_seq = ?3)
       AND (?4 IS NULL OR status = ?4)
     ORDER BY seq DESC LIMIT ?5";
/// Through `messages_queue (endpoint_seq, status, seq)`: one endpoint's messages of one
/// status. A page of one endpoint (any status) or of one status (any endpoint) is merged
/// from one such read per status or per endpoint, so it reads at most a page from each.
const MESSAGES_OF_ENDPOINT_STATUS: &str = "SELECT seq FROM messages
     WHERE endpoint_seq = ?1 AND status = ?2 AND seq < ?3 ORDER BY seq DESC LIMIT ?4";

/// The `seq`s of a page of messages, newest first, before `before`.
fn message_page(
    c: &Connection,
    filter: &MessageFilter,
    before: i64,
    limit: usize,
) -> Result<Vec<i64>> {
    let seqs = |stmt: &str, values: &[&dyn rusqlite::ToSql]| -> Result<Vec<i64>> {
        Ok(c.prepare_cached(stmt)?
            .query_map(values, |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<i64>>>()?)
    };
    let limit_sql = limit as i64;
    if let Some(event) = filter.event_seq {
        return seqs(
            MESSAGES_OF_EVENT,
            &[
                &event,
                &before,
                &filter.endpoint_seq,
                &filter.status,
                &limit_sql,
            ],
        );
    }
    let (endpoints, statuses): (Vec<i64>, Vec<String>) = match (filter.endpoint_seq, &filter.status)
    {
        (None, None) => return seqs(MESSAGES_PAGE, &[&before, &limit_sql]),
        (Some(e), Some(s)) => (vec![e], vec![s.clone()]),
        (Some(e), None) => (vec![e], counts::STATUSES.map(String::from).to_vec()),
        (None, Some(s)) => {
            let all = c
                .prepare_cached("SELECT seq FROM endpoints")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<i64>>>()?;
            (all, vec![s.clone()])
        }
    };
    let mut found = Vec::new();
    for endpoint in &endpoints {
        for status in &statuses {
            found.extend(seqs(
                MESSAGES_OF_ENDPOINT_STATUS,
                &[endpoint, status, &before, &limit_sql],
            )?);
        }
    }
    found.sort_unstable_by(|a, b| b.cmp(a));
    found.truncate(limit);
    Ok(found)
}

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
        // Nothing more is written into a file the integrity check found damaged.
        self.damaged()?;
        let (value, commit) = {
            let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
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
            )
        };
        // The flush runs with the writer released, so other writers go on meanwhile.
        // `fdatasync` acts on the file, not on the descriptor, so the flusher's own descriptor
        // covers what the writer connection wrote.
        if let (Durability::Full, Some(wal)) = (durability, &self.wal) {
            wal.flush(commit)?;
        }
        Ok(value)
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
            by_status[counts::PENDING].1 + by_status[counts::PARKED].1,
        ))
    }

    /// The store's side of `/metrics`: messages by status (from memory), the oldest pending
    /// message's age (one step down `messages_by_status`), endpoints by state and monitors by
    /// status (a pass over those tables, which hold what an operator configured).
    pub fn gauges(&self, now: i64) -> Result<crate::metrics::Gauges> {
        self.read(|c| {
            let mut g = crate::metrics::Gauges {
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
            g.monitors = sources::monitor_counts(c)?;
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

    // ---- endpoints ----

    pub fn create_endpoint(&self, new: &NewEndpoint) -> Result<EndpointRow> {
        self.write(Durability::Full, |tx| {
            tx.execute(
                "INSERT INTO endpoints (id, url, description, event_types, enabled, disabled_reason,
                                        batch_max, batch_window_ms, heartbeat_secs,
                                        created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?10, ?9, ?9)",
                params![
                    new.id,
                    new.url,
                    new.description,
                    new.event_types.join(","),
                    new.enabled,
                    (!new.enabled).then_some("manual"),
                    new.batch_max,
                    new.batch_window_ms,
                    new.now,
                    new.heartbeat_secs,
                ],
            )?;
            let seq = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO endpoint_secrets (endpoint_seq, secret, created_at) VALUES (?1, ?2, ?3)",
                params![seq, new.secret, new.now],
            )?;
            endpoint_by(tx, "seq", &seq)?.ok_or(StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows))
        })
    }

    pub fn endpoint(&self, id: &str) -> Result<Option<EndpointRow>> {
        self.read(|c| endpoint_by(c, "id", &id))
    }

    /// Endpoints in creation order, after `cursor` (a `seq`), at most `limit`.
    pub fn list_endpoints(&self, after: Option<i64>, limit: usize) -> Result<Vec<EndpointRow>> {
        self.read(|c| {
            let sql = format!(
                "SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![after.unwrap_or(0), limit as i64], endpoint_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Applies `patch`; `None` when there is no such endpoint.
    pub fn update_endpoint(
        &self,
        id: &str,
        patch: &EndpointPatch,
        now: i64,
    ) -> Result<Option<EndpointRow>> {
        self.write(Durability::Full, |tx| {
            let Some(current) = endpoint_by(tx, "id", &id)? else {
                return Ok(None);
            };
            let url = patch.url.as_ref().unwrap_or(&current.url);
            let description = patch.description.as_ref().unwrap_or(&current.description);
            let event_types = patch.event_types.as_ref().unwrap_or(&current.event_types).join(",");
            let batch_max = patch.batch_max.unwrap_or(current.batch_max);
            let batch_window_ms = patch.batch_window_ms.unwrap_or(current.batch_window_ms);
            let heartbeat_secs = patch.heartbeat_secs.unwrap_or(current.heartbeat_secs);
            tx.execute(
                "UPDATE endpoints SET url = ?2, description = ?3, event_types = ?4, batch_max = ?5,
                        batch_window_ms = ?6, updated_at = ?7, heartbeat_secs = ?8 WHERE seq = ?1",
                params![
                    current.seq,
                    url,
                    description,
                    event_types,
                    batch_max,
                    batch_window_ms,
                    now,
                    heartbeat_secs
                ],
            )?;
            match patch.enabled {
                // Enabling clears the reason and the failure run, so that a long outage does
                // not disable the endpoint again on its first new failure.
                Some(true) if !current.enabled => {
                    tx.execute(
                        "UPDATE endpoints SET enabled = 1, disabled_reason = NULL, failures = 0,
                                failing_since = NULL, backoff_until = NULL WHERE seq = ?1",
                        [current.seq],
                    )?;
                }
                Some(false) if current.enabled => {
                    tx.execute(
                        "UPDATE endpoints SET enabled = 0, disabled_reason = 'manual' WHERE seq = ?1",
                        [current.seq],
                    )?;
                }
                _ => {}
            }
            endpoint_by(tx, "seq", &current.seq)
        })
    }

    /// Deletes an endpoint with its secrets, messages, requests and attempts.
    pub fn delete_endpoint(&self, id: &str) -> Result<Option<i64>> {
        self.write(Durability::Full, |tx| {
            let seq: Option<i64> = tx
                .query_row("SELECT seq FROM endpoints WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()?;
            if let Some(seq) = seq {
                // Its messages go with it (ON DELETE CASCADE); counted first, through the
                // queue's index on (endpoint_seq, status).
                let mut by_status = tx.prepare_cached(
                    "SELECT status, count(*) FROM messages WHERE endpoint_seq = ?1 GROUP BY status",
                )?;
                let mut rows = by_status.query([seq])?;
                while let Some(row) = rows.next()? {
                    let status: String = row.get(0)?;
                    counts::stage(seq, counts::index(&status), None, row.get(1)?);
                }
                tx.execute("DELETE FROM endpoints WHERE seq = ?1", [seq])?;
            }
            Ok(seq)
        })
    }

    /// Message counts by status and the last request, for the endpoint view.
    pub fn endpoint_stats(&self, seq: i64) -> Result<EndpointStats> {
        self.read(|c| {
            // Kept per endpoint as messages change (`counts.rs`): no message is counted here.
            let [pending, parked, delivered, failed] = counts::of_endpoint(c, seq)?;
            let last_request = c
                .prepare_cached(&format!(
                    "SELECT at, 0, duration_ms, status_code, error, response_body, {}
                         FROM requests WHERE endpoint_seq = ?1 ORDER BY seq DESC LIMIT 1",
                    timings::COLUMNS
                ))?
                .query_row([seq], attempt_row)
                .optional()?;
            Ok(EndpointStats {
                pending,
                parked,
                delivered,
                failed,
                last_request,
            })
        })
    }

    /// The current secret, newest first, and every rotated-out secret still in its grace period.
    pub fn active_secrets(&self, endpoint_seq: i64, now: i64) -> Result<Vec<String>> {
        self.read(|c| active_secrets(c, endpoint_seq, now))
    }

    /// Makes `secret` current; the previous current secret keeps signing until `now + grace_ms`.
    pub fn rotate_secret(
        &self,
        endpoint_seq: i64,
        secret: &str,
        now: i64,
        grace_ms: i64,
    ) -> Result<()> {
        self.write(Durability::Full, |tx| {
            tx.execute(
                "UPDATE endpoint_secrets SET expires_at = ?2 WHERE endpoint_seq = ?1 AND expires_at IS NULL",
                params![endpoint_seq, now + grace_ms],
            )?;
            // Secrets past their grace are of no further use.
            tx.execute(
                "DELETE FROM endpoint_secrets WHERE endpoint_seq = ?1 AND expires_at <= ?2",
                params![endpoint_seq, now],
            )?;
            tx.execute(
                "INSERT INTO endpoint_secrets (endpoint_seq, secret, created_at) VALUES (?1, ?2, ?3)",
                params![endpoint_seq, secret, now],
            )?;
            tx.execute("UPDATE endpoints SET updated_at = ?2 WHERE seq = ?1", params![endpoint_seq, now])?;
            Ok(())
        })
    }

    // ---- events ----

    /// Writes a group of events and their messages in one transaction that is durable on
    /// return: the group commit behind `POST /api/v1/events`. Each item gets its own answer;
    /// an item refused for a conflict leaves no trace, the others are kept. Each accepted
    /// item gets its event id from the store: written into its envelope (built with
    /// `event::UNASSIGNED_ID`) and returned in `Accepted`.
    pub fn publish(&self, items: &mut [NewEvent], now: i64) -> Result<Vec<PublishResult>> {
        self.write(Durability::Full, |tx| {
            self.ensure_room(tx, items)?;
            let subscribers = subscribers(tx)?;
            let mut seqs = EventSeqs::default();
            let mut results = Vec::with_capacity(items.len());
            for item in items.iter_mut() {
                results.push(publish_one(
                    tx,
                    &self.event_ids,
                    &mut seqs,
                    item,
                    &subscribers,
                    now,
                )?);
            }
            Ok(results)
        })
    }

    pub fn event(&self, id: &str) -> Result<Option<EventRow>> {
        self.read(|c| {
            let Some(seq) = event_seq(c, &self.event_ids, id)? else {
                return Ok(None);
            };
            Ok(
                c.prepare_cached("SELECT seq, id, payload FROM events WHERE seq = ?1")?
                    .query_row([seq], event_row)
                    .optional()?,
            )
        })
    }

    /// Events newest first, before `cursor` (a `seq`), at most `limit`.
    pub fn list_events(
        &self,
        before: Option<i64>,
        event_type: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EventRow>> {
        self.read(|c| {
            let before = before.unwrap_or(i64::MAX);
            // One statement per filter, each with a plan of its own (a unit test reads them):
            // `?2 IS NULL OR type = ?2` in one statement read every event newer than the
            // page's matches.
            let rows = match event_type {
                Some(t) => c
                    .prepare_cached(EVENTS_OF_TYPE)?
                    .query_map(params![t, before, limit as i64], event_row)?
                    .collect::<rusqlite::Result<Vec<_>>>(),
                None => c
                    .prepare_cached(EVENTS_PAGE)?
                    .query_map(params![before, limit as i64], event_row)?
                    .collect::<rusqlite::Result<Vec<_>>>(),
            };
            Ok(rows?)
        })
    }

    // ---- messages ----

    /// Messages newest first, filtered, before `cursor` (a `seq`), each with its newest
    /// `ATTEMPTS_IN_LIST` attempts and how many it has.
    pub fn list_messages(
        &self,
        filter: &MessageFilter,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<MessageRow>> {
        self.read(|c| {
            let seqs = message_page(c, filter, before.unwrap_or(i64::MAX), limit)?;
            let mut by_seq = c.prepare_cached(&format!("{MESSAGE_SELECT} WHERE m.seq = ?1"))?;
            let mut messages = Vec::with_capacity(seqs.len());
            for seq in seqs {
                messages.extend(by_seq.query_row([seq], message_row).optional()?);
            }
            let mut count =
                c.prepare_cached("SELECT count(*) FROM attempts WHERE message_seq = ?1")?;
            for m in &mut messages {
                m.attempts = attempts_of(c, m.seq, Some(ATTEMPTS_IN_LIST))?;
                m.attempt_count = count.query_row([m.seq], |r| r.get(0))?;
            }
            Ok(messages)
        })
    }

    /// One message with every attempt.
    pub fn message(&self, seq: i64) -> Result<Option<MessageRow>> {
        self.read(|c| {
            let sql = format!("{MESSAGE_SELECT} WHERE m.seq = ?1");
            let mut m = c
                .prepare_cached(&sql)?
                .query_row([seq], message_row)
                .optional()?;
            if let Some(m) = &mut m {
                m.attempts = attempts_of(c, m.seq, None)?;
                m.attempt_count = m.attempts.len() as i64;
            }
            Ok(m)
        })
    }

    /// Makes one message pending again now, whatever its status, and lifts its endpoint's
    /// backoff so that it goes out at once; returns the endpoint's seq.
    pub fn requeue_message(&self, seq: i64, now: i64) -> Result<Option<i64>> {
        self.write(Durability::Full, |tx| {
            let found: Option<(i64, String)> = tx
                .query_row(
                    "SELECT endpoint_seq, status FROM messages WHERE seq = ?1",
                    [seq],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let endpoint = found.as_ref().map(|(endpoint, _)| *endpoint);
            if let Some((endpoint, status)) = &found {
                counts::stage(*endpoint, counts::index(status), Some(counts::PENDING), 1);
                tx.execute(
                    "UPDATE messages SET status = 'pending', failures = 0, next_attempt_at = NULL,
                            requeued_at = ?2, finished_at = NULL WHERE seq = ?1",
                    params![seq, now],
                )?;
                tx.execute(
                    "UPDATE endpoints SET backoff_until = NULL WHERE seq = ?1",
                    [endpoint],
                )?;
            }
            Ok(endpoint)
        })
    }

    /// Makes an endpoint's `failed` messages accepted at or after `since` pending again.
    pub fn replay_failed(&self, endpoint_seq: i64, since: i64, now: i64) -> Result<usize> {
        self.write(Durability::Full, |tx| {
            let n = tx.execute(
                "UPDATE messages SET status = 'pending', failures = 0, next_attempt_at = NULL,
                        requeued_at = ?3, finished_at = NULL
                 WHERE endpoint_seq = ?1 AND status = 'failed' AND created_at >= ?2",
                params![endpoint_seq, since, now],
            )?;
            counts::stage(
                endpoint_seq,
                Some(counts::FAILED),
                Some(counts::PENDING),
                n as i64,
            );
            Ok(n)
        })
    }

    // ---- retention ----

    /// Deletes up to `batch` delivered messages accepted before `cutoff`, then the requests
    /// and events nothing refers to any more, and idempotency keys older than `keys_cutoff`.
    /// Returns how many messages went, so the caller can loop with pauses between batches.
    /// None of its searches reads past the cutoff (ARCHITECTURE.md, Storage).
    pub fn prune(&self, cutoff: i64, keys_cutoff: i64, batch: usize) -> Result<usize> {
        self.write(Durability::Normal, |tx| {
            // Through messages_by_status (status, created_at): the search ends at the cutoff.
            let messages: Vec<(i64, i64)> = tx
                .prepare_cached(PRUNE_DELIVERED)?
                .query_map(params![cutoff, batch as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            // The requests of these messages' attempts, which may go with them.
            let mut requests: Vec<i64> = Vec::new();
            let mut attempts =
                tx.prepare_cached("SELECT request_seq FROM attempts WHERE message_seq = ?1")?;
            for (seq, _) in &messages {
                for request in attempts.query_map([seq], |r| r.get(0))? {
                    requests.push(request?);
                }
            }
            requests.sort_unstable();
            requests.dedup();
            // Their attempts go with them (ON DELETE CASCADE).
            let mut delete_message = tx.prepare_cached("DELETE FROM messages WHERE seq = ?1")?;
            for (seq, endpoint) in &messages {
                let n = delete_message.execute([seq])?;
                counts::stage(*endpoint, Some(counts::DELIVERED), None, n as i64);
            }
            // A request of a batch stays while an attempt of another message refers to it.
            let mut delete_request = tx.prepare_cached(
                "DELETE FROM requests WHERE seq = ?1
                   AND NOT EXISTS (SELECT 1 FROM attempts WHERE request_seq = ?1)",
            )?;
            for seq in &requests {
                delete_request.execute([seq])?;
            }
            tx.execute(
                "DELETE FROM events WHERE seq IN (
                     SELECT e.seq FROM events e WHERE e.created_at < ?1
                       AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.event_seq = e.seq) LIMIT ?2)",
                params![cutoff, batch as i64],
            )?;
            tx.execute(
                "DELETE FROM idempotency_keys WHERE created_at < ?1",
                params![keys_cutoff],
            )?;
            Ok(messages.len())
        })
    }

    /// Copies what it can of the WAL back into the database on a connection of its own, not
    /// the writer's, so that writers go on meanwhile (a passive checkpoint takes no write
    /// lock). A background task that writes many pages calls it between its batches: the
    /// writer then finds the log copied and starts it over, instead of copying 1,000 pages
    /// and syncing the file inside its own commit (the SQLite default), which held the writer
    /// 20 to 110 ms at a time while retention folded a fleet's history (BENCHMARKS.md).
    pub fn checkpoint_beside(&self) -> Result<()> {
        // A checkpoint writes into the database file, which stays as it is once found damaged.
        self.damaged()?;
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Open(self.path.clone(), e))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Copies the WAL back into the database and truncates it, so it cannot grow without bound.
    /// The copying is done beside the writer first; the truncation then takes the writer and
    /// waits at most `CHECKPOINT_WAIT` for readers still on the log. A long read (a backup,
    /// Litestream's open transaction) used to hold the writer, and every publish behind it, for
    /// the whole busy timeout; now the log is left untruncated until a later pass finds it free.
    pub fn checkpoint(&self) -> Result<()> {
        // A checkpoint writes into the database file, which stays as it is once found damaged.
        self.damaged()?;
        self.checkpoint_beside()?;
        let conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        conn.busy_timeout(CHECKPOINT_WAIT)?;
        let busy = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        });
        conn.busy_timeout(BUSY_TIMEOUT)?;
        match busy {
            Ok(0) => {}
            Ok(_) => log::debug!("the log is copied but not truncated: a reader still uses it"),
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
                log::debug!("the log is copied but not truncated: {e}")
            }
            Err(e) => return Err(e.into()),
        }
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

/// Enabled endpoints with their event-type filters, as the fan-out takes them.
fn subscribers(tx: &Transaction) -> Result<Vec<(i64, Vec<String>)>> {
    let mut stmt = tx.prepare_cached("SELECT seq, event_types FROM endpoints WHERE enabled = 1")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, i64>(0)?, split_types(&r.get::<_, String>(1)?)))
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

fn split_types(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The `seq` of the stored event with id `id`: the inverse of `EventIds` for events stored
/// since schema version 3, `legacy_event_ids` for those stored before.
fn event_seq(c: &Connection, ids: &EventIds, id: &str) -> Result<Option<i64>> {
    if let Some(seq) = ids.seq(id) {
        let found = c
            .prepare_cached("SELECT seq FROM events WHERE seq = ?1 AND id = ?2")?
            .query_row(params![seq, id], |r| r.get(0))
            .optional()?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(
        c.prepare_cached("SELECT seq FROM legacy_event_ids WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?,
    )
}

/// Hands out event `seq`s within one transaction: one past the largest ever used, even if
/// retention has deleted it since (AUTOINCREMENT keeps it in `sqlite_sequence`), so that no id
/// repeats. Only the first is read from the database; the events of the transaction are
/// inserted by whoever holds this, in order.
#[derive(Default)]
struct EventSeqs {
    next: Option<i64>,
}

impl EventSeqs {
    fn take(&mut self, tx: &Transaction) -> Result<i64> {
        let seq = match self.next {
            Some(seq) => seq,
            // Both, in case `sqlite_sequence` lost its row (it is an ordinary table).
            None => tx
                .prepare_cached(
                    "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),
                                coalesce((SELECT max(seq) FROM events), 0)) + 1",
                )?
                .query_row([], |r| r.get(0))?,
        };
        self.next = Some(seq + 1);
        Ok(seq)
    }
}

fn publish_one(
    tx: &Transaction,
    ids: &EventIds,
    seqs: &mut EventSeqs,
    item: &mut NewEvent,
    subscribers: &[(i64, Vec<String>)],
    now: i64,
) -> Result<PublishResult> {
    if let Some(idem) = &item.idempotency {
        let previous: Option<(String, String)> = tx
            .prepare_cached(
                "SELECT request, event_id FROM idempotency_keys WHERE key = ?1 AND created_at >= ?2",
            )?
            .query_row(params![idem.key, now - IDEMPOTENCY_WINDOW_MS], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        // A key whose event retention has deleted since counts as unused, as before.
        let previous = match previous {
            Some((request, event_id)) => {
                event_seq(tx, ids, &event_id)?.map(|seq| (request, event_id, seq))
            }
            None => None,
        };
        if let Some((request, event_id, event_seq)) = previous {
            let messages: i64 = tx
                .prepare_cached("SELECT count(*) FROM messages WHERE event_seq = ?1")?
                .query_row([event_seq], |r| r.get(0))?;
            let same = serde_json::from_str::<Value>(&request).is_ok_and(|v| v == idem.request);
            return Ok(if same {
                PublishResult::Repeated {
                    event_id,
                    messages: messages as usize,
                }
            } else {
                PublishResult::Conflict
            });
        }
    }

    let targets: Vec<i64> = match item.only_endpoint {
        Some(seq) => vec![seq],
        None => subscribers
            .iter()
            .filter(|(_, types)| types.is_empty() || types.iter().any(|t| t == &item.event_type))
            .map(|(seq, _)| *seq)
            .collect(),
    };
    let event_seq = seqs.take(tx)?;
    let event_id = ids.id(event_seq).ok_or_else(|| {
        StoreError::Refused(format!(
            "the database has used every event number up to {}",
            crate::id::MAX_EVENT_SEQ
        ))
    })?;
    if !crate::event::set_envelope_id(&mut item.payload, &event_id) {
        return Err(StoreError::Refused(
            "an event's envelope must be built with event::UNASSIGNED_ID".into(),
        ));
    }
    tx.prepare_cached(
        "INSERT INTO events (seq, id, type, created_at, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        event_seq,
        event_id,
        item.event_type,
        item.created_at,
        item.payload
    ])?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO messages (event_seq, endpoint_seq, status, created_at) VALUES (?1, ?2, 'pending', ?3)",
    )?;
    for seq in &targets {
        insert.execute(params![event_seq, seq, item.created_at])?;
    }
    for &endpoint in &targets {
        counts::stage(endpoint, None, Some(counts::PENDING), 1);
    }
    if let Some(idem) = &item.idempotency {
        tx.prepare_cached(
            "INSERT INTO idempotency_keys (key, request, event_id, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (key) DO UPDATE SET request = excluded.request, event_id = excluded.event_id,
                                            created_at = excluded.created_at",
        )?
        .execute(params![idem.key, idem.request.to_string(), event_id, now])?;
    }
    Ok(PublishResult::Accepted {
        event_id,
        endpoints: targets,
    })
}

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;

fn active_secrets(c: &Connection, endpoint_seq: i64, now: i64) -> Result<Vec<String>> {
    let mut stmt = c.prepare_cached(
        "SELECT secret FROM endpoint_secrets WHERE endpoint_seq = ?1 AND (expires_at IS NULL OR expires_at > ?2)
         ORDER BY created_at DESC, rowid DESC",
    )?;
    let rows = stmt.query_map(params![endpoint_seq, now], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
}

const ENDPOINT_COLUMNS: &str = "seq, id, url, description, event_types, enabled, disabled_reason, batch_max, \
     batch_window_ms, failures, failing_since, backoff_until, created_at, updated_at, heartbeat_secs";

fn endpoint_by(
    c: &Connection,
    column: &str,
    value: &dyn rusqlite::ToSql,
) -> Result<Option<EndpointRow>> {
    let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE {column} = ?1");
    Ok(c.prepare_cached(&sql)?
        .query_row([value], endpoint_row)
        .optional()?)
}

fn endpoint_row(r: &rusqlite::Row) -> rusqlite::Result<EndpointRow> {
    Ok(EndpointRow {
        seq: r.get(0)?,
        id: r.get(1)?,
        url: r.get(2)?,
        description: r.get(3)?,
        event_types: split_types(&r.get::<_, String>(4)?),
        enabled: r.get(5)?,
        disabled_reason: r.get(6)?,
        batch_max: r.get(7)?,
        batch_window_ms: r.get(8)?,
        failures: r.get(9)?,
        failing_since: r.get(10)?,
        backoff_until: r.get(11)?,
        created_at: r.get(12)?,
        updated_at: r.get(13)?,
        heartbeat_secs: r.get(14)?,
    })
}

fn event_row(r: &rusqlite::Row) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        seq: r.get(0)?,
        id: r.get(1)?,
        payload: r.get(2)?,
    })
}

const MESSAGE_SELECT: &str = "SELECT m.seq, e.id, p.id, m.status, m.created_at,
        CASE WHEN m.status = 'parked' THEN m.next_attempt_at
             WHEN m.status = 'pending' THEN p.backoff_until END
     FROM messages m JOIN events e ON e.seq = m.event_seq JOIN endpoints p ON p.seq = m.endpoint_seq";

fn message_row(r: &rusqlite::Row) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        seq: r.get(0)?,
        event_id: r.get(1)?,
        endpoint_id: r.get(2)?,
        status: r.get(3)?,
        created_at: r.get(4)?,
        next_attempt_at: r.get(5)?,
        attempts: Vec::new(),
        attempt_count: 0,
    })
}

/// Attempts a list of messages embeds per message, the newest (SPEC 4.5): each carries up to
/// 4 KiB of response body, and a page holds up to 500 messages. One message's route shows all.
pub const ATTEMPTS_IN_LIST: usize = 5;

/// A message's attempts, oldest first: the newest `limit` of them, or all.
fn attempts_of(c: &Connection, message_seq: i64, limit: Option<usize>) -> Result<Vec<AttemptRow>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT r.at, a.attempt, r.duration_ms, r.status_code, r.error, r.response_body, {}
         FROM attempts a JOIN requests r ON r.seq = a.request_seq
         WHERE a.message_seq = ?1 ORDER BY a.attempt DESC LIMIT ?2",
        timings::COLUMNS
    ))?;
    // A negative LIMIT is none.
    let limit = limit.map_or(-1, |n| n as i64);
    let rows = stmt.query_map(params![message_seq, limit], attempt_row)?;
    let mut attempts = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    attempts.reverse();
    Ok(attempts)
}

fn attempt_row(r: &rusqlite::Row) -> rusqlite::Result<AttemptRow> {
    Ok(AttemptRow {
        at: r.get(0)?,
        attempt: r.get(1)?,
        duration_ms: r.get(2)?,
        status_code: r.get(3)?,
        error: r.get(4)?,
        response_body: r.get(5)?,
        timings: timings::read(r, 6)?,
    })
}

// ---- rows ----

pub struct NewEndpoint {
    pub id: String,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub batch_max: i64,
    pub batch_window_ms: i64,
    /// Seconds without a request after which a heartbeat goes out (SPEC 4.7); `None` is off.
    pub heartbeat_secs: Option<i64>,
    pub secret: String,
    pub now: i64,
}

#[derive(Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub batch_max: Option<i64>,
    pub batch_window_ms: Option<i64>,
    /// `Some(None)` turns heartbeats off.
    pub heartbeat_secs: Option<Option<i64>>,
}

#[derive(Debug, Clone)]
pub struct EndpointRow {
    pub seq: i64,
    pub id: String,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub batch_max: i64,
    pub batch_window_ms: i64,
    pub failures: i64,
    pub failing_since: Option<i64>,
    pub backoff_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub heartbeat_secs: Option<i64>,
}

#[derive(Debug, Default)]
pub struct EndpointStats {
    pub pending: i64,
    pub parked: i64,
    pub delivered: i64,
    pub failed: i64,
    pub last_request: Option<AttemptRow>,
}

pub struct Idempotency {
    pub key: String,
    pub request: Value,
}

pub struct NewEvent {
    pub event_type: String,
    pub created_at: i64,
    /// The envelope, built with `event::UNASSIGNED_ID`; the store writes the event's id in.
    pub payload: String,
    /// Queue for this endpoint only (test events), whatever its filter and state.
    pub only_endpoint: Option<i64>,
    pub idempotency: Option<Idempotency>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum PublishResult {
    /// Stored under `event_id`, with one message for each of these endpoints.
    Accepted {
        event_id: String,
        endpoints: Vec<i64>,
    },
    /// The same idempotency key and body were seen within 24 h: the first event's answer.
    Repeated { event_id: String, messages: usize },
    /// The idempotency key was used within 24 h with another body.
    Conflict,
}

#[derive(Debug, Clone)]
pub struct EventRow {
    pub seq: i64,
    pub id: String,
    pub payload: String,
}

#[derive(Default)]
pub struct MessageFilter {
    pub endpoint_seq: Option<i64>,
    pub event_seq: Option<i64>,
    pub status: Option<String>,
}

#[derive(Debug, Clone)]
pub struct MessageRow {
    pub seq: i64,
    pub event_id: String,
    pub endpoint_id: String,
    pub status: String,
    pub created_at: i64,
    pub next_attempt_at: Option<i64>,
    /// Oldest first; in a list, only the newest `ATTEMPTS_IN_LIST`.
    pub attempts: Vec<AttemptRow>,
    /// How many attempts the message has, whether `attempts` holds them all or not.
    pub attempt_count: i64,
}

#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub at: i64,
    pub attempt: i64,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub response_body: Option<String>,
    /// Its phases (SPEC 4.5); `None` for a request recorded before phases were timed.
    pub timings: Option<crate::net::Timings>,
}

#[cfg(test)]
mod tests;
