//! The four event types, the validation of their `data` (SPEC 2.1), the envelope's exact bytes
//! and the sample events that `POST /endpoints/{id}/test` sends. No storage, no HTTP.

use serde_json::{Map, Value};

/// One of the four event types a subscriber can receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    IncidentCreated,
    IncidentResolved,
    MonitorStatusChange,
    SlaBreachWarning,
}

impl EventType {
    pub const ALL: [EventType; 4] = [
        EventType::IncidentCreated,
        EventType::IncidentResolved,
        EventType::MonitorStatusChange,
        EventType::SlaBreachWarning,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::IncidentCreated => "incident.created",
            EventType::IncidentResolved => "incident.resolved",
            EventType::MonitorStatusChange => "monitor.status_change",
            EventType::SlaBreachWarning => "sla.breach_warning",
        }
    }

    pub fn parse(text: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// The one-line description from the product's documentation.
    pub fn description(self) -> &'static str {
        match self {
            EventType::IncidentCreated => {
                "An incident is manually created or automatically detected by a synthetic monitor"
            }
            EventType::IncidentResolved => "An incident's status transitions to resolved",
            EventType::MonitorStatusChange => "A monitor changes state, e.g. UP to DOWN",
            EventType::SlaBreachWarning => {
                "Current uptime trends indicate a potential SLA breach within the next 24 hours"
            }
        }
    }
}

/// A refusal naming the offending field, e.g. `data.components[0].status`.
#[derive(Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// How bad an incident is (SPEC 2.1 `severity`). Stored as its name by the store, which reads
/// it through `ToSql`/`FromSql` (`store/components_incidents.rs`): this module is a leaf the
/// store may use, and sees no rusqlite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Minor,
    Major,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::Minor, Severity::Major, Severity::Critical];

    /// The name stored and shown in the API and in events.
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Minor => "minor",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(text: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// What a component's users see of it (SPEC 2.1 `components[].status`), in the order the API
/// lists them; stored as its name, like `Severity`. Which is worst is `incident::worst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentStatus {
    Operational,
    DegradedPerformance,
    PartialOutage,
    MajorOutage,
    UnderMaintenance,
}

impl ComponentStatus {
    pub const ALL: [ComponentStatus; 5] = [
        ComponentStatus::Operational,
        ComponentStatus::DegradedPerformance,
        ComponentStatus::PartialOutage,
        ComponentStatus::MajorOutage,
        ComponentStatus::UnderMaintenance,
    ];

