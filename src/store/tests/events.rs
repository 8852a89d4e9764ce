//! The store's unit tests of events and messages: the fan-out, idempotency, the size limit,
//! event ids, and the plans of the list routes' statements.

use super::*;

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
    let queued = s.pending_after(EndpointSeq(1), MessageSeq(0), 10).unwrap();
    let seqs: Vec<MessageSeq> = queued.iter().map(|m| m.seq).collect();
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
    let incidents_of_status = components_incidents::incidents_page(true);
    let incidents = components_incidents::incidents_page(false);
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
