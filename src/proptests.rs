//! Property tests of the pure functions that guard the outside world: the outbound address
//! policy (SPEC 4.6), the backoff schedule (SPEC 4.4) and both signature schemes (SPEC 3).
//! Each property is checked against a model written here from the specification, not from the
//! code under test. Test-only; nothing here is compiled into the binary.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use ipnet::IpNet;
use proptest::prelude::*;
use sha2::Sha256;

use crate::delivery::policy::backoff;
use crate::outbound::{Policy, parse_net};
use crate::signature::{VerifyError, header, standard_webhooks, v1, verify};

/// Proptest's defaults (256 cases), without writing failures to a `proptest-regressions`
/// directory: the strategies below name the edge cases themselves, and a failure prints its
/// minimal input.
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// The address classifier

/// `ip` inside an IPv4-mapped (`::ffff:0:0/96`) address.
fn mapped(v4: Ipv4Addr) -> Ipv6Addr {
    v4.to_ipv6_mapped()
}

/// `ip` inside the NAT64 well-known prefix (`64:ff9b::/96`, RFC 6052).
fn nat64(v4: Ipv4Addr) -> Ipv6Addr {
    let o = v4.octets();
    Ipv6Addr::new(
        0x64,
        0xff9b,
        0,
        0,
        0,
        0,
        u16::from_be_bytes([o[0], o[1]]),
        u16::from_be_bytes([o[2], o[3]]),
    )
}

/// The IPv4 address that SPEC 4.6 says an address is judged as, if any.
fn model_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            // ::ffff:0:0/96 (mapped) and 64:ff9b::/96 (NAT64): the upper 96 bits decide.
            let mapped_or_nat64 = [0xffff, 0x0064_ff9b_0000_0000_0000_0000].contains(&(bits >> 32));
            mapped_or_nat64.then(|| Ipv4Addr::from(bits as u32))
        }
    }
}

/// True when the first `len` bits of `a` and `b` agree.
fn same_prefix_v4(a: Ipv4Addr, b: Ipv4Addr, len: u8) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(a) & mask == u32::from(b) & mask
}

fn same_prefix_v6(a: Ipv6Addr, b: Ipv6Addr, len: u8) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    u128::from(a) & mask == u128::from(b) & mask
}

/// CIDR membership without `ipnet`, so that the model does not share the code under test.
fn model_in(net: &IpNet, ip: IpAddr) -> bool {
    match (net.network(), ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => same_prefix_v4(n, a, net.prefix_len()),
        (IpAddr::V6(n), IpAddr::V6(a)) => same_prefix_v6(n, a, net.prefix_len()),
        _ => false,
    }
}

/// What SPEC 4.6 says of `ip` under `p`: true when a connection may be made.
fn model_allows(p: &Policy, ip: IpAddr) -> bool {
    let judged = model_v4(ip).map_or(ip, IpAddr::V4);
    let listed = |nets: &[IpNet]| nets.iter().any(|n| model_in(n, ip) || model_in(n, judged));
    if listed(&p.allow) {
        return true;
    }
    let v4 = |net: [u8; 4], len: u8| match judged {
        IpAddr::V4(a) => same_prefix_v4(a, Ipv4Addr::from(net), len),
        IpAddr::V6(_) => false,
    };
    let v6 = |net: u128, len: u8| match judged {
        IpAddr::V6(a) => same_prefix_v6(a, Ipv6Addr::from(net), len),
        IpAddr::V4(_) => false,
    };
    let always_refused = v4([169, 254, 0, 0], 16)
        || v4([0, 0, 0, 0], 8)
        || v4([224, 0, 0, 0], 4)
        || v4([255, 255, 255, 255], 32)
        || v6(0, 128)
        || v6(0xff00 << 112, 8)
        || v6(0xfe80 << 112, 10);
    let loopback = v4([127, 0, 0, 0], 8) || v6(1, 128);
    let private = v4([10, 0, 0, 0], 8)
        || v4([172, 16, 0, 0], 12)
        || v4([192, 168, 0, 0], 16)
        || v4([100, 64, 0, 0], 10)
        || v6(0xfc00 << 112, 7);
    !(always_refused
        || (loopback && !p.allow_loopback)
        || (private && !p.allow_private)
        || listed(&p.deny))
}

