//! Everything the portal shows of one tenant for one month: its contracts,
//! usage by day and class, SLA report, credits, invoices and credit
//! balance. The admin's tenant page and the tenant's own console read it
//! from here, so both show the same figures the same way.

use axum::response::Response;
use chrono::{DateTime, Utc};
use reservoir_domain::Period;
use reservoir_proto::time::timestamp;
use reservoir_proto::v1 as pb;

use crate::api::Reservation;
use crate::portal::page::{PAGE_ROWS, error_refusal, service_refusal};
use crate::portal::usage::{self, DayUsage};
use crate::routes::billing::Invoice;
use crate::routes::sla::{Credit, SlaReport};
use crate::state::AppState;

pub struct TenantView {
    pub tenant: String,
    pub period: String,
    /// The newest `PAGE_ROWS` contracts, and how many there are in all.
    pub contracts: Vec<Reservation>,
    pub contracts_total: u64,
    pub usage: Vec<DayUsage>,
    pub usage_chart: String,
    pub sla: SlaReport,
    pub credits: Vec<Credit>,
    pub invoices: Vec<Invoice>,
    /// The credit balance with its currency.
    pub balance: String,
    /// Where this viewer downloads an invoice file (`{prefix}{id}.pdf`).
    pub files_prefix: &'static str,
}

/// The month shown: the one asked for, else the current one.
pub fn period_or_current(asked: Option<&str>, now: DateTime<Utc>) -> Result<Period, String> {
    match asked.filter(|p| !p.is_empty()) {
        Some(p) => p.parse().map_err(|e: reservoir_domain::DomainError| e.to_string()),
        None => Period::containing(now).map_err(|e| e.to_string()),
    }
}

/// Reads the tenant's view from the services, all at once; a service that
/// fails makes the page a refusal with its message.
pub async fn gather(
    state: &AppState,
    tenant: &str,
    period: Period,
    files_prefix: &'static str,
) -> Result<TenantView, Response> {
    let now = Utc::now();
    let (from, to) = (period.start(), period.end().min(now).max(period.start()));
    let tenant_id = tenant.to_owned();
    let (mut contracts, mut metering) = (state.contracts.clone(), state.metering.clone());
    let (mut sla, mut sla_credits) = (state.sla.clone(), state.sla.clone());
    let (mut billing, mut billing_balance) = (state.billing.clone(), state.billing.clone());
    let contracts = contracts.list_reservations(pb::ListReservationsRequest {
        tenant_id: tenant_id.clone(),
        limit: PAGE_ROWS,
        with_total: true,
        ..Default::default()
    });
    let usage = metering.usage_totals(pb::UsageTotalsRequest {
        tenant_id: tenant_id.clone(),
        from: Some(timestamp(from)),
        to: Some(timestamp(period.end())),
        by_day: true,
    });
    let sla =
        sla.get_contract_sla(pb::GetContractSlaRequest { tenant_id: tenant_id.clone(), period: period.to_string() });
    let credits =
        sla_credits.list_credits(pb::ListCreditsRequest { tenant_id: tenant_id.clone(), period: String::new() });
    let invoices = billing.list_invoices(pb::ListInvoicesRequest {
        tenant_id: tenant_id.clone(),
        limit: 1000,
        ..Default::default()
    });
    let balance = billing_balance.get_credit_balance(pb::GetCreditBalanceRequest { tenant_id });
    let (contracts, usage, sla, credits, invoices, balance) =
        tokio::join!(contracts, usage, sla, credits, invoices, balance);
    let contracts = contracts.map_err(service_refusal)?.into_inner();
    let usage = usage.map_err(service_refusal)?.into_inner().totals;
    let days = usage::by_day(&usage, from, to.max(from + chrono::Duration::seconds(1)));
    let balance = balance.map_err(service_refusal)?.into_inner();
    Ok(TenantView {
        tenant: tenant.to_owned(),
        period: period.to_string(),
        contracts_total: contracts.total.unwrap_or(0),
        contracts: contracts
            .reservations
            .into_iter()
            .map(Reservation::try_from)
            .collect::<Result<_, _>>()
            .map_err(error_refusal)?,
        usage_chart: usage::chart(&days),
        usage: days,
        sla: SlaReport::from_pb(period, sla.map_err(service_refusal)?.into_inner()),
        credits: credits.map_err(service_refusal)?.into_inner().credits.into_iter().map(Credit::from).collect(),
        invoices: invoices.map_err(service_refusal)?.into_inner().invoices.into_iter().map(Invoice::from).collect(),
        balance: format!("{} {}", balance.balance, balance.currency),
        files_prefix,
    })
}
