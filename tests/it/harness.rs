//! Shared test machinery: a running `statussentry` server in a temp directory, an admin API
//! client, a scriptable loopback webhook receiver, polling with deadlines and an independent
//! implementation of both signature schemes.
//!
//! Nothing in here may depend on how the binary is built inside; it only uses what SPEC.md
//! and the harness contract promise (the `listening on` log line, the config keys, the API).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tempfile::TempDir;

/// The admin token every test server runs with.
pub const TOKEN: &str = "it-admin-token-5b1f0c9e7d3a-8c2e4f6a";

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_statussentry");

/// How long a server gets to print its `listening on` line.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// How long a server gets to exit after SIGTERM.
pub const STOP_DEADLINE: Duration = Duration::from_secs(15);

/// Tests whose assertions measure time, and tests that load the machine heavily, take this
/// lock so that they do not run beside each other on a small CI machine.
static TIMING: Mutex<()> = Mutex::new(());

/// Serialises timing-sensitive and heavy tests; hold the guard for the whole test.
pub fn timing_lock() -> MutexGuard<'static, ()> {
    TIMING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------------------
// Server

/// One running `statussentry serve`, killed on drop.
pub struct Server {
    dir: TempDir,
    child: Option<Child>,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
    client: Api,
}

impl Server {
    /// Starts a server in a fresh temp directory; `extra_toml` adds config sections (for
    /// example `[delivery]` keys). Panics with the server's output when it does not start.
    pub fn start(extra_toml: &str) -> Server {
        Server::start_in(tempfile::tempdir().expect("create temp dir"), extra_toml)
    }

    /// Like [`Server::start`], in a directory the test prepared: a `db.sqlite` already there
    /// (a restored backup, say) is the server's database.
    pub fn start_in(dir: TempDir, extra_toml: &str) -> Server {
        write_config(dir.path(), extra_toml);
        let log = Arc::new(Mutex::new(String::new()));
        let (child, addr) = spawn_server(dir.path(), &log).unwrap_or_else(|e| panic!("{e}"));
        Server {
            dir,
            child: Some(child),
            addr,
            client: Api::new(addr),
            log,
        }
    }

    /// Stops the server with SIGTERM (asserting exit 0) if it runs, then starts it again on
    /// the same directory, config and database. The port changes.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            let status = self.stop();
            assert!(
                status.success(),
                "server exited with {status} on SIGTERM; log:\n{}",
                self.log()
            );
        }
        self.log.lock().unwrap().push_str("\n----- restart -----\n");
        let (child, addr) =
            spawn_server(self.dir.path(), &self.log).unwrap_or_else(|e| panic!("{e}"));
        self.child = Some(child);
        self.addr = addr;
        self.client = Api::new(addr);
    }

    /// Sends SIGTERM and waits for the exit; panics when it does not exit within
    /// [`STOP_DEADLINE`].
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server is running");
        sigterm(child.id());
        match wait_exit(&mut child, STOP_DEADLINE) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server did not exit within {STOP_DEADLINE:?} of SIGTERM; log:\n{}",
                    self.log()
                )
            }
        }
    }

    /// Kills the server with SIGKILL, as a power cut would.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("server is running");
        child.kill().expect("SIGKILL the server");
        child.wait().expect("reap the server");
    }

    /// The running process (for tests that signal it themselves).
    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("server is running")
    }

    /// Forgets the process after a test reaped it itself.
    pub fn forget_child(&mut self) {
        self.child = None;
    }

    /// Everything the server wrote to stderr (and stdout) so far, across restarts.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("db.sqlite")
    }

    /// A cloneable client for this server (for use from other threads).
    pub fn client(&self) -> Api {
        self.client.clone()
    }

    /// An authenticated JSON request; see [`Api::call`].
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.client.call(method, path, body)
    }

    /// Like [`Server::api`] but asserts the status and returns the body.
    pub fn expect(&self, method: &str, path: &str, body: Option<Value>, status: u16) -> Value {
        self.client.expect(method, path, body, status)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes `statussentry.toml` into `dir`: port 0, the database inside `dir`, plus
/// `extra_toml`. Keys that `extra_toml` puts under `[server]` or `[storage]` are merged into
/// those tables, because TOML forbids defining a table twice.
pub fn write_config(dir: &Path, extra_toml: &str) -> PathBuf {
    let path = dir.join("statussentry.toml");
    std::fs::write(&path, compose_config(dir, extra_toml)).expect("write config");
    path
}

fn compose_config(dir: &Path, extra_toml: &str) -> String {
    let db = dir.join("db.sqlite");
    let mut server = vec!["listen = \"127.0.0.1:0\"".to_string()];
    let mut storage = vec![format!("path = {}", toml_string(&db.to_string_lossy()))];
    let mut rest = String::new();
    let mut section = String::new();
    for line in extra_toml.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed.to_string();
            if section != "[server]" && section != "[storage]" {
                rest.push_str(line);
                rest.push('\n');
            }
            continue;
        }
        match section.as_str() {
            "[server]" => server.push(line.to_string()),
            "[storage]" => storage.push(line.to_string()),
            _ => {
                rest.push_str(line);
                rest.push('\n');
            }
        }
    }
    format!(
        "[server]\n{}\n\n[storage]\n{}\n\n{rest}",
        server.join("\n"),
        storage.join("\n")
    )
}

