//! What recording one check decides, applied over a store transaction: the check's row, the
//! monitor's new UP/DOWN state (`rules::step`), `monitor.status_change` on a transition, the
//! auto incident opened on DOWN or resolved on UP (`incident`), the SLA warning
//! (`sla::assess`, `sla::arm`) and the folding of old history, all in one `store::Tx`, so that
//! every event it emits is committed with the change that causes it. No SQL here: the rows
//! are read and written through the `Tx`; no clock: the caller says when.

use super::rules::{self, Outcome, Status};
use crate::event::EventType;
use crate::sla;
use crate::store::{self, Durability, Emitted, MonitorStateUpdate, NewCheck, Store, Tx};

/// What recording a check needs besides the check.
pub struct CheckContext<'a> {
    /// `monitors.region`, carried in `monitor.status_change`.
    pub region: &'a str,
    /// History is kept at least this long (`retention_days`), longer for a longer SLA window.
    pub keep_ms: i64,
    /// When the check ended.
    pub now: i64,
}

/// A monitor's history as the SLA rule reads it, as of `now`, over `window_days`: the window
/// from where `sla::window_start` puts its start, and the raw checks of the recent periods.
pub fn sla_history(
    store: &Store,
    monitor_seq: i64,
    window_days: f64,
    now: i64,
) -> store::Result<sla::History> {
    let window_ms = (window_days * 86_400_000.0) as i64;
    store.check_history(
        monitor_seq,
        sla::window_start(now, window_ms),
        [now - sla::RECENT_SHORT_MS, now - sla::RECENT_LONG_MS],
    )
}

/// Records one check of a monitor and everything it causes, in one transaction (`apply`).
/// `history` is the SLA history before this check (read beforehand, outside the writer
/// lock). `None` when the monitor is gone.
pub fn record_check(
    store: &Store,
    monitor_seq: i64,
    check: &Outcome,
    history: Option<sla::History>,
    ctx: &CheckContext,
) -> store::Result<Option<Vec<Emitted>>> {
    // A check that changes nothing is bookkeeping and commits like delivery outcomes; one
    // that emits an event is made durable like everything the API acknowledges. The
    // guess comes from a read; the transaction decides again on the row it locks.
    let durability = match store.monitor_by_seq(monitor_seq)? {
        None => return Ok(None),
        Some(m) => {
            let s = &m.settings;
            let next = rules::step(
                m.state,
                check.ok,
                s.failures_before_down,
                s.successes_before_up,
            );
            let may_warn = !check.ok && s.sla_target.is_some();
            if next.status != m.state.status || may_warn {
                Durability::Full
            } else {
                Durability::Normal
            }
        }
    };
    let (recorded, emitted) =
        store.transact(durability, |tx| apply(tx, monitor_seq, check, history, ctx))?;
    Ok(recorded.then_some(emitted))
}

