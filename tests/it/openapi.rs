//! The OpenAPI document at `GET /api/v1/openapi.json` (SPEC 5) against the real binary: it is
//! public and secret-free, its paths and methods are exactly the routes the server answers,
//! and the bugs Schemathesis found while checking the server against it stay fixed.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

const DEAD_URL: &str = "http://127.0.0.1:9/hook";

/// Sends `head` (and `body`) on a fresh connection as given, byte for byte, and returns the
/// status and the body of the answer. For requests an HTTP client library would refuse to
/// send, such as a control character in a header.
fn raw_request(addr: SocketAddr, head: &[u8], body: &[u8]) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    stream.write_all(head).expect("write head");
    stream.write_all(body).expect("write body");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read answer");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete answer: {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head:?}"));
    let json = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, json)
}

/// A `POST /api/v1/events` of `body` with one extra header line, exactly as given.
fn publish_with_header(server: &Server, header_line: &[u8], body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let mut head = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        server.addr(),
        body.len()
    )
    .into_bytes();
    head.extend_from_slice(header_line);
    head.extend_from_slice(b"\r\n\r\n");
    raw_request(server.addr(), &head, body.as_bytes())
}

fn error_message(body: &Value) -> String {
    body["error"]["message"].as_str().unwrap_or("").to_string()
}

#[test]
fn the_document_is_public_and_its_routes_are_the_servers() {
    let server = Server::start("");
    let endpoint = create_endpoint(&server, json!({"url": DEAD_URL}));
    let secret = s(&endpoint, "secret").to_string();
    let api = server.client();

    // No token needed, the bytes of assets/openapi.json, and no secret in them.
    let reply = api.raw("GET", "/api/v1/openapi.json", &[], None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("Content-Type"), Some("application/json"));
    let file = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/openapi.json"))
        .expect("read assets/openapi.json");
    assert!(
        reply.body == file,
        "the served document is assets/openapi.json"
    );
    let text = reply.text();
    assert!(!text.contains(TOKEN) && !text.contains(&secret));
    let doc = reply.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let refused = api.raw("POST", "/api/v1/openapi.json", &[], None);
    assert_eq!(refused.status, 405);
    assert_eq!(refused.header("Allow"), Some("GET, HEAD"));

    // Every documented operation reaches a handler, and every other method on a documented
    // path is 405 with the documented methods in `Allow`.
    let auth = format!("Bearer {TOKEN}");
    let methods = ["GET", "POST", "PATCH", "DELETE", "PUT"];
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() > 20, "{} paths", paths.len());
    for (template, item) in paths {
        let path = template.replace("{id}", "x");
        let documented: BTreeSet<String> = methods
            .iter()
            .filter(|m| item.get(m.to_ascii_lowercase()).is_some())
            .map(|m| m.to_string())
            .collect();
        assert!(!documented.is_empty(), "{template} has operations");
        for method in methods {
            let body = matches!(method, "POST" | "PATCH" | "PUT").then_some(&b"{}"[..]);
            let headers: Vec<(&str, &str)> = if body.is_some() {
                vec![
                    ("Authorization", &auth),
                    ("Content-Type", "application/json"),
                ]
            } else {
                vec![("Authorization", &auth)]
            };
            let reply = api.raw(method, &path, &headers, body);
            let what = format!("{method} {path}: {} {}", reply.status, reply.text());
            if documented.contains(method) {
                assert_ne!(reply.status, 405, "{what}");
                let no_route =
                    reply.status == 404 && error_message(&reply.json()).starts_with("no route");
                assert!(!no_route, "{what}");
            } else {
                assert_eq!(reply.status, 405, "{what}");
                let allow: BTreeSet<String> = reply
                    .header("Allow")
                    .unwrap_or_else(|| panic!("no Allow header: {what}"))
                    .split(',')
                    .map(|m| m.trim().to_string())
                    .filter(|m| m != "HEAD")
                    .collect();
                assert_eq!(allow, documented, "{what}");
            }
        }
    }
}

#[test]
fn paths_are_read_as_written() {
    let server = Server::start("[delivery]\nbatch_window = \"0s\"\n");
    let endpoint = create_endpoint(&server, json!({"url": DEAD_URL}));
    let id = s(&endpoint, "id").to_string();
    publish(&server, "incident.created", seed_data());
    let message = wait_for(Duration::from_secs(20), "the event's message", || {
        messages_of(&server, &id)
            .pop()
            .ok_or_else(|| "no message yet".to_string())
    });
    let message_id = s(&message, "id").to_string();
    let seq = message_id.strip_prefix("msg_").expect("msg_ id");
    server.expect("GET", &format!("/api/v1/messages/{message_id}"), None, 200);

    // A `+` in a path segment is a `+` (it is a space only in a query string).
    let (status, body) = server.api("GET", "/api/v1/no+route", None);
    assert_eq!(status, 404);
    assert!(error_message(&body).contains("/api/v1/no+route"), "{body}");
    // A message has one id: a sign or a leading zero names no message.
    for alias in [
        format!("msg_+{seq}"),
        format!("msg_%2B{seq}"),
        format!("msg_0{seq}"),
    ] {
        let (status, body) = server.api("GET", &format!("/api/v1/messages/{alias}"), None);
        assert_eq!(status, 404, "{alias}: {body}");
    }
    // An empty segment fits no route: `endpoints//x` is not the endpoint "x", and a trailing
    // slash is not the route without it.
    for path in [
        format!("/api/v1/endpoints/{id}/"),
        format!("/api/v1/endpoints//{id}"),
        "/api/v1/endpoints/".to_string(),
    ] {
        let (status, body) = server.api("GET", &path, None);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(
            error_message(&body).starts_with("no route"),
            "{path}: {body}"
        );
    }
    // Numbers in a query have one spelling too.
    for query in ["limit=%2B5", "limit=05", "cursor=c05", "cursor=c%2B5"] {
        let (status, body) = server.api("GET", &format!("/api/v1/events?{query}"), None);
        assert_eq!(status, 400, "{query}: {body}");
    }
    server.expect("GET", "/api/v1/events?limit=5", None, 200);
}

