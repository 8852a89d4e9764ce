//! Push monitors (SPEC 7) through the real binary: a monitor told its state by pings to
//! `/ping/{token}` goes DOWN when they stop (`no_ping`, region `push`) with the event at a
//! loopback receiver, comes UP with the next ping, takes `/fail` as a failed check, and the
//! ping routes refuse unknown tokens, limit each monitor and follow rotation. Real timers:
//! the deadlines are seconds long and every wait is a poll with a deadline.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

/// Deliveries go out at once and retry fast.
const FAST: &str =
    "[delivery]\nbatch_window = \"0ms\"\ninitial_backoff = \"50ms\"\nmax_backoff = \"200ms\"\n";

/// How long anything that takes a few seconds of deadlines may take to show up.
const WAIT: Duration = Duration::from_secs(30);

/// The pings one monitor takes per minute (`src/api/ping.rs`).
const PING_LIMIT: usize = 30;

/// Creates an endpoint for `receiver` that gets every event at once; returns its secret.
fn subscribe(server: &Server, receiver: &Receiver) -> String {
    let created = create_endpoint(
        server,
        json!({"url": receiver.url("/hooks"), "batch_window_ms": 0}),
    );
    s(&created, "secret").to_string()
}

/// The distinct envelopes of `kind` received so far, signatures checked, batches opened.
fn received(receiver: &Receiver, secret: &str, kind: &str) -> Vec<Value> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for hit in receiver.hits() {
        assert_signed(&hit, &[secret]);
        let body = hit.json();
        let inner = if body["type"] == "batch" {
            body["data"]["events"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        } else {
            vec![body]
        };
        out.extend(
            inner
                .into_iter()
                .filter(|e| e["type"] == kind && seen.insert(s(e, "id").to_string())),
        );
    }
    out
}

/// Waits for the `n`th envelope of `kind` (counting from 1) received; returns it.
fn wait_nth(receiver: &Receiver, secret: &str, kind: &str, n: usize) -> Value {
    wait_for(WAIT, &format!("{kind} #{n} at the receiver"), || {
        let all = received(receiver, secret, kind);
        all.get(n - 1)
            .cloned()
            .ok_or_else(|| format!("{} so far: {all:?}", all.len()))
    })
}

/// A request to a ping route exactly as a cron job sends it: no admin token, no body.
fn ping(server: &Server, method: &str, path: &str) -> HttpReply {
    server.client().raw(method, path, &[], None)
}

/// The path part of a `ping_url`.
fn path_of(ping_url: &str, server: &Server) -> String {
    let prefix = format!("http://{}", server.addr());
    ping_url
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{ping_url} is not on {prefix}"))
        .to_string()
}

fn checks(server: &Server, monitor: &str) -> Vec<Value> {
    list_all(server, &format!("/api/v1/monitors/{monitor}/checks"), 500)
}

fn create_push(server: &Server, name: &str, interval: u64, grace: u64) -> (String, String) {
    let m = server.expect(
        "POST",
        "/api/v1/monitors",
        Some(json!({
            "name": name, "kind": "push", "interval_secs": interval, "grace_secs": grace,
            "failures_before_down": 1,
        })),
        201,
    );
    (s(&m, "id").to_string(), path_of(s(&m, "ping_url"), server))
}

