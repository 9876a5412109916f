//! The admin portal's contracts: the list, filtered, sorted and paged by the
//! contracts service; a new contract for a tenant, quoted before it is
//! reserved; and cancellation, under the term's rules or, with a reason, an
//! operator's override of a committed term.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use reservoir_domain::{ReservationStatus, Term};
use reservoir_proto::v1 as pb;
use serde::Deserialize;

use crate::api::Reservation;
use crate::extract::PathParam;
use crate::portal::admin::chrome;
use crate::portal::order::{self, OrderForm, Ordering, ReserveForm};
use crate::portal::page::{
    Chrome, PAGE_ROWS, PageForm, PageQuery, Pager, STALE_FORM, back_with_notice, error_refusal, html, refusal,
    service_refusal,
};
use crate::portal::session::{AdminUser, csrf_ok};
use crate::state::AppState;

/// A column the list can be sorted by: (query value, heading, wire order).
const SORTS: [(&str, &str, pb::ReservationSort); 5] = [
    ("created", "Created", pb::ReservationSort::CreatedAt),
    ("tenant", "Tenant", pb::ReservationSort::Tenant),
    ("model", "Model", pb::ReservationSort::Model),
    ("rate", "Rate (tokens/s)", pb::ReservationSort::Rate),
    ("starts", "Starts", pb::ReservationSort::StartsAt),
];

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub tenant: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub sort: String,
    #[serde(default)]
    pub dir: String,
    pub page: Option<u32>,
    pub notice: Option<String>,
}

/// A sortable column's heading: its link flips the direction when it is
/// the current order.
pub struct Heading {
    pub label: &'static str,
    pub href: String,
    /// `ascending`/`descending` on the current order's column (aria-sort).
    pub aria_sort: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "portal/admin_contracts.html")]
struct ListPage {
    chrome: Chrome,
    q: ListQuery,
    statuses: Vec<&'static str>,
    headings: Vec<Heading>,
    rows: Vec<Reservation>,
    pager: Pager,
}

fn status_filter(status: &str) -> Result<pb::ReservationStatus, String> {
    if status.is_empty() {
        return Ok(pb::ReservationStatus::Unspecified);
    }
    ReservationStatus::ALL
        .iter()
        .find(|s| s.as_str() == status)
        .map(|s| pb::ReservationStatus::from(*s))
        .ok_or_else(|| format!("unknown status {status:?}"))
}

pub async fn list(State(state): State<AppState>, user: AdminUser, PageQuery(q): PageQuery<ListQuery>) -> Response {
    let status = match status_filter(&q.status) {
        Ok(s) => s,
        Err(message) => return refusal(StatusCode::UNPROCESSABLE_ENTITY, &message),
    };
    let sort_key = if q.sort.is_empty() { "created" } else { q.sort.as_str() };
    let Some(&(_, _, sort)) = SORTS.iter().find(|(key, _, _)| *key == sort_key) else {
        return refusal(StatusCode::UNPROCESSABLE_ENTITY, &format!("unknown sort {:?}", q.sort));
    };
    // Newest first unless asked otherwise; names read best A to Z.
    let ascending = match q.dir.as_str() {
        "asc" => true,
        "desc" => false,
        _ => matches!(sort, pb::ReservationSort::Tenant | pb::ReservationSort::Model),
    };
    let request = pb::ListReservationsRequest {
        tenant_id: q.tenant.trim().to_owned(),
        model: q.model.trim().to_owned(),
        status: status.into(),
        limit: PAGE_ROWS,
        sort: sort.into(),
        ascending,
        offset: Pager::offset(q.page),
        with_total: true,
        ..Default::default()
    };
    let reply = match state.contracts.clone().list_reservations(request).await {
        Ok(reply) => reply.into_inner(),
        Err(status) => return service_refusal(status),
    };
    let rows = match reply.reservations.into_iter().map(Reservation::try_from).collect::<Result<Vec<_>, _>>() {
        Ok(rows) => rows,
        Err(e) => return error_refusal(e),
    };
    let filters = [("tenant", q.tenant.as_str()), ("model", q.model.as_str()), ("status", q.status.as_str())];
    let headings = SORTS
        .iter()
        .map(|&(key, label, _)| {
            let current = key == sort_key;
            let dir = if current && ascending { "desc" } else { "asc" };
            let mut params: Vec<(&str, &str)> = filters.to_vec();
            params.extend([("sort", key), ("dir", dir)]);
            params.retain(|(_, v)| !v.is_empty());
            Heading {
                label,
                href: format!("?{}", serde_urlencoded::to_string(&params).unwrap_or_default()),
                aria_sort: current.then_some(if ascending { "ascending" } else { "descending" }),
            }
        })
        .collect();
    let mut kept = filters.to_vec();
    kept.extend([("sort", q.sort.as_str()), ("dir", q.dir.as_str())]);
    let pager = Pager::new(q.page, reply.total.unwrap_or(0), &kept);
    let page = ListPage {
        chrome: chrome(&user, "Contracts", q.notice.clone()),
        statuses: ReservationStatus::ALL.iter().map(|s| s.as_str()).collect(),
        headings,
        rows,
        pager,
        q,
    };
    html(StatusCode::OK, &page)
}

