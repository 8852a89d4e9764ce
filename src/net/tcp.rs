//! The TCP transport under every outbound request, in place of ureq's own.
//!
//! ureq's transport probes a pooled connection with three system calls, sets a socket timeout
//! before every read and write (the remaining budget shrinks, so it always differs), and writes
//! a request's head and its body with a system call each: 13 system calls and two segments per
//! delivery, the second of which wakes the receiver for nothing. This one:
//! - keeps what ureq hands it to send and writes it when the answer is awaited, so a request
//!   goes out in one write (at most 64 KiB is held; more is written at once);
//! - probes with one `recv(MSG_PEEK | MSG_DONTWAIT)`;
//! - sets a socket timeout only when the one in force is more than 1 % (at least 1 ms) away
//!   from the time left. A wait may so end up to 1 % late; one that ends early is resumed with
//!   the exact time left, so none ends early.
//!
//! Four system calls and one segment per delivery. TLS and CONNECT proxies are layered on top
//! of it exactly as on ureq's. It notes the connect phase and that a request used a connection
//! (`timing.rs`) with no system call of its own.

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::TcpStream;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ureq::Timeout;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, ShutdownHandle,
    Transport,
};

/// Bytes held back at most before they are written anyway.
const HOLD_MAX: usize = 64 * 1024;

/// Opens plain TCP connections, unless an earlier connector in the chain (a CONNECT proxy)
/// already made one.
#[derive(Debug, Default)]
pub struct TcpConnector;

impl<In: Transport> Connector<In> for TcpConnector {
    type Out = Either<In, TcpTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        if let Some(transport) = chained {
            return Ok(Some(Either::A(transport)));
        }
        let started = Instant::now();
        let stream = connect(details);
        super::timing::connect(started.elapsed());
        let stream = Arc::new(stream?);
        // ureq's shutdown of the agent (not used today) shuts the socket down through this.
        (details.register_shutdown)(Arc::downgrade(&stream) as Weak<dyn ShutdownHandle>)?;
        let config = details.config;
        Ok(Some(Either::B(TcpTransport {
            stream,
            buffers: LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size()),
            held: Vec::new(),
            read_timeout: None,
            write_timeout: None,
        })))
    }
}