#[test]
fn a_push_monitor_goes_down_without_pings_up_with_one_and_down_on_fail() {
    let server = Server::start(FAST);
    let receiver = Receiver::start();
    let secret = subscribe(&server, &receiver);
    let created = server.expect(
        "POST",
        "/api/v1/monitors",
        Some(json!({
            "name": "Nightly backup", "kind": "push", "interval_secs": 1, "grace_secs": 1,
            "failures_before_down": 1,
        })),
        201,
    );
    let monitor = s(&created, "id").to_string();
    assert_eq!(created["kind"], "push");
    assert_eq!(created["url"], Value::Null);
    assert_eq!(created["timeout_ms"], Value::Null);
    assert_eq!(created["grace_secs"], 1);
    assert_eq!(created["status"], "UP");
    let path = path_of(s(&created, "ping_url"), &server);
    let token = path
        .strip_prefix("/ping/")
        .expect("a /ping/ path")
        .to_string();
    assert_eq!(token.len(), 32, "{token}");
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{token}"
    );
    // The token is a secret: a plain read of the monitor does not show it.
    let shown = server.expect("GET", &format!("/api/v1/monitors/{monitor}"), None, 200);
    assert!(shown.get("ping_url").is_none(), "{shown}");
    assert!(!shown.to_string().contains(&token));
    let revealed = server.expect(
        "GET",
        &format!("/api/v1/monitors/{monitor}/ping-url"),
        None,
        200,
    );
    assert_eq!(revealed["ping_url"], created["ping_url"]);

    // A ping is a successful check.
    assert_eq!(ping(&server, "GET", &path).status, 200);
    let first = wait_for(WAIT, "the ping's check", || {
        let all = checks(&server, &monitor);
        all.last().cloned().ok_or_else(|| "none yet".to_string())
    });
    assert_eq!(first["ok"], true, "{first}");
    assert_eq!(first["error"], Value::Null);

    // No ping within interval + grace: a failed check, DOWN, the event and the incident.
    let down = wait_nth(&receiver, &secret, "monitor.status_change", 1);
    let d = &down["data"];
    assert_eq!(d["monitor_id"], monitor.as_str());
    assert_eq!(d["status"], "DOWN");
    assert_eq!(d["previous_status"], "UP");
    assert_eq!(d["region"], "push");
    assert_eq!(d["metrics"]["error"], "no_ping");
    assert_eq!(d["metrics"]["status_code"], Value::Null);
    assert_eq!(d["metrics"]["consecutive_failures"], 1);
    assert!(
        !down.to_string().contains(&token),
        "the token leaked: {down}"
    );
    let all = checks(&server, &monitor);
    let missed = all
        .iter()
        .rev()
        .find(|c| c["error"] == "no_ping")
        .unwrap_or_else(|| panic!("no no_ping check in {all:?}"));
    assert_eq!(missed["ok"], false);
    // Not before the deadline: interval + grace after the ping (the clock is in ms).
    let gap = parse_time(s(missed, "at"))
        .duration_since(parse_time(s(&first, "at")))
        .unwrap_or_default();
    assert!(gap >= Duration::from_millis(1900), "missed after {gap:?}");
    let incident = wait_nth(&receiver, &secret, "incident.created", 1);
    assert_eq!(incident["data"]["monitor_id"], monitor.as_str());
    assert_eq!(incident["data"]["source"], "monitor");

    // The next ping (POST, as some jobs send it) brings it UP and resolves the incident.
    assert_eq!(ping(&server, "POST", &path).status, 200);
    let up = wait_nth(&receiver, &secret, "monitor.status_change", 2);
    assert_eq!(up["data"]["status"], "UP");
    assert_eq!(up["data"]["region"], "push");
    assert_eq!(up["data"]["metrics"]["error"], Value::Null);
    let resolved = wait_nth(&receiver, &secret, "incident.resolved", 1);
    assert_eq!(
        resolved["data"]["incident_id"],
        incident["data"]["incident_id"]
    );

    // `/fail` is a failed check: with failures_before_down 1 it goes DOWN at once.
    assert_eq!(ping(&server, "GET", &format!("{path}/fail")).status, 200);
    let failed = wait_nth(&receiver, &secret, "monitor.status_change", 3);
    assert_eq!(failed["data"]["status"], "DOWN");
    assert_eq!(failed["data"]["metrics"]["error"], "reported_failure");
    assert_eq!(failed["data"]["region"], "push");
    let reported = checks(&server, &monitor);
    assert!(
        reported
            .iter()
            .any(|c| c["error"] == "reported_failure" && c["ok"] == false),
        "{reported:?}"
    );
    // The checks feed the SLA figures like an HTTP monitor's.
    let sla = server.expect("GET", &format!("/api/v1/monitors/{monitor}/sla"), None, 200);
    assert!(sla["failed_checks"].as_u64().unwrap_or(0) >= 2, "{sla}");
}

