//! One tenant's invoice for one month, computed and stored in one
//! transaction under the tenant's lock: as a draft, or finalized (numbered,
//! its credit balance moved, its event queued).
//!
//! What billing itself holds is read inside that transaction (the credit
//! balance, the SLA credits other invoices took, the usage other invoices
//! billed), so two runners, or a run and a finalization, never bill the
//! same usage or credit twice.

use chrono::{DateTime, Datelike, Utc};
use reservoir_billing::{
    BilledUsage, Draft, InvoiceInput, InvoiceNumber, LateUsage, Line, LineKind, UsageClass, UsageInput, rate_invoice,
};
use reservoir_domain::{Currency, Period};
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::{BillingServiceError, Result};
use crate::gather::PeriodInputs;

/// What to do with the computed invoice.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Create or recompute the draft.
    Draft { grace: chrono::TimeDelta },
    /// Recompute and finalize it; when `unless_held`, a held draft is left
    /// as it is (the grace period's finalization; an admin's ignores holds).
    Finalize { actor: String, unless_held: bool },
}

/// What happened to the tenant's invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Drafted(Uuid),
    Finalized(Uuid),
    /// It was finalized before: left as it is.
    AlreadyFinal(Uuid),
    /// A held draft the grace period does not finalize.
    Held(Uuid),
    /// Nothing to bill: no invoice (an empty draft is removed).
    Nothing,
}

