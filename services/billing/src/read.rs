//! Reads for the API, answered as proto messages.

use chrono::{DateTime, Utc};
use reservoir_proto::time::timestamp;
use reservoir_proto::v1 as pb;
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::{BillingServiceError, Result};

/// Most invoices one list answers.
pub const LIST_LIMIT_MAX: u32 = 1000;

#[derive(Debug, Default, Clone)]
pub struct InvoiceFilter {
    pub id: Option<Uuid>,
    pub tenant: Option<String>,
    pub period: Option<String>,
    pub status: Option<String>,
    pub search: Option<String>,
    pub with_lines: bool,
    pub limit: u32,
    pub page_after: Option<Uuid>,
}

#[derive(sqlx::FromRow)]
struct InvoiceRow {
    id: Uuid,
    tenant_id: String,
    period: String,
    currency: String,
    status: String,
    held: bool,
    held_reason: String,
    number: Option<String>,
    subtotal: Decimal,
    total: Decimal,
    credit_balance_before: Decimal,
    credit_balance_after: Decimal,
    computed_at: DateTime<Utc>,
    finalize_after: DateTime<Utc>,
    finalized_at: Option<DateTime<Utc>>,
    voided_at: Option<DateTime<Utc>>,
    void_reason: String,
    credited: Decimal,
}

#[derive(sqlx::FromRow)]
struct LineRow {
    invoice_id: Uuid,
    kind: String,
    description: String,
    contract_id: Option<Uuid>,
    model_id: Option<String>,
    catalog_version: Option<i64>,
    quantity: Decimal,
    unit: String,
    tiers: serde_json::Value,
    usage_from: DateTime<Utc>,
    usage_to: DateTime<Utc>,
    source: Option<String>,
    amount_exact: Decimal,
    amount: Decimal,
}

pub async fn invoices(pool: &PgPool, f: &InvoiceFilter) -> Result<Vec<pb::Invoice>> {
    let limit = if f.limit == 0 { 100 } else { f.limit.min(LIST_LIMIT_MAX) };
    let rows: Vec<InvoiceRow> = sqlx::query_as(
        "SELECT i.id, i.tenant_id, i.period, i.currency, i.status, i.held, i.held_reason, i.number, i.subtotal, \
           i.total, i.credit_balance_before, i.credit_balance_after, i.computed_at, i.finalize_after, \
           i.finalized_at, i.voided_at, i.void_reason, \
           COALESCE((SELECT sum(amount) FROM billing.credit_notes n WHERE n.invoice_id = i.id), 0) AS credited \
         FROM billing.invoices i \
         WHERE ($1::uuid IS NULL OR i.id = $1) AND ($2::text IS NULL OR i.tenant_id = $2) \
           AND ($3::text IS NULL OR i.period = $3) AND ($4::text IS NULL OR i.status = $4) \
           AND ($5::text IS NULL OR strpos(lower(i.tenant_id), lower($5)) > 0 \
                OR strpos(lower(COALESCE(i.number, '')), lower($5)) > 0) \
           AND ($6::uuid IS NULL OR i.id > $6) \
         ORDER BY i.id LIMIT $7",
    )
    .bind(f.id)
    .bind(f.tenant.as_deref())
    .bind(f.period.as_deref())
    .bind(f.status.as_deref())
    .bind(f.search.as_deref())
    .bind(f.page_after)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    let mut invoices: Vec<pb::Invoice> = rows.into_iter().map(invoice_to_pb).collect();
    if f.with_lines && !invoices.is_empty() {
        let ids: Vec<Uuid> = invoices.iter().filter_map(|i| Uuid::parse_str(&i.id).ok()).collect();
        let lines: Vec<LineRow> = sqlx::query_as(
            "SELECT invoice_id, kind, description, contract_id, model_id, catalog_version, quantity, unit, tiers, \
               usage_from, usage_to, source, amount_exact, amount \
             FROM billing.invoice_lines WHERE invoice_id = ANY($1) ORDER BY invoice_id, line_no",
        )
        .bind(&ids)
        .fetch_all(pool)
        .await?;
        for line in lines {
            let id = line.invoice_id.to_string();
            if let Some(invoice) = invoices.iter_mut().find(|i| i.id == id) {
                let line = line_to_pb(line, &invoice.currency)?;
                invoice.lines.push(line);
            }
        }
    }
    Ok(invoices)
}

pub async fn invoice(pool: &PgPool, id: Uuid, tenant: Option<&str>) -> Result<pb::Invoice> {
    let filter = InvoiceFilter {
        id: Some(id),
        tenant: tenant.map(str::to_owned),
        with_lines: true,
        limit: 1,
        ..InvoiceFilter::default()
    };
    invoices(pool, &filter).await?.pop().ok_or_else(|| BillingServiceError::NotFound(format!("invoice {id}")))
}

/// `amount` written with exactly the currency's minor unit places (the
/// database may hand a zero back without its scale).
fn money(amount: Decimal, currency: &str) -> String {
    let digits = currency.parse::<reservoir_domain::Currency>().map_or(2, |c| c.minor_unit_digits());
    let mut amount = amount;
    amount.rescale(digits);
    amount.to_string()
}

