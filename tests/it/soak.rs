//! The soak test: the real binary run the way production runs it, not in the bursts every
//! other test makes. Quiet spells longer than every timeout in the program (no connection at
//! all to the admin API for over two minutes), bursts of publishes, a keep-alive client that
//! goes idle and comes back, an endpoint that refuses connections for minutes and one that
//! answers 503 for as long, a monitor whose target flaps, `kill -9` and SIGTERM restarts on the
//! same database, and online backups under load. At the end every event the API accepted has
//! reached every endpoint, the API's counts, `/metrics` and the receivers agree, the process's
//! memory, threads and descriptors are flat, and the log holds no unexplained ERROR line.
//!
//! `soak::short` (about three and a half minutes, one cycle) runs in `cargo test`;
//! `soak::long` runs cycles for `SOAK_SECS` seconds and does nothing without it (README, "The
//! soak test"). Both are the same code with a different plan. The test paces its publishers
//! and polls with generous deadlines, so it may share a small machine with the rest of the
//! suite; it does not take the timing lock, because nothing it asserts is a duration.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

/// The longest timeout of the program that runs without any client: the admin connections'
/// 30 s idle timeout, `header_timeout` (10 s), retention's 60 s interval and `batch_window`
/// (5 s by default) all end inside a quiet spell of this length, twice over for the first.
const SHORT_QUIET: Duration = Duration::from_secs(125);
const LONG_QUIET: Duration = Duration::from_secs(130);

/// Each publisher's pause between two publishes: two publishers make about 40 events a
/// second, three messages each, which a 2-core machine running the rest of the suite absorbs.
const PUBLISH_PACE: Duration = Duration::from_millis(50);
const PUBLISHERS: usize = 2;

/// A duplicate delivery is allowed only for a request in flight when the process was killed:
/// its first copy reached the receiver before the kill, at most this long before it. The
/// recorder writes an outcome within milliseconds of the answer; the margin is for a loaded
/// machine.
const KILL_WINDOW: Duration = Duration::from_secs(5);

/// How far the process may drift from its baseline (after warm-up, drained) when it is
/// drained again later: RSS by a quarter plus 16 MiB (SQLite's page caches, 2 MiB per
/// connection, fill as the file grows), threads and descriptors by 4 (a connection or two of
/// the test's own client, a pooled connection to a receiver).
const RSS_SLACK_KIB: u64 = 16 * 1024;
const THREAD_SLACK: u64 = 4;
const FD_SLACK: usize = 4;

/// ERROR lines the test's own actions explain, as (substring, reason). Any other ERROR line
/// fails the soak.
const EXPECTED_ERRORS: &[(&str, &str)] = &[];

#[test]
fn short() {
    run(Plan {
        total: Duration::ZERO,
        quiet: SHORT_QUIET,
        burst: Duration::from_secs(6),
    });
}

/// The long soak: `SOAK_SECS=3600 cargo test --release --test it soak::long -- --nocapture`.
/// Without `SOAK_SECS` it says so and returns, so that `cargo test` stays short.
#[test]
fn long() {
    let Some(secs) = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    else {
        println!(
            "soak::long: not run; set SOAK_SECS (e.g. 3600) to run it (README, \"The soak test\")"
        );
        return;
    };
    run(Plan {
        total: Duration::from_secs(secs),
        quiet: LONG_QUIET,
        burst: Duration::from_secs(20),
    });
}

/// What one soak does: cycles of outage, quiet spell, recovery and burst until `total` has
/// passed (at least one).
struct Plan {
    total: Duration,
    quiet: Duration,
    burst: Duration,
}

/// Server configuration: quick retries so that outages end in seconds after recovery, and a
/// delivery timeout no receiver of the test comes near.
const CONFIG: &str = "\
[delivery]
initial_backoff = \"200ms\"
max_backoff = \"3s\"
timeout = \"5s\"
connect_timeout = \"2s\"
[monitors]
checkers = 2
";

