//! The pieces of systemd's notify protocol we speak, on `$NOTIFY_SOCKET`: `READY=1` once the
//! store is open and the listener bound (`Type=notify`), and `WATCHDOG=1`, which the
//! supervisor sends only while every long-lived thread makes progress (`WatchdogSec=`). A few
//! lines of std instead of a crate. Outside systemd (no `$NOTIFY_SOCKET`) nothing is sent.

use std::os::unix::net::UnixDatagram;
use std::sync::Mutex;
use std::time::Duration;

/// The one socket every notification goes out on, made with the first (`READY=1`, sent at
/// start while descriptors are plenty) and kept: a socket made per watchdog ping fails once
/// the process runs out of descriptors (`EMFILE`), and the pings would stop while the threads
/// they vouch for are fine.
static SOCKET: Mutex<Option<UnixDatagram>> = Mutex::new(None);

/// Tells systemd the service is ready; does nothing when not started by systemd.
pub fn notify_ready() {
    notify("READY=1");
}

/// Sends one state line (`READY=1`, `WATCHDOG=1`) to systemd, if it listens.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let mut kept = SOCKET.lock().unwrap_or_else(|p| p.into_inner());
    let result = (|| -> std::io::Result<()> {
        let socket = match &mut *kept {
            Some(socket) => socket,
            none => none.insert(UnixDatagram::unbound()?),
        };
        let bytes = path.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            // An abstract socket: a leading NUL instead of '@'.
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            socket.send_to(state.as_bytes(), &path)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        log::warn!("cannot send {state} to systemd: {e}");
    }
}

/// systemd's watchdog interval (`$WATCHDOG_USEC`), when it is meant for this process
/// (`$WATCHDOG_PID` unset or ours) and pings have somewhere to go.
pub fn watchdog() -> Option<Duration> {
    std::env::var_os("NOTIFY_SOCKET")?;
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.trim().parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}
