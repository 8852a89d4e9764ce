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

/// Why the policy refuses an address: the kind of address it is, or the `deny` list. Named
/// apart from the store's `Refusal` and tiny_http's, which refuse other things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockReason {
    LinkLocal,
    Unspecified,
    Multicast,
    Broadcast,
    Loopback,
    Private,
    /// In a `deny` range.
    Denied,
}

impl BlockReason {
    /// The word error messages use: "a {reason} address".
    pub fn as_str(self) -> &'static str {
        match self {
            BlockReason::LinkLocal => "link-local",
            BlockReason::Unspecified => "unspecified",
            BlockReason::Multicast => "multicast",
            BlockReason::Broadcast => "broadcast",
            BlockReason::Loopback => "loopback",
            BlockReason::Private => "private",
            BlockReason::Denied => "denied",
        }
    }
}

impl std::fmt::Display for BlockReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Policy {
    /// `Ok` when `ip` may be connected to, else the kind of address it is.
    pub fn check(&self, ip: IpAddr) -> Result<(), BlockReason> {
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
            return Err(BlockReason::Loopback);
        }
        if !self.allow_private && is_private(judged) {
            return Err(BlockReason::Private);
        }
        if self
            .deny
            .iter()
            .any(|n| n.contains(&ip) || n.contains(&judged))
        {
            return Err(BlockReason::Denied);
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
pub fn always_refused(ip: IpAddr) -> Option<BlockReason> {
    match ip {
        IpAddr::V4(v4) if v4.is_link_local() => Some(BlockReason::LinkLocal),
        IpAddr::V4(v4) if v4.octets()[0] == 0 => Some(BlockReason::Unspecified),
        IpAddr::V4(v4) if v4.is_multicast() => Some(BlockReason::Multicast),
        IpAddr::V4(v4) if v4.is_broadcast() => Some(BlockReason::Broadcast),
        IpAddr::V6(v6) if v6.is_unspecified() => Some(BlockReason::Unspecified),
        IpAddr::V6(v6) if v6.is_multicast() => Some(BlockReason::Multicast),
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => Some(BlockReason::LinkLocal),
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

/// The address a URL's host names when it is an IP literal, read the way the system's
/// resolver will read it, else `None` (a name, resolved and checked at connection time).
/// glibc's and musl's `getaddrinfo` take every form `inet_aton` takes, so `2852039166`,
/// `0xa9fea9fe`, `0251.0376.0251.0376` and `169.254.43518` all name 169.254.169.254, and
/// `0` names 0.0.0.0; an IPv6 literal comes in brackets.
pub fn host_address(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(v6) = bare.parse::<Ipv6Addr>() {
        return Some(IpAddr::V6(v6));
    }
    inet_aton(bare).map(IpAddr::V4)
}

/// IPv4 in the forms of `inet_aton(3)`: one to four parts separated by dots, each decimal,
/// octal (a leading `0`) or hexadecimal (`0x`); the last part fills the bytes the others
/// leave (`a.b` = a, then b as 24 bits). Nothing may follow the last part.
fn inet_aton(text: &str) -> Option<Ipv4Addr> {
    let mut values = [0u32; 4];
    let mut count = 0;
    for part in text.split('.') {
        *values.get_mut(count)? = aton_part(part)?;
        count += 1;
    }
    let (last, leading) = values[..count].split_last()?;
    // Each leading part is one byte; the last fills the rest: 32, 24, 16 or 8 bits.
    let last_bits = 32 - 8 * leading.len() as u32;
    if leading.iter().any(|v| *v > 0xff) || u64::from(*last) >= 1u64 << last_bits {
        return None;
    }
    let high = leading
        .iter()
        .enumerate()
        .fold(0u32, |acc, (i, v)| acc | (v << (24 - 8 * i as u32)));
    Some(Ipv4Addr::from(high | last))
}

/// One part of an `inet_aton` address, as `strtoul` with base 0 reads it when the whole part
/// must be consumed: it starts with a digit, `0x` means hexadecimal, another leading `0`
/// octal; at most 32 bits.
fn aton_part(part: &str) -> Option<u32> {
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    // `from_str_radix` alone would take a leading `+`.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
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
            assert_eq!(
                p.check(ip(addr)).map_err(BlockReason::as_str),
                want,
                "{addr}"
            );
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
            assert_eq!(
                p.check(ip(addr)).map_err(BlockReason::as_str),
                want,
                "{addr}"
            );
        }
    }

    #[test]
    fn hosts_are_read_as_the_resolver_reads_them() {
        let metadata = Some(ip("169.254.169.254"));
        let rows: [(&str, Option<IpAddr>); 34] = [
            // Every inet_aton spelling of the metadata address.
            ("169.254.169.254", metadata),
            ("2852039166", metadata),
            ("0xa9fea9fe", metadata),
            ("0XA9FEA9FE", metadata),
            ("0x00a9fea9fe", metadata),
            ("0251.0376.0251.0376", metadata),
            ("0xa9.0xfe.0xa9.0xfe", metadata),
            ("169.254.43518", metadata),
            ("169.16689662", metadata),
            ("0251.0xfe.43518", metadata),
            // Short forms of other addresses.
            ("0", Some(ip("0.0.0.0"))),
            ("00", Some(ip("0.0.0.0"))),
            ("127.1", Some(ip("127.0.0.1"))),
            ("10.0.0.1", Some(ip("10.0.0.1"))),
            ("255.255.255.255", Some(ip("255.255.255.255"))),
            ("4294967295", Some(ip("255.255.255.255"))),
            ("[::1]", Some(ip("::1"))),
            (
                "[::ffff:169.254.169.254]",
                Some(ip("::ffff:169.254.169.254")),
            ),
            // Names stay names: the resolver would look them up.
            ("example.com", None),
            ("1.example", None),
            ("0x.example", None),
            ("0x", None),
            ("08", None),
            ("0x1g", None),
            ("1.2.3.4.5", None),
            ("1..2", None),
            ("1.2.3.", None),
            (".1.2.3", None),
            ("+1", None),
            ("256.1.1.1", None),
            ("1.2.3.256", None),
            ("1.2.65536", None),
            ("4294967296", None),
            ("1e3", None),
        ];
        for (host, want) in rows {
            assert_eq!(host_address(host), want, "{host}");
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
