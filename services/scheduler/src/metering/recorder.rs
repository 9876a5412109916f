//! Usage records leave the token path through a bounded buffer; a writer task
//! stores them in batches. Nothing that streams tokens waits on PostgreSQL:
//! a request hands its record over after its last token, and only waits (for
//! buffer room, never for the database) when the buffer is full. The writer
//! flushes when a batch is full or on a timer, retries a failed batch with
//! back-off, and drains the buffer on shutdown.

use std::time::Duration;

use reservoir_runtime::Shutdown;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::record::UsageRecord;
use super::store;

#[derive(Debug, Clone, Copy)]
pub struct RecorderConfig {
    /// Records the buffer holds before senders wait.
    pub buffer_capacity: usize,
    /// Most records one insert writes.
    pub batch_max: usize,
    /// Longest a record waits in a partial batch.
    pub flush_every: Duration,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig { buffer_capacity: 65_536, batch_max: 512, flush_every: Duration::from_millis(200) }
    }
}

/// Hands records to the writer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct UsageSink {
    tx: mpsc::Sender<UsageRecord>,
}

#[derive(Debug, thiserror::Error)]
#[error("the usage recorder has stopped")]
pub struct RecorderStopped;

impl UsageSink {
    pub async fn record(&self, record: UsageRecord) -> Result<(), RecorderStopped> {
        self.tx.send(record).await.map_err(|_| RecorderStopped)
    }
}

/// Starts the writer; it stops after `shutdown`, once everything buffered is stored.
pub fn spawn(pool: PgPool, config: RecorderConfig, shutdown: Shutdown) -> (UsageSink, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(config.buffer_capacity.max(1));
    let handle = tokio::spawn(write_loop(pool, config, rx, shutdown));
    (UsageSink { tx }, handle)
}

async fn write_loop(pool: PgPool, config: RecorderConfig, mut rx: mpsc::Receiver<UsageRecord>, shutdown: Shutdown) {
    let batch_max = config.batch_max.max(1);
    let mut batch: Vec<UsageRecord> = Vec::with_capacity(batch_max);
    let mut tick = tokio::time::interval(config.flush_every);
    loop {
        tokio::select! {
            received = rx.recv() => match received {
                Some(record) => add(&pool, &mut batch, batch_max, record, false).await,
                None => break,
            },
            _ = tick.tick() => flush(&pool, &mut batch, false).await,
            _ = shutdown.wait() => {
                // Requests finishing during shutdown still hand in their
                // records: keep taking them for a grace period (or until every
                // sender is gone), then refuse new ones and store the rest.
                let grace = tokio::time::sleep(SHUTDOWN_GRACE);
                tokio::pin!(grace);
                loop {
                    tokio::select! {
                        received = rx.recv() => match received {
                            Some(record) => add(&pool, &mut batch, batch_max, record, true).await,
                            None => break,
                        },
                        _ = &mut grace => break,
                    }
                }
                rx.close();
                while let Some(record) = rx.recv().await {
                    add(&pool, &mut batch, batch_max, record, true).await;
                }
                break;
            }
        }
    }
    flush(&pool, &mut batch, true).await;
}

/// Adds a record to the batch, storing the batch once it is full.
async fn add(pool: &PgPool, batch: &mut Vec<UsageRecord>, batch_max: usize, record: UsageRecord, shutting_down: bool) {
    batch.push(record);
    if batch.len() >= batch_max {
        flush(pool, batch, shutting_down).await;
    }
}

/// How long records are still taken after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Attempts per batch while shutting down (while running, a batch is retried
/// until it is stored: usage is money).
const SHUTDOWN_ATTEMPTS_MAX: u32 = 5;

async fn flush(pool: &PgPool, batch: &mut Vec<UsageRecord>, shutting_down: bool) {
    if batch.is_empty() {
        return;
    }
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        match store::insert(pool, batch).await {
            Ok(_) => {
                batch.clear();
                return;
            }
            Err(e) if shutting_down && attempt >= SHUTDOWN_ATTEMPTS_MAX => {
                tracing::error!(error = %e, records = batch.len(), "usage records could not be stored at shutdown");
                batch.clear();
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, records = batch.len(), "storing usage records failed; retrying");
                let pause_ms = 50u64.saturating_mul(1 << attempt.min(7)).min(5_000);
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            }
        }
    }
}
