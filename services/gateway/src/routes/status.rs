//! The public status page (no login): per model, the pool's current state,
//! uptime over 24 hours, 7, 30 and 90 days, a 90-day bar of daily uptime,
//! maintenance, and pool incidents with their timelines. As HTML that reads
//! well on a phone, as JSON, and as an Atom feed of the incidents. Nothing
//! on it names a tenant or shows a tenant's figures: it is fed by the pool
//! windows only.

use askama::Template;
use atom_syndication::{Content, Entry, Feed, FixedDateTime, Link, Person, Text};
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use reservoir_proto::time::instant;
use reservoir_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::routes::sla::Incident;
use crate::state::AppState;

/// Uptime of the pool (windows not in outage / windows measured, maintenance
/// left out), decimal fractions; absent when nothing was measured.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Uptime {
    pub last_24h: Option<String>,
    pub last_7d: Option<String>,
    pub last_30d: Option<String>,
    pub last_90d: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DailyUptime {
    pub day: DateTime<Utc>,
    /// Absent when the day has no measured window.
    pub uptime: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PublicMaintenance {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub note: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelStatus {
    pub model: String,
    /// `operational`, `degraded`, `outage`, `maintenance` or `unknown` (nothing measured yet).
    pub state: String,
    pub uptime: Uptime,
    /// 90 days, oldest first.
    pub daily: Vec<DailyUptime>,
    /// Current and upcoming.
    pub maintenance: Vec<PublicMaintenance>,
    /// Pool incidents of the last 90 days, newest first.
    pub incidents: Vec<Incident>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatusPage {
    pub generated_at: DateTime<Utc>,
    pub models: Vec<ModelStatus>,
}

fn fraction(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn at(t: Option<&prost_types::Timestamp>) -> DateTime<Utc> {
    t.and_then(instant).unwrap_or_default()
}

impl From<pb::StatusPage> for StatusPage {
    fn from(page: pb::StatusPage) -> Self {
        let models = page
            .models
            .into_iter()
            .map(|m| ModelStatus {
                state: match m.state() {
                    pb::PoolState::Operational => "operational",
                    pb::PoolState::Degraded => "degraded",
                    pb::PoolState::Outage => "outage",
                    pb::PoolState::Maintenance => "maintenance",
                    _ => "unknown",
                }
                .into(),
                uptime: Uptime {
                    last_24h: fraction(m.uptime_24h),
                    last_7d: fraction(m.uptime_7d),
                    last_30d: fraction(m.uptime_30d),
                    last_90d: fraction(m.uptime_90d),
                },
                daily: m
                    .daily
                    .iter()
                    .map(|d| DailyUptime { day: at(d.day.as_ref()), uptime: fraction(d.uptime.clone()) })
                    .collect(),
                maintenance: m
                    .maintenance
                    .iter()
                    .map(|x| PublicMaintenance {
                        from: at(x.from.as_ref()),
                        to: at(x.to.as_ref()),
                        note: x.note.clone(),
                    })
                    .collect(),
                incidents: m
                    .incidents
                    .into_iter()
                    .map(|i| {
                        // Pool incidents name no tenant; make sure of it.
                        let mut i = Incident::from(i);
                        i.tenant_id = None;
                        i.contract_id = None;
                        i
                    })
                    .collect(),
                model: m.model,
            })
            .collect();
        StatusPage { generated_at: at(page.generated_at.as_ref()), models }
    }
}

/// How long the status page's data is reused.
const STATUS_FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(10);

async fn page(state: &AppState) -> ApiResult<StatusPage> {
    let cached = state.status_cache.lock().ok().and_then(|c| c.clone());
    if let Some((at, page)) = cached
        && at.elapsed() < STATUS_FRESH_FOR
    {
        return Ok(page.into());
    }
    let fresh = state.sla.clone().get_status(pb::GetStatusRequest {}).await?.into_inner();
    if let Ok(mut cache) = state.status_cache.lock() {
        *cache = Some((std::time::Instant::now(), fresh.clone()));
    }
    Ok(fresh.into())
}

/// The status page's data as JSON.
#[utoipa::path(get, path = "/status.json", tag = "status",
    responses(
        (status = 200, description = "Per model", body = StatusPage),
        (status = 503, description = "The SLA service is unavailable", body = ErrorBody),
    ))]
pub async fn status_json(State(state): State<AppState>) -> ApiResult<Json<StatusPage>> {
    Ok(Json(page(&state).await?))
}

/// Percent with up to three decimals, for people: "99.965%".
fn percent(fraction: &Option<String>) -> String {
    match fraction.as_deref().and_then(|f| f.parse::<rust_decimal::Decimal>().ok()) {
        Some(f) => format!("{}%", (f * rust_decimal::Decimal::ONE_HUNDRED).round_dp(3).normalize()),
        None => "no data".into(),
    }
}

struct Bar {
    day: String,
    uptime: String,
    class: &'static str,
}

struct ModelView {
    model: String,
    state: String,
    uptimes: Vec<(&'static str, String)>,
    bars: Vec<Bar>,
    maintenance: Vec<PublicMaintenance>,
    incidents: Vec<Incident>,
}

#[derive(Template)]
#[template(path = "status.html")]
struct StatusHtml {
    generated_at: String,
    models: Vec<ModelView>,
}

/// The public status page (HTML).
#[utoipa::path(get, path = "/status", tag = "status",
    responses(
        (status = 200, description = "The page", content_type = "text/html"),
        (status = 503, description = "The SLA service is unavailable", body = ErrorBody),
    ))]
pub async fn status_html(State(state): State<AppState>) -> ApiResult<Html<String>> {
    let page = page(&state).await?;
    let models = page
        .models
        .into_iter()
        .map(|m| ModelView {
            uptimes: vec![
                ("24 hours", percent(&m.uptime.last_24h)),
                ("7 days", percent(&m.uptime.last_7d)),
                ("30 days", percent(&m.uptime.last_30d)),
                ("90 days", percent(&m.uptime.last_90d)),
            ],
            bars: m
                .daily
                .iter()
                .map(|d| {
                    let value = d.uptime.as_deref().and_then(|u| u.parse::<rust_decimal::Decimal>().ok());
                    let class = match value {
                        None => "none",
                        Some(v) if v >= rust_decimal::Decimal::new(999, 3) => "up",
                        Some(v) if v >= rust_decimal::Decimal::new(95, 2) => "partial",
                        Some(_) => "down",
                    };
                    Bar { day: d.day.format("%Y-%m-%d").to_string(), uptime: percent(&d.uptime), class }
                })
                .collect(),
            model: m.model,
            state: m.state,
            maintenance: m.maintenance,
            incidents: m.incidents,
        })
        .collect();
    let html = StatusHtml { generated_at: page.generated_at.format("%Y-%m-%d %H:%M UTC").to_string(), models };
    html.render().map(Html).map_err(|e| {
        tracing::error!(error = %e, "status page template");
        ApiError::internal()
    })
}

fn fixed(t: DateTime<Utc>) -> FixedDateTime {
    t.fixed_offset()
}

/// Pool incidents as an Atom feed: one entry per incident, updated with its timeline.
#[utoipa::path(get, path = "/status/feed.atom", tag = "status",
    responses(
        (status = 200, description = "Atom 1.0", content_type = "application/atom+xml"),
        (status = 503, description = "The SLA service is unavailable", body = ErrorBody),
    ))]
