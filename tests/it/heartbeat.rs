//! Heartbeats (SPEC 4.7) seen from a loopback receiver: they come at the endpoint's
//! `heartbeat_secs` while it is idle and not while it is busy, signed like every delivery,
//! whatever its `event_types`; they are not events, are never retried, report the endpoint's
//! backlog, and are counted in `/metrics`.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

/// No window, so that only `heartbeat_secs` spaces the requests; a short backoff, so that a
/// retry of a heartbeat, were there one, would come long before the next heartbeat.
const FAST: &str =
    "[delivery]\nbatch_window = \"0ms\"\ninitial_backoff = \"50ms\"\nmax_backoff = \"200ms\"\n";

fn is_heartbeat(hit: &Hit) -> bool {
    hit.header("X-StatusSentry-Event") == Some("heartbeat")
}

fn heartbeats(receiver: &Receiver) -> Vec<Hit> {
    receiver.hits().into_iter().filter(is_heartbeat).collect()
}

fn wait_heartbeats(receiver: &Receiver, n: usize, deadline: Duration) -> Vec<Hit> {
    wait_for(deadline, &format!("{n} heartbeats"), || {
        let got = heartbeats(receiver);
        if got.len() >= n {
            Ok(got)
        } else {
            Err(format!(
                "{} heartbeats among {} requests",
                got.len(),
                receiver.count()
            ))
        }
    })
}

fn metric(server: &Server, line_prefix: &str) -> f64 {
    let text = server.client().raw("GET", "/metrics", &[], None).text();
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_prefix} in /metrics:\n{text}"))
}

fn create(server: &Server, receiver: &Receiver, extra: Value) -> (String, String) {
    let mut body = json!({"url": receiver.url("/hb")});
    for (key, value) in extra.as_object().expect("extra is an object") {
        body[key] = value.clone();
    }
    let created = create_endpoint(server, body);
    (
        s(&created, "id").to_string(),
        s(&created, "secret").to_string(),
    )
}

#[test]
fn an_idle_endpoint_gets_signed_heartbeats_at_its_interval_whatever_its_filter() {
    let server = Server::start(FAST);
    let receiver = Receiver::start();
    // The filter names one event type; heartbeats are not subject to it.
    let (id, secret) = create(
        &server,
        &receiver,
        json!({"heartbeat_secs": 1, "event_types": ["sla.breach_warning"]}),
    );
    let shown = server.expect("GET", &format!("/api/v1/endpoints/{id}"), None, 200);
    assert_eq!(shown["heartbeat_secs"], 1, "{shown}");

    let hits = wait_heartbeats(&receiver, 3, Duration::from_secs(15));
    let mut ids = Vec::new();
    for hit in &hits {
        assert_signed(hit, &[&secret]);
        assert_eq!(hit.method, "POST");
        assert_eq!(hit.header("X-StatusSentry-Attempt"), Some("1"));
        let body = hit.json();
        assert_eq!(
            keys(&body),
            ["id", "type", "created_at", "data"],
            "{}",
            hit.text()
        );
        let hb_id = s(&body, "id");
        assert!(is_id(hb_id, "hb_"), "heartbeat id {hb_id}");
        assert_eq!(hit.header("X-StatusSentry-Delivery"), Some(hb_id));
        assert_eq!(body["type"], "heartbeat");
        assert!(is_rfc3339_seconds_z(s(&body, "created_at")), "{body}");
        assert_eq!(
            body["data"],
            json!({"endpoint_id": id, "pending": 0, "oldest_pending_age_secs": 0}),
            "{body}"
        );
        ids.push(hb_id.to_string());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), hits.len(), "each heartbeat has its own id");
    // One second of quiet between the end of one and the start of the next: never sooner,
    // and not much later on an idle machine.
    for pair in hits.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= Duration::from_millis(1000) && gap < Duration::from_millis(3000),
            "heartbeats {gap:?} apart"
        );
    }
    // Not events: nothing is listed, and no message was made.
    let events = server.expect("GET", "/api/v1/events", None, 200);
    assert_eq!(events["data"], json!([]), "{events}");
    assert!(messages_of(&server, &id).is_empty());
    assert!(
        metric(
            &server,
            "statussentry_heartbeats_total{outcome=\"success\"}"
        ) >= 3.0,
        "heartbeats counted"
    );
    assert_eq!(
        metric(
            &server,
            "statussentry_delivery_requests_total{outcome=\"success\"}"
        ),
        0.0,
        "a heartbeat is not a delivery request"
    );

    // Turned off, they stop: one may already have been on its way when the PATCH landed.
    let patched = server.expect(
        "PATCH",
        &format!("/api/v1/endpoints/{id}"),
        Some(json!({"heartbeat_secs": null})),
        200,
    );
    assert_eq!(patched["heartbeat_secs"], Value::Null);
    let at_patch = heartbeats(&receiver).len();
    // Three intervals, to show that no more come: an absence cannot be polled for.
    thread::sleep(Duration::from_secs(3));
    assert!(
        heartbeats(&receiver).len() <= at_patch + 1,
        "off means off: {} then {}",
        at_patch,
        heartbeats(&receiver).len()
    );
}

