//! The admin HTTP API on tiny_http (SPEC 5): each request answered on the thread that reads
//! its connection, bearer-token authentication before routing, JSON in and out, and the error
//! shape every refusal uses. Only this module knows tiny_http; handlers live beside it, one
//! file per resource.

mod assets;
mod components;
mod endpoints;
mod events;
mod fields;
mod incidents;
mod monitors;
mod openapi;
mod ping;
mod query;
mod reply;
mod signin;
mod status;

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::Config;
use crate::delivery;
use crate::intake::Intake;
use crate::metrics::Metrics;
use crate::store::Store;

pub use query::Page;
use query::{Plus, parse_query, percent_decode, whole_number};
pub use reply::{ApiError, Reply, Req, Result};

/// What every handler can reach.
pub struct Api {
    pub store: Arc<Store>,
    pub intake: Intake,
    pub dispatcher: delivery::Handle,
    pub monitors: crate::monitor::Handle,
    pub config: Config,
    /// SHA-256 of the admin token.
    pub token_hash: [u8; 32],
    pub metrics: Arc<Metrics>,
    /// Fails once a long-lived thread has died or stalled (`supervise.rs`).
    pub health: crate::supervise::Health,
    stopping: AtomicBool,
    /// Requests being answered, so that shutdown can wait for them.
    in_flight: AtomicUsize,
    sign_ins: signin::SignInLimiter,
    pings: ping::PingLimiter,
    /// The listener's accept loop, once `serve` started it; `/healthz` fails when it stopped.
    listener: std::sync::OnceLock<tiny_http::AcceptLoop>,
}

impl Api {
    // Each argument is a separate shared service; a struct of them would only rename the list.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<Store>,
        intake: Intake,
        dispatcher: delivery::Handle,
        monitors: crate::monitor::Handle,
        config: Config,
        token_hash: [u8; 32],
        metrics: Arc<Metrics>,
        health: crate::supervise::Health,
    ) -> Api {
        Api {
            store,
            intake,
            dispatcher,
            monitors,
            config,
            token_hash,
            metrics,
            health,
            stopping: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            sign_ins: signin::SignInLimiter::default(),
            pings: ping::PingLimiter::default(),
            listener: std::sync::OnceLock::new(),
        }
    }
}

/// How long shutdown waits for requests being answered.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client of the admin API may leave a read or write of its connection idle
/// before the connection is closed, and how long a kept-alive connection may wait for its
/// next request.
const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a client is told to wait when `server.max_connections` are open.
const BUSY_RETRY_AFTER_SECS: u64 = 1;

/// Starts answering requests on `listener`. tiny_http reads each connection on a thread of
/// its own (a pool bounded by `server.max_connections`), and each request is answered on that
/// thread: no hand-off between threads on the way in or out. Timeouts go on each accepted
/// socket, and heads that never reach a handler (over the limits, malformed, too slow, one
/// connection too many) are answered with the API's error shape by `refusal`.
pub fn serve(
    listener: std::net::TcpListener,
    api: Arc<Api>,
) -> std::result::Result<tiny_http::Server, String> {
    let server_config = &api.config.server;
    let metrics = api.metrics.clone();
    let limits = tiny_http::Limits {
        max_connections: server_config.max_connections,
        header_timeout: Some(server_config.header_timeout),
        idle_timeout: Some(CLIENT_IDLE_TIMEOUT),
        max_drain: usize::try_from(server_config.max_body_bytes).unwrap_or(usize::MAX),
        refuse: Some(Arc::new(move |r: &tiny_http::Refusal| {
            if r.status == 503 {
                metrics.connection_refused();
            }
            let reply = Reply::error(&refusal(r));
            let mut response =
                tiny_http::Response::from_data(reply.body).with_status_code(reply.status);
            let headers = [("Content-Type", reply.content_type.to_string())]
                .into_iter()
                .chain(reply.headers);
            for (name, value) in headers {
                if let Ok(h) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                    response.add_header(h);
                }
            }
            response
        })),
    };
    let handler_api = api.clone();
    let handler: tiny_http::Handler = Arc::new(move |request| {
        let _counted = InFlight::enter(&handler_api.in_flight);
        answer(&handler_api, request);
    });
    let server = tiny_http::Server::from_listener_with_limits(listener, handler, limits)
        .map_err(|e| e.to_string())?;
    let _ = api.listener.set(server.accept_loop());
    Ok(server)
}