pub async fn status_feed(State(state): State<AppState>) -> ApiResult<Response> {
    let page = page(&state).await?;
    let mut entries = Vec::new();
    for model in &page.models {
        for incident in &model.incidents {
            let updated = incident.timeline.iter().map(|u| u.at).max().unwrap_or(incident.started_at);
            let reasons: Vec<String> = incident.reasons.iter().map(|r| r.replace('_', " ")).collect();
            let mut body = format!("{} pool: {}.", model.model, reasons.join(", "));
            for u in &incident.timeline {
                body.push_str(&format!("\n{} ({}): {}", u.at.format("%Y-%m-%d %H:%M UTC"), u.kind, u.message));
            }
            if let Some(pm) = &incident.postmortem {
                body.push_str(&format!("\nPostmortem: {pm}"));
            }
            let mut entry = Entry::default();
            entry.set_id(format!("urn:reservoir:incident:{}", incident.id));
            entry.set_title(Text::plain(format!("{} {}: {}", model.model, incident.status, reasons.join(", "))));
            entry.set_updated(fixed(updated));
            entry.set_published(Some(fixed(incident.started_at)));
            let mut content = Content::default();
            content.set_content_type(Some("text".to_owned()));
            content.set_value(Some(body));
            entry.set_content(Some(content));
            entries.push(entry);
        }
    }
    entries.sort_by(|a, b| b.updated().cmp(a.updated()));
    let mut feed = Feed::default();
    feed.set_id("urn:reservoir:status");
    feed.set_title(Text::plain("Reservoir status: pool incidents"));
    feed.set_updated(fixed(page.generated_at));
    feed.set_authors(vec![Person { name: "Reservoir".into(), ..Person::default() }]);
    feed.set_links(vec![Link { href: "/status".into(), rel: "alternate".into(), ..Link::default() }]);
    feed.set_entries(entries);
    Ok(([(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")], feed.to_string()).into_response())
}
