//! Counters and histograms kept in memory with atomics, rendered in the Prometheus text format
//! for `GET /metrics`. Label values come from fixed sets only: never a URL or an id.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::event::EventType;
use crate::net::{ErrorKind, Timings};

/// Delivery outcomes, a fixed set (SPEC 5).
pub const OUTCOMES: [&str; 10] = [
    "success", "http_3xx", "http_4xx", "http_5xx", "timeout", "connect", "dns", "tls", "blocked",
    "other",
];

/// Seconds; attempt durations run from a loopback millisecond to the 10 s timeout.
const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Seconds; delivery lag runs from milliseconds to the days of an outage.
const LAG_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0, 86400.0,
];

/// A histogram with fixed buckets; `observe` is a few atomic adds.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, seconds: f64) {
        let seconds = seconds.max(0.0);
        if let Some(i) = self.bounds.iter().position(|b| seconds <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        self.render_series(out, name, "");
    }

    /// The series of one histogram of a family, `label` (`key="value"`, or empty) on each.
    fn render_series(&self, out: &mut String, name: &str, label: &str) {
        let (bare, sep) = if label.is_empty() {
            (String::new(), "")
        } else {
            (format!("{{{label}}}"), ",")
        };
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{label}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let total = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{label}{sep}le=\"+Inf\"}} {total}");
        let _ = writeln!(
            out,
            "{name}_sum{bare} {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{bare} {total}");
    }
}

/// The phases of a delivery request with a histogram each (SPEC 4.5), the `phase` label's
/// fixed set of values.
pub const PHASES: [&str; 4] = ["dns", "connect", "tls", "ttfb"];

/// Seconds; a phase runs from a tenth of a loopback millisecond to the 10 s timeout.
const PHASE_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Everything counted in the process; shared by `Arc`.
pub struct Metrics {
    events_accepted: [AtomicU64; 4],
    deliveries: [AtomicU64; 10],
    /// Heartbeat requests (SPEC 4.7), by the same outcomes: they are not delivery requests,
    /// so that the delivery counters stay about events.
    heartbeats: [AtomicU64; 10],
    /// Recovery probes of endpoints disabled for failing (SPEC 4.4), by `RECOVERY_OUTCOMES`.
    recovery_probes: [AtomicU64; 3],
    pub attempt_duration: Histogram,
    pub delivery_lag: Histogram,
    /// Delivery requests' phases, in `PHASES` order; a phase that did not happen (TLS on
    /// plain HTTP, any connection phase on a reused connection) is not observed.
    attempt_phases: [Histogram; 4],
    /// Admin connections refused at `server.max_connections`.
    connections_refused: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            events_accepted: Default::default(),
            deliveries: Default::default(),
            heartbeats: Default::default(),
            recovery_probes: Default::default(),
            attempt_duration: Histogram::new(&DURATION_BUCKETS),
            delivery_lag: Histogram::new(&LAG_BUCKETS),
            attempt_phases: PHASES.map(|_| Histogram::new(&PHASE_BUCKETS)),
            connections_refused: AtomicU64::new(0),
        }
    }
}

/// Values read from the store at scrape time: plain data the store fills in.
pub use crate::store::Gauges;

/// The outcomes of a recovery probe: the fixed label set of
/// `statussentry_recovery_probes_total`.
const RECOVERY_OUTCOMES: [&str; 3] = ["recovered", "failed", "gone"];

/// The index in `OUTCOMES` of a request's outcome, from its status or error name.
fn outcome(status: Option<u16>, error: Option<ErrorKind>) -> usize {
    let outcome = match (status, error) {
        (Some(200..=299), _) => "success",
        (Some(300..=399), _) => "http_3xx",
        (Some(400..=499), _) => "http_4xx",
        (Some(500..=599), _) => "http_5xx",
        (None, Some(ErrorKind::Timeout)) => "timeout",
        (None, Some(ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset)) => "connect",
        (None, Some(ErrorKind::Dns)) => "dns",
        (None, Some(ErrorKind::Tls)) => "tls",
        (None, Some(ErrorKind::BlockedAddress)) => "blocked",
        _ => "other",
    };
    OUTCOMES
        .iter()
        .position(|o| *o == outcome)
        .unwrap_or(OUTCOMES.len() - 1)
}