/// Tries each resolved address in turn within the connect budget. Every address but the last
/// gets half of the time left, so one that never answers still leaves time for the next.
fn connect(details: &ConnectionDetails) -> Result<TcpStream, ureq::Error> {
    let budget = details.timeout.not_zero().map(|d| *d);
    let started = Instant::now();
    let count = details.addrs.len();
    let mut last_error = None;
    for (i, addr) in details.addrs.iter().enumerate() {
        let attempt = match budget {
            None => TcpStream::connect(addr),
            Some(budget) => {
                let left = budget.saturating_sub(started.elapsed());
                if left.is_zero() {
                    break;
                }
                let share = if i + 1 == count {
                    left
                } else {
                    (left / 2).max(Duration::from_millis(10))
                };
                TcpStream::connect_timeout(addr, share)
            }
        };
        match attempt {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(match last_error {
        Some(e) if !is_timeout(&e) => e.into(),
        _ => ureq::Error::Timeout(Timeout::Connect),
    })
}

pub struct TcpTransport {
    /// Shared (weakly) with the agent's shutdown handle.
    stream: Arc<TcpStream>,
    buffers: LazyBuffers,
    /// Bytes ureq has transmitted that are not written yet.
    held: Vec<u8>,
    /// The socket timeouts in force; `None` until one is set.
    read_timeout: Option<Option<Duration>>,
    write_timeout: Option<Option<Duration>>,
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("peer", &self.stream.peer_addr().ok())
            .field("held", &self.held.len())
            .finish()
    }
}

impl Transport for TcpTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        // A request has this connection (made for it or taken from the pool): one store to a
        // thread-local, no clock read.
        super::timing::sent();
        self.held
            .extend_from_slice(&self.buffers.output()[..amount]);
        if self.held.len() >= HOLD_MAX {
            self.write_held(timeout)?;
        }
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.write_held(timeout)?;
        let deadline = Deadline::start(timeout.for_read())?;
        let input = self.buffers.input_append_buf();
        let read = loop {
            arm(
                &self.stream,
                &mut self.read_timeout,
                deadline.left()?,
                |s, t| s.set_read_timeout(t),
            )?;
            match (&*self.stream).read(input) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        self.buffers.input_appended(read);
        Ok(read > 0)
    }

    /// Open when nothing is waiting to be read: a peer that closed, reset or sent bytes nobody
    /// asked for makes the connection useless.
    fn is_open(&mut self) -> bool {
        let mut byte = [MaybeUninit::uninit()];
        let peeked = socket2::SockRef::from(&*self.stream)
            .recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT);
        matches!(peeked, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

impl TcpTransport {
    fn write_held(&mut self, timeout: NextTimeout) -> Result<(), ureq::Error> {
        if self.held.is_empty() {
            return Ok(());
        }
        let result = self.write_all_held(timeout);
        self.held.clear();
        if self.held.capacity() > HOLD_MAX {
            // A large body was sent; do not keep its buffer on an idle pooled connection.
            self.held = Vec::new();
        }
        result
    }

    fn write_all_held(&mut self, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let deadline = Deadline::start(timeout.for_write())?;
        let mut written = 0;
        while written < self.held.len() {
            arm(
                &self.stream,
                &mut self.write_timeout,
                deadline.left()?,
                |s, t| s.set_write_timeout(t),
            )?;
            match (&*self.stream).write(&self.held[written..]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// The end of one read or write: ureq's time left when it was asked for.
struct Deadline {
    started: Instant,
    /// `None`: no timeout applies.
    after: Option<Duration>,
    reason: Timeout,
}

impl Deadline {
    fn start(timeout: NextTimeout) -> Result<Deadline, ureq::Error> {
        let after = if timeout.after.is_not_happening() {
            None
        } else {
            Some(*timeout.after)
        };
        let deadline = Deadline {
            started: Instant::now(),
            after,
            reason: timeout.reason,
        };
        deadline.left()?;
        Ok(deadline)
    }

    /// The time left, or the timeout error once none is.
    fn left(&self) -> Result<Option<Duration>, ureq::Error> {
        match self.after {
            None => Ok(None),
            Some(after) => match after.checked_sub(self.started.elapsed()) {
                Some(left) if !left.is_zero() => Ok(Some(left)),
                _ => Err(ureq::Error::Timeout(self.reason)),
            },
        }
    }
}

/// Sets a socket timeout to `want` unless the one in force is within 1 % (at least 1 ms) of
/// it. A timeout set a little long lets a wait end that much late; one set short ends the wait
/// early, and the caller resumes it with the exact time left.
fn arm(
    stream: &TcpStream,
    in_force: &mut Option<Option<Duration>>,
    want: Option<Duration>,
    set: impl Fn(&TcpStream, Option<Duration>) -> io::Result<()>,
) -> io::Result<()> {
    let close_enough = match (*in_force, want) {
        (Some(None), None) => true,
        (Some(Some(have)), Some(want)) => {
            have.abs_diff(want) <= (want / 100).max(Duration::from_millis(1))
        }
        _ => false,
    };
    if !close_enough {
        set(stream, want)?;
        *in_force = Some(want);
    }
    Ok(())
}

/// A socket timeout expiring: `WouldBlock` on Unix, `TimedOut` elsewhere.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use ureq::unversioned::transport::time::Duration as UreqDuration;

    /// A transport connected to a peer that does nothing unless told to; returns both ends.
    fn pair() -> (TcpTransport, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        let transport = TcpTransport {
            stream: Arc::new(client),
            buffers: LazyBuffers::new(16 * 1024, 16 * 1024),
            held: Vec::new(),
            read_timeout: None,
            write_timeout: None,
        };
        (transport, peer)
    }

    fn within(ms: u64) -> NextTimeout {
        NextTimeout {
            after: UreqDuration::from_millis(ms),
            reason: Timeout::Global,
            per_read: None,
            per_write: None,
        }
    }

    /// Hands `bytes` to the transport as ureq does: into the output buffer, then transmitted.
    fn transmit(
        t: &mut TcpTransport,
        bytes: &[u8],
        timeout: NextTimeout,
    ) -> Result<(), ureq::Error> {
        for chunk in bytes.chunks(8 * 1024) {
            t.buffers.output()[..chunk.len()].copy_from_slice(chunk);
            t.transmit_output(chunk.len(), timeout)?;
        }
        Ok(())
    }

    #[test]
    fn a_request_is_held_until_the_answer_is_awaited_then_written_at_once() {
        let (mut t, mut peer) = pair();
        transmit(&mut t, b"POST / HTTP/1.1\r\n\r\n", within(1000)).unwrap();
        transmit(&mut t, b"body", within(1000)).unwrap();
        peer.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = [0u8; 64];
        assert!(
            peer.read(&mut buf).is_err(),
            "nothing is written before the answer is awaited"
        );
        peer.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        assert!(t.await_input(within(1000)).unwrap());
        assert_eq!(t.buffers.input(), b"HTTP/1.1 200 OK\r\n\r\n");
        let n = peer.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"POST / HTTP/1.1\r\n\r\nbody");
    }

    #[test]
    fn a_read_times_out_at_its_deadline_never_before() {
        let (mut t, _peer) = pair();
        // A socket timeout left from an earlier, longer request must not stretch this wait.
        t.read_timeout = Some(Some(Duration::from_secs(10)));
        let started = Instant::now();
        let result = t.await_input(within(300));
        let took = started.elapsed();
        assert!(
            matches!(result, Err(ureq::Error::Timeout(Timeout::Global))),
            "{result:?}"
        );
        assert!(took >= Duration::from_millis(300), "ended early: {took:?}");
        assert!(took < Duration::from_millis(1500), "ended late: {took:?}");
    }

    #[test]
    fn a_write_to_a_peer_that_never_reads_times_out() {
        let (mut t, _peer) = pair();
        let started = Instant::now();
        // Far more than the two sockets' buffers hold.
        let result = transmit(&mut t, &vec![b'x'; 64 * 1024 * 1024], within(300))
            .and_then(|()| t.await_input(within(300)).map(|_| ()));
        let took = started.elapsed();
        assert!(matches!(result, Err(ureq::Error::Timeout(_))), "{result:?}");
        assert!(took >= Duration::from_millis(300), "ended early: {took:?}");
        assert!(took < Duration::from_millis(3000), "ended late: {took:?}");
        assert!(
            t.held.capacity() <= HOLD_MAX,
            "a failed write keeps no large buffer"
        );
    }

    #[test]
    fn the_probe_sees_a_peer_that_closed_or_sent_unasked_bytes() {
        let (mut open, _peer) = pair();
        assert!(open.is_open());

        let (mut closed, peer) = pair();
        drop(peer);
        let deadline = Instant::now() + Duration::from_secs(5);
        while closed.is_open() {
            assert!(Instant::now() < deadline, "the peer's FIN never seen");
            std::thread::sleep(Duration::from_millis(5));
        }

        let (mut chatty, mut peer) = pair();
        peer.write_all(b"surprise").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while chatty.is_open() {
            assert!(Instant::now() < deadline, "the unasked bytes never seen");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn timeouts_are_set_only_when_they_drift_more_than_one_per_cent() {
        let (t, _peer) = pair();
        let mut in_force = None;
        let calls = std::cell::Cell::new(0);
        let set = |_: &TcpStream, _: Option<Duration>| {
            calls.set(calls.get() + 1);
            Ok(())
        };
        let secs = |s: f64| Some(Duration::from_secs_f64(s));
        arm(&t.stream, &mut in_force, secs(10.0), set).unwrap();
        arm(&t.stream, &mut in_force, secs(9.95), set).unwrap();
        assert_eq!(calls.get(), 1, "within 1 %: left as it is");
        arm(&t.stream, &mut in_force, secs(9.8), set).unwrap();
        assert_eq!(calls.get(), 2, "2 % off: set again");
        arm(&t.stream, &mut in_force, None, set).unwrap();
        arm(&t.stream, &mut in_force, None, set).unwrap();
        assert_eq!(calls.get(), 3, "no timeout is set once");
    }
}
