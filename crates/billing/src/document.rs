//! An invoice as a person reads it (PDF, CSV): who issues it to whom, its
//! number and dates, its lines and totals. Built by the billing service from
//! a stored invoice; rendered by pure functions.

use chrono::{DateTime, Utc};
use reservoir_domain::{Currency, Period};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Line;

/// Who issues invoices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Issuer {
    pub name: String,
    /// Postal address, one line each.
    pub address: Vec<String>,
    pub email: String,
}

impl Default for Issuer {
    fn default() -> Self {
        Issuer {
            name: "Reservoir".into(),
            address: vec!["Reserved inference capacity".into()],
            email: "billing@reservoir.invalid".into(),
        }
    }
}

/// One credit note against an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditNoteSummary {
    pub id: Uuid,
    pub issued_at: DateTime<Utc>,
    pub reason: String,
    pub amount: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceDocument {
    pub issuer: Issuer,
    pub id: Uuid,
    pub tenant: String,
    /// `RSV-2026-000123` once finalized; `None` for a draft.
    pub number: Option<String>,
    /// `draft`, `finalized` or `void`.
    pub status: String,
    pub period: Period,
    /// When it was finalized; `None` for a draft.
    pub issued_at: Option<DateTime<Utc>>,
    pub currency: Currency,
    pub lines: Vec<Line>,
    pub subtotal: Decimal,
    pub total: Decimal,
    pub credit_balance_after: Decimal,
    pub credit_notes: Vec<CreditNoteSummary>,
}