/// Whether `server` still accepts connections, as a check that outlives the borrow of
/// `server` (for the supervisor's probes): false once its accept loop has ended, which before
/// shutdown means the API is gone and the process must not go on looking healthy.
pub fn accept_probe(server: &tiny_http::Server) -> impl Fn() -> bool + Send + Sync + 'static {
    let accept_loop = server.accept_loop();
    move || accept_loop.running()
}

/// The API's error for a request head or connection tiny_http refused by itself. SPEC 5's
/// codes are a closed set; statuses it does not list take the nearest code.
fn refusal(r: &tiny_http::Refusal) -> ApiError {
    let code = match r.status {
        503 => "unavailable",
        408 => "unavailable",
        414 | 431 => "payload_too_large",
        _ => "invalid_field",
    };
    let mut e = ApiError::new(r.status, code, r.message.clone());
    e.field = r.header.clone();
    if r.status == 503 {
        e.retry_after = Some(BUSY_RETRY_AFTER_SECS);
    }
    e
}

/// Counts one request as being answered for as long as it lives, panics included.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(count: &'a AtomicUsize) -> InFlight<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Stops taking requests (later ones are answered 503) and waits, at most `DRAIN_TIMEOUT`,
/// for those being answered to finish, so that every acknowledged write is complete.
pub fn stop(api: &Api) {
    api.stopping.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while api.in_flight.load(Ordering::SeqCst) > 0 {
        if Instant::now() >= deadline {
            log::warn!(
                "{} requests still being answered after {DRAIN_TIMEOUT:?}; stopping anyway",
                api.in_flight.load(Ordering::SeqCst)
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn answer(api: &Api, mut request: tiny_http::Request) {
    let reply = match handle(api, &mut request) {
        Ok(reply) => reply,
        Err(e) => Reply::error(&e),
    };
    let mut response = tiny_http::Response::from_data(reply.body).with_status_code(reply.status);
    let mut headers = vec![("Content-Type", reply.content_type.to_string())];
    // API answers are never cached; the settings page's files say how they may be.
    if !reply
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("cache-control"))
    {
        headers.push(("Cache-Control", "no-store".into()));
    }
    headers.extend(reply.headers);
    for (name, value) in headers {
        if let Ok(h) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(h);
        }
    }
    // A body over `max_body_bytes` is never read whole, whatever the answer (a 413, or a 401
    // or 404 given before the body is looked at), and tiny_http drains at most that much:
    // the connection is closed after the answer (patch 9). Told nothing, a keep-alive client
    // sent its next request on it and lost it ("peer disconnected"); told `Connection:
    // close`, it opens another. A chunked body has no announced length, and is over the
    // limit when its read says so (the 413).
    let limit = api.config.server.max_body_bytes;
    if reply.status == 413 || request.body_length().is_some_and(|n| n as u64 > limit) {
        response = response.with_connection_close();
    }
    // The client may have gone away; there is nobody left to tell.
    let _ = request.respond(response);
}

fn handle(api: &Api, request: &mut tiny_http::Request) -> Result<Reply> {
    let (path, query) = match request.url().split_once('?') {
        Some((p, q)) => (p.to_string(), parse_query(q)),
        None => (request.url().to_string(), Vec::new()),
    };
    let method = request.method().as_str().to_ascii_uppercase();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_string(),
                h.value.as_str().to_string(),
            )
        })
        .collect();

    if !host_allowed(&api.config.server, &headers) {
        let mut e = ApiError::new(
            421,
            "invalid_field",
            "this server does not answer to that Host; add it to server.allowed_hosts",
        );
        e.field = Some("Host".into());
        return Err(e);
    }
    if path == "/healthz" {
        return status::health(api, &method);
    }
    if path == "/metrics" {
        return status::metrics(api, &method);
    }
    if assets::owns(&path) {
        return Ok(assets::serve(&path, &method, &headers));
    }
    // The API's description is public (SPEC 5): it holds no secret, and a client generator or
    // a fuzzer must be able to read it before it has a token.
    if path == openapi::PATH {
        return openapi::serve(&method);
    }
    // Push monitors' pings carry their own secret in the path (SPEC 5) and take no admin token.
    if let Some(rest) = path.strip_prefix("/ping/") {
        if api.stopping.load(Ordering::SeqCst) {
            return Err(ApiError::unavailable("the server is shutting down"));
        }
        return ping::serve(api, rest, &method);
    }
    let Some(rest) =
        path.strip_prefix("/api/v1/")
            .or(if path == "/api/v1" { Some("") } else { None })
    else {
        return Err(ApiError::new(
            404,
            "not_found",
            format!("no route for {path}"),
        ));
    };
    let peer = request.remote_addr().map(|a| a.ip());
    authenticate(api, &headers, peer)?;
    if api.stopping.load(Ordering::SeqCst) {
        return Err(ApiError::unavailable("the server is shutting down"));
    }
    // An empty segment (`//`, a trailing `/`) is kept, and fits no route: dropping it would
    // read `endpoints//secret` as the endpoint whose id is "secret".
    let segments: Vec<String> = rest
        .split('/')
        .map(|s| percent_decode(s, Plus::Literal))
        .collect();
    let body = read_body(api, request, &method, &headers)?;
    let req = Req {
        method,
        segments,
        query,
        headers,
        body,
    };
    route(api, &req)
}