/// Where an operator orders: any tenant, back to the contracts list.
fn ordering(user: &AdminUser) -> Ordering {
    Ordering { chrome: chrome(user, "Contracts", None), base: "/admin/ui/contracts", tenant: None }
}

/// `/admin/ui/contracts/new`: the order form (a tenant may be given).
pub async fn new(State(state): State<AppState>, user: AdminUser, PageQuery(form): PageQuery<OrderForm>) -> Response {
    order::new_page(&state, ordering(&user), form, None).await
}

/// `/admin/ui/contracts/quote`: the order's price; nothing is reserved yet.
pub async fn quote(State(state): State<AppState>, user: AdminUser, PageQuery(form): PageQuery<OrderForm>) -> Response {
    order::quote_page(&state, ordering(&user), form).await
}

/// Reserves the quoted order; the list then shows it with the result.
pub async fn reserve(
    State(state): State<AppState>,
    user: AdminUser,
    PageForm(form): PageForm<ReserveForm>,
) -> Response {
    if !csrf_ok(&user.csrf, &form.csrf) {
        return refusal(StatusCode::FORBIDDEN, STALE_FORM);
    }
    match order::reserve(&state, ordering(&user), form).await {
        Ok(r) => {
            let notice = format!(
                "Reserved {} tokens/s of {} for {} (contract {})",
                r.rate_tokens_per_s, r.model, r.tenant_id, r.id
            );
            back_with_notice("/admin/ui/contracts", &[("tenant", r.tenant_id.as_str())], &notice)
        }
        Err(refused) => refused,
    }
}

#[derive(Template)]
#[template(path = "portal/admin_contract_cancel.html")]
struct CancelPage {
    chrome: Chrome,
    contract: Reservation,
    committed: bool,
}

/// `/admin/ui/contracts/{id}/cancel`: asks for the reason, and whether a
/// committed term is ended early.
pub async fn cancel_page(State(state): State<AppState>, user: AdminUser, PathParam(id): PathParam<String>) -> Response {
    let found =
        match state.contracts.clone().get_reservation(pb::GetReservationRequest { id, tenant_id: String::new() }).await
        {
            Ok(found) => found.into_inner(),
            Err(status) => return service_refusal(status),
        };
    let contract = match Reservation::try_from(found) {
        Ok(contract) => contract,
        Err(e) => return error_refusal(e),
    };
    let committed = contract.term != Term::Hourly;
    html(StatusCode::OK, &CancelPage { chrome: chrome(&user, "Contracts", None), contract, committed })
}

#[derive(Debug, Deserialize)]
pub struct CancelForm {
    pub csrf: String,
    pub reason: String,
    /// A checkbox: end a committed term early.
    pub override_term: Option<String>,
}

pub async fn cancel(
    State(state): State<AppState>,
    user: AdminUser,
    PathParam(id): PathParam<String>,
    PageForm(form): PageForm<CancelForm>,
) -> Response {
    if !csrf_ok(&user.csrf, &form.csrf) {
        return refusal(StatusCode::FORBIDDEN, STALE_FORM);
    }
    if form.reason.trim().is_empty() {
        return refusal(StatusCode::UNPROCESSABLE_ENTITY, "Say why the contract is cancelled.");
    }
    let request = pb::CancelReservationRequest {
        id,
        tenant_id: String::new(),
        by_admin: form.override_term.is_some(),
        reason: form.reason.trim().to_owned(),
        cancelled_by: user.subject.clone(),
    };
    match state.contracts.clone().cancel_reservation(request).await {
        Ok(cancelled) => {
            let r = cancelled.into_inner();
            let notice = format!("Cancelled contract {} of {}", r.id, r.tenant_id);
            back_with_notice("/admin/ui/contracts", &[("tenant", r.tenant_id.as_str())], &notice)
        }
        Err(status) => service_refusal(status),
    }
}
