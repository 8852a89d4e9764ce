//! Attempts and checks timed phase by phase (SPEC 4.5) against the real binary: the phases
//! add up to no more than the total, a receiver that is slow to answer shows in `ttfb_ms`, a
//! kept-alive connection shows `reused` and no connection phase, TLS shows `tls_ms`, a name
//! shows `dns_ms`, `/metrics` counts each phase, and a monitor check carries the same phases,
//! also into `monitor.status_change`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::hardening::{fixture, tls_receiver};
use crate::harness::*;

/// Deliveries go out at once.
const AT_ONCE: &str = "[delivery]\nbatch_window = \"0ms\"\n";

const DEADLINE: Duration = Duration::from_secs(20);

/// A phase's milliseconds, `None` when it is null; panics on anything else.
fn phase(timings: &Value, name: &str) -> Option<f64> {
    let v = &timings[format!("{name}_ms")];
    if v.is_null() {
        return None;
    }
    Some(
        v.as_f64()
            .unwrap_or_else(|| panic!("{name}_ms is a number or null: {timings}")),
    )
}

/// The timings of an attempt, checked for the shape every one has: the six keys, a total, and
/// phases that are not negative and add up to no more than the total.
fn timings_of(attempt: &Value) -> Value {
    let t = attempt["timings"].clone();
    assert_eq!(
        keys(&t),
        [
            "dns_ms",
            "connect_ms",
            "tls_ms",
            "ttfb_ms",
            "total_ms",
            "reused"
        ],
        "{attempt}"
    );
    let total = phase(&t, "total").unwrap_or_else(|| panic!("a total: {attempt}"));
    let mut sum = 0.0;
    for name in ["dns", "connect", "tls", "ttfb"] {
        if let Some(ms) = phase(&t, name) {
            assert!(ms >= 0.0, "{name}: {t}");
            sum += ms;
        }
    }
    // Microsecond precision on both sides: the sum of phases may not pass the total.
    assert!(
        sum <= total + 1e-9,
        "phases add up to {sum} > total {total}: {t}"
    );
    let duration = attempt["duration_ms"].as_f64().unwrap_or(f64::NAN);
    assert!(
        total >= duration && total < duration + 1.0,
        "duration_ms is the total in whole milliseconds: {attempt}"
    );
    t
}

/// Publishes one event and waits until the endpoint's message for it is delivered; returns
/// its (only) attempt.
fn deliver_one(server: &Server, endpoint: &str, title: &str) -> Value {
    let event = s(&publish(server, "incident.created", incident(title)), "id").to_string();
    wait_message_status(server, &event, endpoint, "delivered", DEADLINE);
    let message = message_for(server, &event, endpoint).expect("the message");
    let attempts = message["attempts"].as_array().cloned().unwrap_or_default();
    assert_eq!(attempts.len(), 1, "{message}");
    attempts[0].clone()
}

