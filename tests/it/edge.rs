//! The admin listener's edge, against the real binary: it survives quiet spells longer than
//! every timeout, descriptor exhaustion and one connection too many; a request head that
//! is too long, too slow, malformed or for another Host gets an answer; a body's claimed
//! length is never an allocation; and threads, descriptors and memory stay bounded by
//! `server.max_connections` under thousands of idle and slow connections.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

/// One answer read off a raw connection.
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {}", self.status, self.head))
    }

    /// The SPEC 5 error code, asserting the error shape.
    fn code(&self) -> String {
        error_parts(&self.json()).0
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .expect("write timeout");
    stream
}

/// Reads one answer (head and `Content-Length` body); `None` when the connection closed or
/// failed before a whole answer arrived.
fn read_answer(stream: &mut TcpStream) -> Option<Raw> {
    read_answers(stream, 1).pop()
}

/// Reads up to `n` answers sent back to back (pipelined requests' answers may arrive in one
/// segment); stops early when the connection closes or fails.
fn read_answers(stream: &mut TcpStream, n: usize) -> Vec<Raw> {
    let mut data = Vec::new();
    let mut answers = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while answers.len() < n {
        let parsed = data
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .and_then(|end| {
                let head = String::from_utf8_lossy(&data[..end]).into_owned();
                let status = head.split_whitespace().nth(1)?.parse().ok()?;
                let mut raw = Raw {
                    status,
                    head,
                    body: Vec::new(),
                };
                let length: usize = raw
                    .header("Content-Length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if data.len() < end + 4 + length {
                    return None;
                }
                raw.body = data[end + 4..end + 4 + length].to_vec();
                Some((raw, end + 4 + length))
            });
        if let Some((raw, used)) = parsed {
            answers.push(raw);
            data.drain(..used);
            continue;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => data.extend_from_slice(&buf[..k]),
        }
    }
    answers
}

/// Sends `request` on a new connection and reads the answer; panics when there is none.
fn exchange(addr: SocketAddr, request: &[u8]) -> Raw {
    let mut stream = connect(addr);
    // The server may answer and close before it has read everything; that is fine.
    let _ = stream.write_all(request);
    read_answer(&mut stream).unwrap_or_else(|| {
        panic!(
            "no answer to {:?}",
            String::from_utf8_lossy(&request[..request.len().min(120)])
        )
    })
}

/// True once the connection is closed by the server (EOF or reset) within `deadline`.
fn closed_within(stream: &mut TcpStream, deadline: Duration) -> bool {
    stream
        .set_read_timeout(Some(deadline))
        .expect("read timeout");
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        }
    }
}

fn healthz(server: &Server) -> u16 {
    let (status, _) = server.api("GET", "/healthz", None);
    status
}

fn assert_alive(server: &mut Server) {
    assert!(
        server
            .child_mut()
            .try_wait()
            .expect("poll server")
            .is_none(),
        "the server exited; log:\n{}",
        server.log()
    );
    assert_eq!(healthz(server), 200, "log:\n{}", server.log());
}

// ---------------------------------------------------------------------------------------
// The listener lives through quiet spells

