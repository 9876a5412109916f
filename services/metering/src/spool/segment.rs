//! Segment files: naming, creation, deletion, and recovery at open.
//!
//! A segment is `NNNNNNNNNNNNNNNNNNNN.spool` (20-digit zero-padded id, so names sort as ids do). Recovery walks
//! them in id order, frame by frame through a buffered reader, so its memory does not grow with the backlog.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::spool::frame::{self, Frame};
use crate::spool::ledger::Ledger;
use crate::spool::{Entry, Quarantined, Recovery, SpoolError};

const SUFFIX: &str = ".spool";
const QUARANTINE_DIR: &str = "quarantine";
const READ_BUFFER: usize = 64 << 10;

pub(crate) fn segment_name(id: u64) -> String {
    format!("{id:020}{SUFFIX}")
}

pub(crate) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(segment_name(id))
}

/// Only exact names count, so stray files (editor backups, `LOCK`, the quarantine folder) are never replayed.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(crate) fn list_segments(dir: &Path) -> Result<Vec<u64>, SpoolError> {
    let mut ids = Vec::new();
    for item in fs::read_dir(dir).map_err(SpoolError::io("read dir", dir))? {
        let item = item.map_err(SpoolError::io("read dir", dir))?;
        if let Some(id) = item.file_name().to_str().and_then(parse_segment_name) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// A created or removed file is only durable once its directory entry is: fsync the directory.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(SpoolError::io("fsync dir", dir))
}

pub(crate) fn create_segment(dir: &Path, id: u64) -> Result<File, SpoolError> {
    let path = segment_path(dir, id);
    let file = OpenOptions::new().write(true).create_new(true).open(&path).map_err(SpoolError::io("create", &path))?;
    sync_dir(dir)?;
    Ok(file)
}

/// Already gone counts as removed: a crash between unlink and bookkeeping must not wedge trimming.
pub(crate) fn remove_segment(dir: &Path, id: u64) -> Result<(), SpoolError> {
    let path = segment_path(dir, id);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(SpoolError::io("remove", path)(err)),
    }
}

static OPEN_DIRS: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Keeps a second `Spool` in this process off a directory in use: its recovery would cut the live segment's
/// in-flight tail as if it were torn. Released when the writer thread that owns it ends.
#[derive(Debug)]
pub(crate) struct DirClaim(PathBuf);

impl DirClaim {
    pub(crate) fn claim(dir: &Path) -> Result<Self, SpoolError> {
        let canonical = dir.canonicalize().map_err(SpoolError::io("canonicalize", dir))?;
        let mut open = OPEN_DIRS.lock().unwrap_or_else(PoisonError::into_inner);
        if !open.insert(canonical.clone()) {
            return Err(SpoolError::AlreadyOpen(canonical));
        }
        Ok(DirClaim(canonical))
    }
}

impl Drop for DirClaim {
    fn drop(&mut self) {
        OPEN_DIRS.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.0);
    }
}