#[test]
fn an_idempotency_key_is_printable_ascii() {
    let server = Server::start("");
    let body = json!({"type": "incident.created", "data": seed_data()});
    for (key, want) in [
        (&b"Idempotency-Key: a\x01b"[..], 400),
        (&b"Idempotency-Key: a\x00b"[..], 400),
        (&b"Idempotency-Key: a\x7fb"[..], 400),
        (&b"Idempotency-Key: order 42 created"[..], 202),
    ] {
        let (status, answer) = publish_with_header(&server, key, &body);
        let shown = String::from_utf8_lossy(key);
        assert_eq!(status, want, "{shown:?}: {answer}");
        if want == 400 {
            assert_eq!(
                error_parts(&answer),
                ("invalid_field".into(), Some("Idempotency-Key".into())),
                "{shown:?}"
            );
        }
    }
    let long = format!("Idempotency-Key: {}", "k".repeat(256));
    let (status, _) = publish_with_header(&server, long.as_bytes(), &body);
    assert_eq!(status, 400, "256 characters");
    // Nothing was stored for the refused keys: only the accepted request made an event.
    assert_eq!(list_all(&server, "/api/v1/events", 500).len(), 1);
}

#[test]
fn numbers_and_times_are_read_exactly() {
    let server = Server::start("");
    // Just under 100: serde_json's fast float parser read it as 100 and it was refused.
    let data = r#"{"type":"sla.breach_warning","data":{"monitor_id":"mon_x","sla_target":99.99999999999999,"projected_breach_at":"2023-10-27T14:30:00Z"}}"#;
    let reply = server.client().raw(
        "POST",
        "/api/v1/events",
        &[
            ("Authorization", &format!("Bearer {TOKEN}")),
            ("Content-Type", "application/json"),
        ],
        Some(data.as_bytes()),
    );
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert!(
        reply.text().contains("\"sla_target\":99.99999999999999"),
        "the number round-trips: {}",
        reply.text()
    );
    let monitor = server.expect(
        "POST",
        "/api/v1/monitors",
        Some(
            json!({"name": "m", "url": DEAD_URL, "interval_secs": 60, "timeout_ms": 1000,
                    "sla_target": 99.99999999999999, "enabled": false}),
        ),
        201,
    );
    assert_eq!(monitor["sla_target"], json!(99.99999999999999));

    // RFC 3339 times before 1970 are times, and `since` from then replays everything.
    let mut moon = seed_data();
    moon["started_at"] = json!("1969-07-20T20:17:40Z");
    publish(&server, "incident.created", moon);
    let endpoint = create_endpoint(&server, json!({"url": DEAD_URL}));
    let replayed = server.expect(
        "POST",
        &format!("/api/v1/endpoints/{}/replay", s(&endpoint, "id")),
        Some(json!({"since": "1960-01-01T00:00:00Z"})),
        200,
    );
    assert_eq!(replayed["requeued"], 0);
    // And what is not RFC 3339 is still refused.
    for bad in [
        " 2023-10-27T14:30:00Z",
        "2023-10-27 14:30:00Z",
        "2023-02-29T00:00:00Z",
    ] {
        let mut data = seed_data();
        data["started_at"] = json!(bad);
        let (status, body) = server.api(
            "POST",
            "/api/v1/events",
            Some(json!({"type": "incident.created", "data": data})),
        );
        assert_eq!(status, 400, "{bad:?}: {body}");
        assert_eq!(error_parts(&body).1.as_deref(), Some("data.started_at"));
    }
}

#[test]
fn a_blank_body_is_not_an_empty_one() {
    let server = Server::start("");
    let endpoint = create_endpoint(&server, json!({"url": DEAD_URL}));
    let path = format!("/api/v1/endpoints/{}/test", s(&endpoint, "id"));
    let auth = format!("Bearer {TOKEN}");
    let json_headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    // No body: an action route takes it as `{}`.
    let reply = server
        .client()
        .raw("POST", &path, &[("Authorization", &auth)], None);
    assert_eq!(reply.status, 202, "{}", reply.text());
    // Whitespace is a body, and not JSON; nothing is sent for it.
    for blank in [&b" "[..], b"\n", b" \r\n\t "] {
        let reply = server
            .client()
            .raw("POST", &path, &json_headers, Some(blank));
        assert_eq!(reply.status, 400, "{blank:?}: {}", reply.text());
        assert_eq!(error_parts(&reply.json()).0, "invalid_json");
    }
    assert_eq!(list_all(&server, "/api/v1/events", 500).len(), 1);
}

#[test]
fn a_monitor_method_is_written_as_http_writes_it() {
    let server = Server::start("");
    for (method, want) in [("GET", 201), ("HEAD", 201), ("get", 400), ("Head", 400)] {
        let (status, body) = server.api(
            "POST",
            "/api/v1/monitors",
            Some(
                json!({"name": "m", "url": DEAD_URL, "interval_secs": 60, "timeout_ms": 1000,
                        "method": method, "enabled": false}),
            ),
        );
        assert_eq!(status, want, "{method}: {body}");
    }
}
