//! Time itself: each rule that counts hours or days fires at its real default, at its
//! boundary and not before, and wall-clock steps (NTP moving the clock an hour) neither stall
//! nor hasten a delivery. The binary runs under its debug-build test clock
//! (`STATUSSENTRY_TEST_CLOCK`, src/time.rs): the test writes how far simulated time has
//! advanced (both clocks) and how far the wall clock alone has been stepped, and waits until
//! the process acknowledges it. Simulated time is tracked here as real time since the clock
//! was made plus the advance, which is what the process sees too, so a boundary is placed
//! exactly however slowly the machine runs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::harness::*;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Longer than any default backoff can ask (1 h with its random factor of at most 1.2), so a
/// failing endpoint makes exactly one attempt per step.
const STEP: Duration = Duration::from_secs(75 * 60);

/// How long the process gets to notice a jump and act on it.
const REACT: Duration = Duration::from_secs(10);

/// The file that drives one server's clock.
struct Clock {
    dir: TempDir,
    start: Instant,
    advance: Duration,
    step_ms: i64,
}

impl Clock {
    fn new() -> Clock {
        let clock = Clock {
            dir: tempfile::tempdir().expect("create temp dir"),
            start: Instant::now(),
            advance: Duration::ZERO,
            step_ms: 0,
        };
        clock.write();
        clock
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("clock")
    }

    /// A server with the default settings plus `extra_toml`, driven by this clock.
    fn server(&self, extra_toml: &str) -> Server {
        Server::start_with_env(extra_toml, &[("STATUSSENTRY_TEST_CLOCK", &self.path())])
    }

    /// Simulated time since the clock was made, as the process sees it.
    fn now(&self) -> Duration {
        self.start.elapsed() + self.advance
    }

    /// Moves simulated time (both clocks) on to `at` and waits until the process has it.
    fn go_to(&mut self, at: Duration) {
        let advance = at
            .checked_sub(self.start.elapsed())
            .filter(|a| *a >= self.advance)
            .unwrap_or_else(|| panic!("cannot go back to {at:?} from {:?}", self.now()));
        self.advance = advance;
        self.write();
    }

    fn go_by(&mut self, by: Duration) {
        self.go_to(self.now() + by);
    }

    /// Steps the wall clock alone, as NTP would: `ms` from where it would otherwise be.
    fn step_wall(&mut self, ms: i64) {
        self.step_ms += ms;
        self.write();
    }

    /// Steps the wall clock while no process runs: the next one starts with it.
    fn step_wall_offline(&mut self, ms: i64) {
        self.step_ms += ms;
        self.write_file();
    }

    /// Writes the offsets (atomically, by rename); returns what it wrote.
    fn write_file(&self) -> String {
        let text = format!("{} {}", self.advance.as_millis(), self.step_ms);
        let tmp = self.dir.path().join("clock.tmp");
        std::fs::write(&tmp, &text).expect("write the clock file");
        std::fs::rename(&tmp, self.path()).expect("rename the clock file");
        text
    }

    /// Writes the offsets and waits for the process's acknowledgement.
    fn write(&self) {
        let text = self.write_file();
        let ack = self.dir.path().join("clock.ack");
        if !ack.exists() && self.advance.is_zero() && self.step_ms == 0 {
            // Before the server starts there is nobody to acknowledge.
            return;
        }
        wait_until(REACT, "the process to take the new clock", || {
            std::fs::read_to_string(&ack).is_ok_and(|a| a == text)
        });
    }
}

fn endpoint_with(server: &Server, receiver: &Receiver, extra: Value) -> String {
    let mut body = json!({"url": receiver.url("/hook")});
    for (key, value) in extra.as_object().expect("extra is an object") {
        body[key] = value.clone();
    }
    s(&create_endpoint(server, body), "id").to_string()
}

fn endpoint(server: &Server, id: &str) -> Value {
    server.expect("GET", &format!("/api/v1/endpoints/{id}"), None, 200)
}

fn status_of(server: &Server, event_id: &str, endpoint_id: &str) -> String {
    message_for(server, event_id, endpoint_id)
        .map(|m| s(&m, "status").to_string())
        .unwrap_or_else(|| panic!("no message of {event_id} to {endpoint_id}"))
}

