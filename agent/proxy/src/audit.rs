//! Audit events: one per tool call (and per listing, pin change and refused message), handed to
//! the daemon over a local Unix socket in the state directory, or appended to the proxy's own
//! bounded spool file when the daemon is not listening.
//!
//! The socket hand-off is acknowledged: the proxy writes a batch of NDJSON lines, the daemon
//! appends them to its durable (fsynced) event spool and only then answers `ok N\n` for the N
//! lines it stored. A batch
//! without an answer (daemon killed, stuck or gone) goes to the proxy's fallback spool, which the
//! daemon drains later, so an event is lost only when both are impossible; the price is that a
//! daemon dying between its fsync and its answer makes that batch arrive twice.
//!
//! Events never carry argument or result values: only sizes, decisions, reasons and the kinds of
//! secrets found. The socket is created mode 0600 inside the 0700 state directory and the
//! listener also checks the peer's uid, so only the same user (or root) can hand in events.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agent_bom_state::layout::{AUDIT_SOCKET_FILE, PROXY_SPOOL_FILE, SHARE_SPOOL_DIR};
// The audit socket is a Unix socket: its reader and writer exist only there.
#[cfg(unix)]
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// Default cap of the fallback spool, in bytes; events beyond it are counted, not stored.
pub const DEFAULT_SPOOL_CAP: u64 = 8 * 1024 * 1024;
/// Events queued in memory between the relay and the writer; a full queue drops (and counts)
/// rather than slowing the relay down (4096 events is 200 ms at 20k calls per second).
const QUEUE: usize = 4096;
/// Pause after a batch (see the writer loop).
const BATCH_PAUSE: Duration = Duration::from_millis(10);
/// Longest event line the listener accepts.
#[cfg(unix)]
const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Proxies one listener serves at once (each MCP server a client starts is one proxy).
#[cfg(unix)]
const MAX_CONNECTIONS: usize = 256;
/// Most events in one acknowledged batch.
const BATCH_EVENTS: usize = 256;
/// How long a proxy waits for the daemon's acknowledgement before it spools the batch itself.
#[cfg(unix)]
const ACK_TIMEOUT: Duration = Duration::from_secs(1);

/// Events the listener received on one connection, and the channel on which the daemon says
/// whether they are durable (`true`) or not (`false`: the proxy keeps them).
#[derive(Debug)]
pub struct Handoff {
    /// The events, in order.
    pub events: Vec<AuditEvent>,
    /// Answered once the events are in the durable spool (or could not be stored).
    pub persisted: oneshot::Sender<bool>,
}

/// One audit event (the wire type, so the daemon ships what proxies write unchanged).
pub use agent_bom_protocol::ProxyEvent as AuditEvent;

pub use agent_bom_protocol::clock::now_ms;

/// The relay's handle to the audit writer. Cloning is cheap; emitting never blocks.
#[derive(Debug, Clone)]
pub struct AuditHandle {
    tx: mpsc::Sender<AuditEvent>,
    dropped: Arc<AtomicU64>,
    queued: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
}