/// Whether the request's `Host` may be answered: any when `server.allowed_hosts` is empty,
/// else one of its names (an entry without a port matches every port) or the address the
/// server listens on. Refusing other names keeps a DNS-rebinding page in an admin's browser
/// (its own name resolving to this address) from reaching the API.
fn host_allowed(server: &crate::config::Server, headers: &[(String, String)]) -> bool {
    if server.allowed_hosts.is_empty() {
        return true;
    }
    let Some(host) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.trim().to_ascii_lowercase())
    else {
        return false;
    };
    // `name:port`, `[v6]:port`, or either without a port.
    let name = match host.rfind(':') {
        Some(i)
            if !host[i..].contains(']') && (host.starts_with('[') || !host[..i].contains(':')) =>
        {
            &host[..i]
        }
        _ => host.as_str(),
    };
    let listen_ip = match server.listen.ip() {
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    };
    name == listen_ip
        || server
            .allowed_hosts
            .iter()
            .any(|allowed| *allowed == host || *allowed == name)
}

/// Checks the bearer token (SPEC 5). A request with the correct token is always served.
/// Failures are limited per source address: once an address has sent
/// `signin::MAX_FAILURES` wrong tokens in a window, its wrong or missing tokens get 429
/// `rate_limited` until the window ends. Whether the address is limited is known before the
/// token is looked at, and everything that cannot be the token (no header, another scheme, a
/// token longer than any admin token may be) is refused without hashing; a token that could
/// be the right one costs one SHA-256 of at most `secret::MAX_ADMIN_TOKEN_LEN` bytes, the
/// least that telling the correct token apart from a wrong one takes.
fn authenticate(
    api: &Api,
    headers: &[(String, String)],
    peer: Option<std::net::IpAddr>,
) -> Result<()> {
    // The sign-in window is a deadline, so it runs on the monotonic clock.
    let now = crate::time::mono();
    let limited = peer.and_then(|ip| api.sign_ins.limited_for(ip, now));
    let refusal = || match limited {
        Some(wait) => {
            // Whole seconds, rounded up, so that a client that waits them is not limited.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut e = ApiError::new(
                429,
                "rate_limited",
                format!(
                    "too many wrong admin tokens from this address; try again in {secs} s \
                     (the correct token is still accepted)"
                ),
            );
            e.retry_after = Some(secs);
            e
        }
        None => ApiError::new(
            401,
            "unauthorized",
            "a valid admin token is required: Authorization: Bearer <token>",
        ),
    };
    // A missing or malformed header is refused but is not a guess, so it is not counted.
    let token = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, v)| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(refusal)?;
    let correct = token.len() <= crate::secret::MAX_ADMIN_TOKEN_LEN
        && crate::secret::constant_time_eq(&crate::secret::hash_token(token), &api.token_hash);
    if correct {
        return Ok(());
    }
    if let Some(ip) = peer
        && limited.is_none()
        && api.sign_ins.failed(ip, now)
    {
        log::warn!(
            "{ip} sent {} wrong admin tokens; its wrong tokens get 429 for {:?}",
            signin::MAX_FAILURES,
            signin::WINDOW
        );
    }
    Err(refusal())
}

fn read_body(
    api: &Api,
    request: &mut tiny_http::Request,
    method: &str,
    headers: &[(String, String)],
) -> Result<Option<Value>> {
    let limit = api.config.server.max_body_bytes;
    let too_large = || {
        ApiError::new(
            413,
            "payload_too_large",
            format!("the request body is over {limit} bytes"),
        )
    };
    if request.body_length().is_some_and(|n| n as u64 > limit) {
        return Err(too_large());
    }
    if method == "GET" || method == "HEAD" || method == "DELETE" {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    request
        .as_reader()
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            // A chunked body whose framing alone runs past the limit's wire allowance.
            if e.get_ref()
                .is_some_and(|e| e.is::<tiny_http::BodyOverLimit>())
            {
                too_large()
            } else {
                ApiError::new(400, "invalid_json", "the request body could not be read")
            }
        })?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    // No body at all is "no body" (an action route takes it as `{}`); a body of only
    // whitespace is a body, and not JSON.
    if bytes.is_empty() {
        return Ok(None);
    }
    let content_type = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            415,
            "unsupported_media_type",
            "a request body must be sent with Content-Type: application/json",
        ));
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        ApiError::new(
            400,
            "invalid_json",
            format!("the request body is not valid JSON: {e}"),
        )
    })
}

