//! `statussentry serve`: opens the store, settles the admin token, starts the dispatcher, the
//! intake, the API and retention, then waits for SIGTERM or SIGINT and shuts down in
//! order: stop taking requests, finish stored writes, let deliveries in flight end within
//! `shutdown_timeout`.

use std::sync::Arc;
use std::time::Duration;

use crate::api::{self, Api};
use crate::config::Config;
use crate::intake::Intake;
use crate::metrics::Metrics;
use crate::store::Store;

const TOKEN_HASH_KEY: &str = "admin_token_sha256";

/// Runs the service until a signal; the error is a start-up failure for the user.
pub fn run(config: Config) -> Result<(), String> {
    let store = Arc::new(
        Store::open(&config.storage.path, config.storage.max_size).map_err(|e| e.to_string())?,
    );
    let token_hash = admin_token_hash(&store, &config)?;

    let listener = listen(config.server.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", config.server.listen))?;
    let addr = listener
        .local_addr()
        .map_or_else(|_| config.server.listen.to_string(), |a| a.to_string());

    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;

    let metrics = Arc::new(Metrics::default());
    let (dispatcher, dispatcher_thread) =
        crate::delivery::start(store.clone(), &config, metrics.clone())?;
    let (monitors, monitors_thread) =
        crate::monitor::start(store.clone(), &config, dispatcher.clone(), metrics.clone())?;
    let intake = Intake::new(store.clone(), dispatcher.clone(), metrics.clone());
    let (stop_retention, retention_stop) = crossbeam_channel::bounded(1);
    let retention_thread =
        crate::retention::start(store.clone(), config.storage.retention_days, retention_stop)
            .map_err(|e| format!("cannot start retention: {e}"))?;
    let api = Arc::new(Api::new(
        store.clone(),
        intake,
        dispatcher.clone(),
        monitors.clone(),
        config.clone(),
        token_hash,
        metrics,
    ));
    let server = api::serve(listener, api.clone()).map_err(|e| format!("cannot start API: {e}"))?;

    let counts = store.counts().map_err(|e| e.to_string())?;
    log::info!(
        "statussentry {} listening on {addr}, database {}, {} endpoints, {} messages pending",
        env!("CARGO_PKG_VERSION"),
        config.storage.path.display(),
        counts.0,
        counts.1
    );
    crate::systemd::notify_ready();

    let failure = wait_for_stop(signals, || api::accepting(&server));
    api::stop(&api);
    // Checks in flight are abandoned; a check not recorded changes nothing.
    monitors.shutdown();
    let _ = monitors_thread.join();
    // Requests being answered have finished, so nothing acknowledged is half-written.
    // Closing the listener refuses new connections.
    drop(server);
    drop(api);
    let _ = stop_retention.send(());
    let _ = retention_thread.join();
    dispatcher.shutdown();
    let _ = dispatcher_thread.join();
    if let Err(e) = store.checkpoint() {
        log::warn!("final checkpoint failed: {e}");
    }
    match failure {
        None => {
            log::info!("stopped");
            Ok(())
        }
        Some(reason) => Err(reason),
    }
}

/// How often the main thread looks at the listener while it waits for a signal.
const LIVENESS_CHECK: Duration = Duration::from_millis(250);

/// Waits for SIGTERM or SIGINT (`None`), checking every `LIVENESS_CHECK` that the admin
/// listener still accepts connections: if its accept loop ended, the API is gone, and the
/// process must exit non-zero (so that systemd restarts it) instead of running on looking
/// healthy; that is `Some(reason)`.
fn wait_for_stop(
    mut signals: signal_hook::iterator::Signals,
    accepting: impl Fn() -> bool,
) -> Option<String> {
    loop {
        if let Some(sig) = signals.pending().next() {
            log::info!("signal {sig} received; shutting down");
            return None;
        }
        if !accepting() {
            let reason =
                "the admin listener stopped accepting connections; exiting so that it is restarted"
                    .to_string();
            log::error!("{reason}");
            return Some(reason);
        }
        std::thread::sleep(LIVENESS_CHECK);
    }
}

/// How many connections the kernel may hold for the accept loop. std's 128 drops the SYNs
/// of a larger burst, whose clients then retry after 1, 3, 7 s...; the accept loop answers
/// connections past `server.max_connections` at once, so a deeper queue turns a burst into
/// prompt answers (a 503 at worst) instead of stalled handshakes. The kernel caps it at
/// `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: i32 = 1024;

/// Binds the admin listener. Accepted sockets inherit `TCP_NODELAY` from it on Linux. Their
/// timeouts are set on each accepted socket (`api::serve`), never on the listener: on Linux a
/// receive timeout on a listening socket makes `accept` itself fail after that long without
/// a new connection.
fn listen(addr: std::net::SocketAddr) -> Result<std::net::TcpListener, String> {
    use socket2::{Domain, Socket, Type};
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(|e| e.to_string())?;
    // As std does: a restart may bind while the old process's connections are in TIME_WAIT.
    socket.set_reuse_address(true).map_err(|e| e.to_string())?;
    socket.bind(&addr.into()).map_err(|e| e.to_string())?;
    socket.listen(LISTEN_BACKLOG).map_err(|e| e.to_string())?;
    if let Err(e) = socket.set_tcp_nodelay(true) {
        log::warn!("cannot set TCP_NODELAY on the admin listener: {e}");
    }
    Ok(socket.into())
}

/// The SHA-256 of the admin token: from the environment or configuration, else the stored
/// hash, else a new token generated now and printed once.
fn admin_token_hash(store: &Store, config: &Config) -> Result<[u8; 32], String> {
    if !config.server.admin_token.is_empty() {
        return Ok(crate::secret::hash_token(&config.server.admin_token));
    }
    if let Some(hex) = store.setting(TOKEN_HASH_KEY).map_err(|e| e.to_string())? {
        return crate::secret::from_hex::<32>(&hex).ok_or_else(|| {
            "the stored admin token hash is damaged; run `statussentry admin-token --reset`".into()
        });
    }
    let token = crate::secret::generate_admin_token();
    store
        .set_setting(
            TOKEN_HASH_KEY,
            &crate::secret::to_hex(&crate::secret::hash_token(&token)),
        )
        .map_err(|e| e.to_string())?;
    log::warn!(
        "generated an admin token; it is shown only this once (make another with `statussentry admin-token --reset`): {token}"
    );
    Ok(crate::secret::hash_token(&token))
}

/// `statussentry backup FILE`: a consistent copy of the configured database.
pub fn backup(config: &Config, dest: &std::path::Path) -> Result<i64, String> {
    if dest.exists() {
        return Err(format!(
            "{} already exists; choose a new file",
            dest.display()
        ));
    }
    if !config.storage.path.exists() {
        return Err(format!("no database at {}", config.storage.path.display()));
    }
    let store =
        Store::open(&config.storage.path, config.storage.max_size).map_err(|e| e.to_string())?;
    store.backup(dest).map_err(|e| e.to_string())
}

/// `statussentry admin-token --reset`: stores a new token's hash and prints the token.
pub fn reset_admin_token(config: &Config) -> Result<String, String> {
    let store =
        Store::open(&config.storage.path, config.storage.max_size).map_err(|e| e.to_string())?;
    let token = crate::secret::generate_admin_token();
    store
        .set_setting(
            TOKEN_HASH_KEY,
            &crate::secret::to_hex(&crate::secret::hash_token(&token)),
        )
        .map_err(|e| e.to_string())?;
    Ok(token)
}
