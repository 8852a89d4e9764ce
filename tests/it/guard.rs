//! Issue 16, items 4 and 6 to 9, against the real binary: a stranger's wrong tokens never lock
//! out the right one; DNS failures are named `dns`; IPv4 in `inet_aton`'s other spellings is
//! refused when saved; the database and its backups are 0600 whatever the umask; `sign` and
//! `verify` take the secret from a file or the environment; the operator's tools act only on
//! an existing database and say when a reset changes nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::harness::*;

fn with_token(api: &Api, token: Option<&str>) -> HttpReply {
    let header = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = header
        .as_deref()
        .map(|h| vec![("Authorization", h)])
        .unwrap_or_default();
    api.raw("GET", "/api/v1/endpoints", &headers, None)
}

fn retry_after(reply: &HttpReply) -> u64 {
    reply
        .header("Retry-After")
        .unwrap_or_else(|| panic!("a 429 says when to come back: {:?}", reply.headers))
        .parse()
        .expect("Retry-After in seconds")
}

// ---------------------------------------------------------------------------------------
// Item 4: failures are limited, the correct token always passes

#[test]
fn a_flood_of_wrong_tokens_never_locks_out_the_correct_one() {
    let server = Server::start("");
    let api = server.client();
    // The limit is 10 wrong tokens a minute per address; everything here comes from 127.0.0.1,
    // as it would through a reverse proxy or an SSH tunnel.
    for i in 0..10 {
        let reply = with_token(&api, Some(&format!("wrong-token-{i}")));
        assert_eq!(reply.status, 401, "guess {i}: {}", reply.text());
        assert_eq!(error_parts(&reply.json()).0, "unauthorized");
        // The correct token is served between the guesses too.
        assert_eq!(with_token(&api, Some(TOKEN)).status, 200, "after guess {i}");
    }
    // Past the limit: wrong and missing tokens get 429 with Retry-After, not 401.
    for token in [Some("wrong-token-11"), None, Some(&*"x".repeat(300))] {
        let reply = with_token(&api, token);
        assert_eq!(reply.status, 429, "{token:?}: {}", reply.text());
        assert_eq!(error_parts(&reply.json()).0, "rate_limited");
        let secs = retry_after(&reply);
        assert!((1..=60).contains(&secs), "Retry-After {secs}");
    }
    // The correct token still passes, for reads and writes, and however it is spelt.
    for _ in 0..3 {
        let reply = with_token(&api, Some(TOKEN));
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let created = server.expect(
        "POST",
        "/api/v1/endpoints",
        Some(json!({"url": "http://127.0.0.1:9/", "enabled": false})),
        201,
    );
    assert!(is_id(s(&created, "id"), "ep_"), "{created}");
    let lower = format!("bearer {TOKEN}");
    let reply = api.raw(
        "GET",
        "/api/v1/endpoints",
        &[("Authorization", lower.as_str())],
        None,
    );
    assert_eq!(reply.status, 200);
    // Routes without a token are not limited.
    assert_eq!(api.raw("GET", "/healthz", &[], None).status, 200);
}

// ---------------------------------------------------------------------------------------
// Item 7: IPv4 in the resolver's other spellings is refused at creation

#[test]
fn ipv4_in_inet_aton_spellings_is_refused_when_saved() {
    let server = Server::start("");
    // All 169.254.169.254 (cloud metadata), and 0.0.0.0.
    let refused = [
        "http://2852039166/",
        "http://0xa9fea9fe/",
        "http://0251.0376.0251.0376/",
        "http://169.254.43518/",
        "http://0/",
    ];
    for url in refused {
        let (status, body) = server.api("POST", "/api/v1/endpoints", Some(json!({"url": url})));
        assert_eq!(status, 400, "endpoint {url}: {body}");
        assert_eq!(
            error_parts(&body),
            ("invalid_field".into(), Some("url".into()))
        );
        let (status, body) = server.api(
            "POST",
            "/api/v1/monitors",
            Some(json!({"name": "m", "url": url, "interval_secs": 60, "timeout_ms": 1000})),
        );
        assert_eq!(status, 400, "monitor {url}: {body}");
        assert_eq!(
            error_parts(&body),
            ("invalid_field".into(), Some("url".into()))
        );
    }
    // Nothing was stored, and names and ordinary addresses are still taken.
    assert_eq!(
        server.expect("GET", "/api/v1/endpoints", None, 200)["data"],
        json!([])
    );
    for url in ["http://127.1:9/", "http://1.example/", "http://0x.example/"] {
        server.expect(
            "POST",
            "/api/v1/endpoints",
            Some(json!({"url": url, "enabled": false})),
            201,
        );
    }
}

// ---------------------------------------------------------------------------------------
// Item 6: DNS failures are recorded and counted as `dns`

/// A name that cannot resolve and whose lookup never leaves the machine: `.invalid` never
/// resolves (RFC 6761), and a label longer than 63 bytes cannot be put in a DNS query, so
/// glibc's stub resolver fails before it sends one (checked with strace: no packet), and
/// systemd-resolved refuses it locally. `nonexistent.invalid` alone would be sent to the
/// configured nameserver.
fn unresolvable_url() -> String {
    format!("http://{}.invalid/", "x".repeat(70))
}

fn delivery_outcome(server: &Server, outcome: &str) -> f64 {
    let text = server.client().raw("GET", "/metrics", &[], None).text();
    let series = format!("statussentry_delivery_requests_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn dns_failures_are_recorded_as_dns_for_deliveries_and_checks() {
    let server = Server::start(
        "[delivery]\nbatch_window = \"0ms\"\ninitial_backoff = \"100ms\"\nmax_backoff = \"200ms\"\n",
    );
    let url = unresolvable_url();
    let endpoint = create_endpoint(&server, json!({"url": url}));
    let endpoint_id = s(&endpoint, "id").to_string();
    let event = publish(&server, "incident.created", incident("dns"));
    let event_id = s(&event, "id").to_string();
    let message = wait_for(
        Duration::from_secs(30),
        "two attempts",
        || match message_for(&server, &event_id, &endpoint_id) {
            Some(m) if m["attempts"].as_array().is_some_and(|a| a.len() >= 2) => Ok(m),
            other => Err(format!("{other:?}")),
        },
    );
    for attempt in message["attempts"].as_array().into_iter().flatten() {
        assert_eq!(attempt["error"], "dns", "{attempt}");
        assert_eq!(attempt["status_code"], Value::Null, "{attempt}");
    }
    assert_eq!(
        message["status"], "pending",
        "a DNS failure is retried: {message}"
    );
    wait_until(Duration::from_secs(10), "dns counted in /metrics", || {
        delivery_outcome(&server, "dns") >= 2.0
    });
    assert_eq!(
        delivery_outcome(&server, "connect"),
        0.0,
        "not counted as a connection failure"
    );

    let monitor = server.expect(
        "POST",
        "/api/v1/monitors",
        Some(json!({"name": "unresolvable", "url": url, "interval_secs": 1, "timeout_ms": 900})),
        201,
    );
    let path = format!("/api/v1/monitors/{}/checks", s(&monitor, "id"));
    let checks = wait_for(Duration::from_secs(20), "a check", || {
        let checks = list_all(&server, &path, 500);
        if checks.is_empty() {
            Err("no check yet".into())
        } else {
            Ok(checks)
        }
    });
    assert_eq!(checks[0]["ok"], false, "{checks:?}");
    assert_eq!(checks[0]["error"], "dns", "{checks:?}");
}

// ---------------------------------------------------------------------------------------
// Item 8: secrets on disk are 0600, and off the command line

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// `statussentry ARGS` under `umask 022`, which would make files 0644, in `dir`.
fn under_umask_022(dir: &Path, args: &[&str]) -> Command {
    // The harness's command, for its environment.
    let harness = command(dir);
    let mut program = Command::new("sh");
    program
        .current_dir(dir)
        .arg("-c")
        .arg("umask 022 && exec \"$@\"")
        .arg("sh")
        .arg(BIN)
        .args(args);
    for (key, value) in harness.get_envs() {
        match value {
            Some(v) => program.env(key, v),
            None => program.env_remove(key),
        };
    }
    program.stdin(Stdio::null());
    program
}

#[test]
fn the_database_and_backups_are_0600_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let db = dir.path().join("db.sqlite");
    let mut child = under_umask_022(dir.path(), &["serve", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let files = ["db.sqlite", "db.sqlite-wal", "db.sqlite-shm"];
    let paths: Vec<_> = files.iter().map(|f| dir.path().join(f)).collect();
    let exists = || paths.iter().all(|p| p.exists());
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while !exists() && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    let modes: Vec<(String, u32)> = paths
        .iter()
        .filter(|p| p.exists())
        .map(|p| (p.display().to_string(), mode(p)))
        .collect();
    // A backup of the live database, under the same umask.
    let dest = dir.path().join("backup.db");
    let backup = run_with_deadline(
        &mut under_umask_022(
            dir.path(),
            &[
                "backup",
                dest.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
            ],
        ),
        Duration::from_secs(60),
    );
    sigterm(child.id());
    let _ = wait_exit(&mut child, STOP_DEADLINE);
    let _ = child.kill();
    assert_eq!(
        modes.len(),
        3,
        "the database and its -wal and -shm: {modes:?}"
    );
    for (path, m) in &modes {
        assert_eq!(*m, 0o600, "{path} is {m:o}");
    }
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    assert_eq!(mode(&dest), 0o600, "the backup is {:o}", mode(&dest));
    assert!(db.exists());
}

fn tool(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> (i32, String, String) {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.env_remove("STATUSSENTRY_SECRET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A tool that refuses its arguments may exit before reading its input.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn sign_and_verify_take_the_secret_from_a_file_or_the_environment() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let body = br#"{"id":"evt_0123456789abcdef","type":"incident.created"}"#;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    let file = file.to_str().unwrap();
    let t = unix_now().to_string();
    let want = format!("t={t},v1={}", stripe_v1(secret, t.parse().unwrap(), body));

    // (arguments, environment)
    type Row<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);
    let rows: [Row; 3] = [
        (&["sign", "--secret", secret], &[]),
        (&["sign", "--secret-file", file], &[]),
        (&["sign"], &[("STATUSSENTRY_SECRET", secret)]),
    ];
    for (args, env) in rows {
        let mut args = args.to_vec();
        args.extend(["--timestamp", &t]);
        let (code, out, err) = tool(&args, env, body);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert_eq!(out.trim(), want, "{args:?}");
    }
    for (args, env) in [
        (vec!["--secret-file", file], vec![]),
        (vec![], vec![("STATUSSENTRY_SECRET", secret)]),
    ] {
        let mut full = vec!["verify", "--header", &want];
        full.extend(args);
        let (code, out, err) = tool(&full, &env, body);
        assert_eq!((code, out.trim()), (0, "valid"), "{full:?}: {err}");
    }
    // A missing file, no secret at all, or two of them are usage errors.
    let missing = dir.path().join("nope");
    let missing = missing.to_str().unwrap();
    for args in [
        vec!["sign", "--secret-file", missing],
        vec!["sign"],
        vec!["verify", "--header", &want],
        vec!["sign", "--secret", secret, "--secret-file", file],
    ] {
        let (code, _, err) = tool(&args, &[], body);
        assert_eq!(code, 2, "{args:?}: {err}");
    }
    let (_, _, err) = tool(&["sign", "--secret-file", missing], &[], body);
    assert!(err.contains(missing), "the error names the file: {err}");
    // --help says where the secret may come from.
    let (code, help, _) = tool(&["--help"], &[], b"");
    assert_eq!(code, 0);
    for needle in ["--secret-file", "STATUSSENTRY_SECRET", "ps"] {
        assert!(help.contains(needle), "--help mentions {needle}: {help}");
    }
}

// ---------------------------------------------------------------------------------------
// Item 9: the tools act only on an existing database, and say when a reset changes nothing

/// A config whose `storage.path` is relative, as in the example file; `extra` adds to
/// `[server]`.
fn relative_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let config = dir.join("statussentry.toml");
    std::fs::write(
        &config,
        format!("[server]\nlisten = \"127.0.0.1:0\"\n{extra}\n[storage]\npath = \"db.sqlite\"\n"),
    )
    .unwrap();
    config
}

/// `admin-token --reset` run from `home` with `config`, `STATE_DIRECTORY` set to `state` when
/// given, and the admin token in the environment only when `env_token` is given.
fn reset(
    home: &Path,
    config: &Path,
    state: Option<&Path>,
    env_token: Option<&str>,
) -> std::process::Output {
    let mut cmd = command(home);
    cmd.env_remove("STATUSSENTRY_ADMIN_TOKEN");
    if let Some(t) = env_token {
        cmd.env("STATUSSENTRY_ADMIN_TOKEN", t);
    }
    if let Some(dir) = state {
        cmd.env("STATE_DIRECTORY", dir);
    }
    cmd.args(["admin-token", "--reset", "--config"]).arg(config);
    run_with_deadline(&mut cmd, Duration::from_secs(30))
}

fn stored_token_hash(db: &Path) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(
        "SELECT value FROM settings WHERE key = 'admin_token_sha256'",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn tools_refuse_a_missing_database_with_the_path_they_tried() {
    let etc = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let config = relative_config(etc.path(), "");
    let tried = home.path().join("db.sqlite");
    let dest = home.path().join("copy.db");
    let backup = |state: Option<&Path>| {
        let mut cmd = command(home.path());
        if let Some(dir) = state {
            cmd.env("STATE_DIRECTORY", dir);
        }
        cmd.arg("backup").arg(&dest).arg("--config").arg(&config);
        run_with_deadline(&mut cmd, Duration::from_secs(30))
    };
    for (what, out) in [
        (
            "admin-token --reset",
            reset(home.path(), &config, None, None),
        ),
        ("backup", backup(None)),
    ] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(
            stderr.contains(&tried.display().to_string()),
            "{what} names the path it tried: {stderr}"
        );
        assert!(stderr.contains("STATE_DIRECTORY"), "and says how: {stderr}");
        assert!(out.stdout.is_empty(), "{what} printed {:?}", out.stdout);
        assert!(!tried.exists(), "{what} made a database");
        assert!(!dest.exists(), "{what} made a backup");
    }
    // An empty file is no database either.
    std::fs::write(&tried, b"").unwrap();
    let out = reset(home.path(), &config, None, None);
    assert_eq!(out.status.code(), Some(1));
    std::fs::remove_file(&tried).unwrap();

    // With STATE_DIRECTORY, as systemd sets it, the same relative path finds the service's
    // database.
    let mut server = Server::start("");
    let db = server.db_path();
    let state = db.parent().unwrap().to_path_buf();
    let status = server.stop();
    assert!(status.success());
    let out = reset(home.path(), &config, Some(&state), None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(token.starts_with("sstok_"), "{token}");
    assert_eq!(
        stored_token_hash(&db),
        hex(&Sha256::digest(token.as_bytes()))
    );
    let out = backup(Some(&state));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dest.exists());
    assert!(!tried.exists());
}

#[test]
fn a_reset_warns_when_a_configured_token_overrides_it() {
    let mut server = Server::start("");
    let db = server.db_path();
    let state = db.parent().unwrap().to_path_buf();
    assert!(server.stop().success());
    let home = tempfile::tempdir().unwrap();

    let plain = relative_config(home.path(), "");
    let out = reset(home.path(), &plain, Some(&state), Some(TOKEN));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains("STATUSSENTRY_ADMIN_TOKEN"),
        "the environment's token overrides the reset: {stderr}"
    );
    assert!(stderr.contains("changes nothing"), "{stderr}");

    let configured = relative_config(home.path(), "admin_token = \"a-configured-admin-token\"");
    let out = reset(home.path(), &configured, Some(&state), None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains("server.admin_token"),
        "the configured token overrides the reset: {stderr}"
    );
}
