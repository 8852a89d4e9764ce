//! Unit tests of `config`: the embedded defaults, the refusals and what `check-config` prints.

use super::*;

fn load(text: &str) -> Result<Config, String> {
    Config::from_str(text, &Env::default()).map_err(|e| e.to_string())
}

#[test]
fn embedded_defaults_match_the_spec() {
    let c = load("").unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.server.max_body_bytes, 262_144);
    assert_eq!(c.server.shutdown_timeout, Duration::from_secs(10));
    assert_eq!(c.server.max_connections, 512);
    assert_eq!(c.server.header_timeout, Duration::from_secs(10));
    assert!(c.server.allowed_hosts.is_empty());
    assert_eq!(c.storage.path, PathBuf::from("statussentry.db"));
    assert_eq!(c.storage.retention_days, 30);
    assert!(c.storage.checkpoints);
    assert!(
        !load("[storage]\ncheckpoints = false")
            .unwrap()
            .storage
            .checkpoints
    );
    assert_eq!(c.delivery.workers, 16);
    assert_eq!(c.delivery.timeout, Duration::from_secs(10));
    assert_eq!(c.delivery.connect_timeout, Duration::from_secs(5));
    assert_eq!(c.delivery.initial_backoff, Duration::from_secs(5));
    assert_eq!(c.delivery.max_backoff, Duration::from_secs(3600));
    assert_eq!(c.delivery.retry_for, Duration::from_secs(72 * 3600));
    assert_eq!(c.delivery.disable_after, Duration::from_secs(120 * 3600));
    assert_eq!(c.delivery.batch_max, 100);
    assert_eq!(c.delivery.batch_window, Duration::from_secs(5));
    assert_eq!(c.delivery.recovery_probe, Duration::from_secs(3600));
    assert_eq!(c.delivery.recovery_for, Duration::from_secs(30 * 24 * 3600));
    assert!(c.network.policy.allow_loopback && c.network.policy.allow_private);
    assert_eq!(c.monitors.region, "local");
    assert_eq!(c.monitors.checkers, 4);
}

#[test]
fn refusals_name_the_key() {
    let rows = [
        ("[server]\nlisten = \"nowhere\"", "server.listen"),
        ("[server]\nbogus = 1", "bogus"),
        ("[nope]\nx = 1", "nope"),
        ("[delivery]\ntimeout = \"soon\"", "delivery.timeout"),
        ("[delivery]\ntimeout = 5", "timeout"),
        ("[delivery]\nworkers = 0", "delivery.workers"),
        ("[delivery]\nbatch_max = 0", "delivery.batch_max"),
        (
            "[delivery]\nrecovery_probe = \"0s\"",
            "delivery.recovery_probe",
        ),
        (
            "[delivery]\nrecovery_for = \"a while\"",
            "delivery.recovery_for",
        ),
        (
            "[delivery]\ninitial_backoff = \"2h\"",
            "delivery.max_backoff",
        ),
        ("[storage]\nretention_days = 0", "storage.retention_days"),
        ("[storage]\nmax_size = \"lots\"", "storage.max_size"),
        ("[storage]\nmax_size = \"10\"", "storage.max_size"),
        ("[storage]\nmax_size = \"5TB\"", "storage.max_size"),
        ("[server]\nadmin_token = \"short\"", "server.admin_token"),
        ("[server]\nmax_connections = 0", "server.max_connections"),
        (
            "[server]\nmax_connections = 100000",
            "server.max_connections",
        ),
        ("[server]\nheader_timeout = \"0s\"", "server.header_timeout"),
        ("[server]\nheader_timeout = \"1h\"", "server.header_timeout"),
        (
            "[server]\nallowed_hosts = [\"http://x/\"]",
            "server.allowed_hosts",
        ),
        ("[server]\nallowed_hosts = [\"\"]", "server.allowed_hosts"),
        ("[network]\ndeny = [\"10.0.0.0/99\"]", "network.deny"),
        ("[network]\nallow = [\"nope\"]", "network.allow"),
        ("[network]\nproxy = \"::not a url::\"", "network.proxy"),
        (
            "[network]\nproxy = \"socks5://proxy:1080\"",
            "network.proxy",
        ),
    ];
    for (text, key) in rows {
        let err = load(text).expect_err(text);
        assert!(
            err.contains(key),
            "{text:?} gave {err:?}, expected it to name {key}"
        );
    }
}