    /// The name stored and shown in the API and in events.
    pub const fn as_str(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "operational",
            ComponentStatus::DegradedPerformance => "degraded_performance",
            ComponentStatus::PartialOutage => "partial_outage",
            ComponentStatus::MajorOutage => "major_outage",
            ComponentStatus::UnderMaintenance => "under_maintenance",
        }
    }

    pub fn parse(text: &str) -> Option<ComponentStatus> {
        ComponentStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

pub const INCIDENT_STATUSES: [&str; 4] = ["investigating", "identified", "monitoring", "resolved"];
/// The names of `Severity::ALL`, in its order: what validation accepts and messages list.
pub const SEVERITIES: [&str; 3] = {
    let mut names = [""; 3];
    let mut i = 0;
    while i < names.len() {
        names[i] = Severity::ALL[i].as_str();
        i += 1;
    }
    names
};
/// The names of `ComponentStatus::ALL`, in its order.
pub const COMPONENT_STATUSES: [&str; 5] = {
    let mut names = [""; 5];
    let mut i = 0;
    while i < names.len() {
        names[i] = ComponentStatus::ALL[i].as_str();
        i += 1;
    }
    names
};
const SOURCES: [&str; 2] = ["manual", "monitor"];
const MONITOR_STATUSES: [&str; 2] = ["UP", "DOWN"];

/// Checks `data` against the shape of `event_type` (SPEC 2.1). Unknown extra keys are kept.
pub fn validate(event_type: EventType, data: &Value) -> Result<(), FieldError> {
    let data = data
        .as_object()
        .ok_or_else(|| FieldError::new("data", "data must be a JSON object"))?;
    let f = Fields {
        obj: data,
        path: "data",
    };
    match event_type {
        EventType::IncidentCreated | EventType::IncidentResolved => {
            f.string("incident_id", true)?;
            f.string("title", true)?;
            f.one_of("status", &INCIDENT_STATUSES, true)?;
            f.one_of("severity", &SEVERITIES, true)?;
            let components = data
                .get("components")
                .ok_or_else(|| FieldError::new("data.components", "data.components is required"))?
                .as_array()
                .ok_or_else(|| {
                    FieldError::new("data.components", "data.components must be an array")
                })?;
            for (i, c) in components.iter().enumerate() {
                let path = format!("data.components[{i}]");
                let obj = c
                    .as_object()
                    .ok_or_else(|| FieldError::new(&path, format!("{path} must be an object")))?;
                let cf = Fields { obj, path: &path };
                cf.string("id", true)?;
                cf.string("name", true)?;
                cf.one_of("status", &COMPONENT_STATUSES, true)?;
            }
            f.one_of("source", &SOURCES, false)?;
            f.string("monitor_id", false)?;
            f.timestamp("started_at", false)?;
            f.timestamp("resolved_at", false)?;
        }
        EventType::MonitorStatusChange => {
            f.string("monitor_id", true)?;
            f.one_of("previous_status", &MONITOR_STATUSES, true)?;
            f.one_of("status", &MONITOR_STATUSES, true)?;
            f.string("monitor_name", false)?;
            f.string("url", false)?;
            f.string("region", false)?;
            f.timestamp("checked_at", false)?;
            if let Some(m) = data.get("metrics") {
                let obj = m.as_object().ok_or_else(|| {
                    FieldError::new("data.metrics", "data.metrics must be an object")
                })?;
                let mf = Fields {
                    obj,
                    path: "data.metrics",
                };
                mf.number_or_null("status_code")?;
                mf.number("response_time_ms", false)?;
                mf.string_or_null("error")?;
                mf.number("consecutive_failures", false)?;
            }
        }
        EventType::SlaBreachWarning => {
            f.string("monitor_id", true)?;
            let target = f.number("sla_target", true)?.unwrap_or(0.0);
            if !(target > 0.0 && target < 100.0) {
                return Err(FieldError::new(
                    "data.sla_target",
                    "data.sla_target must be a percentage between 0 and 100, exclusive",
                ));
            }
            f.timestamp("projected_breach_at", true)?;
            f.string("monitor_name", false)?;
            for key in [
                "window_days",
                "current_uptime",
                "error_budget_remaining_pct",
                "burn_rate",
                "horizon_hours",
            ] {
                f.number(key, false)?;
            }
        }
    }
    Ok(())
}

/// Typed access to one JSON object's keys, with errors that name the full path.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    path: &'a str,
}

impl Fields<'_> {
    fn get(&self, key: &str, required: bool) -> Result<Option<&Value>, FieldError> {
        match self.obj.get(key) {
            None if required => Err(FieldError::new(
                format!("{}.{key}", self.path),
                format!("{}.{key} is required", self.path),
            )),
            other => Ok(other),
        }
    }

    fn wrong(&self, key: &str, what: &str) -> FieldError {
        FieldError::new(
            format!("{}.{key}", self.path),
            format!("{}.{key} must be {what}", self.path),
        )
    }

    fn string(&self, key: &str, required: bool) -> Result<Option<&str>, FieldError> {
        match self.get(key, required)? {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.wrong(key, "a string")),
        }
    }

    fn string_or_null(&self, key: &str) -> Result<(), FieldError> {
        match self.get(key, false)? {
            None | Some(Value::Null) | Some(Value::String(_)) => Ok(()),
            Some(_) => Err(self.wrong(key, "a string or null")),
        }
    }

    fn number(&self, key: &str, required: bool) -> Result<Option<f64>, FieldError> {
        match self.get(key, required)? {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(_) => Err(self.wrong(key, "a number")),
        }
    }

    fn number_or_null(&self, key: &str) -> Result<(), FieldError> {
        match self.get(key, false)? {
            None | Some(Value::Null) | Some(Value::Number(_)) => Ok(()),
            Some(_) => Err(self.wrong(key, "a number or null")),
        }
    }

    fn one_of(&self, key: &str, allowed: &[&str], required: bool) -> Result<(), FieldError> {
        match self.string(key, required)? {
            Some(s) if !allowed.contains(&s) => {
                Err(self.wrong(key, &format!("one of {}", allowed.join(", "))))
            }
            _ => Ok(()),
        }
    }

    fn timestamp(&self, key: &str, required: bool) -> Result<(), FieldError> {
        match self.string(key, required)? {
            Some(s) if crate::time::parse_rfc3339(s).is_none() => {
                Err(self.wrong(key, "an RFC 3339 time such as \"2023-10-27T14:30:00Z\""))
            }
            _ => Ok(()),
        }
    }
}

