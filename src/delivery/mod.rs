//! The delivery engine: one dispatcher thread that decides what goes where and when, and a
//! fixed pool of worker threads that make the HTTP requests. The dispatcher alone reads the
//! queue and records outcomes; workers never touch the database.

mod dispatcher;
pub mod policy;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::Sender;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;

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
pub fn start(
    store: Arc<Store>,
    config: &Config,
    metrics: Arc<Metrics>,
) -> Result<(Handle, JoinHandle<()>), String> {
    let agent = crate::net::agent(&config.delivery, &config.network)?;
    let (commands_tx, commands_rx) = crossbeam_channel::unbounded();
    let (runs_tx, runs_rx) = crossbeam_channel::unbounded();
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    for i in 0..config.delivery.workers {
        let (agent, runs, done) = (agent.clone(), runs_rx.clone(), done_tx.clone());
        std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || worker::run(agent, runs, done))
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
    let thread = std::thread::Builder::new()
        .name("dispatcher".into())
        .spawn(move || {
            struct Alive(Arc<AtomicBool>);
            impl Drop for Alive {
                fn drop(&mut self) {
                    self.0.store(false, Ordering::Relaxed);
                }
            }
            let _alive = Alive(alive);
            dispatcher.run();
        })
        .map_err(|e| format!("cannot start dispatcher: {e}"))?;
    Ok((handle, thread))
}
