//! Outbound HTTP: the one ureq agent that deliveries (and monitor checks) share, and the
//! names under which transport errors are recorded. Only this module and the delivery worker
//! know ureq.

use std::time::Duration;

use crate::config::{Delivery, Network};

/// The one agent all outbound requests share: explicit timeouts, no redirects, status
/// codes as data, no proxy from the environment.
pub fn agent(delivery: &Delivery, network: &Network) -> Result<ureq::Agent, String> {
    let proxy = if network.proxy.is_empty() {
        None
    } else {
        Some(ureq::Proxy::new(&network.proxy).map_err(|e| format!("invalid network.proxy: {e}"))?)
    };
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(proxy)
        .timeout_global(Some(delivery.timeout))
        .timeout_connect(Some(delivery.connect_timeout))
        .user_agent(format!(
            "StatusSentry-Webhooks/{}",
            env!("CARGO_PKG_VERSION")
        ))
        .max_idle_connections(512)
        .max_idle_connections_per_host(128)
        .max_idle_age(Duration::from_secs(30))
        .build();
    Ok(config.new_agent())
}

/// The attempt-log name of a transport error (SPEC 4.5).
pub fn error_kind(err: &ureq::Error) -> &'static str {
    use std::io::ErrorKind as K;
    match err {
        ureq::Error::Timeout(_) => "timeout",
        ureq::Error::HostNotFound => "dns",
        ureq::Error::ConnectionFailed => "connection_refused",
        ureq::Error::Io(e) => match e.kind() {
            K::ConnectionRefused => "connection_refused",
            K::TimedOut | K::WouldBlock => "timeout",
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                "connection_reset"
            }
            _ => "connection_reset",
        },
        ureq::Error::Tls(_)
        | ureq::Error::Rustls(_)
        | ureq::Error::Pem(_)
        | ureq::Error::TlsRequired => "tls",
        ureq::Error::Protocol(_) | ureq::Error::LargeResponseHeader(..) => "invalid_response",
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => "invalid_url",
        ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => "redirect",
        _ => "other",
    }
}