fn invoice_to_pb(r: InvoiceRow) -> pb::Invoice {
    let cur = r.currency.clone();
    pb::Invoice {
        id: r.id.to_string(),
        tenant_id: r.tenant_id,
        period: r.period,
        currency: r.currency,
        status: status_to_pb(&r.status).into(),
        held: r.held,
        held_reason: r.held_reason,
        number: r.number.unwrap_or_default(),
        subtotal: money(r.subtotal, &cur),
        total: money(r.total, &cur),
        credit_balance_before: money(r.credit_balance_before, &cur),
        credit_balance_after: money(r.credit_balance_after, &cur),
        credited: money(r.credited, &cur),
        computed_at: Some(timestamp(r.computed_at)),
        finalize_after: Some(timestamp(r.finalize_after)),
        finalized_at: r.finalized_at.map(timestamp),
        voided_at: r.voided_at.map(timestamp),
        void_reason: r.void_reason,
        lines: Vec::new(),
    }
}

/// The stored status (a CHECK constraint keeps it one of three).
fn status_to_pb(status: &str) -> pb::InvoiceStatus {
    match status {
        "draft" => pb::InvoiceStatus::Draft,
        "finalized" => pb::InvoiceStatus::Finalized,
        "void" => pb::InvoiceStatus::Void,
        _ => pb::InvoiceStatus::Unspecified,
    }
}

/// The stored line kind (a CHECK constraint keeps it one of these).
fn kind_to_pb(kind: &str) -> pb::InvoiceLineKind {
    match kind {
        "reservation" => pb::InvoiceLineKind::Reservation,
        "burst" => pb::InvoiceLineKind::Burst,
        "spot" => pb::InvoiceLineKind::Spot,
        "late_usage" => pb::InvoiceLineKind::LateUsage,
        "sla_credit" => pb::InvoiceLineKind::SlaCredit,
        "credit_applied" => pb::InvoiceLineKind::CreditApplied,
        "credit_carried" => pb::InvoiceLineKind::CreditCarried,
        _ => pb::InvoiceLineKind::Unspecified,
    }
}

fn line_to_pb(l: LineRow, currency: &str) -> Result<pb::InvoiceLine> {
    let tiers: Vec<reservoir_pricing::TierLine> = serde_json::from_value(l.tiers)
        .map_err(|e| BillingServiceError::Internal(format!("stored tier breakdown: {e}")))?;
    Ok(pb::InvoiceLine {
        kind: kind_to_pb(&l.kind).into(),
        description: l.description,
        contract_id: l.contract_id.map(|c| c.to_string()).unwrap_or_default(),
        model: l.model_id.unwrap_or_default(),
        catalog_version: l.catalog_version.unwrap_or(0),
        quantity: l.quantity.to_string(),
        unit: match l.unit.as_str() {
            "second" => pb::LineUnit::Second,
            "million_weighted_tokens" => pb::LineUnit::MillionWeightedTokens,
            _ => pb::LineUnit::Money,
        }
        .into(),
        tiers: tiers.iter().map(Into::into).collect(),
        usage_from: Some(timestamp(l.usage_from)),
        usage_to: Some(timestamp(l.usage_to)),
        source: l.source.unwrap_or_default(),
        amount_exact: l.amount_exact.to_string(),
        amount: money(l.amount, currency),
    })
}

type NoteRow = (Uuid, Uuid, Option<String>, String, String, Decimal, String, DateTime<Utc>, String);

pub async fn credit_notes(
    pool: &PgPool,
    tenant: Option<&str>,
    period: Option<&str>,
    invoice: Option<Uuid>,
) -> Result<Vec<pb::CreditNote>> {
    let rows: Vec<NoteRow> = sqlx::query_as(
        "SELECT n.id, n.invoice_id, i.number, n.tenant_id, n.currency, n.amount, n.reason, n.issued_at, n.issued_by \
         FROM billing.credit_notes n JOIN billing.invoices i ON i.id = n.invoice_id \
         WHERE ($1::text IS NULL OR n.tenant_id = $1) AND ($2::text IS NULL OR i.period = $2) \
           AND ($3::uuid IS NULL OR n.invoice_id = $3) \
         ORDER BY n.issued_at, n.id LIMIT 10000",
    )
    .bind(tenant)
    .bind(period)
    .bind(invoice)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, invoice_id, number, tenant_id, currency, amount, reason, issued_at, issued_by)| pb::CreditNote {
            id: id.to_string(),
            invoice_id: invoice_id.to_string(),
            invoice_number: number.unwrap_or_default(),
            tenant_id,
            amount: money(amount, &currency),
            currency,
            reason,
            issued_at: Some(timestamp(issued_at)),
            issued_by,
        })
        .collect())
}

/// The tenant's credit balance; zero (in no currency) before any invoice.
pub async fn credit_balance(pool: &PgPool, tenant: &str) -> Result<(String, Decimal)> {
    let row: Option<(String, Decimal)> =
        sqlx::query_as("SELECT currency, balance FROM billing.credit_balances WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_optional(pool)
            .await?;
    Ok(match row {
        Some((currency, balance)) => {
            let shown = money(balance, &currency).parse().unwrap_or(balance);
            (currency, shown)
        }
        None => (String::new(), Decimal::ZERO),
    })
}
