//! The gRPC face of billing: validates requests and maps them onto runs,
//! actions and reads.

use chrono::Utc;
use reservoir_domain::{Period, TenantId};
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::billing_service_server::BillingService;
use rust_decimal::Decimal;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::Billing;
use crate::error::BillingServiceError;
use crate::read::{self, InvoiceFilter};
use crate::{actions, run};

type Reply<T> = Result<Response<T>, Status>;

fn uuid(what: &str, s: &str) -> Result<Uuid, BillingServiceError> {
    Uuid::parse_str(s).map_err(|_| BillingServiceError::Invalid(format!("{what} id {s:?} is not a UUID")))
}

fn optional_uuid(what: &str, s: &str) -> Result<Option<Uuid>, BillingServiceError> {
    if s.is_empty() { Ok(None) } else { uuid(what, s).map(Some) }
}

fn tenant(s: &str) -> Result<Option<String>, BillingServiceError> {
    if s.is_empty() {
        return Ok(None);
    }
    Ok(Some(s.parse::<TenantId>()?.to_string()))
}

fn period(s: &str) -> Result<Option<String>, BillingServiceError> {
    if s.is_empty() {
        return Ok(None);
    }
    Ok(Some(s.parse::<Period>()?.to_string()))
}

fn actor(s: &str) -> String {
    if s.is_empty() { "admin".to_owned() } else { s.chars().take(200).collect() }
}

#[tonic::async_trait]
impl BillingService for Billing {
    async fn run_period(&self, req: Request<pb::RunPeriodRequest>) -> Reply<pb::RunPeriodResponse> {
        let r = req.get_ref();
        let month: Period = r.period.parse().map_err(BillingServiceError::from)?;
        let report = run::run_period(&self.pool, &self.peers, month, &actor(&r.actor), self.grace, Utc::now()).await?;
        Ok(Response::new(pb::RunPeriodResponse {
            period: month.to_string(),
            drafted: report.drafted,
            already_final: report.already_final,
            tenants: report.tenants,
        }))
    }

    async fn list_invoices(&self, req: Request<pb::ListInvoicesRequest>) -> Reply<pb::ListInvoicesResponse> {
        let r = req.get_ref();
        let status = match pb::InvoiceStatus::try_from(r.status) {
            Ok(pb::InvoiceStatus::Unspecified) => None,
            Ok(pb::InvoiceStatus::Draft) => Some("draft".to_owned()),
            Ok(pb::InvoiceStatus::Finalized) => Some("finalized".to_owned()),
            Ok(pb::InvoiceStatus::Void) => Some("void".to_owned()),
            Err(_) => return Err(BillingServiceError::Invalid(format!("unknown invoice status {}", r.status)).into()),
        };
        let search = Some(r.search.trim()).filter(|s| !s.is_empty()).map(|s| s.chars().take(100).collect());
        let filter = InvoiceFilter {
            id: None,
            tenant: tenant(&r.tenant_id)?,
            period: period(&r.period)?,
            status,
            search,
            with_lines: r.with_lines,
            limit: r.limit,
            page_after: optional_uuid("page_after invoice", &r.page_after)?,
        };
        Ok(Response::new(pb::ListInvoicesResponse { invoices: read::invoices(&self.pool, &filter).await? }))
    }

    async fn get_invoice(&self, req: Request<pb::GetInvoiceRequest>) -> Reply<pb::Invoice> {
        let r = req.get_ref();
        let id = uuid("invoice", &r.id)?;
        Ok(Response::new(read::invoice(&self.pool, id, tenant(&r.tenant_id)?.as_deref()).await?))
    }

    async fn get_invoice_pdf(&self, req: Request<pb::GetInvoiceRequest>) -> Reply<pb::InvoicePdf> {
        let r = req.get_ref();
        let id = uuid("invoice", &r.id)?;
        let tenant = tenant(&r.tenant_id)?;
        let (pdf, filename) = crate::document::pdf(&self.pool, id, tenant.as_deref(), &self.issuer).await?;
        Ok(Response::new(pb::InvoicePdf { pdf, filename }))
    }

