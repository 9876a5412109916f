//! Appending, group commit, reading, limits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use std::collections::HashSet;
use std::time::Instant;

use common::{config, drain, payload_for};
use reservoir_metering::spool::{Entry, EntryKind, MAX_PAYLOAD_LEN, Spool, SpoolConfig, SpoolError};

/// Test 1: concurrent appends from many tasks all come back after a reopen, each exactly once, intact, in the
/// order of the positions their appends returned.
#[tokio::test]
async fn concurrent_appends_all_come_back_once_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, recovery) = Spool::open(config(dir.path(), 4096)).unwrap();
    assert_eq!(recovery.entries, 0);
    let mut tasks = Vec::new();
    for t in 0..32 {
        let spool = spool.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            for i in 0..50 {
                let key = format!("t{t}-r{i}");
                let pos = spool.append(Entry::finish(key.clone(), payload_for(&key))).await.unwrap();
                done.push((pos, key));
            }
            done
        }));
    }
    let mut appended = Vec::new();
    for task in tasks {
        appended.extend(task.await.unwrap());
    }
    appended.sort();
    assert!(spool.stats().segments > 1, "small segments make the test cross rotations");
    spool.close().await.unwrap();

    let (spool, recovery) = Spool::open(config(dir.path(), 4096)).unwrap();
    assert_eq!((recovery.entries, recovery.torn_tail_bytes, recovery.corrupt_bytes), (1600, 0, 0));
    let read = drain(spool).await;
    assert_eq!(read.len(), 1600);
    let mut seen = HashSet::new();
    for ((pos, entry), (want_pos, want_key)) in read.iter().zip(&appended) {
        assert_eq!((pos, &entry.key), (want_pos, want_key), "same entry at the same position, in order");
        assert_eq!(entry.kind, EntryKind::Finish);
        assert_eq!(entry.payload, payload_for(&entry.key));
        assert!(seen.insert(entry.key.clone()), "{} read twice", entry.key);
    }
}

/// Test 2: one fsync serves many waiters.
#[tokio::test]
async fn group_commit_needs_far_fewer_fsyncs_than_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
    let n = 10_000u64;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let spool = spool.clone();
            tokio::spawn(async move { spool.append(Entry::finish(format!("g{i}"), b"x".to_vec())).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let stats = spool.stats();
    println!("10k concurrent appends: {} group commits", stats.group_commits);
    assert_eq!(stats.entries_appended, n);
    assert!(stats.group_commits < n / 4, "{} group commits for {n} entries", stats.group_commits);
    spool.close().await.unwrap();
}

/// Test 7: the reader blocks while nothing is durable, and hands out an entry only once its append resolved.
#[tokio::test]
async fn reader_waits_for_durable_entries_and_never_runs_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
    let mut reader = spool.reader().unwrap();
    let waiting = tokio::spawn(async move {
        let batch = reader.next_batch(10, 1 << 20).await.unwrap();
        (batch, reader)
    });
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished(), "nothing was appended, the reader must still be waiting");
    let pos = spool.append(Entry::finish("first", b"1".to_vec())).await.unwrap();
    let (batch, mut reader) = waiting.await.unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!((batch[0].0, batch[0].1.key.as_str()), (pos, "first"));

    // Concurrent writers and a reader: everything handed out is below the watermark at that moment.
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let spool = spool.clone();
            tokio::spawn(async move {
                for i in 0..100 {
                    spool.append(Entry::finish(format!("w{t}-{i}"), vec![t as u8; 40])).await.unwrap();
                }
            })
        })
        .collect();
    let mut total = 0;
    let mut last = pos;
    while total < 800 {
        let batch = reader.next_batch(64, 1 << 20).await.unwrap();
        let durable = spool.stats().durable;
        for (p, _) in &batch {
            assert!(*p > last, "positions strictly increase");
            assert!(*p <= durable, "{p:?} handed out beyond the durable {durable:?}");
            last = *p;
        }
        total += batch.len();
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(total, 800);
    drop(reader);
    spool.close().await.unwrap();
}

/// Test 10: oversized keys and payloads are refused to their caller alone; the spool keeps working.
#[tokio::test]
async fn oversized_entries_are_refused_without_poisoning() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
    let err = spool.append(Entry::finish("k".repeat(256), b"p".to_vec())).await.unwrap_err();
    assert!(matches!(err, SpoolError::KeyTooLong { len: 256, max: 255 }), "{err:?}");
    assert!(err.to_string().contains("256"), "the message names the size: {err}");
    let err = spool.append_unacked(Entry::begin("k", vec![0; MAX_PAYLOAD_LEN + 1])).await.unwrap_err();
    assert!(matches!(err, SpoolError::PayloadTooLarge { .. }), "{err:?}");
    assert!(!spool.stats().failed);
    assert_eq!(spool.stats().entries_appended, 0, "nothing refused was written");

    let max_key = "k".repeat(255);
    spool.append(Entry::finish(max_key.clone(), vec![7; MAX_PAYLOAD_LEN])).await.unwrap();
    spool.append(Entry::finish("after", b"ok".to_vec())).await.unwrap();
    let read = drain(spool).await;
    assert_eq!(read.len(), 2);
    assert_eq!((read[0].1.key.as_str(), read[0].1.payload.len()), (max_key.as_str(), MAX_PAYLOAD_LEN));
    assert_eq!(read[1].1.key, "after");
}

#[tokio::test]
async fn closed_spool_refuses_appends_and_second_open_of_a_live_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
    assert!(matches!(Spool::open(SpoolConfig::new(dir.path())), Err(SpoolError::AlreadyOpen(_))));
    let other = spool.clone();
    spool.close().await.unwrap();
    assert!(matches!(other.append(Entry::finish("late", vec![])).await, Err(SpoolError::Closed)));
    drop(other);
    Spool::open(SpoolConfig::new(dir.path())).unwrap();
}

/// Dropping every handle, without `close`, still commits what was queued and releases the directory.
#[tokio::test]
async fn dropping_every_handle_flushes_the_queue_and_stops_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
    let clone = spool.clone();
    for i in 0..100 {
        clone.append_unacked(Entry::begin(format!("b{i}"), b"queued".to_vec())).await.unwrap();
    }
    drop(clone);
    drop(spool);
    // Reopening at once works only if the writer thread finished and let go of the directory.
    let (spool, recovery) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
    assert_eq!((recovery.entries, recovery.open_begins.len()), (100, 100));
    assert_eq!(recovery.torn_tail_bytes, 0);
    drop(spool);
}

/// Prints throughput for 100k small appends from 64 tasks; asserts only correctness, never time.
#[tokio::test]
async fn throughput_100k_small_appends_from_64_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
    let (tasks, n) = (64u64, 100_000u64);
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let spool = spool.clone();
            tokio::spawn(async move {
                for i in (t..n).step_by(tasks as usize) {
                    spool.append(Entry::finish(format!("{t}-{i}"), vec![0x5a; 64])).await.unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    let elapsed = started.elapsed();
    let stats = spool.stats();
    println!(
        "throughput: {n} appends from {tasks} tasks in {elapsed:?} = {:.0} entries/s, {} group commits ({:.1} entries/fsync)",
        n as f64 / elapsed.as_secs_f64(),
        stats.group_commits,
        n as f64 / stats.group_commits as f64
    );
    assert_eq!(stats.entries_appended, n);
    spool.close().await.unwrap();
}