impl Metrics {
    pub fn event_accepted(&self, t: EventType) {
        let i = EventType::ALL.iter().position(|x| *x == t).unwrap_or(0);
        self.events_accepted[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one delivery request under its outcome, from its status or error name.
    pub fn delivery(&self, status: Option<u16>, error: Option<ErrorKind>) {
        self.deliveries[outcome(status, error)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one heartbeat request under its outcome.
    pub fn heartbeat(&self, status: Option<u16>, error: Option<ErrorKind>) {
        self.heartbeats[outcome(status, error)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one recovery probe under its outcome (`delivery::recovery::Probe::as_str`);
    /// `recovered` counts the endpoints enabled again.
    pub fn recovery_probe(&self, outcome: &str) {
        if let Some(i) = RECOVERY_OUTCOMES.iter().position(|o| *o == outcome) {
            self.recovery_probes[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Observes each phase a delivery request went through.
    pub fn attempt_phases(&self, t: &Timings) {
        for (histogram, phase) in self
            .attempt_phases
            .iter()
            .zip([t.dns, t.connect, t.tls, t.ttfb])
        {
            if let Some(d) = phase {
                histogram.observe(d.as_secs_f64());
            }
        }
    }

    /// Counts one admin connection refused because `server.max_connections` were open.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP statussentry_build_info Build information.\n# TYPE statussentry_build_info gauge\n\
             statussentry_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(
            out,
            "# HELP statussentry_events_accepted_total Events accepted, by type.\n\
             # TYPE statussentry_events_accepted_total counter"
        );
        for (t, n) in EventType::ALL.iter().zip(&self.events_accepted) {
            let _ = writeln!(
                out,
                "statussentry_events_accepted_total{{type=\"{}\"}} {}",
                t.as_str(),
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP statussentry_delivery_requests_total Delivery requests made, by outcome.\n\
             # TYPE statussentry_delivery_requests_total counter"
        );
        for (o, n) in OUTCOMES.iter().zip(&self.deliveries) {
            let _ = writeln!(
                out,
                "statussentry_delivery_requests_total{{outcome=\"{o}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP statussentry_heartbeats_total Heartbeat requests made (SPEC 4.7), by outcome.\n\
             # TYPE statussentry_heartbeats_total counter"
        );
        for (o, n) in OUTCOMES.iter().zip(&self.heartbeats) {
            let _ = writeln!(
                out,
                "statussentry_heartbeats_total{{outcome=\"{o}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP statussentry_recovery_probes_total Probes of endpoints disabled for failing (SPEC 4.4), by outcome; recovered: enabled again.\n\
             # TYPE statussentry_recovery_probes_total counter"
        );
        for (o, n) in RECOVERY_OUTCOMES.iter().zip(&self.recovery_probes) {
            let _ = writeln!(
                out,
                "statussentry_recovery_probes_total{{outcome=\"{o}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP statussentry_http_connections_refused_total Admin API connections refused with 503 because server.max_connections were open.\n\
             # TYPE statussentry_http_connections_refused_total counter\n\
             statussentry_http_connections_refused_total {}",
            self.connections_refused.load(Ordering::Relaxed)
        );
        self.attempt_duration.render(
            &mut out,
            "statussentry_delivery_attempt_duration_seconds",
            "Duration of delivery requests.",
        );
        self.delivery_lag.render(
            &mut out,
            "statussentry_delivery_lag_seconds",
            "Time from an event's acceptance to its delivery, per message.",
        );
        let _ = writeln!(
            out,
            "# HELP statussentry_attempt_phase_seconds Phases of delivery requests: name lookup, connecting, TLS handshake, wait for the response head.\n\
             # TYPE statussentry_attempt_phase_seconds histogram"
        );
        for (histogram, phase) in self.attempt_phases.iter().zip(PHASES) {
            histogram.render_series(
                &mut out,
                "statussentry_attempt_phase_seconds",
                &format!("phase=\"{phase}\""),
            );
        }
        let _ = writeln!(
            out,
            "# HELP statussentry_messages Messages in the store, by status.\n# TYPE statussentry_messages gauge"
        );
        for (status, n) in gauges.messages {
            let _ = writeln!(out, "statussentry_messages{{status=\"{status}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP statussentry_oldest_pending_message_age_seconds Age of the oldest pending message, 0 when none.\n\
             # TYPE statussentry_oldest_pending_message_age_seconds gauge\n\
             statussentry_oldest_pending_message_age_seconds {}",
            gauges.oldest_pending_age_secs
        );
        let _ = writeln!(
            out,
            "# HELP statussentry_endpoints Endpoints, by state.\n# TYPE statussentry_endpoints gauge"
        );
        for (state, n) in gauges.endpoints {
            let _ = writeln!(out, "statussentry_endpoints{{state=\"{state}\"}} {n}");
        }
        if !gauges.monitors.is_empty() {
            let _ = writeln!(
                out,
                "# HELP statussentry_monitors Monitors, by status.\n# TYPE statussentry_monitors gauge"
            );
            for (status, n) in &gauges.monitors {
                let _ = writeln!(out, "statussentry_monitors{{status=\"{status}\"}} {n}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_the_fixed_set() {
        let m = Metrics::default();
        let rows: [(Option<u16>, Option<ErrorKind>, &str); 9] = [
            (Some(200), None, "success"),
            (Some(302), Some(ErrorKind::Redirect), "http_3xx"),
            (Some(404), None, "http_4xx"),
            (Some(503), None, "http_5xx"),
            (None, Some(ErrorKind::Timeout), "timeout"),
            (None, Some(ErrorKind::ConnectionRefused), "connect"),
            (None, Some(ErrorKind::Dns), "dns"),
            (None, Some(ErrorKind::BlockedAddress), "blocked"),
            (None, Some(ErrorKind::InvalidResponse), "other"),
        ];
        for (status, error, _) in rows {
            m.delivery(status, error);
            m.heartbeat(status, error);
        }
        let text = m.render(&Gauges::default());
        for (_, _, outcome) in rows {
            assert!(
                text.contains(&format!(
                    "statussentry_delivery_requests_total{{outcome=\"{outcome}\"}} 1"
                )),
                "{outcome} in\n{text}"
            );
            assert!(
                text.contains(&format!(
                    "statussentry_heartbeats_total{{outcome=\"{outcome}\"}} 1"
                )),
                "heartbeat {outcome} in\n{text}"
            );
        }
    }

    #[test]
    fn recovery_probes_have_a_fixed_label_set() {
        let m = Metrics::default();
        m.recovery_probe("failed");
        m.recovery_probe("failed");
        m.recovery_probe("recovered");
        // An outcome outside the set is not a new label.
        m.recovery_probe("bogus");
        let text = m.render(&Gauges::default());
        for line in [
            "statussentry_recovery_probes_total{outcome=\"recovered\"} 1",
            "statussentry_recovery_probes_total{outcome=\"failed\"} 2",
            "statussentry_recovery_probes_total{outcome=\"gone\"} 0",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(!text.contains("bogus"));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(&DURATION_BUCKETS);
        h.observe(0.0005);
        h.observe(0.003);
        h.observe(20.0);
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.001\"} 1\n"));
        assert!(out.contains("x_bucket{le=\"0.005\"} 2\n"));
        assert!(out.contains("x_bucket{le=\"10\"} 2\n"));
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"));
        assert!(out.contains("x_count 3\n"));
    }

    #[test]
    fn each_phase_that_happened_is_observed_under_its_label() {
        let m = Metrics::default();
        let ms = |n| Some(std::time::Duration::from_millis(n));
        m.attempt_phases(&Timings {
            dns: ms(2),
            connect: ms(3),
            tls: None,
            ttfb: ms(300),
            total: std::time::Duration::from_millis(306),
            reused: false,
        });
        m.attempt_phases(&Timings {
            ttfb: ms(1),
            total: std::time::Duration::from_millis(1),
            reused: true,
            ..Timings::default()
        });
        let text = m.render(&Gauges::default());
        let name = "statussentry_attempt_phase_seconds";
        assert_eq!(text.matches(&format!("# TYPE {name} histogram")).count(), 1);
        for (phase, count) in [("dns", 1), ("connect", 1), ("tls", 0), ("ttfb", 2)] {
            assert!(
                text.contains(&format!("{name}_count{{phase=\"{phase}\"}} {count}\n")),
                "{phase} in\n{text}"
            );
            assert!(
                text.contains(&format!(
                    "{name}_bucket{{phase=\"{phase}\",le=\"+Inf\"}} {count}\n"
                )),
                "{phase} in\n{text}"
            );
        }
        assert!(text.contains(&format!("{name}_bucket{{phase=\"ttfb\",le=\"0.25\"}} 1\n")));
        assert!(text.contains(&format!("{name}_sum{{phase=\"ttfb\"}} 0.301\n")));
    }
}
