//! Outbound HTTP: how the ureq agents of deliveries and monitor checks are built (timeouts,
//! no redirects, trust roots, a resolver that applies the outbound address policy), and the
//! names under which transport errors are recorded. Only this module and the code sending
//! through its agents know ureq.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ureq::http::Uri;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, parse_pem};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    ConnectProxyConnector, ConnectionDetails, Connector, NextTimeout, RustlsConnector, Transport,
};

use crate::config::{Delivery, Network};
use crate::outbound::{self, Policy};

mod tcp;
mod timing;

pub use timing::{Stopwatch, Timings};

/// The one agent all outbound requests share: explicit timeouts, no redirects, status
/// codes as data, no proxy from the environment, the system's trust roots plus `ca_file`,
/// and every resolved address checked against the outbound policy before connecting.
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
        .tls_config(tls_config(&network.ca_file)?)
        .build();
    Ok(ureq::Agent::with_parts(
        config,
        // ureq's default chain, minus SOCKS (refused when the configuration is read), with
        // the leaner TCP transport of `tcp.rs` and the TLS handshake timed.
        ().chain(ConnectProxyConnector::default())
            .chain(tcp::TcpConnector)
            .chain(TimedTls::default()),
        PolicyResolver {
            policy: network.policy.clone(),
        },
    ))
}

/// ureq's rustls connector, timed (SPEC 4.5). Its `connect` makes the whole handshake
/// (rustls' `complete_io` before it returns), so its duration is the TLS phase; and it is the
/// last of the chain, so its end is when a new connection is ready for the request.
#[derive(Debug, Default)]
struct TimedTls(RustlsConnector);

impl<In: Transport> Connector<In> for TimedTls {
    type Out = <RustlsConnector as Connector<In>>::Out;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        // The same test as the connector's own: it wraps only a plain transport to an https URL.
        let handshake = details.needs_tls() && chained.as_ref().is_some_and(|t| !t.is_tls());
        let started = handshake.then(Instant::now);
        let result = self.0.connect(details, chained);
        if let Some(started) = started {
            timing::tls(started.elapsed());
        }
        if matches!(result, Ok(Some(_))) {
            timing::ready();
        }
        result
    }
}

/// Where Debian, Ubuntu and most distributions keep the system's trust roots as one file.
const SYSTEM_ROOTS: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The system's trust roots plus `ca_file`; Mozilla's roots (bundled) when neither exists.
fn tls_config(ca_file: &str) -> Result<TlsConfig, String> {
    let mut certs: Vec<Certificate<'static>> = Vec::new();
    if let Some(bundle) = SYSTEM_ROOTS.iter().find_map(|p| std::fs::read(p).ok()) {
        certs.extend(pem_certificates(&bundle));
    }
    if !ca_file.is_empty() {
        let pem = std::fs::read(ca_file)
            .map_err(|e| format!("cannot read network.ca_file {ca_file}: {e}"))?;
        let extra = pem_certificates(&pem);
        if extra.is_empty() {
            return Err(format!(
                "network.ca_file {ca_file} holds no PEM certificate"
            ));
        }
        if certs.is_empty() {
            log::warn!(
                "no system trust roots found; only network.ca_file's certificates are trusted"
            );
        }
        certs.extend(extra);
    }
    let roots = if certs.is_empty() {
        RootCerts::WebPki
    } else {
        RootCerts::new_with_certs(&certs)
    };
    Ok(TlsConfig::builder().root_certs(roots).build())
}

fn pem_certificates(pem: &[u8]) -> Vec<Certificate<'static>> {
    parse_pem(pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect()
}

/// An address the outbound policy refuses; recorded as the attempt error `blocked_address`.
#[derive(Debug)]
pub struct BlockedAddress {
    pub ip: IpAddr,
    pub why: outbound::BlockReason,
}

impl std::fmt::Display for BlockedAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is a {} address, refused by the outbound policy",
            self.ip, self.why
        )
    }
}

impl std::error::Error for BlockedAddress {}

/// A host name that did not resolve; recorded as the attempt error `dns`. ureq's resolver
/// hands on the system's lookup error as a plain I/O error, indistinguishable by its kind
/// from a connection that failed, so the resolver below wraps it in this.
#[derive(Debug)]
pub struct DnsFailure {
    pub host: String,
    pub why: String,
}

impl std::fmt::Display for DnsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot resolve {}: {}", self.host, self.why)
    }
}

impl std::error::Error for DnsFailure {}

/// Resolves as ureq would, then refuses the host if any of its addresses is refused, and
/// hands ureq only the checked addresses, so DNS cannot change between check and connect.
#[derive(Debug)]
struct PolicyResolver {
    policy: Policy,
}

