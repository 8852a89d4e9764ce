//! Outbound HTTP: how the ureq agents of deliveries and monitor checks are built (timeouts,
//! no redirects, trust roots, a resolver that applies the outbound address policy), and the
//! names under which transport errors are recorded. Only this module and the code sending
//! through its agents know ureq.

use std::net::IpAddr;
use std::time::Duration;

use ureq::http::Uri;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, parse_pem};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    ConnectProxyConnector, Connector, NextTimeout, RustlsConnector,
};

use crate::config::{Delivery, Network};
use crate::outbound::{self, Policy};

mod tcp;

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
        // the leaner TCP transport of `tcp.rs`.
        ().chain(ConnectProxyConnector::default())
            .chain(tcp::TcpConnector)
            .chain(RustlsConnector::default()),
        PolicyResolver {
            policy: network.policy.clone(),
        },
    ))
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
    pub why: outbound::Refusal,
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
            None => DefaultResolver::default()
                .resolve(uri, config, timeout)
                .map_err(|e| dns_failure(uri, e))?,
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

/// The attempt-log name of a transport error (SPEC 4.5).
pub fn error_kind(err: &ureq::Error) -> &'static str {
    use std::io::ErrorKind as K;
    match err {
        ureq::Error::Timeout(_) => "timeout",
        ureq::Error::HostNotFound => "dns",
        ureq::Error::ConnectionFailed => "connection_refused",
        ureq::Error::Io(e) if e.get_ref().is_some_and(|inner| inner.is::<DnsFailure>()) => "dns",
        ureq::Error::Io(e) => match e.kind() {
            K::PermissionDenied
                if e.get_ref()
                    .is_some_and(|inner| inner.is::<BlockedAddress>()) =>
            {
                "blocked_address"
            }
            K::ConnectionRefused => "connection_refused",
            // rustls reports a certificate it refuses, or a peer that does not speak TLS, as
            // `InvalidData` wrapping its own error; nothing else under ureq uses that kind.
            K::InvalidData => "tls",
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
