//! Configuration: the TOML file, the embedded defaults and the three environment overrides,
//! parsed once into validated types and passed explicitly. Nothing else reads the environment
//! for settings, and no function elsewhere holds a hidden default.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Every setting, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: Server,
    pub storage: Storage,
    pub delivery: Delivery,
    pub network: Network,
    pub monitors: Monitors,
    /// What the operator should hear about the file itself (`file_warnings`), said once at
    /// start by `serve` and by `check-config`.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
    /// Empty when the token comes from the store (generated on first start).
    pub admin_token: String,
    pub max_body_bytes: u64,
    pub shutdown_timeout: Duration,
    /// Connections served at once; past it a new one is answered 503 and closed.
    pub max_connections: usize,
    /// The whole request head must arrive within this.
    pub header_timeout: Duration,
    /// `Host` values accepted (lowercase, a port optional); empty: any.
    pub allowed_hosts: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Storage {
    /// The database file, already resolved against `$STATE_DIRECTORY` or the working directory.
    pub path: PathBuf,
    pub retention_days: u32,
    /// New events are refused (507) once the database uses this many bytes; `None`: no limit.
    pub max_size: Option<u64>,
    /// Whether the process checkpoints the write-ahead log itself (after each retention pass
    /// and at shutdown); false leaves it to another process that owns it, such as Litestream.
    pub checkpoints: bool,
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub workers: usize,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub retry_for: Duration,
    pub disable_after: Duration,
    pub batch_max: u32,
    pub batch_window: Duration,
    /// How often an endpoint disabled for failing is probed (SPEC 4.4).
    pub recovery_probe: Duration,
    /// How long after it was disabled such an endpoint is probed; zero: never.
    pub recovery_for: Duration,
}

#[derive(Debug, Clone)]
pub struct Network {
    /// The address policy built from `allow_loopback`, `allow_private`, `deny` and `allow`.
    pub policy: crate::outbound::Policy,
    pub ca_file: String,
    pub proxy: String,
}

#[derive(Debug, Clone)]
pub struct Monitors {
    pub region: String,
    pub checkers: usize,
}