/// A TOML basic string literal.
pub fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A `statussentry` command with a clean environment for the variables it reads, run in
/// `dir` so that nothing it writes lands outside the test's temp directory.
pub fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env("STATUSSENTRY_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", "info")
        .env_remove("STATUSSENTRY_LISTEN")
        .env_remove("STATUSSENTRY_DB")
        .env_remove("STATE_DIRECTORY")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null());
    cmd
}

fn spawn_server(dir: &Path, log: &Arc<Mutex<String>>) -> Result<(Child, SocketAddr), String> {
    let config = dir.join("statussentry.toml");
    let mut child = command(dir)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {BIN}: {e}"))?;

    let (tx, rx) = crossbeam_channel::unbounded::<SocketAddr>();
    let stderr = child.stderr.take().expect("piped stderr");
    let stderr_log = Arc::clone(log);
    thread::spawn(move || {
        read_lines(stderr, &stderr_log, |line| {
            if let Some(addr) = parse_listening(line) {
                let _ = tx.send(addr);
            }
        })
    });
    // The contract puts logs on stderr; stdout is collected too, only so that a failure
    // message shows everything the process said.
    let stdout = child.stdout.take().expect("piped stdout");
    let stdout_log = Arc::clone(log);
    thread::spawn(move || read_lines(stdout, &stdout_log, |_| {}));

    match rx.recv_timeout(START_DEADLINE) {
        Ok(addr) => Ok((child, addr)),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
            let status = wait_exit(&mut child, Duration::from_secs(5));
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "statussentry closed stderr without a `listening on` line (exit: {status:?}); output:\n{}",
                log.lock().unwrap()
            ))
        }
        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "statussentry printed no `listening on` line within {START_DEADLINE:?}; output:\n{}",
                log.lock().unwrap()
            ))
        }
    }
}

fn read_lines(stream: impl Read, log: &Mutex<String>, mut on_line: impl FnMut(&str)) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                log.lock().unwrap().push_str(&text);
                on_line(&text);
            }
        }
    }
}

/// The address in a `listening on 127.0.0.1:PORT` log line.
fn parse_listening(line: &str) -> Option<SocketAddr> {
    let start = line.find("listening on ")? + "listening on ".len();
    let token: String = line[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    token.trim_end_matches(['.', ':']).parse().ok()
}

/// Sends SIGTERM through `kill(1)`; the test crate has no libc.
pub fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid} failed");
}