/// IPv4 addresses, most of them in or at the edges of the ranges the policy names.
fn any_v4() -> impl Strategy<Value = Ipv4Addr> {
    let near = |net: [u8; 4], len: u32| {
        let base = u32::from(Ipv4Addr::from(net));
        let size = 1u64 << (32 - len);
        // Inside the range, or a few addresses either side of it.
        (0u64..size + 8)
            .prop_map(move |k| Ipv4Addr::from(base.wrapping_add(k as u32).wrapping_sub(4)))
    };
    prop_oneof![
        3 => any::<u32>().prop_map(Ipv4Addr::from),
        1 => near([127, 0, 0, 0], 8),
        1 => near([10, 0, 0, 0], 8),
        1 => near([172, 16, 0, 0], 12),
        1 => near([192, 168, 0, 0], 16),
        1 => near([100, 64, 0, 0], 10),
        1 => near([169, 254, 0, 0], 16),
        1 => near([0, 0, 0, 0], 8),
        1 => near([224, 0, 0, 0], 4),
        1 => near([255, 255, 255, 248], 29),
    ]
}

/// IPv6 addresses: random, special, and IPv4 addresses mapped or behind NAT64.
fn any_v6() -> impl Strategy<Value = Ipv6Addr> {
    let under = |prefix: u128, len: u32| {
        any::<u128>().prop_map(move |r| {
            let host = if len == 0 { r } else { r >> len };
            Ipv6Addr::from(prefix | host)
        })
    };
    prop_oneof![
        3 => any::<u128>().prop_map(Ipv6Addr::from),
        1 => Just(Ipv6Addr::LOCALHOST),
        1 => Just(Ipv6Addr::UNSPECIFIED),
        1 => (0u128..4).prop_map(Ipv6Addr::from),
        1 => under(0xfe80 << 112, 10),
        1 => under(0xfec0 << 112, 10),
        1 => under(0xfe40 << 112, 10),
        1 => under(0xff00 << 112, 8),
        1 => under(0xfc00 << 112, 7),
        1 => under(0xfe00 << 112, 7),
        3 => any_v4().prop_map(mapped),
        3 => any_v4().prop_map(nat64),
        // Near misses: one bit away from the mapped and NAT64 prefixes.
        1 => any_v4().prop_map(|a| Ipv6Addr::from(u128::from(mapped(a)) ^ (1 << 33))),
        1 => any_v4().prop_map(|a| Ipv6Addr::from(u128::from(nat64(a)) ^ (1 << 40))),
    ]
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![any_v4().prop_map(IpAddr::V4), any_v6().prop_map(IpAddr::V6)]
}

/// A CIDR around a random address, of a random length, as an operator would write it.
fn any_net() -> BoxedStrategy<IpNet> {
    prop_oneof![
        (any_v4(), 0u8..=32).prop_map(|(a, len)| IpNet::new(IpAddr::V4(a), len).unwrap().trunc()),
        (any_v6(), 0u8..=128).prop_map(|(a, len)| IpNet::new(IpAddr::V6(a), len).unwrap().trunc()),
    ]
    .boxed()
}

fn v4_net() -> BoxedStrategy<IpNet> {
    (any_v4(), 8u8..=32)
        .prop_map(|(a, len)| IpNet::new(IpAddr::V4(a), len).unwrap().trunc())
        .boxed()
}

fn any_policy(nets: BoxedStrategy<IpNet>) -> impl Strategy<Value = Policy> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(nets.clone(), 0..3),
        prop::collection::vec(nets, 0..3),
    )
        .prop_map(|(allow_loopback, allow_private, deny, allow)| Policy {
            allow_loopback,
            allow_private,
            deny,
            allow,
        })
}

/// The narrowest-to-widest net containing `ip`, `len` bits long (clamped to its family).
fn net_around(ip: IpAddr, len: u8) -> IpNet {
    let max = if ip.is_ipv4() { 32 } else { 128 };
    IpNet::new(ip, len.min(max)).unwrap().trunc()
}