fn event_status(server: &Server, event_id: &str) -> u16 {
    server
        .api("GET", &format!("/api/v1/events/{event_id}"), None)
        .0
}

#[test]
fn retention_prunes_at_thirty_days_and_not_before() {
    let mut clock = Clock::new();
    let server = clock.server("");
    let receiver = Receiver::start();
    let ep = endpoint_with(&server, &receiver, json!({}));

    let older_at = clock.now();
    let older = s(
        &publish(&server, "incident.created", incident("older")),
        "id",
    )
    .to_string();
    wait_message_status(&server, &older, &ep, "delivered", REACT);
    clock.go_to(older_at + 2 * MINUTE);
    let younger = s(
        &publish(&server, "incident.created", incident("younger")),
        "id",
    )
    .to_string();
    wait_message_status(&server, &younger, &ep, "delivered", REACT);

    // The older event a minute past 30 days, the younger a minute short of them: the pass
    // (every 60 s) that takes the older one must leave the younger.
    clock.go_to(older_at + 30 * DAY + MINUTE);
    wait_until(REACT, "the event older than 30 days to be pruned", || {
        event_status(&server, &older) == 404
    });
    assert_eq!(
        event_status(&server, &younger),
        200,
        "pruned before 30 days"
    );
    assert_eq!(status_of(&server, &younger, &ep), "delivered");

    clock.go_to(older_at + 2 * MINUTE + 30 * DAY + 2 * MINUTE);
    wait_until(REACT, "the younger event to be pruned at 30 days", || {
        event_status(&server, &younger) == 404
    });
}

#[test]
fn the_idempotency_window_is_24_hours() {
    let mut clock = Clock::new();
    let server = clock.server("");
    let client = server.client();
    let auth = format!("Bearer {TOKEN}");
    let body = json!({"type": "incident.created", "data": incident("once")}).to_string();
    let send = || {
        let reply = client.raw(
            "POST",
            "/api/v1/events",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
                ("Idempotency-Key", "clock-key-1"),
            ],
            Some(body.as_bytes()),
        );
        (reply.status, s(&reply.json(), "id").to_string())
    };
    let first_at = clock.now();
    let (status, first) = send();
    assert_eq!(status, 202);

    clock.go_to(first_at + DAY - MINUTE);
    assert_eq!(
        send(),
        (200, first.clone()),
        "a minute inside 24 h the key returns the first answer"
    );

    clock.go_to(first_at + DAY + MINUTE);
    let (status, second) = send();
    assert_eq!(status, 202, "past 24 h the key is new again");
    assert_ne!(second, first);
}

#[test]
fn the_sign_in_limit_lasts_one_minute() {
    let mut clock = Clock::new();
    let server = clock.server("");
    let client = server.client();
    let wrong = || {
        client
            .raw(
                "GET",
                "/api/v1/endpoints",
                &[("Authorization", "Bearer not-the-token")],
                None,
            )
            .status
    };
    // The window starts at the first failure, between these two readings.
    let before_first = clock.now();
    assert_eq!(wrong(), 401);
    let after_first = clock.now();
    for _ in 1..10 {
        assert_eq!(wrong(), 401);
    }
    assert_eq!(
        wrong(),
        429,
        "the 11th wrong token within a minute is limited"
    );

    // Seconds before the minute can end (a margin for a slow machine's requests).
    clock.go_to(before_first + MINUTE - Duration::from_secs(5));
    assert_eq!(wrong(), 429, "still limited before the minute ends");
    server.expect("GET", "/api/v1/endpoints", None, 200);

    clock.go_to(after_first + MINUTE);
    assert_eq!(
        wrong(),
        401,
        "a minute after the first failure the limit is over"
    );
}

