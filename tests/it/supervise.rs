//! Nothing long-lived dies silently: a panic injected into each long-lived thread of the real
//! binary in turn (the debug build's `STATUSSENTRY_FAULT` hook) is logged by thread name and
//! either restarts the thread, after which the service still delivers end to end and stops
//! cleanly, or ends the process non-zero. And systemd's watchdog: `WATCHDOG=1` arrives on
//! `$NOTIFY_SOCKET` while every thread makes progress, and stops when one stalls.

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use tempfile::TempDir;

use crate::harness::*;

/// Deliveries go out at once.
const FAST: &str = "[delivery]\nbatch_window = \"0ms\"\n";

/// How long a fault may take to end the process (a panic at start: well under this).
const EXIT: Duration = Duration::from_secs(20);

/// The supervisor's bound for a thread that only reads the store (the dispatcher): a stall
/// is noticed after this, then the process exits.
const READER_BOUND: Duration = Duration::from_secs(15);

/// One `statussentry serve` with extra environment variables, its output collected.
struct Proc {
    _dir: TempDir,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
}

impl Proc {
    fn start(extra_toml: &str, env: &[(&str, &str)]) -> Proc {
        let dir = tempfile::tempdir().expect("create temp dir");
        let config = write_config(dir.path(), extra_toml);
        let mut cmd = command(dir.path());
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            cmd.env(key, value);
        }
        let mut child = cmd.spawn().expect("start statussentry");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Proc {
            _dir: dir,
            child: Some(child),
            log,
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The API client, once the `listening on` line is out.
    fn api(&self) -> Api {
        Api::new(self.addr())
    }

    /// The API's address, once the `listening on` line is out.
    fn addr(&self) -> SocketAddr {
        wait_for(Duration::from_secs(20), "the `listening on` line", || {
            let log = self.log();
            let start = log
                .find("listening on ")
                .ok_or_else(|| format!("log so far:\n{log}"))?;
            let token: String = log[start + "listening on ".len()..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != ',')
                .collect();
            token.parse::<SocketAddr>().map_err(|e| e.to_string())
        })
    }

    /// Waits for the process to exit on its own.
    fn exited(&mut self, deadline: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let status = wait_exit(child, deadline).unwrap_or_else(|| {
            panic!(
                "statussentry still running after {deadline:?}; log:\n{}",
                self.log()
            )
        });
        self.child = None;
        status
    }

    /// SIGTERM; asserts a clean exit 0.
    fn stop_cleanly(&mut self) {
        let mut child = self.child.take().expect("running");
        sigterm(child.id());
        let status = wait_exit(&mut child, STOP_DEADLINE).unwrap_or_else(|| {
            let _ = child.kill();
            panic!(
                "no exit within {STOP_DEADLINE:?} of SIGTERM; log:\n{}",
                self.log()
            )
        });
        assert!(
            status.success(),
            "exit {status} on SIGTERM; log:\n{}",
            self.log()
        );
    }

    fn wait_log(&self, what: &str) {
        wait_until(
            Duration::from_secs(90),
            &format!("log line `{what}`"),
            || self.log().contains(what),
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Creates an endpoint at `receiver`, publishes one event and waits until it arrives.
fn delivers_end_to_end(api: &Api, receiver: &Receiver) {
    let before = receiver.count();
    api.expect(
        "POST",
        "/api/v1/endpoints",
        Some(json!({"url": receiver.url("/hooks"), "batch_window_ms": 0})),
        201,
    );
    let event = api.expect(
        "POST",
        "/api/v1/events",
        Some(json!({"type": "incident.created", "data": incident("after the fault")})),
        202,
    );
    let id = s(&event, "id").to_string();
    wait_until(Duration::from_secs(20), "the event at the receiver", || {
        receiver.count() > before && receiver.event_ids().contains(&id)
    });
}

/// Runs the binary with a fault in `thread`, makes it work with `trigger`, and asserts the
/// process ends non-zero having named the thread.
fn fault_ends_the_process(fault: &str, thread: &str, trigger: impl FnOnce(&Proc)) {
    let mut p = Proc::start(FAST, &[("STATUSSENTRY_FAULT", fault)]);
    trigger(&p);
    let status = p.exited(EXIT);
    let log = p.log();
    assert!(!status.success(), "exit {status}; log:\n{log}");
    assert!(
        log.contains(&format!("thread {thread}")) && log.contains("panicked"),
        "no line names the panicking thread {thread}; log:\n{log}"
    );
    assert!(
        log.contains("the process exits so that it is restarted"),
        "log:\n{log}"
    );
}

fn publish_one(p: &Proc, receiver: &Receiver) {
    let api = p.api();
    api.expect(
        "POST",
        "/api/v1/endpoints",
        Some(json!({"url": receiver.url("/hooks"), "batch_window_ms": 0})),
        201,
    );
    // The answer may not come: the process may be exiting already.
    let _ = api.call(
        "POST",
        "/api/v1/events",
        Some(json!({"type": "incident.created", "data": incident("trigger")})),
    );
}

#[test]
fn a_panic_in_the_dispatcher_ends_the_process() {
    fault_ends_the_process("dispatcher", "dispatcher", |_| {});
}

#[test]
fn a_panic_in_the_monitor_scheduler_ends_the_process() {
    fault_ends_the_process("monitors", "monitors", |_| {});
}

#[test]
fn a_panic_in_a_delivery_worker_ends_the_process() {
    let receiver = Receiver::start();
    fault_ends_the_process("worker", "worker-", |p| publish_one(p, &receiver));
    assert_eq!(receiver.count(), 0, "the worker panicked before sending");
}

#[test]
fn a_panic_in_the_recorder_ends_the_process() {
    let receiver = Receiver::start();
    fault_ends_the_process("recorder", "recorder", |p| publish_one(p, &receiver));
}

#[test]
fn a_panic_while_leading_the_intake_refuses_that_group_and_the_next_goes_through() {
    let receiver = Receiver::start();
    let mut p = Proc::start(FAST, &[("STATUSSENTRY_FAULT", "intake")]);
    let api = p.api();
    let (status, body) = api.call(
        "POST",
        "/api/v1/events",
        Some(json!({"type": "incident.created", "data": incident("refused")})),
    );
    assert_eq!(status, 503, "{body}; log:\n{}", p.log());
    p.wait_log("the intake's leader panicked");
    assert!(p.log().contains("panicked"), "{}", p.log());
    // The lead was released: the next publishes are led and committed.
    delivers_end_to_end(&api, &receiver);
    let ok = api.raw("GET", "/healthz", &[], None);
    assert_eq!(ok.status, 200, "{}", ok.text());
    p.stop_cleanly();
}

#[test]
fn a_checker_that_panics_is_restarted_and_its_monitor_is_checked_again() {
    let receiver = Receiver::start();
    let target = Receiver::start();
    let mut p = Proc::start(FAST, &[("STATUSSENTRY_FAULT", "checker")]);
    let api = p.api();
    let monitor = api.expect(
        "POST",
        "/api/v1/monitors",
        Some(json!({"name": "target", "url": target.url("/up"), "interval_secs": 1, "timeout_ms": 800})),
        201,
    );
    let monitor = s(&monitor, "id").to_string();
    p.wait_log("restarting it");
    assert!(p.log().contains("thread checker-"), "{}", p.log());
    // Checked again after the panic: the checker that panicked told the scheduler its check
    // ended, so the monitor was not left in flight.
    wait_until(Duration::from_secs(30), "a recorded check", || {
        let (_, checks) = api.call("GET", &format!("/api/v1/monitors/{monitor}/checks"), None);
        checks["data"].as_array().is_some_and(|c| !c.is_empty())
    });
    delivers_end_to_end(&api, &receiver);
    p.stop_cleanly();
}

/// A check that panics every time (a bug one monitor's answer sets off) ends that check, not
/// the checker thread: the restart budget (10 a minute) would otherwise end the process at
/// the 11th, with every other monitor and every delivery.
#[test]
fn a_check_that_panics_every_second_ends_the_check_not_the_process() {
    let receiver = Receiver::start();
    let target = Receiver::start();
    let mut p = Proc::start(FAST, &[("STATUSSENTRY_FAULT", "check:every")]);
    let api = p.api();
    api.expect(
        "POST",
        "/api/v1/monitors",
        Some(json!({"name": "target", "url": target.url("/up"), "interval_secs": 1, "timeout_ms": 800})),
        201,
    );
    // More panics than the restart budget allows in a minute, all within one.
    // Counted from the panic hook's lines, which a thread's panic logs too.
    wait_until(Duration::from_secs(40), "12 panicked checks", || {
        p.log().matches("test fault injected into check").count() >= 12
    });
    assert!(p.log().contains("its check panicked"), "{}", p.log());
    assert!(
        !p.log().contains("restarting it"),
        "no checker thread ended:\n{}",
        p.log()
    );
    let (status, _) = api.call("GET", "/healthz", None);
    assert_eq!(status, 200, "{}", p.log());
    delivers_end_to_end(&api, &receiver);
    p.stop_cleanly();
}

#[test]
fn retention_that_panics_is_restarted() {
    let receiver = Receiver::start();
    let mut p = Proc::start(FAST, &[("STATUSSENTRY_FAULT", "retention")]);
    let api = p.api();
    // Its first pass starts a minute after the start. Meanwhile `/healthz` answers 200 on a
    // new connection every second: a restarted thread leaves the process healthy.
    wait_until(Duration::from_secs(90), "retention to be restarted", || {
        let health = Api::new(p.addr()).raw("GET", "/healthz", &[], None);
        assert_eq!(health.status, 200, "{}; log:\n{}", health.text(), p.log());
        let log = p.log();
        let restarted = log.contains("thread retention panicked") && log.contains("restarting it");
        if !restarted {
            thread::sleep(Duration::from_secs(1));
        }
        restarted
    });
    delivers_end_to_end(&api, &receiver);
    let ok = api.raw("GET", "/healthz", &[], None);
    assert_eq!(ok.status, 200, "{}", ok.text());
    p.stop_cleanly();
}

/// Collects what arrives on a notify socket, with arrival times.
struct Notify {
    _dir: TempDir,
    path: String,
    got: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Notify {
    fn bind() -> Notify {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(n) = socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock().unwrap().push((Instant::now(), text));
            }
        });
        Notify {
            _dir: dir,
            path: path.to_string_lossy().into_owned(),
            got,
        }
    }

    fn pings_after_ready(&self) -> Vec<Instant> {
        let got = self.got.lock().unwrap();
        let ready = got.iter().position(|(_, m)| m == "READY=1");
        ready.map_or_else(Vec::new, |r| {
            got[r..]
                .iter()
                .filter(|(_, m)| m == "WATCHDOG=1")
                .map(|(at, _)| *at)
                .collect()
        })
    }
}

#[test]
fn watchdog_pings_follow_ready_while_every_thread_makes_progress() {
    // The gaps between pings are measured.
    let _timing = timing_lock();
    let notify = Notify::bind();
    let mut p = Proc::start(
        "",
        &[
            ("NOTIFY_SOCKET", notify.path.as_str()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    // Every 200 ms: five in well under the deadline, through several idle wake-ups.
    wait_until(
        Duration::from_secs(10),
        "five watchdog pings after READY=1",
        || notify.pings_after_ready().len() >= 5,
    );
    let pings = notify.pings_after_ready();
    for pair in pings.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap < Duration::from_millis(400),
            "a gap of {gap:?} between pings"
        );
    }
    p.stop_cleanly();
}

#[test]
fn watchdog_pings_go_on_when_the_process_is_out_of_descriptors() {
    // A process out of descriptors (a connection flood, a leak elsewhere) is still alive and
    // its threads may be fine; pings used to go out on a socket made per ping, which then
    // failed with EMFILE, and systemd would have killed a working service.
    let _timing = timing_lock();
    let notify = Notify::bind();
    let p = Proc::start(
        "",
        &[
            ("NOTIFY_SOCKET", notify.path.as_str()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    wait_until(
        Duration::from_secs(10),
        "a watchdog ping after READY=1",
        || !notify.pings_after_ready().is_empty(),
    );
    let pid = p.child.as_ref().expect("running").id().to_string();
    // The soft limit at one: no new descriptor can be made.
    let status = std::process::Command::new("prlimit")
        .args(["--nofile=1:", "--pid", &pid])
        .status()
        .expect("run prlimit");
    assert!(status.success(), "prlimit failed");
    let before = notify.pings_after_ready().len();
    wait_until(
        Duration::from_secs(10),
        "five more watchdog pings without a descriptor to spare",
        || notify.pings_after_ready().len() >= before + 5,
    );
    let log = p.log();
    assert!(!log.contains("cannot send WATCHDOG=1"), "log:\n{log}");
}

#[test]
fn watchdog_pings_stop_and_the_process_exits_when_a_thread_stalls() {
    let _timing = timing_lock();
    let notify = Notify::bind();
    let mut p = Proc::start(
        "",
        &[
            ("NOTIFY_SOCKET", notify.path.as_str()),
            ("WATCHDOG_USEC", "400000"),
            ("STATUSSENTRY_FAULT", "dispatcher:hang"),
        ],
    );
    wait_until(
        Duration::from_secs(10),
        "a watchdog ping after READY=1",
        || !notify.pings_after_ready().is_empty(),
    );
    let started = Instant::now();
    let status = p.exited(READER_BOUND + EXIT);
    let exited = Instant::now();
    let log = p.log();
    assert!(!status.success(), "exit {status}; log:\n{log}");
    assert!(log.contains("test fault: dispatcher hangs"), "log:\n{log}");
    assert!(
        log.contains("thread dispatcher has made no progress"),
        "log:\n{log}"
    );
    // Pings went on while the stall was within the dispatcher's bound, and none came after
    // the stall was noticed.
    let pings = notify.pings_after_ready();
    let last = *pings.last().expect("pings");
    assert!(
        exited - started >= READER_BOUND - Duration::from_secs(3),
        "exited after only {:?}; log:\n{log}",
        exited - started
    );
    assert!(
        exited.saturating_duration_since(last) < Duration::from_secs(2),
        "pings had stopped long before the exit"
    );
}