/// What the flaky receiver answers: 200, 503, or 503 with `Retry-After: 2`.
const UP: u8 = 0;
const UNAVAILABLE: u8 = 1;
const UNAVAILABLE_RETRY_AFTER: u8 = 2;

fn run(plan: Plan) {
    let began = Instant::now();
    let mut server = Server::start(CONFIG);
    let accepted: Accepted = Arc::new(Mutex::new(Vec::new()));
    let mut figures = Figures::default();

    // Three endpoints, each subscribed to everything: one always answering, one that answers
    // 503 through the outages, one whose port refuses connections through them.
    let steady = Receiver::start();
    steady.reply_with(Reply::status(200).delay(Duration::from_millis(5)));
    let flaky = Receiver::start();
    let flaky_mode = Arc::new(AtomicU8::new(UP));
    {
        let mode = Arc::clone(&flaky_mode);
        flaky.respond_with(move |_| match mode.load(Ordering::SeqCst) {
            UP => Reply::status(200),
            UNAVAILABLE => Reply::status(503),
            _ => Reply::status(503).header("Retry-After", "2"),
        });
    }
    let mut comeback = Comeback::start();
    let endpoints: Vec<String> = [
        (steady.url("/steady"), 0, 50),
        (flaky.url("/flaky"), 100, 10),
        (comeback.url("/comeback"), 100, 1),
    ]
    .into_iter()
    .map(|(url, window, max)| {
        let ep = create_endpoint(
            &server,
            json!({"url": url, "batch_window_ms": window, "batch_max": max}),
        );
        s(&ep, "id").to_string()
    })
    .collect();

    // A monitor whose target flaps between 200 and 503 every three seconds, so that it emits
    // `monitor.status_change` events all along, quiet spells included.
    let target = Receiver::start();
    let flap = Flap::start(&target);
    let monitor = server.expect(
        "POST",
        "/api/v1/monitors",
        Some(json!({
            "name": "soak target", "url": target.url("/health"), "interval_secs": 1,
            "timeout_ms": 500, "failures_before_down": 1, "successes_before_up": 1,
            "auto_incident": false
        })),
        201,
    );
    let monitor = s(&monitor, "id").to_string();

    // Restarts on the same database: kill -9 in the middle of a burst (requests in flight to
    // the receivers), then SIGTERM in the middle of another.
    let burst = Burst::start(server.addr(), &accepted);
    steady.wait_hits(steady.count() + 20, Duration::from_secs(60));
    server.kill9();
    let killed_at = Instant::now();
    figures.kills.push(killed_at);
    figures.add(burst.finish());
    server.restart();
    println!("soak: kill -9 at {:?}, restarted", killed_at - began);

    // The monitor is held UP through the SIGTERM restart, so that what `/metrics` counts
    // from the new start can be compared with the events the store holds.
    flap.pin_up();
    wait_monitor_settled(&server, &monitor);
    let burst = Burst::start(server.addr(), &accepted);
    steady.wait_hits(steady.count() + 20, Duration::from_secs(60));
    let status = server.stop();
    assert!(status.success(), "SIGTERM under load: exit {status}");
    let last_start = Instant::now();
    figures.sigterms += 1;
    figures.add(burst.finish());
    server.restart();
    let events_at_start = count_events(&server);
    let at_start = metrics(&server);
    assert_eq!(
        sum(&at_start, "statussentry_events_accepted_total"),
        0.0,
        "a fresh process has accepted nothing"
    );
    println!(
        "soak: SIGTERM at {:?}, restarted with {events_at_start} events",
        last_start - began
    );
    flap.resume();

    // Warm-up, then the baseline of a drained process.
    let burst = Burst::start(server.addr(), &accepted);
    thread::sleep(plan.burst);
    figures.add(burst.finish());
    wait_drained(&server, &endpoints);
    let pid = server.child_mut().id();
    let baseline = usage(pid);
    println!("soak: baseline after warm-up {baseline}");
    let mut drained = Vec::new();
    let mut peak = baseline;

    let mut cycle = 0;
    loop {
        cycle += 1;
        // A keep-alive client: served twice on one connection a moment apart, then idle
        // through the quiet spell, and back after it.
        let mut keep_alive = KeepAlive::new(server.addr());
        keep_alive.get("/healthz");
        thread::sleep(Duration::from_secs(3));
        keep_alive.get("/healthz");
        assert_eq!(
            keep_alive.connections, 1,
            "a keep-alive connection idle for 3 s must still be served"
        );

        // The outage, and the quiet spell over it: nothing connects to the admin API.
        comeback.down();
        flaky_mode.store(
            if cycle % 2 == 1 {
                UNAVAILABLE
            } else {
                UNAVAILABLE_RETRY_AFTER
            },
            Ordering::SeqCst,
        );
        let quiet_from = Instant::now();
        while quiet_from.elapsed() < plan.quiet {
            // Reading /proc is not a connection; the sleep is the quiet spell itself.
            let now = usage(pid);
            peak = peak.peak(now);
            thread::sleep(
                Duration::from_secs(5).min(plan.quiet.saturating_sub(quiet_from.elapsed())),
            );
        }
        figures.quiet += quiet_from.elapsed();
        let after_quiet = quiet_from.elapsed();
        probe_after_quiet(&server, after_quiet);
        keep_alive.get("/healthz");
        figures.keep_alive_reconnects += keep_alive.connections - 1;

        // Recovery, then a burst with a backup taken in the middle of it.
        comeback.up();
        flaky_mode.store(UP, Ordering::SeqCst);
        let burst = Burst::start(server.addr(), &accepted);
        thread::sleep(plan.burst / 3);
        figures
            .backups
            .push(backup_under_load(&server, &accepted, cycle));
        thread::sleep(plan.burst.saturating_sub(plan.burst / 3));
        figures.add(burst.finish());
        wait_drained(&server, &endpoints);
        let now = usage(pid);
        peak = peak.peak(now);
        drained.push(now);
        println!(
            "soak: cycle {cycle} done at {:?}: {} events accepted, drained {now}",
            began.elapsed(),
            accepted.lock().unwrap().len()
        );
        if began.elapsed() >= plan.total {
            break;
        }
    }

    // The end: the monitor held UP, everything delivered, then every figure compared.
    flap.pin_up();
    wait_monitor_settled(&server, &monitor);
    let events = wait_all_delivered(&server, &endpoints, &[&steady, &flaky], &comeback);
    let accepted: Vec<(String, Instant)> = accepted.lock().unwrap().clone();
    let listed: HashSet<&str> = events.iter().map(String::as_str).collect();
    for (id, _) in &accepted {
        assert!(
            listed.contains(id.as_str()),
            "accepted {id} is not in the store"
        );
    }

    let hits = [steady.hits(), flaky.hits(), comeback.hits()];
    for (hits, endpoint) in hits.iter().zip(&endpoints) {
        figures.duplicates += check_duplicates(hits, &figures.kills, endpoint);
    }

    // /metrics against the store and the receivers, from the last start on.
    let m = metrics(&server);
    let since_start = |status_ok: fn(u16) -> bool| -> usize {
        hits.iter()
            .flatten()
            .filter(|h| h.at >= last_start && status_ok(h.answered))
            .count()
    };
    assert_eq!(
        sum(&m, "statussentry_events_accepted_total") as usize,
        events.len() - events_at_start,
        "events accepted since the last start, /metrics against the store"
    );
    assert_eq!(
        one(
            &m,
            "statussentry_delivery_requests_total{outcome=\"success\"}"
        ) as usize,
        since_start(|s| (200..300).contains(&s)),
        "successful requests since the last start, /metrics against the receivers"
    );
    assert_eq!(
        one(
            &m,
            "statussentry_delivery_requests_total{outcome=\"http_5xx\"}"
        ) as usize,
        since_start(|s| s == 503),
        "503 answers since the last start, /metrics against the receivers"
    );
    assert!(
        one(
            &m,
            "statussentry_delivery_requests_total{outcome=\"connect\"}"
        ) > 0.0,
        "the endpoint whose port was closed must have been counted as refused"
    );
    assert_eq!(
        one(&m, "statussentry_messages{status=\"delivered\"}") as usize,
        events.len() * endpoints.len(),
        "delivered messages, /metrics against the store"
    );
    for status in ["pending", "parked", "failed"] {
        assert_eq!(
            one(&m, &format!("statussentry_messages{{status=\"{status}\"}}")),
            0.0,
            "{status} messages in /metrics"
        );
    }

    // Flat: every drained sample after the baseline within the slack.
    let end = usage(pid);
    peak = peak.peak(end);
    drained.push(end);
    for sample in &drained {
        assert!(
            sample.rss_kib <= baseline.rss_kib + baseline.rss_kib / 4 + RSS_SLACK_KIB
                && sample.threads <= baseline.threads + THREAD_SLACK
                && sample.fds <= baseline.fds + FD_SLACK,
            "not flat: baseline {baseline}, later {sample}; every drained sample: {drained:?}"
        );
    }

    let errors = unexplained_errors(&server.log());
    assert!(
        errors.is_empty(),
        "unexplained ERROR lines in the server's log:\n{}",
        errors.join("\n")
    );

    println!(
        "soak figures: ran {:?} ({cycle} cycles, {:?} of quiet spells); events {} stored, {} accepted \
         (202), {} publishes refused during shutdown; restarts: {} kill -9, {} SIGTERM; \
         duplicates {} (allowed: kill -9 in flight); keep-alive reconnects after idle {}; \
         backups {:?} (events each); deliveries since last start {}; \
         RSS/threads/fds baseline {baseline}, end {end}, peak {peak}",
        began.elapsed(),
        figures.quiet,
        events.len(),
        accepted.len(),
        figures.refused,
        figures.kills.len(),
        figures.sigterms,
        figures.duplicates,
        figures.keep_alive_reconnects,
        figures.backups,
        since_start(|s| (200..300).contains(&s)),
    );
}

