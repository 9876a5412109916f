//! The spool handle and its single writer thread.
//!
//! One OS thread owns the active segment and does all appends with blocking I/O, so fsync latency never stalls the
//! async runtime. Group commit needs no timer: the thread blocks for the first request, takes whatever else is
//! queued at that instant, writes it all with one `write_all` and one `sync_data`, then answers everyone. While
//! that fsync runs the next group piles up in the queue, so batching grows exactly when the disk is the bottleneck.

use std::fs::{self, File};
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::spool::frame::{self, Entry, EntryKind};
use crate::spool::ledger::Shared;
use crate::spool::reader::{Durable, Reader};
use crate::spool::segment::{self, DirClaim};
use crate::spool::{Position, Recovery, SpoolConfig, SpoolError, SpoolStats};

type Reply = oneshot::Sender<Result<Position, SpoolError>>;

struct Request {
    frame: Vec<u8>,
    kind: EntryKind,
    key: String,
    /// `None` for `append_unacked`: nobody waits, the entry rides along with the next group.
    reply: Option<Reply>,
}

/// A cheap, cloneable handle to one spool directory.
///
/// Dropping the last handle closes the queue: the writer thread commits what is queued and exits; the drop waits
/// for that (at most one group commit). Prefer [`Spool::close`] in async code, which waits off the runtime.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    /// `None` once closed. Each append clones it for the duration of its send, so the writer thread only sees the
    /// queue close after the last in-flight append is queued.
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    durable: watch::Receiver<Durable>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.tx.get_mut().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(handle) = self.thread.get_mut().unwrap_or_else(PoisonError::into_inner).take() {
            // A panicked writer has nothing left to flush; there is nobody to report it to in a drop.
            let _ = handle.join();
        }
    }
}

