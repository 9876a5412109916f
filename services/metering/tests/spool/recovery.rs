//! Recovery: torn tails, corruption, open begins.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};

use common::{config, drain, keys, payload_for, segment_ids, segment_path};
use reservoir_metering::spool::{Entry, Position, Spool, SpoolConfig};

async fn append_finishes(spool: &Spool, prefix: &str, n: usize) -> Vec<(Position, Entry)> {
    let mut out = Vec::new();
    for i in 0..n {
        let key = format!("{prefix}{i}");
        let entry = Entry::finish(key.clone(), payload_for(&key));
        out.push((spool.append(entry.clone()).await.unwrap(), entry));
    }
    out
}

/// Test 3: a half-written last frame, and garbage after the last frame, are cut; every complete entry stays, and
/// the spool keeps working across further reopens.
#[tokio::test]
async fn torn_tail_is_cut_and_the_spool_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
    let written = append_finishes(&spool, "a", 20).await;
    spool.close().await.unwrap();

    // Cut the last frame in half, as a crash mid-write would.
    let (last_pos, last_entry) = written.last().unwrap();
    let frame_len = last_entry.encoded_len() as u64;
    let path = segment_path(dir.path(), last_pos.segment);
    let cut_to = last_pos.offset - frame_len / 2;
    OpenOptions::new().write(true).open(&path).unwrap().set_len(cut_to).unwrap();

    let (spool, recovery) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
    assert_eq!(recovery.torn_tail_bytes, cut_to - (last_pos.offset - frame_len));
    assert_eq!((recovery.entries, recovery.corrupt_bytes), (19, 0));
    assert!(!dir.path().join("quarantine").exists(), "a torn tail is not quarantined");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), last_pos.offset - frame_len, "torn bytes are gone");
    let more = append_finishes(&spool, "b", 5).await;
    spool.close().await.unwrap();

    // Garbage (no valid frame in it) after the last frame of the newest segment.
    let newest = *segment_ids(dir.path()).last().unwrap();
    let mut file = OpenOptions::new().append(true).open(segment_path(dir.path(), newest)).unwrap();
    file.write_all(&[0xEE; 100]).unwrap();
    drop(file);

    let (spool, recovery) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
    assert_eq!((recovery.torn_tail_bytes, recovery.corrupt_bytes, recovery.entries), (100, 0, 24));
    let read = drain(spool).await;
    let want: Vec<String> = written[..19].iter().chain(&more).map(|(_, e)| e.key.clone()).collect();
    assert_eq!(keys(&read), want);
    assert!(read.iter().all(|(_, e)| e.payload == payload_for(&e.key)));
}

fn flip_byte(path: &std::path::Path, offset: u64) {
    let mut file = OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut byte = [0u8];
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.read_exact(&mut byte).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(&[byte[0] ^ 0x01]).unwrap();
}

/// Test 4: a bad frame inside a sealed segment: what precedes it stays, the rest of that segment goes to
/// quarantine byte for byte, later segments are untouched.
#[tokio::test]
async fn corruption_mid_segment_is_quarantined_and_later_segments_survive() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(config(dir.path(), 512)).unwrap();
    let written = append_finishes(&spool, "k", 60).await;
    spool.close().await.unwrap();
    let segments: Vec<u64> = segment_ids(dir.path());
    assert!(segments.len() >= 4, "{segments:?}");
    let victim = segments[1];
    let in_victim: Vec<usize> = (0..written.len()).filter(|i| written[*i].0.segment == victim).collect();
    assert!(in_victim.len() >= 3);
    // The third entry of the victim segment starts where the second ends.
    let bad_at = written[in_victim[1]].0.offset;
    let victim_path = segment_path(dir.path(), victim);
    let victim_len = std::fs::metadata(&victim_path).unwrap().len();
    let original = std::fs::read(&victim_path).unwrap();
    flip_byte(&victim_path, bad_at + 15);

    let (spool, recovery) = Spool::open(config(dir.path(), 512)).unwrap();
    assert_eq!(recovery.torn_tail_bytes, 0);
    assert_eq!(recovery.corrupt_bytes, victim_len - bad_at);
    assert_eq!(recovery.quarantined.len(), 1);
    let q = &recovery.quarantined[0];
    assert_eq!((q.segment, q.offset, q.bytes), (victim, bad_at, victim_len - bad_at));
    let want_name = format!("{victim:020}.spool.bad-at-{bad_at}");
    assert_eq!(q.path, dir.path().join("quarantine").join(&want_name));
    let mut expected_quarantine = original[bad_at as usize..].to_vec();
    expected_quarantine[15] ^= 0x01;
    assert_eq!(std::fs::read(&q.path).unwrap(), expected_quarantine, "quarantine holds the exact bytes");
    assert_eq!(std::fs::metadata(&victim_path).unwrap().len(), bad_at);

    let lost: Vec<usize> = in_victim[2..].to_vec();
    assert_eq!(recovery.entries, (60 - lost.len()) as u64);
    let read = drain(spool).await;
    let want: Vec<String> =
        (0..written.len()).filter(|i| !lost.contains(i)).map(|i| written[i].1.key.clone()).collect();
    assert_eq!(keys(&read), want, "everything but the quarantined range, in order");
}

/// A bad frame in the last segment with valid frames behind it is corruption, not a torn tail: quarantined, not cut.
#[tokio::test]
async fn bad_frame_in_last_segment_with_valid_frames_after_it_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
    let written = append_finishes(&spool, "z", 10).await;
    spool.close().await.unwrap();
    let seg = written[0].0.segment;
    assert_eq!(segment_ids(dir.path()), vec![seg]);
    flip_byte(&segment_path(dir.path(), seg), written[4].0.offset + 13);

    let (spool, recovery) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
    assert_eq!(recovery.torn_tail_bytes, 0);
    assert_eq!(recovery.corrupt_bytes, written[9].0.offset - written[4].0.offset);
    assert_eq!(recovery.quarantined.len(), 1);
    assert_eq!(keys(&drain(spool).await), (0..5).map(|i| format!("z{i}")).collect::<Vec<_>>());
}

/// Test 5: begins without a finish are reported in spool order with their payloads; finished ones are not.
#[tokio::test]
async fn open_begins_are_reported_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
    for key in ["a", "b", "c"] {
        spool.append_unacked(Entry::begin(key, format!("dispatch-{key}"))).await.unwrap();
    }
    spool.append(Entry::finish("b", b"usage-b".to_vec())).await.unwrap();
    spool.append(Entry::finish("shed", b"never began".to_vec())).await.unwrap();
    assert_eq!(spool.stats().open_begins, 2);
    spool.close().await.unwrap();

    let (spool, recovery) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
    let open: Vec<(String, Vec<u8>)> = recovery.open_begins.into_iter().map(|e| (e.key, e.payload)).collect();
    assert_eq!(open, vec![("a".into(), b"dispatch-a".to_vec()), ("c".into(), b"dispatch-c".to_vec())]);
    assert_eq!(spool.stats().open_begins, 2);
    // The caller closes them as interrupted; after that nothing is open.
    for key in ["c", "a"] {
        spool.append(Entry::finish(key, b"interrupted".to_vec())).await.unwrap();
    }
    assert_eq!(spool.stats().open_begins, 0);
    spool.close().await.unwrap();
    let (_spool, recovery) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
    assert!(recovery.open_begins.is_empty());
}