/// The events the API answered 202, with when the answer came.
type Accepted = Arc<Mutex<Vec<(String, Instant)>>>;

#[derive(Default)]
struct Figures {
    kills: Vec<Instant>,
    sigterms: usize,
    refused: usize,
    duplicates: usize,
    keep_alive_reconnects: usize,
    backups: Vec<i64>,
    quiet: Duration,
}

impl Figures {
    fn add(&mut self, stats: BurstStats) {
        self.refused += stats.refused;
    }
}

// ---------------------------------------------------------------------------------------
// Publishers

struct BurstStats {
    refused: usize,
}

/// Publishers that run until told to stop or until the server goes away.
struct Burst {
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<()>>,
}

impl Burst {
    fn start(addr: SocketAddr, accepted: &Accepted) -> Burst {
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicUsize::new(0));
        let threads = (0..PUBLISHERS)
            .map(|n| {
                let stop = Arc::clone(&stop);
                let refused = Arc::clone(&refused);
                let accepted = Arc::clone(accepted);
                thread::spawn(move || publisher(addr, n, &stop, &refused, &accepted))
            })
            .collect();
        Burst {
            stop,
            refused,
            threads,
        }
    }

    fn finish(self) -> BurstStats {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            thread.join().expect("publisher thread");
        }
        BurstStats {
            refused: self.refused.load(Ordering::SeqCst),
        }
    }
}