/// Waits for `child` to exit, at most `deadline`.
pub fn wait_exit(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + deadline;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= end {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs a command to completion, killing it (and failing) after `deadline`, so that a
/// binary that wrongly starts serving cannot hang the suite.
pub fn run_with_deadline(cmd: &mut Command, deadline: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn command");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let status = wait_exit(&mut child, deadline);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    match status {
        Some(status) => Output {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "{cmd:?} still running after {deadline:?}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Admin API client

/// A raw HTTP answer.
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; `Null` when empty. Panics with the text when it is not JSON.
    pub fn json(&self) -> Value {
        if self.body.is_empty() {
            return Value::Null;
        }
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response {} is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }
}

/// A client for the admin API of one server.
#[derive(Clone)]
pub struct Api {
    agent: ureq::Agent,
    base: String,
}

impl Api {
    pub fn new(addr: SocketAddr) -> Api {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(30)))
            .build();
        Api {
            agent: config.into(),
            base: format!("http://{addr}"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An authenticated request; a body is sent as `application/json`. Returns the status
    /// and the JSON answer (`Null` for an empty body).
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let auth = format!("Bearer {TOKEN}");
        let reply = match body {
            Some(body) => self.raw(
                method,
                path,
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/json"),
                ],
                Some(body.to_string().as_bytes()),
            ),
            None => self.raw(method, path, &[("Authorization", &auth)], None),
        };
        let json = reply.json();
        (reply.status, json)
    }

    /// Like [`Api::call`] but asserts the status and returns the body.
    pub fn expect(&self, method: &str, path: &str, body: Option<Value>, status: u16) -> Value {
        let (got, json) = self.call(method, path, body);
        assert_eq!(got, status, "{method} {path} answered {got}: {json}");
        json
    }

    /// Any request, exactly as given: no header is added.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpReply {
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(path));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let result = match body {
            Some(body) => self
                .agent
                .run(builder.body(body.to_vec()).expect("build request")),
            None => self.agent.run(builder.body(()).expect("build request")),
        };
        let mut response = result.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .unwrap_or_else(|e| panic!("{method} {path}: reading the answer: {e}"));
        HttpReply {
            status,
            headers,
            body,
        }
    }
}

/// Percent-encodes a query-string value.
pub fn query_escape(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Asserts the SPEC 5 error shape and returns `(code, field)`.
pub fn error_parts(body: &Value) -> (String, Option<String>) {
    let error = body
        .get("error")
        .unwrap_or_else(|| panic!("no `error` object in {body}"));
    let code = error["code"]
        .as_str()
        .unwrap_or_else(|| panic!("error without a code: {body}"));
    let message = error["message"]
        .as_str()
        .unwrap_or_else(|| panic!("error without a message: {body}"));
    assert!(!message.is_empty(), "empty error message: {body}");
    (
        code.to_string(),
        error
            .get("field")
            .and_then(Value::as_str)
            .map(str::to_string),
    )
}

/// Walks every page of a list route and returns all items, asserting the list shape.
pub fn list_all(server: &Server, path: &str, limit: usize) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let url = match &cursor {
            None => format!("{path}{sep}limit={limit}"),
            Some(c) => format!("{path}{sep}limit={limit}&cursor={}", query_escape(c)),
        };
        let page = server.expect("GET", &url, None, 200);
        let data = page["data"]
            .as_array()
            .unwrap_or_else(|| panic!("no data array in {page}"));
        assert!(
            data.len() <= limit,
            "page of {} items for limit {limit}",
            data.len()
        );
        items.extend(data.iter().cloned());
        match &page["next_cursor"] {
            Value::Null => return items,
            Value::String(next) => cursor = Some(next.clone()),
            other => panic!("next_cursor must be a string or null, got {other}"),
        }
    }
    panic!("{path}: pagination never ended")
}

// ---------------------------------------------------------------------------------------
// Domain helpers

/// The seed document's `incident.created` example payload.
pub fn seed_data() -> Value {
    json!({
        "incident_id": "inc_987654321",
        "title": "High Latency in EU-West",
        "status": "investigating",
        "severity": "major",
        "components": [
            {"id": "comp_api_gateway", "name": "API Gateway", "status": "degraded_performance"}
        ]
    })
}

/// Incident data with a marker title, for telling events apart.
pub fn incident(title: &str) -> Value {
    json!({
        "incident_id": "inc_test",
        "title": title,
        "status": "investigating",
        "severity": "minor",
        "components": []
    })
}

