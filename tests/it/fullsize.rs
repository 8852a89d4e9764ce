//! Issue 17, a long-lived install's size: what the start does not wait for any more. The
//! full-size figures themselves come from the benchmark (`full_month`, `full_fleet`).

use std::time::Duration;

use crate::harness::*;

/// The full integrity check runs after the start, not before it, and its verdict reaches the
/// log (a failed one also `/healthz`:
/// `hardening::damage_only_the_integrity_check_finds_is_served_then_reported_and_left_in_place`).
#[test]
fn the_integrity_check_runs_after_the_start_and_logs_its_verdict() {
    let mut server = Server::start("");
    wait_until(
        Duration::from_secs(20),
        "the integrity check's verdict in the log",
        || server.log().contains("passed its integrity check"),
    );
    let listening = server.log().find("listening on").expect("a start line");
    let checked = server
        .log()
        .find("passed its integrity check")
        .expect("checked");
    assert!(
        listening < checked,
        "the check must not delay the start:\n{}",
        server.log()
    );
    assert_eq!(
        server.client().raw("GET", "/healthz", &[], None).status,
        200
    );
    assert!(server.stop().success());
}