fn always_refused_ip() -> impl Strategy<Value = IpAddr> {
    let v4 = prop_oneof![
        any::<u16>().prop_map(|r| Ipv4Addr::new(169, 254, (r >> 8) as u8, r as u8)),
        any::<u32>().prop_map(|r| Ipv4Addr::from(r & 0x00ff_ffff)),
        any::<u32>().prop_map(|r| Ipv4Addr::from(0xe000_0000 | (r >> 4))),
        Just(Ipv4Addr::BROADCAST),
    ];
    prop_oneof![
        v4.clone().prop_map(IpAddr::V4),
        v4.clone().prop_map(|a| IpAddr::V6(mapped(a))),
        v4.prop_map(|a| IpAddr::V6(nat64(a))),
        Just(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        any::<u128>().prop_map(|r| IpAddr::V6(Ipv6Addr::from((0xfe80 << 112) | (r >> 10)))),
        any::<u128>().prop_map(|r| IpAddr::V6(Ipv6Addr::from((0xff00 << 112) | (r >> 8)))),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn classifier_agrees_with_the_spec_model(ip in any_ip(), p in any_policy(any_net())) {
        let got = p.check(ip);
        prop_assert_eq!(got.is_ok(), model_allows(&p, ip), "{} under {:?}: {:?}", ip, p, got);
    }

    #[test]
    fn mapped_and_nat64_are_judged_as_their_ipv4(a in any_v4(), p in any_policy(v4_net())) {
        let plain = p.check(IpAddr::V4(a));
        prop_assert_eq!(p.check(IpAddr::V6(mapped(a))), plain, "{} mapped", a);
        prop_assert_eq!(p.check(IpAddr::V6(nat64(a))), plain, "{} behind NAT64", a);
    }

    #[test]
    fn link_local_unspecified_multicast_broadcast_are_refused_unless_allowed(
        ip in always_refused_ip(),
        p in any_policy(any_net()),
        len in 0u8..=128,
    ) {
        let mut p = p;
        p.allow.retain(|n| !n.contains(&ip) && model_v4(ip).is_none_or(|v4| !n.contains(&IpAddr::V4(v4))));
        prop_assert!(p.check(ip).is_err(), "{} under {:?}", ip, p);
        p.allow.push(net_around(ip, len));
        prop_assert_eq!(p.check(ip), Ok(()), "{} explicitly allowed under {:?}", ip, p);
    }

    #[test]
    fn allow_wins_and_deny_refuses(ip in any_ip(), p in any_policy(any_net()), len in 0u8..=128) {
        let mut p = p;
        p.allow.retain(|n| !n.contains(&ip));
        let judged = model_v4(ip).map(IpAddr::V4);
        if let Some(v4) = judged {
            p.allow.retain(|n| !n.contains(&v4));
        }
        let mut denied = p.clone();
        denied.deny.push(net_around(ip, len));
        prop_assert!(denied.check(ip).is_err(), "{} denied under {:?}", ip, denied);
        if let Some(v4) = judged {
            let mut denied_v4 = p.clone();
            denied_v4.deny.push(net_around(v4, len));
            prop_assert!(denied_v4.check(ip).is_err(), "{} denied as {} under {:?}", ip, v4, denied_v4);
        }
        let mut allowed = denied;
        allowed.allow.push(net_around(ip, len));
        prop_assert_eq!(allowed.check(ip), Ok(()), "{} allowed under {:?}", ip, allowed);
        if let Some(v4) = judged {
            let mut allowed_v4 = p;
            allowed_v4.deny.push(net_around(ip, len));
            allowed_v4.allow.push(net_around(v4, len));
            prop_assert_eq!(allowed_v4.check(ip), Ok(()), "{} allowed as {} under {:?}", ip, v4, allowed_v4);
        }
    }

    #[test]
    fn loopback_and_private_follow_their_flags(
        host in any::<u32>(),
        form in 0u8..3,
        allow_loopback in any::<bool>(),
        allow_private in any::<bool>(),
        which in 0u8..6,
    ) {
        let p = Policy { allow_loopback, allow_private, ..Policy::default() };
        let v4 = Ipv4Addr::from(match which {
            0 => 0x7f00_0000 | (host & 0x00ff_ffff), // 127.0.0.0/8
            1 => 0x0a00_0000 | (host & 0x00ff_ffff), // 10.0.0.0/8
            2 => 0xac10_0000 | (host & 0x000f_ffff), // 172.16.0.0/12
            3 => 0xc0a8_0000 | (host & 0x0000_ffff), // 192.168.0.0/16
            4 => 0x6440_0000 | (host & 0x003f_ffff), // 100.64.0.0/10
            _ => 0x0800_0000 | (host & 0x00ff_ffff), // 8.0.0.0/8, public
        });
        let ip = match form {
            0 => IpAddr::V4(v4),
            1 => IpAddr::V6(mapped(v4)),
            _ => IpAddr::V6(nat64(v4)),
        };
        let want = match which {
            0 => allow_loopback,
            5 => true,
            _ => allow_private,
        };
        prop_assert_eq!(p.check(ip).is_ok(), want, "{} under {:?}", ip, p);
        let v6_loopback = p.check(IpAddr::V6(Ipv6Addr::LOCALHOST)).is_ok();
        prop_assert_eq!(v6_loopback, allow_loopback);
        let ula = Ipv6Addr::from((0xfc00u128 << 112) | (u128::from(host) << 64) | u128::from(host));
        prop_assert_eq!(p.check(IpAddr::V6(ula)).is_ok(), allow_private, "{}", ula);
    }

    #[test]
    fn cidrs_parse_as_written(ip in any_ip(), len in 0u8..=140) {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let parsed = parse_net(&format!(" {ip}/{len} "));
        if len <= max {
            let net = parsed.unwrap();
            prop_assert_eq!(net.prefix_len(), len);
            prop_assert!(net.contains(&ip));
        } else {
            prop_assert_eq!(parsed, None);
        }
        let host = parse_net(&ip.to_string()).unwrap();
        prop_assert_eq!(host.prefix_len(), max);
        prop_assert!(host.contains(&ip));
    }
}

// ---------------------------------------------------------------------------------------
// Backoff

/// `min(initial * 2^(n-1), max)` in exact integer nanoseconds.
fn model_base(n: i64, initial: Duration, max: Duration) -> u128 {
    let doublings = (n - 1) as u64;
    let base = if doublings >= 100 {
        u128::MAX
    } else {
        initial.as_nanos().saturating_mul(1u128 << doublings)
    };
    base.min(max.as_nanos())
}

/// Failure counts: mostly the first few dozen, sometimes anything up to `i64::MAX`.
fn failure_count() -> impl Strategy<Value = i64> {
    prop_oneof![4 => 1i64..64, 1 => 1i64..=i64::MAX]
}

/// `initial ≤ max`, both whole milliseconds (the finest unit the configuration promises),
/// from 1 ms to beyond the default hour.
fn backoff_bounds() -> impl Strategy<Value = (Duration, Duration)> {
    (1u64..=3_600_000, 0u64..=100_000_000).prop_map(|(initial, extra)| {
        (
            Duration::from_millis(initial),
            Duration::from_millis(initial + extra),
        )
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn backoff_stays_within_its_bounds(
        n in failure_count(),
        (initial, max) in backoff_bounds(),
        factor in 1.0f64..=1.2,
    ) {
        let got = backoff(n, initial, max, factor).as_nanos();
        let base = model_base(n, initial, max);
        // A retry never comes early: the lower bound is exact. Above, float arithmetic may
        // round up by a nanosecond or two, and a retry is scheduled in whole milliseconds, so a
        // microsecond of slack hides nothing that matters.
        prop_assert!(got >= base, "n={n} {initial:?}..{max:?} ×{factor}: {got} ns < {base} ns");
        let slack = 1_000.0;
        let high = base as f64 * 1.2 + slack;
        prop_assert!((got as f64) <= high, "n={n} {initial:?}..{max:?} ×{factor}: {got} ns > 1.2 × {base} ns");
        prop_assert!(
            (got as f64) <= max.as_nanos() as f64 * 1.2 + slack,
            "n={n}: {got} ns is above 1.2 × max {max:?}"
        );
    }

    #[test]
    fn backoff_never_shrinks_as_failures_grow(
        n in failure_count(),
        step in 1i64..40,
        (initial, max) in backoff_bounds(),
        factor in 1.0f64..=1.2,
    ) {
        let later = n.saturating_add(step);
        let a = backoff(n, initial, max, factor);
        let b = backoff(later, initial, max, factor);
        prop_assert!(b >= a, "backoff({later}) = {b:?} < backoff({n}) = {a:?} for {initial:?}..{max:?} ×{factor}");
    }

    #[test]
    fn backoff_grows_with_the_factor(
        n in failure_count(),
        (initial, max) in backoff_bounds(),
        f1 in 1.0f64..=1.2,
        f2 in 1.0f64..=1.2,
    ) {
        let (low, high) = if f1 <= f2 { (f1, f2) } else { (f2, f1) };
        prop_assert!(backoff(n, initial, max, low) <= backoff(n, initial, max, high));
    }
}

// ---------------------------------------------------------------------------------------
// Signatures

fn model_hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn model_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A secret of the documented form: `whsec_` + unpadded base64 of 24 to 64 random bytes.
fn any_secret() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<u8>(), 24..=64)
        .prop_map(|key| format!("whsec_{}", STANDARD_NO_PAD.encode(key)))
}

fn any_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        "[ -~]{0,300}".prop_map(String::into_bytes),
    ]
}

