//! Unit tests of the store against a real SQLite file in a temporary directory.

use super::endpoints::ENDPOINT_COLUMNS;
use super::events::{
    EVENTS_OF_TYPE, EVENTS_PAGE, MESSAGE_SELECT, MESSAGES_OF_ENDPOINT_STATUS, MESSAGES_OF_EVENT,
    MESSAGES_PAGE,
};
use super::*;
use serde_json::Value;

mod endpoints;
mod events;
mod incidents;
mod retention;

/// The details of `EXPLAIN QUERY PLAN` for `sql`, with every parameter bound to 1, joined
/// with "; ": what the plan tests compare with the index each statement must use.
pub(super) fn query_plan(conn: &Connection, sql: &str) -> String {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let n = stmt.parameter_count();
    stmt.query_map(rusqlite::params_from_iter(vec![1i64; n]), |r| {
        r.get::<_, String>(3)
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect::<Vec<_>>()
    .join("; ")
}

use crate::store::testkit::store;

use crate::store::testkit::endpoint;

fn event(t: &str, key: Option<(&str, Value)>) -> NewEvent {
    NewEvent {
        payload: format!("{{\"id\":\"{}\"}}", crate::event::UNASSIGNED_ID),
        event_type: t.into(),
        created_at: 10,
        only_endpoint: None,
        idempotency: key.map(|(k, v)| Idempotency {
            key: k.into(),
            request: v,
        }),
    }
}

#[test]
fn migrations_apply_once_and_newer_databases_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    drop(Store::open(&path, None).unwrap());
    drop(Store::open(&path, None).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", schema::VERSION + 1)
        .unwrap();
    drop(conn);
    match Store::open(&path, None) {
        Err(StoreError::TooNew { found, .. }) => assert_eq!(found, schema::VERSION + 1),
        Err(other) => panic!("expected TooNew, got {other}"),
        Ok(_) => panic!("expected TooNew, got a store"),
    }
}

/// Records one 200 that delivered `messages` together.
fn delivered_in_one_request(s: &Store, endpoint_seq: i64, messages: &[MessageSeq]) {
    s.record(&[RequestOutcome {
        endpoint_seq: EndpointSeq(endpoint_seq),
        at: 20,
        duration_ms: 1,
        status_code: Some(200),
        error: None,
        response_body: None,
        messages: messages
            .iter()
            .map(|&seq| MessageOutcome {
                seq,
                attempt: 1,
                verdict: Verdict::Delivered,
            })
            .collect(),
        endpoint_failures: 0,
        endpoint_failing_since: None,
        endpoint_backoff_until: None,
        disable: None,
        recovery: None,
        timings: Default::default(),
    }])
    .unwrap();
}

fn accepted_id(result: &PublishResult) -> String {
    match result {
        PublishResult::Accepted { event_id, .. } => event_id.clone(),
        other => panic!("expected Accepted, got {other:?}"),
    }
}

#[test]
fn a_version_2_database_keeps_its_events_their_ids_and_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let legacy = "evt_legacy0123456789";
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
        conn.execute_batch(schema::MIGRATIONS[1]).unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO endpoints (seq, id, url, enabled, batch_max, batch_window_ms, created_at, updated_at)
                 VALUES (1, 'ep_0123456789abcdef', 'http://127.0.0.1:9/', 1, 100, 0, 1, 1);
             INSERT INTO events (seq, id, type, created_at, payload)
                 VALUES (41, '{legacy}', 'incident.created', 5, '{{\"id\":\"{legacy}\"}}');
             INSERT INTO messages (seq, event_seq, endpoint_seq, status, created_at)
                 VALUES (7, 41, 1, 'pending', 5);"
        ))
        .unwrap();
    }
    let s = Store::open(&path, None).unwrap();
    let row = s
        .event(legacy)
        .unwrap()
        .expect("the old event keeps its id");
    assert_eq!(row.seq, 41);
    let messages = s
        .list_messages(&MessageFilter::default(), None, 10)
        .unwrap();
    assert_eq!(
        messages.len(),
        1,
        "dropping the old table took no message with it"
    );
    assert_eq!(
        (messages[0].seq, messages[0].event_id.as_str()),
        (7, legacy)
    );

    // New events continue after the old ones, with derived ids.
    let new = accepted_id(
        &s.publish(&mut [event("incident.created", None)], 10)
            .unwrap()[0],
    );
    assert_eq!(s.event(&new).unwrap().unwrap().seq, 42);
    drop(s);
    let s = Store::open(&path, None).unwrap();
    assert_eq!(s.event(&new).unwrap().unwrap().seq, 42, "the key is kept");
    assert_eq!(s.event(legacy).unwrap().unwrap().seq, 41);
}

