//! # Simple usage
//!
//! ## Creating the server
//!
//! The easiest way to create a server is to call `Server::http()`.
//!
//! The `http()` function returns an `IoResult<Server>` which will return an error
//! in the case where the server creation fails (for example if the listening port is already
//! occupied).
//!
//! ```no_run
//! let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! ```
//!
//! A newly-created `Server` will immediately start listening for incoming connections and HTTP
//! requests.
//!
//! ## Receiving requests
//!
//! Calling `server.recv()` will block until the next request is available.
//! This function returns an `IoResult<Request>`, so you need to handle the possible errors.
//!
//! ```no_run
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//!
//! loop {
//!     // blocks until the next request is received
//!     let request = match server.recv() {
//!         Ok(rq) => rq,
//!         Err(e) => { println!("error: {}", e); break }
//!     };
//!
//!     // do something with the request
//!     // ...
//! }
//! ```
//!
//! In a real-case scenario, you will probably want to spawn multiple worker tasks and call
//! `server.recv()` on all of them. Like this:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::thread;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! let server = Arc::new(server);
//! let mut guards = Vec::with_capacity(4);
//!
//! for _ in (0 .. 4) {
//!     let server = server.clone();
//!
//!     let guard = thread::spawn(move || {
//!         loop {
//!             let rq = server.recv().unwrap();
//!
//!             // ...
//!         }
//!     });
//!
//!     guards.push(guard);
//! }
//! ```
//!
//! If you don't want to block, you can call `server.try_recv()` instead.
//!
//! ## Handling requests
//!
//! The `Request` object returned by `server.recv()` contains informations about the client's request.
//! The most useful methods are probably `request.method()` and `request.url()` which return
//! the requested method (`GET`, `POST`, etc.) and url.
//!
//! To handle a request, you need to create a `Response` object. See the docs of this object for
//! more infos. Here is an example of creating a `Response` from a file:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! ```
//!
//! All that remains to do is call `request.respond()`:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! # let request = server.recv().unwrap();
//! # let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! let _ = request.respond(response);
//! ```
// StatusSentry: a path dependency's warnings are not capped like a registry crate's; these
// two (an unused import, an unused dummy trait) are upstream's and harmless.
#![allow(unused_imports, dead_code)]
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]

#[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
use zeroize::Zeroizing;

use std::error::Error;
use std::io::Error as IoError;
use std::io::ErrorKind as IoErrorKind;
use std::io::Result as IoResult;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use client::ClientConnection;
use connection::Connection;
use util::MessagesQueue;

pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use connection::{ConfigListenAddr, ListenAddr, Listener};
pub use request::{ReadWrite, Request};
pub use response::{Response, ResponseBox};
pub use test::TestRequest;
pub use util::BodyOverLimit;

/// StatusSentry patch: what `Server::from_listener_with_handler` calls for each request.
pub type Handler = Arc<dyn Fn(Request) + Send + Sync + 'static>;

/// StatusSentry patch 7: a request head, or a connection, the server answers by itself
/// before any handler sees it, and closes after the answer.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// 503 (`max_connections` reached), 400 (malformed, or not ASCII), 408 (the head came too
    /// slowly), 414 (request line too long), 431 (head too long), 501 (unknown transfer
    /// coding) or 505 (HTTP version).
    pub status: u16,
    /// What was wrong, for a person.
    pub message: String,
    /// The request header at fault, when one was.
    pub header: Option<String>,
}

/// StatusSentry patch 7: builds the answer to a `Refusal`.
pub type Refuse = Arc<dyn Fn(&Refusal) -> Response<std::io::Cursor<Vec<u8>>> + Send + Sync>;