/// Unix seconds from 1970 to the year 2106.
fn any_timestamp() -> impl Strategy<Value = i64> {
    0i64..=4_294_967_295
}

const TOLERANCE: i64 = 300;

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_signature_verifies_within_tolerance(
        secret in any_secret(),
        body in any_body(),
        t in any_timestamp(),
        skew in -TOLERANCE..=TOLERANCE,
    ) {
        let h = header(&[&secret], t, &body);
        prop_assert_eq!(verify(&secret, &h, &body, t + skew, TOLERANCE), Ok(()), "{}", h);
    }

    #[test]
    fn the_signature_is_the_documented_hmac(
        secret in any_secret(),
        body in any_body(),
        t in any_timestamp(),
        id in "(evt|bat|msg)_[0-9a-zA-Z]{1,24}",
    ) {
        let mut message = format!("{t}.").into_bytes();
        message.extend_from_slice(&body);
        let want_v1 = model_hex(&model_hmac(secret.as_bytes(), &message));
        prop_assert_eq!(v1(&secret, t, &body), want_v1.clone());
        prop_assert_eq!(header(&[&secret], t, &body), format!("t={t},v1={want_v1}"));

        let key = STANDARD_NO_PAD.decode(&secret["whsec_".len()..]).unwrap();
        let mut message = format!("{id}.{t}.").into_bytes();
        message.extend_from_slice(&body);
        let want_sw = format!("v1,{}", STANDARD.encode(model_hmac(&key, &message)));
        prop_assert_eq!(standard_webhooks(&[&secret], &id, t, &body), want_sw);
    }

    #[test]
    fn any_single_byte_change_is_a_mismatch(
        secret in any_secret(),
        body in prop::collection::vec(any::<u8>(), 1..512),
        t in any_timestamp(),
        at in any::<prop::sample::Index>(),
        delta in 1u8..=255,
        extra in any::<u8>(),
    ) {
        let h = header(&[&secret], t, &body);
        let i = at.index(body.len());
        let mut changed = body.clone();
        changed[i] = changed[i].wrapping_add(delta);
        prop_assert_eq!(verify(&secret, &h, &changed, t, TOLERANCE), Err(VerifyError::Mismatch));
        let mut longer = body.clone();
        longer.insert(i, extra);
        prop_assert_eq!(verify(&secret, &h, &longer, t, TOLERANCE), Err(VerifyError::Mismatch));
        let mut shorter = body;
        shorter.remove(i);
        prop_assert_eq!(verify(&secret, &h, &shorter, t, TOLERANCE), Err(VerifyError::Mismatch));
    }

    #[test]
    fn another_secret_is_a_mismatch(
        secret in any_secret(),
        other in any_secret(),
        body in any_body(),
        t in any_timestamp(),
    ) {
        prop_assume!(secret != other);
        let h = header(&[&secret], t, &body);
        prop_assert_eq!(verify(&other, &h, &body, t, TOLERANCE), Err(VerifyError::Mismatch));
    }

    #[test]
    fn every_listed_secret_verifies(
        secrets in prop::collection::vec(any_secret(), 1..4),
        body in any_body(),
        t in any_timestamp(),
    ) {
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let h = header(&refs, t, &body);
        for secret in &secrets {
            prop_assert_eq!(verify(secret, &h, &body, t, TOLERANCE), Ok(()));
        }
        let sw = standard_webhooks(&refs, "evt_x", t, &body);
        prop_assert_eq!(sw.split(' ').count(), secrets.len());
    }

    #[test]
    fn outside_tolerance_is_refused(
        secret in any_secret(),
        body in any_body(),
        t in any_timestamp(),
        beyond in 1i64..=1_000_000,
        late in any::<bool>(),
    ) {
        let h = header(&[&secret], t, &body);
        let now = if late { t + TOLERANCE + beyond } else { t - TOLERANCE - beyond };
        prop_assert_eq!(verify(&secret, &h, &body, now, TOLERANCE), Err(VerifyError::Timestamp));
    }

    #[test]
    fn verify_answers_any_header_without_panicking(
        h in "[tv10=,. a-f0-9-]{0,80}",
        t in prop_oneof![
            any::<i64>(),
            Just(i64::MIN),
            Just(i64::MAX),
            i64::MIN..i64::MIN + 5_000_000_000,
        ],
        now in any_timestamp(),
        body in any_body(),
    ) {
        // `t` comes from a request, `now` from the clock. Whatever arrives, the answer is a
        // verdict, never a panic, and it is valid only when a real signature was given.
        let _ = verify("whsec_x", &h, &body, now, TOLERANCE);
        let forged = format!("t={t},v1={}", "0".repeat(64));
        prop_assert_ne!(verify("whsec_x", &forged, &body, now, TOLERANCE), Ok(()));
    }
}

#[test]
fn standard_webhooks_published_test_vector() {
    // From the Standard Webhooks specification's reference libraries.
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    let body = br#"{"test": 2432232314}"#;
    assert_eq!(
        standard_webhooks(&[secret], id, 1614265330, body),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
    // The same secret twice (a rotation to itself) gives the same entry twice.
    assert_eq!(
        standard_webhooks(&[secret, secret], id, 1614265330, body),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
}