/// Publishes at [`PUBLISH_PACE`] on one keep-alive connection. A 202 is an accepted event;
/// a 503 is a refusal during shutdown; a transport error means the server is gone (killed or
/// stopped), which ends the burst.
fn publisher(
    addr: SocketAddr,
    n: usize,
    stop: &AtomicBool,
    refused: &AtomicUsize,
    accepted: &Mutex<Vec<(String, Instant)>>,
) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let url = format!("http://{addr}/api/v1/events");
    let mut i = 0;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let body = json!({"type": "incident.created", "data": incident(&format!("soak {n}.{i}"))});
        let result = agent
            .post(&url)
            .header("Authorization", format!("Bearer {TOKEN}"))
            .header("Content-Type", "application/json")
            .send(body.to_string());
        let Ok(mut response) = result else { return };
        let status = response.status().as_u16();
        let Ok(text) = response.body_mut().read_to_string() else {
            return;
        };
        match status {
            202 => {
                let answer: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("202 without JSON ({e}): {text}"));
                accepted
                    .lock()
                    .unwrap()
                    .push((s(&answer, "id").to_string(), Instant::now()));
            }
            503 => {
                refused.fetch_add(1, Ordering::SeqCst);
                return;
            }
            other => panic!("publish answered {other}: {text}"),
        }
        thread::sleep(PUBLISH_PACE);
    }
}

