//! Supervision of the long-lived threads: every one of them is started here, and its end is
//! noticed. A thread that panics, or returns while the service is not stopping, is logged by
//! name and then either restarted (only where a fresh start is provably safe) or reported to
//! the main thread, which fails `/healthz` and exits non-zero so that systemd restarts the
//! service. A process that answers nothing but looks alive is worse than one that exits.
//!
//! Each thread (and the intake's leader, a role among request threads) also has a `Beat`: it
//! beats at the head of its loop, idle loops wake at least every `IDLE_WAKE` to beat, and the
//! main thread counts a thread that has not beaten within its own bound as stalled. The main
//! thread sends systemd's `WATCHDOG=1` only while nothing is stalled and every registered
//! probe answers true, and exits non-zero as soon as something is.
//!
//! Nothing here knows what the threads do; each spawn site documents why it restarts or exits.
//! In debug builds only, `STATUSSENTRY_FAULT=<thread>[:<n>][:hang]` makes the named thread
//! panic (or stop beating for good) at its `n`-th unit of work, for the tests that prove
//! each reaction; `:every` makes it panic at every one. `fault_point` is the same hook for a
//! point inside a unit of work (`check`: one monitor check).

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};

/// The longest an idle loop sleeps before it wakes to beat; every bound is several of these.
pub const IDLE_WAKE: Duration = Duration::from_secs(2);

/// The bound of a thread that only reads the store between beats: a read under WAL never
/// waits for the writer, and SQLite's `busy_timeout` (5 s) is the longest it waits on a lock.
pub const READER_BOUND: Duration = Duration::from_secs(15);

/// The bound of a thread that writes to the store between beats: it may queue for the writer
/// behind a checkpoint (which waits up to `busy_timeout` for readers) and for a flush on a
/// slow disk.
pub const WRITER_BOUND: Duration = Duration::from_secs(60);

/// How often the main thread checks liveness when systemd asks for no faster pings.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How long the main thread waits for more failure reports after the first.
const GATHER: Duration = Duration::from_millis(100);

/// The pause before a restarted thread runs again, so that a thread that panics at once
/// every time costs a log line a second rather than a busy core.
const RESTART_PAUSE: Duration = Duration::from_millis(250);

/// How many restarts within `RESTART_WINDOW` a thread may take; one more ends the process.
/// A thread that panics at every start (a bug, a resource that is gone) would otherwise
/// restart for ever, with `/healthz` and the watchdog saying all is well; a few panics a
/// minute (one bad monitor's check) are still survived.
const RESTART_BUDGET: usize = 10;
const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// Owns every supervised thread's heartbeat, the probes and the health flag; cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    origin: Instant,
    beats: Mutex<Vec<Beat>>,
    probes: Mutex<Vec<(String, Probe)>>,
    /// Set once shutdown begins: threads that end after this ended on purpose.
    stopping: AtomicBool,
    health: Health,
    failures: Sender<String>,
    failed: Receiver<String>,
}

type Probe = Box<dyn Fn() -> bool + Send + Sync>;

/// Whether the process is sound; `/healthz` answers 503 once it is not.
#[derive(Clone, Default)]
pub struct Health(Arc<AtomicBool>);

