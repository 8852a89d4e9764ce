//! Incidents' rules (SPEC 7): the lifecycle investigating → identified → monitoring →
//! resolved, which component status wins when several incidents name one component, and the
//! `data` that `incident.created` and `incident.resolved` carry (SPEC 2.1), as pure
//! functions; and the lifecycle applied over a store transaction (`open`, `update`,
//! `resolve`, `open_for_monitor`), which writes each event with the change that causes it.
//! No SQL: the rows are read and written through `store::Tx`.

use serde_json::{Map, Value};

use crate::event::{ComponentStatus, EventType};
use crate::store::{
    ComponentRef, IncidentPatch, IncidentRow, MonitorRow, NewIncident, Refusal, Refused, Tx,
};
pub use crate::store::{IncidentSource, IncidentStatus};

/// Why a status change is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum TransitionError {
    /// The incident is resolved; nothing about it changes any more.
    Final,
    /// The lifecycle only moves forward (steps may be skipped).
    Backward,
}

/// Whether an incident in `from` may move to `to`. Staying put is allowed; a resolved
/// incident is final.
pub fn transition(from: IncidentStatus, to: IncidentStatus) -> Result<(), TransitionError> {
    if from == IncidentStatus::Resolved {
        Err(TransitionError::Final)
    } else if to < from {
        Err(TransitionError::Backward)
    } else {
        Ok(())
    }
}

/// How bad a component status is, for choosing the worst of several.
fn badness(status: ComponentStatus) -> usize {
    match status {
        ComponentStatus::MajorOutage => 4,
        ComponentStatus::PartialOutage => 3,
        ComponentStatus::DegradedPerformance => 2,
        ComponentStatus::UnderMaintenance => 1,
        ComponentStatus::Operational => 0,
    }
}

/// The worst of `statuses`, `operational` when there are none.
pub fn worst(statuses: impl IntoIterator<Item = ComponentStatus>) -> ComponentStatus {
    statuses
        .into_iter()
        .max_by_key(|s| badness(*s))
        .unwrap_or(ComponentStatus::Operational)
}

/// The title of an incident a monitor opens.
pub fn monitor_title(monitor_name: &str) -> String {
    format!("{monitor_name} is down")
}

/// The `data` of `incident.created` or `incident.resolved` for `inc` as it is now, keys in
/// SPEC 2.1's order; `monitor_id` only for monitor incidents, `resolved_at` once resolved.
pub fn event_data(inc: &IncidentRow) -> Value {
    let mut d = Map::new();
    d.insert("incident_id".into(), Value::from(inc.id.as_str()));
    d.insert("title".into(), Value::from(inc.title.as_str()));
    d.insert("status".into(), Value::from(inc.status.as_str()));
    d.insert("severity".into(), Value::from(inc.severity.as_str()));
    d.insert("components".into(), components_json(&inc.components));
    d.insert("source".into(), Value::from(inc.source.as_str()));
    if let Some(m) = &inc.monitor_id {
        d.insert("monitor_id".into(), Value::from(m.as_str()));
    }
    d.insert(
        "started_at".into(),
        Value::from(crate::time::rfc3339(inc.started_at)),
    );
    if let Some(t) = inc.resolved_at {
        d.insert("resolved_at".into(), Value::from(crate::time::rfc3339(t)));
    }
    Value::Object(d)
}

/// The components as `[{id, name, status}]`.
pub fn components_json(components: &[ComponentRef]) -> Value {
    Value::Array(
        components
            .iter()
            .map(|c| serde_json::json!({"id": c.id, "name": c.name, "status": c.status.as_str()}))
            .collect(),
    )
}

// ---- the lifecycle over a store transaction ----