#[test]
fn a_busy_endpoint_gets_no_heartbeat_until_it_falls_quiet() {
    let server = Server::start(FAST);
    let receiver = Receiver::start();
    let (id, _) = create(&server, &receiver, json!({"heartbeat_secs": 2}));
    // An event every 300 ms for 5 s keeps the endpoint busy: its quiet never reaches 2 s.
    let start = Instant::now();
    let mut sent = 0;
    while start.elapsed() < Duration::from_secs(5) {
        publish(&server, "incident.created", seed_data());
        sent += 1;
        thread::sleep(Duration::from_millis(300));
    }
    let hits = receiver.wait_hits(sent, Duration::from_secs(10));
    assert!(
        hits.iter().all(|h| !is_heartbeat(h)),
        "no heartbeat while busy: {:?}",
        hits.iter()
            .map(|h| h.header("X-StatusSentry-Event").unwrap_or("?").to_string())
            .collect::<Vec<_>>()
    );
    // Then quiet: the first heartbeat comes 2 s after the last delivery.
    let hb = &wait_heartbeats(&receiver, 1, Duration::from_secs(10))[0];
    let last_event = receiver
        .hits()
        .into_iter()
        .filter(|h| !is_heartbeat(h))
        .map(|h| h.at)
        .max()
        .expect("deliveries");
    assert!(
        hb.at.duration_since(last_event) >= Duration::from_secs(2),
        "heartbeat {:?} after the last delivery",
        hb.at.duration_since(last_event)
    );
    assert_eq!(hb.json()["data"]["endpoint_id"], id.as_str());
    assert_eq!(hb.json()["data"]["pending"], 0);
    assert_eq!(
        receiver.max_in_flight(),
        1,
        "one request in flight, heartbeats included"
    );
}

#[test]
fn heartbeats_keep_the_batch_window() {
    // Due every second, but the window keeps requests 2 s apart (SPEC 4.2).
    let server = Server::start("[delivery]\nbatch_window = \"2s\"\n");
    let receiver = Receiver::start();
    create(&server, &receiver, json!({"heartbeat_secs": 1}));
    let hits = wait_heartbeats(&receiver, 3, Duration::from_secs(20));
    for pair in hits.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= Duration::from_millis(2000) && gap < Duration::from_millis(4000),
            "heartbeats {gap:?} apart under a 2 s window"
        );
    }
}