impl Health {
    pub fn is_failing(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn fail(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Why the main thread's watch ended.
pub enum Watch {
    /// SIGTERM or SIGINT: shut down in order, exit 0.
    Signal(i32),
    /// A supervised thread died or stalled, or a probe failed: exit non-zero.
    Failed(String),
}

/// A thread's (or role's) proof of progress. Cheap to clone; clones share one heartbeat.
#[derive(Clone)]
pub struct Beat {
    shared: Arc<BeatShared>,
}

struct BeatShared {
    name: String,
    origin: Instant,
    /// The most this thread may go without beating while it is sound.
    bound: Duration,
    /// When it last beat, in ms since `origin`.
    last: AtomicU64,
    /// A role with nothing to do (nobody leading the intake) cannot stall; a thread that has
    /// ended is not waited for either.
    resting: AtomicBool,
    #[cfg(debug_assertions)]
    works: AtomicU64,
}

impl Beat {
    /// The thread is alive and going round its loop.
    pub fn beat(&self) {
        let now = self.shared.origin.elapsed().as_millis() as u64;
        self.shared.last.store(now, Ordering::Relaxed);
        // Release, so that whoever sees the role awake also sees when it woke.
        self.shared.resting.store(false, Ordering::Release);
    }

    /// The thread starts a unit of work (a run, a check, a group commit, a turn of its loop):
    /// a beat, and the test-only fault hook's point of injection.
    pub fn work(&self) {
        self.beat();
        #[cfg(debug_assertions)]
        fault::at_work(&self.shared.name, &self.shared.works);
    }

    /// The role has nothing to do, so it cannot be stalled until it next beats.
    pub fn rest(&self) {
        self.shared.resting.store(true, Ordering::Relaxed);
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// How long past its bound the thread has gone without beating, if it has.
    fn overdue(&self) -> Option<Duration> {
        if self.shared.resting.load(Ordering::Acquire) {
            return None;
        }
        let last = Duration::from_millis(self.shared.last.load(Ordering::Relaxed));
        let silent = self.shared.origin.elapsed().saturating_sub(last);
        (silent > self.shared.bound).then_some(silent)
    }
}

impl Default for Supervisor {
    fn default() -> Supervisor {
        Supervisor::new()
    }
}

impl Supervisor {
    pub fn new() -> Supervisor {
        let (failures, failed) = crossbeam_channel::unbounded();
        Supervisor {
            inner: Arc::new(Inner {
                origin: Instant::now(),
                beats: Mutex::new(Vec::new()),
                probes: Mutex::new(Vec::new()),
                stopping: AtomicBool::new(false),
                health: Health::default(),
                failures,
                failed,
            }),
        }
    }

    /// Logs every panic with its thread's name before it unwinds, through the log rather than
    /// bare stderr, so that the line that explains an exit is in the journal beside the rest.
    pub fn log_panics() {
        std::panic::set_hook(Box::new(|info| {
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("unnamed");
            let location = info
                .location()
                .map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
            log::error!(
                "thread {name} panicked{location}: {}",
                panic_message(info.payload())
            );
        }));
    }

    /// The flag `/healthz` reads.
    pub fn health(&self) -> Health {
        self.inner.health.clone()
    }

    /// A heartbeat that the liveness check waits for, at most `bound` apart. For a role run by
    /// threads that are not ours (the intake's leader); threads get theirs from `spawn`.
    pub fn role(&self, name: &str, bound: Duration) -> Beat {
        let beat = self.register(name, bound);
        beat.rest();
        beat
    }

    /// A check that must keep answering true, asked before every watchdog ping (for example
    /// whether the listener's accept loop still runs). It must answer at once.
    pub fn probe(&self, name: &str, probe: impl Fn() -> bool + Send + Sync + 'static) {
        self.lock_probes().push((name.to_string(), Box::new(probe)));
    }

    /// Starts a thread whose end outside shutdown, by panic or by return, ends the process:
    /// for threads that hold state a fresh start could not rebuild. It must beat at least
    /// every `bound`.
    pub fn spawn(
        &self,
        name: &str,
        bound: Duration,
        body: impl FnOnce(&Beat) + Send + 'static,
    ) -> std::io::Result<JoinHandle<()>> {
        let beat = self.register(name, bound);
        let me = self.clone();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let outcome = catch_unwind(AssertUnwindSafe(|| body(&beat)));
                beat.rest();
                if let Some(why) = me.ended_badly(&beat, outcome) {
                    me.fail(why);
                }
            })
    }

    /// Starts a thread for one piece of work that ends by itself (the integrity check after
    /// the start): its return is its end, not a failure, and nothing waits for it, so it has
    /// no heartbeat and no bound. A panic is logged by the panic hook and ends only this
    /// thread; whatever depended on the work sees it was not done.
    pub fn spawn_task(
        &self,
        name: &str,
        body: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let _ = catch_unwind(AssertUnwindSafe(body));
            })
    }

