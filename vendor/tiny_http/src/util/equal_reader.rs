use std::io::Read;
use std::io::Result as IoResult;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// StatusSentry patch 6: what to do with a body the handler left unread. Upstream drained it
/// into `vec![0; remaining]`, so one request with `Content-Length: 100000000000` aborted the
/// process on a failed allocation. Now at most `limit` bytes are drained, through a fixed
/// buffer; a longer body, or one that cannot be drained, sets `unfinished`, and the connection
/// closes after the answer instead of reading the body's bytes as the next request.
#[derive(Clone)]
pub struct Drain {
    pub limit: usize,
    pub unfinished: Arc<AtomicBool>,
}

impl Drain {
    /// Reads and discards `reader` to its end, at most `self.limit` bytes; marks the
    /// connection unfinished when that does not reach the end.
    pub fn drain(&self, reader: &mut impl Read) {
        let mut buf = [0u8; 8 * 1024];
        let mut drained = 0usize;
        loop {
            let room = (self.limit - drained).min(buf.len());
            if room == 0 {
                // Either the body ends exactly here or it goes on; one more byte tells.
                if matches!(reader.read(&mut buf[..1]), Ok(0)) {
                    return;
                }
                break;
            }
            match reader.read(&mut buf[..room]) {
                Ok(0) => return,
                Ok(n) => drained += n,
                Err(_) => break,
            }
        }
        self.unfinished.store(true, Ordering::Release);
    }
}

/// A `Reader` that reads exactly the number of bytes from a sub-reader.
///
/// If the limit is reached, it returns EOF. If the limit is not reached
/// when the destructor is called, the remaining bytes will be read and
/// thrown away.
pub struct EqualReader<R>
where
    R: Read,
{
    reader: R,
    size: usize,
    drain: Drain,
}

impl<R> EqualReader<R>
where
    R: Read,
{
    /// StatusSentry patch 4: upstream also returned the receiving end of a channel told how
    /// the drain in `drop` ended. Its only caller drops it unread, and the channel cost two
    /// allocations per request with a body.
    ///
    /// StatusSentry patch 6: `drain` says how much of an unread body may be drained on drop.
    pub fn new(reader: R, size: usize, drain: Drain) -> (EqualReader<R>, ()) {
        (
            EqualReader {
                reader,
                size,
                drain,
            },
            (),
        )
    }
}

impl<R> Read for EqualReader<R>
where
    R: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        if self.size == 0 {
            return Ok(0);
        }

        let buf = if buf.len() < self.size {
            buf
        } else {
            &mut buf[..self.size]
        };

        match self.reader.read(buf) {
            Ok(len) => {
                self.size -= len;
                Ok(len)
            }
            err @ Err(_) => err,
        }
    }
}

impl<R> Drop for EqualReader<R>
where
    R: Read,
{
    fn drop(&mut self) {
        if self.size == 0 {
            return;
        }
        if self.size > self.drain.limit {
            // Never read what will not be used: the connection closes instead.
            self.drain.unfinished.store(true, Ordering::Release);
            return;
        }
        let mut buf = [0u8; 8 * 1024];
        while self.size > 0 {
            let want = self.size.min(buf.len());
            match self.reader.read(&mut buf[..want]) {
                Ok(0) | Err(_) => {
                    self.drain.unfinished.store(true, Ordering::Release);
                    return;
                }
                Ok(n) => self.size -= n,
            }
        }
    }
}

/// StatusSentry patch 6: a chunked body left unread is drained on drop within the same
/// bound as `EqualReader`'s; upstream left it on the connection, where its chunks were
/// parsed as the next request.
pub struct DrainOnDrop<R: Read> {
    pub inner: R,
    pub drain: Drain,
}

impl<R: Read> Read for DrainOnDrop<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        self.inner.read(buf)
    }
}

impl<R: Read> Drop for DrainOnDrop<R> {
    fn drop(&mut self) {
        let drain = self.drain.clone();
        drain.drain(&mut self.inner);
    }
}

#[cfg(test)]
mod tests {
    use super::{Drain, EqualReader};
    use std::io::Read;

    fn unlimited() -> Drain {
        Drain {
            limit: usize::MAX,
            unfinished: Default::default(),
        }
    }

    #[test]
    fn test_limit() {
        use std::io::Cursor;

        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());

        {
            let (mut equal_reader, _) = EqualReader::new(org_reader.by_ref(), 5, unlimited());

            let mut string = String::new();
            equal_reader.read_to_string(&mut string).unwrap();
            assert_eq!(string, "hello");
        }

        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, " world");
    }

    #[test]
    fn test_not_enough() {
        use std::io::Cursor;

        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());

        {
            let (mut equal_reader, _) = EqualReader::new(org_reader.by_ref(), 5, unlimited());

            let mut vec = [0];
            equal_reader.read_exact(&mut vec).unwrap();
            assert_eq!(vec[0], b'h');
        }

        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, " world");
    }
}
