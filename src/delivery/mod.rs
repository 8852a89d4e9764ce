//! The delivery engine: one dispatcher thread that decides what goes where and when, and a
//! fixed pool of worker threads that make the HTTP requests. The dispatcher alone reads the
//! queue and records outcomes; workers never touch the database.

mod dispatcher;
pub mod heartbeat;
pub mod policy;
mod recorder;
pub mod recovery;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::supervise::{READER_BOUND, Supervisor};

/// What the rest of the program tells the dispatcher.
pub enum Command {
    /// New messages were committed for these endpoints.
    Wake(Vec<i64>),
    /// An endpoint was created, edited, enabled, disabled, deleted, rotated or had messages
    /// requeued: reload it.
    Changed(i64),
    /// Stop sending, let in-flight requests finish within `shutdown_timeout`, record them.
    Shutdown,
}

/// A cheap, clonable way to reach the dispatcher.
#[derive(Clone)]
pub struct Handle {
    commands: Sender<Command>,
    alive: Arc<AtomicBool>,
}

impl Handle {
    pub fn wake(&self, endpoints: Vec<i64>) {
        if !endpoints.is_empty() {
            // A closed channel means the dispatcher has stopped; the messages are stored and
            // go out after the next start, so there is nothing more to do here.
            let _ = self.commands.send(Command::Wake(endpoints));
        }
    }

    pub fn changed(&self, endpoint: i64) {
        let _ = self.commands.send(Command::Changed(endpoint));
    }

    pub fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown);
    }

    /// Whether the dispatcher thread is still running.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }
}

/// Starts the workers and the dispatcher. The returned thread ends after `Handle::shutdown`
/// once in-flight requests are recorded or `shutdown_timeout` has passed.
///
/// None of these threads is restarted: the death of any ends the process (`supervise.rs`).
/// A worker that dies holds a run the dispatcher waits for, so its endpoint would stay in
/// flight for good; the dispatcher and the recorder hold every endpoint's state and the
/// outcomes not yet written. After the restart every message not recorded as delivered goes
/// out again (at-least-once).
pub fn start(
    store: Arc<Store>,
    config: &Config,
    metrics: Arc<Metrics>,
    supervisor: &Supervisor,
) -> Result<(Handle, JoinHandle<()>), String> {
    let agent = crate::net::agent(&config.delivery, &config.network)?;
    let (commands_tx, commands_rx) = crossbeam_channel::unbounded();
    let (runs_tx, runs_rx) = crossbeam_channel::unbounded();
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    // A worker beats before each request, and one request ends within the agent's
    // `timeout`; the slack covers a machine too busy to schedule it at once.
    let worker_bound = config.delivery.timeout + Duration::from_secs(30);
    for i in 0..config.delivery.workers {
        let (agent, runs, done) = (agent.clone(), runs_rx.clone(), done_tx.clone());
        supervisor
            .spawn(&format!("worker-{i}"), worker_bound, move |beat| {
                worker::run(agent, runs, done, beat)
            })
            .map_err(|e| format!("cannot start delivery worker: {e}"))?;
    }
    let alive = Arc::new(AtomicBool::new(true));
    let handle = Handle {
        commands: commands_tx,
        alive: alive.clone(),
    };
    let dispatcher = dispatcher::Dispatcher::new(
        store,
        metrics,
        config.delivery.clone(),
        config.server.shutdown_timeout,
        commands_rx,
        done_rx,
        runs_tx,
    );
    let recorder_supervisor = supervisor.clone();
    let thread = supervisor
        .spawn("dispatcher", READER_BOUND, move |beat| {
            struct Alive(Arc<AtomicBool>);
            impl Drop for Alive {
                fn drop(&mut self) {
                    self.0.store(false, Ordering::Relaxed);
                }
            }
            let _alive = Alive(alive);
            dispatcher.run(&recorder_supervisor, beat);
        })
        .map_err(|e| format!("cannot start dispatcher: {e}"))?;
    Ok((handle, thread))
}
