//! The SLA job: every `job_interval_s` it measures the windows that ended
//! since the last run and the windows late records changed, classifies
//! them, moves incidents along, samples worker health, and closes the
//! previous month once its grace has passed. Time is passed in (`tick(now)`),
//! so tests control the clock; the job is restartable and idempotent
//! (`sla.job_state` says what is measured, and recomputing writes the same rows).

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, TimeDelta, Utc};
use reservoir_domain::Period;
use reservoir_sla::BadReason;
use sqlx::PgPool;

use crate::clock::{align_down, at_epoch};
use crate::error::Result;
use crate::incidents::{self, Subject, WindowState};
use crate::peers::Peers;
use crate::{close, maintenance, measure};

/// Records stored this long before a run are asked for again by the next
/// one: a transaction that stored them may commit after the run read.
const LATE_OVERLAP: TimeDelta = TimeDelta::minutes(2);

/// The SLA's state and peers; cheap to clone.
#[derive(Clone)]
pub struct Sla {
    pub pool: PgPool,
    pub peers: Peers,
    pub window_s: u32,
    /// How long after a window ends the job waits before measuring it: a
    /// request is recorded when it finishes, so a window's records keep
    /// arriving for as long as its requests run. Records later still are
    /// measured as late ones.
    pub settle: TimeDelta,
    /// How long after a month ends the job closes it (late records first).
    pub close_grace: TimeDelta,
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    pub measured_until: Option<DateTime<Utc>>,
    pub contracts: usize,
    pub windows_stored: usize,
    pub closed: Option<Period>,
}