#[test]
fn a_failing_receiver_gets_no_retry_of_a_heartbeat_and_the_endpoint_keeps_its_state() {
    let server = Server::start(FAST);
    let receiver = Receiver::start();
    receiver.reply_with(Reply::status(500));
    let (id, _) = create(&server, &receiver, json!({"heartbeat_secs": 1}));
    let hits = wait_heartbeats(&receiver, 3, Duration::from_secs(15));
    // A retry would reuse the id 50 to 200 ms later (the backoff); each one is new and a
    // whole interval after the last.
    let ids: Vec<String> = hits
        .iter()
        .map(|h| s(&h.json(), "id").to_string())
        .collect();
    for (i, hb) in ids.iter().enumerate() {
        assert!(!ids[..i].contains(hb), "{hb} came twice: {ids:?}");
    }
    for pair in hits.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(gap >= Duration::from_millis(1000), "{gap:?} apart");
    }
    assert_eq!(
        receiver.count(),
        hits.len(),
        "nothing but heartbeats went out"
    );
    // A heartbeat's answer changes no endpoint state: no failure run, no backoff.
    let ep = server.expect("GET", &format!("/api/v1/endpoints/{id}"), None, 200);
    assert_eq!(ep["consecutive_failures"], 0, "{ep}");
    assert_eq!(ep["backoff_until"], Value::Null, "{ep}");
    assert_eq!(ep["enabled"], true, "{ep}");
    assert!(
        metric(
            &server,
            "statussentry_heartbeats_total{outcome=\"http_5xx\"}"
        ) >= 3.0
    );
}

#[test]
fn a_backing_off_endpoint_reports_its_backlog_in_heartbeats() {
    // A long backoff: after the first failure the event waits, and only heartbeats go out.
    let server = Server::start(
        "[delivery]\nbatch_window = \"0ms\"\ninitial_backoff = \"60s\"\nmax_backoff = \"60s\"\n",
    );
    let receiver = Receiver::start();
    receiver.respond_with(|hit| {
        if hit.header("X-StatusSentry-Event") == Some("heartbeat") {
            Reply::status(200)
        } else {
            Reply::status(503)
        }
    });
    let (id, _) = create(&server, &receiver, json!({"heartbeat_secs": 1}));
    let event = publish(&server, "incident.created", seed_data());
    let event_id = s(&event, "id").to_string();
    let hb = wait_for(
        Duration::from_secs(15),
        "a heartbeat with the event pending for a second",
        || {
            heartbeats(&receiver)
                .into_iter()
                .map(|h| h.json())
                .find(|b| b["data"]["oldest_pending_age_secs"].as_i64() >= Some(1))
                .ok_or_else(|| format!("{} requests", receiver.count()))
        },
    );
    assert_eq!(hb["data"]["endpoint_id"], id.as_str());
    assert_eq!(hb["data"]["pending"], 1, "{hb}");
    let deliveries: Vec<Hit> = receiver
        .hits()
        .into_iter()
        .filter(|h| !is_heartbeat(h))
        .collect();
    assert_eq!(deliveries.len(), 1, "the event waits out its backoff");
    assert_eq!(deliveries[0].event_ids(), [event_id]);
}

#[test]
fn heartbeat_secs_is_checked() {
    let server = Server::start(FAST);
    let receiver = Receiver::start();
    for bad in [json!(0), json!(86_401), json!(-1), json!("60"), json!(1.5)] {
        let (status, answer) = server.api(
            "POST",
            "/api/v1/endpoints",
            Some(json!({"url": receiver.url("/hb"), "heartbeat_secs": bad})),
        );
        assert_eq!(status, 400, "{bad}: {answer}");
        assert_eq!(
            error_parts(&answer),
            (
                "invalid_field".to_string(),
                Some("heartbeat_secs".to_string())
            ),
            "{bad}"
        );
    }
    let created = create_endpoint(&server, json!({"url": receiver.url("/hb")}));
    assert_eq!(created["heartbeat_secs"], Value::Null, "off by default");
    let id = s(&created, "id");
    let patched = server.expect(
        "PATCH",
        &format!("/api/v1/endpoints/{id}"),
        Some(json!({"heartbeat_secs": 86_400})),
        200,
    );
    assert_eq!(patched["heartbeat_secs"], 86_400);
    // A PATCH without the field keeps it.
    let patched = server.expect(
        "PATCH",
        &format!("/api/v1/endpoints/{id}"),
        Some(json!({"description": "x"})),
        200,
    );
    assert_eq!(patched["heartbeat_secs"], 86_400);
}