/// A 405 whose `Allow` header lists `allow` (RFC 9110 requires it).
fn method_not_allowed(allow: &'static str) -> ApiError {
    let mut e = ApiError::new(
        405,
        "method_not_allowed",
        format!("this route takes {allow}"),
    );
    e.allow = Some(allow);
    e
}

/// Every route under `/api/v1/`, as a path template and the methods it takes. The router
/// answers exactly these: a path that fits no template is 404, a method not listed is 405.
/// The OpenAPI document's test compares its paths and methods with this table, and an
/// integration test sends every entry to the real binary, so that a handler arm missing
/// below cannot go unnoticed.
pub(super) const ROUTES: &[(&str, &str)] = &[
    ("endpoints", "GET, POST"),
    ("endpoints/{id}", "GET, PATCH, DELETE"),
    ("endpoints/{id}/secret", "GET"),
    ("endpoints/{id}/rotate-secret", "POST"),
    ("endpoints/{id}/test", "POST"),
    ("endpoints/{id}/replay", "POST"),
    ("event-types", "GET"),
    ("events", "GET, POST"),
    ("events/{id}", "GET"),
    ("messages", "GET"),
    ("messages/{id}", "GET"),
    ("messages/{id}/retry", "POST"),
    ("components", "GET, POST"),
    ("components/{id}", "GET, PATCH, DELETE"),
    ("incidents", "GET, POST"),
    ("incidents/{id}", "GET, PATCH"),
    ("monitors", "GET, POST"),
    ("monitors/{id}", "GET, PATCH, DELETE"),
    ("monitors/{id}/checks", "GET"),
    ("monitors/{id}/sla", "GET"),
    ("monitors/{id}/ping-url", "GET"),
    ("monitors/{id}/rotate-ping-url", "POST"),
];

/// The entry of `ROUTES` whose template fits `segs`: a literal part matches itself, a
/// `{name}` part any one segment.
fn find_route(segs: &[&str]) -> Option<(&'static str, &'static str)> {
    ROUTES.iter().copied().find(|(template, _)| {
        let parts: Vec<&str> = template.split('/').collect();
        parts.len() == segs.len()
            && parts
                .iter()
                .zip(segs)
                .all(|(part, seg)| part == seg || (part.starts_with('{') && !seg.is_empty()))
    })
}

