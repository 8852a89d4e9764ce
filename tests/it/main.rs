//! Integration tests: the real `statussentry` binary on port 0, a temp database and
//! loopback receivers. Nothing here reaches outside the machine, and nothing here knows the
//! binary's internals; every check goes through the contract in SPEC.md.

mod api;
mod assets;
mod clock;
mod delivery;
mod edge;
mod fullsize;
mod guard;
mod hardening;
mod harness;
mod heal;
mod heartbeat;
mod openapi;
mod ops;
mod push;
mod queue;
mod recovery;
mod soak;
mod sources;
mod supervise;
mod timings;
