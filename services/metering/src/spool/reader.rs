//! The forwarder's side: read durable entries in order, acknowledge what is stored downstream, trim.
//!
//! The reader never reads past the durable watermark the writer publishes after each fsync, so nothing it hands
//! out can be taken back by a crash. It reads through a buffered file handle in a blocking task, one batch at a
//! time, so the backlog stays on disk however large it grows.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::watch;

use crate::spool::frame::{self, Entry, Frame};
use crate::spool::ledger::Shared;
use crate::spool::segment;
use crate::spool::{Position, SpoolError};

const READ_BUFFER: u64 = 64 << 10;

/// What the writer thread publishes after each group commit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Durable {
    /// Everything up to here is fsync'd.
    pub(crate) pos: Position,
    /// The writer thread has exited: nothing more will become durable.
    pub(crate) closed: bool,
    /// The writer failed: nothing more will become durable, and readers should say why once caught up.
    pub(crate) failed: bool,
}

/// Reads durable entries in spool order and acknowledges them. See [`crate::spool::Spool::reader`].
///
/// After a restart it starts again at the oldest live segment, so entries already shipped but not yet trimmed are
/// sent again: downstream must be idempotent by key.
pub struct Reader {
    shared: Arc<Shared>,
    durable: watch::Receiver<Durable>,
    /// Start of the next entry to hand out. Only moved when entries are handed out (or dead segment ends are
    /// skipped), so a cancelled `next_batch` loses nothing.
    pos: Position,
    /// The open segment, kept between batches. `None` while a blocking read owns it, or after one was cancelled.
    cursor: Option<Cursor>,
}

#[derive(Debug, Default)]
struct Cursor {
    pos: Position,
    file: Option<(u64, File)>,
}

impl Reader {
    pub(crate) fn new(shared: Arc<Shared>, durable: watch::Receiver<Durable>) -> Result<Self, SpoolError> {
        if shared.reader_active.swap(true, Ordering::AcqRel) {
            return Err(SpoolError::ReaderBusy);
        }
        let first = {
            let ledger = shared.ledger();
            ledger.first().unwrap_or(ledger.active)
        };
        Ok(Reader { shared, durable, pos: Position { segment: first, offset: 0 }, cursor: None })
    }

    /// Where the next batch starts.
    pub fn position(&self) -> Position {
        self.pos
    }

