//! The delivery queue's memory and the cheap unauthenticated routes (issue 16, items 3 and
//! 10): a backing-off endpoint holds no envelopes in memory, `/healthz` writes nothing,
//! `/metrics` keeps its counts in step with the API's, and a list of messages embeds only the
//! newest attempts.

use std::net::SocketAddr;
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

/// A loopback URL where every connection is refused: its port is bound, so that no other
/// test can take it meanwhile, but never listened on. Keep the socket for the test.
fn refusing_url() -> (socket2::Socket, String) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    socket.bind(&any.into()).expect("bind a port");
    let port = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("its address")
        .port();
    (socket, format!("http://127.0.0.1:{port}/hook"))
}

#[test]
fn endpoints_backing_off_hold_no_envelopes_in_memory() {
    let _heavy = timing_lock();
    // An hour's backoff: once its first request is refused, each endpoint waits with its
    // read-ahead queue for the rest of the test.
    let mut server = Server::start("[delivery]\ninitial_backoff = \"1h\"\n");
    let pid = server.child_mut().id();
    let (_ports, dead): (Vec<_>, Vec<String>) = (0..10)
        .map(|_| {
            let (port, url) = refusing_url();
            let body = json!({"url": url, "event_types": ["incident.created"]});
            (port, s(&create_endpoint(&server, body), "id").to_string())
        })
        .unzip();
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

#[test]
fn healthz_writes_nothing_however_often_it_is_asked() {
    let server = Server::start("");
    let api = server.client();
    assert_eq!(api.raw("GET", "/healthz", &[], None).status, 200);
    let db = server.db_path();
    let wal = db.with_file_name(format!("{}-wal", db.file_name().unwrap().to_string_lossy()));
    let wal_len = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    // `data_version` changes when another connection commits anything to the file.
    let watcher =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let version = || -> i64 {
        watcher
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .unwrap()
    };
    let (before, wal_before) = (version(), wal_len());
    // Long enough for several of the probes' once-a-second looks at an idle store.
    let end = std::time::Instant::now() + Duration::from_millis(2500);
    let mut probes = 0;
    while std::time::Instant::now() < end {
        let reply = api.raw("GET", "/healthz", &[], None);
        assert_eq!((reply.status, reply.json()), (200, json!({"status": "ok"})));
        probes += 1;
    }
    assert_eq!(version(), before, "{probes} probes committed a write");
    assert_eq!(wal_len(), wal_before, "{probes} probes grew the log");
    println!("{probes} probes of /healthz, no write");
}

/// `statussentry_messages{status}` from `/metrics`, as pending, parked, delivered, failed.
fn metric_counts(server: &Server) -> [i64; 4] {
    let text = server.client().raw("GET", "/metrics", &[], None).text();
    ["pending", "parked", "delivered", "failed"].map(|status| {
        let name = format!("statussentry_messages{{status=\"{status}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(name.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    })
}

/// The same counts summed over every endpoint the API shows.
fn api_counts(server: &Server) -> [i64; 4] {
    let endpoints = list_all(server, "/api/v1/endpoints", 500);
    ["pending", "parked", "delivered", "failed"].map(|status| {
        endpoints
            .iter()
            .map(|ep| ep["counts"][status].as_i64().expect("a count"))
            .sum()
    })
}

/// Waits until `/metrics` and the API agree, on `want`.
fn counts_agree(server: &Server, want: [i64; 4], after: &str) {
    wait_for(Duration::from_secs(30), after, || {
        let (metrics, api) = (metric_counts(server), api_counts(server));
        if metrics == want && api == want {
            Ok(())
        } else {
            Err(format!(
                "metrics {metrics:?}, API {api:?}, want {want:?} (pending, parked, delivered, failed)"
            ))
        }
    });
}

#[test]
fn metrics_count_messages_as_the_api_does() {
    let _timing = timing_lock();
    let mut server = Server::start(
        "[delivery]\ninitial_backoff = \"100ms\"\nmax_backoff = \"100ms\"\nretry_for = \"2s\"\n",
    );
    let endpoint = |receiver: &Receiver| {
        let body = json!({"url": receiver.url("/hook"), "batch_window_ms": 0});
        s(&create_endpoint(&server, body), "id").to_string()
    };
    let (ok, refuses, breaks, throttles) = (
        Receiver::start(),
        Receiver::start(),
        Receiver::start(),
        Receiver::start(),
    );
    refuses.reply_with(Reply::status(400));
    breaks.reply_with(Reply::status(500));
    throttles.reply_with(Reply::status(503).header("Retry-After", "3600"));
    let a = endpoint(&ok);
    let b = endpoint(&refuses);
    let c = endpoint(&breaks);
    let d = endpoint(&throttles);
    let events: Vec<String> = (0..5)
        .map(|i| {
            s(
                &publish(&server, "incident.created", incident(&format!("m{i}"))),
                "id",
            )
            .into()
        })
        .collect();
    // Delivered to A; parked at B, then failed once retry_for (2 s) has passed; retried at C
    // until failed; pending at D, which asked for an hour's pause after its first request.
    counts_agree(&server, [5, 0, 5, 10], "deliveries, parks, failures");

    breaks.reply_with(Reply::status(200));
    let replayed = server.expect(
        "POST",
        &format!("/api/v1/endpoints/{c}/replay"),
        Some(json!({"since": "2000-01-01T00:00:00Z"})),
        200,
    );
    assert_eq!(replayed["requeued"], 5, "{replayed}");
    counts_agree(&server, [5, 0, 10, 5], "a replay");

    refuses.reply_with(Reply::status(200));
    let parked_then_failed = message_for(&server, &events[0], &b).expect("B's message");
    let id = s(&parked_then_failed, "id");
    server.expect("POST", &format!("/api/v1/messages/{id}/retry"), None, 202);
    counts_agree(&server, [5, 0, 11, 4], "a retry");

    // A manual resend lifts D's pause: D's next request carries all five, and the four not
    // resent are past retry_for when it is refused again.
    let pending = message_for(&server, &events[0], &d).expect("D's message");
    let id = s(&pending, "id");
    server.expect("POST", &format!("/api/v1/messages/{id}/retry"), None, 202);
    counts_agree(&server, [1, 0, 11, 8], "a resend to a paused endpoint");

    server.expect("DELETE", &format!("/api/v1/endpoints/{a}"), None, 204);
    counts_agree(&server, [1, 0, 6, 8], "deleting an endpoint");

    // Counted again from the store at the next start.
    server.restart();
    counts_agree(&server, [1, 0, 6, 8], "a restart");
}

#[test]
fn a_list_embeds_the_newest_attempts_and_one_message_shows_all() {
    let server = Server::start("[delivery]\ninitial_backoff = \"10ms\"\nmax_backoff = \"10ms\"\n");
    let receiver = Receiver::start();
    receiver.script(vec![Reply::status(500); 7]);
    let body = json!({"url": receiver.url("/hook"), "batch_window_ms": 0});
    let ep = s(&create_endpoint(&server, body), "id").to_string();
    let event = s(
        &publish(&server, "incident.created", incident("retried")),
        "id",
    )
    .to_string();
    wait_message_status(&server, &event, &ep, "delivered", Duration::from_secs(30));

    let listed = messages_of(&server, &ep);
    assert_eq!(listed.len(), 1);
    let m = &listed[0];
    assert_eq!(m["attempt_count"], 8, "{m}");
    let numbers = |m: &serde_json::Value| -> Vec<i64> {
        m["attempts"]
            .as_array()
            .expect("attempts")
            .iter()
            .map(|a| a["attempt"].as_i64().expect("attempt number"))
            .collect()
    };
    assert_eq!(
        numbers(m),
        vec![4, 5, 6, 7, 8],
        "the newest five, oldest first"
    );
    let one = server.expect(
        "GET",
        &format!("/api/v1/messages/{}", s(m, "id")),
        None,
        200,
    );
    assert_eq!(one["attempt_count"], 8, "{one}");
    assert_eq!(numbers(&one), (1..=8).collect::<Vec<_>>());
    assert_eq!(one["attempts"][7]["status_code"], 200);
    assert_eq!(one["attempts"][0]["status_code"], 500);
    // An event's view lists its messages, so it embeds the newest five too.
    let ev = server.expect("GET", &format!("/api/v1/events/{event}"), None, 200);
    assert_eq!(numbers(&ev["messages"][0]), vec![4, 5, 6, 7, 8]);
    assert_eq!(ev["messages"][0]["attempt_count"], 8);
    let (status, _) = server.api("GET", "/api/v1/messages/msg_999999", None);
    assert_eq!(status, 404);
    let (status, _) = server.api("GET", "/api/v1/messages/nonsense", None);
    assert_eq!(status, 404);
}
