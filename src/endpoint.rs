//! What makes an endpoint's settings valid: its URL (SPEC 4.6), event-type filter and
//! batching limits. Pure checks shared by the API and the configuration.

use std::time::Duration;

use crate::event::EventType;
use crate::outbound::{BlockReason, Policy};

/// The largest `batch_max` an endpoint may have.
pub const MAX_BATCH: u32 = 1000;
/// The longest `batch_window` an endpoint may have.
pub const MAX_BATCH_WINDOW: Duration = Duration::from_secs(3600);
/// The longest endpoint URL.
pub const MAX_URL_LEN: usize = 2048;

/// Why an endpoint URL is refused. The API shows its `Display` as the field's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// Longer than `MAX_URL_LEN` bytes.
    TooLong,
    /// Neither `http://` nor `https://`.
    Scheme,
    /// Not a URL at all.
    Invalid,
    /// No host to connect to.
    NoHost,
    /// User name or password in the URL.
    Credentials,
    /// Port 0.
    Port,
    /// An IP literal the outbound policy refuses.
    Blocked(BlockReason),
}

impl std::fmt::Display for UrlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UrlError::TooLong => write!(f, "url must be at most {MAX_URL_LEN} bytes"),
            UrlError::Scheme => f.write_str("url must start with http:// or https://"),
            UrlError::Invalid => f.write_str("url is not a valid URL"),
            UrlError::NoHost => f.write_str("url must name a host"),
            UrlError::Credentials => {
                f.write_str("url must not contain credentials; use the signature to authenticate")
            }
            UrlError::Port => f.write_str("url port must be between 1 and 65535"),
            UrlError::Blocked(why) => write!(
                f,
                "url points at a {why} address, which the outbound policy refuses"
            ),
        }
    }
}

/// The message, for the API's field errors.
impl From<UrlError> for String {
    fn from(e: UrlError) -> String {
        e.to_string()
    }
}

/// Checks an endpoint URL: `http` or `https`, at most 2048 bytes, a host, no credentials, and
/// not an IP literal that the outbound policy refuses. Host names are judged at every
/// connection instead, since what they resolve to can change.
pub fn validate_url(url: &str, policy: &Policy) -> Result<(), UrlError> {
    if url.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong);
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(UrlError::Scheme);
    }
    let uri: http::Uri = url.parse().map_err(|_| UrlError::Invalid)?;
    let authority = uri.authority().ok_or(UrlError::NoHost)?;
    if authority.as_str().contains('@') {
        return Err(UrlError::Credentials);
    }
    let host = authority.host();
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    if let Some(port) = authority.port_u16()
        && port == 0
    {
        return Err(UrlError::Port);
    }
    // Read as the resolver will read it: `http://2852039166/` is 169.254.169.254.
    if let Some(ip) = crate::outbound::host_address(host) {
        policy.check(ip).map_err(UrlError::Blocked)?;
    }
    Ok(())
}

/// An event-type filter naming a type that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownEventType(pub String);

impl std::fmt::Display for UnknownEventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        write!(
            f,
            "unknown event type {:?}; known types are {}",
            self.0,
            known.join(", ")
        )
    }
}

/// The message, for the API's field errors.
impl From<UnknownEventType> for String {
    fn from(e: UnknownEventType) -> String {
        e.to_string()
    }
}

/// Checks an event-type filter; returns it without duplicates, in the given order.
pub fn validate_event_types(types: &[String]) -> Result<Vec<String>, UnknownEventType> {
    let mut out: Vec<String> = Vec::with_capacity(types.len());
    for t in types {
        if EventType::parse(t).is_none() {
            return Err(UnknownEventType(t.clone()));
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
    fn url_errors_say_why() {
        let policy = Policy::default();
        let rows = [
            ("ftp://example.com/", UrlError::Scheme),
            ("http://user:pw@example.com/", UrlError::Credentials),
            ("http://example.com:0/", UrlError::Port),
            (
                "http://[fe80::1]/",
                UrlError::Blocked(BlockReason::LinkLocal),
            ),
            (
                "http://0xa9fea9fe/",
                UrlError::Blocked(BlockReason::LinkLocal),
            ),
        ];
        for (url, want) in rows {
            assert_eq!(validate_url(url, &policy), Err(want), "{url}");
        }
        assert_eq!(
            String::from(UrlError::Blocked(BlockReason::LinkLocal)),
            "url points at a link-local address, which the outbound policy refuses"
        );
    }

    #[test]
    fn event_type_filters() {
        let ok =
            validate_event_types(&["incident.created".into(), "incident.created".into()]).unwrap();
        assert_eq!(ok, vec!["incident.created".to_string()]);
        assert!(validate_event_types(&["incident.updated".into()]).is_err());
    }
}
