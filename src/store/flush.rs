//! Flushes of the write-ahead log, joined. Commits leave their log frames in the operating
//! system's hands; a write that must survive a power cut then asks for a flush up to its
//! commit. At most one `fdatasync` runs at a time, and each covers every commit made before it
//! started, so commits that wait together share one flush while the next ones are written.
//!
//! A failed flush is final: after one, Linux may report later flushes as successful although
//! the pages of the failed one never reached the disk, so every later flush fails too and the
//! store refuses durable writes until the service is restarted and the log is read back from
//! the disk.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use super::{Result, StoreError};

pub(super) struct Flusher {
    path: PathBuf,
    file: File,
    /// Commits made so far; a commit counts itself once its frames are written.
    committed: AtomicU64,
    state: Mutex<State>,
    finished: Condvar,
}

struct State {
    /// Every commit up to this count is on disk.
    durable: u64,
    running: bool,
    /// The error of the flush that failed, which every later flush repeats.
    failed: Option<String>,
}

impl Flusher {
    /// Opens the log at `path` for flushing only.
    pub(super) fn open(path: &Path) -> std::io::Result<Flusher> {
        Ok(Flusher {
            path: path.to_path_buf(),
            file: File::open(path)?,
            committed: AtomicU64::new(0),
            state: Mutex::new(State {
                durable: 0,
                running: false,
                failed: None,
            }),
            finished: Condvar::new(),
        })
    }

    /// Counts a commit whose frames are written; returns its number for `flush`.
    pub(super) fn committed(&self) -> u64 {
        self.committed.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Returns once commit number `upto` is on disk: at once if a flush already covered it,
    /// after the flush running now if that one started after it, else after a flush of its
    /// own.
    pub(super) fn flush(&self, upto: u64) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(why) = &state.failed {
                return Err(self.error(why.clone()));
            }
            if state.durable >= upto {
                return Ok(());
            }
            if !state.running {
                break;
            }
            state = self.finished.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.running = true;
        drop(state);
        // Every commit counted by now has its frames written, so this flush covers it.
        let target = self.committed.load(Ordering::SeqCst);
        let result = self.file.sync_data();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.running = false;
        match &result {
            Ok(()) => state.durable = state.durable.max(target),
            Err(e) => {
                log::error!(
                    "cannot flush {} to disk: {e}; durable writes are refused until a restart",
                    self.path.display()
                );
                state.failed = Some(e.to_string());
            }
        }
        drop(state);
        self.finished.notify_all();
        result.map_err(|e| self.error(e.to_string()))
    }

    /// The error of a failed flush, if one failed.
    pub(super) fn failure(&self) -> Option<StoreError> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.failed.clone().map(|why| self.error(why))
    }

    fn error(&self, why: String) -> StoreError {
        StoreError::Sync(self.path.clone(), why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn flusher() -> (tempfile::TempDir, Flusher) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, b"frames").unwrap();
        let f = Flusher::open(&path).unwrap();
        (dir, f)
    }

    #[test]
    fn a_flush_covers_every_commit_counted_before_it() {
        let (_d, f) = flusher();
        let first = f.committed();
        let second = f.committed();
        f.flush(second).unwrap();
        assert_eq!(f.state.lock().unwrap().durable, second);
        // Already covered: no second flush is needed, and none may fail it.
        f.flush(first).unwrap();
        assert!(f.failure().is_none());
    }

    #[test]
    fn concurrent_flushes_all_return_once_their_commit_is_durable() {
        let (_d, f) = flusher();
        let f = Arc::new(f);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let f = f.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let n = f.committed();
                        f.flush(n).unwrap();
                        assert!(f.state.lock().unwrap().durable >= n);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(f.state.lock().unwrap().durable, 400);
    }

    #[test]
    fn a_failed_flush_fails_every_later_one() {
        let (_d, f) = flusher();
        f.state.lock().unwrap().failed = Some("EIO".into());
        let n = f.committed();
        match f.flush(n) {
            Err(StoreError::Sync(_, why)) => assert_eq!(why, "EIO"),
            other => panic!("expected the stored failure, got {other:?}"),
        }
        assert!(f.failure().is_some());
    }
}
