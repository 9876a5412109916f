//! A stored invoice as a person reads it: the PDF's input, read with its
//! types (no decimal goes through text on the way).

use chrono::{DateTime, Utc};
use reservoir_billing::{CreditNoteSummary, InvoiceDocument, Issuer, Line, LineKind, Unit};
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::{BillingServiceError, Result};

type InvoiceRow = (String, Option<String>, String, String, String, Option<DateTime<Utc>>, Decimal, Decimal, Decimal);

type LineRow = (
    String,
    String,
    Option<Uuid>,
    Option<String>,
    Option<i64>,
    Decimal,
    String,
    serde_json::Value,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<String>,
    Decimal,
    Decimal,
);

fn internal(what: &str) -> impl Fn(String) -> BillingServiceError + '_ {
    move |e| BillingServiceError::Internal(format!("stored {what}: {e}"))
}

/// Invoice `id` (of `tenant` only, when given) for rendering.
pub async fn load(pool: &PgPool, id: Uuid, tenant: Option<&str>, issuer: &Issuer) -> Result<InvoiceDocument> {
    let row: Option<InvoiceRow> = sqlx::query_as(
        "SELECT tenant_id, number, status, period, currency, finalized_at, subtotal, total, credit_balance_after \
         FROM billing.invoices WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2)",
    )
    .bind(id)
    .bind(tenant)
    .fetch_optional(pool)
    .await?;
    let (tenant, number, status, period, currency, issued_at, subtotal, total, balance_after) =
        row.ok_or_else(|| BillingServiceError::NotFound(format!("invoice {id}")))?;
    let rows: Vec<LineRow> = sqlx::query_as(
        "SELECT kind, description, contract_id, model_id, catalog_version, quantity, unit, tiers, usage_from, \
           usage_to, source, amount_exact, amount FROM billing.invoice_lines WHERE invoice_id = $1 ORDER BY line_no",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    let mut lines = Vec::with_capacity(rows.len());
    for (
        kind,
        description,
        contract_id,
        model,
        catalog_version,
        quantity,
        unit,
        tiers,
        from,
        to,
        source,
        exact,
        amount,
    ) in rows
    {
        lines.push(Line {
            kind: line_kind(&kind)?,
            description,
            contract_id,
            model,
            catalog_version,
            quantity,
            unit: match unit.as_str() {
                "second" => Unit::Second,
                "million_weighted_tokens" => Unit::MillionWeightedTokens,
                _ => Unit::Money,
            },
            tiers: serde_json::from_value(tiers).map_err(|e| internal("tiers")(e.to_string()))?,
            usage_from: from,
            usage_to: to,
            source,
            amount_exact: exact,
            amount,
        });
    }
    let notes: Vec<(Uuid, DateTime<Utc>, String, Decimal)> = sqlx::query_as(
        "SELECT id, issued_at, reason, amount FROM billing.credit_notes WHERE invoice_id = $1 ORDER BY issued_at, id",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    Ok(InvoiceDocument {
        issuer: issuer.clone(),
        id,
        tenant,
        number,
        status,
        period: period.parse().map_err(|e: reservoir_domain::DomainError| internal("period")(e.to_string()))?,
        issued_at,
        currency: currency.parse().map_err(|e: reservoir_domain::DomainError| internal("currency")(e.to_string()))?,
        lines,
        subtotal,
        total,
        credit_balance_after: balance_after,
        credit_notes: notes
            .into_iter()
            .map(|(id, issued_at, reason, amount)| CreditNoteSummary { id, issued_at, reason, amount })
            .collect(),
    })
}

fn line_kind(kind: &str) -> Result<LineKind> {
    Ok(match kind {
        "reservation" => LineKind::Reservation,
        "burst" => LineKind::Burst,
        "spot" => LineKind::Spot,
        "late_usage" => LineKind::LateUsage,
        "sla_credit" => LineKind::SlaCredit,
        "credit_applied" => LineKind::CreditApplied,
        "credit_carried" => LineKind::CreditCarried,
        other => return Err(internal("line kind")(other.to_owned())),
    })
}

/// The PDF of invoice `id` and its file name.
pub async fn pdf(pool: &PgPool, id: Uuid, tenant: Option<&str>, issuer: &Issuer) -> Result<(Vec<u8>, String)> {
    let document = load(pool, id, tenant, issuer).await?;
    let filename = match &document.number {
        Some(number) => format!("{number}.pdf"),
        None => format!("draft-{id}.pdf"),
    };
    // Layout is CPU work: off the async runtime.
    let bytes = tokio::task::spawn_blocking(move || reservoir_invoice_pdf::render(&document))
        .await
        .map_err(|e| BillingServiceError::Internal(format!("pdf task: {e}")))?
        .map_err(|e| BillingServiceError::Internal(format!("pdf: {e}")))?;
    Ok((bytes, filename))
}
