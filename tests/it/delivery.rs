//! The delivery engine (SPEC 3 and 4) seen from a loopback receiver: signatures, headers,
//! ordering, flood control, batching, backoff, outcomes, the attempt log and crash safety.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::harness::*;

/// Delivery config for tests that do not measure time: no window, short backoff.
const FAST: &str =
    "[delivery]\nbatch_window = \"0ms\"\ninitial_backoff = \"50ms\"\nmax_backoff = \"200ms\"\n";

/// How long a single delivery may take to show up.
const DELIVERY: Duration = Duration::from_secs(10);

/// Creates an endpoint for `receiver` at `path`, with `extra` keys; returns (id, secret).
fn endpoint_for(
    server: &Server,
    receiver: &Receiver,
    path: &str,
    extra: Value,
) -> (String, String) {
    let mut body = json!({"url": receiver.url(path)});
    for (key, value) in extra.as_object().expect("extra is an object") {
        body[key] = value.clone();
    }
    let created = create_endpoint(server, body);
    (
        s(&created, "id").to_string(),
        s(&created, "secret").to_string(),
    )
}

fn endpoint(server: &Server, id: &str) -> Value {
    server.expect("GET", &format!("/api/v1/endpoints/{id}"), None, 200)
}

fn first_hit_with(receiver: &Receiver, event_id: &str) -> Hit {
    wait_for(DELIVERY, &format!("{event_id} at the receiver"), || {
        receiver
            .hits()
            .into_iter()
            .find(|h| h.event_ids().iter().any(|id| id == event_id))
            .ok_or_else(|| format!("received so far: {:?}", receiver.event_ids()))
    })
}

