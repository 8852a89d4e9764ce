//! Fixtures for unit tests, of the store and of the modules above it: a store on a fresh file
//! in a temporary directory, and an endpoint that takes every event (or `types`) and answers
//! nowhere (port 9).

use super::{EndpointRow, NewEndpoint, Store};

/// A store on a new file; the directory goes when the returned guard does.
pub fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db"), None).unwrap();
    (dir, store)
}

/// An enabled endpoint at a closed port, subscribed to `types` (none: every type), with no
/// batch window.
pub fn endpoint(store: &Store, types: &[&str]) -> EndpointRow {
    store
        .create_endpoint(&NewEndpoint {
            id: crate::id::new("ep"),
            url: "http://127.0.0.1:9/".into(),
            description: String::new(),
            event_types: types.iter().map(|t| t.to_string()).collect(),
            enabled: true,
            batch_max: 100,
            batch_window_ms: 0,
            heartbeat_secs: None,
            secret: crate::secret::generate(),
            now: 1,
        })
        .unwrap()
}
