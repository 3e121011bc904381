//! Readiness and status for systemd (`Type=notify`): a datagram to `$NOTIFY_SOCKET`, the
//! protocol of `sd_notify(3)` without linking libsystemd. Outside systemd (no socket) every
//! call does nothing.

/// Tell the manager the daemon is up (`READY=1`) with a status line.
pub fn ready(status: &str) {
    send(&format!("READY=1\nSTATUS={status}"));
}

/// Update the status line `systemctl status` shows.
pub fn status(status: &str) {
    send(&format!("STATUS={status}"));
}

/// Tell the manager the daemon is stopping (`STOPPING=1`).
pub fn stopping(status: &str) {
    send(&format!("STOPPING=1\nSTATUS={status}"));
}

#[cfg(unix)]
fn send(message: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let path = std::path::PathBuf::from(path);
    let sent = match path.to_str().and_then(|p| p.strip_prefix('@')) {
        // An abstract socket (Linux): `@name`.
        #[cfg(target_os = "linux")]
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|addr| socket.send_to_addr(message.as_bytes(), &addr))
        }
        _ => socket.send_to(message.as_bytes(), &path),
    };
    if let Err(e) = sent {
        tracing::debug!(error = %e, "cannot notify the service manager");
    }
}

#[cfg(not(unix))]
fn send(_message: &str) {}

#[cfg(all(test, unix))]
mod tests {
    #[test]
    fn readiness_reaches_the_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        // Setting the variable in this process would take `unsafe` (edition 2024), which the
        // crate forbids: the sender runs as a child test process with it set.
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "service::notify::tests::send_from_child",
                "--nocapture",
            ])
            .env("NOTIFY_SOCKET", &path)
            .env("AGENT_BOM_NOTIFY_CHILD", "1")
            .output()
            .unwrap();
        assert!(out.status.success());
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=test");
    }

    #[test]
    fn send_from_child() {
        if std::env::var_os("AGENT_BOM_NOTIFY_CHILD").is_some() {
            super::ready("test");
        }
    }
}
