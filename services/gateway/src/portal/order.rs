//! Ordering a contract from the portal, the same way on both sides: the
//! order form, its quote with the breakdown (nothing reserved yet), then the
//! reservation, made once however often the form is sent. An operator
//! orders for any tenant; a tenant's console orders for the tenant only.

use askama::Template;
use axum::http::StatusCode;
use axum::response::Response;
use reservoir_domain::{Term, Tier};
use reservoir_proto::time::timestamp;
use reservoir_proto::v1 as pb;
use serde::Deserialize;

use crate::portal::page::{Chrome, html, refusal, service_refusal};
use crate::state::AppState;

/// Who orders and where the forms post.
pub struct Ordering {
    pub chrome: Chrome,
    /// `/admin/ui/contracts` or `/console/contracts`.
    pub base: &'static str,
    /// The tenant a console session orders for; `None` lets an operator
    /// name any tenant.
    pub tenant: Option<String>,
}

/// An order as the form sends it: the fields of the JSON API's reservation
/// request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OrderForm {
    #[serde(default)]
    pub tenant: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub rate: String,
    #[serde(default)]
    pub tier: String,
    #[serde(default)]
    pub term: String,
    /// `YYYY-MM-DDTHH:MM` in UTC (a datetime-local input); now when empty.
    #[serde(default)]
    pub starts_at: String,
    /// A checkbox: present when ticked.
    pub allow_burst: Option<String>,
}

impl OrderForm {
    /// The gRPC order for `tenant` (a console's own) or the form's tenant,
    /// or what is wrong with the form.
    fn order(&self, tenant: Option<&str>) -> Result<pb::QuoteRequest, String> {
        let rate: u32 = self
            .rate
            .trim()
            .parse()
            .ok()
            .filter(|r| *r > 0)
            .ok_or_else(|| "The rate is a whole number of tokens per second, at least 1.".to_owned())?;
        let tier = Tier::ALL
            .iter()
            .find(|t| t.as_str() == self.tier)
            .ok_or_else(|| format!("Unknown tier {:?}.", self.tier))?;
        let term = Term::ALL
            .iter()
            .find(|t| t.as_str() == self.term)
            .ok_or_else(|| format!("Unknown term {:?}.", self.term))?;
        let starts_at = match self.starts_at.trim() {
            "" => None,
            text => Some(
                chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
                    .map_err(|_| format!("The start {text:?} is not a date and time (YYYY-MM-DDTHH:MM, UTC)."))?
                    .and_utc(),
            ),
        };
        Ok(pb::QuoteRequest {
            tenant_id: tenant.unwrap_or(self.tenant.trim()).to_owned(),
            model: self.model.trim().to_owned(),
            rate_tokens_per_s: rate,
            tier: pb::Tier::from(*tier).into(),
            term: pb::Term::from(*term).into(),
            starts_at: starts_at.map(timestamp),
            ends_at: None,
        })
    }
}

#[derive(Template)]
#[template(path = "portal/order_new.html")]
struct NewPage {
    chrome: Chrome,
    base: &'static str,
    /// Whether the form asks for the tenant (operators) or not (a console).
    asks_tenant: bool,
    form: OrderForm,
    models: Vec<String>,
    tiers: Vec<&'static str>,
    terms: Vec<&'static str>,
    problem: Option<String>,
}

/// The order form, with `problem` said above it when there is one.
pub async fn new_page(state: &AppState, ordering: Ordering, form: OrderForm, problem: Option<String>) -> Response {
    let models = match state.contracts.clone().list_models(pb::ListModelsRequest {}).await {
        Ok(reply) => reply.into_inner().models.into_iter().map(|m| m.id).collect(),
        Err(status) => return service_refusal(status),
    };
    let status = if problem.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let page = NewPage {
        chrome: ordering.chrome,
        base: ordering.base,
        asks_tenant: ordering.tenant.is_none(),
        form,
        models,
        tiers: Tier::ALL.iter().map(|t| t.as_str()).collect(),
        terms: Term::ALL.iter().map(|t| t.as_str()).collect(),
        problem,
    };
    html(status, &page)
}

#[derive(Template)]
#[template(path = "portal/order_quote.html")]
struct QuotePage {
    chrome: Chrome,
    base: &'static str,
    tenant: String,
    form: OrderForm,
    quote: reservoir_pricing::Quote,
    /// Makes a resubmitted form answer the same reservation.
    idempotency_key: String,
}

/// The order's price with its breakdown, and the button that reserves it.
pub async fn quote_page(state: &AppState, ordering: Ordering, form: OrderForm) -> Response {
    let order = match form.order(ordering.tenant.as_deref()) {
        Ok(order) => order,
        Err(problem) => return new_page(state, ordering, form, Some(problem)).await,
    };
    let tenant = order.tenant_id.clone();
    let quote = match state.contracts.clone().quote(order).await {
        Ok(reply) => reply.into_inner().quote.map(reservoir_pricing::Quote::try_from),
        Err(status) => return new_page(state, ordering, form, Some(status.message().to_owned())).await,
    };
    let Some(Ok(quote)) = quote else {
        return refusal(StatusCode::BAD_GATEWAY, "The contracts service answered without a readable quote.");
    };
    let page = QuotePage {
        chrome: ordering.chrome,
        base: ordering.base,
        tenant,
        form,
        quote,
        idempotency_key: uuid::Uuid::new_v4().to_string(),
    };
    html(StatusCode::OK, &page)
}

#[derive(Debug, Deserialize)]
pub struct ReserveForm {
    pub csrf: String,
    pub idempotency_key: String,
    #[serde(flatten)]
    pub order: OrderForm,
}

/// Reserves the quoted order (the caller has checked the form's CSRF
/// token); a refusal is the order form again with the service's message.
pub async fn reserve(state: &AppState, ordering: Ordering, form: ReserveForm) -> Result<pb::Reservation, Response> {
    let order = match form.order.order(ordering.tenant.as_deref()) {
        Ok(order) => order,
        Err(problem) => return Err(new_page(state, ordering, form.order, Some(problem)).await),
    };
    let request = pb::CreateReservationRequest {
        order: Some(order),
        idempotency_key: form.idempotency_key.clone(),
        allow_burst: Some(form.order.allow_burst.is_some()),
    };
    match state.contracts.clone().create_reservation(request).await {
        Ok(created) => Ok(created.into_inner()),
        Err(status) => Err(new_page(state, ordering, form.order, Some(status.message().to_owned())).await),
    }
}