/// Publishes an event, asserting 202, and returns the answer.
pub fn publish(server: &Server, kind: &str, data: Value) -> Value {
    server.expect(
        "POST",
        "/api/v1/events",
        Some(json!({"type": kind, "data": data})),
        202,
    )
}

/// Creates an endpoint, asserting 201, and returns the answer (with `secret`).
pub fn create_endpoint(server: &Server, body: Value) -> Value {
    server.expect("POST", "/api/v1/endpoints", Some(body), 201)
}

/// `str` field of a JSON object, panicking with the object when missing.
pub fn s<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string `{key}` in {value}"))
}

/// True when `id` is `prefix` followed by 16 of `[0-9a-z]`.
pub fn is_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == 16
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    })
}

/// True for RFC 3339 UTC with whole seconds and a `Z`: `2023-10-27T14:30:00Z`.
pub fn is_rfc3339_seconds_z(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b[19] == b'Z'
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && humantime::parse_rfc3339(s).is_ok()
}

/// Parses an RFC 3339 time.
pub fn parse_time(s: &str) -> SystemTime {
    humantime::parse_rfc3339_weak(s).unwrap_or_else(|e| panic!("not RFC 3339: {s:?}: {e}"))
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// The keys of a JSON object, in order.
pub fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

/// Asserts `got == want` and, when not, names the first difference instead of printing
/// both (long) lists.
pub fn assert_sequence(got: &[String], want: &[String], what: &str) {
    if got == want {
        return;
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(g, w)| g != w)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{what}: got {} items, want {}; first difference at index {first}: got {:?}, want {:?}",
        got.len(),
        want.len(),
        got.get(first),
        want.get(first)
    );
}

/// Messages of one endpoint, every page.
pub fn messages_of(server: &Server, endpoint_id: &str) -> Vec<Value> {
    list_all(
        server,
        &format!("/api/v1/messages?endpoint_id={}", query_escape(endpoint_id)),
        500,
    )
}

/// The one message for `event_id` to `endpoint_id`, if any.
pub fn message_for(server: &Server, event_id: &str, endpoint_id: &str) -> Option<Value> {
    let event = server.expect("GET", &format!("/api/v1/events/{event_id}"), None, 200);
    let messages = event["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages array in {event}"));
    messages
        .iter()
        .find(|m| m["endpoint_id"] == endpoint_id)
        .cloned()
}

// ---------------------------------------------------------------------------------------
// Polling

/// Polls `cond` every 10 ms until it holds; panics after `deadline`.
pub fn wait_until(deadline: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    wait_for(deadline, what, || {
        if cond() { Ok(()) } else { Err(String::new()) }
    })
}

/// Polls `f` every 10 ms until it returns `Ok`; panics after `deadline` with the last error.
pub fn wait_for<T>(deadline: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let end = Instant::now() + deadline;
    loop {
        match f() {
            Ok(value) => return value,
            Err(last) => {
                if Instant::now() >= end {
                    panic!("timed out after {deadline:?} waiting for {what}. {last}");
                }
            }
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the message for `event_id` at `endpoint_id` has `status`; returns it.
pub fn wait_message_status(
    server: &Server,
    event_id: &str,
    endpoint_id: &str,
    status: &str,
    deadline: Duration,
) -> Value {
    wait_for(
        deadline,
        &format!("message of {event_id} to {endpoint_id} to become {status}"),
        || match message_for(server, event_id, endpoint_id) {
            Some(m) if m["status"] == status => Ok(m),
            Some(m) => Err(format!("last seen: {m}")),
            None => Err("no such message".to_string()),
        },
    )
}

// ---------------------------------------------------------------------------------------
// Receiver

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Hit {
    /// When the request's head had arrived.
    pub at: Instant,
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status the receiver answered with.
    pub answered: u16,
}

impl Hit {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("delivery body is not JSON ({e}): {}", self.text()))
    }

    /// The `evt_` ids the body carries: one for a plain envelope, the inner ones for a batch.
    pub fn event_ids(&self) -> Vec<String> {
        let body = self.json();
        if body["type"] == "batch" {
            body["data"]["events"]
                .as_array()
                .unwrap_or_else(|| panic!("batch without data.events: {body}"))
                .iter()
                .map(|e| s(e, "id").to_string())
                .collect()
        } else {
            vec![s(&body, "id").to_string()]
        }
    }
}

/// What the receiver answers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub delay: Duration,
    pub body: String,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
            body: String::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    pub fn body(mut self, body: &str) -> Reply {
        self.body = body.to_string();
        self
    }
}

