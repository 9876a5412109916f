//! The request path's side of metering, run inside the scheduler. A record
//! is appended to a durable local spool (`crate::spool`) and the request
//! waits for the spool's group commit, never for PostgreSQL; a forwarder
//! task ships spooled records to `MeteringService` in batches, in order, and
//! acknowledges them so the spool trims what is stored.
//!
//! When a request is dispatched, a `Begin` entry with what is known of it
//! goes into the spool first (without waiting for its fsync). A request whose
//! Begin has no record after a crash is recorded at the next start as
//! `interrupted`: nothing served is billed (what reached the client is not
//! known), its demand counts for the SLA.
//!
//! Bounds: the spool's queue bounds what waits in memory; a backlog (the
//! database down for hours) lives on disk and is read back batch by batch.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use prost::Message;
use reservoir_domain::{Outcome, UsageRecord};
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::metering_service_client::MeteringServiceClient;
use reservoir_runtime::{InternalChannel, Shutdown};
use rust_decimal::Decimal;
use tokio::task::JoinHandle;

use crate::convert::record_to_pb;
use crate::spool::{Entry, EntryKind, Position, Reader, Spool, SpoolConfig};

/// Records one RecordUsage call carries at most.
const FORWARD_BATCH_MAX: usize = 5_000;
const FORWARD_BATCH_BYTES_MAX: usize = 8 << 20;
/// Batches at metering at once.
const SHIPMENTS_IN_FLIGHT: usize = 2;
/// Back-off between failed calls: doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_LAST: Duration = Duration::from_secs(5);
/// After shutdown, how long the forwarder still ships what is spooled;
/// what is left stays in the spool for the next start.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);
/// After shutdown, no new durable record for this long means all is shipped.
const CAUGHT_UP_AFTER: Duration = Duration::from_millis(300);

#[derive(Debug, thiserror::Error)]
#[error("the usage spool failed: {0}")]
pub struct UsageLogError(String);

/// Counters of the spool and the forwarder, on the scheduler's `/metrics`.
struct Metrics {
    forwarded: IntCounterVec,
    forward_failures: IntCounterVec,
    spool_bytes: IntGauge,
    spool_open_requests: IntGauge,
    recovered: IntCounterVec,
}

impl Metrics {
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let forwarded = IntCounterVec::new(
            Opts::new("usage_records_forwarded_total", "Usage records metering answered, by its answer"),
            &["status"],
        )?;
        let forward_failures = IntCounterVec::new(
            Opts::new("usage_forward_failures_total", "Failed calls shipping usage records, by gRPC code"),
            &["code"],
        )?;
        let spool_bytes = IntGauge::new("usage_spool_bytes", "Bytes of usage records waiting in the local spool")?;
        let spool_open_requests =
            IntGauge::new("usage_spool_open_requests", "Dispatched requests whose record is not written yet")?;
        let recovered = IntCounterVec::new(
            Opts::new("usage_spool_recovered_total", "What the spool found at start, by kind"),
            &["kind"],
        )?;
        registry.register(Box::new(forwarded.clone()))?;
        registry.register(Box::new(forward_failures.clone()))?;
        registry.register(Box::new(spool_bytes.clone()))?;
        registry.register(Box::new(spool_open_requests.clone()))?;
        registry.register(Box::new(recovered.clone()))?;
        Ok(Metrics { forwarded, forward_failures, spool_bytes, spool_open_requests, recovered })
    }
}

/// Hands records to the spool. Cheap to clone.
#[derive(Clone)]
pub struct UsageLog {
    spool: Spool,
}