#[test]
fn a_migration_that_would_leave_dangling_references_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
        conn.execute_batch(schema::MIGRATIONS[1]).unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
        // A message whose event is missing, as only a hand edit without foreign keys makes.
        conn.execute_batch(
            "PRAGMA foreign_keys = OFF;
             INSERT INTO endpoints (seq, id, url, enabled, batch_max, batch_window_ms, created_at, updated_at)
                 VALUES (1, 'ep_0123456789abcdef', 'http://127.0.0.1:9/', 1, 100, 0, 1, 1);
             INSERT INTO messages (seq, event_seq, endpoint_seq, status, created_at)
                 VALUES (7, 99, 1, 'pending', 5);",
        )
        .unwrap();
    }
    match Store::open(&path, None) {
        Err(e) => assert!(e.to_string().contains("messages"), "{e}"),
        Ok(_) => panic!("a migration leaving dangling references must be refused"),
    }
    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name IN ('legacy_event_ids', 'events_v3')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!((version, tables), (2, 0), "rolled back");
}

/// The full integrity check runs after the open (issue 17: it read the whole file before the
/// service could start). A sound file passes; a file with a damaged page opens, then the
/// check refuses every write and the health check, and the file is left byte for byte.
#[test]
fn the_integrity_check_after_the_open_refuses_writes_to_a_damaged_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    fixture::generate(&path, fixture::Fixture::Month, 0.0005, 1_800_000_000_000).unwrap();
    let s = Store::open(&path, None).unwrap();
    s.check_integrity();
    assert!(matches!(s.integrity.get(), Some(Ok(()))));
    s.health_check().unwrap();
    s.set_setting("sound", "yes").unwrap();
    drop(s);

    // A leaf page of events in the middle of the file, garbage after its first bytes: nothing
    // the open reads, and a page quick_check reads.
    let mut bytes = std::fs::read(&path).unwrap();
    let page = 4096;
    let pages = bytes.len() / page;
    let victim = (pages / 2..pages)
        .find(|&p| {
            let text = String::from_utf8_lossy(&bytes[p * page..(p + 1) * page]);
            text.matches("monitor.status_change").count() >= 3
        })
        .expect("a page of events in the second half of the file");
    for (i, b) in bytes[victim * page + 8..(victim + 1) * page]
        .iter_mut()
        .enumerate()
    {
        *b = (i * 7 + 13) as u8;
    }
    std::fs::write(&path, &bytes).unwrap();

    let s = Store::open(&path, None).unwrap();
    assert!(s.integrity.get().is_none(), "not checked before it runs");
    s.check_integrity();
    assert!(
        matches!(s.integrity.get(), Some(Err(_))),
        "{:?}",
        s.integrity.get()
    );
    assert!(matches!(s.health_check(), Err(StoreError::Corrupt(..))));
    assert!(matches!(
        s.set_setting("damaged", "yes"),
        Err(StoreError::Corrupt(..))
    ));
    assert!(matches!(s.checkpoint(), Err(StoreError::Corrupt(..))));
    // Nothing stops after the check: interrupting it when none runs is harmless.
    s.stop_integrity_check();
    drop(s);
    assert!(
        std::fs::read(&path).unwrap() == bytes,
        "the damaged file was changed"
    );
}

