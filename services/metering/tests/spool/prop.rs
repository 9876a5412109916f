//! Test 9: random appends, segment sizes, batch sizes and ack points; after a reopen every entry that was not
//! trimmed is readable, in order, exactly once, and only fully acknowledged segments were trimmed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use std::collections::BTreeSet;

use common::{config, drain, segment_ids};
use proptest::prelude::*;
use reservoir_metering::spool::{Entry, Position, Spool};

fn run_case(sizes: Vec<usize>, segment_bytes_max: u64, ack_picks: Vec<prop::sample::Index>, batch: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(config(dir.path(), segment_bytes_max)).unwrap();
        // Append in concurrent waves of 4, so groups and rotations mix.
        let mut written: Vec<(Position, Entry)> = Vec::new();
        for (wave, chunk) in sizes.chunks(4).enumerate() {
            let tasks: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(j, size)| {
                    let spool = spool.clone();
                    let entry = Entry::finish(format!("w{wave}-{j}"), vec![(wave + j) as u8; *size]);
                    tokio::spawn(async move { (spool.append(entry.clone()).await.unwrap(), entry) })
                })
                .collect();
            for task in tasks {
                written.push(task.await.unwrap());
            }
        }
        written.sort_by_key(|(p, _)| *p);
        let active_at_ack = written.last().unwrap().0.segment;

        // Read everything in random-size batches, acking at random (increasing) points along the way.
        let mut acks: Vec<usize> = ack_picks.iter().map(|ix| ix.index(written.len())).collect();
        acks.sort_unstable();
        let mut reader = spool.reader().unwrap();
        let mut read = Vec::new();
        let mut acked = None;
        while read.len() < written.len() {
            read.extend(reader.next_batch(batch, 1 + batch * 64).await.unwrap());
            while let Some(&next) = acks.first().filter(|i| **i < read.len()) {
                reader.ack(read[next].0).unwrap();
                acked = Some(read[next].0);
                acks.remove(0);
            }
        }
        assert_eq!(read, written, "the live reader sees exactly what was appended, in order");
        drop(reader);
        spool.close().await.unwrap();

        let live: BTreeSet<u64> = segment_ids(dir.path()).into_iter().collect();
        let all: BTreeSet<u64> = written.iter().map(|(p, _)| p.segment).collect();
        for seg in &all {
            let last_in_seg = written.iter().filter(|(p, _)| p.segment == *seg).map(|(p, _)| *p).max().unwrap();
            let fully_acked = acked.is_some_and(|a| *seg < a.segment || (*seg != active_at_ack && last_in_seg <= a));
            assert_eq!(!live.contains(seg), fully_acked, "segment {seg}: trimmed iff fully acked (ack {acked:?})");
        }

        let (spool, recovery) = Spool::open(config(dir.path(), segment_bytes_max)).unwrap();
        assert_eq!((recovery.torn_tail_bytes, recovery.corrupt_bytes), (0, 0));
        let after = drain(spool).await;
        let expected: Vec<_> = written.iter().filter(|(p, _)| live.contains(&p.segment)).cloned().collect();
        assert_eq!(after, expected, "every untrimmed entry, once, in order");
        if let Some(a) = acked {
            assert!(written.iter().filter(|(p, _)| *p > a).all(|w| after.contains(w)), "nothing unacked is lost");
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn reopen_after_random_acks_keeps_every_untrimmed_entry_once(
        sizes in prop::collection::vec(0usize..600, 1..48),
        segment_bytes_max in 32u64..3000,
        ack_picks in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        batch in 1usize..20,
    ) {
        run_case(sizes, segment_bytes_max, ack_picks, batch);
    }
}