impl Sla {
    /// Windows before this instant are measured; `None` before the first run.
    pub async fn measured_until(&self) -> Result<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar("SELECT measured_until FROM sla.job_state WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn is_closed(&self, period: Period) -> Result<bool> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sla.closed_periods WHERE period = $1)")
            .bind(period.to_string())
            .fetch_one(&self.pool)
            .await?)
    }

    /// One run of the job at `now`.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<TickReport> {
        let wall_clock = Utc::now();
        let window_s = self.window_s;
        let until = align_down(now - self.settle, window_s);
        let state: Option<(DateTime<Utc>, DateTime<Utc>)> =
            sqlx::query_as("SELECT measured_until, recorded_watermark FROM sla.job_state WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        let this_month = Period::containing(now)?;
        let open_from = match this_month.previous() {
            Some(previous) if !self.is_closed(previous).await? => previous.start(),
            _ => this_month.start(),
        };
        // The first run measures the open months from their start.
        let from = state.map_or(open_from, |(measured, _)| measured.max(open_from)).min(until);
        let watermark = state.map(|(_, w)| w);

        let contracts =
            self.peers.contracts_running(open_from, until.max(open_from + TimeDelta::seconds(1)), None).await?;
        let models = self.peers.models().await?;
        let maintenance = maintenance::by_model(&self.pool).await?;
        let none = Vec::new();
        self.sample_workers(now, &models.keys().map(|m| m.to_string()).collect::<Vec<_>>()).await;

        let mut report = TickReport { contracts: contracts.len(), ..TickReport::default() };
        // Late windows per model (epoch starts), for the pools.
        let mut late_pool_windows: HashMap<String, BTreeSet<i64>> = HashMap::new();
        for contract in &contracts {
            let prefill = models.get(&contract.model).copied().unwrap_or(0);
            let model_maintenance = maintenance.get(contract.model.as_str()).unwrap_or(&none);
            let mut measured = Vec::new();
            if from < until {
                measured = self.peers.windows(contract, (from, until), window_s, prefill, None).await?;
            }
            let mut late = Vec::new();
            if let Some(since) = watermark
                && open_from < from
            {
                late = self.peers.windows(contract, (open_from, from), window_s, prefill, Some(since)).await?;
            }
            measure::store_contract_windows(&self.pool, contract, &measured, window_s, model_maintenance).await?;
            measure::store_contract_windows(&self.pool, contract, &late, window_s, model_maintenance).await?;
            report.windows_stored += measured.len() + late.len();

            let subject = Subject::Contract {
                id: contract.id,
                tenant: contract.tenant.to_string(),
                model: contract.model.to_string(),
            };
            if from < until {
                let states = self.contract_window_states(contract.id, from, until).await?;
                incidents::walk(&self.pool, &subject, &states, window_s).await?;
            }
            for w in &late {
                late_pool_windows.entry(contract.model.to_string()).or_default().insert(w.start.timestamp());
                if let Some((_, Some(reasons))) =
                    self.contract_window_states(contract.id, w.start, w.start + TimeDelta::seconds(1)).await?.pop()
                {
                    incidents::record_late_bad_window(&self.pool, &subject, w.start, &reasons, window_s).await?;
                }
            }
        }

        for model in models.keys() {
            let model_maintenance = maintenance.get(model.as_str()).unwrap_or(&none);
            let mut starts: BTreeSet<i64> = reservoir_sla::windows_overlapping(from, until, window_s).collect();
            let late = late_pool_windows.remove(model.as_str()).unwrap_or_default();
            starts.extend(late.iter().copied());
            measure::store_pool_windows(&self.pool, model, &starts, window_s, model_maintenance).await?;
            if from < until {
                let states = self.pool_window_states(model.as_str(), from, until).await?;
                incidents::walk(&self.pool, &Subject::Pool { model: model.to_string() }, &states, window_s).await?;
            }
        }

        sqlx::query(
            "INSERT INTO sla.job_state (id, measured_until, recorded_watermark) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET measured_until = GREATEST(sla.job_state.measured_until, $1), \
               recorded_watermark = $2",
        )
        .bind(until)
        .bind(wall_clock - LATE_OVERLAP)
        .execute(&self.pool)
        .await?;
        report.measured_until = Some(until.max(from));

        // The previous month closes once its grace has passed.
        if let Some(due) = Period::containing(now - self.close_grace)?.previous()
            && !self.is_closed(due).await?
            && due.end() <= until
        {
            close::close_period(self, due, "sla", now).await?;
            report.closed = Some(due);
        }
        Ok(report)
    }

    /// Each window of `[from, until)` of a contract in order: bad (and why)
    /// or not. Windows without a row had no traffic: good.
    async fn contract_window_states(
        &self,
        contract: uuid::Uuid,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<WindowState>> {
        let bad: Vec<(DateTime<Utc>, Vec<String>)> = sqlx::query_as(
            "SELECT window_start, reasons FROM sla.windows WHERE contract_id = $1 AND window_start >= $2 \
               AND window_start < $3 AND cardinality(reasons) > 0 AND NOT in_maintenance",
        )
        .bind(contract)
        .bind(align_down(from, self.window_s))
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        Ok(states(from, until, self.window_s, bad))
    }

    async fn pool_window_states(
        &self,
        model: &str,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<WindowState>> {
        let bad: Vec<(DateTime<Utc>, Vec<String>)> = sqlx::query_as(
            "SELECT window_start, reasons FROM sla.pool_windows WHERE model_id = $1 AND window_start >= $2 \
               AND window_start < $3 AND state = 'outage'",
        )
        .bind(model)
        .bind(align_down(from, self.window_s))
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        Ok(states(from, until, self.window_s, bad))
    }

    /// Samples healthy workers per model into the running window. A
    /// scheduler that cannot be reached leaves no sample (not a zero: the
    /// SLA cannot tell the workers are down).
    async fn sample_workers(&self, now: DateTime<Utc>, models: &[String]) {
        let healthy = match self.peers.healthy_workers().await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "worker health not sampled");
                return;
            }
        };
        let window = align_down(now, self.window_s);
        for model in models {
            // Only models with workers known are sampled: a model no worker
            // ever served is not "down", it is not offered.
            let Some(count) = healthy.get(model) else { continue };
            let Ok(id) = model.parse() else { continue };
            if let Err(e) = measure::sample_workers(&self.pool, &id, window, *count).await {
                tracing::warn!(error = %e, "worker sample not stored");
            }
        }
    }
}

fn states(
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    window_s: u32,
    bad: Vec<(DateTime<Utc>, Vec<String>)>,
) -> Vec<WindowState> {
    let bad: HashMap<i64, Vec<BadReason>> = bad
        .into_iter()
        .map(|(t, reasons)| (t.timestamp(), reasons.iter().filter_map(|r| BadReason::parse(r)).collect()))
        .collect();
    reservoir_sla::windows_overlapping(from, until, window_s)
        .map(|start| (at_epoch(start), bad.get(&start).cloned()))
        .collect()
}
