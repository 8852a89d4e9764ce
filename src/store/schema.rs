//! The schema as an append-only list of migrations, applied under `PRAGMA user_version` in one
//! exclusive transaction. Never edit a migration that has shipped; add a new one.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Migration `i` takes the database from `user_version` `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the foundation.
    r#"
    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );

    CREATE TABLE endpoints (
        seq             INTEGER PRIMARY KEY,
        id              TEXT NOT NULL UNIQUE,
        url             TEXT NOT NULL,
        description     TEXT NOT NULL DEFAULT '',
        event_types     TEXT NOT NULL DEFAULT '',   -- comma-separated; empty means all
        enabled         INTEGER NOT NULL,
        disabled_reason TEXT,                       -- manual, gone, failing
        batch_max       INTEGER NOT NULL,
        batch_window_ms INTEGER NOT NULL,
        failures        INTEGER NOT NULL DEFAULT 0, -- consecutive failed requests
        failing_since   INTEGER,                    -- ms; first failure of the current run
        backoff_until   INTEGER,                    -- ms
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    );

    -- The current secret has expires_at NULL; rotated-out secrets sign until expires_at.
    CREATE TABLE endpoint_secrets (
        endpoint_seq INTEGER NOT NULL REFERENCES endpoints(seq) ON DELETE CASCADE,
        secret       TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER
    );
    CREATE INDEX endpoint_secrets_by_endpoint ON endpoint_secrets(endpoint_seq);

    CREATE TABLE events (
        seq        INTEGER PRIMARY KEY,
        id         TEXT NOT NULL UNIQUE,
        type       TEXT NOT NULL,
        created_at INTEGER NOT NULL,                -- ms
        payload    TEXT NOT NULL                    -- the envelope, byte for byte as sent
    );
    CREATE INDEX events_by_time ON events(created_at);

    -- One message per event and subscribed endpoint; seq is the acceptance order.
    CREATE TABLE messages (
        seq             INTEGER PRIMARY KEY,
        event_seq       INTEGER NOT NULL REFERENCES events(seq) ON DELETE CASCADE,
        endpoint_seq    INTEGER NOT NULL REFERENCES endpoints(seq) ON DELETE CASCADE,
        status          TEXT NOT NULL,              -- pending, parked, delivered, failed
        attempts        INTEGER NOT NULL DEFAULT 0,
        failures        INTEGER NOT NULL DEFAULT 0, -- consecutive failures while parked
        next_attempt_at INTEGER,                    -- ms; parked messages only
        created_at      INTEGER NOT NULL,           -- ms; when the event was accepted
        requeued_at     INTEGER,                    -- ms; retry_for counts from here after a replay
        finished_at     INTEGER                     -- ms; delivered or failed
    );
    CREATE INDEX messages_queue ON messages(endpoint_seq, status, seq);
    CREATE INDEX messages_by_event ON messages(event_seq);
    CREATE INDEX messages_by_status ON messages(status, seq);

    -- One row per HTTP request; a batch is one request for many messages.
    CREATE TABLE requests (
        seq           INTEGER PRIMARY KEY,
        endpoint_seq  INTEGER NOT NULL REFERENCES endpoints(seq) ON DELETE CASCADE,
        at            INTEGER NOT NULL,             -- ms, when the request started
        duration_ms   INTEGER NOT NULL,
        status_code   INTEGER,
        error         TEXT,
        response_body TEXT
    );
    CREATE INDEX requests_by_endpoint ON requests(endpoint_seq, seq);

    CREATE TABLE attempts (
        message_seq INTEGER NOT NULL REFERENCES messages(seq) ON DELETE CASCADE,
        request_seq INTEGER NOT NULL REFERENCES requests(seq) ON DELETE CASCADE,
        attempt     INTEGER NOT NULL,
        PRIMARY KEY (message_seq, attempt)
    ) WITHOUT ROWID;
    CREATE INDEX attempts_by_request ON attempts(request_seq);

    CREATE TABLE idempotency_keys (
        key        TEXT PRIMARY KEY,
        request    TEXT NOT NULL,                   -- the request body, for comparison
        event_id   TEXT NOT NULL,                   -- the event the first request made
        created_at INTEGER NOT NULL
    );
    CREATE INDEX idempotency_by_time ON idempotency_keys(created_at);
    "#,
    // 2: event sources: components, incidents, monitors and their check history.
    r#"
    CREATE TABLE components (
        seq        INTEGER PRIMARY KEY,
        id         TEXT NOT NULL UNIQUE,
        name       TEXT NOT NULL,
        status     TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );

    CREATE TABLE incidents (
        seq         INTEGER PRIMARY KEY,
        id          TEXT NOT NULL UNIQUE,
        title       TEXT NOT NULL,
        status      TEXT NOT NULL,              -- investigating, identified, monitoring, resolved
        severity    TEXT NOT NULL,
        components  TEXT NOT NULL,              -- JSON [{id, name, status}], as events carry it
        source      TEXT NOT NULL,              -- manual, monitor
        monitor_id  TEXT,
        started_at  INTEGER NOT NULL,           -- ms
        resolved_at INTEGER,                    -- ms
        updated_at  INTEGER NOT NULL
    );
    CREATE INDEX incidents_by_status ON incidents(status, seq);

    -- AUTOINCREMENT: a deleted monitor's seq is never reused, so a check still in flight
    -- for it can never land on a new monitor.
    CREATE TABLE monitors (
        seq                   INTEGER PRIMARY KEY AUTOINCREMENT,
        id                    TEXT NOT NULL UNIQUE,
        name                  TEXT NOT NULL,
        url                   TEXT NOT NULL,
        method                TEXT NOT NULL,
        interval_ms           INTEGER NOT NULL,
        timeout_ms            INTEGER NOT NULL,
        expected_status       TEXT NOT NULL,
        failures_before_down  INTEGER NOT NULL,
        successes_before_up   INTEGER NOT NULL,
        component_id          TEXT,
        auto_incident         INTEGER NOT NULL,
        severity              TEXT NOT NULL,
        sla_target            REAL,
        sla_window_days       REAL NOT NULL,
        enabled               INTEGER NOT NULL,
        status                TEXT NOT NULL DEFAULT 'UP',
        consecutive_failures  INTEGER NOT NULL DEFAULT 0,
        consecutive_successes INTEGER NOT NULL DEFAULT 0,
        incident_id           TEXT,             -- the open incident this monitor opened
        sla_armed             INTEGER NOT NULL DEFAULT 1,
        sla_false_since       INTEGER,          -- ms; disarmed and the condition false since
        last_checked_at       INTEGER,          -- ms
        created_at            INTEGER NOT NULL,
        updated_at            INTEGER NOT NULL
    );
    CREATE INDEX monitors_by_component ON monitors(component_id);

    -- Raw checks of the last six hours; older ones are folded into check_minutes.
    CREATE TABLE checks (
        seq              INTEGER PRIMARY KEY,
        monitor_seq      INTEGER NOT NULL REFERENCES monitors(seq) ON DELETE CASCADE,
        at               INTEGER NOT NULL,      -- ms, when the check started
        ok               INTEGER NOT NULL,
        status_code      INTEGER,
        response_time_ms INTEGER NOT NULL,
        first_byte_ms    INTEGER,
        error            TEXT,
        interval_ms      INTEGER NOT NULL       -- the error budget a failure spends
    );
    CREATE INDEX checks_by_time ON checks(monitor_seq, at, ok, interval_ms);
    CREATE INDEX checks_by_seq ON checks(monitor_seq, seq);

    CREATE TABLE check_minutes (
        monitor_seq INTEGER NOT NULL REFERENCES monitors(seq) ON DELETE CASCADE,
        minute      INTEGER NOT NULL,           -- ms at the minute's start
        checks      INTEGER NOT NULL,
        failures    INTEGER NOT NULL,
        failed_ms   INTEGER NOT NULL,
        response_ms INTEGER NOT NULL,           -- sum, for averages
        PRIMARY KEY (monitor_seq, minute)
    ) WITHOUT ROWID;
    "#,
    // 3: event ids derived from `seq` (`id::EventIds`) instead of indexed random ones. The
    // events table is rebuilt without the unique index on `id`, with AUTOINCREMENT so that a
    // `seq`, and so an id, is never used twice. The events already stored keep their random
    // ids, looked up through `legacy_event_ids`. Foreign keys are off while this runs
    // (`migrate`), so dropping the old table does not cascade to its messages.
    r#"
    CREATE TABLE events_v3 (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        id         TEXT NOT NULL,                   -- id::EventIds of seq, or a legacy id
        type       TEXT NOT NULL,
        created_at INTEGER NOT NULL,                -- ms
        payload    TEXT NOT NULL                    -- the envelope, byte for byte as sent
    );
    INSERT INTO events_v3 (seq, id, type, created_at, payload)
        SELECT seq, id, type, created_at, payload FROM events ORDER BY seq;

    CREATE TABLE legacy_event_ids (
        seq INTEGER PRIMARY KEY REFERENCES events(seq) ON DELETE CASCADE,
        id  TEXT NOT NULL UNIQUE
    );
    INSERT INTO legacy_event_ids (seq, id) SELECT seq, id FROM events ORDER BY seq;

    DROP TABLE events;
    ALTER TABLE events_v3 RENAME TO events;
    CREATE INDEX events_by_time ON events(created_at);

    -- The permutation's key is added from the operating system's CSPRNG by Store::open.
    "#,
    // 4: retention finds old delivered messages by the time they were accepted, so that its
    // search ends at the cutoff instead of reading every younger one (ARCHITECTURE.md,
    // Storage). The metrics' oldest pending message is found through the same index.
    r#"
    DROP INDEX messages_by_status;
    CREATE INDEX messages_by_status ON messages(status, created_at);
    "#,
    // 5: each endpoint's messages by status, kept as messages change (`counts.rs`), so that
    // neither the start, `/metrics` nor an endpoint's view counts messages; and events by
    // type, so that `GET /api/v1/events?type=` reads one type's newest events instead of
    // every event newer than its matches (measured in BENCHMARKS.md, "Full size"); and
    // resolved incidents by resolution time, for retention. Filling the table reads every
    // message once, through `messages_queue`.
    r#"
    CREATE TABLE message_counts (
        endpoint_seq INTEGER NOT NULL REFERENCES endpoints(seq) ON DELETE CASCADE,
        status       TEXT NOT NULL,
        n            INTEGER NOT NULL,
        PRIMARY KEY (endpoint_seq, status)
    ) WITHOUT ROWID;
    INSERT INTO message_counts (endpoint_seq, status, n)
        SELECT endpoint_seq, status, count(*) FROM messages GROUP BY endpoint_seq, status;

    CREATE INDEX events_by_type ON events(type, seq);

    -- Retention deletes incidents resolved longer ago than retention_days; open ones never.
    CREATE INDEX incidents_by_resolution ON incidents(status, resolved_at);
    "#,
    // 6: check history older than a day in one row per monitor and hour, folded from
    // check_minutes by retention (`Store::fold_check_hours`), so that a monitor keeps 24 rows
    // a day of its SLA window instead of 1,440. The minute rows a database already holds are
    // folded by the passes after the upgrade, in batches, not here.
    r#"
    CREATE TABLE check_hours (
        monitor_seq INTEGER NOT NULL REFERENCES monitors(seq) ON DELETE CASCADE,
        hour        INTEGER NOT NULL,           -- ms at the hour's start
        checks      INTEGER NOT NULL,
        failures    INTEGER NOT NULL,
        failed_ms   INTEGER NOT NULL,
        response_ms INTEGER NOT NULL,           -- sum, for averages
        PRIMARY KEY (monitor_seq, hour)
    ) WITHOUT ROWID;
    "#,
    // 7: push monitors (SPEC 7): a monitor's kind, the grace a push monitor allows past its
    // interval, and its ping token. The token is kept as it is (the reveal route shows it,
    // as endpoint secrets are kept) and as its SHA-256, which is what a ping is looked up by:
    // the lookup compares hashes, so its timing says nothing about how much of a guessed
    // token was right.
    r#"
    ALTER TABLE monitors ADD COLUMN kind TEXT NOT NULL DEFAULT 'http';
    ALTER TABLE monitors ADD COLUMN grace_ms INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE monitors ADD COLUMN push_token TEXT;
    ALTER TABLE monitors ADD COLUMN push_token_hash TEXT;
    CREATE UNIQUE INDEX monitors_by_push_token ON monitors(push_token_hash)
        WHERE push_token_hash IS NOT NULL;
    "#,
    // 8: an endpoint may ask for a heartbeat after this many seconds without a request
    // (SPEC 4.7); NULL is off.
    r#"
    ALTER TABLE endpoints ADD COLUMN heartbeat_secs INTEGER;
    "#,
    // 9: an endpoint disabled for failing is probed until it answers or `recovery_for` ends
    // (SPEC 4.4): its schedule (wall ms), the probes sent, and the highest event seq when it
    // was disabled, after which the events it missed are found when it comes back. An event
    // sent to one endpoint only (a test event) names it, so that no other endpoint counts it
    // as missed.
    r#"
    ALTER TABLE endpoints ADD COLUMN recovery_next_at INTEGER;
    ALTER TABLE endpoints ADD COLUMN recovery_probes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE endpoints ADD COLUMN recovery_until INTEGER;
    ALTER TABLE endpoints ADD COLUMN missed_after_event INTEGER;
    ALTER TABLE events ADD COLUMN only_endpoint INTEGER;
    "#,
    // 10: each request's and each check's phases (SPEC 4.5), in microseconds, and whether the
    // request reused a pooled connection (0/1); NULL in rows written before (`timings.rs`).
    r#"
    ALTER TABLE requests ADD COLUMN dns_us INTEGER;
    ALTER TABLE requests ADD COLUMN connect_us INTEGER;
    ALTER TABLE requests ADD COLUMN tls_us INTEGER;
    ALTER TABLE requests ADD COLUMN ttfb_us INTEGER;
    ALTER TABLE requests ADD COLUMN total_us INTEGER;
    ALTER TABLE requests ADD COLUMN reused INTEGER;
    ALTER TABLE checks ADD COLUMN dns_us INTEGER;
    ALTER TABLE checks ADD COLUMN connect_us INTEGER;
    ALTER TABLE checks ADD COLUMN tls_us INTEGER;
    ALTER TABLE checks ADD COLUMN ttfb_us INTEGER;
    ALTER TABLE checks ADD COLUMN total_us INTEGER;
    ALTER TABLE checks ADD COLUMN reused INTEGER;
    "#,
];