fn route(api: &Api, req: &Req) -> Result<Reply> {
    let segs: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let m = req.method.as_str();
    let Some((template, methods)) = find_route(&segs) else {
        return Err(ApiError::new(
            404,
            "not_found",
            format!("no route for /api/v1/{}", req.segments.join("/")),
        ));
    };
    let not_allowed = || {
        let mut e = method_not_allowed(methods);
        e.message = format!("{} takes {methods}", req.segments.join("/"));
        e
    };
    if !methods.split(", ").any(|allowed| allowed == m) {
        return Err(not_allowed());
    }
    // Every template with a parameter has it second: `resource/{id}[/action]`.
    let id = segs.get(1).copied().unwrap_or_default();
    match (template, m) {
        ("endpoints", "GET") => endpoints::list(api, req),
        ("endpoints", "POST") => endpoints::create(api, req),
        ("endpoints/{id}", "GET") => endpoints::get(api, id),
        ("endpoints/{id}", "PATCH") => endpoints::patch(api, id, req),
        ("endpoints/{id}", "DELETE") => endpoints::delete(api, id),
        ("endpoints/{id}/secret", "GET") => endpoints::reveal_secret(api, id),
        ("endpoints/{id}/rotate-secret", "POST") => endpoints::rotate_secret(api, id, req),
        ("endpoints/{id}/test", "POST") => endpoints::test(api, id, req),
        ("endpoints/{id}/replay", "POST") => endpoints::replay(api, id, req),
        ("event-types", "GET") => Ok(events::types()),
        ("events", "GET") => events::list(api, req),
        ("events", "POST") => events::publish(api, req),
        ("events/{id}", "GET") => events::get(api, id),
        ("messages", "GET") => events::list_messages(api, req),
        ("messages/{id}", "GET") => events::get_message(api, id),
        ("messages/{id}/retry", "POST") => events::retry_message(api, id),
        ("components", "GET") => components::list(api, req),
        ("components", "POST") => components::create(api, req),
        ("components/{id}", "GET") => components::get(api, id),
        ("components/{id}", "PATCH") => components::patch(api, id, req),
        ("components/{id}", "DELETE") => components::delete(api, id),
        ("incidents", "GET") => incidents::list(api, req),
        ("incidents", "POST") => incidents::create(api, req),
        ("incidents/{id}", "GET") => incidents::get(api, id),
        ("incidents/{id}", "PATCH") => incidents::patch(api, id, req),
        ("monitors", "GET") => monitors::list(api, req),
        ("monitors", "POST") => monitors::create(api, req),
        ("monitors/{id}", "GET") => monitors::get(api, id),
        ("monitors/{id}", "PATCH") => monitors::patch(api, id, req),
        ("monitors/{id}", "DELETE") => monitors::delete(api, id),
        ("monitors/{id}/ping-url", "GET") => monitors::reveal_ping_url(api, id, req),
        ("monitors/{id}/rotate-ping-url", "POST") => monitors::rotate_ping_url(api, id, req),
        ("monitors/{id}/checks", "GET") => monitors::checks(api, id, req),
        ("monitors/{id}/sla", "GET") => monitors::sla(api, id),
        // A pair in `ROUTES` without an arm here; the route test sends every pair, so this
        // is never reached by a build that passed it.
        _ => Err(not_allowed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_matched_by_name_and_port() {
        let config = |listen: &str, allowed: &[&str]| crate::config::Server {
            listen: listen.parse().unwrap(),
            admin_token: String::new(),
            max_body_bytes: 1024,
            shutdown_timeout: Duration::from_secs(1),
            max_connections: 1,
            header_timeout: Duration::from_secs(1),
            allowed_hosts: allowed.iter().map(|s| s.to_string()).collect(),
        };
        let host = |h: &str| vec![("Host".to_string(), h.to_string())];
        let open = config("127.0.0.1:8080", &[]);
        assert!(host_allowed(&open, &host("evil.example")));
        assert!(host_allowed(&open, &[]));
        let strict = config("127.0.0.1:8080", &["status.example.com", "localhost:9000"]);
        let rows = [
            ("status.example.com", true),
            ("Status.Example.COM:443", true),
            ("localhost:9000", true),
            ("localhost:8080", false),
            ("localhost", false),
            ("127.0.0.1:8080", true),
            ("127.0.0.1:41234", true),
            ("127.0.0.2:8080", false),
            ("evil.example", false),
            ("status.example.com.evil.example", false),
        ];
        for (h, want) in rows {
            assert_eq!(host_allowed(&strict, &host(h)), want, "{h}");
        }
        assert!(!host_allowed(&strict, &[]), "no Host at all");
        let v6 = config("[::1]:8080", &["x.example"]);
        assert!(host_allowed(&v6, &host("[::1]:8080")));
        assert!(!host_allowed(&v6, &host("[::2]:8080")));
    }

    #[test]
    fn refusals_use_the_spec_codes() {
        let rows = [
            (400, Some("Idempotency-Key"), "invalid_field"),
            (408, None, "unavailable"),
            (414, None, "payload_too_large"),
            (431, None, "payload_too_large"),
            (501, Some("Transfer-Encoding"), "invalid_field"),
            (503, None, "unavailable"),
        ];
        for (status, header, code) in rows {
            let e = refusal(&tiny_http::Refusal {
                status,
                message: "m".into(),
                header: header.map(str::to_string),
            });
            assert_eq!((e.status, e.code), (status, code));
            assert_eq!(e.field.as_deref(), header);
            assert_eq!(e.retry_after.is_some(), status == 503, "{status}");
        }
    }

    #[test]
    fn a_broken_listener_stops_the_accept_loop() {
        // A socket that is bound but not listening makes accept fail with EINVAL, an error no
        // retry mends: the loop must end, and say so, instead of spinning or dying unseen.
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket
            .bind(
                &"127.0.0.1:0"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .expect("bind");
        let listener: std::net::TcpListener = socket.into();
        let handler: tiny_http::Handler = Arc::new(|_| {});
        let server = tiny_http::Server::from_listener_with_limits(
            listener,
            handler,
            tiny_http::Limits::default(),
        )
        .expect("server");
        let accepting = accept_probe(&server);
        let deadline = Instant::now() + Duration::from_secs(10);
        while accepting() {
            assert!(Instant::now() < deadline, "the accept loop still runs");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