/// Schema version 5 fills each endpoint's counts from the messages a version 4 database
/// holds; after that the open reads only the counts.
#[test]
fn a_version_4_database_gets_its_counts_from_its_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    {
        let conn = Connection::open(&path).unwrap();
        for sql in &schema::MIGRATIONS[..4] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        conn.execute_batch(
            "INSERT INTO endpoints (seq, id, url, enabled, batch_max, batch_window_ms, created_at, updated_at)
                 VALUES (1, 'ep_a', 'http://127.0.0.1:9/', 1, 1, 0, 0, 0),
                        (2, 'ep_b', 'http://127.0.0.1:9/', 1, 1, 0, 0, 0);
             INSERT INTO events (seq, id, type, created_at, payload)
                 VALUES (1, 'evt_a', 'incident.created', 0, '{}');
             INSERT INTO messages (event_seq, endpoint_seq, status, created_at)
                 VALUES (1, 1, 'delivered', 0), (1, 1, 'delivered', 0), (1, 1, 'failed', 0),
                        (1, 2, 'pending', 0);",
        )
        .unwrap();
    }
    let s = Store::open(&path, None).unwrap();
    let a = s.endpoint_stats(1).unwrap();
    assert_eq!((a.pending, a.parked, a.delivered, a.failed), (0, 0, 2, 1));
    let b = s.endpoint_stats(2).unwrap();
    assert_eq!((b.pending, b.delivered), (1, 0));
    assert_eq!(
        s.message_counts.get(),
        [
            ("pending", 1),
            ("parked", 0),
            ("delivered", 2),
            ("failed", 1)
        ]
    );
}

#[test]
fn a_probe_does_not_queue_behind_a_write_in_progress() {
    // `/healthz` probes the writer when nothing committed lately; it used to wait for the
    // writer's mutex, so one long write held every probe with it.
    let (_dir, store) = store();
    let store = std::sync::Arc::new(store);
    let (held_tx, held_rx) = crossbeam_channel::bounded(0);
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
    let writing = std::thread::spawn({
        let store = store.clone();
        move || {
            store.write(Durability::Full, |_| {
                held_tx.send(()).unwrap();
                let _ = release_rx.recv();
                Ok(())
            })
        }
    });
    held_rx.recv().unwrap();
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    std::thread::spawn({
        let store = store.clone();
        move || done_tx.send(store.probe_writer().is_ok())
    });
    let answered = done_rx.recv_timeout(std::time::Duration::from_secs(10));
    release_tx.send(()).unwrap();
    writing.join().unwrap().unwrap();
    assert_eq!(
        answered,
        Ok(true),
        "the probe waited for the write in progress"
    );
}

#[test]
fn an_existing_database_others_may_read_is_narrowed_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    drop(Store::open(&path, None).unwrap());
    // As an older version, or a copy made with `cp`, would have left them.
    let files: Vec<std::path::PathBuf> = ["t.db", "t.db-wal", "t.db-shm"]
        .iter()
        .map(|f| dir.path().join(f))
        .filter(|p| p.exists())
        .collect();
    for f in &files {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let _store = Store::open(&path, None).unwrap();
    for f in &files {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is {mode:o}", f.display());
    }
}

/// The layering rule of ARCHITECTURE.md: the store depends on no domain module, only on the
/// leaf value modules below, which depend on no store. The rules that decide what to write
/// live with their domain and write through a `Tx`; an arrow from `store/` up to one of them
/// (`incident`, `monitor`, `sla`, `metrics`, …) would make the store decide again.
#[test]
fn the_store_uses_no_domain_module() {
    const LEAVES: [&str; 4] = ["id", "time", "secret", "event"];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    // Every `.rs` file under `src/store/`, its tests' folder included.
    let mut files = Vec::new();
    let mut dirs = vec![root.join("store")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 15, "{files:?}");
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for (at, _) in line.match_indices("crate::") {
                // A path inside a string literal (this test's own) is no import.
                if line[..at].matches('"').count() % 2 == 1 {
                    continue;
                }
                let rest = &line[at + "crate::".len()..];
                // `crate::{a, b}` names several; `crate::a::…` one.
                let names: Vec<&str> = match rest.strip_prefix('{') {
                    Some(inner) => inner
                        .split('}')
                        .next()
                        .unwrap_or_default()
                        .split(',')
                        .map(|n| n.trim().split("::").next().unwrap_or_default())
                        .collect(),
                    None => vec![
                        rest.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                            .next()
                            .unwrap_or_default(),
                    ],
                };
                for name in names {
                    if name != "store" && !LEAVES.contains(&name) {
                        found.push(format!("{}:{}: crate::{name}", file.display(), n + 1));
                    }
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "the store reaches up into:\n{}",
        found.join("\n")
    );
    // The leaves stay leaves: none of them depends on the store.
    for leaf in LEAVES {
        let text = std::fs::read_to_string(root.join(format!("{leaf}.rs"))).unwrap();
        assert!(!text.contains("crate::store"), "{leaf}.rs uses the store");
    }
}
