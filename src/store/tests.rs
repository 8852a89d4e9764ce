//! Unit tests of the store against a real SQLite file in a temporary directory.

use super::*;

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

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db"), None).unwrap();
    (dir, store)
}

fn endpoint(store: &Store, types: &[&str]) -> EndpointRow {
    store
        .create_endpoint(&NewEndpoint {
            id: crate::id::new("ep"),
            url: "http://127.0.0.1:9/".into(),
            description: String::new(),
            event_types: types.iter().map(|s| s.to_string()).collect(),
            enabled: true,
            batch_max: 100,
            batch_window_ms: 0,
            heartbeat_secs: None,
            secret: crate::secret::generate(),
            now: 1,
        })
        .unwrap()
}

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

#[test]
fn fan_out_follows_filters_and_enabled() {
    let (_d, s) = store();
    let all = endpoint(&s, &[]);
    let incidents = endpoint(&s, &["incident.created"]);
    let disabled = endpoint(&s, &[]);
    s.update_endpoint(
        &disabled.id,
        &EndpointPatch {
            enabled: Some(false),
            ..Default::default()
        },
        2,
    )
    .unwrap();
    let results = s
        .publish(
            &mut [
                event("incident.created", None),
                event("sla.breach_warning", None),
            ],
            10,
        )
        .unwrap();
    let targets: Vec<&Vec<i64>> = results
        .iter()
        .map(|r| match r {
            PublishResult::Accepted { endpoints, .. } => endpoints,
            other => panic!("expected Accepted, got {other:?}"),
        })
        .collect();
    assert_eq!(targets, [&vec![all.seq, incidents.seq], &vec![all.seq]]);
    assert_eq!(s.endpoint_stats(all.seq).unwrap().pending, 2);
    assert_eq!(s.endpoint_stats(disabled.seq).unwrap().pending, 0);
}

#[test]
fn idempotency_repeats_or_conflicts_within_one_group() {
    let (_d, s) = store();
    endpoint(&s, &[]);
    let body = serde_json::json!({"type": "incident.created", "data": {"a": 1}});
    let other = serde_json::json!({"type": "incident.created", "data": {"a": 2}});
    let results = s
        .publish(
            &mut [
                event("incident.created", Some(("k", body.clone()))),
                event("incident.created", Some(("k", body))),
                event("incident.created", Some(("k", other))),
            ],
            10,
        )
        .unwrap();
    let first_id = accepted_id(&results[0]);
    assert_eq!(
        results[1],
        PublishResult::Repeated {
            event_id: first_id,
            messages: 1
        }
    );
    assert_eq!(results[2], PublishResult::Conflict);
    assert_eq!(s.list_events(None, None, 10).unwrap().len(), 1);
}

#[test]
fn rotation_keeps_the_old_secret_for_its_grace() {
    let (_d, s) = store();
    let ep = endpoint(&s, &[]);
    let old = s.active_secrets(ep.seq, 1).unwrap();
    s.rotate_secret(ep.seq, "whsec_new", 100, 50).unwrap();
    let during = s.active_secrets(ep.seq, 120).unwrap();
    assert_eq!(during, vec!["whsec_new".to_string(), old[0].clone()]);
    assert_eq!(
        s.active_secrets(ep.seq, 150).unwrap(),
        vec!["whsec_new".to_string()]
    );
}

#[test]
fn delete_takes_messages_with_it() {
    let (_d, s) = store();
    let ep = endpoint(&s, &[]);
    s.publish(&mut [event("incident.created", None)], 10)
        .unwrap();
    assert!(s.delete_endpoint(&ep.id).unwrap().is_some());
    assert!(
        s.list_messages(&MessageFilter::default(), None, 10)
            .unwrap()
            .is_empty()
    );
    assert!(s.delete_endpoint(&ep.id).unwrap().is_none());
}

#[test]
fn a_full_store_refuses_events_and_keeps_what_it_has() {
    let (dir, s) = store();
    let ep = endpoint(&s, &[]);
    s.publish(&mut [event("incident.created", None)], 10)
        .unwrap();
    let full = Store::open(&dir.path().join("t.db"), Some(1)).unwrap();
    match full.publish(&mut [event("incident.created", None)], 10) {
        Err(StoreError::Full) => {}
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!(full.endpoint_stats(ep.seq).unwrap().pending, 1);
}

/// Records one 200 that delivered `messages` together.
fn delivered_in_one_request(s: &Store, endpoint_seq: i64, messages: &[i64]) {
    s.record(&[RequestOutcome {
        endpoint_seq,
        at: 20,
        duration_ms: 1,
        timings: Default::default(),
        status_code: Some(200),
        error: None,
        response_body: None,
        messages: messages
            .iter()
            .map(|&seq| (seq, 1, Verdict::Delivered))
            .collect(),
        endpoint_failures: 0,
        endpoint_failing_since: None,
        endpoint_backoff_until: None,
        disable: None,
    }])
    .unwrap();
}

#[test]
fn prune_removes_old_delivered_messages_and_what_only_they_used() {
    let (_d, s) = store();
    let ep = endpoint(&s, &[]);
    let results = s
        .publish(
            &mut [
                event("incident.created", None),
                event("incident.created", None),
            ],
            10,
        )
        .unwrap();
    assert_eq!(results.len(), 2);
    let queued = s.pending_after(ep.seq, 0, 10).unwrap();
    // The first message is delivered, the second still pending.
    delivered_in_one_request(&s, ep.seq, &[queued[0].seq]);
    // Nothing is old enough yet.
    assert_eq!(s.prune(5, 0, 100).unwrap(), 0);
    assert_eq!(s.prune(1_000, 0, 100).unwrap(), 1);
    let left = s
        .list_messages(&MessageFilter::default(), None, 10)
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].status, "pending");
    assert_eq!(
        s.list_events(None, None, 10).unwrap().len(),
        1,
        "the delivered event went with its message"
    );
    assert!(
        s.endpoint_stats(ep.seq).unwrap().last_request.is_none(),
        "its request went too"
    );
}

