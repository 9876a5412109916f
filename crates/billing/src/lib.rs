//! Pure billing of Reservoir: a tenant's month (its contracts, its metered
//! burst and spot usage, its SLA credits, late usage of earlier months and
//! the credit balance it carries) rated into invoice lines and totals.
//!
//! Nothing here does I/O or reads the clock; the billing service fetches the
//! inputs, calls [`rate_invoice`] and stores what it returns. The same
//! inputs give the same draft to the byte, whatever order they come in.
//!
//! # Money
//!
//! Amounts follow the pricing crate's rule: exact at 12 places while they
//! are computed; each invoice line is rounded half to even to the tenant's
//! currency's minor unit (JPY 0 places, BHD 3, most others 2); the invoice
//! total is the sum of its rounded lines. A credit never makes an invoice
//! negative: what is left of it is carried as the tenant's credit balance
//! and taken off the next invoices first.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod credit_note;
mod document;
mod error;
mod input;
mod invoice;
mod line;
mod number;
mod usage;

pub use credit_note::check_credit_note;
pub use document::{CreditNoteSummary, InvoiceDocument, Issuer};
pub use error::BillingError;
pub use input::{BilledUsage, ContractInput, CreditInput, InvoiceInput, LateUsage, UsageClass, UsageInput};
pub use invoice::{Draft, rate_invoice};
pub use line::{Line, LineKind, Unit, rounded_to_minor_unit};
pub use number::{InvoiceNumber, NUMBER_PREFIX};
pub use usage::rate_usage;