/// StatusSentry patch 5: the bounds a server keeps; see `Server::from_listener_with_limits`.
/// The default is upstream's behaviour (no bounds) but for the drain of unread bodies.
#[derive(Clone)]
pub struct Limits {
    /// Connections open at once. One more is answered 503 (through `refuse`) from the accept
    /// thread, without blocking it, and closed. The connection threads number at most this.
    pub max_connections: usize,
    /// The whole request head must arrive within this: from the accept for a connection's
    /// first request, from its first byte for each later one. Late: 408, then closed.
    pub header_timeout: Option<Duration>,
    /// Each accepted socket's read and write timeout: how long one read or write may stall,
    /// and how long a kept-alive connection may wait for its next request.
    pub idle_timeout: Option<Duration>,
    /// The most of a request body left unread that is drained to keep the connection open;
    /// a longer body is not read, and the connection closes after the answer.
    pub max_drain: usize,
    /// Builds the answer to a refusal; `None`: the message as plain text.
    pub refuse: Option<Refuse>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: usize::MAX,
            header_timeout: None,
            idle_timeout: None,
            max_drain: 1024 * 1024,
            refuse: None,
        }
    }
}

impl Limits {
    pub(crate) fn answer(&self, refusal: &Refusal) -> Response<std::io::Cursor<Vec<u8>>> {
        match &self.refuse {
            Some(refuse) => refuse(refusal),
            None => Response::from_data(refusal.message.clone().into_bytes())
                .with_status_code(refusal.status),
        }
    }
}

/// StatusSentry patch 5: whether a server's accept loop still runs. It ends only when the
/// server is dropped, or on an error no retry can mend (the listener itself is broken); a
/// panic in it ends it too. Cheap to clone and to ask.
#[derive(Clone)]
pub struct AcceptLoop(Arc<AtomicBool>);

