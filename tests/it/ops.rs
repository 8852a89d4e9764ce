//! Operations: `/metrics`, `/healthz` when the store cannot be written, the `sign` and
//! `verify` tools, systemd readiness, online backups, and that no secret or token reaches the
//! log.

use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::harness::*;

/// Parses the Prometheus text format strictly enough to catch malformed output: every sample
/// line is `name{labels} value` with a float value, and every metric family has HELP and TYPE.
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let name = parts.next().expect("TYPE names a metric");
            let kind = parts.next().expect("TYPE gives a kind");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "unknown type in {line:?}"
            );
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter without _total: {line:?}");
            } else {
                assert!(!name.ends_with("_total"), "_total on a {kind}: {line:?}");
            }
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.starts_with("statussentry_"),
            "unprefixed metric {line:?}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(
            typed.contains(family),
            "sample before its TYPE line: {line:?}"
        );
        assert!(
            !series.contains("http://") && !series.contains("evt_") && !series.contains("ep_"),
            "an URL or id in a label: {line:?}"
        );
        samples.push((series.to_string(), value));
    }
    samples
}

fn sample(samples: &[(String, f64)], series: &str) -> f64 {
    samples
        .iter()
        .find(|(s, _)| s == series)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no sample {series}"))
}

fn metrics(server: &Server) -> Vec<(String, f64)> {
    let reply = server.client().raw("GET", "/metrics", &[], None);
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .unwrap_or("")
            .starts_with("text/plain")
    );
    parse_metrics(&reply.text())
}

#[test]
fn metrics_parse_and_counters_move_after_deliveries() {
    let server = Server::start("[delivery]\nbatch_window = \"0ms\"\nbatch_max = 1\n");
    let receiver = Receiver::start();
    let before = metrics(&server);
    assert_eq!(
        sample(
            &before,
            "statussentry_delivery_requests_total{outcome=\"success\"}"
        ),
        0.0
    );
    create_endpoint(&server, json!({"url": receiver.url("/hook")}));
    for _ in 0..3 {
        publish(&server, "incident.created", seed_data());
    }
    receiver.wait_hits(3, Duration::from_secs(20));
    wait_until(Duration::from_secs(20), "three successes counted", || {
        sample(
            &metrics(&server),
            "statussentry_delivery_requests_total{outcome=\"success\"}",
        ) == 3.0
    });
    let after = metrics(&server);
    assert_eq!(
        sample(
            &after,
            "statussentry_events_accepted_total{type=\"incident.created\"}"
        ),
        3.0
    );
    assert_eq!(
        sample(
            &after,
            "statussentry_delivery_attempt_duration_seconds_count"
        ),
        3.0
    );
    assert_eq!(
        sample(&after, "statussentry_delivery_lag_seconds_count"),
        3.0
    );
    assert_eq!(
        sample(
            &after,
            "statussentry_delivery_lag_seconds_bucket{le=\"+Inf\"}"
        ),
        3.0
    );
    assert_eq!(
        sample(&after, "statussentry_endpoints{state=\"enabled\"}"),
        1.0
    );
    wait_until(
        Duration::from_secs(10),
        "messages gauge shows three delivered",
        || {
            sample(
                &metrics(&server),
                "statussentry_messages{status=\"delivered\"}",
            ) == 3.0
        },
    );
    assert_eq!(
        sample(&after, "statussentry_build_info{version=\"0.1.0\"}"),
        1.0
    );
}

#[test]
fn healthz_answers_503_while_the_store_cannot_be_written() {
    let server = Server::start("");
    let reply = server.client().raw("GET", "/healthz", &[], None);
    assert_eq!((reply.status, reply.json()), (200, json!({"status": "ok"})));

    // Another process takes the write lock and holds it, as a stuck writer or a full disk would.
    let lock = rusqlite::Connection::open(server.db_path()).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    wait_until(Duration::from_secs(30), "healthz says 503", || {
        server.client().raw("GET", "/healthz", &[], None).status == 503
    });
    lock.execute_batch("ROLLBACK").unwrap();
    wait_until(Duration::from_secs(30), "healthz recovers", || {
        server.client().raw("GET", "/healthz", &[], None).status == 200
    });
}

