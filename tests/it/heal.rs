//! Endpoints that heal (SPEC 4.4, last paragraph), seen from a loopback receiver: an endpoint
//! disabled for failing is probed every `recovery_probe` with one signed request (its oldest
//! pending message, else a heartbeat envelope), comes back on a 2xx and then receives every
//! event it missed, in order (those already past `retry_for` as `failed`, replayable);
//! probing ends after `recovery_for`, on a 410 or on a person's PATCH, and its schedule
//! survives a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

const DEADLINE: Duration = Duration::from_secs(20);

/// Fails fast: disabled after 400 ms of failures, backoff capped at 100 ms.
fn config(probe_ms: u64, recovery_for: &str, extra: &str) -> String {
    format!(
        "[delivery]\nbatch_window = \"0ms\"\ninitial_backoff = \"50ms\"\nmax_backoff = \"100ms\"\n\
         disable_after = \"400ms\"\nrecovery_probe = \"{probe_ms}ms\"\nrecovery_for = \"{recovery_for}\"\n{extra}"
    )
}

/// A receiver that answers whatever status `status` holds at the time.
fn receiver_answering(status: &Arc<AtomicU16>) -> Receiver {
    let receiver = Receiver::start();
    let status = status.clone();
    receiver.respond_with(move |_| Reply::status(status.load(Ordering::SeqCst)));
    receiver
}

fn endpoint(server: &Server, id: &str) -> Value {
    server.expect("GET", &format!("/api/v1/endpoints/{id}"), None, 200)
}

fn metric(server: &Server, line_prefix: &str) -> f64 {
    let text = server.client().raw("GET", "/metrics", &[], None).text();
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_prefix} in /metrics:\n{text}"))
}

/// Creates an endpoint at `receiver`, publishes one event that it fails, and waits until it
/// is disabled for failing; returns its id, its secret, the event's id and how many requests
/// the receiver had seen by then (every later one is a probe).
fn disabled_endpoint(server: &Server, receiver: &Receiver) -> (String, String, String, usize) {
    let created = create_endpoint(
        server,
        json!({"url": receiver.url("/heal"), "batch_max": 3}),
    );
    let id = s(&created, "id").to_string();
    let secret = s(&created, "secret").to_string();
    let event = publish(server, "incident.created", seed_data());
    let ep = wait_for(DEADLINE, "the failing endpoint to be disabled", || {
        let ep = endpoint(server, &id);
        if ep["enabled"] == false {
            Ok(ep)
        } else {
            Err(format!("last seen: {ep}"))
        }
    });
    assert_eq!(ep["disabled_reason"], "failing", "{ep}");
    (id, secret, s(&event, "id").to_string(), receiver.count())
}

/// Asserts that each request from `from` on started at least `interval` after the one
/// before it began (a probe goes `interval` after the previous request ended).
fn assert_spaced(hits: &[Hit], from: usize, interval: Duration) {
    for i in from.max(1)..hits.len() {
        let gap = hits[i].at.duration_since(hits[i - 1].at);
        assert!(
            gap >= interval,
            "request {i} came {gap:?} after the one before, less than {interval:?}"
        );
    }
}