/// Opens a manual incident, sets its components' statuses and emits `incident.created`.
pub fn open(tx: &mut Tx, new: &NewIncident) -> crate::store::Result<Refused<IncidentRow>> {
    let components = match tx.resolve_components(&new.components, "components")? {
        Ok(c) => c,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let mut inc = IncidentRow {
        seq: 0,
        id: new.id.clone(),
        title: new.title.clone(),
        status: new.status,
        severity: new.severity,
        components,
        source: IncidentSource::Manual,
        monitor_id: None,
        started_at: new.now,
        resolved_at: None,
        updated_at: new.now,
    };
    inc.seq = tx.insert_incident(&inc)?;
    for c in &inc.components {
        tx.set_component_status(&c.id, c.status, new.now)?;
    }
    tx.emit(EventType::IncidentCreated, &event_data(&inc), new.now)?;
    Ok(Ok(inc))
}

/// Applies `patch` to incident `id`; the move to resolved emits `incident.resolved`, once: a
/// resolved incident refuses every later change. `None` when there is no such incident.
pub fn update(
    tx: &mut Tx,
    id: &str,
    patch: &IncidentPatch,
    now: i64,
) -> crate::store::Result<Option<Refused<IncidentRow>>> {
    let Some(mut inc) = tx.incident(id)? else {
        return Ok(None);
    };
    let to = patch.status.unwrap_or(inc.status);
    match transition(inc.status, to) {
        Ok(()) => {}
        Err(TransitionError::Final) => return Ok(Some(Err(Refusal::Final))),
        Err(TransitionError::Backward) => {
            return Ok(Some(Err(Refusal::Backward {
                from: inc.status,
                to,
            })));
        }
    }
    let components = match &patch.components {
        None => None,
        Some(inputs) => match tx.resolve_components(inputs, "components")? {
            Ok(c) => Some(c),
            Err(refusal) => return Ok(Some(Err(refusal))),
        },
    };
    if let Some(t) = &patch.title {
        inc.title = t.clone();
    }
    if let Some(s) = patch.severity {
        inc.severity = s;
    }
    if to == IncidentStatus::Resolved {
        resolve(tx, &mut inc, components, now)?;
        // A monitor whose incident a person resolved opens a new one on its next
        // transition to DOWN.
        tx.release_incident(&inc.id)?;
    } else {
        if let Some(components) = components {
            // Components the incident no longer names fall back to what other open
            // incidents say about them.
            for old in &inc.components {
                if !components.iter().any(|c| c.id == old.id) {
                    let status = fallback_status(tx, &old.id, inc.seq)?;
                    tx.set_component_status(&old.id, status, now)?;
                }
            }
            for c in &components {
                tx.set_component_status(&c.id, c.status, now)?;
            }
            inc.components = components;
        }
        inc.status = to;
        inc.updated_at = now;
        tx.update_incident(&inc)?;
    }
    Ok(Some(Ok(inc)))
}

/// Marks `inc` resolved now (with `components` when given, else each of its components at
/// its fallback status), writes it and emits `incident.resolved`.
pub fn resolve(
    tx: &mut Tx,
    inc: &mut IncidentRow,
    components: Option<Vec<ComponentRef>>,
    now: i64,
) -> crate::store::Result<()> {
    let components = match components {
        Some(given) => given,
        None => {
            let mut restored = inc.components.clone();
            for c in &mut restored {
                c.status = fallback_status(tx, &c.id, inc.seq)?;
            }
            restored
        }
    };
    for c in &components {
        tx.set_component_status(&c.id, c.status, now)?;
    }
    inc.components = components;
    inc.status = IncidentStatus::Resolved;
    inc.resolved_at = Some(now);
    inc.updated_at = now;
    tx.update_incident(inc)?;
    tx.emit(EventType::IncidentResolved, &event_data(inc), now)
}

/// Opens the incident for monitor `m`, which went DOWN, its component (if any) at
/// `major_outage`, and emits `incident.created`; returns the incident's id.
pub fn open_for_monitor(tx: &mut Tx, m: &MonitorRow, now: i64) -> crate::store::Result<String> {
    let components = match &m.settings.component_id {
        Some(id) => tx
            .component(id)?
            .map(|c| ComponentRef {
                id: c.id,
                name: c.name,
                status: ComponentStatus::MajorOutage,
            })
            .into_iter()
            .collect(),
        None => Vec::new(),
    };
    let mut inc = IncidentRow {
        seq: 0,
        id: crate::id::new("inc"),
        title: monitor_title(&m.settings.name),
        status: IncidentStatus::Investigating,
        severity: m.settings.severity,
        components,
        source: IncidentSource::Monitor,
        monitor_id: Some(m.id.clone()),
        started_at: now,
        resolved_at: None,
        updated_at: now,
    };
    inc.seq = tx.insert_incident(&inc)?;
    for c in &inc.components {
        tx.set_component_status(&c.id, c.status, now)?;
    }
    tx.emit(EventType::IncidentCreated, &event_data(&inc), now)?;
    Ok(inc.id)
}

/// The status a component falls back to when incident `except` (a `seq`) stops naming it:
/// the worst status any other open incident gives it, else operational.
fn fallback_status(
    tx: &Tx,
    component_id: &str,
    except: i64,
) -> crate::store::Result<ComponentStatus> {
    Ok(worst(
        tx.component_statuses_elsewhere(component_id, except)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::validate;
    use crate::store::{ComponentInput, Durability, Store};

    #[test]
    fn transitions() {
        let rows = [
            ("investigating", "investigating", Ok(())),
            ("investigating", "identified", Ok(())),
            ("investigating", "resolved", Ok(())),
            ("identified", "monitoring", Ok(())),
            ("monitoring", "resolved", Ok(())),
            (
                "monitoring",
                "investigating",
                Err(TransitionError::Backward),
            ),
            (
                "identified",
                "investigating",
                Err(TransitionError::Backward),
            ),
            ("resolved", "resolved", Err(TransitionError::Final)),
            ("resolved", "investigating", Err(TransitionError::Final)),
        ];
        let read = |s: &str| IncidentStatus::parse(s).unwrap();
        for (from, to, want) in rows {
            assert_eq!(transition(read(from), read(to)), want, "{from} → {to}");
        }
    }

    #[test]
    fn statuses_are_the_events_vocabulary_in_lifecycle_order() {
        assert_eq!(
            IncidentStatus::ALL.map(IncidentStatus::as_str),
            crate::event::INCIDENT_STATUSES
        );
        for s in IncidentStatus::ALL {
            assert_eq!(IncidentStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(IncidentStatus::parse("closed"), None);
    }

    #[test]
    fn worst_status_wins() {
        use ComponentStatus::*;
        assert_eq!(worst([]), Operational);
        assert_eq!(
            worst([DegradedPerformance, MajorOutage, Operational]),
            MajorOutage
        );
        assert_eq!(worst([UnderMaintenance, Operational]), UnderMaintenance);
        // From worst to best, each beats every one after it.
        let ranked = [
            MajorOutage,
            PartialOutage,
            DegradedPerformance,
            UnderMaintenance,
            Operational,
        ];
        for (i, a) in ranked.into_iter().enumerate() {
            for b in ranked.into_iter().skip(i) {
                assert_eq!((worst([a, b]), worst([b, a])), (a, a));
            }
        }
    }

    #[test]
    fn data_has_the_spec_shape() {
        let mut inc = IncidentRow {
            seq: 1,
            id: "inc_0123456789abcdef".into(),
            title: "API is down".into(),
            status: IncidentStatus::Investigating,
            severity: crate::event::Severity::Major,
            components: vec![ComponentRef {
                id: "comp_api".into(),
                name: "API".into(),
                status: ComponentStatus::MajorOutage,
            }],
            source: IncidentSource::Monitor,
            monitor_id: Some("mon_0123456789abcdef".into()),
            started_at: 1_698_417_000_000,
            resolved_at: None,
            updated_at: 1_698_417_000_000,
        };
        let created = event_data(&inc);
        let keys: Vec<&str> = created
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "incident_id",
                "title",
                "status",
                "severity",
                "components",
                "source",
                "monitor_id",
                "started_at"
            ]
        );
        validate(EventType::IncidentCreated, &created).unwrap();
        inc.status = IncidentStatus::Resolved;
        inc.resolved_at = Some(1_698_417_060_000);
        inc.monitor_id = None;
        inc.source = IncidentSource::Manual;
        let resolved = event_data(&inc);
        assert_eq!(resolved["resolved_at"], "2023-10-27T14:31:00Z");
        assert!(resolved.get("monitor_id").is_none());
        validate(EventType::IncidentResolved, &resolved).unwrap();
    }

    // ---- the lifecycle over a store transaction ----

    use crate::store::testkit::store;

    type Change = (IncidentRow, Vec<crate::store::Emitted>);

    /// `open` in a transaction of its own, as the API runs it.
    fn create_incident(store: &Store, new: &NewIncident) -> crate::store::Result<Refused<Change>> {
        let (inc, emitted) = store.transact(Durability::Full, |tx| open(tx, new))?;
        Ok(inc.map(|inc| (inc, emitted)))
    }

    /// `update` in a transaction of its own, as the API runs it.
    fn update_incident(
        store: &Store,
        id: &str,
        patch: &IncidentPatch,
        now: i64,
    ) -> crate::store::Result<Option<Refused<Change>>> {
        let (inc, emitted) = store.transact(Durability::Full, |tx| update(tx, id, patch, now))?;
        Ok(inc.map(|r| r.map(|inc| (inc, emitted))))
    }

    fn events(store: &Store, t: EventType) -> Vec<Value> {
        store
            .list_events(None, Some(t.as_str()), 100)
            .unwrap()
            .iter()
            .map(|e| serde_json::from_str(&e.payload).unwrap())
            .collect()
    }

    #[test]
    fn manual_incidents_resolve_once_and_refuse_bad_changes() {
        let (_dir, store) = store();
        store
            .create_component("comp_db", "Database", ComponentStatus::Operational, 1)
            .unwrap()
            .unwrap();
        let input = |id: &str| ComponentInput {
            id: id.into(),
            name: None,
            status: ComponentStatus::DegradedPerformance,
        };
        let new = |components| NewIncident {
            id: crate::id::new("inc"),
            title: "Slow queries".into(),
            severity: crate::event::Severity::Minor,
            status: IncidentStatus::Identified,
            components,
            now: 10,
        };
        assert_eq!(
            create_incident(&store, &new(vec![input("comp_db"), input("comp_nope")]))
                .unwrap()
                .err(),
            Some(Refusal::UnknownComponent {
                field: "components[1].id".into()
            })
        );
        assert!(store.list_incidents(None, None, 10).unwrap().is_empty());
        assert!(events(&store, EventType::IncidentCreated).is_empty());

        let (inc, emitted) = create_incident(&store, &new(vec![input("comp_db")]))
            .unwrap()
            .unwrap();
        assert_eq!(emitted.len(), 1);
        assert_eq!(inc.components[0].name, "Database");
        assert_eq!(
            store.component("comp_db").unwrap().unwrap().status.as_str(),
            "degraded_performance"
        );
        let back = IncidentPatch {
            status: Some(IncidentStatus::Investigating),
            ..IncidentPatch::default()
        };
        assert!(matches!(
            update_incident(&store, &inc.id, &back, 20).unwrap(),
            Some(Err(Refusal::Backward { .. }))
        ));
        let resolve = IncidentPatch {
            status: Some(IncidentStatus::Resolved),
            ..IncidentPatch::default()
        };
        let (done, emitted) = update_incident(&store, &inc.id, &resolve, 30)
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            (done.status.as_str(), done.resolved_at, emitted.len()),
            ("resolved", Some(30), 1)
        );
        assert_eq!(
            update_incident(&store, &inc.id, &resolve, 40).unwrap(),
            Some(Err(Refusal::Final))
        );
        assert_eq!(events(&store, EventType::IncidentResolved).len(), 1);
        assert_eq!(
            store.component("comp_db").unwrap().unwrap().status.as_str(),
            "operational"
        );
    }

    #[test]
    fn a_component_falls_back_to_what_other_open_incidents_say() {
        let (_dir, store) = store();
        store
            .create_component("comp_db", "Database", ComponentStatus::Operational, 1)
            .unwrap()
            .unwrap();
        let open = |status: ComponentStatus| {
            create_incident(
                &store,
                &NewIncident {
                    id: crate::id::new("inc"),
                    title: status.as_str().into(),
                    severity: crate::event::Severity::Minor,
                    status: IncidentStatus::Investigating,
                    components: vec![ComponentInput {
                        id: "comp_db".into(),
                        name: None,
                        status,
                    }],
                    now: 10,
                },
            )
            .unwrap()
            .unwrap()
            .0
        };
        let _partial = open(ComponentStatus::PartialOutage);
        let major = open(ComponentStatus::MajorOutage);
        let resolve = IncidentPatch {
            status: Some(IncidentStatus::Resolved),
            ..IncidentPatch::default()
        };
        let (done, _) = update_incident(&store, &major.id, &resolve, 20)
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(done.components[0].status.as_str(), "partial_outage");
        assert_eq!(
            store.component("comp_db").unwrap().unwrap().status.as_str(),
            "partial_outage"
        );
    }

    /// Retention deletes incidents resolved before its cutoff, with the copies of their
    /// components, in batches; an open incident stays however old, and a young resolved one
    /// stays. Its search reads only what it deletes (the plan is checked beside the
    /// statement, `store::components_incidents::tests::incident_pruning_reads_only_what_it_deletes`).
    #[test]
    fn retention_prunes_incidents_resolved_before_the_cutoff_and_never_open_ones() {
        let (_dir, store) = store();
        store
            .create_component("comp_db", "Database", ComponentStatus::Operational, 1)
            .unwrap()
            .unwrap();
        let open = |now: i64| {
            create_incident(
                &store,
                &NewIncident {
                    id: crate::id::new("inc"),
                    title: "outage".into(),
                    severity: crate::event::Severity::Minor,
                    status: IncidentStatus::Investigating,
                    components: vec![ComponentInput {
                        id: "comp_db".into(),
                        name: None,
                        status: ComponentStatus::MajorOutage,
                    }],
                    now,
                },
            )
            .unwrap()
            .unwrap()
            .0
        };
        let resolve = |id: &str, now: i64| {
            let patch = IncidentPatch {
                status: Some(IncidentStatus::Resolved),
                ..IncidentPatch::default()
            };
            update_incident(&store, id, &patch, now)
                .unwrap()
                .unwrap()
                .unwrap();
        };
        let old_open = open(10);
        let old_resolved: Vec<_> = (0..5).map(|_| open(10)).collect();
        for inc in &old_resolved {
            resolve(&inc.id, 20);
        }
        // Opened long ago, resolved after the cutoff.
        let late = open(10);
        resolve(&late.id, 200);

        assert_eq!(store.prune_incidents(100, 2).unwrap(), 2, "a batch at most");
        assert_eq!(store.prune_incidents(100, 2).unwrap(), 2);
        assert_eq!(store.prune_incidents(100, 2).unwrap(), 1);
        assert_eq!(store.prune_incidents(100, 2).unwrap(), 0);
        let left: Vec<String> = store
            .list_incidents(None, None, 50)
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(left, [late.id.clone(), old_open.id.clone()]);
        assert_eq!(
            store.component("comp_db").unwrap().unwrap().status.as_str(),
            "major_outage",
            "the open incident still says so"
        );
    }
}
