//! Failed sign-ins per source address (SPEC 5). Only failures are limited: after
//! `MAX_FAILURES` wrong tokens within `WINDOW`, an address's wrong or missing tokens are
//! answered 429 until the window ends, while the correct token from the same address is
//! still served. A stranger who shares an address with the publishers (everyone behind a
//! reverse proxy or an SSH tunnel arrives from 127.0.0.1) can so slow only other strangers,
//! never lock out those who know the token.
//!
//! An IPv6 client is counted by its /64, the prefix one host or one customer is given: it
//! could otherwise take a fresh address for every ten guesses. An IPv4 address mapped into
//! IPv6 counts as the IPv4 address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong tokens an address may send within one window.
pub const MAX_FAILURES: u32 = 10;
/// How long failures are remembered, and how long a limited address's failures get 429.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; the oldest are forgotten first when more arrive.
const MAX_TRACKED: usize = 4096;

#[derive(Default)]
pub struct SignInLimiter {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// The key an address's failures are counted under: an IPv4 address as it is, an IPv6
/// address by its /64.
fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                v6.to_bits() & !((1u128 << 64) - 1),
            )),
        },
    }
}

impl SignInLimiter {
    /// How long `ip` stays limited, when it has sent `MAX_FAILURES` wrong tokens in this
    /// window.
    pub fn limited_for(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let ip = source(ip);
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (count, start) = map.get(&ip)?;
        let end = *start + WINDOW;
        (*count >= MAX_FAILURES && end > now).then(|| end - now)
    }

    /// Counts one wrong token from `ip`; true when this one reached the limit, so that the
    /// caller logs the limit once rather than every refusal.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> bool {
        let ip = source(ip);
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            map.retain(|_, (_, start)| now.duration_since(*start) < WINDOW);
            if map.len() >= MAX_TRACKED
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, (_, start))| *start)
                    .map(|(ip, _)| *ip)
            {
                map.remove(&oldest);
            }
        }
        let entry = map.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= WINDOW {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(1);
        entry.0 == MAX_FAILURES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_after_the_threshold_and_forgives_after_the_window() {
        let limiter = SignInLimiter::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            assert!(!limiter.failed(ip, t0));
        }
        assert_eq!(limiter.limited_for(ip, t0), None);
        assert!(
            limiter.failed(ip, t0),
            "the tenth failure reaches the limit"
        );
        assert!(!limiter.failed(ip, t0), "and says so once");
        assert_eq!(
            limiter.limited_for(ip, t0 + Duration::from_secs(1)),
            Some(WINDOW - Duration::from_secs(1))
        );
        assert_eq!(limiter.limited_for(other, t0), None);
        assert_eq!(limiter.limited_for(ip, t0 + WINDOW), None);
        limiter.failed(ip, t0 + WINDOW);
        assert_eq!(
            limiter.limited_for(ip, t0 + WINDOW),
            None,
            "a new window starts from one failure"
        );
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_slash_64() {
        let limiter = SignInLimiter::default();
        let t0 = Instant::now();
        // Ten guesses, each from a fresh address of one /64.
        for i in 0..MAX_FAILURES {
            let ip: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
            limiter.failed(ip, t0);
        }
        let neighbour: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert!(limiter.limited_for(neighbour, t0).is_some());
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(limiter.limited_for(elsewhere, t0), None);
        // An IPv4 address mapped into IPv6 is the IPv4 address.
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            limiter.failed(mapped, t0);
        }
        assert!(limiter.limited_for(v4, t0).is_some());
    }

    #[test]
    fn memory_stays_bounded() {
        let limiter = SignInLimiter::default();
        let now = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 100) {
            limiter.failed(IpAddr::from(i.to_be_bytes()), now);
        }
        assert!(limiter.failures.lock().unwrap().len() <= MAX_TRACKED);
    }
}