#[test]
fn a_failing_endpoint_is_probed_comes_back_and_gets_everything_it_missed_in_order() {
    let _timing = timing_lock();
    let probe = Duration::from_millis(300);
    let server = Server::start(&config(300, "60s", ""));
    let status = Arc::new(AtomicU16::new(502));
    let receiver = receiver_answering(&status);
    let (id, secret, first, n0) = disabled_endpoint(&server, &receiver);
    let shown = endpoint(&server, &id);
    assert_eq!(shown["recovery"]["probes"], 0, "{shown}");
    assert!(
        is_rfc3339_seconds_z(s(&shown["recovery"], "next_probe_at")),
        "{shown}"
    );
    assert!(
        is_rfc3339_seconds_z(s(&shown["recovery"], "until")),
        "{shown}"
    );

    // Accepted while it is disabled: no messages for it now, all of them later.
    let mut want = vec![first.clone()];
    for _ in 0..5 {
        let event = publish(&server, "incident.created", seed_data());
        assert_eq!(event["messages"], 0, "{event}");
        want.push(s(&event, "id").to_string());
    }

    // Several probes, each its oldest pending message, signed, spaced by recovery_probe.
    let hits = receiver.wait_hits(n0 + 3, DEADLINE);
    for hit in &hits[n0..] {
        assert_signed(hit, &[&secret]);
        assert_eq!(
            hit.event_ids(),
            std::slice::from_ref(&first),
            "a probe carries the oldest"
        );
    }
    assert_spaced(&hits, n0, probe);
    let shown = wait_for(DEADLINE, "the view to count the probes", || {
        let ep = endpoint(&server, &id);
        if ep["recovery"]["probes"].as_i64() >= Some(3) {
            Ok(ep)
        } else {
            Err(format!("last seen: {ep}"))
        }
    });
    assert_eq!(shown["enabled"], false);
    assert!(
        metric(
            &server,
            "statussentry_recovery_probes_total{outcome=\"failed\"}"
        ) >= 3.0,
        "failed probes counted"
    );
    // Each probe is an attempt of its message like any other.
    let message = message_for(&server, &first, &id).expect("the first message");
    assert_eq!(message["status"], "pending", "{message}");
    assert!(
        message["attempts"].as_array().map_or(0, Vec::len) >= 3,
        "{message}"
    );

    // It comes back: enabled, and everything it missed arrives after what was pending.
    status.store(200, Ordering::SeqCst);
    let ep = wait_for(DEADLINE, "the endpoint to be enabled again", || {
        let ep = endpoint(&server, &id);
        if ep["enabled"] == true {
            Ok(ep)
        } else {
            Err(format!("last seen: {ep}"))
        }
    });
    assert_eq!(ep["disabled_reason"], Value::Null, "{ep}");
    assert_eq!(ep["recovery"], Value::Null, "{ep}");
    let after = publish(&server, "incident.created", seed_data());
    want.push(s(&after, "id").to_string());
    let delivered = wait_for(DEADLINE, "every missed event at the receiver", || {
        let got: Vec<String> = receiver
            .hits()
            .iter()
            .filter(|h| h.answered == 200)
            .flat_map(Hit::event_ids)
            .collect();
        if got.len() >= want.len() {
            Ok(got)
        } else {
            Err(format!("{} of {}", got.len(), want.len()))
        }
    });
    // In acceptance order, no gap, nothing twice (no crash here, so at-least-once is once).
    assert_sequence(
        &delivered,
        &want,
        "events accepted by the recovered endpoint",
    );
    for event in &want {
        wait_message_status(&server, event, &id, "delivered", DEADLINE);
    }
    assert_eq!(
        metric(
            &server,
            "statussentry_recovery_probes_total{outcome=\"recovered\"}"
        ),
        1.0
    );
    assert!(
        server.log().contains("is enabled again"),
        "{}",
        server.log()
    );
}

#[test]
fn probing_ends_after_recovery_for_and_pings_when_nothing_is_pending() {
    let _timing = timing_lock();
    let probe = Duration::from_millis(200);
    // The message fails (retry_for) at the second probe or so; later probes are pings.
    let server = Server::start(&config(200, "2s", "retry_for = \"1s\"\n"));
    let status = Arc::new(AtomicU16::new(503));
    let receiver = receiver_answering(&status);
    let (id, secret, first, n0) = disabled_endpoint(&server, &receiver);
    let ep = wait_for(DEADLINE, "probing to end", || {
        let ep = endpoint(&server, &id);
        if ep["recovery"].is_null() {
            Ok(ep)
        } else {
            Err(format!("last seen: {ep}"))
        }
    });
    assert_eq!(ep["enabled"], false, "{ep}");
    assert_eq!(ep["disabled_reason"], "failing", "{ep}");
    wait_message_status(&server, &first, &id, "failed", DEADLINE);
    // An absence cannot be polled for: several intervals show that no probe comes any more.
    let at_end = receiver.count();
    thread::sleep(probe * 4);
    let hits = receiver.hits();
    assert_eq!(hits.len(), at_end, "a probe after recovery_for");
    let probes = &hits[n0..];
    // About 2 s of 200 ms intervals: never more than fit, and a few at least.
    assert!(
        (3..=10).contains(&probes.len()),
        "{} probes in recovery_for",
        probes.len()
    );
    assert_spaced(&hits, n0, probe);
    let pings: Vec<&Hit> = probes
        .iter()
        .filter(|h| h.header("X-StatusSentry-Event") == Some("heartbeat"))
        .collect();
    assert!(!pings.is_empty(), "no ping once nothing was pending");
    for ping in pings {
        assert_signed(ping, &[&secret]);
        assert_eq!(ping.json()["data"]["endpoint_id"], id.as_str());
        assert_eq!(ping.json()["data"]["pending"], 0);
    }
}

#[test]
fn a_probe_answered_410_makes_it_gone_and_ends_probing() {
    let probe = Duration::from_millis(200);
    let server = Server::start(&config(200, "60s", ""));
    let status = Arc::new(AtomicU16::new(500));
    let receiver = receiver_answering(&status);
    let (id, _, first, n0) = disabled_endpoint(&server, &receiver);
    status.store(410, Ordering::SeqCst);
    let ep = wait_for(DEADLINE, "the probe's 410 to make it gone", || {
        let ep = endpoint(&server, &id);
        if ep["disabled_reason"] == "gone" {
            Ok(ep)
        } else {
            Err(format!("last seen: {ep}"))
        }
    });
    assert_eq!(ep["enabled"], false, "{ep}");
    assert_eq!(ep["recovery"], Value::Null, "{ep}");
    let at_gone = receiver.count();
    assert!(at_gone > n0, "no probe reached the receiver");
    thread::sleep(probe * 4);
    assert_eq!(receiver.count(), at_gone, "probed after a 410");
    let message = message_for(&server, &first, &id).expect("the message");
    assert_eq!(message["status"], "pending", "its messages wait: {message}");
    assert_eq!(
        metric(
            &server,
            "statussentry_recovery_probes_total{outcome=\"gone\"}"
        ),
        1.0
    );
}

