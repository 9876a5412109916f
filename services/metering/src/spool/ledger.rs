//! The in-memory bookkeeping shared by the writer thread, the reader and `ack`: which segments are live, how big,
//! which `Begin`s are open and where, and therefore which segments may be deleted.
//!
//! It is rebuilt from disk by recovery and then only changed after an fsync, so it never describes bytes that a
//! crash could take back. Size: one record per live segment plus one key per open `Begin` (requests in flight).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::spool::segment;
use crate::spool::{EntryKind, Position, SpoolError, SpoolStats};

#[derive(Debug, Default)]
struct SegMeta {
    bytes: u64,
    /// `Begin`s in this segment whose `Finish` has not been appended yet.
    open_begins: u64,
    /// Earlier live segments holding `Begin`s that a `Finish` in this segment closed. While any of them is on
    /// disk this segment must stay, or recovery would see the `Begin` without its `Finish`.
    pinned_by: BTreeSet<u64>,
    /// The reverse edges of `pinned_by`, so deleting this segment can release the later ones.
    pins: BTreeSet<u64>,
}

#[derive(Debug, Default)]
pub(crate) struct Ledger {
    segments: BTreeMap<u64, SegMeta>,
    /// Key of each open `Begin` -> its segment. First `Begin` wins if a key is begun twice; recovery replays the
    /// same rule, so live and recovered state agree.
    open: HashMap<String, u64>,
    pub(crate) active: u64,
    pub(crate) acked: Option<Position>,
    pub(crate) durable: Position,
    pub(crate) entries_appended: u64,
    pub(crate) group_commits: u64,
    pub(crate) failed: Option<Arc<str>>,
}

impl Ledger {
    pub(crate) fn add_segment(&mut self, id: u64, bytes: u64) {
        self.segments.entry(id).or_default().bytes = bytes;
    }

    pub(crate) fn set_bytes(&mut self, id: u64, bytes: u64) {
        if let Some(meta) = self.segments.get_mut(&id) {
            meta.bytes = bytes;
        }
    }

    /// Records one durable entry. Returns `(opened, closed)`: whether a `Begin` opened a new key, and whether a
    /// `Finish` closed one (which may make segments deletable).
    pub(crate) fn apply(&mut self, kind: EntryKind, key: &str, seg: u64) -> (bool, bool) {
        match kind {
            EntryKind::Begin => {
                if self.open.contains_key(key) {
                    return (false, false);
                }
                self.open.insert(key.to_owned(), seg);
                if let Some(meta) = self.segments.get_mut(&seg) {
                    meta.open_begins += 1;
                }
                (true, false)
            }
            EntryKind::Finish => {
                let Some(begin_seg) = self.open.remove(key) else {
                    return (false, false);
                };
                if let Some(meta) = self.segments.get_mut(&begin_seg) {
                    meta.open_begins = meta.open_begins.saturating_sub(1);
                    if begin_seg != seg {
                        meta.pins.insert(seg);
                        if let Some(finish_meta) = self.segments.get_mut(&seg) {
                            finish_meta.pinned_by.insert(begin_seg);
                        }
                    }
                }
                (false, true)
            }
        }
    }

    fn fully_acked(&self, id: u64, bytes: u64) -> bool {
        self.acked.is_some_and(|a| id < a.segment || (id == a.segment && a.offset >= bytes))
    }

