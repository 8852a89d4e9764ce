//! Failed sign-ins per source address: after `MAX_FAILURES` wrong tokens within `WINDOW`, an
//! address is refused without its token being checked until the window ends, which makes
//! guessing the admin token from one address hopeless without slowing anyone who knows it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong tokens an address may send within one window.
pub const MAX_FAILURES: u32 = 10;
/// How long failures are remembered, and how long a locked-out address waits.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; the oldest are forgotten first when more arrive.
const MAX_TRACKED: usize = 4096;

#[derive(Default)]
pub struct SignInLimiter {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl SignInLimiter {
    /// How long `ip` must still wait, when it is locked out.
    pub fn locked_for(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (count, start) = map.get(&ip)?;
        let end = *start + WINDOW;
        (*count >= MAX_FAILURES && end > now).then(|| end - now)
    }

    /// Counts one wrong token from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
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
        entry.0 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_out_after_the_limit_and_forgives_after_the_window() {
        let limiter = SignInLimiter::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            limiter.failed(ip, t0);
        }
        assert_eq!(limiter.locked_for(ip, t0), None);
        limiter.failed(ip, t0);
        assert_eq!(
            limiter.locked_for(ip, t0 + Duration::from_secs(1)),
            Some(WINDOW - Duration::from_secs(1))
        );
        assert_eq!(limiter.locked_for(other, t0), None);
        assert_eq!(limiter.locked_for(ip, t0 + WINDOW), None);
        limiter.failed(ip, t0 + WINDOW);
        assert_eq!(
            limiter.locked_for(ip, t0 + WINDOW),
            None,
            "a new window starts from one failure"
        );
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
