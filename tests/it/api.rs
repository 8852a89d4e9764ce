//! The command line, the configuration and the admin API (SPEC 2, 3 on secrets, 5 and 8),
//! checked from outside the process.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::harness::*;

const CLI_DEADLINE: Duration = Duration::from_secs(20);

/// A URL that accepts nothing, for endpoints that must never receive anything in these tests.
const DEAD_URL: &str = "http://127.0.0.1:9/hook";

// ---------------------------------------------------------------------------------------
// Command line and configuration

#[test]
fn config_rejections_name_the_offending_key() {
    // (what, extra toml, text the error must contain)
    let rows: &[(&str, &str, &str)] = &[
        ("unknown key", "[delivery]\nbogus_knob = 1\n", "bogus_knob"),
        ("unknown section", "[nonsense]\nx = 1\n", "nonsense"),
        (
            "unknown server key",
            "[server]\nlisten_twice = true\n",
            "listen_twice",
        ),
        (
            "bad duration",
            "[delivery]\ninitial_backoff = \"5 parsecs\"\n",
            "initial_backoff",
        ),
        (
            "duration as a number",
            "[delivery]\ntimeout = 10\n",
            "timeout",
        ),
        (
            "bad listen address",
            "[server]\nlisten = \"not an address\"\n",
            "listen",
        ),
        (
            "wrong type",
            "[server]\nmax_body_bytes = \"big\"\n",
            "max_body_bytes",
        ),
        (
            "negative count",
            "[storage]\nretention_days = -1\n",
            "retention_days",
        ),
        ("not TOML", "[delivery\nworkers = ", ""),
    ];
    for (what, extra, needle) in rows {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), extra);
        for subcommand in ["check-config", "serve"] {
            let out = run_with_deadline(
                command(dir.path())
                    .arg(subcommand)
                    .arg("--config")
                    .arg(&config),
                CLI_DEADLINE,
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                !out.status.success() && out.status.code().is_some(),
                "{what}: `{subcommand}` must exit non-zero, got {:?}; stderr:\n{stderr}",
                out.status
            );
            assert!(
                stderr.contains(needle),
                "{what}: `{subcommand}` error must name {needle:?}; stderr:\n{stderr}\nstdout:\n{stdout}"
            );
        }
    }
}

