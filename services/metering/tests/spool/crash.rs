//! Test 8: the central guarantee. A child process (this test binary, re-run in child mode) appends and prints each
//! entry once its append resolved; the parent SIGKILLs it mid-stream, reopens the spool, and checks that every
//! printed entry is there, at the position the child was told.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{drain, payload_for};
use reservoir_metering::spool::{Entry, Position, Spool, SpoolConfig};

const CHILD_DIR: &str = "SPOOL_CRASH_CHILD_DIR";
const KILL_AFTER: usize = 3000;

/// The child: append from 16 tasks until killed, printing `ok KEY SEG OFF` after each append resolves. Every key
/// gets an unacked `Begin`; only even ones get a `Finish`, so odd ones stay open, as requests in flight at a crash
/// would. Stops by itself after a while in case the parent is gone.
fn append_until_killed(dir: String) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let mut config = SpoolConfig::new(dir);
        config.segment_bytes_max = 64 << 10;
        let (spool, _) = Spool::open(config).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let spool = spool.clone();
                tokio::spawn(async move {
                    for i in 0.. {
                        if Instant::now() > deadline {
                            return;
                        }
                        let key = format!("c{t}-{i}");
                        spool.append_unacked(Entry::begin(key.clone(), b"dispatch".to_vec())).await.unwrap();
                        if i % 2 == 1 {
                            continue;
                        }
                        let pos = spool.append(Entry::finish(key.clone(), payload_for(&key))).await.unwrap();
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ok {key} {} {}", pos.segment, pos.offset).unwrap();
                        out.flush().unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
}

fn parse(line: &str) -> Option<(String, Position)> {
    let rest = line.strip_suffix('\n')?.strip_prefix("ok ")?;
    let mut parts = rest.split(' ');
    let key = parts.next()?.to_owned();
    let segment = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    Some((key, Position { segment, offset }))
}

/// Run as the parent, the test starts this same test in a child process (marked by `CHILD_DIR`), which appends
/// until the parent kills it.
#[test]
fn sigkill_after_append_resolved_loses_nothing() {
    match std::env::var(CHILD_DIR) {
        Ok(dir) => append_until_killed(dir),
        Err(_) => tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(parent()),
    }
}

async fn parent() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash::sigkill_after_append_resolved_loses_nothing", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut acked: HashMap<String, Position> = HashMap::new();
    let mut line = String::new();
    while acked.len() < KILL_AFTER {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "child ended before it was killed");
        if let Some((key, pos)) = parse(&line) {
            acked.insert(key, pos);
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no close, no flush of anything not already written.
    // Lines the child wrote before it died were acknowledged too; only whole lines count.
    loop {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some((key, pos)) = parse(&line) {
            acked.insert(key, pos);
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed, not finished");

    let (spool, recovery) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
    println!(
        "crash: {} acknowledged, {} recovered, torn tail {} bytes, {} open begins",
        acked.len(),
        recovery.entries,
        recovery.torn_tail_bytes,
        recovery.open_begins.len()
    );
    assert_eq!(recovery.corrupt_bytes, 0, "a crash leaves at most a torn tail");
    let open: std::collections::HashSet<&str> = recovery.open_begins.iter().map(|e| e.key.as_str()).collect();
    for key in acked.keys() {
        assert!(!open.contains(key.as_str()), "{key} has a durable finish, it is not open");
        // The unacked begin queued just before this finish (same task, odd key) is durable with it: one FIFO queue.
        let (task, i) = key.trim_start_matches('c').split_once('-').unwrap();
        let i: u64 = i.parse().unwrap();
        if i > 0 {
            let previous = format!("c{task}-{}", i - 1);
            assert!(open.contains(previous.as_str()), "unacked begin {previous} lost");
        }
    }
    let read = drain(spool).await;
    let mut finishes: HashMap<String, Position> = HashMap::new();
    for (pos, entry) in &read {
        if entry.kind == reservoir_metering::spool::EntryKind::Finish {
            assert_eq!(entry.payload, payload_for(&entry.key));
            assert!(finishes.insert(entry.key.clone(), *pos).is_none(), "{} twice", entry.key);
        }
    }
    for (key, pos) in &acked {
        assert_eq!(finishes.get(key), Some(pos), "acknowledged {key} lost or moved");
    }

    // The recovered spool takes new writes that survive another reopen.
    let (spool, _) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
    spool.append(Entry::finish("after-crash", b"x".to_vec())).await.unwrap();
    spool.close().await.unwrap();
    let (spool, _) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
    assert!(drain(spool).await.iter().any(|(_, e)| e.key == "after-crash"));
}