#[test]
fn prune_keeps_a_batch_request_until_its_last_message_goes() {
    let (_d, s) = store();
    let ep = endpoint(&s, &[]);
    let (mut old, mut young) = (
        event("incident.created", None),
        event("incident.created", None),
    );
    (old.created_at, young.created_at) = (10, 30);
    s.publish(&mut [old, young], 30).unwrap();
    let queued = s.pending_after(ep.seq, 0, 10).unwrap();
    delivered_in_one_request(&s, ep.seq, &[queued[0].seq, queued[1].seq]);

    assert_eq!(s.prune(20, 0, 100).unwrap(), 1, "only the old message");
    let left = s
        .list_messages(&MessageFilter::default(), None, 10)
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(
        left[0].attempts.len(),
        1,
        "the young message's attempt, and so the request, stay"
    );
    assert!(s.endpoint_stats(ep.seq).unwrap().last_request.is_some());

    assert_eq!(s.prune(100, 0, 100).unwrap(), 1);
    assert!(
        s.endpoint_stats(ep.seq).unwrap().last_request.is_none(),
        "the request went with its last message"
    );
}

/// Retention's search must end at the cutoff: an index range on `(status, created_at)`, not a
/// walk through every delivered message (ARCHITECTURE.md, Storage).
#[test]
fn retention_and_the_oldest_pending_message_are_found_through_the_time_index() {
    let (_d, s) = store();
    let conn = s.writer.lock().unwrap();
    let plan = |sql: &str, values: &[i64]| -> String {
        conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(rusqlite::params_from_iter(values), |r| {
                r.get::<_, String>(3)
            })
            .unwrap()
            .map(|r| r.unwrap())
            .collect::<Vec<_>>()
            .join("; ")
    };
    let prune = plan(PRUNE_DELIVERED, &[5, 500]);
    assert!(
        prune.contains("messages_by_status (status=? AND created_at<?)"),
        "{prune}"
    );
    let oldest = plan(OLDEST_PENDING, &[]);
    assert!(oldest.contains("messages_by_status"), "{oldest}");
}

#[test]
fn a_version_3_database_gets_the_time_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    {
        let conn = Connection::open(&path).unwrap();
        for sql in &schema::MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
    }
    let s = Store::open(&path, None).unwrap();
    let conn = s.writer.lock().unwrap();
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_index_info('messages_by_status') ORDER BY seqno")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(columns, ["status", "created_at"]);
}

fn accepted_id(result: &PublishResult) -> String {
    match result {
        PublishResult::Accepted { event_id, .. } => event_id.clone(),
        other => panic!("expected Accepted, got {other:?}"),
    }
}

