//! The durable outbound spool for proxy audit events.
//!
//! Events are appended (fsynced per batch) to `events.ndjson` in the state directory, bounded by
//! a byte cap: past it new events are dropped and counted, and the count ships with the next
//! batch. A batch is taken from the head under a sequence that is persisted *before* it is sent,
//! and removed only after the collector acknowledged its commit; after a crash the same events go
//! again under the same sequence, and the collector's idempotent apply drops the replay. The
//! removal of an acknowledged batch is journaled in the meta file, so a crash between cutting
//! the events file and updating the meta can neither resend the batch nor drop the next one. A line
//! that cannot be parsed (a torn write, a corrupted disk) quarantines the file to
//! `events.ndjson.corrupt-<ms>`, counts its lines as dropped and starts a fresh spool: never
//! fatal, never silent.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use agent_bom_protocol::ProxyEvent;
use agent_bom_protocol::secure_file::write_private;
use serde::{Deserialize, Serialize};

use agent_bom_state::layout::{EVENTS_FILE, EVENTS_META_FILE};
/// Default byte cap of the spool.
pub const DEFAULT_EVENT_CAP: u64 = 64 * 1024 * 1024;
/// Events per batch at most.
pub const BATCH_EVENTS: usize = 500;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Meta {
    next_seq: u64,
    /// Events dropped and not yet reported.
    dropped: u64,
    /// The batch sent and not yet acknowledged.
    pending: Option<Pending>,
    /// An acknowledged batch being removed from the head of the file (see [`EventSpool::acked`]).
    #[serde(default)]
    trim: Option<Trim>,
}

/// Intent to remove `count` lines from the head of a file that had `lines_before` lines. With
/// no append possible in between (one lock; recovery runs before anything else), the file's
/// line count afterwards tells whether the removal happened.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Trim {
    count: usize,
    lines_before: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    seq: u64,
    count: usize,
    dropped: u64,
}

/// A batch to ship.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Sequence of the batch.
    pub seq: u64,
    /// The events, oldest first.
    pub events: Vec<ProxyEvent>,
    /// Events dropped since the last acknowledged batch.
    pub dropped: u64,
}

/// The spool. Cheap operations under one lock: appends and batch bookkeeping never interleave.
#[derive(Debug)]
pub struct EventSpool {
    dir: PathBuf,
    cap: u64,
    lock: Mutex<()>,
}

impl EventSpool {
    /// Open the spool in `dir`, checking the events file; a corrupted one is quarantined.
    pub fn open(dir: &Path, cap: u64) -> std::io::Result<Self> {
        let spool = Self {
            dir: dir.to_path_buf(),
            cap,
            lock: Mutex::new(()),
        };
        spool.check()?;
        Ok(spool)
    }

    fn events_path(&self) -> PathBuf {
        self.dir.join(EVENTS_FILE)
    }