    /// Starts a thread that is started again, after a short pause, whenever it panics or
    /// returns outside shutdown: only for threads that hold nothing between units of work,
    /// so a fresh start loses nothing. A thread that stalls cannot be restarted (a thread
    /// cannot be killed), so a stall still ends the process; so do more than
    /// `RESTART_BUDGET` restarts within `RESTART_WINDOW`, and a panic during shutdown (which
    /// makes the exit non-zero instead of restarting).
    pub fn spawn_restarting(
        &self,
        name: &str,
        bound: Duration,
        mut body: impl FnMut(&Beat) + Send + 'static,
    ) -> std::io::Result<JoinHandle<()>> {
        let beat = self.register(name, bound);
        let me = self.clone();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let mut restarts = std::collections::VecDeque::with_capacity(RESTART_BUDGET);
                loop {
                    let outcome = catch_unwind(AssertUnwindSafe(|| body(&beat)));
                    let Some(why) = me.ended_badly(&beat, outcome) else {
                        break;
                    };
                    if me.is_stopping() {
                        me.fail(format!("{why} while stopping"));
                        break;
                    }
                    let now = Instant::now();
                    while restarts
                        .front()
                        .is_some_and(|at| now.duration_since(*at) > RESTART_WINDOW)
                    {
                        restarts.pop_front();
                    }
                    if restarts.len() >= RESTART_BUDGET {
                        me.fail(format!(
                            "{why}, its {} restart within {} s",
                            ordinal(RESTART_BUDGET + 1),
                            RESTART_WINDOW.as_secs()
                        ));
                        break;
                    }
                    restarts.push_back(now);
                    log::error!("{why}; restarting it");
                    beat.beat();
                    std::thread::sleep(RESTART_PAUSE);
                    if me.is_stopping() {
                        break;
                    }
                }
                beat.rest();
            })
    }

    /// Shutdown has begun: threads may end from now on without it counting as a failure.
    pub fn stop(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
    }

    fn is_stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }

    /// Runs on the main thread until a signal arrives or something fails: checks liveness
    /// every `CHECK_EVERY` (or every half `watchdog`, if shorter) and, with `watchdog`, sends
    /// `WATCHDOG=1` every half of it while everything is live.
    pub fn watch(&self, signals: &Receiver<i32>, watchdog: Option<Duration>) -> Watch {
        let tick = watchdog.map_or(CHECK_EVERY, |w| (w / 2).min(CHECK_EVERY));
        let mut last_ping: Option<Instant> = None;
        loop {
            select! {
                recv(signals) -> sig => match sig {
                    Ok(sig) => return Watch::Signal(sig),
                    Err(_) => return Watch::Failed("the signal thread stopped".into()),
                },
                recv(self.inner.failed) -> why => {
                    if let Ok(why) = why {
                        return Watch::Failed(self.gather(why));
                    }
                },
                default(tick) => {}
            }
            if let Err(why) = self.live() {
                self.fail(why.clone());
                return Watch::Failed(why);
            }
            if let Some(w) = watchdog
                && last_ping.is_none_or(|at| at.elapsed() >= w / 2)
            {
                crate::systemd::notify("WATCHDOG=1");
                last_ping = Some(Instant::now());
            }
        }
    }

    /// A failure reported since `watch` returned, if any: shutdown exits non-zero when a
    /// thread died while stopping.
    pub fn failure(&self) -> Option<String> {
        self.inner.failed.try_recv().ok()
    }

    /// The first failure with those reported within `GATHER` of it, the panics first: a
    /// thread's death often ends others (a closed channel), whose reports race its own.
    fn gather(&self, first: String) -> String {
        let deadline = Instant::now() + GATHER;
        let mut all = vec![first];
        while let Ok(more) = self.inner.failed.recv_deadline(deadline) {
            all.push(more);
        }
        all.sort_by_key(|why| !why.contains(" panicked"));
        all.join("; ")
    }

    /// Ok when every thread has beaten within its bound and every probe answers true.
    fn live(&self) -> Result<(), String> {
        for beat in self.lock_beats().iter() {
            if let Some(silent) = beat.overdue() {
                return Err(format!(
                    "thread {} has made no progress for {} s (its bound is {} s)",
                    beat.name(),
                    silent.as_secs(),
                    beat.shared.bound.as_secs()
                ));
            }
        }
        for (name, probe) in self.lock_probes().iter() {
            if !probe() {
                return Err(format!("{name} has stopped"));
            }
        }
        Ok(())
    }

    fn register(&self, name: &str, bound: Duration) -> Beat {
        let beat = Beat {
            shared: Arc::new(BeatShared {
                name: name.to_string(),
                origin: self.inner.origin,
                bound,
                last: AtomicU64::new(0),
                resting: AtomicBool::new(false),
                #[cfg(debug_assertions)]
                works: AtomicU64::new(0),
            }),
        };
        beat.beat();
        self.lock_beats().push(beat.clone());
        beat
    }

    /// What was wrong with a thread's end, or `None` when it ended for shutdown or because
    /// another failure is ending the process.
    fn ended_badly(&self, beat: &Beat, outcome: std::thread::Result<()>) -> Option<String> {
        match outcome {
            Ok(()) if self.is_stopping() => None,
            Ok(()) => {
                // A thread returns when its channel closes, which is often because the thread
                // at its other end just died: give that one's report time to land first. When
                // the process is already failing, this end is a consequence, not a cause.
                std::thread::sleep(GATHER);
                if self.is_stopping() || self.inner.health.is_failing() {
                    None
                } else {
                    Some(format!("thread {} ended unexpectedly", beat.name()))
                }
            }
            Err(payload) => Some(format!(
                "thread {} panicked: {}",
                beat.name(),
                panic_message(&*payload)
            )),
        }
    }

    /// Fails `/healthz` at once and tells the main thread, which exits non-zero (or, during
    /// shutdown, makes the exit non-zero).
    fn fail(&self, why: String) {
        log::error!("{why}; the process exits so that it is restarted");
        self.inner.health.fail();
        let _ = self.inner.failures.send(why);
    }

    fn lock_beats(&self) -> std::sync::MutexGuard<'_, Vec<Beat>> {
        self.inner.beats.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_probes(&self) -> std::sync::MutexGuard<'_, Vec<(String, Probe)>> {
        self.inner.probes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `1st`, `2nd`, `3rd`, `4th`, ... for a log line.
fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// The text a panic was raised with.
pub fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// A named point inside a unit of work where the debug build's fault hook may strike
/// (`STATUSSENTRY_FAULT=<point>[:<n>|:every]`); nothing in a release build.
pub fn fault_point(name: &str) {
    #[cfg(debug_assertions)]
    {
        static POINTS: AtomicU64 = AtomicU64::new(0);
        fault::at_work(name, &POINTS);
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// The test-only fault hook, compiled into debug builds only.
#[cfg(debug_assertions)]
mod fault {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// `STATUSSENTRY_FAULT=<thread>[:<n>][:hang]`, parsed once.
    struct Fault {
        /// A thread's name, or the name of a pool without its `-<i>` suffix (`worker`).
        thread: String,
        /// The fault strikes at this unit of work, counted from 0 in each thread.
        at: u64,
        hang: bool,
        /// At every unit of work, not only the `at`-th.
        every: bool,
    }

    fn armed() -> Option<&'static Fault> {
        static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
        FAULT
            .get_or_init(|| {
                let spec = std::env::var("STATUSSENTRY_FAULT").ok()?;
                let mut parts = spec.split(':');
                let thread = parts.next()?.to_string();
                let (mut at, mut hang, mut every) = (0, false, false);
                for part in parts {
                    match part {
                        "hang" => hang = true,
                        "every" => every = true,
                        n => at = n.parse().ok()?,
                    }
                }
                log::warn!("test fault armed: {spec}");
                Some(Fault {
                    thread,
                    at,
                    hang,
                    every,
                })
            })
            .as_ref()
    }

    pub(super) fn at_work(name: &str, works: &AtomicU64) {
        let Some(fault) = armed() else {
            return;
        };
        let pool = name.rsplit_once('-').map_or(name, |(pool, _)| pool);
        if fault.thread != name && fault.thread != pool {
            return;
        }
        if works.fetch_add(1, Ordering::Relaxed) != fault.at && !fault.every {
            return;
        }
        if fault.hang {
            log::warn!("test fault: {name} hangs");
            loop {
                std::thread::park();
            }
        }
        panic!("test fault injected into {name}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_failure(s: &Supervisor) -> String {
        s.inner
            .failed
            .recv_timeout(Duration::from_secs(10))
            .expect("a failure is reported")
    }

    #[test]
    fn a_thread_that_panics_is_reported_and_fails_health() {
        let s = Supervisor::new();
        let t = s
            .spawn("boom", Duration::from_secs(10), |_| panic!("on purpose"))
            .unwrap();
        let _ = t.join();
        let why = wait_failure(&s);
        assert!(why.contains("thread boom panicked: on purpose"), "{why}");
        assert!(s.health().is_failing());
    }

    #[test]
    fn a_thread_that_returns_outside_shutdown_is_reported() {
        let s = Supervisor::new();
        s.spawn("quiet", Duration::from_secs(10), |_| {})
            .unwrap()
            .join()
            .unwrap();
        assert!(wait_failure(&s).contains("thread quiet ended unexpectedly"));
    }

    #[test]
    fn a_thread_that_returns_in_shutdown_is_not_a_failure() {
        let s = Supervisor::new();
        s.stop();
        s.spawn("done", Duration::from_secs(10), |_| {})
            .unwrap()
            .join()
            .unwrap();
        assert!(s.failure().is_none());
        assert!(!s.health().is_failing());
        // It has ended, so it is not waited for.
        assert!(s.live().is_ok());
    }

    #[test]
    fn a_restarting_thread_runs_again_after_a_panic_and_stops_in_shutdown() {
        let s = Supervisor::new();
        let (tx, rx) = crossbeam_channel::unbounded();
        let me = s.clone();
        let t = s
            .spawn_restarting("again", Duration::from_secs(10), move |_| {
                let runs = tx.len() + 1;
                tx.send(()).unwrap();
                if runs < 3 {
                    panic!("run {runs}");
                }
                me.stop();
            })
            .unwrap();
        t.join().unwrap();
        assert_eq!(rx.len(), 3);
        assert!(s.failure().is_none());
        assert!(!s.health().is_failing());
    }

    #[test]
    fn a_restarting_thread_that_panics_while_stopping_is_a_failure() {
        let s = Supervisor::new();
        let me = s.clone();
        s.spawn_restarting("late", Duration::from_secs(10), move |_| {
            me.stop();
            panic!("in shutdown");
        })
        .unwrap()
        .join()
        .unwrap();
        let why = s.failure().expect("a failure");
        assert!(
            why.contains("thread late panicked: in shutdown while stopping"),
            "{why}"
        );
    }

    #[test]
    fn a_thread_that_keeps_panicking_runs_out_of_restarts() {
        let s = Supervisor::new();
        let (tx, rx) = crossbeam_channel::unbounded();
        s.spawn_restarting("doomed", Duration::from_secs(10), move |_| {
            tx.send(()).unwrap();
            panic!("again");
        })
        .unwrap()
        .join()
        .unwrap();
        // The first run and its budget of restarts, then the process is told to exit.
        assert_eq!(rx.len(), RESTART_BUDGET + 1);
        let why = s.failure().expect("a failure");
        assert!(
            why.contains("thread doomed panicked: again, its 11th restart within 60 s"),
            "{why}"
        );
        assert!(s.health().is_failing());
    }

    #[test]
    fn ordinals_read_as_english() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111]
            .into_iter()
            .map(ordinal)
            .collect();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
                "111th"
            ]
        );
    }

    #[test]
    fn a_thread_silent_past_its_bound_is_not_live() {
        let s = Supervisor::new();
        let beat = s.register("slow", Duration::from_millis(50));
        assert!(s.live().is_ok());
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.live().is_ok() {
            assert!(Instant::now() < deadline, "never counted as stalled");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            s.live()
                .unwrap_err()
                .contains("thread slow has made no progress")
        );
        beat.beat();
        assert!(s.live().is_ok());
        // A resting role is never stalled.
        beat.rest();
        std::thread::sleep(Duration::from_millis(60));
        assert!(s.live().is_ok());
    }

    #[test]
    fn a_failing_probe_ends_the_watch() {
        let s = Supervisor::new();
        let up = Arc::new(AtomicBool::new(true));
        let flag = up.clone();
        s.probe("accept loop", move || flag.load(Ordering::SeqCst));
        let (_tx, signals) = crossbeam_channel::unbounded();
        up.store(false, Ordering::SeqCst);
        match s.watch(&signals, Some(Duration::from_millis(20))) {
            Watch::Failed(why) => assert_eq!(why, "accept loop has stopped"),
            Watch::Signal(_) => panic!("no signal was sent"),
        }
        assert!(s.health().is_failing());
    }

    #[test]
    fn a_signal_ends_the_watch() {
        let s = Supervisor::new();
        let (tx, signals) = crossbeam_channel::unbounded();
        tx.send(15).unwrap();
        assert!(matches!(s.watch(&signals, None), Watch::Signal(15)));
    }
}
