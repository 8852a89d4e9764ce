//! How long each phase of one outbound request took (SPEC 4.5): name resolution, connecting,
//! the TLS handshake, the wait for the response head, the whole request, and whether a pooled
//! connection was reused. Only clock reads and plain stores: no system call, no lock.
//!
//! The phases are noted where they happen (the resolver, the TCP connector, the TLS connector
//! and the transport, all in this module's parent) into a slot per thread, which `Stopwatch`
//! clears when a request starts and reads when it ends. Per thread, because nothing else can
//! carry them: ureq's resolver and connectors belong to the agent, are shared by every thread
//! sending through it, and are handed only the URL, the configuration and the addresses,
//! nothing that says which request they work for. ureq runs all of them, and every read and
//! write of the transport, on the thread that called `send` or `call`, one request at a time,
//! so a slot per thread holds exactly the phases of that thread's request in flight.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The phases of one request, as the store keeps them and the API shows them.
pub use crate::store::Timings;

/// What the current thread's request has noted so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    dns: Option<Duration>,
    /// When the last name lookup ended: a reused connection is ready from then on.
    resolved: Option<Instant>,
    connect: Option<Duration>,
    tls: Option<Duration>,
    /// When a new connection was ready for the request (after TLS, if any).
    ready: Option<Instant>,
    /// The request handed bytes to a connection: one was made or taken from the pool.
    sent: bool,
}

impl Slot {
    const EMPTY: Slot = Slot {
        dns: None,
        resolved: None,
        connect: None,
        tls: None,
        ready: None,
        sent: false,
    };
}

thread_local! {
    static SLOT: Cell<Slot> = const { Cell::new(Slot::EMPTY) };
}

fn note(f: impl FnOnce(&mut Slot)) {
    SLOT.with(|cell| {
        let mut slot = cell.get();
        f(&mut slot);
        cell.set(slot);
    });
}

/// A name lookup took `took`, ending now. A proxy's name may be looked up besides the
/// target's, so lookups add up.
pub(super) fn dns(took: Duration) {
    let now = Instant::now();
    note(|s| {
        s.dns = Some(s.dns.unwrap_or_default() + took);
        s.resolved = Some(now);
    });
}

/// Opening a TCP connection took `took` (to a proxy, when one is configured).
pub(super) fn connect(took: Duration) {
    note(|s| s.connect = Some(s.connect.unwrap_or_default() + took));
}

/// A TLS handshake took `took`.
pub(super) fn tls(took: Duration) {
    note(|s| s.tls = Some(took));
}

/// A new connection is ready for the request: the end of the connector chain.
pub(super) fn ready() {
    let now = Instant::now();
    note(|s| s.ready = Some(now));
}

/// The request handed bytes to its connection, new or pooled.
pub(super) fn sent() {
    note(|s| s.sent = true);
}

/// Times one request on the current thread, from `start` to `finish`; the request itself
/// must be made on the same thread in between, and no other one.
#[derive(Debug)]
pub struct Stopwatch {
    started: Instant,
    head: Option<Instant>,
}

impl Stopwatch {
    /// Starts timing and forgets whatever an earlier request on this thread noted.
    pub fn start() -> Stopwatch {
        SLOT.with(|cell| cell.set(Slot::EMPTY));
        Stopwatch {
            started: Instant::now(),
            head: None,
        }
    }

    /// When the request started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The response head has arrived (ureq returned the response).
    pub fn head(&mut self) {
        self.head = Some(Instant::now());
    }

    /// The request is over: its phases.
    pub fn finish(self) -> Timings {
        let ended = Instant::now();
        phases(SLOT.with(Cell::get), self.started, self.head, ended)
    }
}