#[test]
fn environment_overrides_the_file() {
    let env = Env {
        listen: Some("127.0.0.1:0".into()),
        admin_token: Some("from-the-environment".into()),
        db: Some("other.db".into()),
        state_directory: Some("/var/lib/statussentry".into()),
    };
    let c = Config::from_str(
        "[server]\nlisten = \"0.0.0.0:1\"\n[storage]\npath = \"x.db\"",
        &env,
    )
    .unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:0");
    assert_eq!(c.server.admin_token, "from-the-environment");
    assert_eq!(
        c.storage.path,
        PathBuf::from("/var/lib/statussentry/other.db")
    );
}

#[test]
fn sizes_parse() {
    let rows = [
        ("", None),
        ("0", None),
        ("512MB", Some(512_000_000)),
        ("2GiB", Some(2 << 30)),
        ("65536", Some(65536)),
    ];
    for (text, want) in rows {
        assert_eq!(size("k", Some(text.into())).unwrap(), want, "{text}");
    }
}

#[test]
fn recovery_settings_parse_render_and_turn_off() {
    let c = load("[delivery]\nrecovery_probe = \"250ms\"\nrecovery_for = \"2s\"").unwrap();
    assert_eq!(c.delivery.recovery_probe, Duration::from_millis(250));
    assert_eq!(c.delivery.recovery_for, Duration::from_secs(2));
    let text = c.render();
    assert!(text.contains("recovery_probe = \"250ms\"\n"), "{text}");
    assert!(text.contains("recovery_for = \"2s\"\n"), "{text}");
    assert_eq!(
        load(&text).unwrap().delivery.recovery_for,
        Duration::from_secs(2)
    );
    // Zero turns probing off; it is not refused.
    let off = load("[delivery]\nrecovery_for = \"0s\"").unwrap();
    assert!(off.delivery.recovery_for.is_zero());
}

#[test]
fn millisecond_durations_parse() {
    let c = load("[delivery]\nbatch_window = \"0ms\"\ninitial_backoff = \"250ms\"").unwrap();
    assert_eq!(c.delivery.batch_window, Duration::ZERO);
    assert_eq!(c.delivery.initial_backoff, Duration::from_millis(250));
}

#[test]
fn server_limits_parse_and_render() {
    let c = load(
        "[server]\nmax_connections = 8\nheader_timeout = \"250ms\"\nallowed_hosts = [\"Status.Example.com\", \"localhost:8080\"]",
    )
    .unwrap();
    assert_eq!(c.server.max_connections, 8);
    assert_eq!(c.server.header_timeout, Duration::from_millis(250));
    assert_eq!(
        c.server.allowed_hosts,
        ["status.example.com", "localhost:8080"]
    );
    let text = c.render();
    assert!(text.contains("max_connections = 8\n"), "{text}");
    assert!(text.contains("header_timeout = \"250ms\"\n"), "{text}");
    assert!(
        text.contains("allowed_hosts = [\"status.example.com\", \"localhost:8080\"]\n"),
        "{text}"
    );
    // What check-config prints is itself a valid file with the same settings.
    let again = load(&text).unwrap();
    assert_eq!(again.server.allowed_hosts, c.server.allowed_hosts);
}

#[test]
fn admin_tokens_are_16_to_256_characters() {
    for (len, ok) in [(15, false), (16, true), (256, true), (257, false)] {
        let text = format!("[server]\nadmin_token = \"{}\"", "t".repeat(len));
        assert_eq!(load(&text).is_ok(), ok, "{len} characters");
    }
}

#[test]
fn render_masks_secrets() {
    let c = load("[server]\nadmin_token = \"a-long-enough-token\"\n[network]\nproxy = \"http://u:pw@proxy:3128\"").unwrap();
    let text = c.render();
    assert!(!text.contains("a-long-enough-token"));
    assert!(!text.contains("pw@"));
    assert!(text.contains("proxy:3128"));
}

#[test]
fn the_example_file_passes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("statussentry.toml.example");
    Config::load(Some(&path), &Env::default()).unwrap();
}

/// A file holding the admin token that others may read is named in a warning; the same file
/// readable by its owner only, or one without a token, is not.
#[test]
fn a_token_in_a_file_others_may_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("statussentry.toml");
    let mode =
        |m: u32| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).unwrap();
    let warnings = || Config::load(Some(&path), &Env::default()).unwrap().warnings;

    std::fs::write(
        &path,
        "[server]\nadmin_token = \"0123456789abcdef0123456789abcdef\"\n",
    )
    .unwrap();
    mode(0o644);
    let w = warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("holds server.admin_token") && w[0].contains("0644"),
        "{w:?}"
    );
    mode(0o600);
    assert!(warnings().is_empty());

    std::fs::write(&path, "[server]\nadmin_token = \"\"\n").unwrap();
    mode(0o644);
    assert!(warnings().is_empty(), "no token, nothing to hide");
}
