//! Admins' actions on stored invoices: hold or release a draft, void a
//! finalized invoice, issue a credit note. Each is one transaction on the
//! invoice's locked row.

use chrono::{DateTime, Utc};
use reservoir_billing::check_credit_note;
use reservoir_domain::Currency;
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::{BillingServiceError, Result};

/// Longest reason kept for a hold, a void or a credit note.
const REASON_MAX: usize = 1000;

fn reason_text(reason: &str, required: bool) -> Result<String> {
    let reason = reason.trim();
    if required && reason.is_empty() {
        return Err(BillingServiceError::Invalid("a reason is required".into()));
    }
    if reason.chars().count() > REASON_MAX {
        return Err(BillingServiceError::Invalid(format!("the reason is longer than {REASON_MAX} characters")));
    }
    Ok(reason.to_owned())
}

async fn locked_status(tx: &mut sqlx::PgConnection, id: Uuid) -> Result<String> {
    sqlx::query_scalar("SELECT status FROM billing.invoices WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| BillingServiceError::NotFound(format!("invoice {id}")))
}

pub async fn hold(pool: &PgPool, id: Uuid, held: bool, reason: &str) -> Result<()> {
    let reason = reason_text(reason, false)?;
    let mut tx = pool.begin().await?;
    let status = locked_status(&mut tx, id).await?;
    if status != "draft" {
        return Err(BillingServiceError::Conflict(format!("invoice {id} is {status}: only a draft can be held")));
    }
    sqlx::query("UPDATE billing.invoices SET held = $2, held_reason = $3 WHERE id = $1")
        .bind(id)
        .bind(held)
        .bind(if held { reason } else { String::new() })
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Voids a finalized invoice: its number stays used, its SLA credits and
/// usage become free for the period's next run, and the credit balance it
/// moved is moved back.
pub async fn void(pool: &PgPool, id: Uuid, reason: &str, actor: &str, now: DateTime<Utc>) -> Result<()> {
    let reason = reason_text(reason, true)?;
    let mut tx = pool.begin().await?;
    let status = locked_status(&mut tx, id).await?;
    if status != "finalized" {
        return Err(BillingServiceError::Conflict(format!(
            "invoice {id} is {status}: only a finalized invoice can be voided (a draft is recomputed or held)"
        )));
    }
    let credited: Decimal =
        sqlx::query_scalar("SELECT COALESCE(sum(amount), 0) FROM billing.credit_notes WHERE invoice_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
    if credited > Decimal::ZERO {
        return Err(BillingServiceError::Conflict(format!(
            "invoice {id} has credit notes for {credited}: correct it with credit notes instead"
        )));
    }
    let (tenant, before, after): (String, Decimal, Decimal) = sqlx::query_as(
        "SELECT tenant_id, credit_balance_before, credit_balance_after FROM billing.invoices WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    // Give back what the invoice took from (or added to) the balance; never
    // below zero should a later invoice already have spent it.
    sqlx::query(
        "UPDATE billing.credit_balances SET balance = GREATEST(balance + $2 - $3, 0), updated_at = $4 \
         WHERE tenant_id = $1",
    )
    .bind(&tenant)
    .bind(before)
    .bind(after)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM billing.applied_credits WHERE invoice_id = $1").bind(id).execute(&mut *tx).await?;
    sqlx::query(
        "UPDATE billing.invoices SET status = 'void', voided_at = $2, voided_by = $3, void_reason = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .bind(actor)
    .bind(&reason)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Issues a credit note of `amount` against finalized invoice `id`; the
/// same idempotency key answers the note it made before. Returns its id.
pub async fn credit_note(
    pool: &PgPool,
    id: Uuid,
    amount: Decimal,
    reason: &str,
    actor: &str,
    idempotency_key: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Uuid> {
    let reason = reason_text(reason, true)?;
    if let Some(key) = idempotency_key
        && !(1..=255).contains(&key.len())
    {
        return Err(BillingServiceError::Invalid("an idempotency key has 1 to 255 characters".into()));
    }
    let mut tx = pool.begin().await?;
    let status = locked_status(&mut tx, id).await?;
    if let Some(key) = idempotency_key {
        let earlier: Option<(Uuid, Decimal, String)> = sqlx::query_as(
            "SELECT id, amount, reason FROM billing.credit_notes WHERE invoice_id = $1 AND idempotency_key = $2",
        )
        .bind(id)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((note, earlier_amount, earlier_reason)) = earlier {
            if earlier_amount != amount || earlier_reason != reason {
                return Err(BillingServiceError::Conflict(
                    "this idempotency key was already used for a different credit note".into(),
                ));
            }
            return Ok(note);
        }
    }
    if status != "finalized" {
        return Err(BillingServiceError::Conflict(format!(
            "invoice {id} is {status}: credit notes correct finalized invoices only"
        )));
    }
    let (tenant, currency, total, number): (String, String, Decimal, String) =
        sqlx::query_as("SELECT tenant_id, currency, total, number FROM billing.invoices WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
    let currency: Currency = currency.parse()?;
    let credited: Decimal =
        sqlx::query_scalar("SELECT COALESCE(sum(amount), 0) FROM billing.credit_notes WHERE invoice_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
    // What is left depends on the invoice: a conflict with its state.
    check_credit_note(amount, total, credited, currency).map_err(|e| BillingServiceError::Conflict(e.to_string()))?;
    let note = Uuid::now_v7();
    let mut amount = amount;
    amount.rescale(currency.minor_unit_digits());
    sqlx::query(
        "INSERT INTO billing.credit_notes (id, invoice_id, tenant_id, currency, amount, reason, issued_at, issued_by, \
           idempotency_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(note)
    .bind(id)
    .bind(&tenant)
    .bind(currency.as_str())
    .bind(amount)
    .bind(&reason)
    .bind(now)
    .bind(actor)
    .bind(idempotency_key)
    .execute(&mut *tx)
    .await?;
    let data = json!({
        "credit_note": {
            "id": note, "invoice_id": id, "invoice_number": number, "tenant_id": tenant,
            "currency": currency, "amount": amount, "reason": reason, "issued_at": now,
        }
    });
    crate::outbox::queue(&mut tx, crate::outbox::CREDIT_NOTE_ISSUED, &tenant, data, now).await?;
    tx.commit().await?;
    Ok(note)
}
