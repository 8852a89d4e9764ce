use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufRead, BufReader, BufWriter, ErrorKind, Read, Write};

use std::net::{Shutdown, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{HTTPVersion, Method};
use crate::connection::Connection;
use crate::util::{Drain, RefinedTcpStream};
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::{Header, Limits, Refusal, Request};

/// StatusSentry patch: the largest request head accepted, the request line and every header
/// line with their CRLFs. Upstream had no bound, on a line or on the number of lines. Patch 7
/// lowered it from 1 MiB to 64 KiB (nginx allows 32 KiB, Node.js 16 KiB) and answers 431
/// instead of closing in silence: every connection may hold a head this large while it is
/// read, so it is part of the memory `max_connections` bounds.
const MAX_HEAD: usize = 64 * 1024;

/// StatusSentry patch 7: the longest request line (with its CRLF); a longer one is 414.
const MAX_REQUEST_LINE: usize = 8 * 1024;

/// StatusSentry patch 7: the most header lines in one head; more is 431. Each is two
/// allocations, so the count is bounded as well as the bytes.
const MAX_HEADERS: usize = 100;

/// StatusSentry patch 7: after a refusal the server stops sending and reads, at most this
/// long and this much, what the client still sends before closing: closing a socket with
/// unread data resets the connection, and a reset may reach the client before it has read
/// the answer.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;

/// StatusSentry patch 5: a socket read timeout may run this much past the head's deadline
/// before it is set again, so that a connection's first request costs no extra system call.
const DEADLINE_SLACK: Duration = Duration::from_millis(100);

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: Option<SocketAddr>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    /// StatusSentry patch 5: the socket itself (shared with the two halves), for its read
    /// timeout; `None` over SSL.
    socket: Option<Arc<Connection>>,

    /// StatusSentry patch 5: the server's bounds.
    limits: Arc<Limits>,

    /// StatusSentry patch 5: when the first request's head must be complete (counted from
    /// the accept); taken by the first read.
    first_deadline: Option<Instant>,

    /// StatusSentry patch 5: the read timeout set on the socket now.
    read_timeout: Option<Duration>,

    /// StatusSentry patch 6: set when a request's body was left unread beyond what may be
    /// drained; the connection then closes.
    unfinished: Arc<AtomicBool>,
}

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    /// StatusSentry patch 7: no request began (the client closed or stayed idle past its
    /// timeout), or the previous body was left unread; closed without an answer.
    Idle,
    /// StatusSentry patch 7: the head is answered with this refusal, then the connection
    /// closes.
    Refused(Refusal, HTTPVersion),
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    ReadIoError(IoError),
}

/// StatusSentry patch 7: why a line of the head could not be read.
enum LineError {
    /// Over the line's or the head's limit.
    TooLong,
    /// The deadline passed, or the socket's idle timeout; `started` when part of the line
    /// had arrived.
    TimedOut { started: bool },
    /// The client closed; `started` as above.
    Closed { started: bool },
    Io(IoError),
}

