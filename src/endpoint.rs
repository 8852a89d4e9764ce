//! What makes an endpoint's settings valid: its URL (SPEC 4.6), event-type filter and
//! batching limits. Pure checks shared by the API and the configuration.

use std::time::Duration;

use crate::event::EventType;
use crate::outbound::Policy;

/// The largest `batch_max` an endpoint may have.
pub const MAX_BATCH: u32 = 1000;
/// The longest `batch_window` an endpoint may have.
pub const MAX_BATCH_WINDOW: Duration = Duration::from_secs(3600);
/// The longest endpoint URL.
pub const MAX_URL_LEN: usize = 2048;

/// Checks an endpoint URL: `http` or `https`, at most 2048 bytes, a host, no credentials, and
/// not an IP literal that the outbound policy refuses. Host names are judged at every
/// connection instead, since what they resolve to can change.
pub fn validate_url(url: &str, policy: &Policy) -> Result<(), String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("url must be at most {MAX_URL_LEN} bytes"));
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err("url must start with http:// or https://".into());
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|_| "url is not a valid URL".to_string())?;
    let authority = uri.authority().ok_or("url must name a host")?;
    if authority.as_str().contains('@') {
        return Err("url must not contain credentials; use the signature to authenticate".into());
    }
    let host = authority.host();
    if host.is_empty() {
        return Err("url must name a host".into());
    }
    if let Some(port) = authority.port_u16()
        && port == 0
    {
        return Err("url port must be between 1 and 65535".into());
    }
    // Read as the resolver will read it: `http://2852039166/` is 169.254.169.254.
    if let Some(ip) = crate::outbound::host_address(host)
        && let Err(why) = policy.check(ip)
    {
        return Err(format!(
            "url points at a {why} address, which the outbound policy refuses"
        ));
    }
    Ok(())
}

/// Checks an event-type filter; returns it without duplicates, in the given order.
pub fn validate_event_types(types: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::with_capacity(types.len());
    for t in types {
        if EventType::parse(t).is_none() {
            let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            return Err(format!(
                "unknown event type {t:?}; known types are {}",
                known.join(", ")
            ));
        }
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let long = format!("https://example.com/{}", "a".repeat(2048));
        let rows: [(&str, bool); 23] = [
            ("https://hooks.example.com/statussentry", true),
            ("http://127.0.0.1:9000/hook", true),
            ("http://10.0.0.5/hook", true),
            ("HTTPS://Example.com", true),
            ("http://[::1]:8080/", true),
            ("ftp://example.com/", false),
            ("example.com/hook", false),
            ("http://169.254.169.254/latest/meta-data", false),
            ("http://0.0.0.0:80/", false),
            ("http://224.0.0.1/", false),
            ("http://255.255.255.255/", false),
            ("http://[fe80::1]/", false),
            ("http://[::ffff:169.254.169.254]/", false),
            ("http://user:pw@example.com/", false),
            ("http:///nohost", false),
            ("http://2852039166/", false),
            ("http://0xa9fea9fe/", false),
            ("http://0251.0376.0251.0376/", false),
            ("http://169.254.43518/", false),
            ("http://0/", false),
            ("http://127.1:8080/", true),
            ("http://1.example/", true),
            (&long, false),
        ];
        let policy = Policy {
            allow_loopback: true,
            allow_private: true,
            ..Policy::default()
        };
        for (url, ok) in rows {
            let result = validate_url(url, &policy);
            assert_eq!(result.is_ok(), ok, "{url}: {result:?}");
        }
    }

    #[test]
    fn event_type_filters() {
        let ok =
            validate_event_types(&["incident.created".into(), "incident.created".into()]).unwrap();
        assert_eq!(ok, vec!["incident.created".to_string()]);
        assert!(validate_event_types(&["incident.updated".into()]).is_err());
    }
}
