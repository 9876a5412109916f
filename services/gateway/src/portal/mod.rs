//! The portal: server-rendered pages for operators (`/admin/ui/...`) and
//! tenants (`/console/...`), signed in with a session cookie. Pages call the
//! same services as the JSON API, and hold no SQL.

pub mod admin;
pub mod console;
pub mod meter;
pub mod order;
pub mod page;
pub mod pool;
pub mod session;
pub mod tenant_view;
pub mod tokens;
pub mod usage;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

/// Every page of the portal.
pub fn routes() -> Router<AppState> {
    use admin::{billing, capacity, catalog, contracts, overview, sla, tenants};
    Router::new()
        .route("/console", get(console::home))
        .route("/console/contracts", post(console::reserve))
        .route("/console/contracts/new", get(console::new_contract))
        .route("/console/contracts/quote", get(console::quote))
        .route("/console/meters", get(console::meters))
        .route("/console/usage", get(console::usage))
        .route("/console/sla", get(console::sla))
        .route("/console/invoices", get(console::invoices))
        .route("/console/sign-in", get(console::sign_in_page).post(console::sign_in))
        .route("/console/sign-out", post(console::sign_out))
        .route("/console/invoices/{file}", get(console::invoice_file))
        .route("/console/tokens", get(tokens::page).post(tokens::issue))
        .route("/console/tokens/{id}/revoke", get(tokens::revoke_page).post(tokens::revoke))
        .route("/admin", get(admin::root))
        .route("/admin/sign-in", get(admin::sign_in_page).post(admin::sign_in))
        .route("/admin/sign-out", post(admin::sign_out))
        .route("/admin/ui", get(overview::overview))
        .route("/admin/ui/tenants", get(tenants::list))
        .route("/admin/ui/tenants/{id}", get(tenants::show))
        .route("/admin/ui/contracts", get(contracts::list).post(contracts::reserve))
        .route("/admin/ui/contracts/new", get(contracts::new))
        .route("/admin/ui/contracts/quote", get(contracts::quote))
        .route("/admin/ui/contracts/{id}/cancel", get(contracts::cancel_page).post(contracts::cancel))
        .route("/admin/ui/capacity", get(capacity::page).post(capacity::change))
        .route("/admin/ui/capacity/confirm", get(capacity::confirm))
        .route("/admin/ui/sla", get(sla::page))
        .route("/admin/ui/sla/updates", post(sla::add_update))
        .route("/admin/ui/sla/maintenance", post(sla::schedule_maintenance))
        .route("/admin/ui/sla/maintenance/{id}/cancel", post(sla::cancel_maintenance))
        .route("/admin/ui/sla/close", get(sla::close_page).post(sla::close))
        .route("/admin/ui/catalog", get(catalog::page).post(catalog::publish))
        .route("/admin/ui/catalog/review", post(catalog::review))
        .route("/admin/ui/billing", get(billing::billing))
        .route("/admin/ui/billing/confirm", get(billing::confirm))
        .route("/admin/ui/billing/do", post(billing::act))
        .route("/admin/ui/billing/invoices/{file}", get(billing::invoice_file))
        .route("/admin/ui/billing/exports/{what}", get(billing::export))
}
