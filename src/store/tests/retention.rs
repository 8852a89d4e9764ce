//! The store's unit tests of retention: pruning delivered messages and what only they used,
//! through the time index, and the checkpoints of the log.

use super::*;

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
