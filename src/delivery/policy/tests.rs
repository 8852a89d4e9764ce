//! Table tests of the delivery rules (`policy`): one row per row of SPEC 4.4.

use super::*;
use crate::store::{EndpointSeq, MessageSeq};

#[test]
fn classes_follow_the_outcome_table() {
    let ra = Some(Duration::from_secs(3));
    let rows = [
        (Some(200), None, Class::Success),
        (Some(204), None, Class::Success),
        (Some(299), None, Class::Success),
        (Some(410), None, Class::Gone),
        (Some(429), None, Class::Throttled(None)),
        (Some(429), ra, Class::Throttled(ra)),
        (Some(503), ra, Class::Throttled(ra)),
        (Some(503), None, Class::Failure),
        (Some(500), ra, Class::Failure),
        (Some(408), None, Class::Failure),
        (Some(400), None, Class::Rejected),
        (Some(404), None, Class::Rejected),
        (Some(422), None, Class::Rejected),
        (Some(101), None, Class::Failure),
        (Some(302), None, Class::Failure),
        (None, None, Class::Failure),
    ];
    for (status, retry_after, want) in rows {
        assert_eq!(
            classify(status, retry_after),
            want,
            "{status:?} {retry_after:?}"
        );
    }
}

#[test]
fn backoff_doubles_then_caps() {
    let s = Duration::from_secs;
    let rows = [
        (1, 1.0, s(5)),
        (2, 1.0, s(10)),
        (3, 1.0, s(20)),
        (10, 1.0, s(2560)),
        (11, 1.0, s(3600)),
        (500, 1.0, s(3600)),
        (1, 1.2, s(6)),
        (11, 1.2, s(4320)),
        (0, 1.0, s(5)),
    ];
    for (n, factor, want) in rows {
        assert_eq!(
            backoff(n, s(5), s(3600), factor),
            want,
            "n={n} factor={factor}"
        );
    }
}