/// Why a configuration was refused.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read(PathBuf, std::io::Error),
    /// The file is not valid TOML, names an unknown key, or has a value of the wrong type.
    Parse(PathBuf, String),
    /// A value parsed but is out of range or malformed; names the key and what was expected.
    Invalid { key: &'static str, expected: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read(path, err) => write!(f, "cannot read {}: {err}", path.display()),
            ConfigError::Parse(path, msg) => write!(f, "{}: {}", path.display(), msg.trim_end()),
            ConfigError::Invalid { key, expected } => {
                write!(f, "invalid {key}: expected {expected}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// The most `server.max_connections` may be: each connection is a thread and a descriptor,
/// and the systemd unit's `TasksMax=` and `LimitNOFILE=` must leave room for them.
const MAX_CONNECTIONS: usize = 16_384;

// The file's shape. Every field is optional so that a file need only name what it changes;
// unknown keys are refused by serde with the key's name.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    delivery: RawDelivery,
    #[serde(default)]
    network: RawNetwork,
    #[serde(default)]
    monitors: RawMonitors,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    admin_token: Option<String>,
    max_body_bytes: Option<u64>,
    shutdown_timeout: Option<String>,
    max_connections: Option<usize>,
    header_timeout: Option<String>,
    allowed_hosts: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    path: Option<String>,
    retention_days: Option<u32>,
    max_size: Option<String>,
    checkpoints: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    workers: Option<usize>,
    timeout: Option<String>,
    connect_timeout: Option<String>,
    initial_backoff: Option<String>,
    max_backoff: Option<String>,
    retry_for: Option<String>,
    disable_after: Option<String>,
    batch_max: Option<u32>,
    batch_window: Option<String>,
    recovery_probe: Option<String>,
    recovery_for: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    allow_loopback: Option<bool>,
    allow_private: Option<bool>,
    deny: Option<Vec<String>>,
    allow: Option<Vec<String>>,
    ca_file: Option<String>,
    proxy: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMonitors {
    region: Option<String>,
    checkers: Option<usize>,
}

/// The environment as far as configuration is concerned, gathered by the caller so that
/// loading stays a pure function that tests can drive.
#[derive(Debug, Default, Clone)]
pub struct Env {
    pub listen: Option<String>,
    pub admin_token: Option<String>,
    pub db: Option<String>,
    pub state_directory: Option<String>,
}

impl Env {
    /// Reads `STATUSSENTRY_LISTEN`, `STATUSSENTRY_ADMIN_TOKEN`, `STATUSSENTRY_DB` and
    /// `STATE_DIRECTORY` (set by systemd's `StateDirectory=`).
    pub fn from_process() -> Env {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Env {
            listen: var("STATUSSENTRY_LISTEN"),
            admin_token: var("STATUSSENTRY_ADMIN_TOKEN"),
            db: var("STATUSSENTRY_DB"),
            state_directory: var("STATE_DIRECTORY"),
        }
    }
}

impl Config {
    /// Loads `file` (or only the embedded defaults when `None`), then applies `env`.
    pub fn load(file: Option<&Path>, env: &Env) -> Result<Config, ConfigError> {
        let (raw, warnings) = match file {
            None => (RawConfig::default(), Vec::new()),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::Read(path.to_path_buf(), e))?;
                let raw: RawConfig = toml::from_str(&text)
                    .map_err(|e| ConfigError::Parse(path.to_path_buf(), e.to_string()))?;
                let warnings = file_warnings(path, &raw);
                (raw, warnings)
            }
        };
        let mut config = Config::from_raw(raw, env)?;
        config.warnings = warnings;
        Ok(config)
    }

    /// Parses a TOML document without a file, for tests.
    #[cfg(test)]
    fn from_str(text: &str, env: &Env) -> Result<Config, ConfigError> {
        let raw =
            toml::from_str(text).map_err(|e| ConfigError::Parse("<test>".into(), e.to_string()))?;
        Config::from_raw(raw, env)
    }

    fn from_raw(raw: RawConfig, env: &Env) -> Result<Config, ConfigError> {
        let listen_text = env
            .listen
            .clone()
            .or(raw.server.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen = listen_text.parse().map_err(|_| ConfigError::Invalid {
            key: "server.listen",
            expected: format!("an address such as \"127.0.0.1:8080\", got {listen_text:?}"),
        })?;
        let admin_token = env
            .admin_token
            .clone()
            .or(raw.server.admin_token)
            .unwrap_or_default();
        if !admin_token.is_empty()
            && !(16..=crate::secret::MAX_ADMIN_TOKEN_LEN).contains(&admin_token.len())
        {
            return Err(ConfigError::Invalid {
                key: "server.admin_token",
                expected: "16 to 256 characters, or empty to generate one".into(),
            });
        }
        let max_body_bytes = raw.server.max_body_bytes.unwrap_or(262_144);
        if !(1024..=64 * 1024 * 1024).contains(&max_body_bytes) {
            return Err(ConfigError::Invalid {
                key: "server.max_body_bytes",
                expected: "a size between 1024 and 67108864 bytes".into(),
            });
        }
        let max_connections = raw.server.max_connections.unwrap_or(512);
        if !(1..=MAX_CONNECTIONS).contains(&max_connections) {
            return Err(ConfigError::Invalid {
                key: "server.max_connections",
                expected: format!("between 1 and {MAX_CONNECTIONS} connections"),
            });
        }
        let header_timeout = duration("server.header_timeout", raw.server.header_timeout, "10s")?;
        if header_timeout.is_zero() || header_timeout > Duration::from_secs(300) {
            return Err(ConfigError::Invalid {
                key: "server.header_timeout",
                expected: "a duration above zero and at most 5m".into(),
            });
        }
        let allowed_hosts = raw
            .server
            .allowed_hosts
            .unwrap_or_default()
            .into_iter()
            .map(|h| {
                let host = h.trim().to_ascii_lowercase();
                let valid = !host.is_empty()
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b));
                if valid {
                    Ok(host)
                } else {
                    Err(ConfigError::Invalid {
                        key: "server.allowed_hosts",
                        expected: format!(
                            "host names as a browser sends them in Host, such as \"status.example.com\" or \"localhost:8080\", got {h:?}"
                        ),
                    })
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let server = Server {
            listen,
            admin_token,
            max_body_bytes,
            shutdown_timeout: duration(
                "server.shutdown_timeout",
                raw.server.shutdown_timeout,
                "10s",
            )?,
            max_connections,
            header_timeout,
            allowed_hosts,
        };

        let path_text = env
            .db
            .clone()
            .or(raw.storage.path)
            .unwrap_or_else(|| "statussentry.db".into());
        if path_text.is_empty() {
            return Err(ConfigError::Invalid {
                key: "storage.path",
                expected: "a file path".into(),
            });
        }
        let mut path = PathBuf::from(&path_text);
        if path.is_relative()
            && let Some(dir) = &env.state_directory
        {
            // systemd may list several directories separated by ':'; the first is ours.
            let first = dir.split(':').next().unwrap_or(dir);
            path = Path::new(first).join(path);
        }
        let storage = Storage {
            path,
            retention_days: raw.storage.retention_days.unwrap_or(30),
            max_size: size("storage.max_size", raw.storage.max_size)?,
            checkpoints: raw.storage.checkpoints.unwrap_or(true),
        };
        if storage.retention_days == 0 {
            return Err(ConfigError::Invalid {
                key: "storage.retention_days",
                expected: "a whole number of days, at least 1".into(),
            });
        }

        let d = raw.delivery;
        let delivery = Delivery {
            workers: d.workers.unwrap_or(16),
            timeout: duration("delivery.timeout", d.timeout, "10s")?,
            connect_timeout: duration("delivery.connect_timeout", d.connect_timeout, "5s")?,
            initial_backoff: duration("delivery.initial_backoff", d.initial_backoff, "5s")?,
            max_backoff: duration("delivery.max_backoff", d.max_backoff, "1h")?,
            retry_for: duration("delivery.retry_for", d.retry_for, "72h")?,
            disable_after: duration("delivery.disable_after", d.disable_after, "120h")?,
            batch_max: d.batch_max.unwrap_or(100),
            batch_window: duration("delivery.batch_window", d.batch_window, "5s")?,
            recovery_probe: duration("delivery.recovery_probe", d.recovery_probe, "1h")?,
            recovery_for: duration("delivery.recovery_for", d.recovery_for, "30days")?,
        };
        if !(1..=256).contains(&delivery.workers) {
            return Err(ConfigError::Invalid {
                key: "delivery.workers",
                expected: "between 1 and 256 threads".into(),
            });
        }
        if !(1..=crate::endpoint::MAX_BATCH).contains(&delivery.batch_max) {
            return Err(ConfigError::Invalid {
                key: "delivery.batch_max",
                expected: format!("between 1 and {}", crate::endpoint::MAX_BATCH),
            });
        }
        if delivery.batch_window > crate::endpoint::MAX_BATCH_WINDOW {
            return Err(ConfigError::Invalid {
                key: "delivery.batch_window",
                expected: "at most 1h".into(),
            });
        }
        for (key, value) in [
            ("delivery.timeout", delivery.timeout),
            ("delivery.connect_timeout", delivery.connect_timeout),
            ("delivery.initial_backoff", delivery.initial_backoff),
            // Zero would probe without pause; `recovery_for = "0s"` is how probing is turned off.
            ("delivery.recovery_probe", delivery.recovery_probe),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Invalid {
                    key,
                    expected: "a duration above zero".into(),
                });
            }
        }
        if delivery.max_backoff < delivery.initial_backoff {
            return Err(ConfigError::Invalid {
                key: "delivery.max_backoff",
                expected: "a duration no shorter than delivery.initial_backoff".into(),
            });
        }

        let n = raw.network;
        let nets = |key: &'static str, list: Option<Vec<String>>| {
            list.unwrap_or_default()
                .iter()
                .map(|s| {
                    crate::outbound::parse_net(s).ok_or_else(|| ConfigError::Invalid {
                        key,
                        expected: format!(
                            "CIDRs such as \"10.0.0.0/8\" or \"fd00::/8\", got {s:?}"
                        ),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let network = Network {
            policy: crate::outbound::Policy {
                allow_loopback: n.allow_loopback.unwrap_or(true),
                allow_private: n.allow_private.unwrap_or(true),
                deny: nets("network.deny", n.deny)?,
                allow: nets("network.allow", n.allow)?,
            },
            ca_file: n.ca_file.unwrap_or_default(),
            proxy: n.proxy.unwrap_or_default(),
        };
        // SOCKS is not built in: ureq would panic on the first request through one.
        let connect_proxy = |p: ureq::Proxy| {
            matches!(
                p.protocol(),
                ureq::ProxyProtocol::Http | ureq::ProxyProtocol::Https
            )
        };
        if !network.proxy.is_empty() && !ureq::Proxy::new(&network.proxy).is_ok_and(connect_proxy) {
            return Err(ConfigError::Invalid {
                key: "network.proxy",
                expected: format!(
                    "an HTTP CONNECT proxy URL such as \"http://proxy.internal:3128\" (SOCKS is not supported), got {:?}",
                    network.proxy
                ),
            });
        }

        let monitors = Monitors {
            region: raw.monitors.region.unwrap_or_else(|| "local".into()),
            checkers: raw.monitors.checkers.unwrap_or(4),
        };
        if !(1..=64).contains(&monitors.checkers) {
            return Err(ConfigError::Invalid {
                key: "monitors.checkers",
                expected: "between 1 and 64 threads".into(),
            });
        }

        Ok(Config {
            warnings: Vec::new(),
            server,
            storage,
            delivery,
            network,
            monitors,
        })
    }

    /// The effective settings as TOML, with the admin token masked, for `check-config`.
    pub fn render(&self) -> String {
        let human = |d: Duration| humantime::format_duration(d).to_string();
        let nets = |v: &[ipnet::IpNet]| v.iter().map(ToString::to_string).collect();
        let (d, n) = (&self.delivery, &self.network);
        let view = View {
            server: ServerView {
                listen: self.server.listen.to_string(),
                admin_token: if self.server.admin_token.is_empty() {
                    ""
                } else {
                    "********"
                },
                max_body_bytes: self.server.max_body_bytes,
                shutdown_timeout: human(self.server.shutdown_timeout),
                max_connections: self.server.max_connections,
                header_timeout: human(self.server.header_timeout),
                allowed_hosts: &self.server.allowed_hosts,
            },
            storage: StorageView {
                path: self.storage.path.display().to_string(),
                retention_days: self.storage.retention_days,
                max_size: self
                    .storage
                    .max_size
                    .map_or(String::new(), |b| format!("{b}B")),
                checkpoints: self.storage.checkpoints,
            },
            delivery: DeliveryView {
                workers: d.workers,
                timeout: human(d.timeout),
                connect_timeout: human(d.connect_timeout),
                initial_backoff: human(d.initial_backoff),
                max_backoff: human(d.max_backoff),
                retry_for: human(d.retry_for),
                disable_after: human(d.disable_after),
                batch_max: d.batch_max,
                batch_window: human(d.batch_window),
                recovery_probe: human(d.recovery_probe),
                recovery_for: human(d.recovery_for),
            },
            network: NetworkView {
                allow_loopback: n.policy.allow_loopback,
                allow_private: n.policy.allow_private,
                deny: nets(&n.policy.deny),
                allow: nets(&n.policy.allow),
                ca_file: &n.ca_file,
                proxy: mask_proxy(&n.proxy),
            },
            monitors: MonitorsView {
                region: &self.monitors.region,
                checkers: self.monitors.checkers,
            },
        };
        // A view of plain strings and numbers always serializes; should it not, the
        // error says so in the output rather than ending the command.
        let text = toml::to_string(&view).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
        // An empty token is not a mistake: say where the token comes from.
        text.replacen(
            "admin_token = \"\"\n",
            "admin_token = \"\"  # generated on first start, stored as a hash\n",
            1,
        )
    }
}

/// What `check-config` prints: the effective settings in the file's own shape and units, so
/// that the output is itself a valid configuration with the same settings (secrets masked).
#[derive(Serialize)]
struct View<'a> {
    server: ServerView<'a>,
    storage: StorageView,
    delivery: DeliveryView,
    network: NetworkView<'a>,
    monitors: MonitorsView<'a>,
}

#[derive(Serialize)]
struct ServerView<'a> {
    listen: String,
    admin_token: &'static str,
    max_body_bytes: u64,
    shutdown_timeout: String,
    max_connections: usize,
    header_timeout: String,
    allowed_hosts: &'a [String],
}

#[derive(Serialize)]
struct StorageView {
    path: String,
    retention_days: u32,
    /// Empty: no limit.
    max_size: String,
    checkpoints: bool,
}

#[derive(Serialize)]
struct DeliveryView {
    workers: usize,
    timeout: String,
    connect_timeout: String,
    initial_backoff: String,
    max_backoff: String,
    retry_for: String,
    disable_after: String,
    batch_max: u32,
    batch_window: String,
    recovery_probe: String,
    recovery_for: String,
}

#[derive(Serialize)]
struct NetworkView<'a> {
    allow_loopback: bool,
    allow_private: bool,
    deny: Vec<String>,
    allow: Vec<String>,
    ca_file: &'a str,
    proxy: String,
}

#[derive(Serialize)]
struct MonitorsView<'a> {
    region: &'a str,
    checkers: usize,
}

/// Hides a password in a proxy URL such as `http://user:pass@host:3128`.
fn mask_proxy(proxy: &str) -> String {
    match (proxy.find("://"), proxy.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://********{}", &proxy[..scheme_end], &proxy[at..])
        }
        _ => proxy.to_string(),
    }
}

