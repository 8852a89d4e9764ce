//! The store's unit tests of components and incidents: their vocabularies as stored.

use super::*;
use crate::event::{ComponentStatus, Severity};
use crate::store::components_incidents::*;

use crate::store::testkit::store;

/// Retention's search for incidents to delete reads only what it deletes: resolved ones
/// before the cutoff, through `incidents_by_resolution` (what it deletes is tested in
/// `incident::tests::retention_prunes_incidents_…`).
#[test]
fn incident_pruning_reads_only_what_it_deletes() {
    let (_dir, store) = store();
    let conn = store.writer.lock().unwrap();
    let plan: String = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {PRUNE_INCIDENTS}"))
        .unwrap()
        .query_map(params![100, 500], |r| r.get::<_, String>(3))
        .unwrap()
        .map(|r| r.unwrap())
        .collect::<Vec<_>>()
        .join("; ");
    assert!(
        plan.contains(
            "incidents USING COVERING INDEX incidents_by_resolution (status=? AND resolved_at<?)"
        ),
        "{plan}"
    );
}

/// An incident's status and source are stored as their names and read back as the
/// enums; a word this binary does not know is an error naming it, not a default.
#[test]
fn incident_vocabularies_are_stored_as_their_names() {
    let (_dir, store) = store();
    for (i, (status, source)) in IncidentStatus::ALL
        .into_iter()
        .zip(IncidentSource::ALL.into_iter().cycle())
        .enumerate()
    {
        let id = format!("inc_{i}");
        store
            .transact(Durability::Full, |tx| {
                tx.insert_incident(&IncidentRow {
                    seq: 0,
                    id: id.clone(),
                    title: "t".into(),
                    status,
                    severity: Severity::Minor,
                    components: Vec::new(),
                    source,
                    monitor_id: None,
                    started_at: 1,
                    resolved_at: None,
                    updated_at: 1,
                })
            })
            .unwrap();
        let stored: (String, String) = store
            .read(|c| {
                Ok(c.query_row(
                    "SELECT status, source FROM incidents WHERE id = ?1",
                    [&id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?)
            })
            .unwrap();
        assert_eq!(stored, (status.as_str().into(), source.as_str().into()));
        let read = store.incident(&id).unwrap().unwrap();
        assert_eq!((read.status, read.source), (status, source));
    }
    store
        .write(Durability::Full, |tx| {
            tx.execute(
                "UPDATE incidents SET status = 'closed' WHERE id = 'inc_0'",
                [],
            )?;
            Ok(())
        })
        .unwrap();
    let err = store.incident("inc_0").unwrap_err().to_string();
    assert!(err.contains("unknown incident status \"closed\""), "{err}");
}

/// A component's status, in its column and in an incident's copy, and an incident's
/// severity are stored as their names and read back as the enums; a word this binary does
/// not know is an error naming it.
#[test]
fn component_statuses_and_severities_are_stored_as_their_names() {
    let (_dir, store) = store();
    for (i, (status, severity)) in ComponentStatus::ALL
        .into_iter()
        .zip(Severity::ALL.into_iter().cycle())
        .enumerate()
    {
        let (comp, inc) = (format!("comp_{i}"), format!("inc_{i}"));
        store
            .create_component(&comp, "c", status, 1)
            .unwrap()
            .unwrap();
        store
            .transact(Durability::Full, |tx| {
                tx.insert_incident(&IncidentRow {
                    seq: 0,
                    id: inc.clone(),
                    title: "t".into(),
                    status: IncidentStatus::Investigating,
                    severity,
                    components: vec![ComponentRef {
                        id: comp.clone(),
                        name: "c".into(),
                        status,
                    }],
                    source: IncidentSource::Manual,
                    monitor_id: None,
                    started_at: 1,
                    resolved_at: None,
                    updated_at: 1,
                })
            })
            .unwrap();
        let stored: (String, String, String) = store
            .read(|c| {
                Ok(c.query_row(
                    "SELECT c.status, i.severity, i.components
                       FROM components c, incidents i WHERE c.id = ?1 AND i.id = ?2",
                    [&comp, &inc],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?)
            })
            .unwrap();
        assert_eq!(
            stored,
            (
                status.as_str().into(),
                severity.as_str().into(),
                format!(
                    r#"[{{"id":"{comp}","name":"c","status":"{}"}}]"#,
                    status.as_str()
                )
            )
        );
        assert_eq!(store.component(&comp).unwrap().unwrap().status, status);
        let read = store.incident(&inc).unwrap().unwrap();
        assert_eq!(
            (read.severity, read.components[0].status),
            (severity, status)
        );
    }
    store
        .write(Durability::Full, |tx| {
            tx.execute(
                "UPDATE components SET status = 'down' WHERE id = 'comp_0'",
                [],
            )?;
            tx.execute(
                "UPDATE incidents SET severity = 'huge' WHERE id = 'inc_0'",
                [],
            )?;
            tx.execute(
                r#"UPDATE incidents SET components = '[{"id":"comp_1","name":"c","status":"gone"}]'
                    WHERE id = 'inc_1'"#,
                [],
            )?;
            Ok(())
        })
        .unwrap();
    let err = store.component("comp_0").unwrap_err().to_string();
    assert!(err.contains("unknown component status \"down\""), "{err}");
    let err = store.incident("inc_0").unwrap_err().to_string();
    assert!(err.contains("unknown severity \"huge\""), "{err}");
    let err = store.incident("inc_1").unwrap_err().to_string();
    assert!(err.contains("unknown component status \"gone\""), "{err}");
}