impl Spool {
    /// Opens (creating if absent) a spool directory, repairs it, and starts the writer on a fresh segment.
    ///
    /// Blocking: it reads every live segment once. Call it at startup, before serving.
    pub fn open(config: SpoolConfig) -> Result<(Spool, Recovery), SpoolError> {
        if config.segment_bytes_max == 0 || config.queue_capacity == 0 || config.group_commit_max_entries == 0 {
            return Err(SpoolError::Config(
                "segment_bytes_max, queue_capacity and group_commit_max_entries must be > 0",
            ));
        }
        // tokio's bounded channel panics above this; refuse it here instead.
        if config.queue_capacity > usize::MAX >> 3 {
            return Err(SpoolError::Config("queue_capacity is too large"));
        }
        fs::create_dir_all(&config.dir).map_err(SpoolError::io("create dir", &config.dir))?;
        let claim = DirClaim::claim(&config.dir)?;
        let (mut ledger, recovery, id) = segment::recover(&config.dir)?;
        let file = segment::create_segment(&config.dir, id)?;
        let start = Position { segment: id, offset: 0 };
        ledger.add_segment(id, 0);
        ledger.active = id;
        ledger.durable = start;
        let shared = Arc::new(Shared::new(config.dir.clone(), ledger));
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let (durable_tx, durable) = watch::channel(Durable { pos: start, closed: false, failed: false });
        let writer = Writer {
            shared: Arc::clone(&shared),
            rx,
            durable_tx,
            file,
            seg: id,
            seg_len: 0,
            buf: Vec::new(),
            segment_bytes_max: config.segment_bytes_max,
            group_max: config.group_commit_max_entries,
            linger: config.group_commit_linger,
            _claim: claim,
        };
        let thread = thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer.run())
            .map_err(SpoolError::io("spawn writer thread for", &config.dir))?;
        let inner = Inner { shared, tx: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)), durable };
        Ok((Spool { inner: Arc::new(inner) }, recovery))
    }

    /// Resolves once the entry is on disk and fsync'd; the position is the byte after it.
    ///
    /// Waits (backpressure) while the queue is full. A refused entry (too large) fails alone; an I/O error fails
    /// this and every later append with [`SpoolError::Failed`].
    pub async fn append(&self, entry: Entry) -> Result<Position, SpoolError> {
        let (reply, answer) = oneshot::channel();
        self.enqueue(entry, Some(reply)).await?;
        answer.await.unwrap_or_else(|_| Err(self.gone()))
    }

    /// Returns once the entry is queued; it becomes durable with the next group commit. For `Begin` entries, so
    /// dispatch never waits on an fsync: losing a `Begin` in a crash only loses the "interrupted" marker.
    pub async fn append_unacked(&self, entry: Entry) -> Result<(), SpoolError> {
        self.enqueue(entry, None).await
    }

    async fn enqueue(&self, entry: Entry, reply: Option<Reply>) -> Result<(), SpoolError> {
        let frame = frame::encode(&entry)?;
        if let Some(reason) = self.inner.shared.ledger().failed.clone() {
            return Err(SpoolError::Failed { reason });
        }
        let tx = self.inner.tx.lock().unwrap_or_else(PoisonError::into_inner).clone().ok_or(SpoolError::Closed)?;
        let request = Request { frame, kind: entry.kind, key: entry.key, reply };
        tx.send(request).await.map_err(|_| self.gone())
    }

    /// Why the writer stopped answering: its failure if it failed, otherwise it was closed.
    fn gone(&self) -> SpoolError {
        match self.inner.shared.ledger().failed.clone() {
            Some(reason) => SpoolError::Failed { reason },
            None => SpoolError::Closed,
        }
    }

    /// The forwarder's view. Only one reader at a time (a second gets [`SpoolError::ReaderBusy`] until the first is
    /// dropped): two forwarders acking independently would delete each other's unshipped segments.
    pub fn reader(&self) -> Result<Reader, SpoolError> {
        Reader::new(Arc::clone(&self.inner.shared), self.inner.durable.clone())
    }

    pub fn stats(&self) -> SpoolStats {
        self.inner.shared.ledger().stats()
    }

    /// Stops accepting appends (from every clone), commits what is queued, and waits for the writer thread.
    /// Returns the failure if the spool had failed.
    pub async fn shutdown(&self) -> Result<(), SpoolError> {
        self.inner.tx.lock().unwrap_or_else(PoisonError::into_inner).take();
        let handle = self.inner.thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(handle) = handle {
            let joined = tokio::task::spawn_blocking(move || handle.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                return Err(SpoolError::Failed { reason: "writer thread panicked".into() });
            }
        }
        match self.inner.shared.ledger().failed.clone() {
            Some(reason) => Err(SpoolError::Failed { reason }),
            None => Ok(()),
        }
    }

    pub async fn close(self) -> Result<(), SpoolError> {
        self.shutdown().await
    }

    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }
}

struct Writer {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Request>,
    durable_tx: watch::Sender<Durable>,
    file: File,
    seg: u64,
    /// Bytes of the active segment already written (and, between groups, fsync'd).
    seg_len: u64,
    /// Reused across groups; holds at most one segment's worth since it is flushed at every rotation.
    buf: Vec<u8>,
    segment_bytes_max: u64,
    group_max: usize,
    linger: Duration,
    /// Held for the thread's life: the directory counts as open until the last write is done.
    _claim: DirClaim,
}

impl Writer {
    fn run(mut self) {
        let mut group = Vec::with_capacity(self.group_max.min(4096));
        while let Some(first) = self.rx.blocking_recv() {
            group.push(first);
            if !self.linger.is_zero() {
                thread::sleep(self.linger);
            }
            while group.len() < self.group_max {
                match self.rx.try_recv() {
                    Ok(request) => group.push(request),
                    Err(_) => break,
                }
            }
            self.commit(&mut group);
        }
        self.durable_tx.send_modify(|d| d.closed = true);
    }