#[test]
fn ping_routes_refuse_unknown_tokens_limit_each_monitor_and_follow_rotation() {
    let server = Server::start(FAST);
    let (a, path_a) = create_push(&server, "job a", 3600, 60);
    let (_b, path_b) = create_push(&server, "job b", 3600, 60);

    // An unknown token, well formed or not, is the same bare 404.
    let unknown = ping(&server, "GET", "/ping/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(unknown.status, 404);
    let (code, field) = error_parts(&unknown.json());
    assert_eq!((code.as_str(), field), ("not_found", None));
    for path in [
        "/ping/short",
        "/ping/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/fail",
        "/ping/",
    ] {
        let reply = ping(&server, "GET", path);
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.body, unknown.body, "{path}");
    }
    // Another method on a real ping URL is 405 naming the two it takes.
    let put = ping(&server, "PUT", &path_a);
    assert_eq!(put.status, 405);
    assert_eq!(put.header("Allow"), Some("GET, POST"));

    // Past the limit a monitor's pings are 429 with Retry-After; another monitor's still
    // pass, and the refused pings are not recorded.
    for i in 0..PING_LIMIT {
        assert_eq!(ping(&server, "GET", &path_a).status, 200, "ping {i}");
    }
    let limited = ping(&server, "GET", &path_a);
    assert_eq!(limited.status, 429);
    assert_eq!(error_parts(&limited.json()).0, "rate_limited");
    let wait: u64 = limited
        .header("Retry-After")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(ping(&server, "GET", &format!("{path_a}/fail")).status, 429);
    assert_eq!(ping(&server, "GET", &path_b).status, 200);
    assert_eq!(checks(&server, &a).len(), PING_LIMIT);

    // Rotation: the old URL is 404 at once, the new one is revealed and works.
    let rotated = server.expect(
        "POST",
        &format!("/api/v1/monitors/{a}/rotate-ping-url"),
        Some(json!({})),
        200,
    );
    let new_path = path_of(s(&rotated, "ping_url"), &server);
    assert_ne!(new_path, path_a);
    assert_eq!(ping(&server, "GET", &path_a).status, 404);
    let revealed = server.expect("GET", &format!("/api/v1/monitors/{a}/ping-url"), None, 200);
    assert_eq!(revealed["ping_url"], rotated["ping_url"]);
    // The new token is the same monitor, so the same count: still limited in this window.
    assert_eq!(ping(&server, "GET", &new_path).status, 429);

    // An HTTP monitor has no ping URL; a deleted push monitor's URL is gone.
    let target = Receiver::start();
    let http = server.expect(
        "POST",
        "/api/v1/monitors",
        Some(json!({"name": "web", "url": target.url("/"), "interval_secs": 3600, "timeout_ms": 1000})),
        201,
    );
    assert!(http.get("ping_url").is_none(), "{http}");
    assert_eq!(http["kind"], "http");
    assert_eq!(http["grace_secs"], Value::Null);
    let id = s(&http, "id");
    // The monitor exists, so not 404: it is the wrong kind.
    for (method, path) in [("GET", "ping-url"), ("POST", "rotate-ping-url")] {
        let body = (method == "POST").then(|| json!({}));
        let (status, reply) = server.api(method, &format!("/api/v1/monitors/{id}/{path}"), body);
        assert_eq!(status, 409, "{method} {path}: {reply}");
    }
    server.expect("DELETE", &format!("/api/v1/monitors/{a}"), None, 204);
    assert_eq!(ping(&server, "GET", &new_path).status, 404);
}