#[test]
fn check_config_accepts_the_shipped_example() {
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("statussentry.toml.example");
    assert!(
        example.exists(),
        "{} must exist (SPEC 8)",
        example.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let out = run_with_deadline(
        command(dir.path())
            .arg("check-config")
            .arg("--config")
            .arg(&example),
        CLI_DEADLINE,
    );
    assert!(
        out.status.success(),
        "check-config on the example exited {:?}; stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_config_prints_effective_settings_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let secret_token = "it-config-token-must-not-be-printed";
    let config = write_config(
        dir.path(),
        &format!(
            "[server]\nadmin_token = \"{secret_token}\"\n[delivery]\ninitial_backoff = \"250ms\"\n"
        ),
    );
    let out = run_with_deadline(
        command(dir.path())
            .env_remove("STATUSSENTRY_ADMIN_TOKEN")
            .arg("check-config")
            .arg("--config")
            .arg(&config),
        CLI_DEADLINE,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "check-config exited {:?}; stderr:\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("initial_backoff"),
        "effective settings must be printed; stdout:\n{stdout}"
    );
    assert!(
        stdout.contains("250ms"),
        "the configured value must show; stdout:\n{stdout}"
    );
    assert!(
        !stdout.contains(secret_token) && !stderr.contains(secret_token),
        "the admin token must be masked; stdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

#[test]
fn command_line_usage() {
    let dir = tempfile::tempdir().unwrap();
    // Guard against a binary that starts serving on an argument it should refuse.
    let run = |args: &[&str]| {
        run_with_deadline(
            command(dir.path())
                .env("STATUSSENTRY_LISTEN", "127.0.0.1:0")
                .env("STATUSSENTRY_DB", dir.path().join("cli.sqlite"))
                .args(args),
            CLI_DEADLINE,
        )
    };

    for args in [
        &["--bogus"][..],
        &["frobnicate"],
        &["serve", "--nope"],
        &["check-config", "--config"],
    ] {
        let out = run(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?} is a usage error (exit 2); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.stderr.is_empty(),
            "{args:?}: a usage error says what is wrong on stderr"
        );
    }

    let help = run(&["--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success(), "--help exited {:?}", help.status);
    for subcommand in ["serve", "check-config", "admin-token"] {
        assert!(
            text.contains(subcommand),
            "--help must list `{subcommand}`:\n{text}"
        );
    }

    let version = run(&["--version"]);
    let text = String::from_utf8_lossy(&version.stdout);
    assert!(
        version.status.success(),
        "--version exited {:?}",
        version.status
    );
    assert!(
        text.contains(env!("CARGO_PKG_VERSION")),
        "--version must print the version: {text}"
    );
}

// ---------------------------------------------------------------------------------------
// Auth

#[test]
fn bearer_auth_is_checked_before_routing() {
    let server = Server::start("");
    let api = server.client();
    let good = format!("Bearer {TOKEN}");
    let lower = format!("bearer {TOKEN}");
    let upper = format!("BEARER {TOKEN}");
    let longer = format!("Bearer {TOKEN}x");
    let shorter = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    let basic = format!("Basic {TOKEN}");
    let bare = TOKEN.to_string();
    // (path, Authorization header, expected status)
    let rows: Vec<(&str, Option<&str>, u16)> = vec![
        ("/api/v1/endpoints", None, 401),
        ("/api/v1/endpoints", Some("Bearer wrong-token"), 401),
        ("/api/v1/endpoints", Some(&longer), 401),
        ("/api/v1/endpoints", Some(&shorter), 401),
        ("/api/v1/endpoints", Some(&basic), 401),
        ("/api/v1/endpoints", Some(&bare), 401),
        ("/api/v1/endpoints", Some("Bearer "), 401),
        ("/api/v1/endpoints", Some(&good), 200),
        ("/api/v1/endpoints", Some(&lower), 200),
        ("/api/v1/endpoints", Some(&upper), 200),
        ("/api/v1/events", None, 401),
        ("/api/v1/messages", None, 401),
        ("/api/v1/no-such-route", None, 401),
        ("/api/v1/no-such-route", Some("Bearer wrong-token"), 401),
        ("/api/v1/no-such-route", Some(&good), 404),
        ("/api/v1/endpoints/ep_0000000000000000/secret", None, 401),
    ];
    for (path, auth, status) in rows {
        let headers: Vec<(&str, &str)> =
            auth.map(|a| vec![("Authorization", a)]).unwrap_or_default();
        let reply = api.raw("GET", path, &headers, None);
        assert_eq!(
            reply.status,
            status,
            "GET {path} with {auth:?}: {}",
            reply.text()
        );
        let (code, _) = error_parts_or_none(&reply.json(), status);
        match status {
            401 => assert_eq!(code.as_deref(), Some("unauthorized")),
            404 => assert_eq!(code.as_deref(), Some("not_found")),
            _ => {}
        }
    }

    // A refused request changes nothing, even when its body is valid.
    let reply = api.raw(
        "POST",
        "/api/v1/endpoints",
        &[("Content-Type", "application/json")],
        Some(json!({"url": DEAD_URL}).to_string().as_bytes()),
    );
    assert_eq!(reply.status, 401);
    let list = server.expect("GET", "/api/v1/endpoints", None, 200);
    assert_eq!(
        list["data"],
        json!([]),
        "an unauthorised create must not write"
    );

    // Health needs no token.
    let health = api.raw("GET", "/healthz", &[], None);
    assert_eq!(health.status, 200);
    assert_eq!(health.json(), json!({"status": "ok"}));

    assert!(
        !server.log().contains(TOKEN),
        "the admin token must never be logged"
    );
}

fn error_parts_or_none(body: &Value, status: u16) -> (Option<String>, Option<String>) {
    if status < 400 {
        return (None, None);
    }
    let (code, field) = error_parts(body);
    (Some(code), field)
}

// ---------------------------------------------------------------------------------------
// Endpoints

fn assert_endpoint_shape(endpoint: &Value) {
    let expected = [
        "id",
        "url",
        "description",
        "event_types",
        "enabled",
        "disabled_reason",
        "batch_max",
        "batch_window_ms",
        "backoff_until",
        "created_at",
        "counts",
        "last_attempt",
    ];
    for key in expected {
        assert!(
            endpoint.get(key).is_some(),
            "endpoint lacks `{key}`: {endpoint}"
        );
    }
    for key in ["pending", "parked", "delivered", "failed"] {
        assert!(
            endpoint["counts"][key].is_u64(),
            "counts.{key} must be a number: {endpoint}"
        );
    }
    assert!(
        is_id(s(endpoint, "id"), "ep_"),
        "endpoint id format: {endpoint}"
    );
    assert!(
        is_rfc3339_seconds_z(s(endpoint, "created_at")),
        "created_at format: {endpoint}"
    );
}

fn assert_secret_format(secret: &str) {
    let encoded = secret
        .strip_prefix("whsec_")
        .unwrap_or_else(|| panic!("secret must start with whsec_: {secret}"));
    assert_eq!(
        encoded.len(),
        32,
        "32 base64 characters after whsec_: {secret}"
    );
    assert!(
        encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'),
        "standard base64 without padding: {secret}"
    );
    assert_eq!(
        decode_base64_loose(encoded).map(|k| k.len()),
        Some(24),
        "24 random bytes: {secret}"
    );
}

#[test]
fn endpoint_lifecycle() {
    let server = Server::start("[delivery]\nbatch_max = 7\nbatch_window = \"1500ms\"\n");

    let created = create_endpoint(
        &server,
        json!({"url": "http://127.0.0.1:9/hooks/a?x=1", "description": "ops pager", "event_types": ["incident.created"]}),
    );
    assert_endpoint_shape(&created);
    let id = s(&created, "id").to_string();
    let secret = s(&created, "secret").to_string();
    assert_secret_format(&secret);
    assert_eq!(created["url"], "http://127.0.0.1:9/hooks/a?x=1");
    assert_eq!(created["description"], "ops pager");
    assert_eq!(created["event_types"], json!(["incident.created"]));
    assert_eq!(created["enabled"], true);
    assert_eq!(created["disabled_reason"], Value::Null);
    assert_eq!(created["backoff_until"], Value::Null);
    assert_eq!(created["last_attempt"], Value::Null);
    assert_eq!(
        created["counts"],
        json!({"pending": 0, "parked": 0, "delivered": 0, "failed": 0})
    );
    assert_eq!(
        created["batch_max"], 7,
        "new endpoints take delivery.batch_max"
    );
    assert_eq!(
        created["batch_window_ms"], 1500,
        "new endpoints take delivery.batch_window"
    );

    // GET shows the same object, without the secret.
    let got = server.expect("GET", &format!("/api/v1/endpoints/{id}"), None, 200);
    assert_endpoint_shape(&got);
    assert!(
        got.get("secret").is_none(),
        "GET must not show the secret: {got}"
    );
    let mut without_secret = created.clone();
    without_secret.as_object_mut().unwrap().remove("secret");
    assert_eq!(got, without_secret);

    // The list holds it, also without the secret.
    let list = server.expect("GET", "/api/v1/endpoints", None, 200);
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1), "{list}");
    assert!(
        list["data"][0].get("secret").is_none(),
        "lists must not show secrets: {list}"
    );
    assert_eq!(list["next_cursor"], Value::Null);

    // Reveal.
    let revealed = server.expect("GET", &format!("/api/v1/endpoints/{id}/secret"), None, 200);
    assert_eq!(revealed, json!({"secret": secret}));

    // PATCH changes what it names and nothing else.
    let patched = server.expect(
        "PATCH",
        &format!("/api/v1/endpoints/{id}"),
        Some(json!({"description": "renamed", "batch_max": 5, "batch_window_ms": 250, "event_types": []})),
        200,
    );
    assert_endpoint_shape(&patched);
    assert_eq!(patched["description"], "renamed");
    assert_eq!(patched["batch_max"], 5);
    assert_eq!(patched["batch_window_ms"], 250);
    assert!(
        patched["event_types"] == json!([]) || patched["event_types"].is_null(),
        "empty filter means all: {patched}"
    );
    assert_eq!(patched["url"], created["url"]);
    assert!(
        patched.get("secret").is_none(),
        "PATCH must not show the secret: {patched}"
    );
    assert_eq!(
        server.expect("GET", &format!("/api/v1/endpoints/{id}"), None, 200),
        patched
    );

    let disabled = server.expect(
        "PATCH",
        &format!("/api/v1/endpoints/{id}"),
        Some(json!({"enabled": false})),
        200,
    );
    assert_eq!(disabled["enabled"], false);
    let enabled = server.expect(
        "PATCH",
        &format!("/api/v1/endpoints/{id}"),
        Some(json!({"enabled": true})),
        200,
    );
    assert_eq!(enabled["enabled"], true);
    assert_eq!(
        enabled["disabled_reason"],
        Value::Null,
        "enabling clears disabled_reason"
    );

    // DELETE removes it with its messages.
    let event = publish(&server, "incident.created", seed_data());
    assert_eq!(event["messages"], 1);
    let (status, body) = server.api("DELETE", &format!("/api/v1/endpoints/{id}"), None);
    assert_eq!(status, 204, "{body}");
    assert_eq!(body, Value::Null, "204 has no body");
    let (status, body) = server.api("GET", &format!("/api/v1/endpoints/{id}"), None);
    assert_eq!((status, error_parts(&body).0.as_str()), (404, "not_found"));
    let (status, _) = server.api("DELETE", &format!("/api/v1/endpoints/{id}"), None);
    assert_eq!(status, 404, "a second DELETE finds nothing");
    let event = server.expect(
        "GET",
        &format!("/api/v1/events/{}", s(&event, "id")),
        None,
        200,
    );
    assert_eq!(
        event["messages"],
        json!([]),
        "DELETE removes the endpoint's messages"
    );

    assert!(
        !server.log().contains(&secret),
        "secrets must never be logged"
    );
}

#[test]
fn endpoint_refusals() {
    let server = Server::start("");
    let existing = create_endpoint(&server, json!({"url": DEAD_URL}));
    let id = s(&existing, "id").to_string();
    let ep = format!("/api/v1/endpoints/{id}");
    let missing = "/api/v1/endpoints/ep_zzzzzzzzzzzzzzzz";
    let before = server.expect("GET", "/api/v1/endpoints", None, 200);
    let secret_before = server.expect("GET", &format!("{ep}/secret"), None, 200);

    // (method, path, JSON body or raw text, status, code, field)
    #[allow(clippy::type_complexity)]
    let rows: Vec<(&str, String, Body, u16, &str, Option<&str>)> = vec![
        (
            "POST",
            "/api/v1/endpoints".to_string(),
            Body::Raw("{not json"),
            400,
            "invalid_json",
            None,
        ),
        (
            "POST",
            "/api/v1/endpoints".to_string(),
            Body::Raw(""),
            400,
            "invalid_json",
            None,
        ),
        (
            "POST",
            "/api/v1/endpoints".to_string(),
            Body::Json(json!({})),
            400,
            "invalid_field",
            Some("url"),
        ),
        (
            "POST",
            "/api/v1/endpoints".to_string(),
            Body::Json(json!({"url": 5})),
            400,
            "invalid_field",
            Some("url"),
        ),
        (
            "POST",
            "/api/v1/endpoints".to_string(),
            Body::Json(json!({"url": DEAD_URL, "description": 5})),
            400,
            "invalid_field",
            Some("description"),
        ),
        (
            "POST",
            "/api/v1/endpoints".to_string(),
            Body::Json(json!({"url": DEAD_URL, "event_types": ["incident.exploded"]})),
            400,
            "invalid_field",
            Some("event_types"),
        ),
        (
            "POST",
            "/api/v1/endpoints".to_string(),
            Body::Json(json!({"url": DEAD_URL, "event_types": "incident.created"})),
            400,
            "invalid_field",
            Some("event_types"),
        ),
        (
            "POST",
            "/api/v1/endpoints".to_string(),
            Body::Json(json!({"url": DEAD_URL, "enabled": "yes"})),
            400,
            "invalid_field",
            Some("enabled"),
        ),
        (
            "POST",
            "/api/v1/endpoints".to_string(),
            Body::Json(json!({"url": DEAD_URL, "batch_max": 0})),
            400,
            "invalid_field",
            Some("batch_max"),
        ),
        (
            "POST",
            "/api/v1/endpoints".to_string(),
            Body::Json(json!({"url": DEAD_URL, "batch_window_ms": -1})),
            400,
            "invalid_field",
            Some("batch_window_ms"),
        ),
        (
            "PATCH",
            ep.clone(),
            Body::Raw("["),
            400,
            "invalid_json",
            None,
        ),
        (
            "PATCH",
            ep.clone(),
            Body::Json(json!({"url": "ftp://example.com/x"})),
            400,
            "invalid_field",
            Some("url"),
        ),
        (
            "PATCH",
            ep.clone(),
            Body::Json(json!({"batch_max": "ten"})),
            400,
            "invalid_field",
            Some("batch_max"),
        ),
        (
            "PATCH",
            ep.clone(),
            Body::Json(json!({"enabled": "no"})),
            400,
            "invalid_field",
            Some("enabled"),
        ),
        (
            "POST",
            format!("{ep}/rotate-secret"),
            Body::Json(json!({"grace_secs": -5})),
            400,
            "invalid_field",
            Some("grace_secs"),
        ),
        (
            "POST",
            format!("{ep}/rotate-secret"),
            Body::Json(json!({"grace_secs": "soon"})),
            400,
            "invalid_field",
            Some("grace_secs"),
        ),
        (
            "GET",
            missing.to_string(),
            Body::None,
            404,
            "not_found",
            None,
        ),
        (
            "PATCH",
            missing.to_string(),
            Body::Json(json!({"description": "x"})),
            404,
            "not_found",
            None,
        ),
        (
            "DELETE",
            missing.to_string(),
            Body::None,
            404,
            "not_found",
            None,
        ),
        (
            "GET",
            format!("{missing}/secret"),
            Body::None,
            404,
            "not_found",
            None,
        ),
        (
            "POST",
            format!("{missing}/rotate-secret"),
            Body::Json(json!({})),
            404,
            "not_found",
            None,
        ),
        (
            "GET",
            "/api/v1/endpoints/not-an-id".to_string(),
            Body::None,
            404,
            "not_found",
            None,
        ),
        (
            "PUT",
            ep.clone(),
            Body::Json(json!({"url": DEAD_URL})),
            405,
            "method_not_allowed",
            None,
        ),
        (
            "POST",
            ep.clone(),
            Body::Json(json!({})),
            405,
            "method_not_allowed",
            None,
        ),
        (
            "DELETE",
            "/api/v1/endpoints".to_string(),
            Body::None,
            405,
            "method_not_allowed",
            None,
        ),
        (
            "GET",
            format!("{ep}/rotate-secret"),
            Body::None,
            405,
            "method_not_allowed",
            None,
        ),
        (
            "DELETE",
            format!("{ep}/secret"),
            Body::None,
            405,
            "method_not_allowed",
            None,
        ),
    ];
    for (method, path, body, status, code, field) in &rows {
        check_refusal(&server, method, path, body, *status, code, *field);
    }

    assert_eq!(
        server.expect("GET", "/api/v1/endpoints", None, 200),
        before,
        "refusals must change nothing"
    );
    assert_eq!(
        server.expect("GET", &format!("{ep}/secret"), None, 200),
        secret_before,
        "no rotation happened"
    );
}

/// A request body for refusal tables.
pub enum Body {
    None,
    Json(Value),
    /// Sent verbatim as `application/json`.
    Raw(&'static str),
}

/// Sends one request and asserts the refusal's status, code and (when given) field.
pub fn check_refusal(
    server: &Server,
    method: &str,
    path: &str,
    body: &Body,
    status: u16,
    code: &str,
    field: Option<&str>,
) {
    let auth = format!("Bearer {TOKEN}");
    let json_headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let api = server.client();
    let reply = match body {
        Body::None => api.raw(method, path, &json_headers[..1], None),
        Body::Json(value) => api.raw(
            method,
            path,
            &json_headers,
            Some(value.to_string().as_bytes()),
        ),
        Body::Raw(text) => api.raw(method, path, &json_headers, Some(text.as_bytes())),
    };
    let what = format!("{method} {path} {}", body_text(body));
    assert_eq!(reply.status, status, "{what}: {}", reply.text());
    let content_type = reply.header("Content-Type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "{what}: errors are JSON, got {content_type:?}"
    );
    let (got_code, got_field) = error_parts(&reply.json());
    assert_eq!(got_code, code, "{what}: {}", reply.text());
    if let Some(field) = field {
        let got = got_field.unwrap_or_else(|| {
            panic!(
                "{what}: the error must name the field {field:?}: {}",
                reply.text()
            )
        });
        assert!(
            got.contains(field),
            "{what}: field {got:?} should name {field:?}"
        );
    }
}

fn body_text(body: &Body) -> String {
    match body {
        Body::None => String::new(),
        Body::Json(value) => value.to_string(),
        Body::Raw(text) => format!("{text:?}"),
    }
}

#[test]
fn url_validation() {
    let server = Server::start("");
    let long_path = "a".repeat(2048 - "http://127.0.0.1:9/".len());
    let just_fits = format!("http://127.0.0.1:9/{long_path}");
    assert_eq!(just_fits.len(), 2048);
    let too_long = format!("{just_fits}a");

    // (url, accepted)
    let rows: Vec<(&str, bool)> = vec![
        ("http://127.0.0.1:9/hook", true),
        ("https://10.1.2.3/hook", true),
        ("http://hooks.internal.example:8080/x", true),
        (&just_fits, true),
        (&too_long, false),
        ("ftp://example.com/hook", false),
        ("file:///etc/passwd", false),
        ("javascript:alert(1)", false),
        ("not a url", false),
        ("", false),
        ("http://", false),
        ("http://169.254.169.254/latest/meta-data/", false),
        ("http://169.254.1.1/hook", false),
        ("http://[fe80::1]/hook", false),
        ("http://0.0.0.0/hook", false),
        ("http://[::]/hook", false),
        ("http://224.0.0.1/hook", false),
        ("http://255.255.255.255/hook", false),
    ];
    for (url, accepted) in rows {
        let (status, body) = server.api("POST", "/api/v1/endpoints", Some(json!({"url": url})));
        if accepted {
            assert_eq!(status, 201, "{url:?} should be accepted: {body}");
            assert_eq!(body["url"], url);
        } else {
            assert_eq!(status, 400, "{url:?} should be refused: {body}");
            let (code, field) = error_parts(&body);
            assert_eq!(
                (code.as_str(), field.as_deref()),
                ("invalid_field", Some("url")),
                "{url:?}: {body}"
            );
        }
    }
    let all = list_all(&server, "/api/v1/endpoints", 500);
    assert_eq!(all.len(), 4, "only the accepted URLs were stored");
}

#[test]
fn secrets_are_generated_revealed_and_rotated() {
    let server = Server::start("");
    let a = create_endpoint(&server, json!({"url": DEAD_URL}));
    let b = create_endpoint(&server, json!({"url": DEAD_URL}));
    let secret_a = s(&a, "secret").to_string();
    assert_secret_format(&secret_a);
    assert_secret_format(s(&b, "secret"));
    assert_ne!(
        secret_a,
        s(&b, "secret"),
        "every endpoint gets its own secret"
    );
    let path = format!("/api/v1/endpoints/{}", s(&a, "id"));

    let rotated = server.expect(
        "POST",
        &format!("{path}/rotate-secret"),
        Some(json!({"grace_secs": 60})),
        200,
    );
    let new_secret = s(&rotated, "secret").to_string();
    assert_secret_format(&new_secret);
    assert_ne!(new_secret, secret_a);
    assert_eq!(
        server.expect("GET", &format!("{path}/secret"), None, 200),
        json!({"secret": new_secret})
    );

    // An action route takes a missing body as `{}`.
    let rotated = server.expect("POST", &format!("{path}/rotate-secret"), None, 200);
    let newest = s(&rotated, "secret").to_string();
    assert_secret_format(&newest);
    assert_ne!(newest, new_secret);
    assert_eq!(
        server.expect("GET", &format!("{path}/secret"), None, 200),
        json!({"secret": newest})
    );

    let endpoint = server.expect("GET", &path, None, 200);
    assert!(
        endpoint.get("secret").is_none(),
        "GET never shows a secret: {endpoint}"
    );

    let log = server.log();
    for secret in [&secret_a, &new_secret, &newest] {
        assert!(!log.contains(secret.as_str()), "a secret was logged");
    }
}

#[test]
fn user_supplied_secrets_are_validated() {
    use base64::Engine as _;
    let b64 = |n: usize| base64::engine::general_purpose::STANDARD_NO_PAD.encode(vec![7u8; n]);
    let server = Server::start("");
    let ok24 = format!("whsec_{}", b64(24));
    let ok64 = format!("whsec_{}", b64(64));
    let short = format!("whsec_{}", b64(23));
    let long = format!("whsec_{}", b64(65));
    let no_prefix = b64(24);
    let not_base64 = format!("whsec_{}", "!".repeat(32));
    // (secret, accepted)
    let rows: Vec<(&str, bool)> = vec![
        (&ok24, true),
        (&ok64, true),
        (&short, false),
        (&long, false),
        (&no_prefix, false),
        (&not_base64, false),
        // The seed document's example secret decodes to 18 bytes: too short to accept.
        ("whsec_4eC39HqLyjWDarjtT1zdp7dc", false),
        ("", false),
    ];
    for (secret, accepted) in rows {
        let (status, body) = server.api(
            "POST",
            "/api/v1/endpoints",
            Some(json!({"url": DEAD_URL, "secret": secret})),
        );
        if accepted {
            assert_eq!(status, 201, "{secret:?} should be accepted: {body}");
            assert_eq!(body["secret"], secret);
            let path = format!("/api/v1/endpoints/{}/secret", s(&body, "id"));
            assert_eq!(
                server.expect("GET", &path, None, 200),
                json!({"secret": secret})
            );
        } else {
            assert_eq!(status, 400, "{secret:?} should be refused: {body}");
            let (code, field) = error_parts(&body);
            assert_eq!(
                (code.as_str(), field.as_deref()),
                ("invalid_field", Some("secret")),
                "{body}"
            );
        }
    }
    let (status, body) = server.api(
        "POST",
        "/api/v1/endpoints",
        Some(json!({"url": DEAD_URL, "secret": 42})),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(list_all(&server, "/api/v1/endpoints", 500).len(), 2);
}

// ---------------------------------------------------------------------------------------
// Events

#[test]
fn seed_example_is_accepted_and_round_trips() {
    let server = Server::start("");
    let endpoint = create_endpoint(&server, json!({"url": DEAD_URL}));
    let before = SystemTime::now() - Duration::from_secs(2);
    let answer = publish(&server, "incident.created", seed_data());
    let after = SystemTime::now() + Duration::from_secs(2);

    assert_eq!(
        keys(&answer),
        ["id", "type", "created_at", "data", "messages"],
        "{answer}"
    );
    let id = s(&answer, "id");
    assert!(is_id(id, "evt_"), "event id format: {id}");
    assert_eq!(answer["type"], "incident.created");
    let created_at = s(&answer, "created_at");
    assert!(
        is_rfc3339_seconds_z(created_at),
        "created_at format: {created_at}"
    );
    let t = parse_time(created_at);
    assert!(
        t >= before && t <= after,
        "created_at {created_at} is not now"
    );
    assert_eq!(answer["data"], seed_data());
    assert_eq!(
        serde_json::to_string(&answer["data"]).unwrap(),
        serde_json::to_string(&seed_data()).unwrap(),
        "data keeps its key order"
    );
    assert_eq!(answer["messages"], 1);

    let got = server.expect("GET", &format!("/api/v1/events/{id}"), None, 200);
    assert_eq!(
        keys(&got)[..4],
        ["id", "type", "created_at", "data"],
        "{got}"
    );
    assert_eq!(got["id"], answer["id"]);
    assert_eq!(got["type"], answer["type"]);
    assert_eq!(got["created_at"], answer["created_at"]);
    assert_eq!(
        got["data"],
        seed_data(),
        "GET returns the published data unchanged"
    );
    let messages = got["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("messages array: {got}"));
    assert_eq!(messages.len(), 1, "{got}");
    let message = &messages[0];
    for key in [
        "id",
        "event_id",
        "endpoint_id",
        "status",
        "attempts",
        "next_attempt_at",
    ] {
        assert!(
            message.get(key).is_some(),
            "message lacks `{key}`: {message}"
        );
    }
    assert_eq!(message["event_id"], answer["id"]);
    assert_eq!(message["endpoint_id"], endpoint["id"]);
    assert!(message["attempts"].is_array(), "{message}");

    let listed = list_all(&server, "/api/v1/events", 50);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], answer["id"]);
    assert_eq!(listed[0]["data"], seed_data());
}

#[test]
fn event_validation_per_type() {
    let server = Server::start("");
    let mut resolved = seed_data();
    resolved["status"] = json!("resolved");
    resolved["resolved_at"] = json!("2023-10-27T15:30:00Z");
    let mut extra_keys = seed_data();
    extra_keys["custom"] = json!({"ticket": "OPS-1", "tags": ["eu", 1]});
    let mut from_monitor = seed_data();
    from_monitor["source"] = json!("monitor");
    from_monitor["monitor_id"] = json!("mon_1");
    from_monitor["started_at"] = json!("2023-10-27T14:29:00Z");
    let with = |mut data: Value, key: &str, value: Value| {
        data[key] = value;
        data
    };
    let without = |mut data: Value, key: &str| {
        data.as_object_mut().unwrap().remove(key);
        data
    };
    let monitor_min = json!({"monitor_id": "mon_1", "previous_status": "UP", "status": "DOWN"});
    let monitor_full = json!({
        "monitor_id": "mon_1", "monitor_name": "API", "url": "https://api.internal/health", "region": "eu",
        "previous_status": "UP", "status": "DOWN", "checked_at": "2023-10-27T14:30:00Z",
        "metrics": {"status_code": null, "response_time_ms": 5000, "error": "timeout", "consecutive_failures": 3}
    });
    let sla_min = json!({"monitor_id": "mon_1", "sla_target": 99.9, "projected_breach_at": "2023-10-28T10:00:00Z"});
    let sla_full = json!({
        "monitor_id": "mon_1", "monitor_name": "API", "sla_target": 99.9, "window_days": 30,
        "current_uptime": 99.95, "error_budget_remaining_pct": 7.4, "burn_rate": 14.4,
        "projected_breach_at": "2023-10-28T10:00:00Z", "horizon_hours": 24
    });

    // (type, data, refused field; None = accepted)
    let rows: Vec<(&str, Value, Option<&str>)> = vec![
        ("incident.created", seed_data(), None),
        (
            "incident.created",
            with(seed_data(), "components", json!([])),
            None,
        ),
        ("incident.created", extra_keys, None),
        ("incident.created", from_monitor, None),
        ("incident.resolved", resolved, None),
        (
            "incident.created",
            without(seed_data(), "title"),
            Some("title"),
        ),
        (
            "incident.created",
            without(seed_data(), "incident_id"),
            Some("incident_id"),
        ),
        (
            "incident.created",
            without(seed_data(), "status"),
            Some("status"),
        ),
        (
            "incident.created",
            without(seed_data(), "severity"),
            Some("severity"),
        ),
        (
            "incident.created",
            without(seed_data(), "components"),
            Some("components"),
        ),
        (
            "incident.created",
            with(seed_data(), "title", json!(42)),
            Some("title"),
        ),
        (
            "incident.created",
            with(seed_data(), "severity", json!("apocalyptic")),
            Some("severity"),
        ),
        (
            "incident.created",
            with(seed_data(), "status", json!("sleeping")),
            Some("status"),
        ),
        (
            "incident.created",
            with(seed_data(), "components", json!("api")),
            Some("components"),
        ),
        (
            "incident.created",
            with(
                seed_data(),
                "components",
                json!([{"id": "c", "name": "C", "status": "on_fire"}]),
            ),
            Some("status"),
        ),
        (
            "incident.created",
            with(seed_data(), "source", json!("psychic")),
            Some("source"),
        ),
        (
            "incident.created",
            with(seed_data(), "started_at", json!("yesterday")),
            Some("started_at"),
        ),
        ("monitor.status_change", monitor_min.clone(), None),
        ("monitor.status_change", monitor_full.clone(), None),
        (
            "monitor.status_change",
            without(monitor_min.clone(), "monitor_id"),
            Some("monitor_id"),
        ),
        (
            "monitor.status_change",
            without(monitor_min.clone(), "previous_status"),
            Some("previous_status"),
        ),
        (
            "monitor.status_change",
            with(monitor_min.clone(), "status", json!("SIDEWAYS")),
            Some("status"),
        ),
        (
            "monitor.status_change",
            with(monitor_min.clone(), "status", json!("down")),
            Some("status"),
        ),
        (
            "monitor.status_change",
            with(
                monitor_full.clone(),
                "metrics",
                json!({"status_code": "500", "response_time_ms": 1}),
            ),
            Some("status_code"),
        ),
        (
            "monitor.status_change",
            with(monitor_min.clone(), "checked_at", json!(12)),
            Some("checked_at"),
        ),
        ("sla.breach_warning", sla_min.clone(), None),
        ("sla.breach_warning", sla_full, None),
        (
            "sla.breach_warning",
            without(sla_min.clone(), "sla_target"),
            Some("sla_target"),
        ),
        (
            "sla.breach_warning",
            without(sla_min.clone(), "projected_breach_at"),
            Some("projected_breach_at"),
        ),
        (
            "sla.breach_warning",
            with(sla_min.clone(), "sla_target", json!("high")),
            Some("sla_target"),
        ),
        (
            "sla.breach_warning",
            with(sla_min.clone(), "projected_breach_at", json!("tomorrow")),
            Some("projected_breach_at"),
        ),
        (
            "sla.breach_warning",
            with(sla_min, "burn_rate", json!("fast")),
            Some("burn_rate"),
        ),
        // Shapes are per type: an incident payload is not a monitor change.
        ("monitor.status_change", seed_data(), Some("monitor_id")),
    ];
    let mut accepted = Vec::new();
    for (kind, data, refused) in &rows {
        let (status, body) = server.api(
            "POST",
            "/api/v1/events",
            Some(json!({"type": kind, "data": data})),
        );
        match refused {
            None => {
                assert_eq!(status, 202, "{kind} {data} should be accepted: {body}");
                assert_eq!(
                    &body["data"], data,
                    "data is kept as given, extra keys included"
                );
                let got = server.expect(
                    "GET",
                    &format!("/api/v1/events/{}", s(&body, "id")),
                    None,
                    200,
                );
                assert_eq!(&got["data"], data, "stored data round-trips");
                accepted.push(s(&body, "id").to_string());
            }
            Some(field) => {
                assert_eq!(status, 400, "{kind} {data} should be refused: {body}");
                let (code, got_field) = error_parts(&body);
                assert_eq!(code, "invalid_field", "{body}");
                let got_field =
                    got_field.unwrap_or_else(|| panic!("{kind} {data}: no field in {body}"));
                assert!(
                    got_field.contains(field),
                    "{kind} {data}: field {got_field:?} should name {field:?}"
                );
            }
        }
    }

    // The envelope itself.
    let envelope_rows: Vec<(Body, &str, Option<&str>)> = vec![
        (
            Body::Json(json!({"type": "incident.updated", "data": seed_data()})),
            "invalid_field",
            Some("type"),
        ),
        (
            Body::Json(json!({"type": "batch", "data": {"events": []}})),
            "invalid_field",
            Some("type"),
        ),
        (
            Body::Json(json!({"data": seed_data()})),
            "invalid_field",
            Some("type"),
        ),
        (
            Body::Json(json!({"type": 7, "data": seed_data()})),
            "invalid_field",
            Some("type"),
        ),
        (
            Body::Json(json!({"type": "incident.created"})),
            "invalid_field",
            Some("data"),
        ),
        (
            Body::Json(json!({"type": "incident.created", "data": "text"})),
            "invalid_field",
            Some("data"),
        ),
        (
            Body::Json(json!({"type": "incident.created", "data": [seed_data()]})),
            "invalid_field",
            Some("data"),
        ),
        (
            Body::Raw("{\"type\": \"incident.created\", \"data\": "),
            "invalid_json",
            None,
        ),
        (Body::Raw("not json at all"), "invalid_json", None),
    ];
    for (body, code, field) in &envelope_rows {
        check_refusal(&server, "POST", "/api/v1/events", body, 400, code, *field);
    }

    let listed: Vec<String> = list_all(&server, "/api/v1/events", 500)
        .iter()
        .map(|e| s(e, "id").to_string())
        .collect();
    assert_eq!(
        listed.iter().collect::<HashSet<_>>(),
        accepted.iter().collect::<HashSet<_>>(),
        "refused events must not be stored"
    );
}

#[test]
fn event_route_refusals() {
    let server = Server::start("");
    let auth = format!("Bearer {TOKEN}");
    let api = server.client();
    let body = json!({"type": "incident.created", "data": seed_data()}).to_string();

    // (content type, expected status)
    let rows: &[(Option<&str>, u16)] = &[
        (Some("application/json"), 202),
        (Some("application/json; charset=utf-8"), 202),
        (Some("text/plain"), 415),
        (Some("application/x-www-form-urlencoded"), 415),
        (None, 415),
    ];
    for (content_type, status) in rows {
        let mut headers = vec![("Authorization", auth.as_str())];
        if let Some(ct) = content_type {
            headers.push(("Content-Type", ct));
        }
        let reply = api.raw("POST", "/api/v1/events", &headers, Some(body.as_bytes()));
        assert_eq!(
            reply.status,
            *status,
            "Content-Type {content_type:?}: {}",
            reply.text()
        );
        if *status == 415 {
            assert_eq!(error_parts(&reply.json()).0, "unsupported_media_type");
        }
    }
    // Also on PATCH and endpoint creation.
    let endpoint = create_endpoint(&server, json!({"url": DEAD_URL}));
    for (method, path) in [
        ("POST", "/api/v1/endpoints".to_string()),
        ("PATCH", format!("/api/v1/endpoints/{}", s(&endpoint, "id"))),
    ] {
        let reply = api.raw(
            method,
            &path,
            &[("Authorization", &auth), ("Content-Type", "text/plain")],
            Some(json!({"url": DEAD_URL}).to_string().as_bytes()),
        );
        assert_eq!(reply.status, 415, "{method} {path}: {}", reply.text());
    }

    check_refusal(
        &server,
        "GET",
        "/api/v1/events/evt_zzzzzzzzzzzzzzzz",
        &Body::None,
        404,
        "not_found",
        None,
    );
    check_refusal(
        &server,
        "DELETE",
        "/api/v1/events",
        &Body::None,
        405,
        "method_not_allowed",
        None,
    );
    check_refusal(
        &server,
        "PUT",
        "/api/v1/events",
        &Body::Json(json!({})),
        405,
        "method_not_allowed",
        None,
    );
    check_refusal(
        &server,
        "DELETE",
        "/api/v1/events/evt_zzzzzzzzzzzzzzzz",
        &Body::None,
        405,
        "method_not_allowed",
        None,
    );
    check_refusal(
        &server,
        "POST",
        "/api/v1/messages",
        &Body::Json(json!({})),
        405,
        "method_not_allowed",
        None,
    );
    check_refusal(
        &server,
        "GET",
        "/api/v1/messages?status=lost",
        &Body::None,
        400,
        "invalid_field",
        Some("status"),
    );

    assert_eq!(
        list_all(&server, "/api/v1/events", 500).len(),
        2,
        "only the two accepted events are stored"
    );
}

#[test]
fn oversized_bodies_are_refused() {
    let server = Server::start("[server]\nmax_body_bytes = 2048\n");
    let auth = format!("Bearer {TOKEN}");
    let api = server.client();

    let fits = json!({"url": DEAD_URL, "description": "d".repeat(900)}).to_string();
    assert!(fits.len() < 2048);
    let reply = api.raw(
        "POST",
        "/api/v1/endpoints",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(fits.as_bytes()),
    );
    assert_eq!(
        reply.status,
        201,
        "a body under the limit is fine: {}",
        reply.text()
    );

    for (path, body) in [
        (
            "/api/v1/endpoints",
            json!({"url": DEAD_URL, "description": "d".repeat(4000)}),
        ),
        (
            "/api/v1/events",
            json!({"type": "incident.created", "data": incident(&"t".repeat(4000))}),
        ),
    ] {
        let reply = api.raw(
            "POST",
            path,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            Some(body.to_string().as_bytes()),
        );
        assert_eq!(
            reply.status,
            413,
            "POST {path} over max_body_bytes: {}",
            reply.text()
        );
        assert_eq!(error_parts(&reply.json()).0, "payload_too_large");
        // The body is left unread and the connection closed after the answer: a keep-alive
        // client must be told, or its next request goes onto a closing connection.
        assert_eq!(reply.header("connection"), Some("close"), "POST {path}");
    }
    // The same body refused before it is read (no token) closes the connection too.
    let body = json!({"url": DEAD_URL, "description": "d".repeat(4000)}).to_string();
    let reply = api.raw(
        "POST",
        "/api/v1/endpoints",
        &[("Content-Type", "application/json")],
        Some(body.as_bytes()),
    );
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(reply.header("connection"), Some("close"));
    // A body within the limit keeps the connection.
    let reply = api.raw(
        "POST",
        "/api/v1/endpoints",
        &[("Content-Type", "application/json")],
        Some(fits.as_bytes()),
    );
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(reply.header("connection"), None);

    // Refused without reading it all: a huge announced body gets its 413 while the client
    // has sent only a few bytes of it.
    let mut stream = TcpStream::connect(server.addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /api/v1/events HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{{\"type\":",
        server.addr()
    )
    .unwrap();
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head)
        .expect("an answer before the body is complete");
    assert_eq!(
        &head,
        b"HTTP/1.1 413",
        "got {:?}",
        String::from_utf8_lossy(&head)
    );

    assert_eq!(list_all(&server, "/api/v1/endpoints", 500).len(), 1);
    assert!(list_all(&server, "/api/v1/events", 500).is_empty());
    assert_eq!(
        server.client().raw("GET", "/healthz", &[], None).status,
        200,
        "still serving"
    );
}

#[test]
fn pagination() {
    let server = Server::start("");
    let mut endpoint_ids = HashSet::new();
    for i in 0..7 {
        let e = create_endpoint(&server, json!({"url": format!("http://127.0.0.1:9/{i}")}));
        endpoint_ids.insert(s(&e, "id").to_string());
    }
    let mut event_ids = HashSet::new();
    for i in 0..55 {
        let e = publish(&server, "incident.created", incident(&format!("event {i}")));
        event_ids.insert(s(&e, "id").to_string());
    }

    for limit in [1, 3, 7, 500] {
        let items = list_all(&server, "/api/v1/endpoints", limit);
        let ids: Vec<String> = items.iter().map(|e| s(e, "id").to_string()).collect();
        assert_eq!(ids.len(), 7, "limit {limit}: every endpoint once: {ids:?}");
        assert_eq!(
            ids.into_iter().collect::<HashSet<_>>(),
            endpoint_ids,
            "limit {limit}"
        );
    }
    for limit in [4, 50, 55] {
        let items = list_all(&server, "/api/v1/events", limit);
        let ids: Vec<String> = items.iter().map(|e| s(e, "id").to_string()).collect();
        assert_eq!(ids.len(), 55, "limit {limit}: every event once");
        assert_eq!(
            ids.into_iter().collect::<HashSet<_>>(),
            event_ids,
            "limit {limit}"
        );
    }
    let messages = list_all(&server, "/api/v1/messages", 20);
    assert_eq!(
        messages.len(),
        7 * 55,
        "one message per event and endpoint, each once"
    );
    let unique: HashSet<String> = messages.iter().map(|m| s(m, "id").to_string()).collect();
    assert_eq!(unique.len(), 7 * 55);

    let default_page = server.expect("GET", "/api/v1/events", None, 200);
    assert_eq!(
        default_page["data"].as_array().map(Vec::len),
        Some(50),
        "default limit is 50"
    );
    assert!(default_page["next_cursor"].is_string(), "more pages follow");

    let page = server.expect("GET", "/api/v1/events?limit=3", None, 200);
    let cursor = s(&page, "next_cursor").to_string();
    let next = server.expect(
        "GET",
        &format!("/api/v1/events?limit=3&cursor={}", query_escape(&cursor)),
        None,
        200,
    );
    assert_eq!(next["data"].as_array().map(Vec::len), Some(3));
    assert_ne!(next["data"][0]["id"], page["data"][0]["id"]);

    for path in ["/api/v1/events", "/api/v1/endpoints", "/api/v1/messages"] {
        for query in [
            "limit=0",
            "limit=501",
            "limit=-1",
            "limit=ten",
            "cursor=not-a-cursor",
            "cursor=%00%ff",
        ] {
            let field = query.split('=').next();
            check_refusal(
                &server,
                "GET",
                &format!("{path}?{query}"),
                &Body::None,
                400,
                "invalid_field",
                field,
            );
        }
    }
}

#[test]
fn idempotency_keys() {
    let server = Server::start("");
    let endpoint = create_endpoint(&server, json!({"url": DEAD_URL}));
    let auth = format!("Bearer {TOKEN}");
    let api = server.client();
    let post = |key: &str, body: &str| {
        api.raw(
            "POST",
            "/api/v1/events",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
                ("Idempotency-Key", key),
            ],
            Some(body.as_bytes()),
        )
    };
    let body = json!({"type": "incident.created", "data": seed_data()}).to_string();
    let pretty =
        serde_json::to_string_pretty(&json!({"type": "incident.created", "data": seed_data()}))
            .unwrap();

    let first = post("key-1", &body);
    assert_eq!(first.status, 202, "{}", first.text());
    let first = first.json();

    for (what, again) in [
        ("same body", &body),
        ("same JSON, other whitespace", &pretty),
    ] {
        let reply = post("key-1", again);
        assert_eq!(
            reply.status,
            200,
            "{what}: the first answer again, as 200: {}",
            reply.text()
        );
        assert_eq!(reply.json(), first, "{what}: the first answer again");
    }

    let other = post(
        "key-1",
        &json!({"type": "incident.created", "data": incident("other")}).to_string(),
    );
    assert_eq!(other.status, 409, "same key, other body: {}", other.text());
    assert_eq!(error_parts(&other.json()).0, "conflict");

    let second = post("key-2", &body);
    assert_eq!(second.status, 202, "another key is another event");
    assert_ne!(second.json()["id"], first["id"]);

    let events = list_all(&server, "/api/v1/events", 500);
    assert_eq!(events.len(), 2, "replays must not store events");
    let messages = messages_of(&server, s(&endpoint, "id"));
    assert_eq!(messages.len(), 2, "replays must not queue messages");
}

#[test]
fn event_types_filter_and_disabled_endpoints_decide_fan_out() {
    let server = Server::start("");
    let all = create_endpoint(&server, json!({"url": DEAD_URL, "event_types": []}));
    let null = create_endpoint(&server, json!({"url": DEAD_URL, "event_types": null}));
    let omitted = create_endpoint(&server, json!({"url": DEAD_URL}));
    let incidents = create_endpoint(
        &server,
        json!({"url": DEAD_URL, "event_types": ["incident.created"]}),
    );
    let monitors = create_endpoint(
        &server,
        json!({"url": DEAD_URL, "event_types": ["monitor.status_change", "sla.breach_warning"]}),
    );
    let disabled = create_endpoint(&server, json!({"url": DEAD_URL, "enabled": false}));
    assert_eq!(disabled["enabled"], false);
    let id = |e: &Value| s(e, "id").to_string();

    let monitor = json!({"monitor_id": "mon_1", "previous_status": "UP", "status": "DOWN"});
    let sla = json!({"monitor_id": "mon_1", "sla_target": 99.9, "projected_breach_at": "2023-10-28T10:00:00Z"});
    let mut resolved = seed_data();
    resolved["status"] = json!("resolved");
    // (type, data, endpoints that get a message)
    let rows: Vec<(&str, Value, Vec<String>)> = vec![
        (
            "incident.created",
            seed_data(),
            vec![id(&all), id(&null), id(&omitted), id(&incidents)],
        ),
        (
            "incident.resolved",
            resolved,
            vec![id(&all), id(&null), id(&omitted)],
        ),
        (
            "monitor.status_change",
            monitor,
            vec![id(&all), id(&null), id(&omitted), id(&monitors)],
        ),
        (
            "sla.breach_warning",
            sla,
            vec![id(&all), id(&null), id(&omitted), id(&monitors)],
        ),
    ];
    for (kind, data, expected) in &rows {
        let answer = publish(&server, kind, data.clone());
        assert_eq!(answer["messages"], expected.len(), "{kind}: {answer}");
        let event = server.expect(
            "GET",
            &format!("/api/v1/events/{}", s(&answer, "id")),
            None,
            200,
        );
        let got: HashSet<String> = event["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("{event}"))
            .iter()
            .map(|m| s(m, "endpoint_id").to_string())
            .collect();
        assert_eq!(
            got,
            expected.iter().cloned().collect(),
            "{kind}: which endpoints got messages"
        );
        for message in event["messages"].as_array().unwrap() {
            assert_eq!(
                message["status"], "pending",
                "nothing can be delivered to {DEAD_URL}: {message}"
            );
        }
    }

    // Enabling and disabling changes fan-out for new events only.
    server.expect(
        "PATCH",
        &format!("/api/v1/endpoints/{}", id(&disabled)),
        Some(json!({"enabled": true})),
        200,
    );
    server.expect(
        "PATCH",
        &format!("/api/v1/endpoints/{}", id(&incidents)),
        Some(json!({"enabled": false})),
        200,
    );
    let answer = publish(&server, "incident.created", seed_data());
    assert_eq!(
        answer["messages"], 4,
        "all, null, omitted, re-enabled: {answer}"
    );
    let event = server.expect(
        "GET",
        &format!("/api/v1/events/{}", s(&answer, "id")),
        None,
        200,
    );
    let got: HashSet<String> = event["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| s(m, "endpoint_id").to_string())
        .collect();
    assert_eq!(
        got,
        [id(&all), id(&null), id(&omitted), id(&disabled)]
            .into_iter()
            .collect()
    );

    // Filters on the message list.
    let of_all = messages_of(&server, &id(&all));
    assert_eq!(of_all.len(), 5);
    assert!(of_all.iter().all(|m| m["endpoint_id"] == all["id"]));
    let of_event = list_all(
        &server,
        &format!(
            "/api/v1/messages?event_id={}",
            query_escape(s(&answer, "id"))
        ),
        500,
    );
    assert_eq!(of_event.len(), 4);
    assert!(of_event.iter().all(|m| m["event_id"] == answer["id"]));
    let pending_of_disabled = list_all(
        &server,
        &format!(
            "/api/v1/messages?endpoint_id={}&status=pending",
            id(&disabled)
        ),
        500,
    );
    assert_eq!(
        pending_of_disabled.len(),
        1,
        "the re-enabled endpoint has one pending message"
    );
}

// ---------------------------------------------------------------------------------------
// Storage

#[test]
fn state_survives_a_restart() {
    let mut server = Server::start("");
    let endpoint = create_endpoint(
        &server,
        json!({"url": DEAD_URL, "description": "persist me"}),
    );
    let id = s(&endpoint, "id").to_string();
    let auth = format!("Bearer {TOKEN}");
    let body = json!({"type": "incident.created", "data": seed_data()}).to_string();
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
        ("Idempotency-Key", "persist"),
    ];
    let first = server
        .client()
        .raw("POST", "/api/v1/events", &headers, Some(body.as_bytes()));
    assert_eq!(first.status, 202);
    let event = first.json();
    let event_id = s(&event, "id").to_string();
    let endpoint_before = server.expect("GET", &format!("/api/v1/endpoints/{id}"), None, 200);

    server.restart();

    let endpoint_after = server.expect("GET", &format!("/api/v1/endpoints/{id}"), None, 200);
    assert_eq!(endpoint_after["url"], endpoint_before["url"]);
    assert_eq!(endpoint_after["description"], "persist me");
    assert_eq!(endpoint_after["created_at"], endpoint_before["created_at"]);
    assert_eq!(
        server.expect("GET", &format!("/api/v1/endpoints/{id}/secret"), None, 200),
        json!({"secret": endpoint["secret"]})
    );
    let got = server.expect("GET", &format!("/api/v1/events/{event_id}"), None, 200);
    assert_eq!(got["data"], seed_data());
    assert_eq!(got["created_at"], event["created_at"]);
    assert_eq!(got["messages"].as_array().map(Vec::len), Some(1), "{got}");

    let replay = server
        .client()
        .raw("POST", "/api/v1/events", &headers, Some(body.as_bytes()));
    assert_eq!(
        replay.status,
        200,
        "idempotency keys survive a restart: {}",
        replay.text()
    );
    assert_eq!(replay.json()["id"], event["id"]);
    assert_eq!(list_all(&server, "/api/v1/events", 500).len(), 1);
}

fn user_version(db: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("open the test database");
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("read user_version")
}

#[test]
fn a_second_start_applies_no_migration_again() {
    let mut server = Server::start("");
    let endpoint = create_endpoint(&server, json!({"url": DEAD_URL}));
    let status = server.stop();
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    let version = user_version(&server.db_path());
    assert!(
        version > 0,
        "migrations are recorded in PRAGMA user_version"
    );

    server.restart();
    server.expect(
        "GET",
        &format!("/api/v1/endpoints/{}", s(&endpoint, "id")),
        None,
        200,
    );
    assert_eq!(
        server.client().raw("GET", "/healthz", &[], None).status,
        200
    );
    let status = server.stop();
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    assert_eq!(
        user_version(&server.db_path()),
        version,
        "the second start migrates nothing"
    );
}

#[test]
fn a_newer_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    {
        let conn = rusqlite::Connection::open(dir.path().join("db.sqlite")).unwrap();
        conn.pragma_update(None, "user_version", 9999).unwrap();
    }
    let out = run_with_deadline(
        command(dir.path())
            .arg("serve")
            .arg("--config")
            .arg(&config),
        CLI_DEADLINE,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && out.status.code().is_some(),
        "a database newer than the binary must stop the start, got {:?}; stderr:\n{stderr}",
        out.status
    );
    assert!(
        !stderr.contains("listening on"),
        "it must not serve:\n{stderr}"
    );
    let lower = stderr.to_lowercase();
    assert!(
        lower.contains("newer") || lower.contains("9999"),
        "the message must say the database is newer than the binary:\n{stderr}"
    );
    assert_eq!(
        user_version(&dir.path().join("db.sqlite")),
        9999,
        "the newer database is left alone"
    );
}