#[test]
fn event_ids_are_written_into_the_envelope_found_again_and_never_reused() {
    let (_d, s) = store();
    endpoint(&s, &[]);
    let mut events = [
        event("incident.created", None),
        event("incident.created", None),
    ];
    let results = s.publish(&mut events, 10).unwrap();
    let ids: Vec<String> = results.iter().map(accepted_id).collect();
    assert_ne!(ids[0], ids[1]);
    for (id, e) in ids.iter().zip(&events) {
        assert!(crate::id::is_valid("evt", id), "{id}");
        assert_eq!(e.payload, format!("{{\"id\":\"{id}\"}}"));
        let row = s.event(id).unwrap().expect("found by its id");
        assert_eq!((&row.id, &row.payload), (id, &e.payload));
    }
    // A well-formed id that no event has, and a malformed one, find nothing.
    assert!(s.event(&crate::id::new("evt")).unwrap().is_none());
    assert!(s.event("evt_nope").unwrap().is_none());

    // Retention empties the table; the next event still gets a seq, and an id, of its own.
    let last_seq = s.event(&ids[1]).unwrap().unwrap().seq;
    let queued = s.pending_after(1, 0, 10).unwrap();
    let seqs: Vec<i64> = queued.iter().map(|m| m.seq).collect();
    delivered_in_one_request(&s, 1, &seqs);
    assert_eq!(s.prune(1_000, 0, 100).unwrap(), 2);
    assert!(s.list_events(None, None, 10).unwrap().is_empty());
    let next = accepted_id(
        &s.publish(&mut [event("incident.created", None)], 30)
            .unwrap()[0],
    );
    assert!(!ids.contains(&next));
    assert!(s.event(&next).unwrap().unwrap().seq > last_seq);
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
fn a_database_restored_from_a_backup_gives_its_next_events_new_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (live, backup) = (dir.path().join("live.db"), dir.path().join("backup.db"));
    let s = Store::open(&live, None).unwrap();
    s.publish(&mut [event("incident.created", None)], 10)
        .unwrap();
    drop(s); // the last connection folds the log into the file
    std::fs::copy(&live, &backup).unwrap();

    // The live database goes on; then it is lost and the backup restored.
    let s = Store::open(&live, None).unwrap();
    let seen = accepted_id(
        &s.publish(&mut [event("incident.created", None)], 20)
            .unwrap()[0],
    );
    let restored = Store::open(&backup, None).unwrap();
    let next = accepted_id(
        &restored
            .publish(&mut [event("incident.created", None)], 30)
            .unwrap()[0],
    );
    let (a, b) = (
        s.event(&seen).unwrap().unwrap(),
        restored.event(&next).unwrap().unwrap(),
    );
    assert_eq!(
        a.seq, b.seq,
        "the restored database hands out the same seq again"
    );
    assert_ne!(seen, next, "but not the id consumers have already seen");
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

/// Every list route's statement reads an index range that ends at its page, never the whole
/// table and never a sort of everything that matches (issue 17: at 26 million messages a
/// filter matching nothing read them all). One row per statement: the index it must use.
#[test]
fn a_page_of_each_list_reads_an_index_range() {
    let (_d, s) = store();
    let conn = s.writer.lock().unwrap();
    let plan = |sql: &str| query_plan(&conn, sql);
    let endpoints =
        format!("SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE seq > ?1 ORDER BY seq LIMIT ?2");
    let message = format!("{MESSAGE_SELECT} WHERE m.seq = ?1");
    let incidents_of_status = sources::incidents_page(true);
    let incidents = sources::incidents_page(false);
    let rows: [(&str, &str, &str); 10] = [
        (
            "events",
            EVENTS_PAGE,
            "events USING INTEGER PRIMARY KEY (rowid<?)",
        ),
        (
            "events?type=",
            EVENTS_OF_TYPE,
            "events USING INDEX events_by_type (type=? AND seq<?)",
        ),
        (
            "messages",
            MESSAGES_PAGE,
            "messages USING INTEGER PRIMARY KEY (rowid<?)",
        ),
        (
            "messages?event_id=",
            MESSAGES_OF_EVENT,
            "messages USING INDEX messages_by_event (event_seq=? AND rowid<?)",
        ),
        (
            "messages?endpoint_id=&status= (and each part of the other filters)",
            MESSAGES_OF_ENDPOINT_STATUS,
            "messages USING COVERING INDEX messages_queue (endpoint_seq=? AND status=? AND seq<?)",
        ),
        (
            "a message of a page",
            &message,
            "m USING INTEGER PRIMARY KEY (rowid=?)",
        ),
        (
            "endpoints",
            &endpoints,
            "endpoints USING INTEGER PRIMARY KEY (rowid>?)",
        ),
        (
            "an endpoint's counts",
            "SELECT status, n FROM message_counts WHERE endpoint_seq = ?1",
            "message_counts USING PRIMARY KEY (endpoint_seq=?)",
        ),
        (
            "incidents?status=",
            &incidents_of_status,
            "incidents USING INDEX incidents_by_status (status=? AND seq<?)",
        ),
        (
            "incidents",
            &incidents,
            "incidents USING INTEGER PRIMARY KEY (rowid<?)",
        ),
    ];
    let mut wrong = Vec::new();
    for (route, sql, index) in rows {
        let plan = plan(sql);
        if !plan.contains(&format!("SEARCH {index}")) || plan.contains("TEMP B-TREE") {
            wrong.push(format!("{route}: {plan}\n  wanted SEARCH {index}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
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

#[test]
fn a_checkpoint_does_not_hold_the_writer_while_a_reader_stays() {
    // A reader that keeps a transaction open (a backup, Litestream) keeps the log from being
    // truncated; the checkpoint used to wait the whole busy timeout (5 s) for it, holding the
    // writer, so every publish behind it waited as long.
    let (dir, store) = store();
    let _endpoint = endpoint(&store, &[]);
    for _ in 0..20 {
        store
            .publish(&mut [event("incident.created", None)], 10)
            .unwrap();
    }
    let reader = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let n: i64 = reader
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert!(n >= 20);
    for _ in 0..20 {
        store
            .publish(&mut [event("incident.created", None)], 10)
            .unwrap();
    }
    let started = std::time::Instant::now();
    store.checkpoint().unwrap();
    let took = started.elapsed();
    reader.execute_batch("COMMIT").unwrap();
    assert!(
        took < std::time::Duration::from_secs(2),
        "the checkpoint held the writer {took:?} for a reader"
    );
    // With the reader gone, the next one truncates as before.
    store.checkpoint().unwrap();
}