/// The envelope's exact bytes, keys in the order id, type, created_at, data (SPEC 2).
pub fn envelope(id: &str, event_type: &str, created_at_ms: i64, data: &Value) -> String {
    let mut out = String::with_capacity(128);
    out.push_str("{\"id\":");
    out.push_str(&Value::from(id).to_string());
    out.push_str(",\"type\":");
    out.push_str(&Value::from(event_type).to_string());
    out.push_str(",\"created_at\":\"");
    out.push_str(&crate::time::rfc3339(created_at_ms));
    out.push_str("\",\"data\":");
    out.push_str(&data.to_string());
    out.push('}');
    out
}

/// The id an envelope carries until the store assigns the event's own (`id::EventIds`): of
/// the same length, so that the store writes the real one over it in place.
pub const UNASSIGNED_ID: &str = "evt_0000000000000000";

/// Writes `id` over `UNASSIGNED_ID` at the start of `envelope`, as `envelope` built it. Returns
/// false, changing nothing, when the envelope does not start with it or `id` is not as long.
pub fn set_envelope_id(envelope: &mut String, id: &str) -> bool {
    const START: &str = "{\"id\":\"";
    let at = START.len()..START.len() + UNASSIGNED_ID.len();
    let fits = id.len() == UNASSIGNED_ID.len()
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && envelope.starts_with(START)
        && envelope.get(at.clone()) == Some(UNASSIGNED_ID)
        && envelope.as_bytes().get(at.end) == Some(&b'"');
    if fits {
        envelope.replace_range(at, id);
    }
    fits
}

/// A batch envelope around already-serialised event envelopes, byte for byte (SPEC 2, 4.3).
pub fn batch_envelope(id: &str, created_at_ms: i64, events: &[&str]) -> String {
    let inner: usize = events.iter().map(|e| e.len() + 1).sum();
    let mut out = String::with_capacity(96 + inner);
    out.push_str("{\"id\":\"");
    out.push_str(id);
    out.push_str("\",\"type\":\"batch\",\"created_at\":\"");
    out.push_str(&crate::time::rfc3339(created_at_ms));
    out.push_str("\",\"data\":{\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(e);
    }
    out.push_str("]}}");
    out
}

