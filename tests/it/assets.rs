//! The settings page's files (SPEC 6): served without a token at `/` and `/assets/…`, each
//! with its content type, caching headers and the browser hardening headers, and nothing
//! inline that the Content-Security-Policy would have to allow.

use crate::harness::*;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// (path, content type) of every file the page is made of.
const FILES: &[(&str, &str)] = &[
    ("/", "text/html; charset=utf-8"),
    ("/assets/app.js", "text/javascript; charset=utf-8"),
    ("/assets/app.css", "text/css; charset=utf-8"),
    ("/assets/favicon.svg", "image/svg+xml; charset=utf-8"),
];

/// Every value of header `name`, to catch a header sent twice.
fn all(reply: &HttpReply, name: &str) -> Vec<String> {
    reply
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .collect()
}

fn assert_hardened(reply: &HttpReply, what: &str) {
    let rows = [
        ("Content-Security-Policy", CSP),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "DENY"),
    ];
    for (name, want) in rows {
        assert_eq!(all(reply, name), [want], "{what}: {name}");
    }
}

#[test]
fn every_file_is_served_without_a_token_with_its_type_and_headers() {
    let server = Server::start("");
    let api = server.client();
    for (path, content_type) in FILES {
        let reply = api.raw("GET", path, &[], None);
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.text());
        assert_eq!(all(&reply, "Content-Type"), [*content_type], "{path}");
        assert_hardened(&reply, path);
        let cache = all(&reply, "Cache-Control");
        assert_eq!(
            cache,
            ["no-cache"],
            "{path}: one Cache-Control, revalidated each use"
        );
        let etag = reply
            .header("ETag")
            .unwrap_or_else(|| panic!("{path}: no ETag"));
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
            "{etag}"
        );
        assert!(!reply.body.is_empty(), "{path}: empty body");
    }
    // The page does not open the API: that still takes the token.
    let reply = api.raw("GET", "/api/v1/endpoints", &[], None);
    assert_eq!(reply.status, 401);
    assert_eq!(all(&reply, "Cache-Control"), ["no-store"]);
}

#[test]
fn head_and_conditional_requests() {
    let server = Server::start("");
    let api = server.client();
    for (path, content_type) in FILES {
        let full = api.raw("GET", path, &[], None);
        let etag = full.header("ETag").expect("ETag").to_string();

        let head = api.raw("HEAD", path, &[], None);
        assert_eq!(head.status, 200, "HEAD {path}");
        assert!(head.body.is_empty(), "HEAD {path} sent a body");
        assert_eq!(all(&head, "Content-Type"), [*content_type], "HEAD {path}");
        assert_eq!(head.header("ETag"), Some(etag.as_str()), "HEAD {path}");
        assert_hardened(&head, path);

        // (If-None-Match, status wanted)
        let rows = [
            (etag.clone(), 304),
            (format!("W/{etag}"), 304),
            (format!("\"other\", {etag}"), 304),
            ("*".to_string(), 304),
            ("\"other\"".to_string(), 200),
        ];
        for (tag, want) in rows {
            let reply = api.raw("GET", path, &[("If-None-Match", &tag)], None);
            assert_eq!(reply.status, want, "{path} If-None-Match: {tag}");
            assert_eq!(reply.header("ETag"), Some(etag.as_str()), "{path} {tag}");
            if want == 304 {
                assert!(reply.body.is_empty(), "{path}: 304 with a body");
            } else {
                assert_eq!(reply.body, full.body, "{path}");
            }
        }
    }
}

#[test]
fn other_methods_and_unknown_files_are_refused() {
    let server = Server::start("");
    let api = server.client();
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        for (path, _) in FILES {
            let body: Option<&[u8]> = (method != "DELETE").then_some(b"{}");
            let reply = api.raw(method, path, &[("Content-Type", "application/json")], body);
            assert_eq!(reply.status, 405, "{method} {path}");
            assert_eq!(reply.header("Allow"), Some("GET, HEAD"), "{method} {path}");
            let (code, _) = error_parts(&reply.json());
            assert_eq!(code, "method_not_allowed", "{method} {path}");
            assert_hardened(&reply, path);
        }
    }
    for path in [
        "/assets/",
        "/assets/nope.js",
        "/assets/../Cargo.toml",
        "/assets/app.js/x",
    ] {
        let reply = api.raw("GET", path, &[], None);
        assert_eq!(reply.status, 404, "GET {path}");
        let (code, _) = error_parts(&reply.json());
        assert_eq!(code, "not_found", "{path}");
        assert_eq!(
            reply.header("X-Content-Type-Options"),
            Some("nosniff"),
            "{path}"
        );
    }
}

#[test]
fn the_page_names_its_place_and_loads_only_its_own_files() {
    let server = Server::start("");
    let api = server.client();
    let html = api.raw("GET", "/", &[], None).text();
    assert!(
        html.contains("<title>Settings › Integrations › Webhooks"),
        "title"
    );
    for crumb in ["<li>Settings</li>", "<li>Integrations</li>", ">Webhooks<"] {
        assert!(html.contains(crumb), "breadcrumb {crumb}");
    }
    // No inline script or style: the CSP would block them.
    assert!(!html.contains(" style="), "inline style attribute");
    assert!(!html.contains("<style"), "inline style element");
    let handlers: Vec<&str> = html
        .split(" on")
        .skip(1)
        .filter(|rest| {
            let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            name_len > 0 && rest.as_bytes().get(name_len) == Some(&b'=')
        })
        .collect();
    assert!(handlers.is_empty(), "inline event handlers: {handlers:?}");
    assert!(!html.contains("javascript:"), "javascript: URL");
    for script in html.split("<script").skip(1) {
        assert!(
            script.starts_with(" src=\"/assets/"),
            "inline or foreign script: <script{}",
            &script[..script.len().min(60)]
        );
    }
    // Every file the page refers to is served, and none lies elsewhere.
    let mut referred = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            let target = part.split('"').next().unwrap_or_default();
            referred.push(target.to_string());
        }
    }
    assert!(referred.len() >= 3, "{referred:?}");
    for target in referred {
        if target.starts_with('#') {
            continue;
        }
        assert!(target.starts_with("/assets/"), "refers to {target}");
        assert_eq!(api.raw("GET", &target, &[], None).status, 200, "{target}");
    }
}
