//! `statussentry serve`: opens the store, settles the admin token, starts the dispatcher, the
//! intake, the API and retention, then waits for SIGTERM or SIGINT and shuts down in
//! order: stop taking requests, finish stored writes, let deliveries in flight end within
//! `shutdown_timeout`. Every long-lived thread is started through the supervisor
//! (`supervise.rs`); the main thread watches them, sends systemd's watchdog pings while they
//! make progress, and turns the death or stall of one into a non-zero exit.

use std::sync::Arc;
use std::time::Duration;

use crate::api::{self, Api};
use crate::config::{Config, Env};
use crate::intake::Intake;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::supervise::{Supervisor, Watch};

const TOKEN_HASH_KEY: &str = "admin_token_sha256";

/// Runs the service until a signal; the error is a start-up failure for the user.
pub fn run(config: Config) -> Result<(), String> {
    for warning in &config.warnings {
        log::warn!("{warning}");
    }
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

    Supervisor::log_panics();
    let supervisor = Supervisor::new();
    let signals = forward_signals(signals, &supervisor)?;
    let metrics = Arc::new(Metrics::default());
    let (dispatcher, dispatcher_thread) =
        crate::delivery::start(store.clone(), &config, metrics.clone(), &supervisor)?;
    let (monitors, monitors_thread) = crate::monitor::start(
        store.clone(),
        &config,
        dispatcher.clone(),
        metrics.clone(),
        &supervisor,
    )?;
    let intake = Intake::new(
        store.clone(),
        dispatcher.clone(),
        metrics.clone(),
        supervisor.role("intake", crate::supervise::WRITER_BOUND),
    );
    let (stop_retention, retention_stop) = crossbeam_channel::bounded(1);
    let retention_thread = crate::retention::start(
        store.clone(),
        config.storage.retention_days,
        config.storage.checkpoints,
        retention_stop,
        &supervisor,
    )
    .map_err(|e| format!("cannot start retention: {e}"))?;
    let api = Arc::new(Api::new(
        store.clone(),
        intake,
        dispatcher.clone(),
        monitors.clone(),
        config.clone(),
        token_hash,
        metrics,
        supervisor.health(),
    ));
    let server = api::serve(listener, api.clone()).map_err(|e| format!("cannot start API: {e}"))?;
    // The accept loop ends only at shutdown; if it ever ends before, the API is gone, and the
    // process must exit non-zero (so that systemd restarts it) instead of looking healthy.
    supervisor.probe("accept loop", api::accept_probe(&server));

    let counts = store.counts().map_err(|e| e.to_string())?;
    log::info!(
        "statussentry {} listening on {addr}, database {}, {} endpoints, {} messages pending",
        env!("CARGO_PKG_VERSION"),
        config.storage.path.display(),
        counts.0,
        counts.1
    );
    crate::systemd::notify_ready();
    // The full integrity check reads every page of the file, minutes for a large database
    // from a cold cache: it runs beside the service instead of before it, and a damaged file
    // then refuses writes and fails /healthz (`Store::check_integrity`).
    let checking = store.clone();
    supervisor
        .spawn_task("integrity", move || checking.check_integrity())
        .map_err(|e| format!("cannot start the integrity check: {e}"))?;

    match supervisor.watch(&signals, crate::systemd::watchdog()) {
        Watch::Signal(sig) => log::info!("signal {sig} received; shutting down"),
        // `/healthz` already fails. Nothing is joined: a dead or stuck thread would hold the
        // shutdown, and everything acknowledged is already on disk.
        Watch::Failed(why) => return Err(format!("{why}; exiting")),
    }
    supervisor.stop();
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
    store.stop_integrity_check();
    if config.storage.checkpoints
        && let Err(e) = store.checkpoint()
    {
        log::warn!("final checkpoint failed: {e}");
    }
    // A thread that died while stopping is a bug worth a non-zero exit, not a quiet one.
    if let Some(why) = supervisor.failure() {
        return Err(format!("{why}; stopped"));
    }
    log::info!("stopped");
    Ok(())
}