#[test]
fn retry_for_and_disable_after_fire_at_their_defaults() {
    let mut clock = Clock::new();
    let server = clock.server("");
    let receiver = Receiver::start();
    receiver.reply_with(Reply::status(500));
    let ep = endpoint_with(&server, &receiver, json!({}));
    let failures = |server: &Server| endpoint(server, &ep)["consecutive_failures"].as_i64();

    let mut events: Vec<(String, Duration)> = Vec::new();
    let publish_now = |clock: &Clock, events: &mut Vec<(String, Duration)>, title: &str| {
        let at = clock.now();
        let id = s(&publish(&server, "incident.created", incident(title)), "id").to_string();
        events.push((id, at));
    };
    publish_now(&clock, &mut events, "a");
    receiver.wait_hits(1, REACT);
    wait_until(REACT, "the first failure to be recorded", || {
        failures(&server) == Some(1)
    });
    let failing_from = events[0].1;

    // Attempts every STEP, and one a minute before each boundary and the first after it.
    // "b" is published in the fourth hour, "c" at 60 h, so something is still pending when
    // the endpoint reaches its 5 days.
    let retry_for = 72 * HOUR;
    let disable_after = 120 * HOUR;
    let mut targets = Vec::new();
    let mut t = Duration::ZERO;
    let b_at = 3 * STEP;
    for boundary in [retry_for, b_at + retry_for, disable_after] {
        while t + 2 * STEP <= boundary - MINUTE {
            t += STEP;
            targets.push(t);
        }
        targets.push(boundary - MINUTE);
        t = boundary - MINUTE + STEP;
        targets.push(t);
    }

    let mut attempts = 1;
    for target in targets {
        clock.go_to(failing_from + target);
        attempts += 1;
        receiver.wait_hits(attempts, REACT);
        wait_until(REACT, &format!("attempt {attempts} to be recorded"), || {
            failures(&server) == Some(attempts as i64)
        });
        let now = clock.now();
        for (id, created) in &events {
            let want = if now - *created > retry_for {
                "failed"
            } else {
                "pending"
            };
            assert_eq!(
                status_of(&server, id, &ep),
                want,
                "event created at {:?} after an attempt at {:?}",
                *created - failing_from,
                now - failing_from
            );
        }
        let state = endpoint(&server, &ep);
        let disabled = now - failing_from >= disable_after;
        assert_eq!(
            state["enabled"],
            !disabled,
            "endpoint after {:?} of failure: {state}",
            now - failing_from
        );
        if disabled {
            assert_eq!(state["disabled_reason"], "failing");
            break;
        }
        if target == b_at {
            publish_now(&clock, &mut events, "b");
        }
        if target >= 60 * HOUR && events.len() == 2 {
            publish_now(&clock, &mut events, "c");
        }
    }
    assert_eq!(events.len(), 3);
    assert_eq!(endpoint(&server, &ep)["enabled"], false, "never disabled");
}

/// A first backoff of 10 to 12 minutes: long enough that a slow machine's real seconds never
/// end it, short beside the hour NTP steps the clock by.
const SLOW_BACKOFF: &str = "[delivery]\ninitial_backoff = \"10m\"\n";

#[test]
fn a_wall_clock_stepped_back_does_not_stall_a_retry() {
    let mut clock = Clock::new();
    let server = clock.server(SLOW_BACKOFF);
    let receiver = Receiver::start();
    receiver.script([Reply::status(500)]);
    receiver.reply_with(Reply::status(204));
    let ep = endpoint_with(&server, &receiver, json!({}));
    let event = s(&publish(&server, "incident.created", seed_data()), "id").to_string();
    receiver.wait_hits(1, REACT);

    // NTP steps the wall clock back an hour; the backoff still ends 12 minutes on.
    clock.step_wall(-3_600_000);
    clock.go_by(12 * MINUTE + Duration::from_secs(1));
    receiver.wait_hits(2, REACT);
    wait_message_status(&server, &event, &ep, "delivered", REACT);
}

#[test]
fn a_wall_clock_stepped_forward_does_not_cut_a_backoff_short() {
    let mut clock = Clock::new();
    let server = clock.server(SLOW_BACKOFF);
    let failing = Receiver::start();
    failing.script([Reply::status(500)]);
    failing.reply_with(Reply::status(204));
    let witness = Receiver::start();
    let ep = endpoint_with(&server, &failing, json!({}));
    let w = endpoint_with(&server, &witness, json!({"batch_window_ms": 0}));
    let first = s(&publish(&server, "incident.created", seed_data()), "id").to_string();
    failing.wait_hits(1, REACT);
    wait_message_status(&server, &first, &w, "delivered", REACT);

    // NTP steps the wall clock an hour ahead and 9 minutes pass: the backoff (at least 10
    // minutes) holds.
    clock.step_wall(3_600_000);
    clock.go_by(9 * MINUTE);
    // Each witness delivery is a dispatcher pass after the step that also looked at the
    // failing endpoint; two of them leave time for a request it wrongly started to arrive.
    for title in ["witness 1", "witness 2"] {
        let id = s(&publish(&server, "incident.created", incident(title)), "id").to_string();
        wait_message_status(&server, &id, &w, "delivered", REACT);
    }
    assert_eq!(failing.count(), 1, "the backoff was cut short by the step");

    clock.go_by(3 * MINUTE + Duration::from_secs(1));
    failing.wait_hits(2, REACT);
    wait_message_status(&server, &first, &ep, "delivered", REACT);
}

