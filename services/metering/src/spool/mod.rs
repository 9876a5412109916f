//! A durable local spool (write-ahead log) for usage records.
//!
//! Usage records are money. The request path appends a record and waits for a group-commit fsync, never for the
//! database; a forwarder reads durable records in order, ships them, and acknowledges positions; acknowledged
//! segments are deleted. A PostgreSQL outage therefore only grows the backlog on disk.
//!
//! # Invariants
//!
//! 1. **Durable before answered.** [`Spool::append`] resolves only after its frame was written and `sync_data`
//!    returned; a SIGKILL after that cannot lose it. [`Spool::append_unacked`] entries become durable with the next
//!    group commit, with no promise before that.
//! 2. **Readers only see durable bytes.** [`Reader::next_batch`] never reads past the watermark that the writer
//!    publishes after each fsync, so nothing shipped downstream can vanish in a crash.
//! 3. **A frame is all or nothing.** Every frame carries a CRC; recovery cuts a torn tail (only garbage after the
//!    last good frame of the last segment) and moves anything else it cannot trust into `quarantine/`. Records are
//!    kept or set aside, never silently dropped; [`Recovery::quarantined`] names every set-aside range.
//! 4. **Sealed segments are immutable.** Only the active segment is appended to; after a restart writing starts a
//!    new segment, so recovery's truncation never races a writer.
//! 5. **Deletion keeps the begin/finish pairing truthful.** A segment is deleted only when it is acknowledged, not
//!    active, holds no open `Begin`, and holds no `Finish` that closed a `Begin` in a segment still on disk. The last
//!    rule matters: deleting such a `Finish` first would make recovery report its request as interrupted although
//!    its real record was already shipped.
//! 6. **After an I/O error the spool refuses to write.** A failed write or fsync fails its whole group and every
//!    later append with [`SpoolError::Failed`]: after a failed fsync the page cache may already have dropped the
//!    dirty pages, so a retry could report success for data that is gone (PostgreSQL's "fsyncgate").
//!
//! # Complexity and memory
//!
//! - Append: O(entry) to encode on the caller; the writer does one `write_all` and one `sync_data` per group of up
//!   to `group_commit_max_entries` entries (plus one fsync per segment rotation inside a group).
//! - Memory is bounded independently of the backlog: the queue holds at most `queue_capacity` entries, a reader
//!   holds one batch, recovery streams each segment frame by frame (the resync check of a bad tail reads at most
//!   that tail, which is at most one segment). The in-memory ledger holds one small record per live segment, and
//!   the open-begin map holds one key per request in flight (plus those left open by a crash until the caller
//!   finishes them), so both are bounded by concurrency, not by traffic.
//! - Recovery: O(bytes on disk), one sequential pass.
//!
//! # What it does not do
//!
//! Positions are not persisted: after a restart the reader starts again at the oldest live segment, and the
//! downstream store must be idempotent by key. Only one process may use a directory at a time; this is enforced
//! inside one process, not across processes (there is no file lock on the minimum supported Rust version).

mod frame;
mod ledger;
mod reader;
mod segment;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use frame::{Entry, EntryKind, MAX_KEY_LEN, MAX_PAYLOAD_LEN};
pub use reader::Reader;
pub use writer::Spool;

/// Where an entry ends: the byte after it. Ordered by segment, then offset, which is spool order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// A segment is sealed before an entry would take it past this size (a single larger entry gets a segment of
    /// its own). Smaller segments are trimmed sooner; larger ones mean fewer files and rotation fsyncs.
    pub segment_bytes_max: u64,
    /// Entries queued for the writer before `append` waits: the backpressure bound on memory.
    pub queue_capacity: usize,
    /// Upper bound on one group commit, so one fsync's waiters do not starve the next group forever.
    pub group_commit_max_entries: usize,
    /// How long the writer waits after the first entry of a group for more to arrive. Zero (the default) is right
    /// for almost everyone: while one fsync runs the next group piles up anyway.
    pub group_commit_linger: Duration,
}

impl SpoolConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SpoolConfig {
            dir: dir.into(),
            segment_bytes_max: 8 << 20,
            queue_capacity: 65_536,
            group_commit_max_entries: 4096,
            group_commit_linger: Duration::ZERO,
        }
    }
}

/// What [`Spool::open`] found and repaired.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// Live segments found (empty ones are removed and not counted).
    pub segments: usize,
    /// Valid entries found.
    pub entries: u64,
    /// Bytes cut from the end of the last segment: a write the previous process never finished.
    pub torn_tail_bytes: u64,
    /// Bytes moved to quarantine because valid-looking data could not be trusted.
    pub corrupt_bytes: u64,
    /// Every quarantined range; the caller should log each one loudly, they may hold records.
    pub quarantined: Vec<Quarantined>,
    /// `Begin` entries with no `Finish`, in spool order: requests the previous process never finished. The caller
    /// should append a `Finish` for each (recorded as interrupted); until then their segments are kept.
    pub open_begins: Vec<Entry>,
}

/// A range of a segment that recovery set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub segment: u64,
    pub offset: u64,
    pub bytes: u64,
    pub path: PathBuf,
    pub reason: &'static str,
}

/// A snapshot for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpoolStats {
    pub entries_appended: u64,
    pub group_commits: u64,
    pub bytes_on_disk: u64,
    pub segments: u64,
    pub open_begins: u64,
    pub durable: Position,
    pub acked: Option<Position>,
    pub failed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool I/O error: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("entry key is {len} bytes, the limit is {max}")]
    KeyTooLong { len: usize, max: usize },
    #[error("entry payload is {len} bytes, the limit is {max}")]
    PayloadTooLarge { len: usize, max: usize },
    #[error("spool failed and refuses writes until restarted: {reason}")]
    Failed { reason: Arc<str> },
    #[error("spool is closed")]
    Closed,
    #[error("another reader is active on this spool")]
    ReaderBusy,
    #[error("spool directory {0} is already open in this process")]
    AlreadyOpen(PathBuf),
    #[error("ack {upto:?} is beyond the durable position {durable:?}")]
    AckBeyondDurable { upto: Position, durable: Position },
    #[error("corrupt frame in segment {segment} at offset {offset}: {reason}")]
    Corrupt { segment: u64, offset: u64, reason: &'static str },
    #[error("invalid spool config: {0}")]
    Config(&'static str),
}

impl SpoolError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> SpoolError {
        let path = path.into();
        move |source| SpoolError::Io { op, path, source }
    }
}