type Responder = Arc<dyn Fn(&Hit) -> Reply + Send + Sync>;

struct ReceiverState {
    hits: Vec<Hit>,
    script: VecDeque<Reply>,
    responder: Responder,
    in_flight: usize,
    max_in_flight: usize,
    held: bool,
}

/// A loopback webhook receiver: records every request and answers as told. Several handler
/// threads serve it, so that concurrent requests are seen as concurrent.
pub struct Receiver {
    server: Arc<tiny_http::Server>,
    shared: Arc<(Mutex<ReceiverState>, Condvar)>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    base: String,
}

impl Receiver {
    /// A receiver answering 200 to everything.
    pub fn start() -> Receiver {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind receiver"));
        let addr = server
            .server_addr()
            .to_ip()
            .expect("receiver has an IP address");
        let shared = Arc::new((
            Mutex::new(ReceiverState {
                hits: Vec::new(),
                script: VecDeque::new(),
                responder: Arc::new(|_: &Hit| Reply::status(200)),
                in_flight: 0,
                max_in_flight: 0,
                held: false,
            }),
            Condvar::new(),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..8)
            .map(|_| {
                let server = Arc::clone(&server);
                let shared = Arc::clone(&shared);
                let stop = Arc::clone(&stop);
                thread::spawn(move || serve_receiver(&server, &shared, &stop))
            })
            .collect();
        Receiver {
            server,
            shared,
            stop,
            threads,
            base: format!("http://{addr}"),
        }
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Answers every later request with `reply` (after any scripted replies).
    pub fn reply_with(&self, reply: Reply) {
        self.respond_with(move |_| reply.clone());
    }

    /// Answers every later request with what `f` says (after any scripted replies).
    pub fn respond_with(&self, f: impl Fn(&Hit) -> Reply + Send + Sync + 'static) {
        self.state().responder = Arc::new(f);
    }

    /// The next requests get these replies, in order; then the responder takes over.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state().script.extend(replies);
    }

    /// Holds every request (counted as in flight) until [`Receiver::release`].
    pub fn hold(&self) {
        self.state().held = true;
    }

    pub fn release(&self) {
        self.state().held = false;
        self.shared.1.notify_all();
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.state().hits.clone()
    }

    pub fn count(&self) -> usize {
        self.state().hits.len()
    }

    /// The most requests ever seen in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.state().max_in_flight
    }

    /// Waits until at least `n` requests have arrived; returns all of them.
    pub fn wait_hits(&self, n: usize, deadline: Duration) -> Vec<Hit> {
        wait_for(deadline, &format!("{n} requests at the receiver"), || {
            let hits = self.hits();
            if hits.len() >= n {
                Ok(hits)
            } else {
                Err(format!("got {}", hits.len()))
            }
        })
    }

    /// Every `evt_` id received so far, in arrival order (duplicates kept).
    pub fn event_ids(&self) -> Vec<String> {
        self.hits().iter().flat_map(Hit::event_ids).collect()
    }

