//! The admin portal's tenants: a searchable, paged list, and one tenant's
//! page with its contracts, usage, SLA report, credits, invoices and credit
//! balance.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use reservoir_proto::v1 as pb;
use serde::Deserialize;

use crate::api::Tenant;
use crate::extract::PathParam;
use crate::portal::admin::chrome;
use crate::portal::page::{Chrome, PAGE_ROWS, PageQuery, Pager, html, refusal, service_refusal};
use crate::portal::session::AdminUser;
use crate::portal::tenant_view::{self, TenantView};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub q: String,
    pub page: Option<u32>,
}

#[derive(Template)]
#[template(path = "portal/admin_tenants.html")]
struct ListPage {
    chrome: Chrome,
    q: String,
    tenants: Vec<Tenant>,
    pager: Pager,
}

pub async fn list(State(state): State<AppState>, user: AdminUser, PageQuery(q): PageQuery<ListQuery>) -> Response {
    let request =
        pb::ListTenantsRequest { search: q.q.trim().to_owned(), limit: PAGE_ROWS, offset: Pager::offset(q.page) };
    let reply = match state.contracts.clone().list_tenants(request).await {
        Ok(reply) => reply.into_inner(),
        Err(status) => return service_refusal(status),
    };
    let page = ListPage {
        chrome: chrome(&user, "Tenants", None),
        pager: Pager::new(q.page, reply.total, &[("q", q.q.as_str())]),
        tenants: reply.tenants.into_iter().map(Tenant::from).collect(),
        q: q.q,
    };
    html(StatusCode::OK, &page)
}

#[derive(Debug, Default, Deserialize)]
pub struct TenantQuery {
    pub period: Option<String>,
}

#[derive(Template)]
#[template(path = "portal/admin_tenant.html")]
struct TenantPage {
    chrome: Chrome,
    view: TenantView,
}

/// `/admin/ui/tenants/{id}?period=YYYY-MM` (the current month by default).
pub async fn show(
    State(state): State<AppState>,
    user: AdminUser,
    PathParam(id): PathParam<String>,
    PageQuery(q): PageQuery<TenantQuery>,
) -> Response {
    let period = match tenant_view::period_or_current(q.period.as_deref(), Utc::now()) {
        Ok(p) => p,
        Err(message) => return refusal(StatusCode::UNPROCESSABLE_ENTITY, &message),
    };
    // An unknown tenant is a 404 here, not an empty page.
    if let Err(status) = state.contracts.clone().get_tenant(pb::GetTenantRequest { id: id.clone() }).await {
        return service_refusal(status);
    }
    match tenant_view::gather(&state, &id, period, "/admin/ui/billing/invoices/").await {
        Ok(view) => html(StatusCode::OK, &TenantPage { chrome: chrome(&user, "Tenants", None), view }),
        Err(refused) => refused,
    }
}