// ---------------------------------------------------------------------------------------
// The endpoint whose port goes away and comes back

/// A receiver on a fixed port that can be taken down (its listener closed, so connections
/// are refused) and brought back on the same port. The port is chosen below the kernel's
/// ephemeral range, so that no outgoing connection of anything on the machine takes it while
/// it is down.
struct Comeback {
    addr: String,
    current: Option<Receiver>,
    past: Vec<Hit>,
}

impl Comeback {
    fn start() -> Comeback {
        let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
            .unwrap_or(32768)
            .clamp(12000, 32768);
        let random = RandomState::new();
        for attempt in 0..200u64 {
            let port = 10000 + (random.hash_one(attempt) % u64::from(low - 10000)) as u16;
            let addr = format!("127.0.0.1:{port}");
            if let Ok(receiver) = Receiver::start_at(&addr) {
                return Comeback {
                    addr,
                    current: Some(receiver),
                    past: Vec::new(),
                };
            }
        }
        panic!("no free port below {low} for the comeback receiver");
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn down(&mut self) {
        if let Some(receiver) = self.current.take() {
            self.past.extend(receiver.into_hits());
        }
    }

    fn up(&mut self) {
        // The port was ours a moment ago and is outside the ephemeral range; a bind that
        // fails still gets a few tries, for a socket of the old listener not yet gone.
        let receiver = wait_for(
            Duration::from_secs(30),
            "the comeback port to bind again",
            || Receiver::start_at(&self.addr).map_err(|e| e.to_string()),
        );
        self.current = Some(receiver);
    }

    fn hits(&self) -> Vec<Hit> {
        let mut hits = self.past.clone();
        if let Some(receiver) = &self.current {
            hits.extend(receiver.hits());
        }
        hits
    }
}

// ---------------------------------------------------------------------------------------
// The flapping monitor target

struct Flap {
    up: Arc<AtomicBool>,
    pinned: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Flap {
    fn start(target: &Receiver) -> Flap {
        let up = Arc::new(AtomicBool::new(true));
        let pinned = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let up = Arc::clone(&up);
            target.respond_with(move |_| {
                Reply::status(if up.load(Ordering::SeqCst) { 200 } else { 503 })
            });
        }
        let thread = {
            let (up, pinned, stop) = (Arc::clone(&up), Arc::clone(&pinned), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    // The period of the flapping, not synchronisation.
                    thread::sleep(Duration::from_secs(3));
                    if !pinned.load(Ordering::SeqCst) {
                        up.fetch_xor(true, Ordering::SeqCst);
                    }
                }
            })
        };
        Flap {
            up,
            pinned,
            stop,
            thread: Some(thread),
        }
    }

    fn pin_up(&self) {
        self.pinned.store(true, Ordering::SeqCst);
        self.up.store(true, Ordering::SeqCst);
    }

    fn resume(&self) {
        self.pinned.store(false, Ordering::SeqCst);
    }
}

