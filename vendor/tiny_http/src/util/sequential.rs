use std::io::Result as IoResult;
use std::io::{BufRead, Read, Write};

use std::sync::{Arc, Condvar, Mutex};

use std::mem;

/// StatusSentry patch 4: a one-shot hand-over in place of an `mpsc` channel. Upstream made two
/// channels per request; a channel is a 256-byte aligned allocation, and its first send
/// allocates a block of 31 slots (1.7 KiB for the reader), large enough that glibc
/// consolidated its free lists on every request. `Receiver::recv`'s error when the sender is
/// gone without sending is kept: `take` returns `None` then. The giving side wakes the taking
/// side only when it waits: a `Condvar` notify is a system call even when nobody waits, and on
/// a connection's own thread (every request of `from_listener_with_handler`) nobody ever does.
struct Handover<T> {
    state: Mutex<HandoverState<T>>,
    changed: Condvar,
}

struct HandoverState<T> {
    value: Option<T>,
    /// The giving side is gone.
    gone: bool,
    /// The taking side is waiting on `changed`.
    waiting: bool,
}

fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Handover {
        state: Mutex::new(HandoverState {
            value: None,
            gone: false,
            waiting: false,
        }),
        changed: Condvar::new(),
    });
    (Sender(shared.clone()), Receiver(shared))
}

struct Sender<T>(Arc<Handover<T>>);

struct Receiver<T>(Arc<Handover<T>>);

impl<T> Handover<T> {
    fn update(&self, change: impl FnOnce(&mut HandoverState<T>)) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut state);
        if state.waiting {
            self.changed.notify_one();
        }
    }
}

impl<T> Sender<T> {
    fn send(&self, value: T) {
        self.0.update(|state| state.value = Some(value));
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.0.update(|state| state.gone = true);
    }
}

impl<T> Receiver<T> {
    /// Waits for the value; `None` once the sender is gone without sending one.
    fn recv(&self) -> Option<T> {
        let mut state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(value) = state.value.take() {
                return Some(value);
            }
            if state.gone {
                return None;
            }
            state.waiting = true;
            state = self
                .0
                .changed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
            state.waiting = false;
        }
    }
}

pub struct SequentialReaderBuilder<R>
where
    R: Read + Send,
{
    inner: SequentialReaderBuilderInner<R>,
}

enum SequentialReaderBuilderInner<R>
where
    R: Read + Send,
{
    First(R),
    NotFirst(Receiver<R>),
}

pub struct SequentialReader<R>
where
    R: Read + Send,
{
    inner: SequentialReaderInner<R>,
    next: Sender<R>,
}

enum SequentialReaderInner<R>
where
    R: Read + Send,
{
    MyTurn(R),
    Waiting(Receiver<R>),
    Empty,
}

pub struct SequentialWriterBuilder<W>
where
    W: Write + Send,
{
    writer: Arc<Mutex<W>>,
    next_trigger: Option<Receiver<()>>,
}

pub struct SequentialWriter<W>
where
    W: Write + Send,
{
    trigger: Option<Receiver<()>>,
    writer: Arc<Mutex<W>>,
    on_finish: Sender<()>,
}

impl<R: Read + Send> SequentialReaderBuilder<R> {
    pub fn new(reader: R) -> SequentialReaderBuilder<R> {
        SequentialReaderBuilder {
            inner: SequentialReaderBuilderInner::First(reader),
        }
    }
}

impl<W: Write + Send> SequentialWriterBuilder<W> {
    pub fn new(writer: W) -> SequentialWriterBuilder<W> {
        SequentialWriterBuilder {
            writer: Arc::new(Mutex::new(writer)),
            next_trigger: None,
        }
    }
}

impl<R: Read + Send> Iterator for SequentialReaderBuilder<R> {
    type Item = SequentialReader<R>;

    fn next(&mut self) -> Option<SequentialReader<R>> {
        let (tx, rx) = channel();

        let inner = mem::replace(&mut self.inner, SequentialReaderBuilderInner::NotFirst(rx));

        match inner {
            SequentialReaderBuilderInner::First(reader) => Some(SequentialReader {
                inner: SequentialReaderInner::MyTurn(reader),
                next: tx,
            }),

            SequentialReaderBuilderInner::NotFirst(previous) => Some(SequentialReader {
                inner: SequentialReaderInner::Waiting(previous),
                next: tx,
            }),
        }
    }
}

