//! The settings page (SPEC 6): the files in `assets/`, compiled into the binary and served at
//! `/` and `/assets/…` without authentication; the page signs in to the API by itself. Every
//! answer here carries a strict Content-Security-Policy and the other browser hardening
//! headers. This module serves fixed bytes only: it reads no request body and no store.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use super::{ApiError, Reply};

/// No inline script or style, nothing from another origin, no framing, no form posts.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
    base-uri 'none'; form-action 'none'";

/// One file of the page.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// The page: `index.html` at `/`, the rest under `/assets/`.
const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../assets/index.html"),
    },
    Asset {
        path: "/assets/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/app.js"),
    },
    Asset {
        path: "/assets/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/app.css"),
    },
    Asset {
        path: "/assets/favicon.svg",
        content_type: "image/svg+xml; charset=utf-8",
        body: include_bytes!("../../assets/favicon.svg"),
    },
];

/// Every file is revalidated on each use: the ETag makes that a bodiless 304, and a new
/// binary's page is never mixed with an old cached script.
const CACHE_CONTROL: &str = "no-cache";

/// True for the paths this module answers; they bypass the API's authentication.
pub fn owns(path: &str) -> bool {
    path == "/" || path == "/assets" || path.starts_with("/assets/")
}

/// Answers a request for `path`, one that [`owns`] claims.
pub fn serve(path: &str, method: &str, headers: &[(String, String)]) -> Reply {
    let Some((index, asset)) = ASSETS.iter().enumerate().find(|(_, a)| a.path == path) else {
        return hardened(Reply::error(&ApiError::not_found("page file")));
    };
    if method != "GET" && method != "HEAD" {
        let mut reply = Reply::error(&ApiError::new(
            405,
            "method_not_allowed",
            format!("{path} takes GET, HEAD"),
        ));
        reply.headers.push(("Allow", "GET, HEAD".into()));
        return hardened(reply);
    }
    let etag = &etags()[index];
    let fresh = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("if-none-match"))
        .is_some_and(|(_, v)| matches_etag(v, etag));
    let mut reply = Reply {
        status: if fresh { 304 } else { 200 },
        body: if fresh {
            Vec::new()
        } else {
            asset.body.to_vec()
        },
        content_type: asset.content_type,
        headers: Vec::new(),
    };
    reply.headers.push(("ETag", etag.clone()));
    reply.headers.push(("Cache-Control", CACHE_CONTROL.into()));
    hardened(reply)
}

/// Adds the browser hardening headers.
fn hardened(mut reply: Reply) -> Reply {
    reply.headers.extend([
        ("Content-Security-Policy", CONTENT_SECURITY_POLICY.into()),
        ("X-Content-Type-Options", "nosniff".into()),
        ("Referrer-Policy", "no-referrer".into()),
        ("X-Frame-Options", "DENY".into()),
        ("Cross-Origin-Opener-Policy", "same-origin".into()),
    ]);
    reply
}

/// A strong ETag per asset, from its content, computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.body);
                let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

/// `If-None-Match`: `*` or a list of tags, weak or strong (RFC 9110 13.1.2 compares weakly).
fn matches_etag(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match() {
        let tag = "\"abc\"";
        let rows = [
            ("\"abc\"", true),
            ("W/\"abc\"", true),
            ("\"x\", \"abc\"", true),
            ("*", true),
            ("\"abd\"", false),
            ("abc", false),
            ("", false),
        ];
        for (header, want) in rows {
            assert_eq!(matches_etag(header, tag), want, "{header}");
        }
    }

    #[test]
    fn every_asset_is_answered_with_its_own_tag() {
        let tags = etags();
        assert_eq!(tags.len(), ASSETS.len());
        for (i, a) in ASSETS.iter().enumerate() {
            assert!(owns(a.path), "{}", a.path);
            for other in &tags[i + 1..] {
                assert_ne!(&tags[i], other, "{}", a.path);
            }
        }
        assert!(!owns("/api/v1/endpoints"));
        assert!(!owns("/assetsx"));
    }

    #[test]
    fn the_page_loads_nothing_inline() {
        let html = std::str::from_utf8(ASSETS[0].body).expect("index.html is UTF-8");
        assert!(!html.contains("style="), "inline style attribute");
        assert!(!html.contains("<style"), "inline style element");
        for script in html.split("<script").skip(1) {
            assert!(
                script.starts_with(" src=\"/assets/"),
                "inline script: {script}"
            );
        }
        let js = std::str::from_utf8(ASSETS[1].body).expect("app.js is UTF-8");
        assert!(!js.contains("innerHTML"), "app.js must not parse HTML");
    }
}