    fn meta(&self) -> Meta {
        std::fs::read(self.dir.join(EVENTS_META_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save_meta(&self, meta: &Meta) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
        write_private(&self.dir.join(EVENTS_META_FILE), &bytes)
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check(&self) -> std::io::Result<()> {
        let _g = self.guard();
        {
            let mut meta = self.meta();
            self.settle(&mut meta)?;
        }
        let path = self.events_path();
        let Ok(file) = std::fs::File::open(&path) else {
            return Ok(());
        };
        let mut lines = 0u64;
        let mut bad = false;
        for line in std::io::BufReader::new(file).split(b'\n') {
            let line = line?;
            if line.is_empty() {
                continue;
            }
            lines += 1;
            bad |= serde_json::from_slice::<ProxyEvent>(&line).is_err();
        }
        if bad {
            let ms = agent_bom_proxy::audit::now_ms();
            let quarantined = self.dir.join(format!("{EVENTS_FILE}.corrupt-{ms}"));
            std::fs::rename(&path, &quarantined)?;
            let mut meta = self.meta();
            meta.dropped += lines;
            meta.pending = None;
            self.save_meta(&meta)?;
            tracing::warn!(
                file = %quarantined.display(),
                lines,
                "the event spool was corrupted; it was quarantined and its events counted as dropped"
            );
        }
        Ok(())
    }

    /// Append events (fsynced). Past the cap they are dropped and counted.
    pub fn append(&self, events: &[ProxyEvent]) -> std::io::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let _g = self.guard();
        {
            // An interrupted removal is settled before new lines change the count.
            let mut meta = self.meta();
            self.settle(&mut meta)?;
        }
        let path = self.events_path();
        let mut size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let mut out = Vec::new();
        let mut dropped = 0u64;
        for e in events {
            let mut line = serde_json::to_vec(e).map_err(std::io::Error::other)?;
            line.push(b'\n');
            if size + line.len() as u64 > self.cap {
                dropped += 1;
                continue;
            }
            size += line.len() as u64;
            out.extend_from_slice(&line);
        }
        if !out.is_empty() {
            let mut options = std::fs::OpenOptions::new();
            options.create(true).append(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&path)?;
            file.write_all(&out)?;
            file.sync_data()?;
        }
        if dropped > 0 {
            let mut meta = self.meta();
            meta.dropped += dropped;
            self.save_meta(&meta)?;
            tracing::warn!(dropped, cap = self.cap, "event spool full; events dropped");
        }
        Ok(())
    }

    /// The batch to send: the unacknowledged one again, or a new one from the head. `None` when
    /// there is nothing to send.
    pub fn next_batch(&self) -> std::io::Result<Option<Batch>> {
        let _g = self.guard();
        let mut meta = self.meta();
        self.settle(&mut meta)?;
        let events = self.head(meta.pending.as_ref().map_or(BATCH_EVENTS, |p| p.count))?;
        if let Some(p) = &meta.pending {
            return Ok(Some(Batch {
                seq: p.seq,
                events,
                dropped: p.dropped,
            }));
        }
        if events.is_empty() && meta.dropped == 0 {
            return Ok(None);
        }
        let seq = meta.next_seq.max(1);
        meta.next_seq = seq + 1;
        meta.pending = Some(Pending {
            seq,
            count: events.len(),
            dropped: meta.dropped,
        });
        self.save_meta(&meta)?;
        Ok(Some(Batch {
            seq,
            dropped: meta.dropped,
            events,
        }))
    }

    /// The collector committed batch `seq`: remove its events from the spool.
    ///
    /// Two files change (the events and the meta), so the removal is journaled: the intent is
    /// saved first, then the head is cut, then the intent cleared. A crash in between is
    /// settled from the file's line count ([`Self::settle`]); without the journal, a crash
    /// after the cut would send the *next* events under the acknowledged sequence, and the
    /// collector would drop them as a replay.
    pub fn acked(&self, seq: u64) -> std::io::Result<()> {
        let _g = self.guard();
        let mut meta = self.meta();
        self.settle(&mut meta)?;
        if meta.pending.as_ref().is_none_or(|p| p.seq != seq) {
            return Ok(());
        }
        let count = meta.pending.as_ref().map_or(0, |p| p.count);
        meta.trim = Some(Trim {
            count,
            lines_before: self.line_count()?,
        });
        self.save_meta(&meta)?;
        self.cut_head(count)?;
        self.finish_trim(&mut meta)
    }

    /// Complete a journaled removal left by a crash (or an I/O error) before anything else.
    fn settle(&self, meta: &mut Meta) -> std::io::Result<()> {
        let Some(trim) = meta.trim.clone() else {
            return Ok(());
        };
        let lines = self.line_count()?;
        if lines == trim.lines_before && trim.count > 0 {
            self.cut_head(trim.count)?;
        } else if lines + trim.count != trim.lines_before {
            // Neither before nor after: keep every event (a duplicate beats a loss).
            tracing::warn!(
                lines,
                expected = trim.lines_before,
                "event spool changed during an interrupted removal; keeping its events"
            );
        }
        self.finish_trim(meta)
    }

    fn finish_trim(&self, meta: &mut Meta) -> std::io::Result<()> {
        if let Some(p) = meta.pending.take() {
            meta.dropped = meta.dropped.saturating_sub(p.dropped);
        }
        meta.trim = None;
        self.save_meta(meta)
    }

    /// Remove the first `count` lines of the events file (atomically: new file, rename).
    fn cut_head(&self, count: usize) -> std::io::Result<()> {
        let path = self.events_path();
        let Ok(file) = std::fs::File::open(&path) else {
            return Ok(());
        };
        let mut rest = Vec::new();
        for line in std::io::BufReader::new(file).split(b'\n').skip(count) {
            let line = line?;
            if !line.is_empty() {
                rest.extend_from_slice(&line);
                rest.push(b'\n');
            }
        }
        write_private(&path, &rest)
    }

    /// Non-empty lines in the events file.
    fn line_count(&self) -> std::io::Result<usize> {
        let Ok(file) = std::fs::File::open(self.events_path()) else {
            return Ok(0);
        };
        let mut n = 0;
        for line in std::io::BufReader::new(file).split(b'\n') {
            if !line?.is_empty() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Bytes waiting in the spool.
    pub fn size(&self) -> u64 {
        std::fs::metadata(self.events_path())
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Events dropped and not yet reported.
    pub fn dropped(&self) -> u64 {
        self.meta().dropped
    }

    fn head(&self, n: usize) -> std::io::Result<Vec<ProxyEvent>> {
        let Ok(file) = std::fs::File::open(self.events_path()) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for line in std::io::BufReader::new(file).split(b'\n') {
            if out.len() >= n {
                break;
            }
            let line = line?;
            if let Ok(e) = serde_json::from_slice(&line) {
                out.push(e);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(tool: &str) -> ProxyEvent {
        ProxyEvent {
            kind: "call".into(),
            server_id: "s".into(),
            tool: Some(tool.into()),
            decision: "forward".into(),
            ..Default::default()
        }
    }

    #[test]
    fn batches_survive_restarts_and_leave_only_after_ack() {
        let dir = tempfile::tempdir().unwrap();
        let spool = EventSpool::open(dir.path(), DEFAULT_EVENT_CAP).unwrap();
        assert_eq!(spool.next_batch().unwrap(), None);
        spool.append(&[ev("a"), ev("b")]).unwrap();
        let b1 = spool.next_batch().unwrap().unwrap();
        assert_eq!(b1.events.len(), 2);
        spool.append(&[ev("c")]).unwrap();
        // "Crash" before the ack: a new instance resends the same batch under the same seq.
        let again = EventSpool::open(dir.path(), DEFAULT_EVENT_CAP).unwrap();
        assert_eq!(again.next_batch().unwrap().unwrap(), b1);
        again.acked(b1.seq).unwrap();
        let b2 = again.next_batch().unwrap().unwrap();
        assert!(b2.seq > b1.seq);
        assert_eq!(b2.events, vec![ev("c")]);
        again.acked(b2.seq).unwrap();
        assert_eq!(again.next_batch().unwrap(), None);
        assert_eq!(again.size(), 0);
    }

    #[test]
    fn a_crash_inside_the_removal_of_an_acknowledged_batch_loses_nothing() {
        for cut_done in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let spool = EventSpool::open(dir.path(), DEFAULT_EVENT_CAP).unwrap();
            // Identical events, so only the bookkeeping can tell batches apart.
            spool.append(&[ev("same"), ev("same")]).unwrap();
            let b1 = spool.next_batch().unwrap().unwrap();
            spool.append(&[ev("same"), ev("same"), ev("same")]).unwrap();
            // What `acked` does, stopped after the journal (and, the second time, the cut).
            let mut meta = spool.meta();
            meta.trim = Some(Trim {
                count: b1.events.len(),
                lines_before: spool.line_count().unwrap(),
            });
            spool.save_meta(&meta).unwrap();
            if cut_done {
                spool.cut_head(b1.events.len()).unwrap();
            }
            drop(spool);
            let again = EventSpool::open(dir.path(), DEFAULT_EVENT_CAP).unwrap();
            let b2 = again.next_batch().unwrap().unwrap();
            assert!(
                b2.seq > b1.seq,
                "cut_done={cut_done}: the acknowledged batch is not resent"
            );
            assert_eq!(
                b2.events.len(),
                3,
                "cut_done={cut_done}: the next events all stay"
            );
        }
    }

    #[test]
    fn cap_drops_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let one = serde_json::to_vec(&ev("a")).unwrap().len() as u64 + 1;
        let spool = EventSpool::open(dir.path(), one * 2).unwrap();
        spool.append(&[ev("a"), ev("a"), ev("a")]).unwrap();
        assert_eq!(spool.dropped(), 1);
        let b = spool.next_batch().unwrap().unwrap();
        assert_eq!((b.events.len(), b.dropped), (2, 1));
        spool.acked(b.seq).unwrap();
        assert_eq!(spool.dropped(), 0);
    }

    #[test]
    fn corruption_is_quarantined_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(EVENTS_FILE), b"{\"kind\":\"call\"\n{torn").unwrap();
        let spool = EventSpool::open(dir.path(), DEFAULT_EVENT_CAP).unwrap();
        assert_eq!(spool.dropped(), 2);
        let quarantined = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().contains("corrupt"));
        assert!(quarantined);
        spool.append(&[ev("x")]).unwrap();
        let b = spool.next_batch().unwrap().unwrap();
        assert_eq!((b.events.len(), b.dropped), (1, 2));
    }
}