/// The table test of `decide`: one row per row of SPEC 4.4's table, and per rule of the
/// text below it (backoff and its random factor, `retry_for`, `disable_after`, parked
/// messages on their own schedule).
#[test]
fn decisions_follow_the_outcome_table() {
    const NOW: i64 = 1_000_000_000_000;
    const HOUR: i64 = 3_600_000;
    let s = Duration::from_secs;
    let ms = Duration::from_millis;
    let limits = Limits {
        initial_backoff: s(5),
        max_backoff: s(3600),
        retry_for: s(72 * 3600),
        disable_after: s(120 * 3600),
    };
    let answer = |status: Option<u16>, retry_after: Option<Duration>| Answer {
        status,
        retry_after,
    };
    let endpoint = |failures: i64, failing_since: Option<i64>| DispatchEndpoint {
        seq: EndpointSeq(1),
        id: "ep_test".into(),
        url: "http://127.0.0.1:9/".into(),
        enabled: true,
        batch_max: 100,
        batch_window_ms: 0,
        failures,
        failing_since,
        backoff_until: None,
        heartbeat_secs: None,
        recovery: None,
        secrets: Vec::new(),
    };
    // A message accepted `age` ms ago; `parked` with `failures` when Some.
    let message = |age: i64, parked: Option<i64>| QueuedMessage {
        seq: MessageSeq(7),
        event_seq: 7,
        event_id: "evt_test".into(),
        event_type: "incident.created".into(),
        attempts: 1,
        failures: parked.unwrap_or(0),
        parked: parked.is_some(),
        retry_from: NOW - age,
        created_at: NOW - age,
    };
    let fresh = || message(1000, None);
    // Accepted more than `retry_for` ago.
    let old = || message(72 * HOUR + 1, None);
    let parked_after = |failures: i64, wait: Duration| Verdict::Parked {
        failures,
        next_attempt_at: NOW + wait.as_millis() as i64,
    };
    let decision = |class: Class,
                    failures: i64,
                    failing_since: Option<i64>,
                    backoff: Backoff,
                    disable: Option<DisableReason>,
                    verdicts: Vec<Verdict>| Decision {
        class,
        failures,
        failing_since,
        backoff,
        disable,
        verdicts,
    };
    let ra = Some(s(120));
    let since = Some(NOW - HOUR);
    // Every backoff below takes the factor 1.125 (exact in binary), so that a row shows where it applies.
    const FACTOR: f64 = 1.125;
    let rows = [
        (
            "2xx: every event delivered, the endpoint's failures end",
            answer(Some(204), None),
            endpoint(3, since),
            vec![fresh(), message(1000, Some(2))],
            decision(
                Class::Success,
                0,
                None,
                Backoff::Clear,
                None,
                vec![Verdict::Delivered, Verdict::Delivered],
            ),
        ),
        (
            "410: disabled as gone, its messages stay pending",
            answer(Some(410), None),
            endpoint(0, None),
            vec![fresh(), old()],
            decision(
                Class::Gone,
                0,
                None,
                Backoff::Keep,
                Some(DisableReason::Gone),
                vec![Verdict::Pending, Verdict::Pending],
            ),
        ),
        (
            "410 to a parked message: it stays parked, on its own backoff",
            answer(Some(410), None),
            endpoint(2, since),
            vec![message(1000, Some(1))],
            decision(
                Class::Gone,
                2,
                since,
                Backoff::Keep,
                Some(DisableReason::Gone),
                vec![parked_after(2, ms(11_250))],
            ),
        ),
        (
            "429 without Retry-After: the endpoint backs off",
            answer(Some(429), None),
            endpoint(0, None),
            vec![fresh()],
            decision(
                Class::Throttled(None),
                1,
                Some(NOW),
                Backoff::Wait(ms(5625)),
                None,
                vec![Verdict::Pending],
            ),
        ),
        (
            "429 with Retry-After: at least that long, no random factor",
            answer(Some(429), ra),
            endpoint(0, None),
            vec![fresh()],
            decision(
                Class::Throttled(ra),
                1,
                Some(NOW),
                Backoff::Wait(s(120)),
                None,
                vec![Verdict::Pending],
            ),
        ),
        (
            "503 with Retry-After: as 429",
            answer(Some(503), ra),
            endpoint(1, since),
            vec![fresh(), fresh()],
            decision(
                Class::Throttled(ra),
                2,
                since,
                Backoff::Wait(s(120)),
                None,
                vec![Verdict::Pending, Verdict::Pending],
            ),
        ),
        (
            "other 4xx: the events are parked, each on its own backoff",
            answer(Some(422), None),
            endpoint(0, None),
            vec![fresh(), message(1000, Some(3))],
            decision(
                Class::Rejected,
                0,
                None,
                Backoff::Keep,
                None,
                vec![parked_after(1, ms(5625)), parked_after(4, ms(45_000))],
            ),
        ),
        (
            "other 4xx past retry_for: failed instead of parked",
            answer(Some(400), None),
            endpoint(0, None),
            vec![old(), message(72 * HOUR + 1, Some(5))],
            decision(
                Class::Rejected,
                0,
                None,
                Backoff::Keep,
                None,
                vec![Verdict::Failed, Verdict::Failed],
            ),
        ),
        (
            "5xx: the endpoint backs off, the same oldest events go first",
            answer(Some(500), None),
            endpoint(0, None),
            vec![fresh(), fresh()],
            decision(
                Class::Failure,
                1,
                Some(NOW),
                Backoff::Wait(ms(5625)),
                None,
                vec![Verdict::Pending, Verdict::Pending],
            ),
        ),
        (
            "5xx ignores Retry-After except 503's",
            answer(Some(502), ra),
            endpoint(2, since),
            vec![fresh()],
            decision(
                Class::Failure,
                3,
                since,
                Backoff::Wait(ms(22_500)),
                None,
                vec![Verdict::Pending],
            ),
        ),
        (
            "1xx: as a failure",
            answer(Some(101), None),
            endpoint(0, None),
            vec![fresh()],
            decision(
                Class::Failure,
                1,
                Some(NOW),
                Backoff::Wait(ms(5625)),
                None,
                vec![Verdict::Pending],
            ),
        ),
        (
            "3xx, never followed: as a failure",
            answer(Some(302), None),
            endpoint(0, None),
            vec![fresh()],
            decision(
                Class::Failure,
                1,
                Some(NOW),
                Backoff::Wait(ms(5625)),
                None,
                vec![Verdict::Pending],
            ),
        ),
        (
            "408: as a failure, not parked",
            answer(Some(408), None),
            endpoint(0, None),
            vec![fresh()],
            decision(
                Class::Failure,
                1,
                Some(NOW),
                Backoff::Wait(ms(5625)),
                None,
                vec![Verdict::Pending],
            ),
        ),
        (
            "timeout, refused, DNS, TLS, blocked address: as a failure",
            answer(None, None),
            endpoint(0, None),
            vec![fresh()],
            decision(
                Class::Failure,
                1,
                Some(NOW),
                Backoff::Wait(ms(5625)),
                None,
                vec![Verdict::Pending],
            ),
        ),
        (
            "backoff doubles per consecutive failure, up to max_backoff",
            answer(None, None),
            endpoint(40, since),
            vec![fresh()],
            decision(
                Class::Failure,
                41,
                since,
                Backoff::Wait(ms(4_050_000)),
                None,
                vec![Verdict::Pending],
            ),
        ),
        (
            "a failed attempt past retry_for: failed",
            answer(None, None),
            endpoint(0, None),
            vec![old(), fresh()],
            decision(
                Class::Failure,
                1,
                Some(NOW),
                Backoff::Wait(ms(5625)),
                None,
                vec![Verdict::Failed, Verdict::Pending],
            ),
        ),
        (
            "a parked message that fails again: parked on its own schedule",
            answer(None, None),
            endpoint(0, None),
            vec![message(1000, Some(1))],
            decision(
                Class::Failure,
                1,
                Some(NOW),
                Backoff::Wait(ms(5625)),
                None,
                vec![parked_after(2, ms(11_250))],
            ),
        ),
        (
            "failing just short of disable_after: still enabled",
            answer(None, None),
            endpoint(9, Some(NOW - 120 * HOUR + 1)),
            vec![fresh()],
            decision(
                Class::Failure,
                10,
                Some(NOW - 120 * HOUR + 1),
                Backoff::Wait(ms(2_880_000)),
                None,
                vec![Verdict::Pending],
            ),
        ),
        (
            "failing unbroken for disable_after: disabled as failing",
            answer(Some(429), ra),
            endpoint(9, Some(NOW - 120 * HOUR)),
            vec![fresh()],
            decision(
                Class::Throttled(ra),
                10,
                Some(NOW - 120 * HOUR),
                Backoff::Wait(s(120)),
                Some(DisableReason::Failing),
                vec![Verdict::Pending],
            ),
        ),
    ];
    for (rule, answer, endpoint, messages, want) in rows {
        let got = decide(answer, &endpoint, &messages, NOW, &limits, || FACTOR);
        assert_eq!(got, want, "{rule}");
    }
}