    /// Segments that may go now. Deleting one can release others (see `pinned_by`), hence callers loop.
    pub(crate) fn deletable(&self) -> Vec<u64> {
        self.segments
            .iter()
            .filter(|(id, m)| {
                **id != self.active && m.open_begins == 0 && m.pinned_by.is_empty() && self.fully_acked(**id, m.bytes)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Drops deleted segments and the pins they held.
    pub(crate) fn forget(&mut self, ids: &[u64]) {
        for id in ids {
            let Some(meta) = self.segments.remove(id) else { continue };
            for later in meta.pins {
                if let Some(m) = self.segments.get_mut(&later) {
                    m.pinned_by.remove(id);
                }
            }
            for earlier in meta.pinned_by {
                if let Some(m) = self.segments.get_mut(&earlier) {
                    m.pins.remove(id);
                }
            }
        }
    }

    pub(crate) fn first(&self) -> Option<u64> {
        self.segments.keys().next().copied()
    }

    pub(crate) fn next_after(&self, id: u64) -> Option<u64> {
        self.segments.range(id.saturating_add(1)..).next().map(|(id, _)| *id)
    }

    pub(crate) fn stats(&self) -> SpoolStats {
        SpoolStats {
            entries_appended: self.entries_appended,
            group_commits: self.group_commits,
            bytes_on_disk: self.segments.values().map(|m| m.bytes).sum(),
            segments: self.segments.len() as u64,
            open_begins: self.open.len() as u64,
            durable: self.durable,
            acked: self.acked,
            failed: self.failed.is_some(),
        }
    }
}

/// State shared by every handle, the writer thread and the reader. The writer thread holds it but not the queue's
/// sender, so dropping the last `Spool` handle closes the queue and lets the thread finish.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    ledger: Mutex<Ledger>,
    /// Serialises trimming across `ack` and the writer thread: a segment released by a deletion must not be
    /// deleted before that deletion is durable in the directory.
    trim_lock: Mutex<()>,
    pub(crate) reader_active: AtomicBool,
    #[cfg(test)]
    pub(crate) fail_next_sync: AtomicBool,
}

impl Shared {
    pub(crate) fn new(dir: PathBuf, ledger: Ledger) -> Self {
        Shared {
            dir,
            ledger: Mutex::new(ledger),
            trim_lock: Mutex::new(()),
            reader_active: AtomicBool::new(false),
            #[cfg(test)]
            fail_next_sync: AtomicBool::new(false),
        }
    }

    /// A panic elsewhere while holding the lock cannot leave the ledger half-updated in a way that matters more
    /// than refusing all further work would, so poisoning is ignored rather than turned into a panic here.
    pub(crate) fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Deletes every deletable segment, level by level: each level is made durable (directory fsync) before the
    /// ledger forgets it, so the segments it releases cannot be deleted ahead of it even across a crash.
    pub(crate) fn trim(&self) -> Result<(), SpoolError> {
        let _serial = self.trim_lock.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let victims = self.ledger().deletable();
            if victims.is_empty() {
                return Ok(());
            }
            for id in &victims {
                segment::remove_segment(&self.dir, *id)?;
            }
            segment::sync_dir(&self.dir)?;
            self.ledger().forget(&victims);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(ids: &[u64], active: u64) -> Ledger {
        let mut l = Ledger { active, ..Ledger::default() };
        for id in ids {
            l.add_segment(*id, 100);
        }
        l
    }

    #[test]
    fn finish_in_a_later_segment_is_pinned_until_the_begin_segment_goes() {
        let mut l = ledger(&[1, 2, 3], 3);
        l.apply(EntryKind::Begin, "a", 1);
        l.apply(EntryKind::Begin, "b", 1);
        l.apply(EntryKind::Finish, "a", 2);
        l.acked = Some(Position { segment: 3, offset: 0 });
        assert!(l.deletable().is_empty(), "1 holds open b, 2 holds a's finish");
        l.apply(EntryKind::Finish, "b", 3);
        assert_eq!(l.deletable(), vec![1]);
        l.forget(&[1]);
        assert_eq!(l.deletable(), vec![2]);
    }

    #[test]
    fn active_and_partially_acked_segments_stay() {
        let mut l = ledger(&[1, 2], 2);
        l.acked = Some(Position { segment: 1, offset: 50 });
        assert!(l.deletable().is_empty());
        l.acked = Some(Position { segment: 1, offset: 100 });
        assert_eq!(l.deletable(), vec![1], "a sealed segment acked to its end may go");
        l.acked = Some(Position { segment: 2, offset: 100 });
        assert_eq!(l.deletable(), vec![1], "never the active one");
    }
}
