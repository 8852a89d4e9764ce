//! The one piece of systemd's protocol we speak: `READY=1` on `$NOTIFY_SOCKET` once the store
//! is open and the listener bound (`Type=notify`). A few lines of std instead of a crate.

use std::os::unix::net::UnixDatagram;

/// Tells systemd the service is ready; does nothing when not started by systemd.
pub fn notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let result = (|| -> std::io::Result<()> {
        let socket = UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            // An abstract socket: a leading NUL instead of '@'.
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(b"READY=1", &addr)?;
        } else {
            socket.send_to(b"READY=1", &path)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        log::warn!("cannot notify systemd of readiness: {e}");
    }
}