fn run_tool(args: &[&str], stdin: &[u8]) -> (i32, String) {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut child = command(dir.path())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A tool that refuses its arguments exits without reading its input; writing to it then
    // fails with a broken pipe, which is not the test's concern (its exit code and output are).
    match child.stdin.take().unwrap().write_all(stdin) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            panic!("cannot write the tool's input: {e}")
        }
        _ => {}
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn sign_and_verify_round_trip_and_refuse() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let old = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let body = br#"{"id":"evt_0123456789abcdef","type":"incident.created"}"#;
    let now = unix_now();
    let (code, header) = run_tool(&["sign", "--secret", secret], body);
    assert_eq!(code, 0, "{header}");
    let header = header.trim().to_string();
    assert!(header.starts_with("t="), "{header}");
    // The tool's answer agrees with an independent HMAC.
    let t: i64 = header[2..header.find(',').unwrap()].parse().unwrap();
    assert!((t - now).abs() <= 5);
    assert_eq!(header, format!("t={t},v1={}", stripe_v1(secret, t, body)));

    let stale = now - 301;
    let stale_header = format!("t={stale},v1={}", stripe_v1(secret, stale, body));
    let rotated = format!(
        "t={now},v1={},v1={}",
        stripe_v1(secret, now, body),
        stripe_v1(old, now, body)
    );
    let rows: [(&str, &[u8], &str, i32, &str); 7] = [
        (&header, body, secret, 0, "valid"),
        (
            &header,
            b"{\"id\":\"evt_tampered\"}",
            secret,
            1,
            "signature mismatch",
        ),
        (&header, body, old, 1, "signature mismatch"),
        (
            &stale_header,
            body,
            secret,
            1,
            "timestamp outside tolerance",
        ),
        (&rotated, body, secret, 0, "valid"),
        (&rotated, body, old, 0, "valid"),
        ("v1=deadbeef", body, secret, 1, "malformed header"),
    ];
    for (h, b, s, want_code, want_text) in rows {
        let (code, out) = run_tool(&["verify", "--secret", s, "--header", h], b);
        assert_eq!(code, want_code, "verify {h} with {s}: {out}");
        assert!(out.contains(want_text), "verify {h} with {s}: {out}");
    }
    // A wider tolerance accepts the stale one; a missing flag is a usage error.
    let (code, out) = run_tool(
        &[
            "verify",
            "--secret",
            secret,
            "--header",
            &stale_header,
            "--tolerance",
            "600",
        ],
        body,
    );
    assert_eq!((code, out.trim()), (0, "valid"));
    let (code, _) = run_tool(&["verify", "--secret", secret], body);
    assert_eq!(code, 2);
}