fn attempt_codes(message: &Value) -> Vec<Value> {
    message["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("attempts array: {message}"))
        .iter()
        .map(|a| a["status_code"].clone())
        .collect()
}

/// Accepts 200 or 202 for action routes whose success status SPEC 5 leaves open.
fn expect_action(server: &Server, path: &str, body: Option<Value>) -> Value {
    let (status, answer) = server.api("POST", path, body);
    assert!(
        status == 200 || status == 202,
        "POST {path} answered {status}: {answer}"
    );
    answer
}

// ---------------------------------------------------------------------------------------
// Signatures and headers

#[test]
fn deliveries_are_signed_and_carry_the_documented_headers() {
    let server = Server::start(FAST);
    let receiver = Receiver::start();
    receiver.reply_with(Reply::status(200).body("thanks"));
    let (id, secret) = endpoint_for(&server, &receiver, "/hooks/signed?src=it", json!({}));
    let event = publish(&server, "incident.created", seed_data());
    let event_id = s(&event, "id");

    let hit = &receiver.wait_hits(1, DELIVERY)[0];
    assert_eq!(hit.method, "POST");
    assert_eq!(
        hit.url, "/hooks/signed?src=it",
        "the endpoint's path and query are kept"
    );
    assert_signed(hit, &[&secret]);
    let content_type = hit.header("Content-Type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "Content-Type: {content_type:?}"
    );
    assert_eq!(
        hit.header("User-Agent"),
        Some(format!("StatusSentry-Webhooks/{}", env!("CARGO_PKG_VERSION")).as_str())
    );
    assert_eq!(hit.header("X-StatusSentry-Event"), Some("incident.created"));
    assert_eq!(hit.header("X-StatusSentry-Delivery"), Some(event_id));
    assert_eq!(hit.header("X-StatusSentry-Attempt"), Some("1"));
    assert_eq!(hit.header("webhook-id"), Some(event_id));

    let body = hit.json();
    assert_eq!(
        keys(&body),
        ["id", "type", "created_at", "data"],
        "envelope key order: {}",
        hit.text()
    );
    assert_eq!(body["id"], event["id"]);
    assert_eq!(body["type"], "incident.created");
    assert_eq!(body["created_at"], event["created_at"]);
    assert_eq!(body["data"], seed_data());

    let message = wait_message_status(&server, event_id, &id, "delivered", DELIVERY);
    let attempts = message["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{message}");
    let attempt = &attempts[0];
    for key in [
        "at",
        "attempt",
        "duration_ms",
        "status_code",
        "error",
        "response_body",
    ] {
        assert!(
            attempt.get(key).is_some(),
            "attempt lacks `{key}`: {attempt}"
        );
    }
    assert_eq!(attempt["attempt"], 1);
    assert_eq!(attempt["status_code"], 200);
    assert_eq!(attempt["error"], Value::Null);
    assert_eq!(attempt["response_body"], "thanks");
    assert!(attempt["duration_ms"].is_u64(), "{attempt}");
    parse_time(s(attempt, "at"));

    let ep = endpoint(&server, &id);
    assert_eq!(ep["counts"]["delivered"], 1, "{ep}");
    assert_eq!(ep["counts"]["pending"], 0, "{ep}");
    assert!(
        !ep["last_attempt"].is_null(),
        "the endpoint shows its last attempt: {ep}"
    );
    assert!(
        !server.log().contains(&secret),
        "secrets must never be logged"
    );
}

#[test]
fn rotated_secrets_sign_during_their_grace_period() {
    let server = Server::start(FAST);
    // (grace_secs in the rotation request, signs with the old secret too)
    let rows: &[(Option<u64>, bool)] = &[
        (None, true),
        (Some(60), true),
        (Some(0), false),
        (Some(1), true),
    ];
    let mut endpoints = Vec::new();
    for (grace, _) in rows {
        let receiver = Receiver::start();
        let (id, old) = endpoint_for(&server, &receiver, "/", json!({}));
        let body = grace.map(|g| json!({"grace_secs": g}));
        let rotated = server.expect(
            "POST",
            &format!("/api/v1/endpoints/{id}/rotate-secret"),
            body,
            200,
        );
        let new = s(&rotated, "secret").to_string();
        endpoints.push((receiver, old, new));
    }
    let rotated_at = Instant::now();

    let event = publish(&server, "incident.created", seed_data());
    for ((grace, both), (receiver, old, new)) in rows.iter().zip(&endpoints) {
        let hit = first_hit_with(receiver, s(&event, "id"));
        let expected: Vec<&str> = if *both { vec![new, old] } else { vec![new] };
        let header = hit
            .header("X-StatusSentry-Signature")
            .unwrap_or_default()
            .to_string();
        assert_eq!(
            parse_signature_header(&header).1.len(),
            expected.len(),
            "grace {grace:?}: one v1 per active secret in {header:?}"
        );
        assert_signed(&hit, &expected);
    }

    // A one-second grace has to run out; there is nothing to poll until it has.
    thread::sleep(Duration::from_millis(1500).saturating_sub(rotated_at.elapsed()));
    let event = publish(&server, "incident.created", seed_data());
    let (receiver, _, new) = &endpoints[3];
    let hit = first_hit_with(receiver, s(&event, "id"));
    assert_signed(&hit, &[new]);
}

#[test]
fn event_type_filter_decides_delivery() {
    let server = Server::start(FAST);
    let incidents = Receiver::start();
    let everything = Receiver::start();
    let (incidents_id, _) = endpoint_for(
        &server,
        &incidents,
        "/",
        json!({"event_types": ["incident.created"]}),
    );
    endpoint_for(&server, &everything, "/", json!({}));

    let monitor = publish(
        &server,
        "monitor.status_change",
        json!({"monitor_id": "mon_1", "previous_status": "UP", "status": "DOWN"}),
    );
    let created = publish(&server, "incident.created", seed_data());
    assert_eq!(monitor["messages"], 1);
    assert_eq!(created["messages"], 2);

    first_hit_with(&everything, s(&monitor, "id"));
    first_hit_with(&everything, s(&created, "id"));
    first_hit_with(&incidents, s(&created, "id"));
    assert_eq!(
        incidents.event_ids(),
        [s(&created, "id")],
        "the filtered endpoint gets only its type"
    );
    assert_eq!(messages_of(&server, &incidents_id).len(), 1);
}

// ---------------------------------------------------------------------------------------
// Ordering, flood control and batching

#[test]
fn a_burst_is_sent_as_one_plain_envelope_then_batches() {
    let _serial = timing_lock();
    let server = Server::start(FAST);
    let batched = Receiver::start();
    let lone = Receiver::start();
    let (_, secret) = endpoint_for(
        &server,
        &batched,
        "/",
        json!({"batch_window_ms": 1000, "batch_max": 100}),
    );
    endpoint_for(
        &server,
        &lone,
        "/",
        json!({"batch_window_ms": 0, "batch_max": 1}),
    );

    // The first event finds the endpoint idle for a whole window, so it goes out at once and
    // alone. It is published on its own: had the second one been committed before the
    // dispatcher read the queue, both would be waiting at send time, and a batch of two is
    // then what SPEC 4.3 asks for.
    let mut events = vec![publish(&server, "incident.created", incident("burst 0"))];
    wait_for(Duration::from_secs(5), "the first event", || {
        if batched.hits().is_empty() {
            Err("nothing yet".to_string())
        } else {
            Ok(())
        }
    });
    let started = Instant::now();
    events.extend(
        (1..30).map(|i| publish(&server, "incident.created", incident(&format!("burst {i}")))),
    );
    let publishing = started.elapsed();
    assert!(
        publishing < Duration::from_millis(1900),
        "publishing 30 events took {publishing:?}; the test needs the burst inside two windows"
    );
    let ids: Vec<String> = events.iter().map(|e| s(e, "id").to_string()).collect();

    let hits = wait_for(
        Duration::from_secs(15),
        "all 30 events at the batching endpoint",
        || {
            let hits = batched.hits();
            let got: Vec<String> = hits.iter().flat_map(Hit::event_ids).collect();
            if got.len() >= 30 {
                Ok(hits)
            } else {
                Err(format!("{} events in {} requests", got.len(), hits.len()))
            }
        },
    );
    let received: Vec<String> = hits.iter().flat_map(Hit::event_ids).collect();
    assert_sequence(
        &received,
        &ids,
        "every event exactly once, in the order accepted",
    );
    assert!(
        hits.len() <= 3,
        "one plain envelope and at most two batches, got {} requests",
        hits.len()
    );
    assert!(hits.len() >= 2, "30 events cannot fit one plain envelope");

    let first = hits[0].json();
    assert_eq!(
        first["type"], "incident.created",
        "the first event goes out at once, plain: {first}"
    );
    assert_eq!(first["id"], ids[0].as_str());
    for hit in &hits {
        assert_signed(hit, &[&secret]);
    }
    for pair in hits.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(1000) - ARRIVAL_NOISE,
            "requests to one endpoint at least batch_window apart, got {gap:?}"
        );
    }

    let lone_hits = lone.wait_hits(30, Duration::from_secs(15));
    for batch in &hits[1..] {
        let body = batch.json();
        assert_eq!(
            keys(&body),
            ["id", "type", "created_at", "data"],
            "{}",
            batch.text()
        );
        assert_eq!(body["type"], "batch");
        let batch_id = s(&body, "id");
        assert!(is_id(batch_id, "bat_"), "batch id format: {batch_id}");
        assert!(is_rfc3339_seconds_z(s(&body, "created_at")));
        assert_eq!(batch.header("X-StatusSentry-Event"), Some("batch"));
        assert_eq!(batch.header("X-StatusSentry-Delivery"), Some(batch_id));
        assert_eq!(batch.header("webhook-id"), Some(batch_id));
        assert_eq!(batch.header("X-StatusSentry-Attempt"), Some("1"));
        let inner = body["data"]["events"].as_array().unwrap();
        assert!(inner.len() > 1, "a batch holds more than one event");
        for envelope in inner {
            assert_eq!(
                keys(envelope),
                ["id", "type", "created_at", "data"],
                "inner envelope: {envelope}"
            );
            let published = events.iter().find(|e| e["id"] == envelope["id"]).unwrap();
            assert_eq!(envelope["type"], published["type"]);
            assert_eq!(envelope["created_at"], published["created_at"]);
            assert_eq!(envelope["data"], published["data"]);
        }
    }

    // Byte-for-byte: each event's lone delivery body appears verbatim inside what the
    // batching endpoint received.
    for hit in &lone_hits {
        let id = s(&hit.json(), "id").to_string();
        let carrier = hits.iter().find(|h| h.event_ids().contains(&id)).unwrap();
        assert!(
            contains_bytes(&carrier.body, &hit.body),
            "the envelope of {id} differs between a lone delivery and a batch:\nlone: {}\nbatch: {}",
            hit.text(),
            carrier.text()
        );
    }
    assert_eq!(
        hits[0].body,
        lone_hits
            .iter()
            .find(|h| h.event_ids() == [ids[0].clone()])
            .unwrap()
            .body
    );
}