fn refused(status: u16, message: impl Into<String>, header: Option<&str>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
        header: header.map(str::to_string),
    }
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    ///
    /// StatusSentry patch 5: `limits` are the server's bounds and `accepted` when the
    /// connection was accepted, from which its first head's deadline runs; the accept loop
    /// has set the socket's read timeout to `read_timeout`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        limits: Arc<Limits>,
        accepted: Instant,
        read_timeout: Option<Duration>,
    ) -> ClientConnection {
        // A client that already went away has no address; its first read ends the connection.
        let remote_addr = read_socket.peer_addr().ok().flatten();
        let secure = read_socket.secure();
        let socket = read_socket.connection();

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            socket,
            first_deadline: limits.header_timeout.map(|t| accepted + t),
            limits,
            read_timeout,
            unfinished: Arc::new(AtomicBool::new(false)),
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads the next line of the head, without its CRLF.
    ///
    /// StatusSentry patch: reads from the buffer a line at a time rather than a byte per
    /// call, and refuses a line longer than `max_line` or one that would take the head past
    /// `room` bytes (what is left of `MAX_HEAD`); `room` is reduced by the line read. Patch 5:
    /// before each read that would block, the socket's read timeout is cut to what is left
    /// until `deadline`, so the whole head must arrive by then, however slowly it trickles.
    fn read_next_line(
        &mut self,
        room: &mut usize,
        max_line: usize,
        deadline: Option<Instant>,
    ) -> Result<Vec<u8>, LineError> {
        let limit = (*room).min(max_line);
        let mut line = Vec::new();
        loop {
            let reader = match self.next_header_source.turn() {
                Some(r) => r,
                None => {
                    return Err(LineError::Closed {
                        started: !line.is_empty(),
                    })
                }
            };
            if reader.buffer().is_empty() {
                if let Some(deadline) = deadline {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(LineError::TimedOut {
                            started: !line.is_empty(),
                        });
                    }
                    let current = self.read_timeout.unwrap_or(Duration::MAX);
                    if current > left + DEADLINE_SLACK {
                        if let Some(socket) = &self.socket {
                            socket.set_read_timeout(Some(left)).map_err(LineError::Io)?;
                            self.read_timeout = Some(left);
                        }
                    }
                }
            }
            let available = match reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    // The socket timed out: past the deadline (or the idle timeout when there
                    // is none) the head is late; before it, the timeout was an older, shorter
                    // one, and the read is tried again with what is left.
                    match deadline {
                        Some(d) if Instant::now() < d => continue,
                        _ => {
                            return Err(LineError::TimedOut {
                                started: !line.is_empty(),
                            })
                        }
                    }
                }
                Err(e) => return Err(LineError::Io(e)),
            };
            if available.is_empty() {
                return Err(LineError::Closed {
                    started: !line.is_empty(),
                });
            }
            let take = available.len().min(limit - line.len());
            if take == 0 {
                return Err(LineError::TooLong);
            }
            match available[..take].iter().position(|&b| b == b'\n') {
                Some(i) => {
                    line.extend_from_slice(&available[..=i]);
                    reader.consume(i + 1);
                    // A lone LF belongs to the line, as before: only CRLF ends it.
                    if line.ends_with(b"\r\n") {
                        *room -= line.len();
                        line.truncate(line.len() - 2);
                        return Ok(line);
                    }
                }
                None => {
                    line.extend_from_slice(&available[..take]);
                    reader.consume(take);
                }
            }
        }
    }

    /// StatusSentry patch 5: puts the socket's idle read timeout back after a head read
    /// under a deadline; a system call only when it was changed.
    fn restore_read_timeout(&mut self) {
        if self.read_timeout != self.limits.idle_timeout {
            if let Some(socket) = &self.socket {
                if socket.set_read_timeout(self.limits.idle_timeout).is_ok() {
                    self.read_timeout = self.limits.idle_timeout;
                }
            }
        }
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        let result = self.read_head();
        self.restore_read_timeout();
        result
    }

    fn read_head(&mut self) -> Result<Request, ReadError> {
        // Wait for the previous request's body to be done with the connection.
        if self.next_header_source.turn().is_none() {
            return Err(ReadError::Idle);
        }
        // StatusSentry patch 9: a body left unread (over the drain limit, or cut off) ends the
        // connection, gracefully: closed with the client's bytes unread, it would be reset,
        // and a client still sending its body would lose the answer (413, say) to the reset.
        if self.unfinished.load(Ordering::Acquire) {
            self.linger();
            return Err(ReadError::Idle);
        }
        // StatusSentry patch 5: a connection's first head must be complete within the header
        // timeout of the accept; a kept-alive connection may wait for its next request up to
        // the idle timeout, and that request's head then has the header timeout from its
        // first byte.
        let deadline = match self.first_deadline.take() {
            Some(d) => Some(d),
            None => {
                match self.next_header_source.fill_buf() {
                    Ok(b) if !b.is_empty() => {}
                    _ => return Err(ReadError::Idle),
                }
                self.limits.header_timeout.map(|t| Instant::now() + t)
            }
        };
        let mut room = MAX_HEAD;
        let v11 = HTTPVersion(1, 1);
        let late = || {
            refused(
                408,
                "the request head did not arrive in time".to_string(),
                None,
            )
        };

        let line = match self.read_next_line(&mut room, MAX_REQUEST_LINE, deadline) {
            Ok(line) => line,
            Err(LineError::TooLong) => {
                return Err(ReadError::Refused(
                    refused(
                        414,
                        format!("the request line is over {MAX_REQUEST_LINE} bytes"),
                        None,
                    ),
                    v11,
                ))
            }
            Err(LineError::TimedOut { started: true }) => {
                return Err(ReadError::Refused(late(), v11))
            }
            Err(LineError::TimedOut { started: false }) => return Err(ReadError::Idle),
            Err(LineError::Closed { .. }) => return Err(ReadError::Idle),
            Err(LineError::Io(e)) => return Err(ReadError::ReadIoError(e)),
        };
        let line = match AsciiString::from_ascii(line) {
            Ok(line) => line,
            Err(_) => {
                return Err(ReadError::Refused(
                    refused(400, "the request line is not ASCII", None),
                    v11,
                ))
            }
        };
        let (method, path, version) = parse_request_line(line.as_str().trim()).map_err(|_| {
            ReadError::Refused(refused(400, "the request line is malformed", None), v11)
        })?;

        let mut headers: Vec<Header> = Vec::new();
        loop {
            let line = match self.read_next_line(&mut room, MAX_HEAD, deadline) {
                Ok(line) => line,
                Err(LineError::TooLong) => {
                    return Err(ReadError::Refused(
                        refused(
                            431,
                            format!("the request head is over {MAX_HEAD} bytes"),
                            None,
                        ),
                        version,
                    ))
                }
                Err(LineError::TimedOut { .. }) => {
                    return Err(ReadError::Refused(late(), version))
                }
                Err(LineError::Closed { .. }) => return Err(ReadError::Idle),
                Err(LineError::Io(e)) => return Err(ReadError::ReadIoError(e)),
            };
            if line.is_empty() {
                break;
            }
            if headers.len() == MAX_HEADERS {
                return Err(ReadError::Refused(
                    refused(
                        431,
                        format!("the request has over {MAX_HEADERS} header lines"),
                        None,
                    ),
                    version,
                ));
            }
            // The name, when it is one, says which header was at fault.
            let name = line
                .iter()
                .position(|&b| b == b':')
                .map(|i| &line[..i])
                .filter(|n| !n.is_empty() && n.iter().all(|b| b.is_ascii_graphic()))
                .map(|n| String::from_utf8_lossy(n).into_owned());
            let line = match AsciiString::from_ascii(line) {
                Ok(line) => line,
                Err(_) => {
                    return Err(ReadError::Refused(
                        refused(
                            400,
                            "header values must be ASCII (percent-encode other characters)",
                            name.as_deref(),
                        ),
                        version,
                    ))
                }
            };
            match Header::from_str(line.as_str().trim()) {
                Ok(h) => headers.push(h),
                Err(_) => {
                    return Err(ReadError::Refused(
                        refused(400, "a header line is malformed", name.as_deref()),
                        version,
                    ))
                }
            }
        }

        // StatusSentry patch 7: the body's framing is checked before anything is read of it.
        // Only `chunked` is decoded; any other coding would be read as if it were chunked.
        // Every `Transfer-Encoding` line counts: several lines are one list (RFC 9110, 5.3),
        // and a second line with another coding must not hide behind a first `chunked`.
        let codings: Vec<&str> = headers
            .iter()
            .filter(|h| h.field.equiv("Transfer-Encoding"))
            .map(|h| h.value.as_str().trim())
            .collect();
        let transfer_encoding = (!codings.is_empty()).then(|| codings.join(", "));
        if let Some(te) = transfer_encoding.as_deref() {
            // Both framings at once is how requests are smuggled past a proxy that reads the
            // other one (RFC 9112, 6.3); refuse rather than pick.
            if headers.iter().any(|h| h.field.equiv("Content-Length")) {
                return Err(ReadError::Refused(
                    refused(
                        400,
                        "send either Transfer-Encoding or Content-Length, not both",
                        Some("Transfer-Encoding"),
                    ),
                    version,
                ));
            }
            if !te.eq_ignore_ascii_case("chunked") {
                return Err(ReadError::Refused(
                    refused(
                        501,
                        format!("transfer coding {te:?} is not supported; send chunked or a Content-Length"),
                        Some("Transfer-Encoding"),
                    ),
                    version,
                ));
            }
        } else {
            // Upstream read an unparsable length as no body, and the body as the next request.
            let mut lengths = headers
                .iter()
                .filter(|h| h.field.equiv("Content-Length"))
                .map(|h| h.value.as_str().trim().parse::<usize>());
            if let Some(first) = lengths.next() {
                let consistent = match first {
                    Ok(n) => lengths.all(|l| l == Ok(n)),
                    Err(_) => false,
                };
                if !consistent {
                    return Err(ReadError::Refused(
                        refused(
                            400,
                            "Content-Length must be one whole number",
                            Some("Content-Length"),
                        ),
                        version,
                    ));
                }
            }
        }

        // building the writer for the request
        let writer = self.sink.next().unwrap();

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // StatusSentry patch 8: the head is complete, so its deadline no longer applies. A
        // short body is read right here (`new_request`), and under the head's cut timeout it
        // had only what was left of the head's time: a head that arrived in 9.9 s left its
        // body 0.1 s, and the request was dropped without an answer.
        self.restore_read_timeout();

        // building the next reader
        let request = crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            self.remote_addr,
            data_source,
            writer,
            Drain {
                limit: self.limits.max_drain,
                unfinished: self.unfinished.clone(),
            },
        )
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version)
                }
            }
        })?;

        // return the request
        Ok(request)
    }

    /// StatusSentry patch 7: answers a refused head (with `Connection: close`), then closes
    /// gracefully: stops sending, and reads what the client still sends for a moment, so
    /// that the answer is not lost to a reset.
    fn refuse(&mut self, refusal: Refusal, version: HTTPVersion) {
        let response = self.limits.answer(&refusal);
        if let Some(mut writer) = self.sink.next() {
            let _ = response
                .with_connection_close()
                .raw_print(&mut writer, version, &[], false, None);
            let _ = writer.flush();
        }
        self.linger();
    }

    fn linger(&mut self) {
        let Some(socket) = self.socket.clone() else {
            return;
        };
        let _ = socket.shutdown(Shutdown::Write);
        let end = Instant::now() + LINGER;
        let mut buf = [0u8; 8 * 1024];
        let mut read = 0;
        while read < LINGER_BYTES {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match socket.read_shared(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        use crate::{Response, StatusCode};

        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            return None;
        }

        let rq = match self.read() {
            Err(ReadError::Refused(refusal, version)) => {
                // we don't know where the next request would start, so we have to close
                self.refuse(refusal, version);
                return None;
            }

            Err(ReadError::ExpectationFailed(ver)) => {
                let writer = self.sink.next().unwrap();
                let response = Response::new_empty(StatusCode(417));
                response.raw_print(writer, ver, &[], true, None).ok();
                return None; // TODO: should be recoverable, but needs handling in case of body
            }

            Err(ReadError::Idle) | Err(ReadError::ReadIoError(_)) => return None,

            Ok(rq) => rq,
        };

        // checking HTTP version
        if *rq.http_version() > (1, 1) {
            // StatusSentry patch 7: then close, since the request's body was not read.
            // (Upstream wrote the answer through a writer queued behind the request's own,
            // which waits for the request to be dropped, and then read on.)
            let refusal = refused(505, "only HTTP/1.0 and HTTP/1.1 are served", None);
            let _ = rq.respond(self.limits.answer(&refusal).with_connection_close());
            self.linger();
            return None;
        }

        // updating the status of the connection
        let connection_header = rq
            .headers()
            .iter()
            .find(|h| h.field.equiv("Connection"))
            .map(|h| h.value.as_str());

        let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

        match lowercase {
            Some(ref val) if val.contains("close") => self.no_more_requests = true,
            Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
            Some(ref val)
                if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
            {
                self.no_more_requests = true
            }
            None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
            _ => (),
        };

        // returning the request
        Some(rq)
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ()> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(()),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ()> {
    let mut parts = line.split(' ');

    let method = parts.next().and_then(|w| w.parse().ok());
    let path = parts.next().map(ToOwned::to_owned);
    let version = parts.next().and_then(|w| parse_http_version(w).ok());

    method
        .and_then(|method| Some((method, path?, version?)))
        .ok_or(())
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
    }
}
