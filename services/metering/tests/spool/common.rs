//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use reservoir_metering::spool::{Entry, Position, Spool, SpoolConfig};

pub fn config(dir: &Path, segment_bytes_max: u64) -> SpoolConfig {
    let mut config = SpoolConfig::new(dir);
    config.segment_bytes_max = segment_bytes_max;
    config
}

/// A payload derived from the key, so a read-back can tell a right record from a mixed-up one.
pub fn payload_for(key: &str) -> Vec<u8> {
    let mut payload = format!("usage-of-{key}-").into_bytes();
    payload.extend(key.bytes().cycle().take(key.len() * 3));
    payload
}

/// Everything the spool holds, in order: closes it first so the reader ends instead of waiting for more.
pub async fn drain(spool: Spool) -> Vec<(Position, Entry)> {
    let mut reader = spool.reader().unwrap();
    spool.close().await.unwrap();
    let mut out = Vec::new();
    loop {
        let batch = reader.next_batch(97, 16 << 10).await.unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

/// Segment ids present on disk, sorted.
pub fn segment_ids(dir: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".spool").and_then(|d| if d.len() == 20 { d.parse().ok() } else { None })
        })
        .collect();
    ids.sort_unstable();
    ids
}

pub fn segment_path(dir: &Path, id: u64) -> std::path::PathBuf {
    dir.join(format!("{id:020}.spool"))
}

pub fn keys(entries: &[(Position, Entry)]) -> Vec<String> {
    entries.iter().map(|(_, e)| e.key.clone()).collect()
}