/// Rebuilds the ledger from disk and repairs what a crash or bad disk left behind.
///
/// Returns the ledger, the report, and the id the next (fresh) segment must take.
pub(crate) fn recover(dir: &Path) -> Result<(Ledger, Recovery, u64), SpoolError> {
    let ids = list_segments(dir)?;
    let mut ledger = Ledger::default();
    let mut report = Recovery::default();
    // Open begins with their entries, numbered so they can be returned in spool order.
    let mut pending: HashMap<String, (u64, Entry)> = HashMap::new();
    let mut seq = 0u64;
    let mut emptied = Vec::new();
    for (index, &id) in ids.iter().enumerate() {
        let last = index + 1 == ids.len();
        ledger.add_segment(id, 0);
        let path = segment_path(dir, id);
        let file = OpenOptions::new().read(true).write(true).open(&path).map_err(SpoolError::io("open", &path))?;
        let len = file.metadata().map_err(SpoolError::io("stat", &path))?.len();
        let mut src = BufReader::with_capacity(READ_BUFFER, &file);
        let mut offset = 0u64;
        let bad = loop {
            match frame::read_frame(&mut src, len - offset).map_err(SpoolError::io("read", &path))? {
                Frame::Entry(entry, n) => {
                    offset += n;
                    report.entries += 1;
                    seq += 1;
                    let (opened, closed) = ledger.apply(entry.kind, &entry.key, id);
                    if closed {
                        pending.remove(&entry.key);
                    } else if opened {
                        pending.insert(entry.key.clone(), (seq, entry));
                    }
                }
                Frame::End => break None,
                Frame::Bad(reason) => break Some(reason),
            }
        };
        drop(src);
        if let Some(reason) = bad {
            let tail = len - offset;
            if last && !tail_holds_a_frame(&file, &path, offset, len)? {
                report.torn_tail_bytes += tail;
            } else {
                report.quarantined.push(quarantine(dir, id, &file, offset, len, reason)?);
                report.corrupt_bytes += tail;
            }
            file.set_len(offset).map_err(SpoolError::io("truncate", &path))?;
            file.sync_all().map_err(SpoolError::io("fsync", &path))?;
        }
        if offset == 0 {
            emptied.push(id);
        } else {
            ledger.set_bytes(id, offset);
            report.segments += 1;
        }
    }
    if !emptied.is_empty() {
        for id in &emptied {
            remove_segment(dir, *id)?;
        }
        sync_dir(dir)?;
        ledger.forget(&emptied);
    }
    let mut open: Vec<(u64, Entry)> = pending.into_values().collect();
    open.sort_unstable_by_key(|(seq, _)| *seq);
    report.open_begins = open.into_iter().map(|(_, entry)| entry).collect();
    let next_id = match ids.last() {
        Some(id) => id.checked_add(1).ok_or(SpoolError::Config("segment ids exhausted"))?,
        None => 1,
    };
    Ok((ledger, report, next_id))
}

/// A tail that is only garbage is a write the previous process never finished and may be cut. A tail with a valid
/// frame somewhere behind the bad one is something else (a hole in an unsynced write, a bad block): its records
/// must be set aside, not cut. The tail is at most one segment, so reading it whole is bounded.
fn tail_holds_a_frame(file: &File, path: &Path, offset: u64, len: u64) -> Result<bool, SpoolError> {
    let mut tail = Vec::with_capacity(usize::try_from(len - offset).unwrap_or(0));
    let mut src = file;
    src.seek(SeekFrom::Start(offset)).map_err(SpoolError::io("seek", path))?;
    src.take(len - offset).read_to_end(&mut tail).map_err(SpoolError::io("read", path))?;
    Ok(frame::any_valid_frame_after_start(&tail))
}

/// Copies `[offset, len)` of a segment into `quarantine/` and makes the copy durable before the caller truncates:
/// a crash in between leaves a second copy next time, never none.
fn quarantine(
    dir: &Path,
    id: u64,
    file: &File,
    offset: u64,
    len: u64,
    reason: &'static str,
) -> Result<Quarantined, SpoolError> {
    let qdir = dir.join(QUARANTINE_DIR);
    fs::create_dir_all(&qdir).map_err(SpoolError::io("create dir", &qdir))?;
    sync_dir(dir)?;
    let base = format!("{}.bad-at-{offset}", segment_name(id));
    // Segment ids restart after a spool is fully trimmed, so an older quarantine file may hold the name.
    let (mut out, path) = (0u32..)
        .map(|n| if n == 0 { qdir.join(&base) } else { qdir.join(format!("{base}.{n}")) })
        .find_map(|path| match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(out) => Some(Ok((out, path))),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => None,
            Err(err) => Some(Err(SpoolError::io("create", path)(err))),
        })
        .unwrap_or_else(|| Err(SpoolError::Config("no free quarantine file name")))?;
    let mut src = file;
    src.seek(SeekFrom::Start(offset)).map_err(SpoolError::io("seek", &path))?;
    io::copy(&mut src.take(len - offset), &mut out).map_err(SpoolError::io("copy to quarantine", &path))?;
    out.sync_all().map_err(SpoolError::io("fsync", &path))?;
    sync_dir(&qdir)?;
    Ok(Quarantined { segment: id, offset, bytes: len - offset, path, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strays_are_ignored() {
        assert_eq!(segment_name(42), "00000000000000000042.spool");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_segment_name("42.spool"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.spool"), None);
        assert_eq!(parse_segment_name("00000000000000000042.spool.bad-at-7"), None);
    }
}