    fn commit(&mut self, group: &mut Vec<Request>) {
        let failed = self.shared.ledger().failed.clone();
        if let Some(reason) = failed {
            return answer_failed(group, &reason);
        }
        let mut positions = Vec::with_capacity(group.len());
        let mut touched = Vec::new();
        if let Err(err) = self.write_group(group, &mut positions, &mut touched) {
            let reason: Arc<str> = err.to_string().into();
            self.shared.ledger().failed = Some(Arc::clone(&reason));
            self.durable_tx.send_modify(|d| d.failed = true);
            return answer_failed(group, &reason);
        }
        let mut closed_any = false;
        let mut durable = Position::default();
        {
            let mut ledger = self.shared.ledger();
            for (id, len) in &touched {
                ledger.add_segment(*id, *len);
            }
            ledger.active = self.seg;
            for (request, pos) in group.iter().zip(&positions) {
                closed_any |= ledger.apply(request.kind, &request.key, pos.segment).1;
                durable = *pos;
            }
            ledger.entries_appended += group.len() as u64;
            ledger.group_commits += 1;
            ledger.durable = durable;
        }
        self.durable_tx.send_modify(|d| d.pos = durable);
        for (request, pos) in group.drain(..).zip(positions) {
            if let Some(reply) = request.reply {
                // The waiter may have given up (its task was cancelled); the entry is durable all the same.
                let _ = reply.send(Ok(pos));
            }
        }
        if closed_any {
            // Best effort after the answers: a failed unlink leaves a file for the next `ack` to retry.
            let _ = self.shared.trim();
        }
    }

    fn write_group(
        &mut self,
        group: &[Request],
        positions: &mut Vec<Position>,
        touched: &mut Vec<(u64, u64)>,
    ) -> Result<(), SpoolError> {
        self.buf.clear();
        for request in group {
            let used = self.seg_len + self.buf.len() as u64;
            if used > 0 && used + request.frame.len() as u64 > self.segment_bytes_max {
                // Seal: the old segment must be durable before any byte lands in the next, so a reader or
                // recovery can treat every segment below the watermark's as complete.
                self.flush()?;
                touched.push((self.seg, self.seg_len));
                let next = self.seg.checked_add(1).ok_or(SpoolError::Config("segment ids exhausted"))?;
                self.file = segment::create_segment(&self.shared.dir, next)?;
                self.seg = next;
                self.seg_len = 0;
            }
            self.buf.extend_from_slice(&request.frame);
            positions.push(Position { segment: self.seg, offset: self.seg_len + self.buf.len() as u64 });
        }
        self.flush()?;
        touched.push((self.seg, self.seg_len));
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SpoolError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let path = segment::segment_path(&self.shared.dir, self.seg);
        self.file.write_all(&self.buf).map_err(SpoolError::io("write", &path))?;
        self.seg_len += self.buf.len() as u64;
        self.buf.clear();
        #[cfg(test)]
        if self.shared.fail_next_sync.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(SpoolError::io("fsync", &path)(std::io::Error::other("injected fsync failure")));
        }
        self.file.sync_data().map_err(SpoolError::io("fsync", &path))
    }
}

fn answer_failed(group: &mut Vec<Request>, reason: &Arc<str>) {
    for request in group.drain(..) {
        if let Some(reply) = request.reply {
            let _ = reply.send(Err(SpoolError::Failed { reason: Arc::clone(reason) }));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::Ordering;

    #[tokio::test]
    async fn an_fsync_error_fails_the_group_and_every_later_append() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
        let ok = spool.append(Entry::finish("a", b"1".to_vec())).await.unwrap();
        spool.shared().fail_next_sync.store(true, Ordering::SeqCst);
        let err = spool.append(Entry::finish("b", b"2".to_vec())).await.unwrap_err();
        assert!(matches!(err, SpoolError::Failed { .. }), "{err:?}");
        let later = spool.append(Entry::finish("c", b"3".to_vec())).await.unwrap_err();
        assert!(matches!(later, SpoolError::Failed { .. }), "{later:?}");
        assert!(spool.stats().failed);
        assert_eq!(spool.stats().durable, ok, "the watermark never covers the failed group");
        assert!(matches!(spool.close().await, Err(SpoolError::Failed { .. })));
    }
}