#[test]
fn ready_is_sent_on_the_notify_socket_once_listening() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let config = write_config(dir.path(), "");
    let mut child = command(dir.path())
        .env("NOTIFY_SOCKET", &socket_path)
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 64];
    let got = socket.recv(&mut buf);
    sigterm(child.id());
    let status = wait_exit(&mut child, STOP_DEADLINE);
    let n = got.expect("a datagram on NOTIFY_SOCKET within 20 s");
    assert_eq!(&buf[..n], b"READY=1");
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[test]
fn a_backup_of_a_live_database_holds_every_event() {
    let server = Server::start("");
    let mut ids = Vec::new();
    for i in 0..50 {
        let event = publish(
            &server,
            "incident.created",
            incident(&format!("backup {i}")),
        );
        ids.push(s(&event, "id").to_string());
    }
    // Publishers keep writing while the copy is taken.
    let client = server.client();
    let writer = std::thread::spawn(move || {
        for i in 0..100 {
            let (status, _) = client.call(
                "POST",
                "/api/v1/events",
                Some(json!({"type": "incident.created", "data": incident(&format!("during {i}"))})),
            );
            assert_eq!(status, 202);
        }
    });
    let dest = server.db_path().with_file_name("backup.sqlite");
    let out = run_with_deadline(
        command(server.db_path().parent().unwrap()).args([
            "backup",
            dest.to_str().unwrap(),
            "--config",
            "statussentry.toml",
        ]),
        Duration::from_secs(60),
    );
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = rusqlite::Connection::open(&dest).unwrap();
    let check: String = copy
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let mut stmt = copy.prepare("SELECT id FROM events").unwrap();
    let stored: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for id in &ids {
        assert!(stored.contains(id), "{id} missing from the backup");
    }
    // A second backup to the same file is refused rather than overwriting it.
    let again = run_with_deadline(
        command(server.db_path().parent().unwrap()).args([
            "backup",
            dest.to_str().unwrap(),
            "--config",
            "statussentry.toml",
        ]),
        Duration::from_secs(60),
    );
    assert!(!again.status.success());
}

#[test]
fn no_secret_or_token_reaches_the_log() {
    let mut server = Server::start("[delivery]\nbatch_window = \"0ms\"\n");
    let receiver = Receiver::start();
    let created = create_endpoint(
        &server,
        json!({"url": receiver.url("/hook?token=path-secret-123")}),
    );
    let id = s(&created, "id").to_string();
    let first = s(&created, "secret").to_string();
    let revealed = server.expect("GET", &format!("/api/v1/endpoints/{id}/secret"), None, 200);
    let rotated = server.expect(
        "POST",
        &format!("/api/v1/endpoints/{id}/rotate-secret"),
        Some(json!({})),
        200,
    );
    publish(&server, "incident.created", seed_data());
    // One at a time: two events waiting together would rightly go out as one batch.
    receiver.wait_hits(1, Duration::from_secs(20));
    server.expect(
        "POST",
        &format!("/api/v1/endpoints/{id}/test"),
        Some(json!({})),
        202,
    );
    receiver.wait_hits(2, Duration::from_secs(20));
    receiver.reply_with(Reply::status(500));
    publish(&server, "incident.created", seed_data());
    receiver.wait_hits(3, Duration::from_secs(20));
    // A wrong token, and a request with the right one in a bad place.
    let reply = server.client().raw(
        "GET",
        "/api/v1/endpoints",
        &[("Authorization", "Bearer wrong-token-abcdef")],
        None,
    );
    assert_eq!(reply.status, 401);
    server.restart();
    let log = server.log();
    let needles: [&str; 5] = [
        TOKEN,
        &first,
        s(&revealed, "secret"),
        s(&rotated, "secret"),
        "path-secret-123",
    ];
    for needle in needles {
        assert!(
            !log.contains(needle),
            "{needle:?} appears in the log:\n{log}"
        );
    }
    assert!(log.contains("listening on"), "the log is captured at all");
}

#[test]
fn a_short_configured_admin_token_is_warned_of_at_start() {
    // Past the sign-in limit a guesser still learns which token is right (the correct one
    // must always pass), so a configured token shorter than 32 characters is warned of.
    let short = "sixteen-chars-ok";
    let warning = "the configured admin token is 16 characters";
    let server = Server::start_with_env(
        "",
        &[("STATUSSENTRY_ADMIN_TOKEN", std::path::Path::new(short))],
    );
    wait_until(Duration::from_secs(10), "the warning", || {
        server.log().contains(warning)
    });
    assert!(!server.log().contains(short), "the token reached the log");
    // The harness's own token is 36 characters: no warning.
    let server = Server::start("");
    server.expect("GET", "/api/v1/endpoints", None, 200);
    assert!(
        !server.log().contains("the configured admin token is"),
        "{}",
        server.log()
    );
}
