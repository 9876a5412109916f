//! The admin portal's overview: every model's pool (capacity, on sale,
//! reserved and used, now and over the last day and month), reservations
//! by tier, the month's revenue so far, and the incidents open now.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use reservoir_proto::enums::tier_from_pb;
use reservoir_proto::v1 as pb;

use crate::portal::admin::chrome;
use crate::portal::page::{Chrome, PageQuery, html, minute, service_refusal};
use crate::portal::pool::{self, LAST_DAY, LAST_MONTH, PoolView};
use crate::portal::session::AdminUser;
use crate::routes::sla::Incident;
use crate::state::AppState;

/// Reserved throughput of one model and tier, active now.
pub struct TierRow {
    pub model: String,
    pub tier: &'static str,
    pub contracts: u64,
    pub rate: u64,
}

#[derive(Template)]
#[template(path = "portal/admin_overview.html")]
struct OverviewPage {
    chrome: Chrome,
    pools: Vec<PoolView>,
    tiers: Vec<TierRow>,
    incidents: Vec<Incident>,
    revenue: pb::Revenue,
    /// When the revenue figure was computed, as the page shows it.
    revenue_as_of: String,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct NoticeQuery {
    pub notice: Option<String>,
}

pub async fn overview(
    State(state): State<AppState>,
    user: AdminUser,
    PageQuery(q): PageQuery<NoticeQuery>,
) -> Response {
    let pools = pool::gather(&state, &[LAST_DAY, LAST_MONTH]);
    let mut contracts = state.contracts.clone();
    let tiers = contracts.summarize_reservations(pb::SummarizeReservationsRequest { active_at: None });
    let mut sla = state.sla.clone();
    let incidents = sla.list_incidents(pb::ListIncidentsRequest {
        status: pb::IncidentStatus::Open.into(),
        limit: 100,
        ..Default::default()
    });
    let mut billing = state.billing.clone();
    let revenue = billing.get_revenue(pb::GetRevenueRequest {});
    let (pools, tiers, incidents, revenue) = tokio::join!(pools, tiers, incidents, revenue);
    let pools = match pools {
        Ok(pools) => pools,
        Err(refused) => return refused,
    };
    let tiers = match tiers {
        Ok(reply) => reply
            .into_inner()
            .rows
            .into_iter()
            .map(|r| TierRow {
                tier: tier_from_pb("tier", r.tier).map(|t| t.as_str()).unwrap_or("unknown"),
                model: r.model,
                contracts: r.contracts,
                rate: r.rate_tokens_per_s,
            })
            .collect(),
        Err(status) => return service_refusal(status),
    };
    let incidents = match incidents {
        Ok(reply) => reply.into_inner().incidents.into_iter().map(Incident::from).collect(),
        Err(status) => return service_refusal(status),
    };
    let revenue = match revenue {
        Ok(reply) => reply.into_inner(),
        Err(status) => return service_refusal(status),
    };
    let revenue_as_of = minute(revenue.computed_at.as_ref());
    let page =
        OverviewPage { chrome: chrome(&user, "Overview", q.notice), pools, tiers, incidents, revenue, revenue_as_of };
    html(StatusCode::OK, &page)
}