impl Drop for Flap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits until the monitor is UP and its two newest checks succeeded: checks of one monitor
/// never overlap, so a failed check that began before the target was pinned has been
/// recorded by then, and no more transitions follow.
fn wait_monitor_settled(server: &Server, monitor: &str) {
    wait_for(Duration::from_secs(60), "the monitor to settle UP", || {
        let m = server.expect("GET", &format!("/api/v1/monitors/{monitor}"), None, 200);
        let checks = server.expect(
            "GET",
            &format!("/api/v1/monitors/{monitor}/checks?limit=2"),
            None,
            200,
        );
        let ok = checks["data"]
            .as_array()
            .is_some_and(|c| c.len() == 2 && c.iter().all(|c| c["ok"] == true));
        if m["status"] == "UP" && ok {
            Ok(())
        } else {
            Err(format!("monitor {m}, checks {checks}"))
        }
    });
    // Two more seconds of checks, polled, so that a check in flight when the last two were
    // read is seen too.
    let seen = last_checked(server, monitor);
    wait_until(Duration::from_secs(30), "a later check", || {
        last_checked(server, monitor) != seen
    });
}

fn last_checked(server: &Server, monitor: &str) -> Value {
    server.expect("GET", &format!("/api/v1/monitors/{monitor}"), None, 200)["last_checked_at"]
        .clone()
}

// ---------------------------------------------------------------------------------------
// The admin API without the harness's client: connections are the subject here

/// A client on one keep-alive connection that reconnects only when the server closed it.
struct KeepAlive {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
    /// Connections opened, the first included.
    connections: usize,
}

impl KeepAlive {
    fn new(addr: SocketAddr) -> KeepAlive {
        KeepAlive {
            addr,
            stream: None,
            connections: 0,
        }
    }

    /// GET `path`, asserting 200: on the open connection if the server kept it, else on a
    /// new one, which must be accepted.
    fn get(&mut self, path: &str) {
        if let Some(stream) = self.stream.as_mut()
            && let Ok(status) = roundtrip(stream, path)
        {
            assert_eq!(status, 200, "GET {path} on a kept-alive connection");
            return;
        }
        let stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(10))
            .unwrap_or_else(|e| {
                panic!(
                    "keep-alive client coming back: cannot connect to {}: {e} \
                     (the admin listener must accept after any idle time)",
                    self.addr
                )
            });
        self.connections += 1;
        let mut stream = BufReader::new(stream);
        let status = roundtrip(&mut stream, path)
            .unwrap_or_else(|e| panic!("GET {path} on a new connection: {e}"));
        assert_eq!(status, 200, "GET {path} on a new connection");
        self.stream = Some(stream);
    }
}

/// One HTTP/1.1 request on `stream`, read to the end of its answer; the status.
fn roundtrip(stream: &mut BufReader<TcpStream>, path: &str) -> std::io::Result<u16> {
    stream
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream.get_mut(),
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"
    )?;
    stream.get_mut().flush()?;
    let mut line = String::new();
    if stream.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut length = 0usize;
    loop {
        line.clear();
        if stream.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value
                .trim()
                .parse()
                .map_err(|_| std::io::Error::other(format!("bad {line:?}")))?;
        }
    }
    let mut body = vec![0; length.min(1 << 20)];
    stream.read_exact(&mut body)?;
    Ok(status)
}

/// The first connection after a quiet spell: it must be accepted and served.
fn probe_after_quiet(server: &Server, quiet: Duration) {
    let addr = server.addr();
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap_or_else(|e| {
        panic!(
            "after {quiet:?} without a connection, the admin API at {addr} refuses a new one: \
             {e}. The listener died while idle (issue 15.1). ERROR lines in the log:\n{}",
            error_lines(&server.log()).join("\n")
        )
    });
    let mut stream = BufReader::new(stream);
    let status = roundtrip(&mut stream, "/healthz").unwrap_or_else(|e| {
        panic!("after {quiet:?} without a connection, GET /healthz failed: {e}")
    });
    assert_eq!(status, 200, "GET /healthz after {quiet:?} of quiet");
}

