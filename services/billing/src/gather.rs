//! Gathering what a period's invoices are computed from: one call per peer
//! for every tenant at once (the run), or for one tenant (finalizing one
//! invoice). What billing itself stored (what earlier invoices billed, the
//! credit balance, the credits already taken) is read later, per tenant,
//! under the tenant's lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use reservoir_billing::{ContractInput, CreditInput, UsageInput};
use reservoir_domain::{Currency, Period};
use reservoir_pricing::Catalog;
use sqlx::PgPool;

use crate::error::Result;
use crate::peers::Peers;

/// Earlier months whose late usage an invoice picks up, and whose
/// not-yet-taken SLA credits it takes off. Usage recorded more than this
/// late is still in metering but no invoice bills it by itself.
pub const LOOKBACK_PERIODS: usize = 3;

/// Everything the peers know about a period, by tenant.
#[derive(Debug, Default)]
pub struct PeriodInputs {
    pub currencies: HashMap<String, Currency>,
    pub contracts: HashMap<String, Vec<ContractInput>>,
    pub usage: HashMap<String, Vec<UsageInput>>,
    pub credits: HashMap<String, Vec<CreditInput>>,
    /// Usage as metering holds it now, for earlier months already run.
    pub earlier_usage: BTreeMap<Period, HashMap<String, Vec<UsageInput>>>,
    pub catalogs: BTreeMap<i64, Catalog>,
}

impl PeriodInputs {
    /// Tenants with anything to bill in the period.
    pub fn tenants(&self) -> BTreeSet<String> {
        let mut tenants: BTreeSet<String> = BTreeSet::new();
        tenants.extend(self.contracts.keys().cloned());
        tenants.extend(self.usage.keys().cloned());
        tenants.extend(self.credits.keys().cloned());
        for usage in self.earlier_usage.values() {
            tenants.extend(usage.keys().cloned());
        }
        tenants
    }
}

/// The earlier months (within [`LOOKBACK_PERIODS`]) that billing already ran.
pub async fn earlier_periods_run(pool: &PgPool, period: Period) -> Result<Vec<Period>> {
    let mut candidates = Vec::new();
    let mut p = period;
    for _ in 0..LOOKBACK_PERIODS {
        match p.previous() {
            Some(previous) => {
                candidates.push(previous.to_string());
                p = previous;
            }
            None => break,
        }
    }
    let run: Vec<String> = sqlx::query_scalar("SELECT period FROM billing.runs WHERE period = ANY($1)")
        .bind(&candidates)
        .fetch_all(pool)
        .await?;
    run.iter().map(|p| p.parse().map_err(Into::into)).collect()
}

pub async fn gather(peers: &Peers, pool: &PgPool, period: Period, tenant: Option<&str>) -> Result<PeriodInputs> {
    // One tenant's run needs its currency only, not every tenant's.
    let currencies = match tenant {
        Some(t) => HashMap::from([(t.to_owned(), peers.tenant_currency(t).await?)]),
        None => peers.tenant_currencies().await?,
    };
    let mut inputs = PeriodInputs { currencies, ..PeriodInputs::default() };
    let default_version = peers.version_in_force(period.start()).await?;
    for (t, c) in peers.contracts(period, tenant).await? {
        inputs.contracts.entry(t).or_default().push(c);
    }
    for (t, u) in peers.usage(period, tenant, default_version).await? {
        inputs.usage.entry(t).or_default().push(u);
    }
    let mut credit_periods = vec![period];
    let mut p = period;
    for _ in 0..LOOKBACK_PERIODS {
        let Some(previous) = p.previous() else { break };
        credit_periods.push(previous);
        p = previous;
    }
    for q in credit_periods {
        for (t, c) in peers.credits(q, tenant).await? {
            inputs.credits.entry(t).or_default().push(c);
        }
    }
    for q in earlier_periods_run(pool, period).await? {
        let default_version = peers.version_in_force(q.start()).await?;
        let mut by_tenant: HashMap<String, Vec<UsageInput>> = HashMap::new();
        for (t, u) in peers.usage(q, tenant, default_version).await? {
            by_tenant.entry(t).or_default().push(u);
        }
        inputs.earlier_usage.insert(q, by_tenant);
    }
    // Every version any usage or contract names.
    let mut versions: BTreeSet<i64> = BTreeSet::new();
    versions.extend(inputs.contracts.values().flatten().map(|c| c.catalog_version));
    versions.extend(inputs.usage.values().flatten().map(|u| u.catalog_version));
    for usage in inputs.earlier_usage.values() {
        versions.extend(usage.values().flatten().map(|u| u.catalog_version));
    }
    for version in versions {
        inputs.catalogs.insert(version, peers.catalog(version).await?);
    }
    Ok(inputs)
}