impl Resolver for PolicyResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        // ureq resolves before it looks for a pooled connection, so this runs for every
        // request; its default resolver starts a thread each time a timeout is set. An IP
        // literal needs neither.
        // A literal is read as the system's resolver reads it, so `http://0xa9fea9fe/` is
        // 169.254.169.254 here as it would be there (SPEC 4.6).
        let literal = uri.host().and_then(outbound::host_address);
        let addrs = match literal {
            Some(ip) => {
                let default_port = if uri.scheme_str() == Some("https") {
                    443
                } else {
                    80
                };
                let mut addrs = DefaultResolver::default().empty();
                addrs.push(std::net::SocketAddr::new(
                    ip,
                    uri.port_u16().unwrap_or(default_port),
                ));
                addrs
            }
            None => {
                let started = Instant::now();
                let resolved = DefaultResolver::default().resolve(uri, config, timeout);
                timing::dns(started.elapsed());
                resolved.map_err(|e| dns_failure(uri, e))?
            }
        };
        for addr in addrs.iter() {
            if let Err(why) = self.policy.check(addr.ip()) {
                return Err(ureq::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    BlockedAddress { ip: addr.ip(), why },
                )));
            }
        }
        Ok(addrs)
    }
}

/// A failure of name resolution as the attempt error `dns`: every error the default resolver
/// returns (the lookup's I/O error, no address of the wanted family, or a lookup that
/// outlived the request's time) is about the name, not about a connection.
fn dns_failure(uri: &Uri, e: ureq::Error) -> ureq::Error {
    match e {
        ureq::Error::Io(_) | ureq::Error::HostNotFound | ureq::Error::Timeout(_) => {
            ureq::Error::Io(std::io::Error::other(DnsFailure {
                host: uri.host().unwrap_or_default().to_string(),
                why: e.to_string(),
            }))
        }
        // A URL the resolver cannot read is not a failure of the name.
        other => other,
    }
}

/// A transport error as the attempt log names it (SPEC 4.5). The settings page
/// (`assets/app.js`, `ERROR_TEXT`) shows each by its `as_str`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Timeout,
    ConnectionRefused,
    ConnectionReset,
    Dns,
    Tls,
    /// The outbound policy refused every address of the host.
    BlockedAddress,
    /// A 3xx, which is never followed.
    Redirect,
    /// The peer did not answer in HTTP, or its head was too large.
    InvalidResponse,
    /// The URL could not be sent as a request.
    InvalidUrl,
    Other,
}

impl ErrorKind {
    /// Every kind, for the test that the settings page has a text for each.
    #[cfg(test)]
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::Timeout,
        ErrorKind::ConnectionRefused,
        ErrorKind::ConnectionReset,
        ErrorKind::Dns,
        ErrorKind::Tls,
        ErrorKind::BlockedAddress,
        ErrorKind::Redirect,
        ErrorKind::InvalidResponse,
        ErrorKind::InvalidUrl,
        ErrorKind::Other,
    ];

    /// The name stored in the attempt log and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::ConnectionRefused => "connection_refused",
            ErrorKind::ConnectionReset => "connection_reset",
            ErrorKind::Dns => "dns",
            ErrorKind::Tls => "tls",
            ErrorKind::BlockedAddress => "blocked_address",
            ErrorKind::Redirect => "redirect",
            ErrorKind::InvalidResponse => "invalid_response",
            ErrorKind::InvalidUrl => "invalid_url",
            ErrorKind::Other => "other",
        }
    }
}

/// The kind of a transport error.
pub fn error_kind(err: &ureq::Error) -> ErrorKind {
    use std::io::ErrorKind as K;
    match err {
        ureq::Error::Timeout(_) => ErrorKind::Timeout,
        ureq::Error::HostNotFound => ErrorKind::Dns,
        ureq::Error::ConnectionFailed => ErrorKind::ConnectionRefused,
        ureq::Error::Io(e) if e.get_ref().is_some_and(|inner| inner.is::<DnsFailure>()) => {
            ErrorKind::Dns
        }
        ureq::Error::Io(e) => match e.kind() {
            K::PermissionDenied
                if e.get_ref()
                    .is_some_and(|inner| inner.is::<BlockedAddress>()) =>
            {
                ErrorKind::BlockedAddress
            }
            K::ConnectionRefused => ErrorKind::ConnectionRefused,
            // rustls reports a certificate it refuses, or a peer that does not speak TLS, as
            // `InvalidData` wrapping its own error; nothing else under ureq uses that kind.
            K::InvalidData => ErrorKind::Tls,
            K::TimedOut | K::WouldBlock => ErrorKind::Timeout,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                ErrorKind::ConnectionReset
            }
            _ => ErrorKind::ConnectionReset,
        },
        ureq::Error::Tls(_)
        | ureq::Error::Rustls(_)
        | ureq::Error::Pem(_)
        | ureq::Error::TlsRequired => ErrorKind::Tls,
        ureq::Error::Protocol(_) | ureq::Error::LargeResponseHeader(..) => {
            ErrorKind::InvalidResponse
        }
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => ErrorKind::InvalidUrl,
        ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => ErrorKind::Redirect,
        _ => ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_page_names_every_error_kind() {
        // The page shows an attempt's error through its own table of texts, keyed by the
        // names the API returns; a kind it lacks would show as a bare identifier.
        let app = include_str!("../../assets/app.js");
        let table = app
            .split_once("const ERROR_TEXT = {")
            .and_then(|(_, rest)| rest.split_once("};"))
            .map(|(table, _)| table)
            .expect("app.js has ERROR_TEXT");
        for kind in ErrorKind::ALL {
            assert!(
                table.contains(&format!("\n    {}: ", kind.as_str())),
                "{kind:?} has no text in app.js"
            );
        }
    }
}