#[test]
fn a_client_is_served_after_a_quiet_spell_longer_than_every_timeout() {
    // The admin sockets' idle timeout is 30 s. Before the fix it also sat on the listener,
    // where it made accept() fail with EAGAIN after 30 s without a new connection, and the
    // accept loop ended for good: every later client got "connection refused".
    let mut server = Server::start("");
    assert_eq!(healthz(&server), 200);
    let quiet = Duration::from_secs(38);
    // The quiet spell is what is under test, not a wait for something to happen.
    thread::sleep(quiet);
    assert_alive(&mut server);
    let log = server.log();
    for complaint in ["Error accepting", "accept loop", "cannot accept"] {
        assert!(
            !log.contains(complaint),
            "the accept loop complained during the quiet spell:\n{log}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// A claimed length is not an allocation

#[test]
fn a_huge_content_length_is_answered_without_reading_or_allocating_it() {
    let mut server = Server::start("");
    let addr = server.addr();
    // 100 GB claimed on a route that reads no body: answered, then closed, since the body
    // will not be read (it used to be drained into a buffer of that size, and the process
    // aborted on the failed allocation).
    let mut stream = connect(addr);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000\r\n\r\n")
        .expect("send");
    let answer = read_answer(&mut stream).expect("an answer");
    assert_eq!(answer.status, 200);
    assert!(
        closed_within(&mut stream, Duration::from_secs(10)),
        "the connection stayed open with 100 GB of body unread"
    );
    // The same on an API route that refuses it from its length: 413, then closed.
    let answer = exchange(
        addr,
        format!(
            "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: 100000000000\r\n\r\n{{"
        )
        .as_bytes(),
    );
    assert_eq!(answer.status, 413);
    assert_eq!(answer.code(), "payload_too_large");
    assert_alive(&mut server);

    // A body under the limit that a refusal leaves unread is drained, and the connection
    // serves its next request.
    let mut stream = connect(addr);
    let body = vec![b' '; 4000];
    let mut request =
        b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n"
            .to_vec();
    request.extend_from_slice(&body);
    request.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    stream.write_all(&request).expect("send");
    let answers = read_answers(&mut stream, 2);
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses,
        [401, 200],
        "the unauthorised POST, then the kept-alive connection's next request"
    );
}

/// Sends `head`, then `body` repeated without end, until the server stops reading (the write
/// fails) or `most` bytes are sent; returns how many bytes of body were sent and the answer.
fn stream_endless_body(
    addr: SocketAddr,
    head: &str,
    body: &'static [u8],
    most: usize,
) -> (usize, Option<Raw>) {
    let mut stream = connect(addr);
    stream.write_all(head.as_bytes()).expect("send head");
    let mut writer = stream.try_clone().expect("clone");
    let sender = thread::spawn(move || {
        let block = body.repeat((64 * 1024) / body.len());
        let mut sent = 0;
        while sent < most {
            match writer.write(&block) {
                Ok(0) | Err(_) => break,
                Ok(n) => sent += n,
            }
        }
        sent
    });
    let answer = read_answer(&mut stream);
    let sent = sender.join().expect("sender");
    (sent, answer)
}

#[test]
fn a_chunked_body_is_bounded_by_the_bytes_it_takes_on_the_wire() {
    // The chunked decoder collected a chunk-size line into memory until `\r` and skipped a
    // chunk extension until `\r`; the body limit counted decoded bytes only. So one request
    // without a token could make a connection thread allocate without end (hex digits) or
    // read without end (extension bytes). The wire bytes of a chunked body are capped at
    // twice `max_body_bytes` and 64 KiB (here 2 x 256 KiB + 64 KiB).
    let mut server = Server::start("");
    let addr = server.addr();
    let pid = server.child_mut().id();
    // Far past the cap and the loopback's socket buffers (a few MiB each way).
    const MOST: usize = 256 * 1024 * 1024;
    const BOUND: usize = 48 * 1024 * 1024;
    let before = footprint(pid).rss_kib;
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let cases: [(&str, &str, &'static [u8], u16); 4] = [
        ("endless hex digits, no token", "", b"ffffffff", 401),
        ("endless extension bytes, no token", "", b"1;aaaaaaa", 401),
        ("endless hex digits", &auth, b"ffffffff", 413),
        ("endless extension bytes", &auth, b"1;aaaaaaa", 413),
    ];
    for (what, auth, body, status) in cases {
        let head = format!(
            "POST /api/v1/events HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
        );
        let (sent, answer) = stream_endless_body(addr, &head, body, MOST);
        assert!(
            sent < BOUND,
            "{what}: the server read {sent} bytes of one body and was still reading"
        );
        let answer = answer.unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(answer.status, status, "{what}: {}", answer.head);
        if status == 413 {
            assert_eq!(answer.code(), "payload_too_large", "{what}");
        }
        assert_alive(&mut server);
    }
    let grown = footprint(pid).rss_kib.saturating_sub(before);
    assert!(
        grown < 32 * 1024,
        "RSS grew by {grown} KiB over four endless bodies"
    );

    // A body of ordinary chunks up to the limit still goes through.
    let data = json!({
        "type": "incident.created",
        "data": incident(&"a long title ".repeat(15_000)),
    })
    .to_string();
    let mut request = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in data.as_bytes().chunks(4096) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let answer = exchange(addr, &request);
    assert_eq!(
        answer.status,
        202,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
}

#[test]
fn a_body_over_the_limit_gets_its_413_while_the_client_still_sends_it() {
    // The answer comes from the length, before the body is read; a body over the drain limit
    // is then left unread and the connection ends. Closed with the client's bytes unread, the
    // socket was reset, and a client still sending (most send the whole body before reading)
    // got the reset instead of the 413. The server now reads on for up to 2 s and 1 MiB
    // after the answer, as it does after a refused head.
    let server = Server::start("[server]\nmax_body_bytes = 2048\n");
    let mut stream = connect(server.addr());
    let body = vec![b' '; 256 * 1024];
    let head = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("send head");
    stream
        .write_all(&body[..4096])
        .expect("send the body's start");
    // The answer is out (and the server has moved on to closing) before the rest is sent.
    let mut peek = [0u8; 1];
    wait_until(
        Duration::from_secs(10),
        "the answer to arrive",
        || matches!(stream.peek(&mut peek), Ok(n) if n > 0),
    );
    thread::sleep(Duration::from_millis(100));
    // A client that fails on a failed send (ureq does) never reads the answer.
    stream
        .write_all(&body[4096..])
        .expect("the rest of the body is taken, not reset");
    let answer = read_answer(&mut stream).expect("the 413, not a reset");
    assert_eq!(answer.status, 413);
    assert_eq!(answer.code(), "payload_too_large");
}

#[test]
fn a_body_that_follows_a_late_head_has_the_idle_timeout_not_what_was_left_of_the_heads() {
    // A body of at most 1 KiB is read as the request is made, and it used to be read under
    // the socket timeout cut to what was left of the header timeout: a head that took most
    // of its time left its body a few milliseconds, and the request got no answer.
    let server = Server::start("[server]\nheader_timeout = \"3s\"\n");
    let mut stream = connect(server.addr());
    let started = Instant::now();
    let body = json!({"type": "incident.created", "data": incident("late head")}).to_string();
    stream
        .write_all(
            format!(
                "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .expect("send head");
    // The head ends 1.5 s into its 3 s; the body comes 4 s later, longer than any read
    // timeout the head's deadline set, well within the idle timeout (30 s).
    thread::sleep(Duration::from_millis(1500).saturating_sub(started.elapsed()));
    stream.write_all(b"\r\n").expect("end the head");
    thread::sleep(Duration::from_secs(4));
    stream.write_all(body.as_bytes()).expect("send body");
    let answer = read_answer(&mut stream).expect("an answer to the late body");
    assert_eq!(
        answer.status,
        202,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
}

// ---------------------------------------------------------------------------------------
// max_connections

fn metric_value(server: &Server, name: &str) -> f64 {
    let reply = server.client().raw("GET", "/metrics", &[], None);
    assert_eq!(reply.status, 200);
    reply
        .text()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[test]
fn a_connection_past_max_connections_gets_503_with_retry_after() {
    let mut server = Server::start("[server]\nmax_connections = 4\nheader_timeout = \"30s\"\n");
    let addr = server.addr();
    let refused_before = metric_value(&server, "statussentry_http_connections_refused_total");
    // Four connections that send nothing hold the four places.
    let mut idle: Vec<TcpStream> = (0..4).map(|_| connect(addr)).collect();
    let answer = wait_for(
        Duration::from_secs(10),
        "a 503 for the fifth connection",
        || {
            let mut stream = connect(addr);
            let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
            match read_answer(&mut stream) {
                Some(a) if a.status == 503 => Ok(a),
                Some(a) => Err(format!("got {}", a.status)),
                None => Err("no answer".into()),
            }
        },
    );
    assert_eq!(answer.header("Retry-After").as_deref(), Some("1"));
    assert_eq!(answer.code(), "unavailable");
    assert_eq!(answer.header("Connection").as_deref(), Some("close"));
    // The held connections are still served: the refusal took nothing from them.
    idle[0]
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    assert_eq!(read_answer(&mut idle[0]).expect("answer").status, 200);
    idle.clear();
    wait_until(Duration::from_secs(10), "a free place again", || {
        server.client().raw("GET", "/healthz", &[], None).status == 200
    });
    let refused = metric_value(&server, "statussentry_http_connections_refused_total");
    assert!(
        refused >= refused_before + 1.0,
        "refusals counted: {refused_before} then {refused}"
    );
    assert_alive(&mut server);
}

// ---------------------------------------------------------------------------------------
// header_timeout

#[test]
fn a_head_that_trickles_in_is_cut_off_at_header_timeout_while_others_are_served() {
    let _timing = timing_lock();
    let mut server = Server::start("[server]\nheader_timeout = \"1500ms\"\n");
    let addr = server.addr();
    let mut slow = connect(addr);
    let started = Instant::now();
    slow.write_all(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .expect("send");
    // One byte every 200 ms: each read is quick, so only a deadline on the whole head can
    // end it (the 30 s idle timeout is per read). Between bytes the client looks for an
    // answer; the wait for one paces the drip.
    slow.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    let dripping = thread::spawn(move || {
        let mut sent = 0;
        let mut peek = [0u8; 1];
        while started.elapsed() < Duration::from_secs(20) {
            if slow.write_all(b"s").is_err() {
                break;
            }
            sent += 1;
            if slow.peek(&mut peek).is_ok() {
                break;
            }
        }
        let elapsed = started.elapsed();
        slow.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        (sent, elapsed, read_answer(&mut slow))
    });
    // Meanwhile others are served.
    for _ in 0..5 {
        assert_eq!(healthz(&server), 200);
    }
    let (sent, elapsed, answer) = dripping.join().expect("drip thread");
    assert!(
        elapsed < Duration::from_secs(10),
        "a head trickling in was not cut off ({sent} bytes over {elapsed:?})"
    );
    assert!(
        elapsed >= Duration::from_millis(1400),
        "cut off before the header timeout: {elapsed:?}"
    );
    let answer = answer.expect("an answer to the late head");
    assert_eq!(answer.status, 408);
    assert_eq!(answer.code(), "unavailable");

    // A kept-alive connection may stay idle between requests longer than the header timeout
    // (up to the 30 s idle timeout); the deadline runs from a request's first byte.
    let mut kept = connect(addr);
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    assert_eq!(read_answer(&mut kept).expect("first answer").status, 200);
    // The idle spell between requests is what is under test.
    thread::sleep(Duration::from_millis(2500));
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    assert_eq!(read_answer(&mut kept).expect("second answer").status, 200);

    // A new connection that sends nothing is closed at the header timeout, without an answer.
    let mut silent = connect(addr);
    let opened = Instant::now();
    let mut buf = Vec::new();
    silent
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("read timeout");
    let _ = silent.read_to_end(&mut buf);
    assert!(
        opened.elapsed() < Duration::from_secs(10),
        "a silent connection was held {:?}",
        opened.elapsed()
    );
    assert!(buf.is_empty(), "a silent connection got {buf:?}");
    assert_alive(&mut server);
}

// ---------------------------------------------------------------------------------------
// Every head gets an answer

#[test]
fn every_refused_head_gets_an_answer_in_the_error_shape() {
    let mut server = Server::start("");
    let addr = server.addr();
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let long_line = format!("GET /api/v1/events?x={} HTTP/1.1\r\n\r\n", "a".repeat(9000));
    let long_head = format!(
        "GET /api/v1/events HTTP/1.1\r\nHost: x\r\n{}\r\n",
        format!("X-Pad: {}\r\n", "p".repeat(4000)).repeat(20)
    );
    let many_headers = format!(
        "GET /api/v1/events HTTP/1.1\r\nHost: x\r\n{}\r\n",
        "X-A: b\r\n".repeat(150)
    );
    // What is sent, and the status, code and field it must get.
    type Row<'a> = (&'a str, Vec<u8>, u16, &'a str, Option<&'a str>);
    let rows: Vec<Row> = vec![
        (
            "obs-text in a header value",
            format!(
                "POST /api/v1/events HTTP/1.1\r\nHost: x\r\n{auth}Idempotency-Key: \u{e9}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
            )
            .into_bytes(),
            400,
            "invalid_field",
            Some("Idempotency-Key"),
        ),
        (
            "a Latin-1 byte in a header value",
            b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nX-Name: caf\xe9\r\n\r\n".to_vec(),
            400,
            "invalid_field",
            Some("X-Name"),
        ),
        (
            "a header line without a colon",
            b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nnonsense\r\n\r\n".to_vec(),
            400,
            "invalid_field",
            None,
        ),
        (
            "a malformed request line",
            b"GET\r\n\r\n".to_vec(),
            400,
            "invalid_field",
            None,
        ),
        (
            "an over-long request line",
            long_line.into_bytes(),
            414,
            "payload_too_large",
            None,
        ),
        (
            "an over-long head",
            long_head.into_bytes(),
            431,
            "payload_too_large",
            None,
        ),
        (
            "too many header lines",
            many_headers.into_bytes(),
            431,
            "payload_too_large",
            None,
        ),
        (
            "an unknown transfer coding",
            format!(
                "POST /api/v1/events HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
            )
            .into_bytes(),
            501,
            "invalid_field",
            Some("Transfer-Encoding"),
        ),
        (
            "a second Transfer-Encoding line with another coding",
            format!(
                "POST /api/v1/events HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n"
            )
            .into_bytes(),
            501,
            "invalid_field",
            Some("Transfer-Encoding"),
        ),
        (
            "both Transfer-Encoding and Content-Length",
            format!(
                "POST /api/v1/events HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            )
            .into_bytes(),
            400,
            "invalid_field",
            Some("Transfer-Encoding"),
        ),
        (
            "an unparsable Content-Length",
            b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n".to_vec(),
            400,
            "invalid_field",
            Some("Content-Length"),
        ),
    ];
    for (what, request, status, code, field) in rows {
        let answer = exchange(addr, &request);
        assert_eq!(answer.status, status, "{what}: {}", answer.head);
        let (got_code, got_field) = error_parts(&answer.json());
        assert_eq!(
            (got_code.as_str(), got_field.as_deref()),
            (code, field),
            "{what}"
        );
        assert_eq!(
            answer.header("Connection").as_deref(),
            Some("close"),
            "{what}: the connection closes after a refused head"
        );
    }
    // A well-formed request on the same server still goes through.
    assert_alive(&mut server);
    assert_eq!(
        server.api("GET", "/api/v1/events", None).0,
        200,
        "log:\n{}",
        server.log()
    );
}

#[test]
fn a_host_outside_allowed_hosts_is_421() {
    let mut server = Server::start("[server]\nallowed_hosts = [\"status.example.com\"]\n");
    let addr = server.addr();
    let request = |host: &str, path: &str| {
        exchange(
            addr,
            format!(
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    // A DNS-rebinding page: its own name, resolving to this address.
    let rebound = request("evil.example:8080", "/api/v1/endpoints");
    assert_eq!(rebound.status, 421);
    let (code, field) = error_parts(&rebound.json());
    assert_eq!(
        (code.as_str(), field.as_deref()),
        ("invalid_field", Some("Host"))
    );
    assert_eq!(request("evil.example", "/healthz").status, 421);
    assert_eq!(
        request("status.example.com", "/api/v1/endpoints").status,
        200
    );
    assert_eq!(request("Status.Example.com:443", "/healthz").status, 200);
    // The listen address itself is always accepted.
    assert_eq!(request(&addr.to_string(), "/api/v1/endpoints").status, 200);
    assert_alive(&mut server);
}

// ---------------------------------------------------------------------------------------
// Descriptor exhaustion

/// A server under `prlimit --nofile`, with its log, killed on drop.
struct Limited {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The user a server runs as when a test needs `RLIMIT_NPROC`, which never applies to root.
const NOBODY: u32 = 65534;

impl Limited {
    /// A server whose descriptors are limited to `nofile`.
    fn start(nofile: u32, extra_toml: &str) -> Limited {
        let limited = Limited::spawn(extra_toml, None);
        limited.prlimit(&format!("--nofile={nofile}:{nofile}"));
        limited
    }

    /// Sets a resource limit of the running server (`prlimit` syntax), before the test makes
    /// any connection.
    fn prlimit(&self, limit: &str) {
        let status = std::process::Command::new("prlimit")
            .arg(limit)
            .arg("--pid")
            .arg(self.child.id().to_string())
            .status()
            .expect("run prlimit");
        assert!(status.success(), "prlimit {limit} failed");
    }

    /// Starts the server with stderr collected and the address read from its log. With
    /// `nproc`, as `nobody` (`RLIMIT_NPROC` never applies to root) under that many threads:
    /// `prlimit` sets the limit and `setpriv` changes the user, since a limit cannot be set on
    /// another user's process without `CAP_SYS_RESOURCE`.
    fn spawn(extra_toml: &str, nproc: Option<u64>) -> Limited {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = write_config(dir.path(), extra_toml);
        let mut cmd = command(dir.path());
        if let Some(nproc) = nproc {
            for path in [dir.path(), config.as_path()] {
                std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).expect("chown");
            }
            let mut wrapped = std::process::Command::new("prlimit");
            wrapped
                .args([
                    format!("--nproc={nproc}:{nproc}"),
                    "--".to_string(),
                    "setpriv".to_string(),
                    format!("--reuid={NOBODY}"),
                    format!("--regid={NOBODY}"),
                    "--clear-groups".to_string(),
                    "--".to_string(),
                ])
                .arg(BIN)
                .current_dir(dir.path())
                .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
                .env_remove("STATUSSENTRY_LISTEN")
                .env_remove("STATUSSENTRY_DB")
                .env_remove("STATE_DIRECTORY")
                .env_remove("NOTIFY_SOCKET")
                .stdin(Stdio::null());
            cmd = wrapped;
        }
        let mut child = cmd
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the server");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = crossbeam_channel::unbounded();
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stderr);
            let mut line = String::new();
            while std::io::BufRead::read_line(&mut reader, &mut line).unwrap_or(0) > 0 {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                        .collect();
                    if let Ok(addr) = addr.trim_end_matches(',').parse::<SocketAddr>() {
                        let _ = tx.send(addr);
                    }
                }
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no listening line; log:\n{}", log.lock().unwrap()));
        Limited {
            child,
            addr,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn running_out_of_descriptors_refuses_connections_but_never_the_listener() {
    let _timing = timing_lock();
    // A long header timeout, so that only this test releases the connections it holds.
    let mut server = Limited::start(48, "[server]\nheader_timeout = \"60s\"\n");
    let api = Api::new(server.addr);
    assert_eq!(api.raw("GET", "/healthz", &[], None).status, 200);
    let pid = server.child.id();
    // More connections than the server has descriptors left; the kernel completes the
    // handshakes the server cannot accept and queues them.
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..80 {
        match TcpStream::connect(server.addr) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    wait_until(
        Duration::from_secs(20),
        "the server reports that it cannot accept",
        || server.log().contains("cannot accept connections"),
    );
    // It waits rather than spins, and says so once per episode, not per attempt.
    let wait_started = Instant::now();
    while wait_started.elapsed() < Duration::from_millis(600) {
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        server.log().matches("cannot accept connections").count(),
        1,
        "log:\n{}",
        server.log()
    );
    assert!(
        server.child.try_wait().expect("poll").is_none(),
        "the server exited; log:\n{}",
        server.log()
    );
    held.clear();
    wait_until(
        Duration::from_secs(20),
        "the server serves again once descriptors are free",
        || {
            let mut stream = connect(server.addr);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
            read_answer(&mut stream).is_some_and(|a| a.status == 200)
        },
    );
    // The log is read from a pipe by another thread, so the line may trail the answer.
    wait_until(
        Duration::from_secs(10),
        "the end of the episode logged",
        || server.log().contains("accepting connections again"),
    );
    assert!(server.child.try_wait().expect("poll").is_none());
    assert!(open_fds(pid) > 0);
}

// ---------------------------------------------------------------------------------------
// The figure: thousands of idle and slow connections

struct Footprint {
    rss_kib: u64,
    threads: usize,
    fds: usize,
}

fn footprint(pid: u32) -> Footprint {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    Footprint {
        rss_kib: field("VmRSS:"),
        threads: field("Threads:") as usize,
        fds: open_fds(pid),
    }
}

#[test]
fn thousands_of_idle_and_slow_connections_stay_within_max_connections() {
    let _timing = timing_lock();
    const IDLE: usize = 5000;
    const SLOW: usize = 500;
    const MAX: usize = 512;
    let mut server = Server::start("");
    let addr = server.addr();
    let pid = server.child_mut().id();
    assert_eq!(healthz(&server), 200);
    let base = footprint(pid);

    let flood_started = Instant::now();
    // 500 clients that start a head and send one more byte of it every second: each read
    // is quick, so only the head deadline (10 s) ends them.
    let mut slow: Vec<TcpStream> = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        let mut s = TcpStream::connect(addr).expect("connect slow client");
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ");
        slow.push(s);
    }
    // 5,000 clients that connect and send nothing.
    let mut idle: Vec<TcpStream> = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(TcpStream::connect(addr).expect("connect idle client"));
    }
    // Connections the server could not take at once wait in its backlog, or retry their
    // handshake (after 1, 3, 7, 15 s) when that is full, so the flood lasts a while.
    let connected_in = flood_started.elapsed();
    for s in &slow {
        s.set_nonblocking(true).expect("non-blocking");
    }
    let drip = |slow: &mut Vec<TcpStream>| {
        for s in slow.iter_mut() {
            let _ = s.write(b"s");
        }
    };
    drip(&mut slow);
    // Measured while all 5,500 are open and before the head deadline ends any of them.
    let flood = footprint(pid);
    // A normal client on a new connection is answered meanwhile: 503 with Retry-After while
    // every place is taken, a place as soon as the head deadline frees them.
    let normal = |addr: SocketAddr| -> Option<Raw> {
        let mut stream = connect(addr);
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        read_answer(&mut stream)
    };
    let reply = normal(addr).expect("an answer for a normal client during the flood");
    assert!(
        reply.status == 200 || (reply.status == 503 && reply.header("Retry-After").is_some()),
        "a normal client got {} during the flood",
        reply.status
    );
    let during = reply.status;
    let served = wait_for(
        Duration::from_secs(60),
        "a normal client served during the flood",
        || {
            drip(&mut slow);
            match normal(addr) {
                Some(r) if r.status == 200 => Ok(flood_started.elapsed()),
                Some(r) => Err(format!("{}", r.status)),
                None => Err("no answer".into()),
            }
        },
    );
    let refused = metric_value(&server, "statussentry_http_connections_refused_total");
    eprintln!(
        "edge figure: before rss {} KiB, {} threads, {} fds; with {IDLE} idle + {SLOW} slow-header \
         connections open (all connected after {connected_in:?}): rss {} KiB, {} threads, {} fds; \
         a normal client got {during} at once and 200 {served:?} after the flood began; \
         {refused} connections refused with 503",
        base.rss_kib, base.threads, base.fds, flood.rss_kib, flood.threads, flood.fds
    );
    assert!(
        flood.threads <= base.threads + MAX,
        "{} threads with max_connections {MAX} (before: {})",
        flood.threads,
        base.threads
    );
    // Each connection holds one descriptor; a few more come and go for refusals.
    assert!(
        flood.fds <= base.fds + MAX + 16,
        "{} descriptors (before: {})",
        flood.fds,
        base.fds
    );
    assert!(
        flood.rss_kib <= base.rss_kib + 96 * 1024,
        "RSS went from {} KiB to {} KiB",
        base.rss_kib,
        flood.rss_kib
    );
    // Places freed by the head deadline go to connections still arriving, so fewer than
    // all the others are refused; but most must have been.
    assert!(
        refused >= (IDLE + SLOW) as f64 / 2.0,
        "only {refused} of {} connections were refused",
        IDLE + SLOW
    );
    drop(idle);
    drop(slow);
    assert_alive(&mut server);
}

// ---------------------------------------------------------------------------------------
// A listener that does die ends the process

#[test]
fn a_listener_that_stops_accepting_makes_healthz_fail_and_the_process_exit_non_zero() {
    let mut server = Server::start("");
    let addr = server.addr();
    let mut kept = connect(addr);
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    assert_eq!(read_answer(&mut kept).expect("answer").status, 200);
    // Destroy the listening socket from outside (SOCK_DESTROY through `ss -K`): its accept
    // then fails with EINVAL, which no retry mends.
    let killed = std::process::Command::new("ss")
        .args([
            "-K",
            "-t",
            "-l",
            "-n",
            "sport",
            "=",
            &format!(":{}", addr.port()),
        ])
        .output()
        .expect("run ss");
    assert!(killed.status.success(), "ss -K failed: {killed:?}");
    // The kept-alive connection may still be answered until the process exits; once
    // /healthz has said 503 it never says 200 again.
    let mut statuses = Vec::new();
    loop {
        if kept
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .is_err()
        {
            break;
        }
        match read_answer(&mut kept) {
            Some(a) => statuses.push(a.status),
            None => break,
        }
        thread::sleep(Duration::from_millis(5));
    }
    if let Some(first) = statuses.iter().position(|s| *s == 503) {
        assert!(
            statuses[first..].iter().all(|s| *s == 503),
            "/healthz answered {statuses:?}"
        );
    }
    let status = wait_exit(server.child_mut(), Duration::from_secs(15))
        .unwrap_or_else(|| panic!("still running; log:\n{}", server.log()));
    server.forget_child();
    assert!(
        !status.success(),
        "exit status {status}; log:\n{}",
        server.log()
    );
    // The log is read from a pipe by another thread, so its last lines may trail the exit.
    wait_until(Duration::from_secs(10), "the stop logged", || {
        let log = server.log();
        log.contains("the accept loop stopped") && log.contains("accept loop has stopped")
    });
}

#[test]
fn check_config_prints_the_server_limits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        "[server]\nmax_connections = 7\nheader_timeout = \"3s\"\nallowed_hosts = [\"status.example.com\"]\n",
    );
    let out = run_with_deadline(
        command(dir.path())
            .arg("check-config")
            .arg("--config")
            .arg(&config),
        Duration::from_secs(20),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for line in [
        "max_connections = 7\n",
        "header_timeout = \"3s\"\n",
        "allowed_hosts = [\"status.example.com\"]\n",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
    let defaults = write_config(dir.path(), "");
    let out = run_with_deadline(
        command(dir.path())
            .arg("check-config")
            .arg("--config")
            .arg(&defaults),
        Duration::from_secs(20),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "max_connections = 512\n",
        "header_timeout = \"10s\"\n",
        "allowed_hosts = []\n",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
}

// ---------------------------------------------------------------------------------------
// Threads that cannot be started

fn threads_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("Threads in /proc/<pid>/status")
}

#[test]
fn a_thread_that_cannot_be_started_refuses_one_connection_never_the_listener() {
    let _timing = timing_lock();
    // RLIMIT_NPROC counts the threads of the server's user, which must not be root (root is
    // exempt), so the server runs as nobody, under a limit two threads above what it starts
    // with (counted on a first run of the same configuration).
    let config =
        "[server]\nheader_timeout = \"60s\"\n[delivery]\nworkers = 1\n[monitors]\ncheckers = 1\n";
    let first = Limited::spawn(config, Some(10_000));
    let api = Api::new(first.addr);
    assert_eq!(api.raw("GET", "/healthz", &[], None).status, 200);
    let threads = threads_of(first.child.id());
    drop(first);
    let mut server = Limited::spawn(config, Some(threads + 2));
    let api = Api::new(server.addr);
    assert_eq!(api.raw("GET", "/healthz", &[], None).status, 200);
    drop(api);
    // The pool's four idle threads and two new ones take six connections; the others find
    // no thread and are closed.
    let mut held: Vec<TcpStream> = (0..12).map(|_| connect(server.addr)).collect();
    wait_until(
        Duration::from_secs(20),
        "the server reports that it cannot start a thread",
        || server.log().contains("cannot start a thread"),
    );
    let closed = held
        .iter_mut()
        .map(|s| closed_within(s, Duration::from_millis(300)))
        .filter(|closed| *closed)
        .count();
    assert!(
        (1..12).contains(&closed),
        "{closed} of 12 connections closed; log:\n{}",
        server.log()
    );
    assert!(
        server.child.try_wait().is_ok_and(|s| s.is_none()),
        "the server exited; log:\n{}",
        server.log()
    );
    // One line for the episode, not one per refused connection.
    assert_eq!(
        server.log().matches("cannot start a thread").count(),
        1,
        "{closed} connections refused; log:\n{}",
        server.log()
    );
    held.clear();
    wait_until(
        Duration::from_secs(20),
        "the server serves again once threads are free",
        || {
            let mut stream = connect(server.addr);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
            read_answer(&mut stream).is_some_and(|a| a.status == 200)
        },
    );
    // The log is read from a pipe by another thread, so the line may trail the answer.
    // Threads still finishing their connections when the test's first new ones come may
    // start another short episode; each that starts is seen to end.
    wait_until(
        Duration::from_secs(10),
        "the end of every episode logged",
        || {
            let log = server.log();
            log.matches("accepting connections again").count()
                == log.matches("cannot start a thread").count()
        },
    );
}