/// Opens the spool under `dir`, records the requests a previous run left
/// open as interrupted, and starts the forwarder; it stops after `shutdown`
/// once the spool is shipped or `SHUTDOWN_DRAIN` has passed.
pub async fn open(
    dir: PathBuf,
    metering: MeteringServiceClient<InternalChannel>,
    registry: &Registry,
    shutdown: Shutdown,
) -> anyhow::Result<(UsageLog, JoinHandle<()>)> {
    let metrics = Arc::new(Metrics::register(registry)?);
    let opened = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || Spool::open(SpoolConfig::new(dir))).await?
    };
    let (spool, recovery) =
        opened.map_err(|e| anyhow::anyhow!("cannot open the usage spool in {}: {e}", dir.display()))?;
    for q in &recovery.quarantined {
        tracing::error!(segment = q.segment, offset = q.offset, bytes = q.bytes, path = %q.path.display(),
            reason = q.reason, "usage spool data set aside: it may hold records");
    }
    metrics.recovered.with_label_values(&["torn_tail_bytes"]).inc_by(recovery.torn_tail_bytes);
    metrics.recovered.with_label_values(&["corrupt_bytes"]).inc_by(recovery.corrupt_bytes);
    let log = UsageLog { spool };
    let interrupted = recovery.open_begins.len();
    for begin in recovery.open_begins {
        match pb::UsageRecord::decode(begin.payload.as_slice()) {
            Ok(mut record) => {
                record.outcome = pb::Outcome::from(Outcome::Interrupted).into();
                log.append_finish(&begin.key, record).await?;
            }
            Err(e) => {
                tracing::error!(request_id = %begin.key, error = %e, "an open request in the spool is unreadable")
            }
        }
    }
    if interrupted > 0 {
        metrics.recovered.with_label_values(&["interrupted"]).inc_by(interrupted as u64);
        tracing::warn!(requests = interrupted, "requests left running by the previous run recorded as interrupted");
    }
    let forwarder = tokio::spawn(forward(log.spool.clone(), metering, metrics, shutdown));
    Ok((log, forwarder))
}

impl UsageLog {
    /// Notes a dispatched request (what is known now: counted prompt,
    /// demand, start), so a crash before its end still leaves a record.
    /// Does not wait for the disk.
    pub async fn begin(&self, known: &UsageRecord) -> Result<(), UsageLogError> {
        let mut wire = record_to_pb(known);
        // What an interrupted request is billed for: nothing.
        wire.weighted_tokens = Decimal::ZERO.to_string();
        let entry = Entry { kind: EntryKind::Begin, key: known.request_id.clone(), payload: wire.encode_to_vec() };
        self.spool.append_unacked(entry).await.map_err(|e| UsageLogError(e.to_string()))
    }

    /// Writes a request's record; returns once it is on disk (fsync'd).
    pub async fn record(&self, record: &UsageRecord) -> Result<(), UsageLogError> {
        self.append_finish(&record.request_id, record_to_pb(record)).await
    }

    async fn append_finish(&self, key: &str, record: pb::UsageRecord) -> Result<(), UsageLogError> {
        let entry = Entry { kind: EntryKind::Finish, key: key.to_owned(), payload: record.encode_to_vec() };
        self.spool.append(entry).await.map(|_| ()).map_err(|e| UsageLogError(e.to_string()))
    }
}

