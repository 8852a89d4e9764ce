use std::error::Error;
use std::fmt;
use std::io::{Error as IoError, ErrorKind, Read, Result as IoResult};

/// StatusSentry patch 8: the bytes a chunked body may take on the wire. The decoder
/// (`chunked_transfer`) collects a chunk-size line into a `Vec` until `\r` and skips a chunk
/// extension byte by byte until `\r`; both are unbounded, and the drain limit and a handler's
/// `take(limit)` count decoded bytes only. So an endless chunk-size line grew memory without
/// limit, and an endless extension kept a connection thread reading forever, on a request
/// that needed no token. Under the decoder, this reader ends the body with `BodyOverLimit`
/// once `cap` raw bytes have been read; the error leaves the connection unfinished, so it
/// closes after the answer.
pub struct RawCap<R> {
    inner: R,
    left: usize,
}

impl<R> RawCap<R> {
    pub fn new(inner: R, cap: usize) -> RawCap<R> {
        RawCap { inner, left: cap }
    }

    /// The raw bytes allowed for a body whose decoded length may reach `limit`: room for
    /// framing as dense as one chunk header per decoded byte pair, and 64 KiB of slack for
    /// extensions and the last chunk.
    pub fn for_limit(inner: R, limit: usize) -> RawCap<R> {
        RawCap::new(inner, limit.saturating_mul(2).saturating_add(64 * 1024))
    }
}

impl<R: Read> Read for RawCap<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            return Err(IoError::new(ErrorKind::InvalidData, BodyOverLimit));
        }
        let room = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..room])?;
        self.left -= n;
        Ok(n)
    }
}

/// The error a chunked body's reader returns once its framing took more bytes than its
/// limit allows (`RawCap`); a handler can tell it from a malformed body with
/// `io::Error::get_ref` and `is::<BodyOverLimit>()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyOverLimit;

impl fmt::Display for BodyOverLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the chunked body took more bytes than its limit allows")
    }
}

impl Error for BodyOverLimit {}

#[cfg(test)]
mod tests {
    use super::{BodyOverLimit, RawCap};
    use chunked_transfer::Decoder;
    use std::io::{self, Read};

    /// Reads `decoder` to its end or its first error, as a handler would.
    fn decode(source: impl Read, cap: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Decoder::new(RawCap::new(source, cap))
            .take(1 << 20)
            .read_to_end(&mut out)
            .map(|_| out)
    }

    fn over_limit(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|e| e.is::<BodyOverLimit>())
    }

    #[test]
    fn a_body_within_the_cap_decodes() {
        let body = b"3\r\nhel\r\n4;x=y\r\nlo w\r\n0\r\n\r\n";
        assert_eq!(decode(&body[..], body.len()).unwrap(), b"hello w");
    }

    #[test]
    fn an_endless_chunk_size_line_ends_at_the_cap() {
        // Hex digits without end: the decoder would push them into a Vec forever.
        let endless = io::repeat(b'f');
        let e = decode(endless, 100_000).unwrap_err();
        assert!(over_limit(&e), "{e}");
    }

    #[test]
    fn an_endless_chunk_extension_ends_at_the_cap() {
        let endless = b"1;".chain(io::repeat(b'a'));
        let e = decode(endless, 100_000).unwrap_err();
        assert!(over_limit(&e), "{e}");
    }

    #[test]
    fn the_cap_counts_framing_not_only_data() {
        // A 10-byte body in 1-byte chunks takes 6 wire bytes per data byte.
        let mut body = b"1\r\nx\r\n".repeat(10);
        body.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(decode(&body[..], body.len()).unwrap(), b"xxxxxxxxxx");
        let e = decode(&body[..], 30).unwrap_err();
        assert!(over_limit(&e), "{e}");
    }

    #[test]
    fn the_limit_leaves_room_for_ordinary_framing() {
        let limit = 256 * 1024;
        let mut body = Vec::new();
        for chunk in vec![b'x'; limit].chunks(1000) {
            body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            body.extend_from_slice(chunk);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
        let mut out = Vec::new();
        Decoder::new(RawCap::for_limit(&body[..], limit))
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out.len(), limit);
    }
}
