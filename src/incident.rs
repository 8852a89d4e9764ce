//! Incidents' rules (SPEC 7): the lifecycle investigating → identified → monitoring →
//! resolved, which component status wins when several incidents name one component, and the
//! `data` that `incident.created` and `incident.resolved` carry (SPEC 2.1). Pure: no storage.

use serde_json::{Map, Value};

use crate::event::COMPONENT_STATUSES;
use crate::store::{ComponentRef, IncidentRow};

/// Where an incident is in its lifecycle, in the order it moves (SPEC 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IncidentStatus {
    Investigating,
    Identified,
    Monitoring,
    /// Final: nothing about the incident changes any more.
    Resolved,
}

impl IncidentStatus {
    pub const ALL: [IncidentStatus; 4] = [
        IncidentStatus::Investigating,
        IncidentStatus::Identified,
        IncidentStatus::Monitoring,
        IncidentStatus::Resolved,
    ];

    /// The name stored and shown in the API and in events.
    pub const fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Investigating => "investigating",
            IncidentStatus::Identified => "identified",
            IncidentStatus::Monitoring => "monitoring",
            IncidentStatus::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<IncidentStatus> {
        IncidentStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

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

/// `transition` for statuses as the store keeps them, as text (an unknown one, which the API
/// never stores, counts as the first).
pub fn check_transition(from: &str, to: &str) -> Result<(), TransitionError> {
    let read = |s: &str| IncidentStatus::parse(s).unwrap_or(IncidentStatus::Investigating);
    transition(read(from), read(to))
}

/// How bad a component status is, for choosing the worst of several.
fn severity(status: &str) -> usize {
    match status {
        "major_outage" => 4,
        "partial_outage" => 3,
        "degraded_performance" => 2,
        "under_maintenance" => 1,
        _ => 0,
    }
}

/// The worst of `statuses`, `operational` when there are none.
pub fn worst<'a>(statuses: impl IntoIterator<Item = &'a str>) -> &'static str {
    let worst = statuses
        .into_iter()
        .max_by_key(|s| severity(s))
        .unwrap_or("operational");
    COMPONENT_STATUSES
        .iter()
        .find(|s| **s == worst)
        .copied()
        .unwrap_or("operational")
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
            .map(|c| serde_json::json!({"id": c.id, "name": c.name, "status": c.status}))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventType, validate};

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
        for (from, to, want) in rows {
            assert_eq!(check_transition(from, to), want, "{from} → {to}");
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
        assert_eq!(worst([]), "operational");
        assert_eq!(
            worst(["degraded_performance", "major_outage", "operational"]),
            "major_outage"
        );
        assert_eq!(
            worst(["under_maintenance", "operational"]),
            "under_maintenance"
        );
    }

    #[test]
    fn data_has_the_spec_shape() {
        let mut inc = IncidentRow {
            seq: 1,
            id: "inc_0123456789abcdef".into(),
            title: "API is down".into(),
            status: "investigating".into(),
            severity: "major".into(),
            components: vec![ComponentRef {
                id: "comp_api".into(),
                name: "API".into(),
                status: "major_outage".into(),
            }],
            source: "monitor".into(),
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
        inc.status = "resolved".into();
        inc.resolved_at = Some(1_698_417_060_000);
        inc.monitor_id = None;
        inc.source = "manual".into();
        let resolved = event_data(&inc);
        assert_eq!(resolved["resolved_at"], "2023-10-27T14:31:00Z");
        assert!(resolved.get("monitor_id").is_none());
        validate(EventType::IncidentResolved, &resolved).unwrap();
    }
}