    async fn finalize_invoice(&self, req: Request<pb::FinalizeInvoiceRequest>) -> Reply<pb::Invoice> {
        let r = req.get_ref();
        let id = uuid("invoice", &r.id)?;
        let id = run::finalize(&self.pool, &self.peers, id, &actor(&r.actor), Utc::now()).await?;
        Ok(Response::new(read::invoice(&self.pool, id, None).await?))
    }

    async fn hold_invoice(&self, req: Request<pb::HoldInvoiceRequest>) -> Reply<pb::Invoice> {
        let r = req.get_ref();
        let id = uuid("invoice", &r.id)?;
        actions::hold(&self.pool, id, r.hold, &r.reason).await?;
        Ok(Response::new(read::invoice(&self.pool, id, None).await?))
    }

    async fn void_invoice(&self, req: Request<pb::VoidInvoiceRequest>) -> Reply<pb::Invoice> {
        let r = req.get_ref();
        let id = uuid("invoice", &r.id)?;
        actions::void(&self.pool, id, &r.reason, &actor(&r.actor), Utc::now()).await?;
        Ok(Response::new(read::invoice(&self.pool, id, None).await?))
    }

    async fn issue_credit_note(&self, req: Request<pb::IssueCreditNoteRequest>) -> Reply<pb::CreditNote> {
        let r = req.get_ref();
        let id = uuid("invoice", &r.invoice_id)?;
        let amount: Decimal = r
            .amount
            .parse()
            .map_err(|_| BillingServiceError::Invalid(format!("amount {:?} is not a decimal number", r.amount)))?;
        let key = Some(r.idempotency_key.as_str()).filter(|k| !k.is_empty());
        let note = actions::credit_note(&self.pool, id, amount, &r.reason, &actor(&r.actor), key, Utc::now()).await?;
        let notes = read::credit_notes(&self.pool, None, None, Some(id)).await?;
        let note = notes.into_iter().find(|n| n.id == note.to_string());
        Ok(Response::new(note.ok_or_else(|| BillingServiceError::Internal("issued credit note not found".into()))?))
    }

    async fn get_revenue(&self, _: Request<pb::GetRevenueRequest>) -> Reply<pb::Revenue> {
        let r = self.revenue_at(Utc::now()).await?;
        Ok(Response::new(pb::Revenue {
            period: r.period.to_string(),
            computed_at: Some(reservoir_proto::time::timestamp(r.computed_at)),
            tenants: r.tenants,
            currencies: r
                .currencies
                .iter()
                .map(|c| pb::CurrencyRevenue {
                    currency: c.currency.to_string(),
                    reservations: c.reservations.to_string(),
                    usage: c.usage.to_string(),
                    total: (c.reservations + c.usage).to_string(),
                })
                .collect(),
        }))
    }

    async fn list_credit_notes(&self, req: Request<pb::ListCreditNotesRequest>) -> Reply<pb::ListCreditNotesResponse> {
        let r = req.get_ref();
        let notes = read::credit_notes(
            &self.pool,
            tenant(&r.tenant_id)?.as_deref(),
            period(&r.period)?.as_deref(),
            optional_uuid("invoice", &r.invoice_id)?,
        )
        .await?;
        Ok(Response::new(pb::ListCreditNotesResponse { credit_notes: notes }))
    }

    async fn get_credit_balance(&self, req: Request<pb::GetCreditBalanceRequest>) -> Reply<pb::CreditBalance> {
        let r = req.get_ref();
        let id = tenant(&r.tenant_id)?.ok_or_else(|| BillingServiceError::Invalid("tenant_id is required".into()))?;
        let (mut currency, mut balance) = read::credit_balance(&self.pool, &id).await?;
        if currency.is_empty() {
            // No invoice finalized yet: zero, in the tenant's currency.
            let c = self.peers.tenant_currency(&id).await?;
            currency = c.to_string();
            balance.rescale(c.minor_unit_digits());
        }
        Ok(Response::new(pb::CreditBalance { tenant_id: id, currency, balance: balance.to_string() }))
    }
}
