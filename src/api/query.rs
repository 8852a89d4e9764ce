//! The query string and path segments as handlers read them: percent-decoding, the one
//! spelling of a whole number, and pagination (`?limit=`, `?cursor=`, `next_cursor`).

use serde_json::{Value, json};

use super::{ApiError, Reply, Req, Result};

/// `?limit=` (1–500, default 50) and `?cursor=` (an opaque position from `next_cursor`).
pub struct Page {
    pub limit: usize,
    pub cursor: Option<i64>,
}

impl Page {
    pub fn from(req: &Req) -> Result<Page> {
        let limit = match req.query("limit") {
            None => 50,
            Some(s) => match whole_number(s) {
                Some(n @ 1..=500) => n as usize,
                _ => {
                    return Err(ApiError::field(
                        "limit",
                        "limit must be a whole number from 1 to 500",
                    ));
                }
            },
        };
        let cursor = match req.query("cursor") {
            None | Some("") => None,
            Some(s) => Some(decode_cursor(s).ok_or_else(|| {
                ApiError::field("cursor", "cursor is not one this server gave out")
            })?),
        };
        Ok(Page { limit, cursor })
    }

    /// `{"data": [...], "next_cursor": ...}` from one more row than the page holds.
    pub fn wrap<T>(
        &self,
        mut rows: Vec<T>,
        seq: impl Fn(&T) -> i64,
        render: impl Fn(&T) -> Result<Value>,
    ) -> Result<Reply> {
        let next = if rows.len() > self.limit {
            rows.truncate(self.limit);
            rows.last().map(|r| Value::from(encode_cursor(seq(r))))
        } else {
            None
        };
        let data = rows.iter().map(render).collect::<Result<Vec<Value>>>()?;
        Ok(Reply::json(
            200,
            &json!({"data": data, "next_cursor": next.unwrap_or(Value::Null)}),
        ))
    }
}

fn encode_cursor(seq: i64) -> String {
    format!("c{seq}")
}

fn decode_cursor(text: &str) -> Option<i64> {
    whole_number(text.strip_prefix('c')?).filter(|n| *n > 0)
}

/// A whole number written as `encode_cursor` and `format!` write one: digits only, no sign, no
/// leading zero, so that every number the API reads has one spelling (`+5` and `05` are not 5).
pub(super) fn whole_number(text: &str) -> Option<i64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

pub(super) fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode(k, Plus::Space),
                percent_decode(v, Plus::Space),
            )
        })
        .collect()
}

/// What a `+` means where it is decoded: a space in a query string
/// (`application/x-www-form-urlencoded`), itself in a path segment (RFC 3986), so that a path
/// parameter such as an id holding `+` reaches the handler as sent.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Plus {
    Space,
    Literal,
}

/// A query key or value, or a path segment: `%XX` is a byte, and `+` as `plus` says; a `%` not
/// followed by two hex digits stays as it is, and invalid UTF-8 is replaced.
pub(super) fn percent_decode(s: &str, plus: Plus) -> String {
    // `%2B` is a literal `+`, so spaces are put back before the escapes are read.
    let spaced;
    let s = match plus {
        Plus::Space => {
            spaced = s.replace('+', " ");
            spaced.as_str()
        }
        Plus::Literal => s,
    };
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        // Input, decoded in a query string, decoded in a path segment.
        let rows = [
            ("abc", "abc", "abc"),
            (
                "2023-10-27T14%3A30%3A00Z",
                "2023-10-27T14:30:00Z",
                "2023-10-27T14:30:00Z",
            ),
            ("a+b", "a b", "a+b"),
            ("a%2Bb", "a+b", "a+b"),
            ("a%20b", "a b", "a b"),
            ("100%", "100%", "100%"),
            ("%zz", "%zz", "%zz"),
            ("%4", "%4", "%4"),
        ];
        for (input, query, path) in rows {
            assert_eq!(
                percent_decode(input, Plus::Space),
                query,
                "{input} in a query"
            );
            assert_eq!(
                percent_decode(input, Plus::Literal),
                path,
                "{input} in a path"
            );
        }
    }

    #[test]
    fn an_escaped_plus_stays_a_plus() {
        assert_eq!(percent_decode("a%2Bb+c", Plus::Space), "a+b c");
        assert_eq!(percent_decode("a%2Bb+c", Plus::Literal), "a+b+c");
        assert_eq!(
            percent_decode("%E2%9C%93%FF", Plus::Space),
            "\u{2713}\u{FFFD}"
        );
    }

    #[test]
    fn cursors_round_trip_and_refuse_junk() {
        assert_eq!(decode_cursor(&encode_cursor(42)), Some(42));
        for junk in [
            "42",
            "c",
            "cx",
            "c-1",
            "c0",
            "c+5",
            "c05",
            "c 5",
            "c99999999999999999999",
        ] {
            assert_eq!(decode_cursor(junk), None, "{junk}");
        }
    }
}
