//! The admin portal's catalog: the prices and tiers in force, shown as
//! tables, and an edit that is reviewed (parsed and checked, shown as the
//! same tables) before it is published as a new version. Published
//! versions never change, so invoices keep the prices they were made with.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use reservoir_pricing::Catalog;
use reservoir_proto::v1 as pb;
use serde::Deserialize;

use crate::api::CatalogVersion;
use crate::portal::admin::chrome;
use crate::portal::admin::overview::NoticeQuery;
use crate::portal::page::{
    Chrome, PageForm, PageQuery, STALE_FORM, back_with_notice, error_refusal, html, refusal, service_refusal,
};
use crate::portal::session::{AdminUser, csrf_ok};
use crate::state::AppState;

/// Most bytes of a catalog document the form takes.
const DOCUMENT_BYTES_MAX: usize = 256 * 1024;

/// One row of a model's price tables, as the page lists them.
pub struct PriceRow {
    /// The table's name on its first row only.
    pub table: &'static str,
    pub up_to: Option<rust_decimal::Decimal>,
    pub unit_price: rust_decimal::Decimal,
    pub flat_fee: rust_decimal::Decimal,
}

/// Each model's three tables as rows, in model order.
fn price_rows(catalog: &Catalog) -> Vec<(String, Vec<PriceRow>)> {
    catalog
        .models
        .iter()
        .map(|(model, prices)| {
            let tables = [
                ("reservation", &prices.reservation),
                ("burst", &prices.on_demand_per_million),
                ("spot", &prices.spot_per_million),
            ];
            let rows = tables
                .into_iter()
                .flat_map(|(name, table)| {
                    table.tiers.iter().enumerate().map(move |(i, t)| PriceRow {
                        table: if i == 0 { name } else { "" },
                        up_to: t.up_to,
                        unit_price: t.unit_price,
                        flat_fee: t.flat_fee,
                    })
                })
                .collect();
            (model.to_string(), rows)
        })
        .collect()
}

#[derive(Template)]
#[template(path = "portal/admin_catalog.html")]
struct CatalogPage {
    chrome: Chrome,
    current: CatalogVersion,
    catalog: Catalog,
    prices: Vec<(String, Vec<PriceRow>)>,
    /// The text in the editor: the current catalog, or the rejected edit.
    document: String,
    problem: Option<String>,
}

async fn current(state: &AppState) -> Result<CatalogVersion, Response> {
    let reply = state.contracts.clone().get_catalog(pb::GetCatalogRequest { version: 0 }).await;
    let catalog = reply.map_err(service_refusal)?.into_inner();
    crate::routes::tenant::with_weights(state, catalog).await.map_err(error_refusal)
}

async fn catalog_page(state: &AppState, chrome: Chrome, edit: Option<(String, String)>) -> Response {
    let current = match current(state).await {
        Ok(current) => current,
        Err(refused) => return refused,
    };
    let (document, problem, status) = match edit {
        Some((document, problem)) => (document, Some(problem), StatusCode::UNPROCESSABLE_ENTITY),
        None => {
            let mut shown = current.catalog.clone();
            shown.version = 0;
            (serde_json::to_string_pretty(&shown).unwrap_or_default(), None, StatusCode::OK)
        }
    };
    let catalog = current.catalog.clone();
    let prices = price_rows(&catalog);
    html(status, &CatalogPage { chrome, current, catalog, prices, document, problem })
}

pub async fn page(State(state): State<AppState>, user: AdminUser, PageQuery(q): PageQuery<NoticeQuery>) -> Response {
    catalog_page(&state, chrome(&user, "Catalog", q.notice), None).await
}

#[derive(Debug, Deserialize)]
pub struct DocumentForm {
    pub csrf: String,
    pub document: String,
}

/// The edited document as a catalog, or what is wrong with it.
fn read(document: &str) -> Result<Catalog, String> {
    if document.len() > DOCUMENT_BYTES_MAX {
        return Err(format!("The document is over {} KiB.", DOCUMENT_BYTES_MAX / 1024));
    }
    let catalog: Catalog = serde_json::from_str(document).map_err(|e| format!("Not a catalog: {e}"))?;
    catalog.validate().map_err(|e| e.to_string())?;
    Ok(catalog)
}

#[derive(Template)]
#[template(path = "portal/admin_catalog_review.html")]
struct ReviewPage {
    chrome: Chrome,
    catalog: Catalog,
    prices: Vec<(String, Vec<PriceRow>)>,
    next_version: i64,
    document: String,
}

/// The sent form's catalog, once its CSRF token and document are good;
/// else the refusal, or the editor again with what is wrong.
async fn checked(state: &AppState, user: &AdminUser, form: &DocumentForm) -> Result<Catalog, Response> {
    if !csrf_ok(&user.csrf, &form.csrf) {
        return Err(refusal(StatusCode::FORBIDDEN, STALE_FORM));
    }
    match read(&form.document) {
        Ok(catalog) => Ok(catalog),
        Err(problem) => {
            Err(catalog_page(state, chrome(user, "Catalog", None), Some((form.document.clone(), problem))).await)
        }
    }
}

/// Shows the edit as it would be published, with the button that does it.
pub async fn review(
    State(state): State<AppState>,
    user: AdminUser,
    PageForm(form): PageForm<DocumentForm>,
) -> Response {
    let catalog = match checked(&state, &user, &form).await {
        Ok(catalog) => catalog,
        Err(refused) => return refused,
    };
    let next_version = match current(&state).await {
        Ok(current) => current.version + 1,
        Err(refused) => return refused,
    };
    let prices = price_rows(&catalog);
    let page =
        ReviewPage { chrome: chrome(&user, "Catalog", None), catalog, prices, next_version, document: form.document };
    html(StatusCode::OK, &page)
}

pub async fn publish(
    State(state): State<AppState>,
    user: AdminUser,
    PageForm(form): PageForm<DocumentForm>,
) -> Response {
    let catalog = match checked(&state, &user, &form).await {
        Ok(catalog) => catalog,
        Err(refused) => return refused,
    };
    let request = pb::PublishCatalogRequest {
        document: Some(pb::CatalogDocument::from(&catalog)),
        published_by: user.subject.clone(),
    };
    match state.contracts.clone().publish_catalog(request).await {
        Ok(published) => {
            let notice = format!("Published catalog version {}", published.into_inner().version);
            back_with_notice("/admin/ui/catalog", &[], &notice)
        }
        Err(status) => {
            catalog_page(&state, chrome(&user, "Catalog", None), Some((form.document, status.message().to_owned())))
                .await
        }
    }
}