#[test]
fn a_stored_backoff_read_back_under_a_clock_stepped_back_waits_at_most_12_hours() {
    let mut clock = Clock::new();
    let mut server = clock.server(SLOW_BACKOFF);
    let failing = Receiver::start();
    failing.script([Reply::status(500)]);
    failing.reply_with(Reply::status(204));
    let witness = Receiver::start();
    let ep = endpoint_with(&server, &failing, json!({}));
    let w = endpoint_with(&server, &witness, json!({"batch_window_ms": 0}));
    let first = s(&publish(&server, "incident.created", seed_data()), "id").to_string();
    failing.wait_hits(1, REACT);
    wait_until(REACT, "the backoff to be stored", || {
        endpoint(&server, &ep)["consecutive_failures"] == 1
    });

    // Stopped, and started again with the wall clock 13 h behind: the stored backoff (10 to
    // 12 minutes) looks 13 h away, but no backoff may ask more than 12 h.
    server.stop();
    clock.step_wall_offline(-13 * 3_600_000);
    server.restart_with_env(&[("STATUSSENTRY_TEST_CLOCK", &clock.path())]);
    let restarted_at = clock.now();
    clock.go_to(restarted_at + 12 * HOUR - MINUTE);
    let witnessed = s(&publish(&server, "incident.created", incident("w")), "id").to_string();
    wait_message_status(&server, &witnessed, &w, "delivered", REACT);
    assert_eq!(failing.count(), 1, "the retry came before its bound");

    clock.go_to(restarted_at + 12 * HOUR + MINUTE);
    failing.wait_hits(2, REACT);
    wait_message_status(&server, &first, &ep, "delivered", REACT);
}

#[test]
fn ids_and_order_survive_wall_clock_steps() {
    let mut clock = Clock::new();
    let server = clock.server("");
    let receiver = Receiver::start();
    // The default batch window (5 s) counts from each answer: a wall clock stepped back
    // must not hold the next batch back an hour.
    let ep = endpoint_with(&server, &receiver, json!({}));
    let mut published = Vec::new();
    for (round, step) in [0, -3_600_000, 7_200_000, -3_600_000]
        .into_iter()
        .enumerate()
    {
        clock.step_wall(step);
        for i in 0..5 {
            let data = incident(&format!("round {round} event {i}"));
            published.push(s(&publish(&server, "incident.created", data), "id").to_string());
        }
        clock.go_by(Duration::from_secs(6));
        let last = published.last().expect("published").clone();
        wait_message_status(&server, &last, &ep, "delivered", REACT);
    }
    let mut unique = published.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), published.len(), "event ids repeated");
    assert_sequence(
        &receiver.event_ids(),
        &published,
        "deliveries in publish order",
    );
}

/// A monitor of `target` every 60 s with a 99.9 % SLA over the default 30 days.
fn sla_monitor(server: &Server, target: &Receiver) -> String {
    let m = server.expect(
        "POST",
        "/api/v1/monitors",
        Some(json!({
            "name": "clocked",
            "url": target.url("/"),
            "interval_secs": 60,
            "timeout_ms": 5000,
            "sla_target": 99.9,
        })),
        201,
    );
    s(&m, "id").to_string()
}

/// Counts checks by the requests the target saw (raw checks older than 6 h are folded
/// away, so the check list cannot count them), and waits until each is recorded.
struct Checks<'a> {
    server: &'a Server,
    target: &'a Receiver,
    monitor: String,
    last_recorded: Value,
}

