//! The delivery queue's memory and the cheap unauthenticated routes (issue 16, items 3 and
//! 10): a backing-off endpoint holds no envelopes in memory, `/healthz` writes nothing,
//! `/metrics` keeps its counts in step with the API's, and a list of messages embeds only the
//! newest attempts.

use std::net::TcpListener;
use std::time::Duration;

use serde_json::json;

use crate::harness::*;

/// The resident memory of a process, in bytes, from `/proc/<pid>/status`.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kb * 1024
}

/// A loopback URL where nothing listens: every connection is refused.
fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let port = listener.local_addr().expect("its address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}/hook")
}

#[test]
fn endpoints_backing_off_hold_no_envelopes_in_memory() {
    let _heavy = timing_lock();
    // An hour's backoff: once its first request is refused, each endpoint waits with its
    // read-ahead queue for the rest of the test.
    let mut server = Server::start("[delivery]\ninitial_backoff = \"1h\"\n");
    let pid = server.child_mut().id();
    let dead: Vec<String> = (0..10)
        .map(|_| {
            let body = json!({"url": dead_url(), "event_types": ["incident.created"]});
            s(&create_endpoint(&server, body), "id").to_string()
        })
        .collect();
    let receiver = Receiver::start();
    let body = json!({"url": receiver.url("/ok"), "event_types": ["incident.resolved"],
                      "batch_window_ms": 0});
    create_endpoint(&server, body);
    // 100 events of 200 KB for each of the 10 endpoints: 20 MB on disk, 200 MB if the
    // dispatcher held every message's envelope.
    let big = "x".repeat(200_000);
    for i in 0..100 {
        publish(&server, "incident.created", incident(&format!("{i} {big}")));
    }
    // Every endpoint has had its first request refused and backs off...
    wait_for(
        Duration::from_secs(30),
        "every endpoint backing off",
        || {
            let backing_off = dead
                .iter()
                .filter(|id| {
                    let ep = server.expect("GET", &format!("/api/v1/endpoints/{id}"), None, 200);
                    !ep["backoff_until"].is_null()
                })
                .count();
            if backing_off == dead.len() {
                Ok(())
            } else {
                Err(format!("{backing_off} of {}", dead.len()))
            }
        },
    );
    // ...and the dispatcher has gone round every endpoint since (filling its read-ahead
    // queue): it sent an event it was told of later.
    publish(&server, "incident.resolved", incident("sentinel"));
    receiver.wait_hits(1, Duration::from_secs(30));
    let rss = rss_bytes(pid);
    println!(
        "VmRSS with 10 endpoints x 100 pending x 200 KB, backing off: {} KiB",
        rss / 1024
    );
    assert!(
        rss < 80 * 1024 * 1024,
        "VmRSS {} KiB: pending envelopes are held in memory",
        rss / 1024
    );
    // The messages are all still there, pending, and go out once the endpoints answer.
    for id in &dead {
        let ep = server.expect("GET", &format!("/api/v1/endpoints/{id}"), None, 200);
        assert_eq!(ep["counts"]["pending"], 100, "{ep}");
    }
}