    fn state(&self) -> MutexGuard<'_, ReceiverState> {
        self.shared
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.release();
        for _ in &self.threads {
            self.server.unblock();
        }
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

fn serve_receiver(
    server: &tiny_http::Server,
    shared: &(Mutex<ReceiverState>, Condvar),
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::SeqCst) {
        let mut request = match server.recv_timeout(Duration::from_millis(50)) {
            Ok(Some(request)) => request,
            Ok(None) => continue,
            Err(_) => return,
        };
        let at = Instant::now();
        let mut body = Vec::new();
        let read = request.as_reader().read_to_end(&mut body);
        // A sender killed in the middle of a request (the kill -9 tests) leaves its headers
        // and part of its body; like any HTTP server, the receiver does not act on it.
        if read.is_err() || request.body_length().is_some_and(|n| n != body.len()) {
            continue;
        }
        let mut hit = Hit {
            at,
            method: request.method().as_str().to_string(),
            url: request.url().to_string(),
            headers: request
                .headers()
                .iter()
                .map(|h| {
                    (
                        h.field.as_str().as_str().to_string(),
                        h.value.as_str().to_string(),
                    )
                })
                .collect(),
            body,
            answered: 0,
        };
        let reply = {
            let (lock, condvar) = shared;
            let mut state = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            state.in_flight += 1;
            state.max_in_flight = state.max_in_flight.max(state.in_flight);
            let reply = match state.script.pop_front() {
                Some(reply) => reply,
                None => (state.responder)(&hit),
            };
            hit.answered = reply.status;
            state.hits.push(hit);
            while state.held && !stop.load(Ordering::SeqCst) {
                state = condvar
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            reply
        };
        // The delay simulates a slow consumer; it is not synchronisation.
        thread::sleep(reply.delay);
        // The request stops counting as in flight before the answer is written: once the
        // sender can read the answer it may legitimately send its next request.
        shared
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .in_flight -= 1;
        let mut response =
            tiny_http::Response::from_string(reply.body).with_status_code(reply.status);
        for (name, value) in &reply.headers {
            response.add_header(
                tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
                    .expect("valid header"),
            );
        }
        let _ = request.respond(response);
    }
}

// ---------------------------------------------------------------------------------------
// Signatures, implemented independently of the binary

pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `v1` value of `X-StatusSentry-Signature`: hex HMAC-SHA256 over `t.body`, keyed with
/// the whole secret string.
pub fn stripe_v1(secret: &str, t: i64, body: &[u8]) -> String {
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(body);
    hex(&hmac_sha256(secret.as_bytes(), &message))
}

/// The base64 Standard Webhooks signature over `id.t.body`, keyed with the decoded secret.
pub fn standard_webhooks_sig(secret: &str, id: &str, t: i64, body: &[u8]) -> String {
    let encoded = secret
        .strip_prefix("whsec_")
        .unwrap_or_else(|| panic!("secret without whsec_: {secret}"));
    let key = decode_base64_loose(encoded)
        .unwrap_or_else(|| panic!("secret part is not base64: {secret}"));
    let mut message = format!("{id}.{t}.").into_bytes();
    message.extend_from_slice(body);
    BASE64.encode(hmac_sha256(&key, &message))
}

/// Standard base64, with or without padding.
pub fn decode_base64_loose(s: &str) -> Option<Vec<u8>> {
    let mut padded = s.to_string();
    while !padded.len().is_multiple_of(4) {
        padded.push('=');
    }
    BASE64.decode(padded).ok()
}

/// `t=…,v1=…[,v1=…]` split into `t` and the `v1` values in order.
pub fn parse_signature_header(header: &str) -> (i64, Vec<String>) {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        let (key, value) = part
            .split_once('=')
            .unwrap_or_else(|| panic!("malformed signature header: {header:?}"));
        match key {
            "t" => {
                t = Some(
                    value
                        .parse::<i64>()
                        .unwrap_or_else(|_| panic!("t is not a number: {header:?}")),
                )
            }
            "v1" => v1.push(value.to_string()),
            _ => panic!("unexpected key {key:?} in signature header {header:?}"),
        }
    }
    (
        t.unwrap_or_else(|| panic!("no t= in signature header {header:?}")),
        v1,
    )
}