/// Computes and stores `tenant`'s invoice for `period` at `now`.
pub async fn settle(
    pool: &PgPool,
    inputs: &PeriodInputs,
    tenant: &str,
    period: Period,
    mode: &Mode,
    now: DateTime<Utc>,
) -> Result<Outcome> {
    let currency = *inputs
        .currencies
        .get(tenant)
        .ok_or_else(|| BillingServiceError::Internal(format!("tenant {tenant} has no currency")))?;
    let mut tx = pool.begin().await?;
    // Every writer of a tenant's invoices takes this lock first.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('billing:' || $1, 0))")
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
    let existing: Option<(Uuid, String, bool)> = sqlx::query_as(
        "SELECT id, status, held FROM billing.invoices \
         WHERE tenant_id = $1 AND period = $2 AND status <> 'void' FOR UPDATE",
    )
    .bind(tenant)
    .bind(period.to_string())
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((id, status, held)) = &existing {
        if status == "finalized" {
            return Ok(Outcome::AlreadyFinal(*id));
        }
        if *held && matches!(mode, Mode::Finalize { unless_held: true, .. }) {
            return Ok(Outcome::Held(*id));
        }
    }
    let own = existing.as_ref().map(|(id, _, _)| *id);

    let balance: Decimal = sqlx::query_scalar("SELECT balance FROM billing.credit_balances WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?
        .unwrap_or(Decimal::ZERO);
    let taken: Vec<Uuid> = sqlx::query_scalar(
        "SELECT a.credit_id FROM billing.applied_credits a JOIN billing.invoices i ON i.id = a.invoice_id \
         WHERE i.tenant_id = $1 AND i.id IS DISTINCT FROM $2",
    )
    .bind(tenant)
    .bind(own)
    .fetch_all(&mut *tx)
    .await?;
    let credits = inputs
        .credits
        .get(tenant)
        .map(|all| all.iter().filter(|c| !taken.contains(&c.id)).cloned().collect())
        .unwrap_or_default();

    let mut late = Vec::new();
    for (q, usage) in &inputs.earlier_usage {
        // A month whose own invoice is still a draft bills its late usage
        // itself when that draft is recomputed.
        let draft_there: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM billing.invoices WHERE tenant_id = $1 AND period = $2 AND status = 'draft')",
        )
        .bind(tenant)
        .bind(q.to_string())
        .fetch_one(&mut *tx)
        .await?;
        if draft_there {
            continue;
        }
        let billed = billed_usage(&mut tx, tenant, *q, own).await?;
        let now_usage = usage.get(tenant).cloned().unwrap_or_default();
        if !billed.is_empty() || !now_usage.is_empty() {
            late.push(LateUsage { period: *q, billed, now: now_usage });
        }
    }

    let input = InvoiceInput {
        currency,
        period,
        contracts: inputs.contracts.get(tenant).cloned().unwrap_or_default(),
        usage: inputs.usage.get(tenant).cloned().unwrap_or_default(),
        usage_billed_elsewhere: billed_usage(&mut tx, tenant, period, own).await?,
        credits,
        late,
        credit_balance: balance,
        catalogs: &inputs.catalogs,
    };
    let draft = rate_invoice(&input)?;

    if draft.lines.is_empty() {
        if let Some(id) = own {
            sqlx::query("DELETE FROM billing.invoices WHERE id = $1").bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        return Ok(Outcome::Nothing);
    }
    let id = store_draft(&mut tx, own, tenant, &draft, mode, now).await?;
    let outcome = match mode {
        Mode::Draft { .. } => Outcome::Drafted(id),
        Mode::Finalize { actor, .. } => {
            finalize_in(&mut tx, id, tenant, currency, &draft, actor, now).await?;
            Outcome::Finalized(id)
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

/// What live invoices other than `own` billed of `tenant`'s usage of `period`.
async fn billed_usage(
    tx: &mut PgConnection,
    tenant: &str,
    period: Period,
    own: Option<Uuid>,
) -> Result<Vec<BilledUsage>> {
    type Row = (String, String, i64, Option<Uuid>, Decimal, Decimal);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT l.usage_class, l.model_id, l.catalog_version, l.contract_id, sum(l.weighted_tokens), \
           sum(l.amount_exact) \
         FROM billing.invoice_lines l JOIN billing.invoices i ON i.id = l.invoice_id \
         WHERE i.tenant_id = $1 AND i.status <> 'void' AND i.id IS DISTINCT FROM $3 \
           AND l.usage_period = $2 AND l.usage_class IS NOT NULL \
         GROUP BY 1, 2, 3, 4",
    )
    .bind(tenant)
    .bind(period.to_string())
    .bind(own)
    .fetch_all(&mut *tx)
    .await?;
    rows.into_iter()
        .map(|(class, model, version, contract, tokens, amount)| {
            let class = if class == "burst" { UsageClass::Burst } else { UsageClass::Spot };
            let usage = UsageInput {
                class,
                model: model.parse().map_err(|e| BillingServiceError::Internal(format!("stored model: {e}")))?,
                catalog_version: version,
                contract,
                weighted_tokens: tokens,
            };
            Ok(BilledUsage { usage, amount_exact: amount })
        })
        .collect()
}

/// Writes `draft` as the tenant's invoice (a new row, or `own` replaced).
async fn store_draft(
    tx: &mut PgConnection,
    own: Option<Uuid>,
    tenant: &str,
    draft: &Draft,
    mode: &Mode,
    now: DateTime<Utc>,
) -> Result<Uuid> {
    let grace = match mode {
        Mode::Draft { grace } => *grace,
        Mode::Finalize { .. } => chrono::TimeDelta::zero(),
    };
    let id = match own {
        Some(id) => {
            // A recomputed draft keeps the moment it finalizes by itself.
            sqlx::query(
                "UPDATE billing.invoices SET subtotal = $2, total = $3, credit_balance_before = $4, \
                   credit_balance_after = $5, computed_at = $6 WHERE id = $1",
            )
            .bind(id)
            .bind(draft.subtotal)
            .bind(draft.total)
            .bind(draft.credit_balance_before)
            .bind(draft.credit_balance_after)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM billing.invoice_lines WHERE invoice_id = $1").bind(id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM billing.applied_credits WHERE invoice_id = $1").bind(id).execute(&mut *tx).await?;
            id
        }
        None => {
            let id = Uuid::now_v7();
            sqlx::query(
                "INSERT INTO billing.invoices (id, tenant_id, period, currency, status, subtotal, total, \
                   credit_balance_before, credit_balance_after, computed_at, finalize_after) \
                 VALUES ($1, $2, $3, $4, 'draft', $5, $6, $7, $8, $9, $10)",
            )
            .bind(id)
            .bind(tenant)
            .bind(draft.period.to_string())
            .bind(draft.currency.as_str())
            .bind(draft.subtotal)
            .bind(draft.total)
            .bind(draft.credit_balance_before)
            .bind(draft.credit_balance_after)
            .bind(now)
            .bind(now + grace)
            .execute(&mut *tx)
            .await?;
            id
        }
    };
    insert_lines(tx, id, &draft.lines).await?;
    Ok(id)
}

async fn insert_lines(tx: &mut PgConnection, invoice: Uuid, lines: &[Line]) -> Result<()> {
    let mut builder = sqlx::QueryBuilder::new(
        "INSERT INTO billing.invoice_lines (invoice_id, line_no, kind, description, contract_id, model_id, \
           catalog_version, quantity, unit, tiers, usage_from, usage_to, usage_period, usage_class, \
           weighted_tokens, source, amount_exact, amount) ",
    );
    let mut credits = Vec::new();
    builder.push_values(lines.iter().enumerate(), |mut row, (n, line)| {
        let class = usage_class(line);
        let tokens = class.map(|_| line.quantity * Decimal::from(1_000_000));
        let usage_period = class.and_then(|_| Period::containing(line.usage_from).ok()).map(|p| p.to_string());
        if line.kind == LineKind::SlaCredit
            && let Some(id) = line.source.as_deref().and_then(|s| s.strip_prefix("sla_credit:"))
            && let Ok(id) = Uuid::parse_str(id)
        {
            credits.push(id);
        }
        row.push_bind(invoice)
            .push_bind(i32::try_from(n).unwrap_or(i32::MAX))
            .push_bind(line.kind.as_str())
            .push_bind(&line.description)
            .push_bind(line.contract_id)
            .push_bind(&line.model)
            .push_bind(line.catalog_version)
            .push_bind(line.quantity)
            .push_bind(unit_name(line))
            .push_bind(json!(line.tiers))
            .push_bind(line.usage_from)
            .push_bind(line.usage_to)
            .push_bind(usage_period)
            .push_bind(class)
            .push_bind(tokens)
            .push_bind(&line.source)
            .push_bind(line.amount_exact)
            .push_bind(line.amount);
    });
    builder.build().execute(&mut *tx).await?;
    if !credits.is_empty() {
        // The primary key refuses a credit that another live invoice took.
        sqlx::query("INSERT INTO billing.applied_credits (credit_id, invoice_id) SELECT unnest($1::uuid[]), $2")
            .bind(&credits)
            .bind(invoice)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// The usage class a line bills, for burst, spot and late usage lines.
fn usage_class(line: &Line) -> Option<&'static str> {
    match line.kind {
        LineKind::Burst => Some("burst"),
        LineKind::Spot => Some("spot"),
        LineKind::LateUsage => match line.source.as_deref() {
            Some("usage:burst") => Some("burst"),
            _ => Some("spot"),
        },
        _ => None,
    }
}

pub fn unit_name(line: &Line) -> &'static str {
    match line.unit {
        reservoir_billing::Unit::Second => "second",
        reservoir_billing::Unit::MillionWeightedTokens => "million_weighted_tokens",
        reservoir_billing::Unit::Money => "money",
    }
}

/// Numbers the invoice, moves the credit balance and queues the event, in
/// the caller's transaction. The number is the year's next: the sequence
/// row stays locked until the transaction ends, and a rollback gives the
/// number back, so the numbers used have no gaps.
async fn finalize_in(
    tx: &mut PgConnection,
    id: Uuid,
    tenant: &str,
    currency: Currency,
    draft: &Draft,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let year = now.year();
    let sequence: i64 = sqlx::query_scalar(
        "INSERT INTO billing.number_sequences (year, last) VALUES ($1, 1) \
         ON CONFLICT (year) DO UPDATE SET last = billing.number_sequences.last + 1 RETURNING last",
    )
    .bind(year)
    .fetch_one(&mut *tx)
    .await?;
    let number = InvoiceNumber { year, sequence: u64::try_from(sequence).unwrap_or(0) }.to_string();
    sqlx::query(
        "UPDATE billing.invoices SET status = 'finalized', number_year = $2, number_sequence = $3, number = $4, \
           finalized_at = $5, finalized_by = $6, held = FALSE WHERE id = $1",
    )
    .bind(id)
    .bind(year)
    .bind(sequence)
    .bind(&number)
    .bind(now)
    .bind(actor)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO billing.credit_balances (tenant_id, currency, balance, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id) DO UPDATE SET balance = $3, updated_at = $4",
    )
    .bind(tenant)
    .bind(currency.as_str())
    .bind(draft.credit_balance_after)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let data = json!({
        "invoice": {
            "id": id, "number": number, "tenant_id": tenant, "period": draft.period,
            "currency": currency, "total": draft.total, "finalized_at": now,
        }
    });
    crate::outbox::queue(&mut *tx, crate::outbox::INVOICE_FINALIZED, tenant, data, now).await
}