#[test]
fn each_backoff_draws_its_own_factor() {
    // The endpoint's backoff draws first, then each parked message in order; Retry-After
    // draws none.
    let limits = Limits {
        initial_backoff: Duration::from_secs(5),
        max_backoff: Duration::from_secs(3600),
        retry_for: Duration::from_secs(3600),
        disable_after: Duration::from_secs(3600),
    };
    let endpoint = DispatchEndpoint {
        seq: EndpointSeq(1),
        id: "ep_test".into(),
        url: "http://127.0.0.1:9/".into(),
        enabled: true,
        batch_max: 1,
        batch_window_ms: 0,
        failures: 0,
        failing_since: None,
        backoff_until: None,
        heartbeat_secs: None,
        recovery: None,
        secrets: Vec::new(),
    };
    let parked = QueuedMessage {
        seq: MessageSeq(1),
        event_seq: 1,
        event_id: "evt_test".into(),
        event_type: "incident.created".into(),
        attempts: 1,
        failures: 1,
        parked: true,
        retry_from: 0,
        created_at: 0,
    };
    let messages = [parked.clone(), parked];
    let draws = |factors: Vec<f64>| {
        let mut factors = factors.into_iter();
        move || factors.next().expect("one factor per backoff")
    };
    let failure = Answer {
        status: Some(500),
        retry_after: None,
    };
    let d = decide(
        failure,
        &endpoint,
        &messages,
        0,
        &limits,
        draws(vec![1.0, 1.125, 1.0625]),
    );
    assert_eq!(d.backoff, Backoff::Wait(Duration::from_secs(5)));
    let dues: Vec<Verdict> = [11_250, 10_625]
        .map(|next_attempt_at| Verdict::Parked {
            failures: 2,
            next_attempt_at,
        })
        .to_vec();
    assert_eq!(d.verdicts, dues);
    let throttled = Answer {
        status: Some(429),
        retry_after: Some(Duration::from_secs(1)),
    };
    let d = decide(
        throttled,
        &endpoint,
        &messages,
        0,
        &limits,
        draws(vec![1.125, 1.0625]),
    );
    assert_eq!(d.backoff, Backoff::Wait(Duration::from_secs(1)));
    assert_eq!(d.verdicts, dues);
}

#[test]
fn retry_after_forms() {
    let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
    let rows = [
        ("120", Some(Duration::from_secs(120))),
        (" 0 ", Some(Duration::ZERO)),
        (
            "Sun, 06 Nov 1994 08:50:37 GMT",
            Some(Duration::from_secs(60)),
        ),
        ("Sun, 06 Nov 1994 08:00:00 GMT", Some(Duration::ZERO)),
        ("999999", Some(MAX_RETRY_AFTER)),
        ("soon", None),
        ("-5", None),
    ];
    for (value, want) in rows {
        assert_eq!(parse_retry_after(value, now), want, "{value}");
    }
}