/// Asserts that `hit` is signed by exactly `secrets` (newest first) under both schemes, with
/// a fresh timestamp, and that the Standard Webhooks headers agree with the body.
pub fn assert_signed(hit: &Hit, secrets: &[&str]) {
    let header = hit
        .header("X-StatusSentry-Signature")
        .expect("X-StatusSentry-Signature header");
    let (t, v1) = parse_signature_header(header);
    let now = unix_now();
    assert!((now - t).abs() <= 10, "signature t={t} is not now ({now})");
    let expected: Vec<String> = secrets
        .iter()
        .map(|secret| stripe_v1(secret, t, &hit.body))
        .collect();
    assert_eq!(
        v1, expected,
        "v1 signatures (newest secret first) for header {header:?}"
    );
    for sig in &v1 {
        assert!(
            sig.len() == 64
                && sig
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }

    let body = hit.json();
    let id = s(&body, "id");
    assert_eq!(
        hit.header("webhook-id"),
        Some(id),
        "webhook-id must be the envelope id"
    );
    assert_eq!(
        hit.header("webhook-timestamp"),
        Some(t.to_string().as_str()),
        "webhook-timestamp must equal t"
    );
    let webhook_signature = hit
        .header("webhook-signature")
        .expect("webhook-signature header");
    let expected: Vec<String> = secrets
        .iter()
        .map(|secret| format!("v1,{}", standard_webhooks_sig(secret, id, t, &hit.body)))
        .collect();
    assert_eq!(
        webhook_signature,
        expected.join(" "),
        "webhook-signature (newest secret first)"
    );
}

// ---------------------------------------------------------------------------------------
// Self-tests of the machinery above, so that a failure elsewhere points at the binary.

#[test]
fn standard_webhooks_reference_vector() {
    // The example from the Standard Webhooks specification's reference libraries.
    let sig = standard_webhooks_sig(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        br#"{"test": 2432232314}"#,
    );
    assert_eq!(sig, "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

#[test]
fn hmac_rfc4231_case_2() {
    let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    assert_eq!(
        hex(&mac),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn config_merges_server_and_storage_sections() {
    let dir = tempfile::tempdir().unwrap();
    let text = compose_config(
        dir.path(),
        "[server]\nmax_body_bytes = 10\n[delivery]\nbatch_max = 3\n",
    );
    assert_eq!(text.matches("[server]").count(), 1, "{text}");
    assert!(
        text.contains("listen = \"127.0.0.1:0\"\nmax_body_bytes = 10"),
        "{text}"
    );
    assert!(text.contains("[delivery]\nbatch_max = 3"), "{text}");
}

#[test]
fn listening_line_is_parsed() {
    let line = "[2024-01-01T00:00:00Z INFO  statussentry] listening on 127.0.0.1:41234\n";
    assert_eq!(
        parse_listening(line),
        Some("127.0.0.1:41234".parse().unwrap())
    );
    assert_eq!(
        parse_listening("listening on 127.0.0.1:80."),
        Some("127.0.0.1:80".parse().unwrap())
    );
    assert_eq!(parse_listening("nothing here"), None);
}

#[test]
fn receiver_sees_concurrent_requests_and_scripts() {
    let receiver = Receiver::start();
    receiver.script([Reply::status(503).header("Retry-After", "1")]);
    receiver.reply_with(Reply::status(204).delay(Duration::from_millis(150)));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();

    let first = agent.post(receiver.url("/a")).send("one").unwrap();
    assert_eq!(first.status().as_u16(), 503);
    assert_eq!(first.headers().get("retry-after").unwrap(), "1");

    let handles: Vec<_> = (0..2)
        .map(|i| {
            let agent = agent.clone();
            let url = receiver.url("/b");
            thread::spawn(move || {
                agent
                    .post(url)
                    .send(format!("{i}"))
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap(), 204);
    }
    assert_eq!(receiver.count(), 3);
    assert_eq!(
        receiver.max_in_flight(),
        2,
        "two parallel requests must be seen in flight together"
    );
    assert_eq!(receiver.hits()[0].text(), "one");
}

// ---------------------------------------------------------------------------------------
// Servers with extra environment (added for tests/it/clock.rs)

impl Server {
    /// Like [`Server::start`], with extra environment variables for the process (for example
    /// `STATUSSENTRY_TEST_CLOCK`, which debug builds read).
    pub fn start_with_env(extra_toml: &str, env: &[(&str, &Path)]) -> Server {
        let dir = tempfile::tempdir().expect("create temp dir");
        write_config(dir.path(), extra_toml);
        let log = Arc::new(Mutex::new(String::new()));
        let (child, addr) = spawn_server_with_env(dir.path(), &log, env);
        Server {
            dir,
            child: Some(child),
            addr,
            client: Api::new(addr),
            log,
        }
    }

    /// Like [`Server::restart`], with extra environment variables for the new process.
    pub fn restart_with_env(&mut self, env: &[(&str, &Path)]) {
        if self.child.is_some() {
            let status = self.stop();
            assert!(status.success(), "server exited with {status} on SIGTERM");
        }
        self.log.lock().unwrap().push_str("\n----- restart -----\n");
        let (child, addr) = spawn_server_with_env(self.dir.path(), &self.log, env);
        self.child = Some(child);
        self.addr = addr;
        self.client = Api::new(addr);
    }
}

fn spawn_server_with_env(
    dir: &Path,
    log: &Arc<Mutex<String>>,
    env: &[(&str, &Path)],
) -> (Child, SocketAddr) {
    let mut cmd = command(dir);
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd.arg("serve")
        .arg("--config")
        .arg(dir.join("statussentry.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
    let (tx, rx) = crossbeam_channel::unbounded::<SocketAddr>();
    let stderr = child.stderr.take().expect("piped stderr");
    let stderr_log = Arc::clone(log);
    thread::spawn(move || {
        read_lines(stderr, &stderr_log, |line| {
            if let Some(addr) = parse_listening(line) {
                let _ = tx.send(addr);
            }
        })
    });
    let stdout = child.stdout.take().expect("piped stdout");
    let stdout_log = Arc::clone(log);
    thread::spawn(move || read_lines(stdout, &stdout_log, |_| {}));
    match rx.recv_timeout(START_DEADLINE) {
        Ok(addr) => (child, addr),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "statussentry printed no `listening on` line; output:\n{}",
                log.lock().unwrap()
            )
        }
    }
}

// ---------------------------------------------------------------------------------------
// Receivers on a chosen port (the soak test's endpoint that goes away and comes back)

impl Receiver {
    /// A receiver answering 200 to everything, bound to `addr` instead of port 0, so that a
    /// test can drop it (connections are then refused) and start another on the same port.
    pub fn start_at(addr: &str) -> std::io::Result<Receiver> {
        let server = Arc::new(
            tiny_http::Server::http(addr)
                .map_err(|e| std::io::Error::other(format!("bind {addr}: {e}")))?,
        );
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| std::io::Error::other("receiver has no IP address"))?;
        let shared = Arc::new((
            Mutex::new(ReceiverState {
                hits: Vec::new(),
                script: VecDeque::new(),
                responder: Arc::new(|_: &Hit| Reply::status(200)),
                in_flight: 0,
                max_in_flight: 0,
                held: false,
            }),
            Condvar::new(),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..8)
            .map(|_| {
                let server = Arc::clone(&server);
                let shared = Arc::clone(&shared);
                let stop = Arc::clone(&stop);
                thread::spawn(move || serve_receiver(&server, &shared, &stop))
            })
            .collect();
        Ok(Receiver {
            server,
            shared,
            stop,
            threads,
            base: format!("http://{bound}"),
        })
    }
}

impl Receiver {
    /// Stops the receiver (its port then refuses connections) and returns every request it
    /// saw, including those it was answering while it stopped.
    pub fn into_hits(self) -> Vec<Hit> {
        let shared = Arc::clone(&self.shared);
        drop(self);
        let state = shared
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.hits.clone()
    }
}

// ---------------------------------------------------------------------------------------
// A port where connections are refused and no other test's receiver can appear

/// A loopback port bound but not listening: a connection to it is refused (RST), and while
/// this value lives the kernel hands the port to no one else. Binding a listener, noting its
/// port and dropping it frees the port instead, and the next receiver any other test starts
/// may get it: the service under test, still retrying, then delivers into that test's
/// receiver and spoils its counts.
pub struct ClosedPort {
    _socket: socket2::Socket,
    port: u16,
}

impl ClosedPort {
    pub fn new() -> ClosedPort {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("make a socket");
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("loopback address");
        socket.bind(&addr.into()).expect("bind a loopback port");
        let port = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map(|a| a.port())
            .expect("the bound port");
        ClosedPort {
            _socket: socket,
            port,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}