impl AcceptLoop {
    pub fn running(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Clears an `AcceptLoop` when the accept thread ends, by returning or by unwinding.
struct AcceptLoopEnds(Arc<AtomicBool>);

impl Drop for AcceptLoopEnds {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// StatusSentry patch 5: what the accept loop does after an `accept` error.
#[derive(Debug, PartialEq, Eq)]
enum AcceptError {
    /// Try again at once: the pending connection failed (the peer reset it, the network
    /// dropped it) or the call was interrupted or timed out.
    Retry,
    /// Out of descriptors or memory: wait a moment, since retrying at once fails the same way.
    Exhausted,
    /// The listener itself is broken; the loop ends.
    Fatal,
}

/// Sorts an `accept` error. Linux passes the new socket's pending network errors to
/// `accept` (accept(2), "Error handling"), and those are to be treated like `EAGAIN`.
fn accept_error(e: &IoError) -> AcceptError {
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => AcceptError::Exhausted,
        Some(
            libc::EAGAIN
            | libc::EINTR
            | libc::ECONNABORTED
            | libc::EPROTO
            | libc::EPERM
            | libc::ENETDOWN
            | libc::ENOPROTOOPT
            | libc::EHOSTDOWN
            | libc::ENONET
            | libc::EHOSTUNREACH
            | libc::EOPNOTSUPP
            | libc::ENETUNREACH
            | libc::ECONNRESET
            | libc::ETIMEDOUT
            | libc::ENOSR
            | libc::ESOCKTNOSUPPORT
            | libc::EPROTONOSUPPORT,
        ) => AcceptError::Retry,
        Some(_) => AcceptError::Fatal,
        None => match e.kind() {
            IoErrorKind::WouldBlock | IoErrorKind::Interrupted | IoErrorKind::TimedOut => {
                AcceptError::Retry
            }
            IoErrorKind::OutOfMemory => AcceptError::Exhausted,
            _ => AcceptError::Fatal,
        },
    }
}

/// StatusSentry patch 5: how long the accept loop waits after running out of descriptors
/// or memory before it tries again.
const EXHAUSTED_BACKOFF: Duration = Duration::from_millis(100);

/// StatusSentry patch 5: one connection's place in `Limits::max_connections`, given back
/// when its task ends or is dropped unrun.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// StatusSentry patch 5: answers a connection over `max_connections` from the accept thread
/// and closes it. The socket is non-blocking, so the thread never waits on the client: the
/// answer fits a fresh socket's send buffer, and whatever the client has already sent is read
/// first so that closing does not reset the connection under the answer.
fn refuse_busy(conn: Connection, limits: &Limits) {
    let refusal = Refusal {
        status: 503,
        message: "the server has too many open connections; try again shortly".into(),
        header: None,
    };
    let mut bytes = Vec::new();
    if limits
        .answer(&refusal)
        .with_connection_close()
        .raw_print(&mut bytes, common::HTTPVersion(1, 1), &[], false, None)
        .is_err()
    {
        return;
    }
    if conn.set_nonblocking(true).is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let drain = |conn: &Connection, sink: &mut [u8]| {
        for _ in 0..16 {
            match conn.read_shared(sink) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
    };
    drain(&conn, &mut sink);
    let _ = conn.write_shared(&bytes);
    let _ = conn.shutdown(Shutdown::Write);
    drain(&conn, &mut sink);
}

mod client;
mod common;
mod connection;
mod request;
mod response;
mod ssl;
mod test;
mod util;

/// The main class of this library.
///
/// Destroying this object will immediately close the listening socket and the reading
///  part of all the client's connections. Requests that have already been returned by
///  the `recv()` function will not close and the responses will be transferred to the client.
pub struct Server {
    // should be false as long as the server exists
    // when set to true, all the subtasks will close within a few hundreds ms
    close: Arc<AtomicBool>,

    // queue for messages received by child threads
    messages: Arc<MessagesQueue<Message>>,

    // result of TcpListener::local_addr()
    listening_addr: ListenAddr,

    // StatusSentry patch 5: whether the accept loop still runs
    accept_loop: AcceptLoop,
}

enum Message {
    Error(IoError),
    NewRequest(Request),
}

impl From<IoError> for Message {
    fn from(e: IoError) -> Message {
        Message::Error(e)
    }
}

impl From<Request> for Message {
    fn from(rq: Request) -> Message {
        Message::NewRequest(rq)
    }
}

// this trait is to make sure that Server implements Share and Send
#[doc(hidden)]
trait MustBeShareDummy: Sync + Send {}
#[doc(hidden)]
impl MustBeShareDummy for Server {}

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// Represents the parameters required to create a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The addresses to try to listen to.
    pub addr: ConfigListenAddr,

    /// If `Some`, then the server will use SSL to encode the communications.
    pub ssl: Option<SslConfig>,
}

/// Configuration of the server for SSL.
#[derive(Debug, Clone)]
pub struct SslConfig {
    /// Contains the public certificate to send to clients.
    pub certificate: Vec<u8>,
    /// Contains the ultra-secret private key used to decode communications.
    pub private_key: Vec<u8>,
}

impl Server {
    /// Shortcut for a simple server on a specific address.
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: None,
        })
    }

    /// Shortcut for an HTTPS server on a specific address.
    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
    #[inline]
    pub fn https<A>(
        addr: A,
        config: SslConfig,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: Some(config),
        })
    }

    #[cfg(unix)]
    #[inline]
    /// Shortcut for a UNIX socket server at a specific path
    pub fn http_unix(
        path: &std::path::Path,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::unix_from_path(path),
            ssl: None,
        })
    }

    /// Builds a new server that listens on the specified address.
    pub fn new(config: ServerConfig) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = config.addr.bind()?;
        Self::from_listener(listener, config.ssl)
    }

    /// Builds a new server using the specified TCP listener.
    ///
    /// This is useful if you've constructed TcpListener using some less usual method
    /// such as from systemd. For other cases, you probably want the `new()` function.
    pub fn from_listener<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::build(listener, ssl_config, None)
    }

    /// StatusSentry patch: like `from_listener` without SSL, but every request is passed to
    /// `handler` on the thread that reads its connection, instead of being queued for `recv`.
    /// The handler answers the request; the thread then reads the connection's next request.
    /// `recv` and `incoming_requests` then only ever return accept errors.
    pub fn from_listener_with_handler<L: Into<Listener>>(
        listener: L,
        handler: Handler,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::build(listener, None, Some(handler))
    }

    /// StatusSentry patch 5: like `from_listener_with_handler`, within `limits`: at most
    /// `max_connections` connections (and so connection threads) at once, timeouts on each
    /// accepted socket (never on the listener: on Linux a receive timeout on a listening
    /// socket makes `accept` itself fail with `EAGAIN` after that long without a connection,
    /// which ended upstream's accept loop for good), a deadline for each request head, a
    /// bounded drain of unread bodies, and refusals answered through `limits.refuse`.
    pub fn from_listener_with_limits<L: Into<Listener>>(
        listener: L,
        handler: Handler,
        limits: Limits,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::build_with_limits(listener, None, Some(handler), limits)
    }

    /// StatusSentry patch 5: whether the accept loop still runs; see `AcceptLoop`.
    pub fn accept_loop_running(&self) -> bool {
        self.accept_loop.running()
    }

    /// StatusSentry patch 5: a handle that tells whether the accept loop still runs, for
    /// code that does not hold the server.
    pub fn accept_loop(&self) -> AcceptLoop {
        self.accept_loop.clone()
    }

    fn build<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
        handler: Option<Handler>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::build_with_limits(listener, ssl_config, handler, Limits::default())
    }

    fn build_with_limits<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
        handler: Option<Handler>,
        limits: Limits,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = listener.into();
        // building the "close" variable
        let close_trigger = Arc::new(AtomicBool::new(false));

        // building the TcpListener
        let (server, local_addr) = {
            let local_addr = listener.local_addr()?;
            log::debug!("Server listening on {}", local_addr);
            (listener, local_addr)
        };

        // building the SSL capabilities
        #[cfg(all(feature = "ssl-openssl", feature = "ssl-rustls"))]
        compile_error!(
            "Features 'ssl-openssl' and 'ssl-rustls' must not be enabled at the same time"
        );
        #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
        type SslContext = ();
        #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
        type SslContext = crate::ssl::SslContextImpl;
        let ssl: Option<SslContext> = {
            match ssl_config {
                #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
                Some(config) => Some(SslContext::from_pem(
                    config.certificate,
                    Zeroizing::new(config.private_key),
                )?),
                #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
                Some(_) => return Err(
                    "Building a server with SSL requires enabling the `ssl` feature in tiny-http"
                        .into(),
                ),
                None => None,
            }
        };

        // creating a task where server.accept() is continuously called
        // and ClientConnection objects are pushed in the messages queue
        let messages = MessagesQueue::with_capacity(8);

        let inside_close_trigger = close_trigger.clone();
        let inside_messages = messages.clone();
        let running = Arc::new(AtomicBool::new(true));
        let accept_loop = AcceptLoop(running.clone());
        let limits = Arc::new(limits);
        thread::Builder::new()
            .name("http-accept".into())
            .spawn(move || {
                let _ends = AcceptLoopEnds(running);
                // a tasks pool is used to dispatch the connections into threads
                let tasks_pool = util::TaskPool::new(limits.max_connections);
                let open = Arc::new(AtomicUsize::new(0));
                // StatusSentry patch 5: an exhaustion episode (no descriptors, memory or
                // threads) is logged when it starts and when it ends, not at every refusal.
                let mut exhausted = false;

                log::debug!("Running accept thread");
                while !inside_close_trigger.load(Relaxed) {
                    let sock = match server.accept() {
                        Ok((sock, _)) => sock,
                        Err(e) => match accept_error(&e) {
                            AcceptError::Retry => continue,
                            AcceptError::Exhausted => {
                                if !exhausted {
                                    exhausted = true;
                                    log::warn!(
                                        "cannot accept connections ({e}); retrying every {EXHAUSTED_BACKOFF:?} until some close"
                                    );
                                }
                                thread::sleep(EXHAUSTED_BACKOFF);
                                continue;
                            }
                            AcceptError::Fatal => {
                                log::error!("the accept loop stopped: {e}");
                                inside_messages.push(e.into());
                                break;
                            }
                        },
                    };
                    let accepted = std::time::Instant::now();
                    if inside_close_trigger.load(Relaxed) {
                        break;
                    }
                    if open.load(std::sync::atomic::Ordering::Acquire) >= limits.max_connections {
                        refuse_busy(sock, &limits);
                        continue;
                    }
                    // The first head's deadline is usually the nearer one, so the read
                    // timeout starts there and the connection's first read needs no call.
                    let read_timeout = match (limits.header_timeout, limits.idle_timeout) {
                        (Some(h), Some(i)) => Some(h.min(i)),
                        (h, i) => h.or(i),
                    };
                    if read_timeout.is_some() || limits.idle_timeout.is_some() {
                        let set = sock
                            .set_read_timeout(read_timeout)
                            .and_then(|()| sock.set_write_timeout(limits.idle_timeout));
                        if let Err(e) = set {
                            // A socket that cannot keep a timeout could hold a thread forever.
                            log::debug!("cannot set timeouts on a new connection: {e}");
                            continue;
                        }
                    }
                    use util::RefinedTcpStream;
                    let (read_closable, write_closable) = match ssl {
                        None => RefinedTcpStream::new(sock),
                        #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
                        Some(ref ssl) => {
                            // trying to apply SSL over the connection
                            // if an error occurs, we just close the socket and resume listening
                            let sock = match ssl.accept(sock) {
                                Ok(s) => s,
                                Err(_) => continue,
                            };

                            RefinedTcpStream::new(sock)
                        }
                        #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
                        Some(ref _ssl) => unreachable!(),
                    };
                    let client = ClientConnection::new(
                        write_closable,
                        read_closable,
                        limits.clone(),
                        accepted,
                        read_timeout,
                    );

                    open.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    let slot = Slot(open.clone());
                    let messages = inside_messages.clone();
                    let handler = handler.clone();
                    let mut client = Some((client, slot));
                    let spawned = tasks_pool.spawn(Box::new(move || {
                        if let Some((client, _slot)) = client.take() {
                            if let Some(handler) = &handler {
                                for rq in client {
                                    handler(rq);
                                }
                            } else if client.secure() {
                                // Synchronization is needed for HTTPS requests to avoid a deadlock
                                let (sender, receiver) = mpsc::channel();
                                for rq in client {
                                    messages.push(rq.with_notify_sender(sender.clone()).into());
                                    receiver.recv().unwrap();
                                }
                            } else {
                                for rq in client {
                                    messages.push(rq.into());
                                }
                            }
                        }
                    }));
                    match spawned {
                        // The task, and with it the connection, was dropped: this one
                        // connection is refused and the listener goes on.
                        Err(e) if !exhausted => {
                            exhausted = true;
                            log::warn!("cannot start a thread for a connection ({e}); refusing connections until one can");
                        }
                        Err(_) => {}
                        Ok(()) if exhausted => {
                            exhausted = false;
                            log::info!("accepting connections again");
                        }
                        Ok(()) => {}
                    }
                }
                log::debug!("Terminating accept thread");
            })?;

        // result
        Ok(Server {
            messages,
            close: close_trigger,
            listening_addr: local_addr,
            accept_loop,
        })
    }

    /// Returns an iterator for all the incoming requests.
    ///
    /// The iterator will return `None` if the server socket is shutdown.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> ListenAddr {
        self.listening_addr.clone()
    }

    /// Returns the number of clients currently connected to the server.
    pub fn num_connections(&self) -> usize {
        unimplemented!()
        //self.requests_receiver.lock().len()
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    pub fn recv(&self) -> IoResult<Request> {
        match self.messages.pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(rq),
            None => Err(IoError::new(IoErrorKind::Other, "thread unblocked")),
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        match self.messages.pop_timeout(timeout) {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        match self.messages.try_pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Unblock thread stuck in recv() or incoming_requests().
    /// If there are several such threads, only one is unblocked.
    /// This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        self.messages.unblock();
    }
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close.store(true, Relaxed);
        // Connect briefly to ourselves to unblock the accept thread
        let maybe_stream = match &self.listening_addr {
            ListenAddr::IP(addr) => TcpStream::connect(addr).map(Connection::from),
            #[cfg(unix)]
            ListenAddr::Unix(addr) => {
                // TODO: use connect_addr when its stabilized.
                let path = addr.as_pathname().unwrap();
                std::os::unix::net::UnixStream::connect(path).map(Connection::from)
            }
        };
        if let Ok(stream) = maybe_stream {
            let _ = stream.shutdown(Shutdown::Both);
        }

        #[cfg(unix)]
        if let ListenAddr::Unix(addr) = &self.listening_addr {
            if let Some(path) = addr.as_pathname() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
