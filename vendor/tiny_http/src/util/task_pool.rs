use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

/// Manages a collection of threads.
///
/// A new thread is created every time all the existing threads are full, up to `max_threads`.
/// Any idle thread will automatically die after a few seconds.
///
/// StatusSentry patch 5: the pool has a ceiling (the server's `max_connections`), a thread
/// that cannot be started gives its task back instead of panicking while the queue's lock is
/// held (upstream's `thread::spawn` did, which poisoned the lock and made every pool thread
/// panic at its next `lock().unwrap()`), and a poisoned lock is taken over, not unwrapped.
pub struct TaskPool {
    sharing: Arc<Sharing>,
    max_threads: usize,
}

type Task = Box<dyn FnMut() + Send>;

struct Sharing {
    // list of the tasks to be done by worker threads
    todo: Mutex<VecDeque<Task>>,

    // condvar that will be notified whenever a task is added to `todo`
    condvar: Condvar,

    // number of threads started and not yet ended, counted from before each is spawned
    threads: AtomicUsize,

    // number of idle worker threads
    waiting_tasks: AtomicUsize,

    // set when the pool is dropped: idle threads end
    closed: AtomicBool,
}

impl Sharing {
    fn todo(&self) -> MutexGuard<'_, VecDeque<Task>> {
        // A task never runs under this lock, so a poisoned lock holds a consistent queue.
        self.todo.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Minimum number of active threads.
static MIN_THREADS: usize = 4;

struct Registration<'a> {
    nb: &'a AtomicUsize,
}

impl<'a> Registration<'a> {
    fn new(nb: &'a AtomicUsize) -> Registration<'a> {
        nb.fetch_add(1, Ordering::Release);
        Registration { nb }
    }
}

impl<'a> Drop for Registration<'a> {
    fn drop(&mut self) {
        self.nb.fetch_sub(1, Ordering::Release);
    }
}

/// Ends a thread's count in `threads`, whether it returns or unwinds.
struct Started(Arc<Sharing>);

impl Drop for Started {
    fn drop(&mut self) {
        self.0.threads.fetch_sub(1, Ordering::Release);
    }
}

impl TaskPool {
    /// A pool of at most `max_threads` threads (at least one).
    pub fn new(max_threads: usize) -> TaskPool {
        let pool = TaskPool {
            sharing: Arc::new(Sharing {
                todo: Mutex::new(VecDeque::new()),
                condvar: Condvar::new(),
                threads: AtomicUsize::new(0),
                waiting_tasks: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
            }),
            max_threads: max_threads.max(1),
        };

        for _ in 0..MIN_THREADS.min(pool.max_threads) {
            if pool.add_thread(None).is_err() {
                break;
            }
        }

        pool
    }

    /// Executes a function in a thread.
    /// If no thread is available, spawns a new one; at the ceiling, the task waits for the
    /// first thread to finish its own. When a needed thread cannot be started the task is
    /// dropped and the error returned.
    pub fn spawn(&self, code: Task) -> std::io::Result<()> {
        {
            let mut queue = self.sharing.todo();

            // StatusSentry's patch: an idle thread counts as idle until it wakes and takes a
            // task, so tasks already queued have claimed idle threads. Queue only when an idle
            // thread is left over (or no thread may be added); otherwise start a thread.
            // Upstream compared with zero, which queued a burst of new keep-alive connections
            // behind a few threads that never came back to them.
            if self.sharing.waiting_tasks.load(Ordering::Acquire) > queue.len()
                || self.sharing.threads.load(Ordering::Acquire) >= self.max_threads
            {
                queue.push_back(code);
                self.sharing.condvar.notify_one();
                return Ok(());
            }
        }
        self.add_thread(Some(code))
    }

    fn add_thread(&self, initial_fn: Option<Task>) -> std::io::Result<()> {
        let sharing = self.sharing.clone();
        self.sharing.threads.fetch_add(1, Ordering::AcqRel);

        let spawned = thread::Builder::new()
            .name("http-connection".into())
            .spawn(move || {
                let _started = Started(sharing.clone());

                if let Some(mut f) = initial_fn {
                    f();
                }

                loop {
                    let mut task: Task = {
                        let mut todo = sharing.todo();

                        let task;
                        loop {
                            if let Some(poped_task) = todo.pop_front() {
                                task = poped_task;
                                break;
                            }
                            if sharing.closed.load(Ordering::Acquire) {
                                return;
                            }
                            let _waiting_guard = Registration::new(&sharing.waiting_tasks);

                            let received =
                                if sharing.threads.load(Ordering::Acquire) <= MIN_THREADS {
                                    todo = sharing
                                        .condvar
                                        .wait(todo)
                                        .unwrap_or_else(|p| p.into_inner());
                                    true
                                } else {
                                    let (new_lock, waitres) = sharing
                                        .condvar
                                        .wait_timeout(todo, Duration::from_millis(5000))
                                        .unwrap_or_else(|p| p.into_inner());
                                    todo = new_lock;
                                    !waitres.timed_out()
                                };

                            if !received && todo.is_empty() {
                                return;
                            }
                        }

                        task
                    };

                    task();
                }
            });
        match spawned {
            Ok(_) => Ok(()),
            Err(e) => {
                // The closure, and the task in it, were dropped unrun.
                self.sharing.threads.fetch_sub(1, Ordering::AcqRel);
                Err(e)
            }
        }
    }
}

impl Drop for TaskPool {
    fn drop(&mut self) {
        self.sharing.closed.store(true, Ordering::Release);
        self.sharing.condvar.notify_all();
    }
}