impl AuditHandle {
    /// Queue an event; counted as dropped when the queue is full.
    pub fn emit(&self, mut event: AuditEvent) {
        event.dropped_before = self.dropped.load(Ordering::Relaxed);
        if self.tx.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            self.queued.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Wait (at most `timeout`) until every queued event was handed on (socket or spool), so a
    /// proxy that exits does not lose the last events.
    pub async fn flush(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.written.load(Ordering::Relaxed) < self.queued.load(Ordering::Relaxed)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Where events go.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// The daemon's socket.
    pub socket: PathBuf,
    /// The fallback spool file.
    pub spool: PathBuf,
    /// The spool's byte cap.
    pub spool_cap: u64,
}

impl AuditConfig {
    /// Socket and spool of a root daemon's user share ([`crate::user_share`]): the socket
    /// in it, the spool in its user-owned `spool/`.
    pub fn in_user_share(share_dir: &Path) -> Self {
        Self {
            socket: share_dir.join(AUDIT_SOCKET_FILE),
            spool: share_dir.join(SHARE_SPOOL_DIR).join(PROXY_SPOOL_FILE),
            spool_cap: DEFAULT_SPOOL_CAP,
        }
    }

    /// Socket and spool in `state_dir`.
    pub fn in_state_dir(state_dir: &Path) -> Self {
        Self {
            socket: state_dir.join(AUDIT_SOCKET_FILE),
            spool: state_dir.join(PROXY_SPOOL_FILE),
            spool_cap: DEFAULT_SPOOL_CAP,
        }
    }
}

/// Start the writer task. Await the returned join handle after dropping every handle to flush.
pub fn spawn_writer(config: AuditConfig) -> (AuditHandle, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<AuditEvent>(QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let queued = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let counter = dropped.clone();
    let done = written.clone();
    let task = tokio::spawn(async move {
        let mut writer = Writer {
            config,
            stream: None,
            last_attempt: None,
            dropped: counter,
        };
        // Idle: one wake-up per event. Busy: drain what queued up, then pause, so a burst of
        // calls costs the relay one wake-up of this task per BATCH_PAUSE, not one per event.
        while let Some(event) = rx.recv().await {
            let mut batch = vec![event];
            while batch.len() < BATCH_EVENTS {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            let n = batch.len() as u64;
            writer.write(&batch).await;
            done.fetch_add(n, Ordering::Relaxed);
            if n > 1 {
                tokio::time::sleep(BATCH_PAUSE).await;
            }
        }
    });
    (
        AuditHandle {
            tx,
            dropped,
            queued,
            written,
        },
        task,
    )
}

struct Writer {
    config: AuditConfig,
    #[cfg(unix)]
    stream: Option<tokio::io::BufReader<tokio::net::UnixStream>>,
    #[cfg(not(unix))]
    stream: Option<()>,
    last_attempt: Option<std::time::Instant>,
    dropped: Arc<AtomicU64>,
}

impl Writer {
    /// Hand a batch to the daemon; what it does not acknowledge goes to the fallback spool.
    async fn write(&mut self, events: &[AuditEvent]) {
        let lines: Vec<Vec<u8>> = events
            .iter()
            .filter_map(|e| serde_json::to_vec(e).ok())
            .map(|mut l| {
                l.push(b'\n');
                l
            })
            .collect();
        if self.send_socket(&lines.concat(), lines.len()).await {
            return;
        }
        for line in &lines {
            if !append_spool(&self.config.spool, line, self.config.spool_cap) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Write `bytes` (`lines` whole lines) and wait until the daemon acknowledged every line.
    #[cfg(unix)]
    async fn send_socket(&mut self, bytes: &[u8], lines: usize) -> bool {
        if self.stream.is_none() {
            // Retry a missing daemon at most once a second, not once per event.
            if self
                .last_attempt
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
            {
                return false;
            }
            self.last_attempt = Some(std::time::Instant::now());
            let connect = tokio::net::UnixStream::connect(&self.config.socket);
            match tokio::time::timeout(Duration::from_millis(200), connect).await {
                Ok(Ok(s)) => self.stream = Some(tokio::io::BufReader::new(s)),
                _ => return false,
            }
        }
        let Some(stream) = self.stream.as_mut() else {
            return false;
        };
        let exchange = async {
            stream.get_mut().write_all(bytes).await?;
            // The daemon may read the batch in pieces and answer each: `ok N` per piece.
            let mut acked = 0usize;
            let mut answer = String::new();
            while acked < lines {
                answer.clear();
                if stream.read_line(&mut answer).await? == 0 {
                    return Ok(false);
                }
                match answer
                    .trim_end()
                    .strip_prefix("ok ")
                    .and_then(|n| n.parse::<usize>().ok())
                {
                    Some(n) => acked += n,
                    None => return Ok(false),
                }
            }
            Ok::<bool, std::io::Error>(acked == lines)
        };
        match tokio::time::timeout(ACK_TIMEOUT, exchange).await {
            Ok(Ok(true)) => true,
            _ => {
                // No answer, or a refusal: the connection's state is unknown, start afresh.
                self.stream = None;
                false
            }
        }
    }

    #[cfg(not(unix))]
    async fn send_socket(&mut self, _bytes: &[u8], _lines: usize) -> bool {
        let _ = (&self.stream, &self.last_attempt);
        false
    }
}

/// Append one line to the spool unless that would exceed `cap`. Several proxies share the file;
/// each line is one `O_APPEND` write, so lines do not interleave.
fn append_spool(path: &Path, line: &[u8], cap: u64) -> bool {
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    if size.saturating_add(line.len() as u64) > cap {
        return false;
    }
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    options
        .open(path)
        .and_then(|mut f| f.write_all(line))
        .is_ok()
}

/// Put events back into a fallback spool file (the daemon could not store what it drained).
pub fn respool(path: &Path, events: &[AuditEvent]) {
    for e in events {
        if let Ok(mut line) = serde_json::to_vec(e) {
            line.push(b'\n');
            // Uncapped: these were accepted once already.
            let _ = append_spool(path, &line, u64::MAX);
        }
    }
}

/// Take every event out of a spool file (the daemon calls this when it starts listening). The
/// file is renamed first, so proxies appending at the same moment start a new file instead of
/// losing lines.
pub fn drain_spool(path: &Path) -> std::io::Result<Vec<AuditEvent>> {
    let taken = path.with_extension(format!("draining-{}", std::process::id()));
    match std::fs::rename(path, &taken) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    }
    // The file may sit in a directory its user controls (a user share read by a root
    // daemon): never follow a symlink, accept only a regular file, read a bounded amount.
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Not a FIFO either: non-blocking open, and only a regular file is read.
        options.custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK);
    }
    let opened = options.open(&taken).and_then(|f| {
        if f.metadata()?.is_file() {
            Ok(f)
        } else {
            Err(std::io::Error::other("not a regular file"))
        }
    });
    let mut text = Vec::new();
    if let Ok(file) = opened {
        use std::io::Read;
        file.take(DEFAULT_SPOOL_CAP * 2).read_to_end(&mut text)?;
    }
    let events = text
        .split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect();
    std::fs::remove_file(&taken)?;
    Ok(events)
}

/// The daemon's end of the audit socket.
#[cfg(unix)]
#[derive(Debug)]
pub struct AuditListener {
    listener: tokio::net::UnixListener,
    path: PathBuf,
    /// The other user this socket serves (besides the daemon's own uid and root).
    peer: Option<u32>,
}

#[cfg(unix)]
impl AuditListener {
    /// Bind a socket for the proxies of another user (`uid`, group `gid`) in that user's
    /// root-owned user share: root-owned, group `gid`, mode 0660, accepting that uid and
    /// root only (peer credentials decide; the mode only lets the user connect at all). The
    /// directory must be root-owned, so changing the socket by path cannot be redirected.
    pub fn bind_for_user(path: &Path, uid: u32, gid: u32) -> std::io::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let mut listener = Self::bind(path)?;
        std::os::unix::fs::chown(path, None, Some(gid))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        listener.peer = Some(uid);
        Ok(listener)
    }

    /// Bind the socket at `path` (replacing a stale one) with mode 0600.
    pub fn bind(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        if let Ok(meta) = std::fs::symlink_metadata(path)
            && meta.file_type().is_socket()
        {
            std::fs::remove_file(path)?;
        }
        let listener = tokio::net::UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(Self {
            listener,
            path: path.to_path_buf(),
            peer: None,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accept proxies until `shutdown`, handing their events to `tx` in batches and answering
    /// each batch once the receiver reports it durable. Connections from another user (other
    /// than root) are closed unread.
    pub async fn run(
        self,
        tx: mpsc::Sender<Handoff>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let me = nix::unistd::getuid().as_raw();
        let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = self.listener.accept() => a,
            };
            let Ok((stream, _)) = accepted else {
                // Out of descriptors, say: back off instead of spinning on the error.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let allowed = stream
                .peer_cred()
                .is_ok_and(|c| c.uid() == me || c.uid() == 0 || Some(c.uid()) == self.peer);
            if !allowed {
                tracing::warn!("audit socket: refused a connection from another user");
                continue;
            }
            // Bounded: a local process opening connections without end must not exhaust the
            // daemon's descriptors. Past the cap a proxy gets no answer and spools.
            let Ok(permit) = connections.clone().try_acquire_owned() else {
                tracing::warn!("audit socket: too many connections; refusing one");
                continue;
            };
            let tx = tx.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = serve_proxy(stream, tx) => {}
                }
                drop(permit);
            });
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One proxy connection: read the lines that arrived together as a batch, hand them on, answer
/// `ok` once they are durable. Without an answer the proxy spools the batch itself.
#[cfg(unix)]
async fn serve_proxy(stream: tokio::net::UnixStream, tx: mpsc::Sender<Handoff>) {
    use super::framing::{Frame, read_frame};
    let mut reader = tokio::io::BufReader::new(stream);
    let mut buf = Vec::new();
    // Cleared when the peer stops taking answers (gone, or not reading them): what it already
    // sent is still read and stored, just no longer acknowledged.
    let mut answering = true;
    loop {
        let mut events = Vec::new();
        let mut lines = 0usize;
        // Block for the first line, then take what is already buffered (one write of the
        // proxy's batch), so one fsync and one answer cover it.
        loop {
            match read_frame(&mut reader, &mut buf, MAX_EVENT_BYTES).await {
                Ok(Frame::Line) => {
                    lines += 1;
                    if let Ok(event) = serde_json::from_slice::<AuditEvent>(&buf) {
                        events.push(event);
                    }
                }
                Ok(Frame::Oversized(_)) => lines += 1,
                Ok(Frame::Eof) | Err(_) => return,
            }
            if reader.buffer().is_empty() || lines >= BATCH_EVENTS {
                break;
            }
        }
        // Lines that did not parse are acknowledged too: resending them cannot help.
        let count = lines;
        let durable = if events.is_empty() {
            true
        } else {
            let (persisted, answer) = oneshot::channel();
            if tx.send(Handoff { events, persisted }).await.is_err() {
                return;
            }
            answer.await.unwrap_or(false)
        };
        if !durable {
            // Not stored: close without an answer so the proxy keeps the batch.
            return;
        }
        if !answering {
            continue;
        }
        // Bounded: a peer that does not read its acknowledgements would otherwise block this
        // write, and with it the reading of everything it sends after.
        let ack = format!("ok {count}\n");
        let written =
            tokio::time::timeout(ACK_TIMEOUT * 5, reader.get_mut().write_all(ack.as_bytes())).await;
        answering = matches!(written, Ok(Ok(())));
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn event(tool: &str) -> AuditEvent {
        AuditEvent {
            kind: "call".into(),
            server_id: "s".into(),
            tool: Some(tool.into()),
            decision: "forward".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn events_reach_the_listener_and_fall_back_to_the_spool() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let config = AuditConfig::in_state_dir(dir.path());

        // Daemon down: the proxy spools.
        let (handle, task) = spawn_writer(config.clone());
        handle.emit(event("spooled"));
        drop(handle);
        task.await.unwrap();
        let spooled = drain_spool(&config.spool).unwrap();
        assert_eq!(spooled.len(), 1);
        assert_eq!(spooled[0].tool.as_deref(), Some("spooled"));
        assert!(drain_spool(&config.spool).unwrap().is_empty());

        // Daemon up: events arrive over the socket, which only the owner can open.
        let listener = AuditListener::bind(&config.socket).unwrap();
        let mode = std::fs::metadata(&config.socket)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (tx, mut rx) = mpsc::channel::<Handoff>(8);
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(listener.run(tx, stop.clone()));
        // A daemon that stores what it gets and acknowledges it.
        let (got_tx, mut got) = mpsc::unbounded_channel();
        let daemon = tokio::spawn(async move {
            while let Some(h) = rx.recv().await {
                for e in h.events {
                    got_tx.send(e).unwrap();
                }
                h.persisted.send(true).unwrap();
            }
        });
        let (handle, task) = spawn_writer(config.clone());
        handle.emit(event("a"));
        handle.emit(event("b"));
        drop(handle);
        task.await.unwrap();
        let a = got.recv().await.unwrap();
        let b = got.recv().await.unwrap();
        assert_eq!(
            (a.tool.as_deref(), b.tool.as_deref()),
            (Some("a"), Some("b"))
        );
        assert!(!config.spool.exists(), "acknowledged, so not spooled");
        stop.cancel();
        server.await.unwrap();
        daemon.abort();
    }

    #[tokio::test]
    async fn a_peer_that_leaves_without_reading_answers_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUDIT_SOCKET_FILE);
        let listener = AuditListener::bind(&path).unwrap();
        let (tx, mut rx) = mpsc::channel::<Handoff>(8);
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(listener.run(tx, stop.clone()));
        // A raw writer: a burst, then gone before any answer is read.
        let line = serde_json::to_string(&event("raw")).unwrap() + "\n";
        let mut peer = tokio::net::UnixStream::connect(&path).await.unwrap();
        peer.write_all(line.repeat(700).as_bytes()).await.unwrap();
        drop(peer);
        let mut got = 0;
        while got < 700 {
            let h = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("the rest of the burst is read")
                .unwrap();
            got += h.events.len();
            let _ = h.persisted.send(true);
        }
        assert_eq!(got, 700);
        stop.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn an_unacknowledged_batch_is_spooled_by_the_proxy() {
        let dir = tempfile::tempdir().unwrap();
        let config = AuditConfig::in_state_dir(dir.path());
        let listener = AuditListener::bind(&config.socket).unwrap();
        let (tx, mut rx) = mpsc::channel::<Handoff>(8);
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(listener.run(tx, stop.clone()));
        // A daemon that takes the events but cannot store them (full disk, crash before fsync).
        let daemon = tokio::spawn(async move {
            while let Some(h) = rx.recv().await {
                h.persisted.send(false).unwrap();
            }
        });
        let (handle, task) = spawn_writer(config.clone());
        handle.emit(event("kept"));
        drop(handle);
        task.await.unwrap();
        let spooled = drain_spool(&config.spool).unwrap();
        assert_eq!(spooled.len(), 1, "nothing is lost");
        assert_eq!(spooled[0].tool.as_deref(), Some("kept"));
        stop.cancel();
        server.await.unwrap();
        daemon.abort();
    }

    #[test]
    fn spool_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PROXY_SPOOL_FILE);
        assert!(append_spool(&path, b"0123456789\n", 20));
        assert!(!append_spool(&path, b"0123456789\n", 20));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 11);
    }
}
