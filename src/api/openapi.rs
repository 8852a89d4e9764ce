//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of the admin API and of the webhook
//! requests (SPEC 5), written by hand in `assets/openapi.json` and compiled in. It is public:
//! it holds no secret and reads no store. The tests below hold the document to the code: its
//! paths and methods are the router's `ROUTES`, and each request body's `properties` are the
//! fields its handler accepts, closed with `additionalProperties: false` as the handler
//! refuses every other field.

use super::{Reply, method_not_allowed};

/// Where the document is served.
pub const PATH: &str = "/api/v1/openapi.json";

/// The document, as checked by `openapi-spec-validator` and Schemathesis in `.ci/run`.
const DOCUMENT: &str = include_str!("../../assets/openapi.json");

pub fn serve(method: &str) -> super::Result<Reply> {
    if method != "GET" && method != "HEAD" {
        return Err(method_not_allowed("GET, HEAD"));
    }
    Ok(Reply {
        status: 200,
        body: DOCUMENT.as_bytes().to_vec(),
        content_type: "application/json",
        headers: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::BTreeSet;

    fn document() -> Value {
        serde_json::from_str(DOCUMENT).expect("assets/openapi.json is JSON")
    }

    /// Follows a local `$ref` such as `#/components/schemas/Endpoint`.
    fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let pointer = r.strip_prefix('#').expect("a local $ref");
                resolve(
                    doc,
                    doc.pointer(pointer)
                        .unwrap_or_else(|| panic!("{r} resolves")),
                )
            }
            None => v,
        }
    }

    const HTTP_METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    /// The document's operations as (path, METHOD) pairs.
    fn operations(doc: &Value) -> BTreeSet<(String, String)> {
        let paths = doc["paths"].as_object().expect("paths");
        let mut out = BTreeSet::new();
        for (path, item) in paths {
            for key in item.as_object().expect("path item").keys() {
                if HTTP_METHODS.contains(&key.as_str()) {
                    out.insert((path.clone(), key.to_ascii_uppercase()));
                }
            }
        }
        out
    }

    #[test]
    fn it_is_openapi_3_1_with_webhooks_and_a_bearer_scheme() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let scheme = &doc["components"]["securitySchemes"]["adminToken"];
        assert_eq!(
            (&scheme["type"], &scheme["scheme"]),
            (&"http".into(), &"bearer".into())
        );
        let webhooks: BTreeSet<&str> = doc["webhooks"]
            .as_object()
            .expect("webhooks")
            .keys()
            .map(String::as_str)
            .collect();
        let mut want: BTreeSet<&str> = crate::event::EventType::ALL
            .iter()
            .map(|t| t.as_str())
            .collect();
        want.insert("batch");
        want.insert(crate::delivery::heartbeat::TYPE);
        assert_eq!(webhooks, want);
    }

    /// The heartbeat's schema describes the body `delivery::heartbeat` builds: its keys in
    /// the envelope and in `data`, all required, and its id's form.
    #[test]
    fn its_heartbeat_is_the_one_sent() {
        use crate::delivery::heartbeat::{self, Backlog};
        let doc = document();
        let schema = &doc["components"]["schemas"]["HeartbeatEnvelope"];
        let body = heartbeat::envelope(
            &crate::id::new(heartbeat::ID_PREFIX),
            1_698_417_000_000,
            &crate::id::new("ep"),
            Backlog {
                pending: 2,
                oldest_accepted: Some(1_698_416_000_000),
            },
        );
        let sent: Value = serde_json::from_str(&body).expect("a heartbeat is JSON");
        let keys = |v: &Value| -> BTreeSet<String> {
            v.as_object().expect("object").keys().cloned().collect()
        };
        let required = |v: &Value| -> BTreeSet<String> {
            v.as_array()
                .expect("required")
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        };
        assert_eq!(keys(&sent), keys(&schema["properties"]));
        assert_eq!(keys(&sent), required(&schema["required"]));
        let data = &schema["properties"]["data"];
        assert_eq!(keys(&sent["data"]), keys(&data["properties"]));
        assert_eq!(keys(&sent["data"]), required(&data["required"]));
        assert_eq!(schema["properties"]["type"]["const"], heartbeat::TYPE);
        let id = sent["id"].as_str().expect("id");
        assert!(id.starts_with("hb_") && id.len() == 19, "{id}");
    }

    /// An endpoint's `recovery` is the object `endpoints::render_recovery` builds while it is
    /// probed, with every key required, and `null` otherwise.
    #[test]
    fn its_endpoint_recovery_is_the_one_shown() {
        use crate::store::{EndpointRow, Recovery};
        let doc = document();
        let now = 1_698_417_000_000;
        let mut ep = EndpointRow {
            seq: 1,
            id: crate::id::new("ep"),
            url: "http://127.0.0.1:9/".into(),
            description: String::new(),
            event_types: Vec::new(),
            enabled: false,
            disabled_reason: Some("failing".into()),
            batch_max: 100,
            batch_window_ms: 0,
            failures: 9,
            failing_since: Some(now - 1000),
            backoff_until: None,
            created_at: now,
            updated_at: now,
            heartbeat_secs: None,
            recovery: Some(Recovery {
                next_probe_at: now + 60_000,
                probes: 3,
                until: now + 3_600_000,
            }),
        };
        let shown = super::super::endpoints::render_recovery(&ep, now);
        let schema = &doc["components"]["schemas"]["Recovery"];
        let keys: BTreeSet<&str> = shown
            .as_object()
            .expect("an object while probed")
            .keys()
            .map(String::as_str)
            .collect();
        let props: BTreeSet<&str> = schema["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .map(String::as_str)
            .collect();
        let required: BTreeSet<&str> = schema["required"]
            .as_array()
            .expect("required")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(keys, props);
        assert_eq!(keys, required);
        assert_eq!(shown["probes"], 3);
        assert_eq!(shown["next_probe_at"], "2023-10-27T14:31:00Z");
        let endpoint = &doc["components"]["schemas"]["Endpoint"];
        assert!(
            endpoint["required"]
                .as_array()
                .expect("required")
                .iter()
                .any(|k| k == "recovery")
        );
        // Past its end, or enabled, it shows null.
        assert_eq!(
            super::super::endpoints::render_recovery(&ep, now + 3_600_001),
            Value::Null
        );
        ep.enabled = true;
        assert_eq!(
            super::super::endpoints::render_recovery(&ep, now),
            Value::Null
        );
    }

    /// Every route the router answers is in the document with the same methods, and nothing
    /// else is, apart from the routes outside `/api/v1/` that `handle` answers itself.
    #[test]
    fn its_paths_and_methods_are_the_routers() {
        let doc = document();
        let mut want: BTreeSet<(String, String)> = super::super::ROUTES
            .iter()
            .flat_map(|(template, methods)| {
                methods
                    .split(", ")
                    .map(move |m| (format!("/api/v1/{template}"), m.to_string()))
            })
            .collect();
        for path in [PATH, "/healthz", "/metrics"] {
            want.insert((path.to_string(), "GET".to_string()));
        }
        // Push monitors' ping routes (`ping.rs`), answered before the admin API's auth.
        for path in ["/ping/{token}", "/ping/{token}/fail"] {
            for method in ["GET", "POST"] {
                want.insert((path.to_string(), method.to_string()));
            }
        }
        assert_eq!(operations(&doc), want);
    }

    /// Each request body's `properties` are exactly the fields its handler reads, and the
    /// document closes it as the handler does.
    #[test]
    fn its_request_bodies_are_the_handlers_fields() {
        use super::super::{components, endpoints, events, incidents, monitors};
        let doc = document();
        let endpoint_create = [endpoints::EDITABLE, &["secret"]].concat();
        let bodies: Vec<(&str, &str, &[&str])> = vec![
            ("/api/v1/endpoints", "post", &endpoint_create),
            ("/api/v1/endpoints/{id}", "patch", endpoints::EDITABLE),
            (
                "/api/v1/endpoints/{id}/rotate-secret",
                "post",
                endpoints::ROTATE_KEYS,
            ),
            ("/api/v1/endpoints/{id}/test", "post", endpoints::TEST_KEYS),
            (
                "/api/v1/endpoints/{id}/replay",
                "post",
                endpoints::REPLAY_KEYS,
            ),
            ("/api/v1/events", "post", events::PUBLISH_KEYS),
            ("/api/v1/components", "post", components::CREATE_KEYS),
            ("/api/v1/components/{id}", "patch", components::PATCH_KEYS),
            ("/api/v1/incidents", "post", incidents::KEYS),
            ("/api/v1/incidents/{id}", "patch", incidents::KEYS),
            ("/api/v1/monitors", "post", &monitors::KEYS),
            ("/api/v1/monitors/{id}", "patch", &monitors::KEYS),
            (
                "/api/v1/monitors/{id}/rotate-ping-url",
                "post",
                monitors::ROTATE_PING_KEYS,
            ),
        ];
        let with_body: BTreeSet<(String, String)> = operations(&doc)
            .into_iter()
            .filter(|(path, m)| {
                doc["paths"][path][m.to_ascii_lowercase()]
                    .get("requestBody")
                    .is_some()
            })
            .map(|(path, m)| (path, m.to_ascii_lowercase()))
            .collect();
        let listed: BTreeSet<(String, String)> = bodies
            .iter()
            .map(|(p, m, _)| (p.to_string(), m.to_string()))
            .collect();
        assert_eq!(with_body, listed, "operations with a request body");
        for (path, method, keys) in bodies {
            let schema = resolve(
                &doc,
                &doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"],
            );
            // A body whose shape depends on a field (`type` of an event) is a `oneOf` of
            // closed objects, each with the same fields.
            let shapes: Vec<&Value> = match schema.get("oneOf").and_then(Value::as_array) {
                Some(alternatives) => alternatives.iter().map(|a| resolve(&doc, a)).collect(),
                None => vec![schema],
            };
            for shape in shapes {
                assert_eq!(
                    shape["additionalProperties"],
                    Value::Bool(false),
                    "{method} {path} is closed"
                );
                let props: BTreeSet<&str> = shape["properties"]
                    .as_object()
                    .unwrap_or_else(|| panic!("{method} {path} has properties"))
                    .keys()
                    .map(String::as_str)
                    .collect();
                let want: BTreeSet<&str> = keys.iter().copied().collect();
                assert_eq!(props, want, "{method} {path}");
            }
        }
        let item = &doc["components"]["schemas"]["IncidentComponentInput"];
        assert_eq!(item["additionalProperties"], Value::Bool(false));
        let props: BTreeSet<&str> = item["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(props, incidents::COMPONENT_KEYS.iter().copied().collect());
    }

    /// The event types, the error codes and the data schemas' required keys match the code.
    #[test]
    fn its_closed_sets_are_the_codes() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        let types: Vec<&str> = crate::event::EventType::ALL
            .iter()
            .map(|t| t.as_str())
            .collect();
        assert_eq!(
            schemas["EventTypes"]["properties"]["data"]["items"]["properties"]["type"]["enum"],
            serde_json::json!(types)
        );
        assert_eq!(
            schemas["ComponentRef"]["properties"]["status"]["enum"],
            serde_json::json!(crate::event::COMPONENT_STATUSES)
        );
        assert_eq!(
            schemas["Incident"]["properties"]["status"]["enum"],
            serde_json::json!(crate::event::INCIDENT_STATUSES)
        );
        assert_eq!(
            schemas["Incident"]["properties"]["severity"]["enum"],
            serde_json::json!(crate::event::SEVERITIES)
        );
        // Each data schema: an example with only its required keys is accepted, and one
        // without any of them is refused, by the same validation the API runs on publish.
        let rows = [
            (
                "IncidentEventData",
                crate::event::EventType::IncidentCreated,
            ),
            (
                "MonitorStatusChangeEventData",
                crate::event::EventType::MonitorStatusChange,
            ),
            (
                "SlaBreachWarningEventData",
                crate::event::EventType::SlaBreachWarning,
            ),
        ];
        for (name, event_type) in rows {
            let schema = &schemas[name];
            let required: Vec<&str> = schema["required"]
                .as_array()
                .expect("required")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let minimal: serde_json::Map<String, Value> = required
                .iter()
                .map(|k| (k.to_string(), example(&schema["properties"][*k])))
                .collect();
            assert_eq!(
                crate::event::validate(event_type, &Value::Object(minimal.clone())),
                Ok(()),
                "{name}: its required keys are enough"
            );
            for k in &required {
                let mut short = minimal.clone();
                short.remove(*k);
                assert!(
                    crate::event::validate(event_type, &Value::Object(short)).is_err(),
                    "{name}: {k} is required by the code too"
                );
            }
        }
    }

    #[test]
    fn its_timings_are_the_ones_rendered_wherever_they_are_shown() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        let rendered = crate::net::Timings::default().as_json();
        let keys = |v: &Value| -> BTreeSet<String> {
            v.as_object().expect("an object").keys().cloned().collect()
        };
        let timings = &schemas["Timings"];
        assert_eq!(keys(&timings["properties"]), keys(&rendered));
        let required: BTreeSet<String> = timings["required"]
            .as_array()
            .expect("required")
            .iter()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect();
        assert_eq!(required, keys(&rendered), "every key is always there");
        // Attempts, checks and monitor.status_change's metrics all carry it, or null. A
        // published status_change keeps whatever its publisher sent there (SPEC 2.1: keys
        // beyond the listed ones are kept as given), so its schema admits anything besides.
        for (pointer, choice) in [
            ("/Attempt/properties/timings", "oneOf"),
            ("/Check/properties/timings", "oneOf"),
            (
                "/MonitorStatusChangeEventData/properties/metrics/properties/timings",
                "anyOf",
            ),
        ] {
            let property = schemas
                .pointer(pointer)
                .unwrap_or_else(|| panic!("{pointer}"));
            let choices = property[choice].as_array().expect(choice);
            assert!(
                choices.iter().any(|c| resolve(&doc, c) == timings),
                "{pointer} is Timings"
            );
            assert!(
                choices.iter().any(|c| c["type"] == "null"),
                "{pointer} may be null"
            );
        }
    }

    /// A value that fits a simple property schema.
    fn example(schema: &Value) -> Value {
        if let Some(first) = schema["enum"].get(0) {
            return first.clone();
        }
        if schema["format"] == "date-time" {
            return "2023-10-27T14:30:00Z".into();
        }
        match schema["type"].as_str() {
            Some("number") => 99.9.into(),
            Some("array") => Value::Array(Vec::new()),
            _ => "x".into(),
        }
    }
}