/// The `data` of a sample event, for `POST /api/v1/endpoints/{id}/test`.
pub fn sample_data(event_type: EventType, now_ms: i64) -> Value {
    let now = crate::time::rfc3339(now_ms);
    match event_type {
        EventType::IncidentCreated | EventType::IncidentResolved => {
            let mut v = serde_json::json!({
                "incident_id": "inc_test000000000000",
                "title": "Test incident from StatusSentry",
                "status": if event_type == EventType::IncidentResolved { "resolved" } else { "investigating" },
                "severity": "minor",
                "components": [{"id": "comp_example", "name": "Example component", "status": "degraded_performance"}],
                "source": "manual",
                "started_at": now,
                "test": true
            });
            if event_type == EventType::IncidentResolved {
                v["resolved_at"] = Value::from(now);
            }
            v
        }
        EventType::MonitorStatusChange => serde_json::json!({
            "monitor_id": "mon_test000000000000",
            "monitor_name": "Example monitor",
            "url": "https://example.invalid/health",
            "region": "local",
            "previous_status": "UP",
            "status": "DOWN",
            "checked_at": now,
            "metrics": {"status_code": 503, "response_time_ms": 120, "error": "unexpected_status", "consecutive_failures": 3},
            "test": true
        }),
        EventType::SlaBreachWarning => serde_json::json!({
            "monitor_id": "mon_test000000000000",
            "monitor_name": "Example monitor",
            "sla_target": 99.9,
            "window_days": 30,
            "current_uptime": 99.93,
            "error_budget_remaining_pct": 7.4,
            "burn_rate": 2.8,
            "projected_breach_at": crate::time::rfc3339(now_ms + 6 * 3600 * 1000),
            "horizon_hours": 24,
            "test": true
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The words validation accepts and the API lists are the enums' names, unchanged, and
    /// each reads back as its enum; any other word (a case changed, a blank) is none.
    #[test]
    fn severities_and_component_statuses_are_closed_vocabularies() {
        assert_eq!(SEVERITIES, ["minor", "major", "critical"]);
        assert_eq!(
            COMPONENT_STATUSES,
            [
                "operational",
                "degraded_performance",
                "partial_outage",
                "major_outage",
                "under_maintenance"
            ]
        );
        assert_eq!(Severity::ALL.map(Severity::as_str), SEVERITIES);
        assert_eq!(
            ComponentStatus::ALL.map(ComponentStatus::as_str),
            COMPONENT_STATUSES
        );
        for s in Severity::ALL {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
        }
        for s in ComponentStatus::ALL {
            assert_eq!(ComponentStatus::parse(s.as_str()), Some(s));
        }
        for word in ["Major", "", "outage", "major "] {
            assert_eq!(Severity::parse(word), None, "{word:?}");
            assert_eq!(ComponentStatus::parse(word), None, "{word:?}");
        }
    }

    fn seed() -> Value {
        json!({
            "incident_id": "inc_987654321",
            "title": "High Latency in EU-West",
            "status": "investigating",
            "severity": "major",
            "components": [{"id": "comp_api_gateway", "name": "API Gateway", "status": "degraded_performance"}]
        })
    }

    #[test]
    fn the_seed_example_validates() {
        assert_eq!(validate(EventType::IncidentCreated, &seed()), Ok(()));
    }

    #[test]
    fn refusals_name_the_field() {
        let mut no_title = seed();
        no_title.as_object_mut().unwrap().remove("title");
        let mut bad_component = seed();
        bad_component["components"][0]["status"] = json!("broken");
        let mut bad_started = seed();
        bad_started["started_at"] = json!("last tuesday");
        let rows = [
            (EventType::IncidentCreated, json!([]), "data"),
            (EventType::IncidentCreated, no_title, "data.title"),
            (
                EventType::IncidentCreated,
                bad_component,
                "data.components[0].status",
            ),
            (EventType::IncidentResolved, bad_started, "data.started_at"),
            (
                EventType::MonitorStatusChange,
                json!({"monitor_id": "m", "previous_status": "UP"}),
                "data.status",
            ),
            (
                EventType::MonitorStatusChange,
                json!({"monitor_id": "m", "previous_status": "UP", "status": "DOWN", "metrics": {"status_code": "500"}}),
                "data.metrics.status_code",
            ),
            (
                EventType::SlaBreachWarning,
                json!({"monitor_id": "m", "sla_target": 100, "projected_breach_at": "2023-10-27T14:30:00Z"}),
                "data.sla_target",
            ),
            (
                EventType::SlaBreachWarning,
                json!({"monitor_id": "m", "sla_target": 99.9}),
                "data.projected_breach_at",
            ),
        ];
        for (t, data, field) in rows {
            let err = validate(t, &data).expect_err(field);
            assert_eq!(err.field, field, "{data}");
        }
    }

    #[test]
    fn samples_validate() {
        for t in EventType::ALL {
            assert_eq!(
                validate(t, &sample_data(t, 1_698_417_000_000)),
                Ok(()),
                "{}",
                t.as_str()
            );
        }
    }

    #[test]
    fn the_store_writes_the_event_id_over_the_placeholder_in_place() {
        let data = seed();
        let mut e = envelope(UNASSIGNED_ID, "incident.created", 1_698_417_000_000, &data);
        assert!(set_envelope_id(&mut e, "evt_0123456789abcdef"));
        assert_eq!(
            e,
            envelope(
                "evt_0123456789abcdef",
                "incident.created",
                1_698_417_000_000,
                &data
            )
        );
        // Only over the placeholder, and only with an id of its length.
        let before = e.clone();
        assert!(!set_envelope_id(&mut e, "evt_zzzzzzzzzzzzzzzz"));
        let mut fresh = envelope(UNASSIGNED_ID, "incident.created", 0, &data);
        let unchanged = fresh.clone();
        assert!(!set_envelope_id(&mut fresh, "evt_0123"));
        assert!(!set_envelope_id(&mut fresh, "evt_0123456789abcde\""));
        assert_eq!((e, fresh), (before, unchanged));
    }

    #[test]
    fn envelope_keys_in_order_and_batches_embed_bytes() {
        let e = envelope("evt_1", "incident.created", 1_698_417_000_000, &seed());
        assert!(e.starts_with(r#"{"id":"evt_1","type":"incident.created","created_at":"2023-10-27T14:30:00Z","data":{"incident_id""#), "{e}");
        let b = batch_envelope("bat_1", 1_698_417_000_000, &[&e, &e]);
        let parsed: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(parsed["data"]["events"][1]["data"], seed());
        assert!(b.contains(&format!("[{e},{e}]")));
    }
}