impl<W: Write + Send> Iterator for SequentialWriterBuilder<W> {
    type Item = SequentialWriter<W>;
    fn next(&mut self) -> Option<SequentialWriter<W>> {
        let (tx, rx) = channel();
        let mut next_next_trigger = Some(rx);
        ::std::mem::swap(&mut next_next_trigger, &mut self.next_trigger);

        Some(SequentialWriter {
            trigger: next_next_trigger,
            writer: self.writer.clone(),
            on_finish: tx,
        })
    }
}

impl<R: Read + Send> Read for SequentialReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        let mut reader = match self.inner {
            SequentialReaderInner::MyTurn(ref mut reader) => return reader.read(buf),
            SequentialReaderInner::Waiting(ref mut recv) => recv.recv().unwrap(),
            SequentialReaderInner::Empty => unreachable!(),
        };

        let result = reader.read(buf);
        self.inner = SequentialReaderInner::MyTurn(reader);
        result
    }
}

impl<R: Read + Send> SequentialReader<R> {
    /// StatusSentry patch 5: the reader itself once it is this one's turn (waiting for the
    /// previous request's body to be done with it), so that the head parser can look at its
    /// buffer and set the socket's timeout before a read that would block. `None` when the
    /// previous holder went away without handing it on.
    pub fn turn(&mut self) -> Option<&mut R> {
        if let SequentialReaderInner::Waiting(_) = self.inner {
            if let SequentialReaderInner::Waiting(recv) =
                mem::replace(&mut self.inner, SequentialReaderInner::Empty)
            {
                self.inner = SequentialReaderInner::MyTurn(recv.recv()?);
            }
        }
        match self.inner {
            SequentialReaderInner::MyTurn(ref mut reader) => Some(reader),
            _ => None,
        }
    }
}

/// StatusSentry patch: lets the header parser read whole lines from the connection's buffer
/// instead of one byte per `read` call.
impl<R: BufRead + Send> BufRead for SequentialReader<R> {
    fn fill_buf(&mut self) -> IoResult<&[u8]> {
        if let SequentialReaderInner::Waiting(_) = self.inner {
            if let SequentialReaderInner::Waiting(recv) =
                mem::replace(&mut self.inner, SequentialReaderInner::Empty)
            {
                self.inner = SequentialReaderInner::MyTurn(recv.recv().unwrap());
            }
        }
        match self.inner {
            SequentialReaderInner::MyTurn(ref mut reader) => reader.fill_buf(),
            _ => unreachable!(),
        }
    }

    fn consume(&mut self, amt: usize) {
        if let SequentialReaderInner::MyTurn(ref mut reader) = self.inner {
            reader.consume(amt);
        }
    }
}

impl<W: Write + Send> Write for SequentialWriter<W> {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        if let Some(v) = self.trigger.as_mut() {
            v.recv().unwrap()
        }
        self.trigger = None;

        self.writer.lock().unwrap().write(buf)
    }

    fn flush(&mut self) -> IoResult<()> {
        if let Some(v) = self.trigger.as_mut() {
            v.recv().unwrap()
        }
        self.trigger = None;

        self.writer.lock().unwrap().flush()
    }
}

impl<R> Drop for SequentialReader<R>
where
    R: Read + Send,
{
    fn drop(&mut self) {
        let inner = mem::replace(&mut self.inner, SequentialReaderInner::Empty);

        match inner {
            SequentialReaderInner::MyTurn(reader) => {
                self.next.send(reader);
            }
            SequentialReaderInner::Waiting(recv) => {
                let reader = recv.recv().unwrap();
                self.next.send(reader);
            }
            SequentialReaderInner::Empty => (),
        }
    }
}

impl<W> Drop for SequentialWriter<W>
where
    W: Write + Send,
{
    fn drop(&mut self) {
        self.on_finish.send(());
    }
}
