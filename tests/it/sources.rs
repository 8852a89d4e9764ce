//! Event sources (SPEC 7) through the real binary: components, manual incidents, synthetic
//! monitors against loopback targets whose behaviour the test switches, the auto incident,
//! SLA warnings, and the refusals of bad input. Every event is checked where a consumer sees
//! it: at a loopback receiver, signed.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

/// Deliveries go out at once and retry fast.
const FAST: &str =
    "[delivery]\nbatch_window = \"0ms\"\ninitial_backoff = \"50ms\"\nmax_backoff = \"200ms\"\n";

/// How long anything that takes a few 1 s checks may take to show up.
const CHECKS: Duration = Duration::from_secs(30);

/// A loopback monitor target that answers with whatever status the test sets.
struct Target {
    receiver: Receiver,
    status: Arc<AtomicU16>,
}

impl Target {
    fn start(status: u16) -> Target {
        let receiver = Receiver::start();
        let code = Arc::new(AtomicU16::new(status));
        let shared = code.clone();
        receiver.respond_with(move |_| Reply::status(shared.load(Ordering::SeqCst)));
        Target {
            receiver,
            status: code,
        }
    }

    fn set(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn url(&self) -> String {
        self.receiver.url("/health")
    }
}

/// Creates an endpoint for `receiver` that gets every event at once; returns its secret.
fn subscribe(server: &Server, receiver: &Receiver) -> String {
    let created = create_endpoint(
        server,
        json!({"url": receiver.url("/hooks"), "batch_window_ms": 0}),
    );
    s(&created, "secret").to_string()
}

/// Every envelope the receiver got, batches opened, each request's signatures checked.
fn envelopes(receiver: &Receiver, secret: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for hit in receiver.hits() {
        assert_signed(&hit, &[secret]);
        let body = hit.json();
        if body["type"] == "batch" {
            out.extend(
                body["data"]["events"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
        } else {
            out.push(body);
        }
    }
    out
}

/// The distinct envelopes of `kind` received so far (a redelivery counts once).
fn received(receiver: &Receiver, secret: &str, kind: &str) -> Vec<Value> {
    let mut seen = HashSet::new();
    envelopes(receiver, secret)
        .into_iter()
        .filter(|e| e["type"] == kind && seen.insert(s(e, "id").to_string()))
        .collect()
}

/// Waits for an envelope of `kind` that `matches`; returns it.
fn wait_event(
    receiver: &Receiver,
    secret: &str,
    kind: &str,
    matches: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(CHECKS, &format!("a {kind} event at the receiver"), || {
        let all = received(receiver, secret, kind);
        all.iter()
            .find(|e| matches(&e["data"]))
            .cloned()
            .ok_or_else(|| format!("{kind} received so far: {all:?}"))
    })
}

/// The events of `kind` the server has stored (whatever their delivery).
fn stored(server: &Server, kind: &str) -> Vec<Value> {
    list_all(server, &format!("/api/v1/events?type={kind}"), 500)
}

fn checks(server: &Server, monitor: &str) -> Vec<Value> {
    list_all(server, &format!("/api/v1/monitors/{monitor}/checks"), 500)
}

/// Waits until `monitor` has at least `n` recorded checks; returns them, newest first.
fn wait_checks(server: &Server, monitor: &str, n: usize) -> Vec<Value> {
    wait_for(CHECKS, &format!("{n} checks of {monitor}"), || {
        let all = checks(server, monitor);
        if all.len() >= n {
            Ok(all)
        } else {
            Err(format!("{} so far", all.len()))
        }
    })
}

fn metrics_text(server: &Server) -> String {
    let reply = server.client().raw("GET", "/metrics", &[], None);
    assert_eq!(reply.status, 200);
    reply.text()
}

fn create_monitor(server: &Server, body: Value) -> String {
    let m = server.expect("POST", "/api/v1/monitors", Some(body), 201);
    s(&m, "id").to_string()
}

#[test]
fn a_monitor_goes_down_opens_one_incident_survives_a_restart_and_recovers() {
    let mut server = Server::start(&format!("{FAST}[monitors]\nregion = \"eu-test\"\n"));
    let receiver = Receiver::start();
    let secret = subscribe(&server, &receiver);
    let target = Target::start(200);
    server.expect(
        "POST",
        "/api/v1/components",
        Some(json!({"id": "comp_checkout", "name": "Checkout"})),
        201,
    );
    let monitor = create_monitor(
        &server,
        json!({
            "name": "Checkout API", "url": target.url(), "interval_secs": 1, "timeout_ms": 800,
            "failures_before_down": 2, "successes_before_up": 1, "component_id": "comp_checkout",
        }),
    );
    assert!(is_id(&monitor, "mon_"), "{monitor}");
    let ok = wait_checks(&server, &monitor, 1);
    assert_eq!(ok[0]["ok"], true, "{ok:?}");
    assert_eq!(ok[0]["status_code"], 200);
    assert!(metrics_text(&server).contains("statussentry_monitors{status=\"up\"} 1"));

    // DOWN after two failed checks in a row, with the failing check's metrics.
    target.set(503);
    let down = wait_event(&receiver, &secret, "monitor.status_change", |d| {
        d["status"] == "DOWN"
    });
    let d = &down["data"];
    assert_eq!(d["monitor_id"], monitor.as_str());
    assert_eq!(d["monitor_name"], "Checkout API");
    assert_eq!(d["url"], target.url().as_str());
    assert_eq!(d["region"], "eu-test");
    assert_eq!(d["previous_status"], "UP");
    assert!(is_rfc3339_seconds_z(s(d, "checked_at")), "{d}");
    assert_eq!(d["metrics"]["status_code"], 503);
    assert_eq!(d["metrics"]["error"], "unexpected_status");
    assert_eq!(d["metrics"]["consecutive_failures"], 2);
    assert!(d["metrics"]["response_time_ms"].is_u64(), "{d}");

    let created = wait_event(&receiver, &secret, "incident.created", |d| {
        d["monitor_id"] == monitor.as_str()
    });
    let c = &created["data"];
    let incident = s(c, "incident_id").to_string();
    assert!(is_id(&incident, "inc_"), "{c}");
    assert_eq!(
        keys(c),
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
    assert_eq!(c["title"], "Checkout API is down");
    assert_eq!(c["status"], "investigating");
    assert_eq!(c["severity"], "major");
    assert_eq!(c["source"], "monitor");
    assert_eq!(
        c["components"],
        json!([{"id": "comp_checkout", "name": "Checkout", "status": "major_outage"}])
    );
    let component = server.expect("GET", "/api/v1/components/comp_checkout", None, 200);
    assert_eq!(component["status"], "major_outage");
    let m = server.expect("GET", &format!("/api/v1/monitors/{monitor}"), None, 200);
    assert_eq!(m["status"], "DOWN");
    assert_eq!(m["incident_id"], incident.as_str());
    assert!(metrics_text(&server).contains("statussentry_monitors{status=\"down\"} 1"));

    // A restart neither forgets the state nor announces it again.
    server.restart();
    let before = checks(&server, &monitor).len();
    wait_checks(&server, &monitor, before + 2);
    assert_eq!(stored(&server, "monitor.status_change").len(), 1);
    assert_eq!(stored(&server, "incident.created").len(), 1);
    let m = server.expect("GET", &format!("/api/v1/monitors/{monitor}"), None, 200);
    assert_eq!(m["status"], "DOWN");

    // One good check brings it back UP and resolves the incident it opened.
    target.set(200);
    let up = wait_event(&receiver, &secret, "monitor.status_change", |d| {
        d["status"] == "UP"
    });
    assert_eq!(up["data"]["previous_status"], "DOWN");
    assert_eq!(up["data"]["metrics"]["status_code"], 200);
    assert_eq!(up["data"]["metrics"]["error"], Value::Null);
    let resolved = wait_event(&receiver, &secret, "incident.resolved", |d| {
        d["incident_id"] == incident.as_str()
    });
    let r = &resolved["data"];
    assert_eq!(r["status"], "resolved");
    assert_eq!(r["source"], "monitor");
    assert!(is_rfc3339_seconds_z(s(r, "resolved_at")), "{r}");
    assert_eq!(r["started_at"], c["started_at"]);
    assert_eq!(r["components"][0]["status"], "operational");
    let component = server.expect("GET", "/api/v1/components/comp_checkout", None, 200);
    assert_eq!(component["status"], "operational");
    let m = server.expect("GET", &format!("/api/v1/monitors/{monitor}"), None, 200);
    assert_eq!(
        (&m["status"], &m["incident_id"]),
        (&json!("UP"), &Value::Null)
    );

    // Later good checks change nothing: each event exists once.
    let seen = checks(&server, &monitor).len();
    wait_checks(&server, &monitor, seen + 2);
    assert_eq!(stored(&server, "monitor.status_change").len(), 2);
    assert_eq!(stored(&server, "incident.created").len(), 1);
    assert_eq!(stored(&server, "incident.resolved").len(), 1);
    let incidents = server.expect("GET", "/api/v1/incidents?status=resolved", None, 200);
    assert_eq!(incidents["data"][0]["id"], incident.as_str());
    assert_eq!(incidents["data"][0]["monitor_id"], monitor.as_str());

    // Checks page like every list.
    let page = server.expect(
        "GET",
        &format!("/api/v1/monitors/{monitor}/checks?limit=2"),
        None,
        200,
    );
    assert_eq!(page["data"].as_array().map(Vec::len), Some(2));
    assert!(page["next_cursor"].is_string(), "{page}");
    let all = checks(&server, &monitor);
    let failed = all.iter().filter(|c| c["ok"] == false).count();
    assert!(failed >= 2, "{all:?}");
    for c in &all {
        assert!(c["response_time_ms"].is_u64() && c["at"].is_string(), "{c}");
    }
    // Every event reached the receiver (all signed, checked in `envelopes`).
    wait_until(CHECKS, "four events at the receiver", || {
        envelopes(&receiver, &secret).len() >= 4
    });
}

#[test]
fn checks_name_timeouts_refusals_and_follow_method_and_expected_status() {
    let server = Server::start(FAST);
    let slow = Receiver::start();
    slow.reply_with(Reply::status(200).delay(Duration::from_millis(1500)));
    let moved = Receiver::start();
    moved.reply_with(Reply::status(301).header("Location", "http://127.0.0.1:9/"));
    // A port nobody listens on, held so that no other test's receiver gets it.
    let closed = ClosedPort::new();
    let closed_url = format!("http://127.0.0.1:{}/", closed.port());

    let quiet = json!({"interval_secs": 1, "failures_before_down": 100, "auto_incident": false});
    let with = |extra: Value| {
        let mut body = quiet.clone();
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let timeout = create_monitor(
        &server,
        with(json!({"name": "slow", "url": slow.url("/"), "timeout_ms": 300})),
    );
    let refused = create_monitor(
        &server,
        with(json!({"name": "closed", "url": closed_url, "timeout_ms": 500})),
    );
    let head = create_monitor(
        &server,
        with(json!({
            "name": "moved", "url": moved.url("/"), "timeout_ms": 500, "method": "HEAD",
            "expected_status": "200-299,301",
        })),
    );

    let c = &wait_checks(&server, &timeout, 1)[0];
    assert_eq!((&c["ok"], &c["error"]), (&json!(false), &json!("timeout")));
    assert_eq!(c["status_code"], Value::Null);
    let ms = c["response_time_ms"].as_u64().unwrap();
    assert!((250..1400).contains(&ms), "a 300 ms timeout took {ms} ms");
    let c = &wait_checks(&server, &refused, 1)[0];
    assert_eq!(c["error"], "connection_refused", "{c}");
    let c = &wait_checks(&server, &head, 1)[0];
    assert_eq!((&c["ok"], &c["status_code"]), (&json!(true), &json!(301)));
    assert_eq!(moved.hits()[0].method, "HEAD");

    // Without an SLA target the SLA view still shows uptime.
    let sla = server.expect("GET", &format!("/api/v1/monitors/{head}/sla"), None, 200);
    assert_eq!(sla["sla_target"], Value::Null);
    assert_eq!(sla["current_uptime"], 100);
    assert_eq!(sla["window_days"], 30);

    // A disabled monitor stops being checked; a deleted one is gone with its checks.
    server.expect(
        "PATCH",
        &format!("/api/v1/monitors/{head}"),
        Some(json!({"enabled": false})),
        200,
    );
    server.expect("DELETE", &format!("/api/v1/monitors/{refused}"), None, 204);
    server.expect("GET", &format!("/api/v1/monitors/{refused}"), None, 404);
    server.expect(
        "GET",
        &format!("/api/v1/monitors/{refused}/checks"),
        None,
        404,
    );
    let at_disable = checks(&server, &head).len();
    let slow_now = checks(&server, &timeout).len();
    wait_checks(&server, &timeout, slow_now + 2);
    // At most the check in flight when it was disabled is added.
    assert!(checks(&server, &head).len() <= at_disable + 1);
    assert!(stored(&server, "monitor.status_change").is_empty());
}

#[test]
fn the_sla_warning_fires_once_for_a_flaky_target_and_never_for_a_healthy_one() {
    let server = Server::start(FAST);
    let receiver = Receiver::start();
    let secret = subscribe(&server, &receiver);
    // Every fifth request fails. At 1 s checks the tenth check is the first with enough
    // checks (10) for a recent ratio: r = 2/10 = 0.2. The 1-day budget at 99.9 % is 86.4 s,
    // of which 2 s are spent; r × 24 h = 17 280 s ≥ 84.4 s, so the warning fires then, and
    // the condition stays true, so no second warning follows.
    let flaky = Receiver::start();
    let count = Arc::new(AtomicUsize::new(0));
    let n = count.clone();
    flaky.respond_with(move |_| {
        if (n.fetch_add(1, Ordering::SeqCst) + 1).is_multiple_of(5) {
            Reply::status(500)
        } else {
            Reply::status(200)
        }
    });
    let healthy = Target::start(200);
    let sla =
        json!({"interval_secs": 1, "timeout_ms": 800, "sla_target": 99.9, "sla_window_days": 1});
    let with = |name: &str, url: String| {
        let mut body = sla.clone();
        body["name"] = json!(name);
        body["url"] = json!(url);
        body
    };
    let flaky_id = create_monitor(&server, with("flaky", flaky.url("/")));
    let healthy_id = create_monitor(&server, with("healthy", healthy.url()));

    let warning = wait_event(&receiver, &secret, "sla.breach_warning", |_| true);
    let w = &warning["data"];
    assert_eq!(w["monitor_id"], flaky_id.as_str());
    assert_eq!(w["monitor_name"], "flaky");
    assert_eq!(w["sla_target"], 99.9);
    assert_eq!(w["window_days"], 1);
    assert_eq!(w["horizon_hours"], 24);
    let uptime = w["current_uptime"].as_f64().unwrap();
    assert!((70.0..100.0).contains(&uptime), "{w}");
    let remaining = w["error_budget_remaining_pct"].as_f64().unwrap();
    assert!(remaining > 0.0 && remaining < 100.0, "{w}");
    assert!(w["burn_rate"].as_f64().unwrap() > 100.0, "{w}");
    let breach = parse_time(s(w, "projected_breach_at"));
    let sent = parse_time(s(&warning, "created_at"));
    let ahead = breach
        .duration_since(sent)
        .expect("breach after the warning");
    assert!(ahead < Duration::from_secs(24 * 3600), "{w}");

    // Six more checks each: the condition holds, nothing more is sent; the healthy monitor
    // never warns.
    let flaky_seen = checks(&server, &flaky_id).len();
    wait_checks(&server, &flaky_id, flaky_seen + 6);
    wait_checks(&server, &healthy_id, 16);
    let warnings = stored(&server, "sla.breach_warning");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(received(&receiver, &secret, "sla.breach_warning").len(), 1);
    assert!(stored(&server, "monitor.status_change").is_empty());

    let view = server.expect(
        "GET",
        &format!("/api/v1/monitors/{flaky_id}/sla"),
        None,
        200,
    );
    assert_eq!(view["at_risk"], true, "{view}");
    assert_eq!(view["warning_armed"], false, "{view}");
    assert!(view["projected_breach_at"].is_string(), "{view}");
    assert!(view["burn_rate"].as_f64().unwrap() > 100.0, "{view}");
    let view = server.expect(
        "GET",
        &format!("/api/v1/monitors/{healthy_id}/sla"),
        None,
        200,
    );
    assert_eq!(view["at_risk"], false, "{view}");
    assert_eq!(view["warning_armed"], true, "{view}");
    assert_eq!(view["current_uptime"], 100, "{view}");
    assert_eq!(view["error_budget_remaining_pct"], 100, "{view}");
    assert_eq!(view["projected_breach_at"], Value::Null, "{view}");
}

#[test]
fn manual_incidents_are_created_and_resolved_exactly_once() {
    let server = Server::start(FAST);
    let receiver = Receiver::start();
    let secret = subscribe(&server, &receiver);
    let db = server.expect(
        "POST",
        "/api/v1/components",
        Some(json!({"name": "Database"})),
        201,
    );
    let db_id = s(&db, "id").to_string();
    assert!(is_id(&db_id, "comp_"), "{db}");
    assert_eq!(db["status"], "operational");

    let inc = server.expect(
        "POST",
        "/api/v1/incidents",
        Some(json!({
            "title": "Slow queries", "severity": "critical",
            "components": [{"id": db_id, "status": "partial_outage"}],
        })),
        201,
    );
    let id = s(&inc, "id").to_string();
    assert!(is_id(&id, "inc_"), "{inc}");
    assert_eq!(inc["status"], "investigating");
    assert_eq!(inc["source"], "manual");
    let created = wait_event(&receiver, &secret, "incident.created", |d| {
        d["incident_id"] == id.as_str()
    });
    assert_eq!(
        created["data"],
        json!({
            "incident_id": id, "title": "Slow queries", "status": "investigating",
            "severity": "critical",
            "components": [{"id": db_id, "name": "Database", "status": "partial_outage"}],
            "source": "manual", "started_at": inc["started_at"],
        })
    );
    let component = server.expect("GET", &format!("/api/v1/components/{db_id}"), None, 200);
    assert_eq!(component["status"], "partial_outage");

    // Forward moves send nothing; backward moves are refused.
    let path = format!("/api/v1/incidents/{id}");
    let patched = server.expect(
        "PATCH",
        &path,
        Some(json!({"status": "identified", "title": "Slow queries on the primary"})),
        200,
    );
    assert_eq!(patched["status"], "identified");
    let (status, body) = server.api("PATCH", &path, Some(json!({"status": "investigating"})));
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_parts(&body).1.as_deref(), Some("status"));

    // Two people resolve at once: one wins, the other is told it is final.
    let client = server.client();
    let racers: Vec<_> = (0..2)
        .map(|_| {
            let (client, path) = (client.clone(), path.clone());
            thread::spawn(move || client.call("PATCH", &path, Some(json!({"status": "resolved"}))))
        })
        .collect();
    let mut statuses: Vec<u16> = racers.into_iter().map(|t| t.join().unwrap().0).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409]);
    let (status, body) = server.api("PATCH", &path, Some(json!({"title": "again"})));
    assert_eq!((status, error_parts(&body).0.as_str()), (409, "conflict"));

    let resolved = wait_event(&receiver, &secret, "incident.resolved", |d| {
        d["incident_id"] == id.as_str()
    });
    let r = &resolved["data"];
    assert_eq!(r["title"], "Slow queries on the primary");
    assert_eq!(r["status"], "resolved");
    assert!(is_rfc3339_seconds_z(s(r, "resolved_at")), "{r}");
    assert_eq!(r["components"][0]["status"], "operational");
    assert_eq!(stored(&server, "incident.resolved").len(), 1);
    assert_eq!(stored(&server, "incident.created").len(), 1);
    let shown = server.expect("GET", &path, None, 200);
    assert_eq!(shown["status"], "resolved");
    assert_eq!(shown["resolved_at"], r["resolved_at"]);
    let component = server.expect("GET", &format!("/api/v1/components/{db_id}"), None, 200);
    assert_eq!(component["status"], "operational");
    let open = server.expect("GET", "/api/v1/incidents?status=investigating", None, 200);
    assert_eq!(open["data"], json!([]));
    let resolved_list = server.expect("GET", "/api/v1/incidents?status=resolved", None, 200);
    assert_eq!(resolved_list["data"][0]["id"], id.as_str());
    wait_until(CHECKS, "both events delivered", || {
        envelopes(&receiver, &secret).len() >= 2
    });
    assert_eq!(received(&receiver, &secret, "incident.resolved").len(), 1);
}

#[test]
fn components_are_managed_and_guarded() {
    let server = Server::start("");
    let made = server.expect(
        "POST",
        "/api/v1/components",
        Some(json!({"id": "comp_api_gateway", "name": "API Gateway", "status": "degraded_performance"})),
        201,
    );
    assert_eq!(made["id"], "comp_api_gateway");
    let (status, body) = server.api(
        "POST",
        "/api/v1/components",
        Some(json!({"id": "comp_api_gateway", "name": "Again"})),
    );
    assert_eq!((status, error_parts(&body).0.as_str()), (409, "conflict"));
    let patched = server.expect(
        "PATCH",
        "/api/v1/components/comp_api_gateway",
        Some(json!({"status": "operational", "name": "Gateway"})),
        200,
    );
    assert_eq!(
        (&patched["status"], &patched["name"]),
        (&json!("operational"), &json!("Gateway"))
    );
    for i in 0..3 {
        server.expect(
            "POST",
            "/api/v1/components",
            Some(json!({"name": format!("c{i}")})),
            201,
        );
    }
    assert_eq!(list_all(&server, "/api/v1/components", 2).len(), 4);
    // A component a monitor names cannot go until the monitor lets go of it.
    let monitor = create_monitor(
        &server,
        json!({"name": "m", "url": "http://127.0.0.1:9/", "interval_secs": 60, "timeout_ms": 1000,
               "component_id": "comp_api_gateway", "enabled": false}),
    );
    let (status, body) = server.api("DELETE", "/api/v1/components/comp_api_gateway", None);
    assert_eq!(status, 409, "{body}");
    server.expect(
        "PATCH",
        &format!("/api/v1/monitors/{monitor}"),
        Some(json!({"component_id": null})),
        200,
    );
    server.expect("DELETE", "/api/v1/components/comp_api_gateway", None, 204);
    server.expect("GET", "/api/v1/components/comp_api_gateway", None, 404);
}

#[test]
fn bad_input_is_refused_with_the_field_and_nothing_is_written() {
    let server = Server::start("");
    server.expect(
        "POST",
        "/api/v1/components",
        Some(json!({"id": "comp_ok", "name": "OK"})),
        201,
    );
    let monitor = create_monitor(
        &server,
        json!({"name": "m", "url": "http://127.0.0.1:9/", "interval_secs": 2, "timeout_ms": 1000,
               "enabled": false}),
    );
    let m_path = format!("/api/v1/monitors/{monitor}");
    let before = server.expect("GET", &m_path, None, 200);
    let good =
        json!({"name": "n", "url": "http://127.0.0.1:9/", "interval_secs": 1, "timeout_ms": 500});
    let monitor_with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    let incident = |extra: Value| {
        let mut body = json!({"title": "t", "severity": "major"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    // (method, path, body, status, field)
    let rows: Vec<(&str, String, Value, u16, &str)> = vec![
        ("POST", "/api/v1/components".into(), json!({}), 400, "name"),
        (
            "POST",
            "/api/v1/components".into(),
            json!({"name": "x", "status": "broken"}),
            400,
            "status",
        ),
        (
            "POST",
            "/api/v1/components".into(),
            json!({"name": "x", "id": "no spaces"}),
            400,
            "id",
        ),
        (
            "POST",
            "/api/v1/components".into(),
            json!({"name": "x", "colour": "red"}),
            400,
            "colour",
        ),
        (
            "PATCH",
            "/api/v1/components/comp_ok".into(),
            json!({"status": "fine"}),
            400,
            "status",
        ),
        (
            "PATCH",
            "/api/v1/components/comp_ok".into(),
            json!({"id": "comp_new"}),
            400,
            "id",
        ),
        (
            "POST",
            "/api/v1/incidents".into(),
            json!({"severity": "major"}),
            400,
            "title",
        ),
        (
            "POST",
            "/api/v1/incidents".into(),
            json!({"title": "t"}),
            400,
            "severity",
        ),
        (
            "POST",
            "/api/v1/incidents".into(),
            incident(json!({"severity": "huge"})),
            400,
            "severity",
        ),
        (
            "POST",
            "/api/v1/incidents".into(),
            incident(json!({"status": "resolved"})),
            400,
            "status",
        ),
        (
            "POST",
            "/api/v1/incidents".into(),
            incident(json!({"status": "fixed"})),
            400,
            "status",
        ),
        (
            "POST",
            "/api/v1/incidents".into(),
            incident(json!({"components": "comp_ok"})),
            400,
            "components",
        ),
        (
            "POST",
            "/api/v1/incidents".into(),
            incident(
                json!({"components": [{"id": "comp_ok", "status": "major_outage"}, {"id": "comp_missing", "status": "major_outage"}]}),
            ),
            400,
            "components[1].id",
        ),
        (
            "POST",
            "/api/v1/incidents".into(),
            incident(json!({"components": [{"id": "comp_ok"}]})),
            400,
            "components[0].status",
        ),
        (
            "POST",
            "/api/v1/incidents".into(),
            incident(json!({"components": [{"id": "comp_ok", "status": "fine"}]})),
            400,
            "components[0].status",
        ),
        ("POST", "/api/v1/monitors".into(), json!({}), 400, "name"),
        (
            "POST",
            "/api/v1/monitors".into(),
            monitor_with("url", json!("ftp://example.com/")),
            400,
            "url",
        ),
        (
            "POST",
            "/api/v1/monitors".into(),
            monitor_with("url", json!("http://169.254.169.254/")),
            400,
            "url",
        ),
        (
            "POST",
            "/api/v1/monitors".into(),
            monitor_with("interval_secs", json!(0)),
            400,
            "interval_secs",
        ),
        (
            "POST",
            "/api/v1/monitors".into(),
            monitor_with("interval_secs", json!(0.5)),
            400,
            "interval_secs",
        ),
        (
            "POST",
            "/api/v1/monitors".into(),
            monitor_with("timeout_ms", json!(1000)),
            400,
            "timeout_ms",
        ),
        (
            "POST",
            "/api/v1/monitors".into(),
            monitor_with("timeout_ms", json!(0)),
            400,
            "timeout_ms",
        ),
        (
            "POST",
            "/api/v1/monitors".into(),
            monitor_with("sla_target", json!(100)),
            400,
            "sla_target",
        ),
        (
            "POST",
            "/api/v1/monitors".into(),
            monitor_with("sla_target", json!(0)),
            400,
            "sla_target",
        ),
        (
            "POST",
            "/api/v1/monitors".into(),
            monitor_with("sla_target", json!("99.9")),
            400,
            "sla_target",
        ),
        (
            "POST",
            "/api/v1/monitors".into(),
            monitor_with("sla_window_days", json!(0)),
            400,
            "sla_window_days",
        ),
        (
            "POST",
            "/api/v1/monitors".into(),
            monitor_with("method", json!("POST")),
            400,
            "method",
        ),
        (
            "POST",
            "/api/v1/monitors".into(),
            monitor_with("expected_status", json!("2xx")),
            400,
            "expected_status",
        ),
        (
            "POST",
            "/api/v1/monitors".into(),
            monitor_with("failures_before_down", json!(0)),
            400,
            "failures_before_down",
        ),
        (
            "POST",
            "/api/v1/monitors".into(),
            monitor_with("component_id", json!("comp_missing")),
            400,
            "component_id",
        ),
        (
            "POST",
            "/api/v1/monitors".into(),
            monitor_with("severity", json!("meh")),
            400,
            "severity",
        ),
        (
            "POST",
            "/api/v1/monitors".into(),
            monitor_with("interval", json!(5)),
            400,
            "interval",
        ),
        (
            "PATCH",
            m_path.clone(),
            json!({"timeout_ms": 2000}),
            400,
            "timeout_ms",
        ),
        (
            "PATCH",
            m_path.clone(),
            json!({"interval_secs": 1}),
            400,
            "timeout_ms",
        ),
        (
            "PATCH",
            m_path.clone(),
            json!({"component_id": "comp_missing"}),
            400,
            "component_id",
        ),
        (
            "PATCH",
            m_path.clone(),
            json!({"sla_target": 100.5}),
            400,
            "sla_target",
        ),
        (
            "GET",
            format!("{m_path}/checks?limit=0"),
            Value::Null,
            400,
            "limit",
        ),
        (
            "GET",
            "/api/v1/incidents?status=bogus".into(),
            Value::Null,
            400,
            "status",
        ),
    ];
    for (method, path, body, want_status, want_field) in rows {
        let body = (!body.is_null()).then_some(body);
        let (status, answer) = server.api(method, &path, body.clone());
        assert_eq!(status, want_status, "{method} {path} {body:?}: {answer}");
        let (code, field) = error_parts(&answer);
        assert_eq!(code, "invalid_field", "{method} {path} {body:?}: {answer}");
        assert_eq!(
            field.as_deref(),
            Some(want_field),
            "{method} {path} {body:?}: {answer}"
        );
    }
    // Unknown things are 404, wrong methods 405.
    for path in [
        "/api/v1/monitors/mon_nope",
        "/api/v1/monitors/mon_nope/sla",
        "/api/v1/incidents/inc_nope",
        "/api/v1/components/comp_nope",
    ] {
        let (status, body) = server.api("GET", path, None);
        assert_eq!(
            (status, error_parts(&body).0.as_str()),
            (404, "not_found"),
            "{path}"
        );
    }
    let (status, _) = server.api("PUT", "/api/v1/monitors", Some(json!({})));
    assert_eq!(status, 405);
    let (status, _) = server.api("DELETE", "/api/v1/incidents/inc_nope", None);
    assert_eq!(status, 405);

    // Nothing was written.
    assert_eq!(list_all(&server, "/api/v1/components", 50).len(), 1);
    assert_eq!(
        server.expect("GET", "/api/v1/components/comp_ok", None, 200)["status"],
        "operational"
    );
    assert!(list_all(&server, "/api/v1/incidents", 50).is_empty());
    assert_eq!(list_all(&server, "/api/v1/monitors", 50).len(), 1);
    assert_eq!(server.expect("GET", &m_path, None, 200), before);
    assert!(list_all(&server, "/api/v1/events", 50).is_empty());
}
