//! The outbound address policy (SPEC 4.6): which IP addresses deliveries and monitor checks
//! may connect to. Pure: the resolver in `net/mod.rs` applies it to every address a name resolves
//! to, and the API applies it to IP literals when an endpoint is saved.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The rules, built once from `[network]`.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub allow_loopback: bool,
    pub allow_private: bool,
    pub deny: Vec<IpNet>,
    pub allow: Vec<IpNet>,
}

/// Why an address is refused, for error messages.
pub type Refusal = &'static str;

impl Policy {
    /// `Ok` when `ip` may be connected to, else the kind of address it is.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        let v4 = embedded_v4(ip);
        let judged = v4.map_or(ip, IpAddr::V4);
        // An operator who lists a range means it: allow wins over every refusal.
        if self
            .allow
            .iter()
            .any(|n| n.contains(&ip) || n.contains(&judged))
        {
            return Ok(());
        }
        if let Some(why) = always_refused(judged) {
            return Err(why);
        }
        if !self.allow_loopback && judged.is_loopback() {
            return Err("loopback");
        }
        if !self.allow_private && is_private(judged) {
            return Err("private");
        }
        if self
            .deny
            .iter()
            .any(|n| n.contains(&ip) || n.contains(&judged))
        {
            return Err("denied");
        }
        Ok(())
    }
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`) or NAT64 (`64:ff9b::a.b.c.d`)
/// IPv6 address, which must be judged as that IPv4 address.
fn embedded_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped().or_else(|| nat64(v6)),
    }
}

fn nat64(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let o = v6.octets();
        Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]))
    } else {
        None
    }
}

/// Addresses refused unless explicitly allowed: link-local (cloud metadata lives there),
/// unspecified, multicast, broadcast.
pub fn always_refused(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) if v4.is_link_local() => Some("link-local"),
        IpAddr::V4(v4) if v4.octets()[0] == 0 => Some("unspecified"),
        IpAddr::V4(v4) if v4.is_multicast() => Some("multicast"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("broadcast"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("unspecified"),
        IpAddr::V6(v6) if v6.is_multicast() => Some("multicast"),
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => Some("link-local"),
        _ => None,
    }
}

/// RFC 1918, shared address space (RFC 6598) and unique local IPv6 (fc00::/7).
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private() || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// Parses a CIDR (`10.0.0.0/8`, `fd00::/8`) or a bare address (taken as a single host).
pub fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_allow_internal_and_refuse_the_dangerous() {
        let p = Policy {
            allow_loopback: true,
            allow_private: true,
            ..Policy::default()
        };
        let rows = [
            ("127.0.0.1", Ok(())),
            ("10.1.2.3", Ok(())),
            ("192.168.1.1", Ok(())),
            ("8.8.8.8", Ok(())),
            ("::1", Ok(())),
            ("169.254.169.254", Err("link-local")),
            ("0.0.0.0", Err("unspecified")),
            ("0.1.2.3", Err("unspecified")),
            ("224.0.0.1", Err("multicast")),
            ("255.255.255.255", Err("broadcast")),
            ("::", Err("unspecified")),
            ("fe80::1", Err("link-local")),
            ("ff02::1", Err("multicast")),
            ("::ffff:169.254.169.254", Err("link-local")),
            ("64:ff9b::a9fe:a9fe", Err("link-local")),
        ];
        for (addr, want) in rows {
            assert_eq!(p.check(ip(addr)), want, "{addr}");
        }
    }

    #[test]
    fn config_can_refuse_more_and_allow_wins() {
        let p = Policy {
            allow_loopback: false,
            allow_private: false,
            deny: vec![parse_net("8.8.8.0/24").unwrap()],
            allow: vec![
                parse_net("10.9.0.0/16").unwrap(),
                parse_net("169.254.169.254").unwrap(),
            ],
        };
        let rows = [
            ("127.0.0.1", Err("loopback")),
            ("::ffff:127.0.0.1", Err("loopback")),
            ("10.1.2.3", Err("private")),
            ("172.16.0.1", Err("private")),
            ("100.64.0.1", Err("private")),
            ("fd00::1", Err("private")),
            ("8.8.8.8", Err("denied")),
            ("8.8.4.4", Ok(())),
            ("10.9.1.1", Ok(())),
            ("169.254.169.254", Ok(())),
            ("169.254.169.253", Err("link-local")),
        ];
        for (addr, want) in rows {
            assert_eq!(p.check(ip(addr)), want, "{addr}");
        }
    }

    #[test]
    fn nets_parse() {
        assert!(parse_net("10.0.0.0/8").is_some());
        assert!(parse_net("fd00::/8").is_some());
        assert!(parse_net("10.0.0.1").is_some());
        assert!(parse_net("10.0.0.0/33").is_none());
        assert!(parse_net("ten").is_none());
    }
}