/// The tables whose references a migration rebuilt, by the version it brings: checked after
/// that migration ran (3 rebuilt `events`).
const REBUILT_REFERENCES: &[(i64, &[&str])] = &[(3, &["messages", "legacy_event_ids"])];

/// The schema version this binary writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to `VERSION`, or refuses one that a newer binary wrote.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    // Migrations that rebuild a table need foreign keys off (SQLite's own procedure for
    // schema changes); the pragma has no effect inside a transaction, so it brackets it, and
    // the references are checked before the commit instead.
    conn.execute_batch("PRAGMA foreign_keys = OFF")?;
    let result = migrate_unchecked(conn);
    conn.execute_batch("PRAGMA foreign_keys = ON")?;
    result
}

fn migrate_unchecked(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > VERSION {
        return Err(StoreError::TooNew {
            found: current,
            supported: VERSION,
        });
    }
    if current < VERSION {
        log::info!("migrating the database from schema version {current} to {VERSION}");
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    // Only after a migration that rebuilt references ran, and only the tables it rebuilt them
    // in: the check reads every row it checks.
    let rebuilt = REBUILT_REFERENCES
        .iter()
        .filter(|(version, _)| current < *version)
        .flat_map(|(_, tables)| tables.iter());
    for table in rebuilt {
        let dangling: i64 = tx.query_row(
            "SELECT count(*) FROM pragma_foreign_key_check(?1)",
            [table],
            |r| r.get(0),
        )?;
        if dangling > 0 {
            // Rolled back when `tx` drops: the database stays as it was.
            return Err(StoreError::Refused(format!(
                "{dangling} rows of {table} refer to rows that do not exist after the migration \
                 to schema version {VERSION}; it was not applied"
            )));
        }
    }
    tx.commit()?;
    Ok(())
}