/// The phases from what a request noted, when it started, when its head came (if it did) and
/// when it ended. A connection that an earlier request opened shows no connection phase, even
/// though ureq looks the name up again before it asks the pool (SPEC 4.5: none happened for
/// this request's connection). Each phase lies in its own stretch of [started, ended], one
/// after the other, so their sum is never more than the total.
fn phases(slot: Slot, started: Instant, head: Option<Instant>, ended: Instant) -> Timings {
    // No connector ran, yet a connection took the request: the pool's.
    let reused = slot.sent && slot.connect.is_none() && slot.ready.is_none();
    let ready = slot.ready.or(slot.resolved).unwrap_or(started);
    Timings {
        dns: slot.dns.filter(|_| !reused),
        connect: slot.connect,
        tls: slot.tls,
        ttfb: head.map(|h| h.saturating_duration_since(ready)),
        total: ended.saturating_duration_since(started),
        reused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The timings a row of the table below wants, in whole milliseconds.
    fn want(phases: [Option<u64>; 4], total: u64, reused: bool) -> Timings {
        Timings {
            dns: phases[0].map(ms),
            connect: phases[1].map(ms),
            tls: phases[2].map(ms),
            ttfb: phases[3].map(ms),
            total: ms(total),
            reused,
        }
    }

    #[test]
    fn each_kind_of_connection_shows_the_phases_it_went_through() {
        let t0 = Instant::now();
        let at = |n: u64| t0 + ms(n);
        // (what, noted, head at, end at, wanted)
        let rows: [(&str, Slot, Option<u64>, u64, Timings); 6] = [
            (
                "new TLS connection to a name",
                Slot {
                    dns: Some(ms(2)),
                    resolved: Some(at(2)),
                    connect: Some(ms(3)),
                    tls: Some(ms(10)),
                    ready: Some(at(16)),
                    sent: true,
                },
                Some(136),
                140,
                want([Some(2), Some(3), Some(10), Some(120)], 140, false),
            ),
            (
                "new plain connection to an address",
                Slot {
                    connect: Some(ms(1)),
                    ready: Some(at(1)),
                    sent: true,
                    ..Slot::EMPTY
                },
                Some(301),
                302,
                want([None, Some(1), None, Some(300)], 302, false),
            ),
            (
                "pooled connection to a name: the lookup ureq made anyway is not its phase",
                Slot {
                    dns: Some(ms(4)),
                    resolved: Some(at(4)),
                    sent: true,
                    ..Slot::EMPTY
                },
                Some(24),
                25,
                want([None, None, None, Some(20)], 25, true),
            ),
            (
                "pooled connection that timed out waiting for the head",
                Slot {
                    sent: true,
                    ..Slot::EMPTY
                },
                None,
                10_000,
                want([None; 4], 10_000, true),
            ),
            (
                "name that did not resolve",
                Slot {
                    dns: Some(ms(5)),
                    resolved: Some(at(5)),
                    ..Slot::EMPTY
                },
                None,
                5,
                want([Some(5), None, None, None], 5, false),
            ),
            (
                "connection refused",
                Slot {
                    connect: Some(ms(1)),
                    ..Slot::EMPTY
                },
                None,
                1,
                want([None, Some(1), None, None], 1, false),
            ),
        ];
        for (what, slot, head, end, want) in rows {
            let got = phases(slot, t0, head.map(at), at(end));
            assert_eq!(got, want, "{what}");
            let sum: Duration = [got.dns, got.connect, got.tls, got.ttfb]
                .into_iter()
                .flatten()
                .sum();
            assert!(
                sum <= got.total,
                "{what}: phases add up to more than the total"
            );
        }
    }

    #[test]
    fn a_stopwatch_forgets_the_requests_before_it() {
        connect(ms(7));
        sent();
        let first = Stopwatch::start().finish();
        assert_eq!(first.connect, None);
        assert!(!first.reused, "nothing was sent for this request");
        let watch = Stopwatch::start();
        sent();
        let second = watch.finish();
        assert!(second.reused);
    }

    #[test]
    fn the_wire_shape_is_milliseconds_with_nulls_for_phases_that_did_not_happen() {
        let t = Timings {
            dns: None,
            connect: Some(Duration::from_micros(80)),
            tls: None,
            ttfb: Some(Duration::from_micros(120_500)),
            total: Duration::from_micros(121_000),
            reused: false,
        };
        assert_eq!(
            t.as_json(),
            serde_json::json!({
                "dns_ms": null, "connect_ms": 0.08, "tls_ms": null, "ttfb_ms": 120.5,
                "total_ms": 121.0, "reused": false,
            })
        );
    }
}