/// How much earlier than the real start the receiver may see a request arrive relative to
/// another: the arrival instant is taken when tiny_http hands over a parsed request, which a
/// busy two-core machine can delay by a few milliseconds.
const ARRIVAL_NOISE: Duration = Duration::from_millis(10);

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn two_hundred_sequential_events_arrive_in_order() {
    let _serial = timing_lock();
    let server = Server::start(FAST);
    let receiver = Receiver::start();
    endpoint_for(
        &server,
        &receiver,
        "/",
        json!({"batch_max": 1, "batch_window_ms": 0}),
    );
    let ids: Vec<String> = (0..200)
        .map(|i| {
            s(
                &publish(&server, "incident.created", incident(&format!("seq {i}"))),
                "id",
            )
            .to_string()
        })
        .collect();
    let hits = receiver.wait_hits(200, Duration::from_secs(60));
    assert!(
        hits.iter().all(|h| h.json()["type"] == "incident.created"),
        "batch_max 1 never batches"
    );
    assert_sequence(
        &receiver.event_ids(),
        &ids,
        "in the order accepted, each once",
    );
}

#[test]
fn never_two_requests_in_flight_to_one_endpoint() {
    let server = Server::start(FAST);
    let single = Receiver::start();
    let batching = Receiver::start();
    for receiver in [&single, &batching] {
        receiver.reply_with(Reply::status(200).delay(Duration::from_millis(30)));
    }
    endpoint_for(
        &server,
        &single,
        "/",
        json!({"batch_max": 1, "batch_window_ms": 0}),
    );
    endpoint_for(
        &server,
        &batching,
        "/",
        json!({"batch_max": 100, "batch_window_ms": 0}),
    );

    let publishers: Vec<_> = (0..4)
        .map(|p| {
            let api = server.client();
            thread::spawn(move || {
                (0..10)
                    .map(|i| {
                        let body = json!({"type": "incident.created", "data": incident(&format!("p{p} e{i}"))});
                        s(&api.expect("POST", "/api/v1/events", Some(body), 202), "id").to_string()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let ids: HashSet<String> = publishers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(ids.len(), 40);

    for (name, receiver) in [("batch_max 1", &single), ("batch_max 100", &batching)] {
        wait_until(
            Duration::from_secs(20),
            &format!("all 40 events at the {name} endpoint"),
            || receiver.event_ids().into_iter().collect::<HashSet<_>>() == ids,
        );
        assert_eq!(
            receiver.max_in_flight(),
            1,
            "{name}: two requests were in flight at once"
        );
        let hits = receiver.hits();
        for pair in hits.windows(2) {
            let gap = pair[1].at - pair[0].at;
            assert!(
                gap >= Duration::from_millis(30),
                "{name}: a request started {gap:?} after the previous one"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Runs: back-to-back requests to one endpoint whose window is 0 (ARCHITECTURE.md, step 4)

/// The ids in `received` with repeats left out, each where it first arrived.
fn first_arrivals(received: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    received
        .iter()
        .filter(|id| seen.insert(id.as_str()))
        .cloned()
        .collect()
}

/// Publishes `n` events while the receiver holds the first request, so that the rest wait
/// and go out in runs once it is released; returns their ids in the order accepted.
fn publish_behind_a_held_request(server: &Server, receiver: &Receiver, n: usize) -> Vec<String> {
    receiver.hold();
    let mut ids = vec![
        s(
            &publish(server, "incident.created", incident("run 0")),
            "id",
        )
        .to_string(),
    ];
    receiver.wait_hits(1, DELIVERY);
    ids.extend((1..n).map(|i| {
        s(
            &publish(server, "incident.created", incident(&format!("run {i}"))),
            "id",
        )
        .to_string()
    }));
    receiver.release();
    ids
}

#[test]
fn a_failure_inside_a_run_resends_that_event_first_and_keeps_the_order() {
    let _serial = timing_lock();
    let server = Server::start(FAST);
    let receiver = Receiver::start();
    // The first request is held alone; the next ones go out in a run of up to 32, and the
    // twentieth request overall, inside that run, fails.
    receiver.script(std::iter::repeat_n(Reply::status(200), 19).chain([Reply::status(500)]));
    let (endpoint_id, _) = endpoint_for(
        &server,
        &receiver,
        "/",
        json!({"batch_max": 1, "batch_window_ms": 0}),
    );
    let ids = publish_behind_a_held_request(&server, &receiver, 100);

    wait_until(DELIVERY, "all 100 events at the receiver", || {
        let received: HashSet<String> = receiver.event_ids().into_iter().collect();
        ids.iter().all(|id| received.contains(id))
    });
    let hits = receiver.hits();
    let received = receiver.event_ids();
    assert_sequence(
        &first_arrivals(&received),
        &ids,
        "first arrivals in the order accepted",
    );

    let failed = &hits[19];
    assert_eq!(
        failed.answered, 500,
        "the twentieth request is the scripted failure"
    );
    let failed_id = s(&failed.json(), "id").to_string();
    assert_eq!(failed.header("X-StatusSentry-Attempt"), Some("1"));
    let retry = &hits[20];
    assert_eq!(
        retry.event_ids(),
        [failed_id.as_str()],
        "the request after the 500 resends the failed event before any later one"
    );
    assert_eq!(retry.header("X-StatusSentry-Attempt"), Some("2"));
    let gap = retry.at - failed.at;
    assert!(
        gap >= Duration::from_millis(50) - ARRIVAL_NOISE,
        "the endpoint backs off (initial_backoff 50ms) after the 500, but retried after {gap:?}"
    );

    let twice: Vec<&String> = ids
        .iter()
        .filter(|id| received.iter().filter(|r| r == id).count() > 1)
        .collect();
    assert_eq!(twice, [&failed_id], "only the failed event arrives twice");
    assert_eq!(hits.len(), 101, "100 events and one retry");
    assert_eq!(
        receiver.max_in_flight(),
        1,
        "two requests were in flight at once"
    );

    let message = wait_message_status(&server, &failed_id, &endpoint_id, "delivered", DELIVERY);
    assert_eq!(
        attempt_codes(&message),
        [json!(500), json!(200)],
        "{message}"
    );
}

#[test]
fn disabling_an_endpoint_stops_its_run() {
    let _serial = timing_lock();
    let server = Server::start(FAST);
    let receiver = Receiver::start();
    // A slow receiver makes a run of 32 last well over half a second.
    receiver.reply_with(Reply::status(200).delay(Duration::from_millis(20)));
    let (id, _) = endpoint_for(
        &server,
        &receiver,
        "/",
        json!({"batch_max": 1, "batch_window_ms": 0}),
    );
    let ids = publish_behind_a_held_request(&server, &receiver, 200);

    receiver.wait_hits(5, DELIVERY);
    let path = format!("/api/v1/endpoints/{id}");
    server.expect("PATCH", &path, Some(json!({"enabled": false})), 200);
    let at_disable = receiver.count();

    // The run stops after its request in flight, and nothing starts after it: the count
    // settles, and then stays put for a quiet period.
    let quiet = Duration::from_millis(500);
    let mut last = (at_disable, Instant::now());
    let settled = wait_for(
        Duration::from_secs(3),
        "the disabled endpoint's requests to stop",
        || {
            let count = receiver.count();
            if count != last.0 {
                last = (count, Instant::now());
            }
            if last.1.elapsed() >= quiet {
                Ok(count)
            } else {
                Err(format!(
                    "{count} requests so far, {} of them after the PATCH answered",
                    count - at_disable
                ))
            }
        },
    );
    assert!(
        settled <= at_disable + 1,
        "at most the request the worker had started may follow the PATCH, got {} more",
        settled - at_disable
    );
    assert!(
        settled < 50,
        "the run went on after disabling: {settled} of 200 events sent"
    );

    server.expect("PATCH", &path, Some(json!({"enabled": true})), 200);
    wait_until(DELIVERY, "all 200 events after enabling again", || {
        let received: HashSet<String> = receiver.event_ids().into_iter().collect();
        ids.iter().all(|id| received.contains(id))
    });
    let received = receiver.event_ids();
    assert_sequence(
        &first_arrivals(&received),
        &ids,
        "first arrivals in the order accepted",
    );
    assert_eq!(
        received.len(),
        200,
        "every request succeeded, so each event arrives once"
    );
    assert_eq!(
        receiver.max_in_flight(),
        1,
        "two requests were in flight at once"
    );
}

// ---------------------------------------------------------------------------------------
// Backoff and outcomes

#[test]
fn backoff_follows_the_schedule() {
    let _serial = timing_lock();
    let server = Server::start(
        "[delivery]\ninitial_backoff = \"250ms\"\nmax_backoff = \"2s\"\nbatch_window = \"0ms\"\n",
    );
    let receiver = Receiver::start();
    receiver.script((0..5).map(|_| Reply::status(500).body("try later")));
    let (id, secret) = endpoint_for(&server, &receiver, "/", json!({}));
    let event = publish(&server, "incident.created", seed_data());

    // A schedule in hundreds of milliseconds keeps the 60 ms allowed for scheduling and the
    // loopback round trip small beside the 20 % the random factor may add.
    let hits = receiver.wait_hits(6, Duration::from_secs(20));
    let schedule_ms = [250u64, 500, 1000, 2000, 2000];
    let gaps: Vec<Duration> = hits.windows(2).map(|p| p[1].at - p[0].at).collect();
    let mut problems = Vec::new();
    for (n, (gap, ms)) in gaps.iter().zip(schedule_ms).enumerate() {
        let low = Duration::from_millis(ms);
        let high = Duration::from_millis(ms * 12 / 10 + 60);
        if *gap < low || *gap > high {
            problems.push(format!(
                "after failure {}: {gap:?} not in [{low:?}, {high:?}]",
                n + 1
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "backoff gaps {gaps:?}: {}",
        problems.join("; ")
    );

    for (n, hit) in hits.iter().take(6).enumerate() {
        assert_eq!(
            hit.header("X-StatusSentry-Attempt"),
            Some((n + 1).to_string().as_str())
        );
        assert_eq!(hit.body, hits[0].body, "a retry carries the same envelope");
        assert_signed(hit, &[&secret]);
    }

    let delivered = wait_message_status(&server, s(&event, "id"), &id, "delivered", DELIVERY);
    // A list embeds the newest attempts only; the message's own route shows every one.
    let path = format!("/api/v1/messages/{}", s(&delivered, "id"));
    let message = server.expect("GET", &path, None, 200);
    let mut expected: Vec<Value> = vec![json!(500); 5];
    expected.push(json!(200));
    assert_eq!(attempt_codes(&message), expected, "{message}");
    let attempts = message["attempts"].as_array().unwrap();
    let numbers: Vec<Value> = attempts.iter().map(|a| a["attempt"].clone()).collect();
    assert_eq!(
        numbers,
        (1..=6).map(|n| json!(n)).collect::<Vec<_>>(),
        "attempt numbers"
    );
    assert_eq!(attempts[0]["response_body"], "try later");
}

#[test]
fn retry_after_is_honoured() {
    let _serial = timing_lock();
    let server = Server::start(
        "[delivery]\ninitial_backoff = \"50ms\"\nmax_backoff = \"100ms\"\nbatch_window = \"0ms\"\n",
    );
    // (what, status, Retry-After: None, seconds or an HTTP date two seconds ahead, gap range)
    enum After {
        Missing,
        Seconds(&'static str),
        DateIn2s,
    }
    let rows = [
        ("503 with seconds", 503, After::Seconds("1"), 1000, 2500),
        ("429 with seconds", 429, After::Seconds("1"), 1000, 2500),
        ("503 with an HTTP date", 503, After::DateIn2s, 1000, 3500),
        ("429 without Retry-After", 429, After::Missing, 50, 900),
    ];
    let mut cases = Vec::new();
    for (what, status, after, low, high) in rows {
        let receiver = Receiver::start();
        let calls = Arc::new(AtomicUsize::new(0));
        receiver.respond_with(move |_| {
            if calls.fetch_add(1, Ordering::SeqCst) > 0 {
                return Reply::status(200);
            }
            match &after {
                After::Missing => Reply::status(status),
                After::Seconds(secs) => Reply::status(status).header("Retry-After", secs),
                After::DateIn2s => Reply::status(status).header(
                    "Retry-After",
                    &httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2)),
                ),
            }
        });
        let (id, _) = endpoint_for(&server, &receiver, "/", json!({}));
        cases.push((what, status, receiver, id, low, high));
    }

    let event = publish(&server, "incident.created", seed_data());
    for (what, status, receiver, id, low, high) in &cases {
        let hits = receiver.wait_hits(2, Duration::from_secs(10));
        let gap = hits[1].at - hits[0].at;
        assert!(
            gap >= Duration::from_millis(*low) && gap <= Duration::from_millis(*high),
            "{what}: the retry came {gap:?} later, expected {low} ms to {high} ms"
        );
        let message = wait_message_status(&server, s(&event, "id"), id, "delivered", DELIVERY);
        assert_eq!(
            attempt_codes(&message),
            [json!(status), json!(200)],
            "{what}: {message}"
        );
    }
}

#[test]
fn transient_failures_back_off_and_are_logged() {
    let server = Server::start(
        "[delivery]\nbatch_window = \"0ms\"\ninitial_backoff = \"50ms\"\nmax_backoff = \"100ms\"\ntimeout = \"300ms\"\n",
    );
    let elsewhere = Receiver::start();
    let closed = ClosedPort::new();
    let closed_port = closed.port();
    // (what, how the receiver answers; None = nothing listens, status code, error)
    let rows: Vec<(&str, Option<Reply>, Value, Value)> = vec![
        ("500", Some(Reply::status(500)), json!(500), Value::Null),
        ("408", Some(Reply::status(408)), json!(408), Value::Null),
        (
            "302 (never followed)",
            Some(Reply::status(302).header("Location", &elsewhere.url("/moved"))),
            json!(302),
            json!("redirect"),
        ),
        (
            "timeout",
            Some(Reply::status(200).delay(Duration::from_millis(1500))),
            Value::Null,
            json!("timeout"),
        ),
        (
            "connection refused",
            None,
            Value::Null,
            json!("connection_refused"),
        ),
    ];
    let mut cases = Vec::new();
    for (what, reply, code, error) in rows {
        let (id, receiver) = match reply {
            Some(reply) => {
                let receiver = Receiver::start();
                receiver.reply_with(reply);
                (
                    endpoint_for(&server, &receiver, "/", json!({})).0,
                    Some(receiver),
                )
            }
            None => {
                let url = format!("http://127.0.0.1:{closed_port}/hook");
                (
                    s(&create_endpoint(&server, json!({"url": url})), "id").to_string(),
                    None,
                )
            }
        };
        cases.push((what, id, receiver, code, error));
    }

    let event = publish(&server, "incident.created", seed_data());
    for (what, id, _receiver, code, error) in &cases {
        let message = wait_for(
            DELIVERY,
            &format!("{what}: a retry after backing off"),
            || {
                let m = message_for(&server, s(&event, "id"), id).ok_or("no message")?;
                if attempt_codes(&m).len() >= 2 {
                    Ok(m)
                } else {
                    Err(format!("{m}"))
                }
            },
        );
        assert_eq!(
            message["status"], "pending",
            "{what}: the endpoint backs off, nothing is parked: {message}"
        );
        let attempt = &message["attempts"][0];
        assert_eq!(&attempt["status_code"], code, "{what}: {attempt}");
        assert_eq!(&attempt["error"], error, "{what}: {attempt}");
    }
    assert_eq!(elsewhere.count(), 0, "redirects are never followed");
}

#[test]
fn gone_disables_the_endpoint_and_keeps_its_messages() {
    let server = Server::start(FAST);
    let receiver = Receiver::start();
    receiver.reply_with(Reply::status(410));
    let (id, _) = endpoint_for(&server, &receiver, "/", json!({}));
    let first = publish(&server, "incident.created", incident("first"));

    let ep = wait_for(DELIVERY, "the endpoint to be disabled after 410", || {
        let ep = endpoint(&server, &id);
        if ep["enabled"] == false {
            Ok(ep)
        } else {
            Err(format!("last seen: {ep}"))
        }
    });
    assert_eq!(ep["disabled_reason"], "gone", "{ep}");
    let message = message_for(&server, s(&first, "id"), &id).expect("the message is kept");
    assert_eq!(message["status"], "pending", "{message}");
    assert_eq!(attempt_codes(&message), [json!(410)]);

    let second = publish(&server, "incident.created", incident("second"));
    assert_eq!(
        second["messages"], 0,
        "a disabled endpoint gets no messages for new events"
    );

    receiver.reply_with(Reply::status(200));
    let ep = server.expect(
        "PATCH",
        &format!("/api/v1/endpoints/{id}"),
        Some(json!({"enabled": true})),
        200,
    );
    assert_eq!(ep["enabled"], true);
    assert_eq!(
        ep["disabled_reason"],
        Value::Null,
        "enabling clears disabled_reason"
    );
    wait_message_status(&server, s(&first, "id"), &id, "delivered", DELIVERY);
    assert!(!receiver.event_ids().contains(&s(&second, "id").to_string()));
}

#[test]
fn client_errors_park_events_without_blocking_the_queue() {
    let server = Server::start(
        "[delivery]\nbatch_window = \"0ms\"\ninitial_backoff = \"100ms\"\nmax_backoff = \"200ms\"\n",
    );
    let single = Receiver::start();
    let batching = Receiver::start();
    for receiver in [&single, &batching] {
        receiver.respond_with(|hit: &Hit| {
            if hit.text().contains("poison") {
                Reply::status(400).body("bad payload")
            } else {
                Reply::status(200)
            }
        });
    }
    let (single_id, _) = endpoint_for(&server, &single, "/", json!({"batch_max": 1}));
    let (batching_id, _) = endpoint_for(&server, &batching, "/", json!({"batch_max": 100}));

    let poison = publish(&server, "incident.created", incident("poison"));
    let normal: Vec<String> = (0..3)
        .map(|i| {
            s(
                &publish(&server, "incident.created", incident(&format!("fine {i}"))),
                "id",
            )
            .to_string()
        })
        .collect();

    for endpoint_id in [&single_id, &batching_id] {
        for id in &normal {
            wait_message_status(&server, id, endpoint_id, "delivered", DELIVERY);
        }
        let parked =
            wait_message_status(&server, s(&poison, "id"), endpoint_id, "parked", DELIVERY);
        assert_eq!(attempt_codes(&parked)[0], 400, "{parked}");
        assert_eq!(parked["attempts"][0]["response_body"], "bad payload");
        let ep = endpoint(&server, endpoint_id);
        assert_eq!(ep["counts"]["parked"], 1, "{ep}");
        assert_eq!(ep["enabled"], true, "a 4xx does not disable the endpoint");
    }
    let delivered_in_order: Vec<String> = single
        .hits()
        .iter()
        .filter(|h| h.answered == 200)
        .flat_map(Hit::event_ids)
        .fold(Vec::new(), |mut seen, id| {
            if !seen.contains(&id) {
                seen.push(id);
            }
            seen
        });
    assert_eq!(
        delivered_in_order, normal,
        "later events went out, in order"
    );

    // Parked events are retried on their own and go out once the consumer accepts them.
    for receiver in [&single, &batching] {
        receiver.reply_with(Reply::status(200));
    }
    for endpoint_id in [&single_id, &batching_id] {
        wait_message_status(
            &server,
            s(&poison, "id"),
            endpoint_id,
            "delivered",
            DELIVERY,
        );
    }
}

#[test]
fn retry_for_fails_messages_and_replay_requeues_them() {
    let server = Server::start(
        "[delivery]\nbatch_window = \"0ms\"\ninitial_backoff = \"50ms\"\nmax_backoff = \"100ms\"\nretry_for = \"300ms\"\n",
    );
    let receiver = Receiver::start();
    receiver.reply_with(Reply::status(500));
    let (id, _) = endpoint_for(&server, &receiver, "/", json!({}));
    let event = publish(&server, "incident.created", seed_data());
    let event_id = s(&event, "id");

    let failed = wait_message_status(&server, event_id, &id, "failed", DELIVERY);
    let codes = attempt_codes(&failed);
    assert!(
        codes.len() >= 2,
        "retried until retry_for ran out: {failed}"
    );
    assert!(codes.iter().all(|c| *c == 500), "{failed}");
    assert_eq!(endpoint(&server, &id)["counts"]["failed"], 1);

    let replay = format!("/api/v1/endpoints/{id}/replay");
    let future = humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(3600))
        .to_string();
    assert_eq!(
        expect_action(&server, &replay, Some(json!({"since": future}))),
        json!({"requeued": 0})
    );
    assert_eq!(
        message_for(&server, event_id, &id).unwrap()["status"],
        "failed"
    );
    let (status, body) = server.api("POST", &replay, Some(json!({"since": "yesterday"})));
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        error_parts(&body),
        ("invalid_field".to_string(), Some("since".to_string()))
    );
    let (status, _) = server.api(
        "POST",
        "/api/v1/endpoints/ep_zzzzzzzzzzzzzzzz/replay",
        Some(json!({"since": future})),
    );
    assert_eq!(status, 404);

    receiver.reply_with(Reply::status(200));
    let since = humantime::format_rfc3339_seconds(
        parse_time(s(&event, "created_at")) - Duration::from_secs(60),
    );
    assert_eq!(
        expect_action(&server, &replay, Some(json!({"since": since.to_string()}))),
        json!({"requeued": 1})
    );
    wait_message_status(&server, event_id, &id, "delivered", DELIVERY);
    let last = receiver.hits().pop().unwrap();
    assert_eq!(last.event_ids(), [event_id]);
    assert_eq!(last.answered, 200);
}

#[test]
fn an_endpoint_failing_for_disable_after_is_disabled() {
    let server = Server::start(
        "[delivery]\nbatch_window = \"0ms\"\ninitial_backoff = \"50ms\"\nmax_backoff = \"100ms\"\ndisable_after = \"400ms\"\n",
    );
    let receiver = Receiver::start();
    receiver.reply_with(Reply::status(502));
    let (id, _) = endpoint_for(&server, &receiver, "/", json!({}));
    let event = publish(&server, "incident.created", seed_data());
    let ep = wait_for(DELIVERY, "the failing endpoint to be disabled", || {
        let ep = endpoint(&server, &id);
        if ep["enabled"] == false {
            Ok(ep)
        } else {
            Err(format!("last seen: {ep}"))
        }
    });
    assert_eq!(ep["disabled_reason"], "failing", "{ep}");
    assert_eq!(
        message_for(&server, s(&event, "id"), &id).unwrap()["status"],
        "pending",
        "its messages wait"
    );
    assert_eq!(
        publish(&server, "incident.created", seed_data())["messages"],
        0
    );
}

#[test]
fn a_message_can_be_resent_by_hand() {
    let server = Server::start(FAST);
    let receiver = Receiver::start();
    let (id, _) = endpoint_for(&server, &receiver, "/", json!({}));
    let event = publish(&server, "incident.created", seed_data());
    let event_id = s(&event, "id");
    let message = wait_message_status(&server, event_id, &id, "delivered", DELIVERY);

    expect_action(
        &server,
        &format!("/api/v1/messages/{}/retry", s(&message, "id")),
        None,
    );
    let hits = receiver.wait_hits(2, DELIVERY);
    assert_eq!(hits[1].event_ids(), [event_id], "the same event again");
    assert_eq!(hits[1].body, hits[0].body, "the same envelope");
    wait_for(DELIVERY, "a second recorded attempt", || {
        let m = message_for(&server, event_id, &id).unwrap();
        if m["status"] == "delivered" && attempt_codes(&m).len() == 2 {
            Ok(())
        } else {
            Err(format!("{m}"))
        }
    });

    let (status, body) = server.api("POST", "/api/v1/messages/msg_zzzzzzzzzzzzzzzz/retry", None);
    assert_eq!(status, 404, "{body}");
}

#[test]
fn test_events_go_to_one_endpoint_only() {
    let server = Server::start(FAST);
    let target = Receiver::start();
    let other = Receiver::start();
    let (id, secret) = endpoint_for(&server, &target, "/", json!({}));
    let (other_id, _) = endpoint_for(&server, &other, "/", json!({}));

    // (request body, expected type)
    let rows = [
        (None, "incident.created"),
        (
            Some(json!({"type": "sla.breach_warning"})),
            "sla.breach_warning",
        ),
    ];
    let mut samples = Vec::new();
    for (body, kind) in rows {
        let sample = server.expect("POST", &format!("/api/v1/endpoints/{id}/test"), body, 202);
        assert_eq!(
            keys(&sample)[..4],
            ["id", "type", "created_at", "data"],
            "{sample}"
        );
        assert!(is_id(s(&sample, "id"), "evt_"), "{sample}");
        assert_eq!(sample["type"], kind);
        let hit = first_hit_with(&target, s(&sample, "id"));
        assert_signed(&hit, &[&secret]);
        assert_eq!(hit.header("X-StatusSentry-Event"), Some(kind));
        assert_eq!(hit.json()["data"], sample["data"]);
        let event = server.expect(
            "GET",
            &format!("/api/v1/events/{}", s(&sample, "id")),
            None,
            200,
        );
        let messages = event["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 1, "queued for this endpoint only: {event}");
        assert_eq!(messages[0]["endpoint_id"], id.as_str());
        samples.push(sample);
    }
    assert!(messages_of(&server, &other_id).is_empty());
    assert_eq!(other.count(), 0);

    let (status, body) = server.api(
        "POST",
        &format!("/api/v1/endpoints/{id}/test"),
        Some(json!({"type": "nope"})),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        error_parts(&body),
        ("invalid_field".to_string(), Some("type".to_string()))
    );
    let (status, _) = server.api("POST", "/api/v1/endpoints/ep_zzzzzzzzzzzzzzzz/test", None);
    assert_eq!(status, 404);

    // A sample is a valid event of its type.
    for sample in samples {
        publish(&server, s(&sample, "type"), sample["data"].clone());
    }
}

// ---------------------------------------------------------------------------------------
// Crashes and shutdown

#[test]
fn kill_9_during_delivery_loses_nothing() {
    let _serial = timing_lock();
    let mut server = Server::start("[delivery]\ntimeout = \"60s\"\n");
    let receiver = Receiver::start();
    receiver.reply_with(Reply::status(200).delay(Duration::from_millis(10)));
    endpoint_for(
        &server,
        &receiver,
        "/",
        json!({"batch_max": 10, "batch_window_ms": 0}),
    );

    // The receiver holds the first request while all 2,000 events are accepted, so that the
    // kill below lands in the middle of delivering them.
    receiver.hold();
    let started = Instant::now();
    let publishers: Vec<_> = (0..8)
        .map(|p| {
            let api = server.client();
            thread::spawn(move || {
                (0..250)
                    .map(|i| {
                        let body = json!({"type": "incident.created", "data": incident(&format!("p{p} e{i}"))});
                        s(&api.expect("POST", "/api/v1/events", Some(body), 202), "id").to_string()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let accepted: HashSet<String> = publishers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(accepted.len(), 2000);
    receiver.release();

    let distinct = |r: &Receiver| r.event_ids().into_iter().collect::<HashSet<_>>();
    let publishing = started.elapsed();
    wait_for(
        Duration::from_secs(30),
        "400 events delivered before the kill",
        || {
            let got = distinct(&receiver).len();
            if got >= 400 {
                Ok(())
            } else {
                Err(format!(
                    "{got} distinct events in {} requests; publishing took {publishing:?}",
                    receiver.count()
                ))
            }
        },
    );
    server.kill9();
    let at_kill = distinct(&receiver).len();
    assert!(
        at_kill < 2000,
        "the kill came after everything was delivered; the test proves nothing"
    );

    server.restart();
    wait_for(
        Duration::from_secs(90),
        "every accepted event after the restart",
        || {
            let got = distinct(&receiver);
            let missing = accepted.difference(&got).count();
            if missing == 0 {
                Ok(())
            } else {
                Err(format!(
                    "{missing} missing ({at_kill} had arrived at the kill)"
                ))
            }
        },
    );
    assert!(
        distinct(&receiver).is_subset(&accepted),
        "only accepted events are delivered"
    );
}

#[test]
fn sigterm_exits_zero() {
    let mut server = Server::start("");
    let started = Instant::now();
    let status = server.stop();
    assert!(
        status.success(),
        "SIGTERM must exit 0, got {status}; log:\n{}",
        server.log()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "an idle server stops at once"
    );
}

#[test]
fn sigterm_lets_the_request_in_flight_finish() {
    let mut server =
        Server::start("[server]\nshutdown_timeout = \"5s\"\n[delivery]\nbatch_window = \"0ms\"\n");
    let receiver = Receiver::start();
    receiver.reply_with(Reply::status(200).delay(Duration::from_millis(800)));
    let (id, _) = endpoint_for(&server, &receiver, "/", json!({}));
    let event = publish(&server, "incident.created", seed_data());
    let hit = receiver.wait_hits(1, DELIVERY).remove(0);

    sigterm(server.child_mut().id());
    let status = wait_exit(server.child_mut(), Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no exit within 10 s of SIGTERM; log:\n{}", server.log()));
    let exited = Instant::now();
    server.forget_child();
    assert!(status.success(), "SIGTERM must exit 0, got {status}");
    assert!(
        exited - hit.at >= Duration::from_millis(800),
        "the process exited before the request in flight was answered"
    );

    server.restart();
    let message = message_for(&server, s(&event, "id"), &id).unwrap();
    assert_eq!(
        message["status"], "delivered",
        "the finished request was recorded before exit: {message}"
    );
    assert_eq!(attempt_codes(&message), [json!(200)]);
    assert_eq!(receiver.count(), 1);
}
