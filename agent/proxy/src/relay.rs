//! The stdio relay: spawn the server, pump lines both ways through the engine, forward signals,
//! end the server's process tree, propagate its exit status.
//!
//! Each direction is its own thread doing blocking pipe I/O: no direction waits on the other
//! (no head-of-line blocking), back-pressure is the pipes' own, and a line is flushed as soon as
//! it is complete. Only the engine's state is shared, under a mutex held for one decision.

use std::ffi::OsString;
use std::io::{BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::audit::AuditHandle;
use super::engine::{Engine, Verdict};
use super::framing::{Frame, read_frame_blocking};

/// Read buffer of each pump; lines longer than this are assembled across reads.
const READ_BUFFER: usize = 64 * 1024;
/// How long the server gets to exit by itself after the client closed our stdin, before SIGTERM;
/// and again after SIGTERM, before SIGKILL.
pub const GRACE: Duration = Duration::from_secs(2);

/// Spawn the server: the client's environment and working directory (inherited as-is), stdin and
/// stdout piped through us, stderr passed straight through. On Unix it leads its own process
/// group, so the whole tree (npx → node → …) can be signalled at once.
pub fn spawn(command: &OsString, args: &[OsString]) -> std::io::Result<Child> {
    let mut cmd = Command::new(command);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    cmd.spawn()
}

/// Send `signal` to the server's process group.
#[cfg(unix)]
pub fn signal_tree(pid: u32, signal: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), signal);
    }
}

/// Events from the pumps to the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PumpEvent {
    /// Our stdin ended: the client went away or closed the session.
    ClientClosed,
    /// The server's stdout ended.
    ServerClosed,
    /// Writing to our stdout failed: the client is gone.
    ClientGone,
}

/// Shared state of the pumps.
#[derive(Clone)]
pub struct Shared {
    /// The engine.
    pub engine: Arc<Mutex<Engine>>,
    /// Our stdout, shared by both pumps (the client→server pump writes refusals to it).
    pub out: Arc<Mutex<Box<dyn Write + Send>>>,
    /// The audit writer.
    pub audit: AuditHandle,
    /// Where pump events go.
    pub events: tokio::sync::mpsc::UnboundedSender<PumpEvent>,
}

impl Shared {
    fn write_out(&self, bytes: &[u8]) -> bool {
        let Ok(mut out) = self.out.lock() else {
            return false;
        };
        out.write_all(bytes).and_then(|()| out.flush()).is_ok()
    }

    fn judge(&self, from_client: bool, line: &[u8]) -> Verdict {
        let now = Instant::now();
        let Ok(mut engine) = self.engine.lock() else {
            // A poisoned engine means a bug in a decision; refuse rather than relay blindly.
            return Verdict::Drop;
        };
        let (verdict, events) = if from_client {
            engine.on_client(line, now)
        } else {
            engine.on_server(line, now)
        };
        drop(engine);
        for e in events {
            self.audit.emit(e);
        }
        verdict
    }

    fn oversized(&self, from_client: bool, len: usize) {
        if let Ok(engine) = self.engine.lock() {
            self.audit.emit(engine.oversized(from_client, len));
        }
        tracing::warn!("dropped a {len}-byte message over max_message_bytes");
    }
}

/// Client → server: our stdin into the server's stdin.
pub fn pump_client<R: std::io::Read>(shared: Shared, input: R, mut server: ChildStdin, max: usize) {
    let mut reader = BufReader::with_capacity(READ_BUFFER, input);
    let mut buf = Vec::new();
    loop {
        match read_frame_blocking(&mut reader, &mut buf, max) {
            Ok(Frame::Line) => {
                let ok = match shared.judge(true, &buf) {
                    Verdict::Forward => server.write_all(&buf).is_ok(),
                    Verdict::Rewrite(bytes) => server.write_all(&bytes).is_ok(),
                    Verdict::Reply(bytes) => {
                        if !shared.write_out(&bytes) {
                            let _ = shared.events.send(PumpEvent::ClientGone);
                        }
                        true
                    }
                    Verdict::Drop => true,
                };
                if !ok {
                    // The server closed its stdin; nothing more can reach it.
                    break;
                }
            }
            Ok(Frame::Oversized(n)) => shared.oversized(true, n),
            Ok(Frame::Eof) | Err(_) => break,
        }
    }
    // Closing the server's stdin is the MCP way of asking it to exit.
    drop(server);
    let _ = shared.events.send(PumpEvent::ClientClosed);
}

/// Server → client: the server's stdout into our stdout.
pub fn pump_server(shared: Shared, output: ChildStdout, max: usize) {
    let mut reader = BufReader::with_capacity(READ_BUFFER, output);
    let mut buf = Vec::new();
    loop {
        match read_frame_blocking(&mut reader, &mut buf, max) {
            Ok(Frame::Line) => {
                let ok = match shared.judge(false, &buf) {
                    Verdict::Forward => shared.write_out(&buf),
                    Verdict::Rewrite(bytes) | Verdict::Reply(bytes) => shared.write_out(&bytes),
                    Verdict::Drop => true,
                };
                if !ok {
                    let _ = shared.events.send(PumpEvent::ClientGone);
                    return;
                }
            }
            Ok(Frame::Oversized(n)) => shared.oversized(false, n),
            Ok(Frame::Eof) | Err(_) => break,
        }
    }
    let _ = shared.events.send(PumpEvent::ServerClosed);
}

/// Exit code for a child status: its code, or 128 + the signal that ended it (the shell's
/// convention, so the client sees what it would have seen without the proxy).
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    if let Some(code) = status.code() {
        return code;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return 128 + sig;
        }
    }
    1
}
