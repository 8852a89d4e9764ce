//! The store's unit tests of retention: pruning delivered messages and what only they used,
//! through the time index, and the checkpoints of the log.

use super::*;
use crate::store::retention::{AUTOCHECKPOINT_PAGES, PRUNE_EVENT, PRUNE_KEYS};

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
    let queued = s
        .pending_after(EndpointSeq(ep.seq), MessageSeq(0), 10)
        .unwrap();
    // The first message is delivered, the second still pending.
    delivered_in_one_request(&s, ep.seq, &[queued[0].seq]);
    // Nothing is old enough yet.
    assert_eq!(s.prune(5, 0, 100).unwrap(), 0);
    assert_eq!(s.prune(1_000, 0, 100).unwrap(), 1);
    let left = s
        .list_messages(&MessageFilter::default(), None, 10)
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].status, MessageStatus::Pending);
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
    let queued = s
        .pending_after(EndpointSeq(ep.seq), MessageSeq(0), 10)
        .unwrap();
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

/// Retention finds which events to delete from the messages it deletes: an old event that a
/// failed message keeps (kept until its endpoint goes) is not searched again by every batch,
/// and events that have no message are found by a scan of their own that goes on from where
/// it stopped and ends at the first event young enough to keep.
#[test]
fn retention_deletes_an_event_with_its_last_message_and_scans_for_lone_events() {
    let (_d, s) = store();
    let ep = endpoint(&s, &["incident.created"]);
    let at = |t: &str, created_at: i64| NewEvent {
        created_at,
        ..event(t, None)
    };
    // Old: a failed incident, a status change nobody subscribed to, two delivered incidents.
    // Young: a lone status change and an incident.
    let ids: Vec<String> = s
        .publish(
            &mut [
                at("incident.created", 10),
                at("monitor.status_change", 10),
                at("incident.created", 10),
                at("incident.created", 10),
                at("monitor.status_change", 500),
                at("incident.created", 500),
            ],
            500,
        )
        .unwrap()
        .iter()
        .map(accepted_id)
        .collect();
    let seqs: Vec<i64> = ids
        .iter()
        .map(|id| s.event(id).unwrap().unwrap().seq)
        .collect();
    let seq = |i: usize| seqs[i];
    let queued = s
        .pending_after(EndpointSeq(ep.seq), MessageSeq(0), 10)
        .unwrap();
    assert_eq!(queued.len(), 4);
    s.record(&[RequestOutcome {
        messages: vec![MessageOutcome {
            seq: queued[0].seq,
            attempt: 1,
            verdict: Verdict::Failed,
        }],
        status_code: Some(500),
        ..outcome(ep.seq)
    }])
    .unwrap();
    delivered_in_one_request(&s, ep.seq, &[queued[1].seq, queued[2].seq]);

    let pruned = s.prune_batch(100, 0, 100).unwrap();
    assert_eq!((pruned.messages, pruned.events), (2, 2), "{pruned:?}");
    let left = |s: &Store| -> Vec<i64> {
        let mut seqs: Vec<i64> = s
            .list_events(None, None, 10)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        seqs.sort_unstable();
        seqs
    };
    assert_eq!(
        left(&s),
        vec![seq(0), seq(1), seq(4), seq(5)],
        "the batch deleted the events of its messages only"
    );

    // One event a batch: the failed one's is passed over, the lone one deleted, and the
    // young lone one ends the scan.
    let scan = s.prune_events(100, 0, 1).unwrap();
    assert_eq!((scan.deleted, scan.next, scan.done), (0, seq(0), false));
    let scan = s.prune_events(100, scan.next, 1).unwrap();
    assert_eq!((scan.deleted, scan.next, scan.done), (1, seq(1), false));
    let scan = s.prune_events(100, scan.next, 1).unwrap();
    assert_eq!((scan.deleted, scan.next, scan.done), (0, seq(1), true));
    assert_eq!(left(&s), vec![seq(0), seq(4), seq(5)]);
    // From the start again (the daily rescan), the scan ends at the same young event.
    let scan = s.prune_events(100, 0, 10).unwrap();
    assert_eq!((scan.deleted, scan.next, scan.done), (0, seq(0), true));
}

/// Expired idempotency keys go a batch at a time, like everything retention deletes: a day's
/// keys after a long stop must not be one long hold of the writer.
#[test]
fn retention_deletes_idempotency_keys_a_batch_at_a_time() {
    let (_d, s) = store();
    for i in 0..3 {
        s.publish(
            &mut [event(
                "incident.created",
                Some((&format!("k{i}"), serde_json::json!(i))),
            )],
            10,
        )
        .unwrap();
    }
    assert_eq!(s.prune_batch(5, 100, 2).unwrap().keys, 2);
    assert_eq!(s.prune_batch(5, 100, 2).unwrap().keys, 1);
    assert_eq!(s.prune_batch(5, 100, 2).unwrap().keys, 0);
}

/// Each event retention deletes is one lookup by `seq` and one probe of `messages_by_event`.
#[test]
fn retention_deletes_each_event_through_its_key() {
    let (_d, s) = store();
    let conn = s.writer.lock().unwrap();
    let plan = query_plan(&conn, PRUNE_EVENT);
    assert!(
        plan.contains("USING INTEGER PRIMARY KEY (rowid=?)"),
        "{plan}"
    );
    assert!(plan.contains("messages_by_event (event_seq=?)"), "{plan}");
    let keys = query_plan(&conn, PRUNE_KEYS);
    assert!(
        keys.contains("idempotency_by_time (created_at<?)"),
        "{keys}"
    );
}

/// An outcome of `endpoint_seq` with nothing in it, for tests to fill in.
fn outcome(endpoint_seq: i64) -> RequestOutcome {
    RequestOutcome {
        endpoint_seq: EndpointSeq(endpoint_seq),
        at: 20,
        duration_ms: 1,
        status_code: None,
        error: None,
        response_body: None,
        messages: Vec::new(),
        endpoint_failures: 0,
        endpoint_failing_since: None,
        endpoint_backoff_until: None,
        disable: None,
        recovery: None,
        timings: Default::default(),
    }
}

/// Retention turns the writer's automatic checkpoint off for its pass, and back on after.
#[test]
fn the_log_is_left_to_be_copied_beside_only_while_the_guard_lives() {
    let (_d, s) = store();
    let pages = |s: &Store| -> i64 {
        s.writer
            .lock()
            .unwrap()
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(pages(&s), AUTOCHECKPOINT_PAGES);
    let guard = s.log_copied_beside().unwrap();
    assert_eq!(pages(&s), 0);
    drop(guard);
    assert_eq!(pages(&s), AUTOCHECKPOINT_PAGES);
}