/// Ships spooled records in order until shutdown (then drains, bounded).
/// Up to `SHIPMENTS_IN_FLIGHT` batches are at metering at once (the database
/// works on one while the next is read and sent); the spool is acknowledged
/// in order, as each batch and all before it are answered.
async fn forward(
    spool: Spool,
    metering: MeteringServiceClient<InternalChannel>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) {
    let mut reader = match spool.reader() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the usage spool; records stay in it");
            return;
        }
    };
    let drain_deadline = async {
        shutdown.wait().await;
        tokio::time::sleep(SHUTDOWN_DRAIN).await;
    };
    tokio::pin!(drain_deadline);
    let mut in_flight: VecDeque<(Position, JoinHandle<()>)> = VecDeque::with_capacity(SHIPMENTS_IN_FLIGHT);
    let work = async {
        loop {
            let stats = spool.stats();
            metrics.spool_bytes.set(i64::try_from(stats.bytes_on_disk).unwrap_or(i64::MAX));
            metrics.spool_open_requests.set(i64::try_from(stats.open_begins).unwrap_or(i64::MAX));
            if in_flight.len() >= SHIPMENTS_IN_FLIGHT {
                settle_oldest(&mut in_flight, &reader).await;
            }
            // After shutdown, a batch that does not come within a moment
            // means everything spooled is shipped.
            let next = reader.next_batch(FORWARD_BATCH_MAX, FORWARD_BATCH_BYTES_MAX);
            let batch = if shutdown.is_triggered() {
                match tokio::time::timeout(CAUGHT_UP_AFTER, next).await {
                    Ok(batch) => batch,
                    Err(_) => break,
                }
            } else if let Some((_, oldest)) = in_flight.front_mut() {
                // Acknowledge answered batches while waiting for new records.
                tokio::select! {
                    batch = next => batch,
                    _ = oldest => {
                        if let Some((upto, _)) = in_flight.pop_front() {
                            acknowledge(&reader, upto);
                        }
                        continue;
                    }
                    _ = shutdown.wait() => continue,
                }
            } else {
                tokio::select! {
                    batch = next => batch,
                    _ = shutdown.wait() => continue,
                }
            };
            let batch = match batch {
                Ok(b) if b.is_empty() => break, // the spool closed
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "reading the usage spool failed; records stay in it");
                    break;
                }
            };
            let Some(upto) = batch.last().map(|(p, _)| *p) else { continue };
            let records: Vec<pb::UsageRecord> = batch
                .into_iter()
                .filter(|(_, e)| e.kind == EntryKind::Finish)
                .filter_map(|(_, e)| match pb::UsageRecord::decode(e.payload.as_slice()) {
                    Ok(r) => Some(r),
                    Err(err) => {
                        metrics.forwarded.with_label_values(&["undecodable"]).inc();
                        tracing::error!(request_id = %e.key, error = %err, "a spooled usage record is unreadable");
                        None
                    }
                })
                .collect();
            let (mut client, metrics) = (metering.clone(), metrics.clone());
            in_flight.push_back((upto, tokio::spawn(async move { ship(&mut client, records, &metrics).await })));
        }
        while !in_flight.is_empty() {
            settle_oldest(&mut in_flight, &reader).await;
        }
    };
    tokio::select! {
        _ = work => {}
        _ = &mut drain_deadline => {
            tracing::warn!(bytes = spool.stats().bytes_on_disk, "usage records left in the spool at shutdown; shipped at the next start");
        }
    }
}

/// Waits for the oldest shipment and acknowledges the spool up to it.
async fn settle_oldest(in_flight: &mut VecDeque<(Position, JoinHandle<()>)>, reader: &Reader) {
    // `ship` retries until answered and never panics; a shipment that did
    // not finish leaves its records unacknowledged, in the spool.
    if let Some((upto, shipment)) = in_flight.pop_front()
        && shipment.await.is_ok()
    {
        acknowledge(reader, upto);
    }
}

fn acknowledge(reader: &Reader, upto: Position) {
    if let Err(e) = reader.ack(upto) {
        tracing::warn!(error = %e, "trimming the usage spool failed");
    }
}

/// Sends one batch until metering answers it (usage is money: a batch is
/// retried, never dropped; metering is idempotent by request id).
async fn ship(metering: &mut MeteringServiceClient<InternalChannel>, records: Vec<pb::UsageRecord>, metrics: &Metrics) {
    let mut pause = RETRY_FIRST;
    loop {
        match metering.record_usage(pb::RecordUsageRequest { records: records.clone() }).await {
            Ok(answer) => {
                for r in &answer.get_ref().results {
                    let status = match pb::RecordStatus::try_from(r.status) {
                        Ok(pb::RecordStatus::Stored) => "stored",
                        Ok(pb::RecordStatus::Duplicate) => "duplicate",
                        _ => {
                            tracing::warn!(request_id = %r.request_id, reason = %r.reason, "metering set a usage record aside");
                            "rejected"
                        }
                    };
                    metrics.forwarded.with_label_values(&[status]).inc();
                }
                return;
            }
            Err(status) => {
                metrics.forward_failures.with_label_values(&[&format!("{:?}", status.code())]).inc();
                tracing::warn!(code = ?status.code(), message = status.message(), records = records.len(),
                    retry_in_ms = pause.as_millis() as u64, "shipping usage records failed; they wait in the spool");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_LAST);
            }
        }
    }
}