impl Checks<'_> {
    /// Waits for check `n`, and that it is the only new one.
    fn wait(&mut self, n: usize) {
        let path = format!("/api/v1/monitors/{}", self.monitor);
        wait_until(REACT, &format!("check {n} to be recorded"), || {
            let last = self.server.expect("GET", &path, None, 200)["last_checked_at"].clone();
            self.target.count() >= n && last != self.last_recorded && {
                self.last_recorded = last;
                true
            }
        });
        assert_eq!(self.target.count(), n, "more than one check");
    }
}

fn sla_view(server: &Server, monitor: &str) -> Value {
    server.expect("GET", &format!("/api/v1/monitors/{monitor}/sla"), None, 200)
}

fn warnings(server: &Server) -> usize {
    list_all(server, "/api/v1/events?type=sla.breach_warning", 500).len()
}

#[test]
fn the_sla_window_is_thirty_days() {
    let mut clock = Clock::new();
    let server = clock.server("");
    let target = Receiver::start();
    target.script([Reply::status(500), Reply::status(500)]);
    target.reply_with(Reply::status(200));
    let first_at = clock.now();
    let monitor = sla_monitor(&server, &target);
    let mut checks = Checks {
        server: &server,
        target: &target,
        monitor: monitor.clone(),
        last_recorded: Value::Null,
    };
    checks.wait(1);
    clock.go_by(61 * Duration::from_secs(1));
    checks.wait(2);
    let second_done = clock.now();
    clock.go_by(61 * Duration::from_secs(1));
    checks.wait(3);
    // Two failed 60 s checks spent 120 s of the 2592 s budget.
    let spent = sla_view(&server, &monitor);
    assert_eq!(spent["error_budget_remaining_pct"], 95.37, "{spent}");

    // A minute before the first failure leaves the window, both still count.
    clock.go_to(first_at + 30 * DAY - MINUTE);
    checks.wait(4);
    let before = sla_view(&server, &monitor);
    assert_eq!(before["error_budget_remaining_pct"], 95.37, "{before}");

    // A minute after the second failure left it, the budget is whole again.
    clock.go_to(second_done + 30 * DAY + MINUTE);
    checks.wait(5);
    let after = sla_view(&server, &monitor);
    assert_eq!(after["error_budget_remaining_pct"], 100, "{after}");
    assert_eq!(after["current_uptime"], 100, "{after}");
}

#[test]
fn the_sla_warning_re_arms_after_an_hour_and_not_before() {
    let mut clock = Clock::new();
    let server = clock.server("");
    let target = Receiver::start();
    // The first check fails, the next nine pass: at the tenth, the first with a recent ratio
    // (1 in 10, which spends the budget left within 24 h), the warning fires.
    target.script([Reply::status(500)]);
    target.reply_with(Reply::status(200));
    let monitor = sla_monitor(&server, &target);
    let mut checks = Checks {
        server: &server,
        target: &target,
        monitor: monitor.clone(),
        last_recorded: Value::Null,
    };
    for n in 1..=10 {
        if n > 1 {
            clock.go_by(61 * Duration::from_secs(1));
        }
        checks.wait(n);
        let want = usize::from(n == 10);
        assert_eq!(warnings(&server), want, "warnings after check {n}");
    }
    assert_eq!(sla_view(&server, &monitor)["warning_armed"], false);

    // Seven hours on, too few recent checks for a ratio: the condition is false from here.
    let false_from = clock.now() + 7 * HOUR;
    clock.go_to(false_from);
    checks.wait(11);
    clock.go_to(false_from + 59 * MINUTE);
    checks.wait(12);
    let view = sla_view(&server, &monitor);
    assert_eq!(view["at_risk"], false, "{view}");
    assert_eq!(
        view["warning_armed"], false,
        "re-armed before an hour: {view}"
    );
    clock.go_to(false_from + 61 * MINUTE);
    checks.wait(13);
    let view = sla_view(&server, &monitor);
    assert_eq!(
        view["warning_armed"], true,
        "not re-armed after an hour: {view}"
    );

    // Failing again: once ten checks back a ratio, the second warning fires.
    target.reply_with(Reply::status(500));
    let mut n = 13;
    while warnings(&server) < 2 {
        assert!(n < 24, "no second warning after {n} checks");
        clock.go_by(61 * Duration::from_secs(1));
        n += 1;
        checks.wait(n);
    }
    assert_eq!(warnings(&server), 2);
}