/// Writes one check of monitor `monitor_seq` and what it causes into `tx`: the new state,
/// `monitor.status_change` on a transition, the auto incident, the SLA warning, and the
/// folding of old history. `false` when the monitor is gone.
pub fn apply(
    tx: &mut Tx,
    monitor_seq: i64,
    check: &Outcome,
    history: Option<sla::History>,
    ctx: &CheckContext,
) -> store::Result<bool> {
    let Some(m) = tx.monitor_by_seq(monitor_seq)? else {
        return Ok(false);
    };
    let s = &m.settings;
    let now = ctx.now;
    tx.insert_check(&NewCheck {
        monitor_seq,
        at: check.at,
        ok: check.ok,
        status_code: check.status_code,
        response_time_ms: check.response_time_ms,
        first_byte_ms: check.first_byte_ms,
        error: check.error,
        interval_ms: s.interval_ms,
        timings: check.timings,
    })?;
    let next = rules::step(
        m.state,
        check.ok,
        s.failures_before_down,
        s.successes_before_up,
    );
    let mut incident_id = m.incident_id.clone();
    if next.status != m.state.status {
        let data = rules::status_change_data(&rules::Change {
            monitor_id: &m.id,
            monitor_name: &s.name,
            url: &s.url,
            region: ctx.region,
            previous: m.state.status,
            current: next.status,
            checked_at_ms: check.at,
            status_code: check.status_code.map(i64::from),
            response_time_ms: check.response_time_ms,
            timings: check.timings,
            error: check.error,
            consecutive_failures: next.failures,
        });
        tx.emit(EventType::MonitorStatusChange, &data, now)?;
        let open = match &m.incident_id {
            Some(id) => tx
                .incident(id)?
                .filter(|i| i.status != crate::incident::IncidentStatus::Resolved),
            None => None,
        };
        match (next.status, open) {
            (Status::Down, None) if s.auto_incident => {
                incident_id = Some(crate::incident::open_for_monitor(tx, &m, now)?);
            }
            (Status::Up, Some(mut inc)) => {
                crate::incident::resolve(tx, &mut inc, None, now)?;
                incident_id = None;
            }
            (Status::Up, None) => incident_id = None,
            _ => {}
        }
    }
    let mut arming = m.arming;
    if let (Some(target), Some(history)) = (s.sla_target, history) {
        let h = history.with_check(check.ok, s.interval_ms as f64 / 1000.0);
        let a = sla::assess(target, s.sla_window_days, &h);
        let (next_arming, warn) = sla::arm(m.arming, a.at_risk, now);
        arming = next_arming;
        if warn {
            let data = sla::warning_data(&m.id, &s.name, target, s.sla_window_days, &a, now);
            tx.emit(EventType::SlaBreachWarning, &data, now)?;
        }
    }
    tx.set_monitor_state(
        monitor_seq,
        &MonitorStateUpdate {
            state: next,
            incident_id: incident_id.as_deref(),
            arming,
            last_checked_at: check.at,
        },
    )?;
    tx.compact_history(monitor_seq, now, store::history_ms(s, ctx.keep_ms))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MonitorRow, MonitorSettings};
    use rules::Kind;
    use serde_json::Value;

    use crate::store::testkit::store;

    fn endpoint(store: &Store) -> i64 {
        crate::store::testkit::endpoint(store, &[]).seq
    }

    fn settings(component: Option<&str>) -> MonitorSettings {
        MonitorSettings {
            name: "API".into(),
            url: "http://127.0.0.1:9/health".into(),
            method: "GET".into(),
            interval_ms: 60_000,
            timeout_ms: 5_000,
            expected_status: "200-299".into(),
            failures_before_down: 2,
            successes_before_up: 1,
            component_id: component.map(str::to_string),
            auto_incident: true,
            severity: crate::event::Severity::Major,
            sla_target: None,
            sla_window_days: 30.0,
            enabled: true,
            kind: Kind::Http,
            grace_ms: 0,
        }
    }

    fn outcome(at: i64, ok: bool) -> Outcome {
        Outcome {
            at,
            ok,
            status_code: Some(if ok { 200 } else { 503 }),
            response_time_ms: 12,
            first_byte_ms: Some(10),
            timings: None,
            error: (!ok).then_some("unexpected_status"),
        }
    }

    fn record(store: &Store, m: &MonitorRow, at: i64, ok: bool) -> Vec<EventType> {
        let history = m
            .settings
            .sla_target
            .map(|_| sla_history(store, m.seq, m.settings.sla_window_days, at).unwrap());
        let ctx = CheckContext {
            region: "test",
            keep_ms: 86_400_000,
            now: at,
        };
        record_check(store, m.seq, &outcome(at, ok), history, &ctx)
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    fn events(store: &Store, t: EventType) -> Vec<Value> {
        store
            .list_events(None, Some(t.as_str()), 100)
            .unwrap()
            .iter()
            .map(|e| serde_json::from_str(&e.payload).unwrap())
            .collect()
    }

    #[test]
    fn down_opens_one_incident_and_up_resolves_it() {
        let (_dir, store) = store();
        let ep = endpoint(&store);
        store
            .create_component(
                "comp_api",
                "API",
                crate::event::ComponentStatus::Operational,
                1,
            )
            .unwrap()
            .unwrap();
        let m = store
            .create_monitor("mon_a", &settings(Some("comp_api")), None, 1)
            .unwrap()
            .unwrap();
        assert_eq!(record(&store, &m, 1000, false), []);
        assert_eq!(
            record(&store, &m, 2000, false),
            [EventType::MonitorStatusChange, EventType::IncidentCreated]
        );
        // Further failures change nothing.
        assert_eq!(record(&store, &m, 3000, false), []);
        let down = store.monitor("mon_a").unwrap().unwrap();
        assert_eq!(down.state.status, Status::Down);
        let inc_id = down.incident_id.clone().unwrap();
        let inc = store.incident(&inc_id).unwrap().unwrap();
        assert_eq!(inc.title, "API is down");
        assert_eq!(inc.source, crate::incident::IncidentSource::Monitor);
        assert_eq!(inc.components[0].status.as_str(), "major_outage");
        assert_eq!(
            store
                .component("comp_api")
                .unwrap()
                .unwrap()
                .status
                .as_str(),
            "major_outage"
        );
        let change = &events(&store, EventType::MonitorStatusChange)[0]["data"];
        assert_eq!(change["metrics"]["consecutive_failures"], 2);
        assert_eq!(change["metrics"]["status_code"], 503);
        assert_eq!(change["region"], "test");

        assert_eq!(
            record(&store, &m, 4000, true),
            [EventType::MonitorStatusChange, EventType::IncidentResolved]
        );
        let up = store.monitor("mon_a").unwrap().unwrap();
        assert_eq!((up.state.status, up.incident_id), (Status::Up, None));
        let resolved = &events(&store, EventType::IncidentResolved)[0]["data"];
        assert_eq!(resolved["incident_id"], inc_id.as_str());
        assert_eq!(resolved["components"][0]["status"], "operational");
        assert_eq!(
            store
                .component("comp_api")
                .unwrap()
                .unwrap()
                .status
                .as_str(),
            "operational"
        );
        // Every event got its message, in the same transaction.
        let stats = store.endpoint_stats(ep).unwrap();
        assert_eq!(stats.pending, 4);
    }

    #[test]
    fn a_deleted_monitor_records_nothing() {
        let (_dir, store) = store();
        let m = store
            .create_monitor("mon_a", &settings(None), None, 1)
            .unwrap()
            .unwrap();
        store.delete_monitor("mon_a").unwrap();
        let ctx = CheckContext {
            region: "test",
            keep_ms: 1,
            now: 5,
        };
        assert_eq!(
            record_check(&store, m.seq, &outcome(5, false), None, &ctx).unwrap(),
            None
        );
    }

    #[test]
    fn old_checks_fold_into_minutes_and_still_count() {
        let (_dir, store) = store();
        let mut s = settings(None);
        s.failures_before_down = 100;
        s.sla_window_days = 1.0;
        let m = store.create_monitor("mon_a", &s, None, 1).unwrap().unwrap();
        let t0 = 1_000_000_000_000;
        // Two checks a minute for an hour, every fourth failing.
        for i in 0..120 {
            record(&store, &m, t0 + i * 30_000, i % 4 != 0);
        }
        // Seven hours later one more check folds the first hour into aggregates.
        let later = t0 + 7 * 3600 * 1000;
        record(&store, &m, later, true);
        let raw = store.list_checks(m.seq, None, 500).unwrap();
        assert_eq!(raw.len(), 1);
        let h = sla_history(&store, m.seq, 1.0, later).unwrap();
        assert_eq!(
            h.window,
            sla::Counts {
                checks: 121,
                failures: 30
            }
        );
        assert_eq!(h.spent_secs, 30.0 * 60.0);
        assert_eq!(h.last_6h.checks, 1);
        // Past the history's end (the one-day window, which is also `keep_ms`) it is gone.
        let much_later = later + 2 * 86_400_000;
        record(&store, &m, much_later, true);
        let h = sla_history(&store, m.seq, 30.0, much_later).unwrap();
        assert_eq!(h.window.checks, 1);
    }

    /// Rows of each resolution one monitor holds: raw checks, minutes, hours.
    fn rows_of(store: &Store, monitor_seq: i64) -> [i64; 3] {
        store.history_rows(monitor_seq).unwrap()
    }

    /// Issue 17: the SLA figures from downsampled history against the same figures computed
    /// from every raw check, for windows whose old end falls in each resolution and between
    /// boundaries. They must be exactly those of the window `sla::window_start` describes,
    /// and within the error it states of the exact window: fewer than an hour's checks (a
    /// minute's for a window of a day or less), budget spent short by less than an hour and
    /// an interval, uptime off by at most k / (n − k); the recent ratios exact.
    #[test]
    fn downsampled_history_gives_the_raw_sla_figures_within_the_stated_bound() {
        let (_dir, store) = store();
        let mut s = settings(None);
        s.sla_target = Some(99.9);
        let m = store.create_monitor("mon_a", &s, None, 1).unwrap().unwrap();
        // 31 days of 60 s checks, started up to a second late, 3 % failing at random, and
        // an outage of every check for two hours around the 30-day window's old end (the
        // worst place for the hour rows there).
        let hour = 3_600_000;
        let now = 1_800_000_000_000 + 17 * 60_000 + 23_456;
        let outage = (now - 30 * 86_400_000 - hour)..(now - 30 * 86_400_000 + hour);
        let mut rng = 0x5eed_u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let raw: Vec<(i64, bool)> = (0..31 * 1440)
            .map(|i| {
                let at = now - 31 * 86_400_000 + i * 60_000 + (next() % 1000) as i64;
                (at, !outage.contains(&at) && next() % 100 >= 3)
            })
            .collect();
        store
            .transact(Durability::Normal, |tx| {
                for &(at, ok) in &raw {
                    tx.insert_check(&NewCheck {
                        monitor_seq: m.seq,
                        at,
                        ok,
                        status_code: None,
                        response_time_ms: 12,
                        first_byte_ms: None,
                        error: None,
                        interval_ms: 60_000,
                        timings: None,
                    })?;
                }
                // As the last check's record does: older than 6 h into minutes.
                tx.compact_history(m.seq, now, 30 * 86_400_000)
            })
            .unwrap();
        // Then retention, in batches; each folds or drops at most its budget and an hour.
        let mut batches = 0;
        let mut after = 0;
        loop {
            let (n, next, _) = store
                .fold_check_hours(now, 86_400_000, after, 1800)
                .unwrap();
            assert!(n <= 1800 + 60, "a batch of {n} rows");
            batches += 1;
            match next {
                Some(seq) => after = seq,
                None => break,
            }
        }
        assert!(batches > 20, "{batches} batches for 29 days of minutes");
        // Bounded: six hours raw, minutes from the hour before a day ago, then hours.
        let [checks, minutes, hours] = rows_of(&store, m.seq);
        assert!(checks <= 361, "{checks} raw checks");
        assert!(minutes <= 19 * 60, "{minutes} minute rows");
        assert!(hours <= 30 * 24 + 1, "{hours} hour rows");

        let exact = |since: i64| {
            let mut h = sla::History::default();
            for (at, ok) in &raw {
                let periods = [
                    (*at >= since).then_some(&mut h.window),
                    (*at >= now - sla::RECENT_SHORT_MS).then_some(&mut h.last_1h),
                    (*at >= now - sla::RECENT_LONG_MS).then_some(&mut h.last_6h),
                ];
                for c in periods.into_iter().flatten() {
                    c.checks += 1;
                    c.failures += i64::from(!ok);
                }
                if !ok && *at >= since {
                    h.spent_secs += 60.0;
                }
            }
            h
        };
        let days = [30.0, 29.987, 7.3, 1.5, 1.0, 20.0 / 24.0, 0.2, 0.01];
        for days in days {
            let window_ms = (days * 86_400_000.0) as i64;
            let got = sla_history(&store, m.seq, days, now).unwrap();
            // Exactly the window that `window_start` describes.
            let start = sla::window_start(now, window_ms);
            assert_eq!(got, exact(start), "{days} days");
            // Within the stated error of the exact window.
            let want = exact(now - window_ms);
            let bucket = if window_ms > sla::MINUTE_ROWS_MS {
                hour
            } else if window_ms > sla::RECENT_LONG_MS {
                60_000
            } else {
                0
            };
            assert!(start - (now - window_ms) < bucket.max(1), "{days} days");
            let k = want.window.checks - got.window.checks;
            assert!(
                (0..=bucket / 59_000 + 1).contains(&k),
                "{days} days: {k} checks missed"
            );
            let short = want.spent_secs - got.spent_secs;
            assert!(
                (0.0..(bucket / 1000 + 60) as f64).contains(&short),
                "{days} days: budget spent short by {short} s"
            );
            let (a, b) = (
                sla::assess(99.9, days, &want),
                sla::assess(99.9, days, &got),
            );
            let n = want.window.checks as f64;
            let uptime_bound = 100.0 * k as f64 / (n - k as f64);
            let off = (a.uptime_pct.unwrap() - b.uptime_pct.unwrap()).abs();
            assert!(off <= uptime_bound + 1e-9, "{days} days: uptime off {off}");
            assert!(
                (b.budget_left_secs - a.budget_left_secs - short).abs() < 1e-6,
                "{days} days"
            );
            assert_eq!(
                (a.ratio_1h, a.ratio_6h, a.burn_rate),
                (b.ratio_1h, b.ratio_6h, b.burn_rate),
                "{days} days: the recent ratios are exact"
            );
            if days == 30.0 {
                // The figures ARCHITECTURE.md and the README state for 30 days of 60 s checks.
                assert!(off < 0.14, "uptime off {off} points");
                assert!(
                    k > 0 && short > 0.0,
                    "the outage is at the window's old end"
                );
            }
        }
    }

    #[test]
    fn the_sla_warning_fires_once() {
        let (_dir, store) = store();
        let mut s = settings(None);
        s.interval_ms = 1000;
        s.timeout_ms = 500;
        s.failures_before_down = 3;
        s.sla_target = Some(99.9);
        s.sla_window_days = 1.0;
        let m = store.create_monitor("mon_a", &s, None, 1).unwrap().unwrap();
        let t0 = 1_000_000_000_000;
        let mut warnings = Vec::new();
        // Every fifth check fails: the tenth check is the first with a ratio that counts.
        for i in 1..=40 {
            let types = record(&store, &m, t0 + i * 1000, i % 5 != 0);
            if types.contains(&EventType::SlaBreachWarning) {
                warnings.push(i);
            }
        }
        assert_eq!(warnings, [10]);
        let w = &events(&store, EventType::SlaBreachWarning)[0]["data"];
        assert_eq!(w["burn_rate"], 200);
        assert_eq!(w["window_days"], 1);
        assert!(!store.monitor("mon_a").unwrap().unwrap().arming.armed);
    }
}