// ---------------------------------------------------------------------------------------
// Checks

/// Waits until no endpoint has a message pending, parked or failed.
fn wait_drained(server: &Server, endpoints: &[String]) {
    wait_for(Duration::from_secs(180), "every endpoint drained", || {
        let list = server.expect("GET", "/api/v1/endpoints?limit=500", None, 200);
        let mut busy = Vec::new();
        for ep in list["data"].as_array().into_iter().flatten() {
            if !endpoints.iter().any(|id| ep["id"] == id.as_str()) {
                continue;
            }
            let c = &ep["counts"];
            if c["pending"] != 0 || c["parked"] != 0 || c["failed"] != 0 {
                busy.push(format!("{}: {}", ep["id"], c));
            }
        }
        if busy.is_empty() {
            Ok(())
        } else {
            Err(busy.join("; "))
        }
    });
}

/// Waits until every stored event has reached every endpoint (a 2xx at its receiver) and the
/// API counts each as delivered; returns the stored events' ids.
fn wait_all_delivered(
    server: &Server,
    endpoints: &[String],
    receivers: &[&Receiver],
    comeback: &Comeback,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        wait_drained(server, endpoints);
        let events: Vec<String> = list_all(server, "/api/v1/events", 500)
            .iter()
            .map(|e| s(e, "id").to_string())
            .collect();
        let mut hits: Vec<Vec<Hit>> = receivers.iter().map(|r| r.hits()).collect();
        hits.push(comeback.hits());
        let list = server.expect("GET", "/api/v1/endpoints?limit=500", None, 200);
        let mut problems = Vec::new();
        for (hits, endpoint) in hits.iter().zip(endpoints) {
            let delivered: HashSet<String> = hits
                .iter()
                .filter(|h| (200..300).contains(&h.answered))
                .flat_map(Hit::event_ids)
                .collect();
            let missing: Vec<&String> = events
                .iter()
                .filter(|id| !delivered.contains(*id))
                .collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "{endpoint}: {} of {} events never answered 2xx at its receiver, e.g. {:?}",
                    missing.len(),
                    events.len(),
                    &missing[..missing.len().min(5)]
                ));
            }
            let extra = delivered.len() + missing.len() - events.len();
            if extra != 0 {
                problems.push(format!(
                    "{endpoint}: {extra} delivered ids the store does not list"
                ));
            }
            let ep = list["data"]
                .as_array()
                .and_then(|a| a.iter().find(|e| e["id"] == endpoint.as_str()))
                .unwrap_or_else(|| panic!("endpoint {endpoint} not listed: {list}"));
            if ep["counts"]["delivered"] != events.len() {
                problems.push(format!(
                    "{endpoint}: the API counts {} delivered, the store lists {} events",
                    ep["counts"],
                    events.len()
                ));
            }
        }
        if problems.is_empty() {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "not every event delivered:\n{}",
            problems.join("\n")
        );
        // A poll of a few hundred requests' worth; once a second is plenty.
        thread::sleep(Duration::from_secs(1));
    }
}

/// Counts the duplicates among `hits` (2xx deliveries of one endpoint), asserting that each
/// earlier copy reached the receiver shortly before a kill -9.
fn check_duplicates(hits: &[Hit], kills: &[Instant], endpoint: &str) -> usize {
    let mut seen: HashMap<String, Vec<Instant>> = HashMap::new();
    for hit in hits.iter().filter(|h| (200..300).contains(&h.answered)) {
        for id in hit.event_ids() {
            seen.entry(id).or_default().push(hit.at);
        }
    }
    let mut duplicates = 0;
    for (id, mut times) in seen {
        times.sort();
        for earlier in &times[..times.len() - 1] {
            duplicates += 1;
            assert!(
                kills
                    .iter()
                    .any(|&k| *earlier <= k && k.duration_since(*earlier) <= KILL_WINDOW),
                "{id} delivered {} times to {endpoint}, and its copy at {earlier:?} was not in \
                 flight at a kill -9 (kills at {kills:?})",
                times.len()
            );
        }
    }
    duplicates
}

