//! Test 6: acknowledging deletes segments, except the active one, those holding open begins, and those holding a
//! finish whose begin is still on disk.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use common::{config, payload_for, segment_ids, segment_path};
use reservoir_metering::spool::{Entry, Position, Reader, Spool};

const SEGMENT: u64 = 256;

async fn read_n(reader: &mut Reader, n: usize) -> Vec<(Position, Entry)> {
    let mut out = Vec::new();
    while out.len() < n {
        out.extend(reader.next_batch(7, 300).await.unwrap());
    }
    assert_eq!(out.len(), n, "no more than what was appended");
    out
}

async fn finishes(spool: &Spool, prefix: &str, n: usize) -> Position {
    let mut last = Position::default();
    for i in 0..n {
        let key = format!("{prefix}{i}");
        last = spool.append(Entry::finish(key.clone(), payload_for(&key))).await.unwrap();
    }
    last
}

fn bytes_on_disk(dir: &std::path::Path) -> u64 {
    segment_ids(dir).iter().map(|id| std::fs::metadata(segment_path(dir, *id)).unwrap().len()).sum()
}

#[tokio::test]
async fn acked_segments_go_unless_pinned_by_open_begins() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(config(dir.path(), SEGMENT)).unwrap();
    let held = spool.append(Entry::begin("held", b"dispatch".to_vec())).await.unwrap();
    spool.append(Entry::begin("early", b"dispatch".to_vec())).await.unwrap();
    finishes(&spool, "f", 20).await;
    let early_finish = spool.append(Entry::finish("early", b"usage".to_vec())).await.unwrap();
    let last = finishes(&spool, "g", 20).await;
    assert!(held.segment < early_finish.segment && early_finish.segment < last.segment);
    let before = segment_ids(dir.path());
    assert!(before.len() > 6, "{before:?}");

    let mut reader = spool.reader().unwrap();
    let read = read_n(&mut reader, 43).await;
    assert_eq!(read.last().unwrap().0, last);
    reader.ack(last).unwrap();
    // The begin's segment (open "held"), the segment with early's finish (its begin is still on disk), the active.
    assert_eq!(segment_ids(dir.path()), vec![held.segment, early_finish.segment, last.segment]);
    let stats = spool.stats();
    assert_eq!((stats.segments, stats.open_begins), (3, 1));
    assert_eq!(stats.bytes_on_disk, bytes_on_disk(dir.path()));
    drop(reader);
    spool.close().await.unwrap();

    // Why early's finish had to stay: recovery must not think "early" was interrupted.
    let (spool, recovery) = Spool::open(config(dir.path(), SEGMENT)).unwrap();
    assert_eq!(recovery.open_begins.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(), vec!["held"]);
    let mut reader = spool.reader().unwrap();
    let read = read_n(&mut reader, recovery.entries as usize).await;
    let resent_last = read.last().unwrap().0;
    reader.ack(resent_last).unwrap();
    let active = spool.stats().durable.segment;
    assert_eq!(segment_ids(dir.path()), vec![held.segment, early_finish.segment, active]);

    // Finishing "held" releases its segment, which releases early's finish: the writer trims both itself.
    spool.append(Entry::finish("held", b"usage".to_vec())).await.unwrap();
    // Groups are committed in order and the writer trims after each: once a later append resolves, it is done.
    spool.append(Entry::finish("after", b"usage".to_vec())).await.unwrap();
    assert_eq!(segment_ids(dir.path()), vec![active]);
    assert_eq!(spool.stats().open_begins, 0);
    let tail = read_n(&mut reader, 2).await;
    reader.ack(tail[1].0).unwrap();
    assert_eq!(segment_ids(dir.path()), vec![active], "the active segment is never deleted");
    drop(reader);
    spool.close().await.unwrap();
    let (_spool, recovery) = Spool::open(config(dir.path(), SEGMENT)).unwrap();
    assert!(recovery.open_begins.is_empty());
    assert_eq!(recovery.entries, 2);
}

#[tokio::test]
async fn reader_skips_segments_trimmed_by_an_ack_ahead_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(config(dir.path(), SEGMENT)).unwrap();
    let mid = finishes(&spool, "a", 20).await;
    let last = finishes(&spool, "b", 20).await;
    let mut reader = spool.reader().unwrap();
    let first = reader.next_batch(1, 1 << 20).await.unwrap();
    assert_eq!(first[0].1.key, "a0");
    // Ack far ahead of what was read (another component shipped them): the reader must cope.
    reader.ack(mid).unwrap();
    assert!(segment_ids(dir.path())[0] >= mid.segment, "segments before the ack are gone");
    let mut got = Vec::new();
    while got.last().map(|(p, _): &(Position, Entry)| *p) != Some(last) {
        got.extend(reader.next_batch(10, 1 << 20).await.unwrap());
    }
    let keys: Vec<&str> = got.iter().map(|(_, e)| e.key.as_str()).collect();
    let b_keys: Vec<String> = (0..20).map(|i| format!("b{i}")).collect();
    assert!(keys.ends_with(&b_keys.iter().map(String::as_str).collect::<Vec<_>>()), "{keys:?}");
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "in order, nothing twice");
    drop(reader);
    spool.close().await.unwrap();
}