/// Hands SIGTERM and SIGINT to the main thread over a channel, so that it can wait for a
/// signal and for a failing thread at once. The forwarding thread blocks in the signal
/// iterator and never beats, so its bound is unlimited; its death still ends the process.
fn forward_signals(
    mut signals: signal_hook::iterator::Signals,
    supervisor: &Supervisor,
) -> Result<crossbeam_channel::Receiver<i32>, String> {
    let (tx, rx) = crossbeam_channel::unbounded();
    supervisor
        .spawn("signals", Duration::MAX, move |_| {
            for sig in signals.forever() {
                if tx.send(sig).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(rx)
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

/// The length below which a configured admin token is warned of at start.
const STRONG_TOKEN_LEN: usize = 32;

/// The SHA-256 of the admin token: from the environment or configuration, else the stored
/// hash, else a new token generated now and printed once.
fn admin_token_hash(store: &Store, config: &Config) -> Result<[u8; 32], String> {
    let configured = &config.server.admin_token;
    if !configured.is_empty() {
        // The sign-in limit cannot slow a guesser (the correct token must always pass), so a
        // configured token is only as strong as it is long and random.
        if configured.len() < STRONG_TOKEN_LEN {
            log::warn!(
                "the configured admin token is {} characters; the sign-in limit cannot stop a guesser, so use at least {STRONG_TOKEN_LEN} random ones (`openssl rand -base64 32`)",
                configured.len()
            );
        }
        return Ok(crate::secret::hash_token(configured));
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

/// `statussentry backup FILE`: a consistent copy of the configured database, 0600.
pub fn backup(config: &Config, dest: &std::path::Path) -> Result<i64, String> {
    if dest.exists() {
        return Err(format!(
            "{} already exists; choose a new file",
            dest.display()
        ));
    }
    let store = open_for_tool(config)?;
    store.backup(dest).map_err(|e| e.to_string())
}

/// What `statussentry admin-token --reset` did.
pub struct TokenReset {
    /// The new token, to be printed once.
    pub token: String,
    /// Set when a configured token overrides the stored one, so that the reset changes nothing
    /// the service does.
    pub overridden_by: Option<&'static str>,
}

/// `statussentry admin-token --reset`: stores a new token's hash and returns the token.
/// `env` is the environment `config` was loaded with.
pub fn reset_admin_token(config: &Config, env: &Env) -> Result<TokenReset, String> {
    let store = open_for_tool(config)?;
    let token = crate::secret::generate_admin_token();
    store
        .set_setting(
            TOKEN_HASH_KEY,
            &crate::secret::to_hex(&crate::secret::hash_token(&token)),
        )
        .map_err(|e| e.to_string())?;
    // The service takes a configured token over the stored hash (`admin_token_hash`), and
    // the configuration has merged the two sources: the environment wins over the file.
    let overridden_by = if config.server.admin_token.is_empty() {
        None
    } else if env.admin_token.is_some() {
        Some("STATUSSENTRY_ADMIN_TOKEN")
    } else {
        Some("server.admin_token")
    };
    Ok(TokenReset {
        token,
        overridden_by,
    })
}

/// Opens the service's database for an operator's tool: it must exist. A relative
/// `storage.path` is taken inside `$STATE_DIRECTORY` when that is set, else the working
/// directory, so a tool run from a home directory without either would otherwise make a new,
/// empty database there and act on it.
fn open_for_tool(config: &Config) -> Result<Store, String> {
    let path = &config.storage.path;
    Store::open_existing(path, config.storage.max_size).map_err(|e| match e {
        crate::store::StoreError::Missing(_) => {
            let tried = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            format!(
                "no database at {}; the tools open only an existing database. Give \
                 storage.path as an absolute path, or set STATE_DIRECTORY to the service's \
                 state directory (the unit's is /var/lib/statussentry)",
                tried.display()
            )
        }
        other => other.to_string(),
    })
}