    /// The next durable entries in order, each with the position just after it (what to pass to [`Reader::ack`]).
    ///
    /// Waits until at least one entry is durable. Returns an empty batch once the spool is closed and everything
    /// was read, and [`SpoolError::Failed`] once it failed and everything durable was read. The batch stops at
    /// `max_entries`, or once it holds `max_bytes` of frames (so it can exceed that by at most one entry).
    /// Cancel-safe: dropping the future hands out nothing and skips nothing.
    pub async fn next_batch(
        &mut self,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<(Position, Entry)>, SpoolError> {
        let max_entries = max_entries.max(1);
        loop {
            let durable = *self.durable.borrow_and_update();
            if self.pos < durable.pos {
                let mut cursor = self.cursor.take().unwrap_or_default();
                cursor.pos = self.pos;
                let shared = Arc::clone(&self.shared);
                let task = tokio::task::spawn_blocking(move || {
                    let result = read_batch(&shared, &mut cursor, durable.pos, max_entries, max_bytes);
                    (cursor, result)
                });
                let (cursor, (batch, err)) = task.await.map_err(|join| SpoolError::Io {
                    op: "reader task",
                    path: self.shared.dir.clone(),
                    source: io::Error::other(join.to_string()),
                })?;
                self.pos = cursor.pos;
                self.cursor = Some(cursor);
                // Entries read before an error are handed out; the error comes back on the next call, at the bad
                // frame, so nothing is skipped.
                if !batch.is_empty() {
                    return Ok(batch);
                }
                if let Some(err) = err {
                    return Err(err);
                }
                continue;
            }
            if durable.failed {
                let reason = self.shared.ledger().failed.clone().unwrap_or_else(|| "writer failed".into());
                return Err(SpoolError::Failed { reason });
            }
            if durable.closed || self.durable.changed().await.is_err() {
                // The writer may have published a last watermark just before going away.
                if self.pos < self.durable.borrow_and_update().pos {
                    continue;
                }
                return Ok(Vec::new());
            }
        }
    }

    /// Everything up to `upto` is stored downstream: delete what may be deleted.
    ///
    /// A segment goes once it lies entirely before `upto` (or is sealed and acked to its end), is not the active
    /// one, holds no open `Begin`, and holds no `Finish` whose `Begin` is still on disk. Does a few unlinks and one
    /// directory fsync per level of deletion, synchronously: call it from a blocking context if that matters.
    pub fn ack(&self, upto: Position) -> Result<(), SpoolError> {
        {
            let mut ledger = self.shared.ledger();
            if upto > ledger.durable {
                return Err(SpoolError::AckBeyondDurable { upto, durable: ledger.durable });
            }
            if ledger.acked.is_none_or(|acked| acked < upto) {
                ledger.acked = Some(upto);
            }
        }
        self.shared.trim()
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.shared.reader_active.store(false, Ordering::Release);
    }
}

/// Reads frames from `cursor.pos` up to `durable`. Returns what it read and, if it stopped on an error, the error;
/// `cursor.pos` ends just after the last returned entry (or at the start of the next live segment).
fn read_batch(
    shared: &Shared,
    cursor: &mut Cursor,
    durable: Position,
    max_entries: usize,
    max_bytes: usize,
) -> (Vec<(Position, Entry)>, Option<SpoolError>) {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let room =
        |out: &Vec<(Position, Entry)>, bytes: usize| out.len() < max_entries && (out.is_empty() || bytes < max_bytes);
    while cursor.pos < durable && room(&out, bytes) {
        let seg = cursor.pos.segment;
        let path = segment::segment_path(&shared.dir, seg);
        let file = match cursor.file.take() {
            Some((id, file)) if id == seg => file,
            _ => match File::open(&path) {
                Ok(file) => file,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    // Trimmed by an ack at or beyond it: nothing here is owed to the reader any more.
                    skip_segment(shared, cursor, durable);
                    continue;
                }
                Err(err) => return (out, Some(SpoolError::io("open", path)(err))),
            },
        };
        // Below the watermark's segment a segment is sealed and complete; in it, only up to the watermark counts.
        let end = if seg < durable.segment {
            match file.metadata() {
                Ok(meta) => meta.len(),
                Err(err) => return (out, Some(SpoolError::io("stat", path)(err))),
            }
        } else {
            durable.offset
        };
        if cursor.pos.offset >= end {
            skip_segment(shared, cursor, durable);
            continue;
        }
        let mut src = &file;
        if let Err(err) = src.seek(SeekFrom::Start(cursor.pos.offset)) {
            return (out, Some(SpoolError::io("seek", path)(err)));
        }
        // `take` keeps the buffer from reading ahead into bytes the writer may still be writing.
        let limit = end - cursor.pos.offset;
        let capacity = usize::try_from(limit.min(READ_BUFFER)).unwrap_or(0);
        let mut src = BufReader::with_capacity(capacity, src.take(limit));
        while cursor.pos.offset < end && room(&out, bytes) {
            match frame::read_frame(&mut src, end - cursor.pos.offset) {
                Ok(Frame::Entry(entry, len)) => {
                    cursor.pos.offset += len;
                    bytes = bytes.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
                    out.push((cursor.pos, entry));
                }
                Ok(Frame::End) => break,
                Ok(Frame::Bad(reason)) => {
                    let err = SpoolError::Corrupt { segment: seg, offset: cursor.pos.offset, reason };
                    return (out, Some(err));
                }
                Err(err) => return (out, Some(SpoolError::io("read", path)(err))),
            }
        }
        drop(src);
        cursor.file = Some((seg, file));
    }
    (out, None)
}

/// Moves to the start of the next live segment. The active segment is always live and never behind the
/// watermark, so falling off the end can only mean everything up to the watermark is gone: stand there.
fn skip_segment(shared: &Shared, cursor: &mut Cursor, durable: Position) {
    cursor.file = None;
    cursor.pos = match shared.ledger().next_after(cursor.pos.segment) {
        Some(next) if next <= durable.segment => Position { segment: next, offset: 0 },
        _ => durable,
    };
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::spool::{Entry, Spool, SpoolConfig, SpoolError};
    use std::sync::atomic::Ordering;

    /// Bytes that reached the file but whose fsync failed are below no watermark: the reader must not hand them
    /// out, even though a plain file read would see them.
    #[tokio::test]
    async fn written_but_unsynced_bytes_are_never_handed_out() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
        let mut reader = spool.reader().unwrap();
        let durable = spool.append(Entry::finish("synced", b"1".to_vec())).await.unwrap();
        spool.shared().fail_next_sync.store(true, Ordering::SeqCst);
        assert!(spool.append(Entry::finish("unsynced", b"2".to_vec())).await.is_err());
        let on_disk =
            std::fs::metadata(crate::spool::segment::segment_path(dir.path(), durable.segment)).unwrap().len();
        assert!(on_disk > durable.offset, "the failed group's bytes are in the file");
        let batch = reader.next_batch(100, 1 << 20).await.unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].1.key, "synced");
        assert!(matches!(reader.next_batch(100, 1 << 20).await, Err(SpoolError::Failed { .. })));
    }

    #[tokio::test]
    async fn second_reader_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
        let first = spool.reader().unwrap();
        assert!(matches!(spool.reader(), Err(SpoolError::ReaderBusy)));
        drop(first);
        assert!(spool.reader().is_ok());
    }
}