#[test]
fn a_person_s_patch_ends_probing() {
    let probe = Duration::from_millis(200);
    let server = Server::start(&config(200, "60s", ""));
    let status = Arc::new(AtomicU16::new(500));
    let receiver = receiver_answering(&status);
    let (id, _, _, n0) = disabled_endpoint(&server, &receiver);
    receiver.wait_hits(n0 + 1, DEADLINE);
    let patched = server.expect(
        "PATCH",
        &format!("/api/v1/endpoints/{id}"),
        Some(json!({"enabled": false})),
        200,
    );
    assert_eq!(patched["disabled_reason"], "manual", "{patched}");
    assert_eq!(patched["recovery"], Value::Null, "{patched}");
    // A probe may have been on its way when the PATCH landed.
    thread::sleep(probe);
    let at_patch = receiver.count();
    thread::sleep(probe * 4);
    assert_eq!(
        receiver.count(),
        at_patch,
        "probed after a person disabled it"
    );
    assert_eq!(endpoint(&server, &id)["disabled_reason"], "manual");
}

#[test]
fn the_schedule_survives_a_restart() {
    let _timing = timing_lock();
    let probe = Duration::from_millis(600);
    let mut server = Server::start(&config(600, "60s", ""));
    let status = Arc::new(AtomicU16::new(502));
    let receiver = receiver_answering(&status);
    let (id, _, first, n0) = disabled_endpoint(&server, &receiver);
    receiver.wait_hits(n0 + 2, DEADLINE);
    let before = wait_for(DEADLINE, "two probes recorded", || {
        let ep = endpoint(&server, &id);
        match ep["recovery"]["probes"].as_i64() {
            Some(n) if n >= 2 => Ok(n),
            _ => Err(format!("last seen: {ep}")),
        }
    });
    server.restart();
    let shown = endpoint(&server, &id);
    assert_eq!(shown["enabled"], false, "{shown}");
    assert!(
        shown["recovery"]["probes"].as_i64() >= Some(before),
        "the count starts again after a restart: {shown}"
    );
    let at_restart = receiver.count();
    let hits = receiver.wait_hits(at_restart + 2, DEADLINE);
    // Across the restart too, no probe comes sooner than recovery_probe after the last.
    assert_spaced(&hits, n0, probe);
    let shown = wait_for(DEADLINE, "the count to go on", || {
        let ep = endpoint(&server, &id);
        if ep["recovery"]["probes"].as_i64() >= Some(before + 2) {
            Ok(ep)
        } else {
            Err(format!("last seen: {ep}"))
        }
    });
    assert_eq!(shown["enabled"], false);
    status.store(200, Ordering::SeqCst);
    wait_message_status(&server, &first, &id, "delivered", DEADLINE);
    wait_until(DEADLINE, "the endpoint to be enabled again", || {
        endpoint(&server, &id)["enabled"] == true
    });
}

#[test]
fn missed_events_past_retry_for_fail_at_once_and_can_be_replayed() {
    let retry_for = Duration::from_millis(1500);
    let server = Server::start(&config(300, "60s", "retry_for = \"1500ms\"\n"));
    let status = Arc::new(AtomicU16::new(500));
    let receiver = receiver_answering(&status);
    let (id, _, _, _) = disabled_endpoint(&server, &receiver);
    let old = publish(&server, "incident.created", seed_data());
    let old_id = s(&old, "id").to_string();
    let accepted = parse_time(s(&old, "created_at"));
    // Time itself is the condition: the event is past retry_for before the endpoint is back
    // (created_at is to the second, so a second more).
    wait_until(DEADLINE, "the missed event to be past retry_for", || {
        accepted
            .elapsed()
            .is_ok_and(|e| e > retry_for + Duration::from_secs(1))
    });
    status.store(200, Ordering::SeqCst);
    wait_until(DEADLINE, "the endpoint to be enabled again", || {
        endpoint(&server, &id)["enabled"] == true
    });
    let message = message_for(&server, &old_id, &id).expect("the missed event is queued");
    assert_eq!(message["status"], "failed", "{message}");
    assert!(
        !receiver.event_ids().contains(&old_id),
        "an event past retry_for was sent"
    );
    let replayed = server.expect(
        "POST",
        &format!("/api/v1/endpoints/{id}/replay"),
        Some(json!({"since": "2000-01-01T00:00:00Z"})),
        200,
    );
    assert!(replayed["requeued"].as_i64() >= Some(1), "{replayed}");
    wait_message_status(&server, &old_id, &id, "delivered", DEADLINE);
    assert!(receiver.event_ids().contains(&old_id));
}