#[test]
fn push_monitor_validation_names_the_field() {
    let server = Server::start("");
    let push = |extra: Value| {
        let mut body = json!({"name": "job", "kind": "push", "interval_secs": 60});
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            body[k] = v;
        }
        body
    };
    let rows: Vec<(Value, &str)> = vec![
        (push(json!({"kind": "pull"})), "kind"),
        (push(json!({"kind": 1})), "kind"),
        (push(json!({"url": "http://127.0.0.1:9/"})), "url"),
        (push(json!({"timeout_ms": 1000})), "timeout_ms"),
        (push(json!({"method": "GET"})), "method"),
        (push(json!({"expected_status": "200"})), "expected_status"),
        (push(json!({"grace_secs": -1})), "grace_secs"),
        (push(json!({"grace_secs": 86_401})), "grace_secs"),
        (push(json!({"grace_secs": "60"})), "grace_secs"),
        (push(json!({"interval_secs": 0})), "interval_secs"),
        (json!({"name": "job", "kind": "push"}), "interval_secs"),
        (json!({"kind": "push", "interval_secs": 60}), "name"),
        (
            json!({"name": "web", "url": "http://127.0.0.1:9/", "interval_secs": 60,
                   "timeout_ms": 1000, "grace_secs": 10}),
            "grace_secs",
        ),
    ];
    for (body, want) in rows {
        let (status, answer) = server.api("POST", "/api/v1/monitors", Some(body.clone()));
        assert_eq!(status, 400, "{body} answered {answer}");
        let (code, field) = error_parts(&answer);
        assert_eq!(
            (code.as_str(), field.as_deref()),
            ("invalid_field", Some(want)),
            "{body}"
        );
    }
    assert_eq!(list_all(&server, "/api/v1/monitors", 500).len(), 0);

    // A monitor's kind cannot change, and a push monitor takes no HTTP fields on PATCH.
    let (id, _) = create_push(&server, "job", 60, 10);
    let path = format!("/api/v1/monitors/{id}");
    for (body, want) in [
        (json!({"kind": "http"}), "kind"),
        (json!({"url": "http://127.0.0.1:9/"}), "url"),
        (json!({"grace_secs": -5}), "grace_secs"),
    ] {
        let (status, answer) = server.api("PATCH", &path, Some(body.clone()));
        assert_eq!(status, 400, "{body} answered {answer}");
        assert_eq!(error_parts(&answer).1.as_deref(), Some(want), "{body}");
    }
    let patched = server.expect(
        "PATCH",
        &path,
        Some(json!({"grace_secs": 30, "kind": "push"})),
        200,
    );
    assert_eq!(patched["grace_secs"], 30);
    assert!(patched.get("ping_url").is_none(), "{patched}");
}

#[test]
fn a_deadline_survives_a_restart_and_a_paused_monitor_records_no_ping() {
    let mut server = Server::start(FAST);
    let (monitor, path) = create_push(&server, "cron", 2, 1);
    assert_eq!(ping(&server, "GET", &path).status, 200);
    let pinged = wait_for(WAIT, "the ping's check", || {
        checks(&server, &monitor)
            .last()
            .cloned()
            .ok_or_else(|| "none yet".to_string())
    });
    // The scheduler that heard the ping is gone; the new one reckons the deadline from the
    // stored check, and the same token still pings.
    server.restart();
    let missed = wait_for(WAIT, "a no_ping check after the restart", || {
        let all = checks(&server, &monitor);
        all.iter()
            .find(|c| c["error"] == "no_ping")
            .cloned()
            .ok_or_else(|| format!("{all:?}"))
    });
    let gap = parse_time(s(&missed, "at"))
        .duration_since(parse_time(s(&pinged, "at")))
        .unwrap_or_default();
    assert!(gap >= Duration::from_millis(2900), "missed after {gap:?}");
    let m = server.expect("GET", &format!("/api/v1/monitors/{monitor}"), None, 200);
    assert_eq!(m["status"], "DOWN", "{m}");

    // Paused: pings are taken and not recorded, and no deadline runs.
    server.expect(
        "PATCH",
        &format!("/api/v1/monitors/{monitor}"),
        Some(json!({"enabled": false})),
        200,
    );
    let before = checks(&server, &monitor).len();
    let reply = ping(&server, "POST", &path);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["recorded"], false);
    // Resuming gives the job a whole window: a ping then brings it UP.
    server.expect(
        "PATCH",
        &format!("/api/v1/monitors/{monitor}"),
        Some(json!({"enabled": true})),
        200,
    );
    assert_eq!(checks(&server, &monitor).len(), before);
    assert_eq!(ping(&server, "GET", &path).status, 200);
    let up = server.expect("GET", &format!("/api/v1/monitors/{monitor}"), None, 200);
    assert_eq!(up["status"], "UP", "{up}");
}