/// The value of one series in the Prometheus text, or 0 when it is not there.
fn series(metrics: &str, line_start: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_slow_answer_shows_in_ttfb_and_the_next_request_reuses_the_connection() {
    let _timing = timing_lock();
    let server = Server::start(AT_ONCE);
    let receiver = Receiver::start();
    receiver.reply_with(Reply::status(200).delay(Duration::from_millis(300)));
    let endpoint = s(
        &create_endpoint(&server, json!({"url": receiver.url("/hook")})),
        "id",
    )
    .to_string();

    // The first request opens a connection to an IP address over plain HTTP.
    let first = deliver_one(&server, &endpoint, "first");
    let t = timings_of(&first);
    assert_eq!(t["reused"], false, "{t}");
    assert_eq!(phase(&t, "dns"), None, "no name to look up: {t}");
    assert!(phase(&t, "connect").is_some(), "{t}");
    assert_eq!(phase(&t, "tls"), None, "plain HTTP: {t}");
    let ttfb = phase(&t, "ttfb").expect("a head came");
    assert!(ttfb >= 300.0, "the receiver held its head 300 ms: {t}");

    // The second goes out on the connection the first left in the pool.
    let second = deliver_one(&server, &endpoint, "second");
    let t = timings_of(&second);
    assert_eq!(t["reused"], true, "{t}");
    for name in ["dns", "connect", "tls"] {
        assert_eq!(phase(&t, name), None, "{name} on a reused connection: {t}");
    }
    assert!(phase(&t, "ttfb").expect("a head came") >= 300.0, "{t}");
    assert_eq!(receiver.count(), 2);

    // Each phase that happened is counted under its own label, never a URL or an id.
    let metrics = server.client().raw("GET", "/metrics", &[], None).text();
    let count = |phase: &str| {
        series(
            &metrics,
            &format!("statussentry_attempt_phase_seconds_count{{phase=\"{phase}\"}} "),
        )
    };
    assert_eq!(count("ttfb"), 2.0, "{metrics}");
    assert_eq!(count("connect"), 1.0, "one connection for both: {metrics}");
    assert_eq!(count("dns"), 0.0, "{metrics}");
    assert_eq!(count("tls"), 0.0, "{metrics}");
    let fast = series(
        &metrics,
        "statussentry_attempt_phase_seconds_bucket{phase=\"ttfb\",le=\"0.25\"} ",
    );
    assert_eq!(fast, 0.0, "both waits were over 0.25 s: {metrics}");
    assert!(!metrics.contains(&endpoint), "no id in a label");
}

#[test]
fn a_name_is_looked_up_and_the_lookup_is_timed() {
    let server = Server::start(AT_ONCE);
    let receiver = Receiver::start();
    let url = receiver.url("/named").replace("127.0.0.1", "localhost");
    let endpoint = s(&create_endpoint(&server, json!({"url": url})), "id").to_string();
    let attempt = deliver_one(&server, &endpoint, "by name");
    let t = timings_of(&attempt);
    assert_eq!(t["reused"], false, "{t}");
    assert!(phase(&t, "dns").is_some(), "localhost was looked up: {t}");
    assert!(phase(&t, "connect").is_some(), "{t}");
    let metrics = server.client().raw("GET", "/metrics", &[], None).text();
    assert_eq!(
        series(
            &metrics,
            "statussentry_attempt_phase_seconds_count{phase=\"dns\"} "
        ),
        1.0,
        "{metrics}"
    );
}

#[test]
fn a_tls_handshake_is_timed() {
    let (addr, _requests) = tls_receiver();
    let server = Server::start(&format!(
        "[network]\nca_file = {:?}\n{AT_ONCE}",
        fixture("tls-ca.pem").display().to_string()
    ));
    let endpoint = s(
        &create_endpoint(&server, json!({"url": format!("https://{addr}/hook")})),
        "id",
    )
    .to_string();
    let first = deliver_one(&server, &endpoint, "over tls");
    let t = timings_of(&first);
    assert_eq!(t["reused"], false, "{t}");
    assert!(phase(&t, "connect").is_some(), "{t}");
    assert!(phase(&t, "tls").is_some(), "a handshake was made: {t}");
    assert!(phase(&t, "ttfb").is_some(), "{t}");
    // The next request needs no handshake: it goes out on the same TLS connection.
    let second = deliver_one(&server, &endpoint, "over tls again");
    let t = timings_of(&second);
    assert_eq!(t["reused"], true, "{t}");
    assert_eq!(phase(&t, "tls"), None, "{t}");
    let metrics = server.client().raw("GET", "/metrics", &[], None).text();
    assert_eq!(
        series(
            &metrics,
            "statussentry_attempt_phase_seconds_count{phase=\"tls\"} "
        ),
        1.0,
        "{metrics}"
    );
}

#[test]
fn a_monitor_check_is_timed_and_its_phases_reach_status_change() {
    let server = Server::start(AT_ONCE);
    let target = Receiver::start();
    target.reply_with(Reply::status(503).delay(Duration::from_millis(100)));
    let monitor = s(
        &server.expect(
            "POST",
            "/api/v1/monitors",
            Some(json!({
                "name": "Timed", "url": target.url("/health"), "interval_secs": 1,
                "timeout_ms": 800, "failures_before_down": 1, "auto_incident": false,
            })),
            201,
        ),
        "id",
    )
    .to_string();
    let checks = wait_for(DEADLINE, "a check", || {
        let all = list_all(&server, &format!("/api/v1/monitors/{monitor}/checks"), 10);
        if all.is_empty() {
            Err("none yet".to_string())
        } else {
            Ok(all)
        }
    });
    let check = &checks[0];
    let t = &check["timings"];
    assert_eq!(
        keys(t),
        [
            "dns_ms",
            "connect_ms",
            "tls_ms",
            "ttfb_ms",
            "total_ms",
            "reused"
        ],
        "{check}"
    );
    // A check opens a new connection every time.
    assert_eq!(t["reused"], false, "{check}");
    assert!(phase(t, "connect").is_some(), "{check}");
    assert_eq!(phase(t, "tls"), None, "{check}");
    assert!(phase(t, "ttfb").expect("a head came") >= 100.0, "{check}");
    let total = phase(t, "total").expect("a total");
    let sum: f64 = ["dns", "connect", "tls", "ttfb"]
        .iter()
        .filter_map(|p| phase(t, p))
        .sum();
    assert!(sum <= total + 1e-9, "{check}");

    // The failed check turned the monitor DOWN; its event says where the time went.
    let change = wait_for(DEADLINE, "monitor.status_change", || {
        list_all(&server, "/api/v1/events?type=monitor.status_change", 10)
            .into_iter()
            .find(|e| e["data"]["monitor_id"] == monitor.as_str())
            .ok_or_else(|| "none yet".to_string())
    });
    let metrics = &change["data"]["metrics"];
    assert!(phase(&metrics["timings"], "connect").is_some(), "{change}");
    assert!(
        phase(&metrics["timings"], "ttfb").expect("a head") >= 100.0,
        "{change}"
    );
}

#[test]
fn a_refused_connection_shows_how_long_connecting_took_and_no_wait() {
    let server = Server::start(AT_ONCE);
    // Nothing listens on the discard port.
    let endpoint = s(
        &create_endpoint(&server, json!({"url": "http://127.0.0.1:9/hook"})),
        "id",
    )
    .to_string();
    publish(&server, "incident.created", incident("refused"));
    let attempt = wait_for(DEADLINE, "the refused attempt", || {
        messages_of(&server, &endpoint)
            .iter()
            .find_map(|m| m["attempts"].get(0).cloned())
            .ok_or_else(|| "no attempt yet".to_string())
    });
    assert_eq!(attempt["error"], "connection_refused", "{attempt}");
    let t = timings_of(&attempt);
    assert_eq!(t["reused"], false, "{t}");
    assert!(phase(&t, "connect").is_some(), "the refusal took time: {t}");
    assert_eq!(phase(&t, "ttfb"), None, "no head came: {t}");
    assert_eq!(phase(&t, "tls"), None, "{t}");
}