/// A size such as `"512MB"`, `"2GiB"` or `"1048576"`; empty or `"0"` means no limit.
fn size(key: &'static str, value: Option<String>) -> Result<Option<u64>, ConfigError> {
    let text = value.unwrap_or_default();
    let t = text.trim();
    if t.is_empty() || t == "0" {
        return Ok(None);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let multiplier: Option<u64> = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => Some(1),
        "KB" => Some(1000),
        "MB" => Some(1000 * 1000),
        "GB" => Some(1000 * 1000 * 1000),
        "KIB" => Some(1 << 10),
        "MIB" => Some(1 << 20),
        "GIB" => Some(1 << 30),
        _ => None,
    };
    match multiplier.and_then(|m| digits.parse::<u64>().ok()?.checked_mul(m)) {
        Some(bytes) if bytes >= 65536 => Ok(Some(bytes)),
        _ => Err(ConfigError::Invalid {
            key,
            expected: format!(
                "a size of at least 64KiB such as \"512MB\" or \"2GiB\", or \"\" for no limit, got {text:?}"
            ),
        }),
    }
}

/// A file that holds `server.admin_token` must be readable by its owner only: whoever reads
/// the token is the admin. The packaged file is a conffile installed 0644, so the token
/// belongs in the environment file the unit reads (`/etc/statussentry/env`, 0600) instead.
fn file_warnings(path: &Path, raw: &RawConfig) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let holds_token = raw
        .server
        .admin_token
        .as_deref()
        .is_some_and(|t| !t.is_empty());
    let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777);
    match mode {
        Ok(mode) if holds_token && mode & 0o077 != 0 => vec![format!(
            "{} holds server.admin_token and others may read it (mode {mode:04o}): `chmod 600` it, \
             or put STATUSSENTRY_ADMIN_TOKEN in the unit's environment file instead",
            path.display()
        )],
        _ => Vec::new(),
    }
}

fn duration(
    key: &'static str,
    value: Option<String>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let text = value.unwrap_or_else(|| default.to_string());
    humantime::parse_duration(text.trim()).map_err(|_| ConfigError::Invalid {
        key,
        expected: format!("a duration such as \"250ms\", \"5s\" or \"1h\", got {text:?}"),
    })
}

#[cfg(test)]
mod tests;