/// `statussentry backup` while the publishers run; the copy must pass an integrity check
/// and hold every event accepted before it began. Returns how many events it holds.
fn backup_under_load(server: &Server, accepted: &Accepted, cycle: usize) -> i64 {
    let before: Vec<String> = accepted
        .lock()
        .unwrap()
        .iter()
        .map(|(id, _)| id.clone())
        .collect();
    let dir = server
        .db_path()
        .parent()
        .expect("db in a dir")
        .to_path_buf();
    let dest = dir.join(format!("backup-{cycle}.sqlite"));
    let out = run_with_deadline(
        command(&dir).args([
            "backup",
            dest.to_str().expect("utf-8 temp path"),
            "--config",
            "statussentry.toml",
        ]),
        Duration::from_secs(300),
    );
    assert!(
        out.status.success(),
        "backup under load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let held = events_in_backup(&dest, &before);
    // The copies are checked, not kept: a long soak would fill the disk with them.
    let _ = std::fs::remove_file(&dest);
    held
}

fn events_in_backup(path: &Path, must_hold: &[String]) -> i64 {
    let copy = rusqlite::Connection::open(path).expect("open the backup");
    let check: String = copy
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok", "backup integrity");
    let mut stmt = copy.prepare("SELECT id FROM events").expect("read events");
    let stored: HashSet<String> = stmt
        .query_map([], |r| r.get(0))
        .expect("read events")
        .collect::<Result<_, _>>()
        .expect("read events");
    for id in must_hold {
        assert!(
            stored.contains(id),
            "{id}, accepted before the backup began, is not in it"
        );
    }
    stored.len() as i64
}

fn count_events(server: &Server) -> usize {
    list_all(server, "/api/v1/events", 500).len()
}

/// `/metrics` as series → value (a strict parse is `ops`'s business).
fn metrics(server: &Server) -> BTreeMap<String, f64> {
    let reply = server.client().raw("GET", "/metrics", &[], None);
    assert_eq!(reply.status, 200, "GET /metrics");
    reply
        .text()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn one(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("no {series} in /metrics: {m:?}"))
}

/// The sum of a family's series.
fn sum(m: &BTreeMap<String, f64>, family: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| k.split('{').next() == Some(family))
        .map(|(_, v)| v)
        .sum()
}

fn error_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(" ERROR "))
        .map(str::to_string)
        .collect()
}

fn unexplained_errors(log: &str) -> Vec<String> {
    error_lines(log)
        .into_iter()
        .filter(|l| {
            !EXPECTED_ERRORS
                .iter()
                .any(|(pattern, _)| l.contains(pattern))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The process's footprint

/// Resident memory, threads and open descriptors of a process, from /proc.
#[derive(Clone, Copy, Debug)]
struct Usage {
    rss_kib: u64,
    threads: u64,
    fds: usize,
}

impl Usage {
    /// The larger of each figure.
    fn peak(self, other: Usage) -> Usage {
        Usage {
            rss_kib: self.rss_kib.max(other.rss_kib),
            threads: self.threads.max(other.threads),
            fds: self.fds.max(other.fds),
        }
    }
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RSS {} KiB, {} threads, {} fds",
            self.rss_kib, self.threads, self.fds
        )
    }
}

fn usage(pid: u32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}; is the server still running?"));
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
        .count();
    Usage {
        rss_kib: field("VmRSS:"),
        threads: field("Threads:"),
        fds,
    }
}
