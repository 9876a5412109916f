//! The admin portal's SLA page: incidents with their timelines (and a
//! public update posted to a pool's), maintenance windows (scheduled and
//! cancelled here), and a month's credits, with closing the month confirmed
//! first since it issues them.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use reservoir_proto::time::timestamp;
use reservoir_proto::v1 as pb;
use serde::Deserialize;

use crate::extract::PathParam;
use crate::portal::admin::chrome;
use crate::portal::page::{Chrome, PageForm, PageQuery, STALE_FORM, back_with_notice, html, refusal, service_refusal};
use crate::portal::session::{AdminUser, csrf_ok};
use crate::portal::tenant_view::period_or_current;
use crate::routes::sla::{Credit, Incident};
use crate::routes::sla_admin::Maintenance;
use crate::state::AppState;

/// Incidents shown, newest first.
const INCIDENTS_SHOWN: u32 = 100;

#[derive(Debug, Default, Deserialize)]
pub struct SlaQuery {
    pub period: Option<String>,
    pub notice: Option<String>,
}

#[derive(Template)]
#[template(path = "portal/admin_sla.html")]
struct SlaPage {
    chrome: Chrome,
    period: String,
    incidents: Vec<Incident>,
    maintenance: Vec<Maintenance>,
    credits: Vec<Credit>,
    models: Vec<String>,
}

fn back(period: &str, notice: &str) -> Response {
    back_with_notice("/admin/ui/sla", &[("period", period)], notice)
}

pub async fn page(State(state): State<AppState>, user: AdminUser, PageQuery(q): PageQuery<SlaQuery>) -> Response {
    let period = match period_or_current(q.period.as_deref(), Utc::now()) {
        Ok(p) => p.to_string(),
        Err(message) => return refusal(StatusCode::UNPROCESSABLE_ENTITY, &message),
    };
    let (mut sla, mut sla_maintenance, mut sla_credits) = (state.sla.clone(), state.sla.clone(), state.sla.clone());
    let mut contracts = state.contracts.clone();
    let incidents = sla.list_incidents(pb::ListIncidentsRequest { limit: INCIDENTS_SHOWN, ..Default::default() });
    let maintenance = sla_maintenance.list_maintenance(pb::ListMaintenanceRequest { model: String::new() });
    let credits = sla_credits.list_credits(pb::ListCreditsRequest { tenant_id: String::new(), period: period.clone() });
    let models = contracts.list_models(pb::ListModelsRequest {});
    let (incidents, maintenance, credits, models) = tokio::join!(incidents, maintenance, credits, models);
    let page = SlaPage {
        chrome: chrome(&user, "SLA", q.notice),
        incidents: match incidents {
            Ok(r) => r.into_inner().incidents.into_iter().map(Incident::from).collect(),
            Err(status) => return service_refusal(status),
        },
        maintenance: match maintenance {
            Ok(r) => r.into_inner().maintenance.into_iter().map(Maintenance::from).collect(),
            Err(status) => return service_refusal(status),
        },
        credits: match credits {
            Ok(r) => r.into_inner().credits.into_iter().map(Credit::from).collect(),
            Err(status) => return service_refusal(status),
        },
        models: match models {
            Ok(r) => r.into_inner().models.into_iter().map(|m| m.id).collect(),
            Err(status) => return service_refusal(status),
        },
        period,
    };
    html(StatusCode::OK, &page)
}

#[derive(Debug, Deserialize)]
pub struct UpdateForm {
    pub csrf: String,
    pub incident_id: String,
    pub message: String,
    pub period: String,
}

/// Posts a public update to a pool incident (the status page shows it).
pub async fn add_update(
    State(state): State<AppState>,
    user: AdminUser,
    PageForm(form): PageForm<UpdateForm>,
) -> Response {
    if !csrf_ok(&user.csrf, &form.csrf) {
        return refusal(StatusCode::FORBIDDEN, STALE_FORM);
    }
    let request =
        pb::AddIncidentUpdateRequest { incident_id: form.incident_id, message: form.message, author: user.subject };
    match state.sla.clone().add_incident_update(request).await {
        Ok(_) => back(&form.period, "Update posted"),
        Err(status) => service_refusal(status),
    }
}

#[derive(Debug, Deserialize)]
pub struct MaintenanceForm {
    pub csrf: String,
    pub model: String,
    /// `YYYY-MM-DDTHH:MM`, UTC.
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub note: String,
    pub period: String,
}

fn utc_minute(field: &str, text: &str) -> Result<chrono::DateTime<Utc>, String> {
    chrono::NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%dT%H:%M")
        .map(|t| t.and_utc())
        .map_err(|_| format!("{field} {text:?} is not a date and time (YYYY-MM-DDTHH:MM, UTC)."))
}

pub async fn schedule_maintenance(
    State(state): State<AppState>,
    user: AdminUser,
    PageForm(form): PageForm<MaintenanceForm>,
) -> Response {
    if !csrf_ok(&user.csrf, &form.csrf) {
        return refusal(StatusCode::FORBIDDEN, STALE_FORM);
    }
    let (from, to) = match (utc_minute("From", &form.from), utc_minute("To", &form.to)) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(problem), _) | (_, Err(problem)) => return refusal(StatusCode::UNPROCESSABLE_ENTITY, &problem),
    };
    let request = pb::CreateMaintenanceRequest {
        model: form.model.clone(),
        from: Some(timestamp(from)),
        to: Some(timestamp(to)),
        note: form.note,
        created_by: user.subject,
    };
    match state.sla.clone().create_maintenance(request).await {
        Ok(_) => back(&form.period, &format!("Maintenance of {} scheduled", form.model)),
        Err(status) => service_refusal(status),
    }
}

#[derive(Debug, Deserialize)]
pub struct CsrfPeriodForm {
    pub csrf: String,
    pub period: String,
}

pub async fn cancel_maintenance(
    State(state): State<AppState>,
    user: AdminUser,
    PathParam(id): PathParam<String>,
    PageForm(form): PageForm<CsrfPeriodForm>,
) -> Response {
    if !csrf_ok(&user.csrf, &form.csrf) {
        return refusal(StatusCode::FORBIDDEN, STALE_FORM);
    }
    match state.sla.clone().cancel_maintenance(pb::CancelMaintenanceRequest { id }).await {
        Ok(_) => back(&form.period, "Maintenance cancelled"),
        Err(status) => service_refusal(status),
    }
}

#[derive(Debug, Deserialize)]
pub struct CloseQuery {
    pub period: String,
}

#[derive(Template)]
#[template(path = "portal/admin_sla_close.html")]
struct ClosePage {
    chrome: Chrome,
    period: String,
}

/// Asks before closing a month: closing issues its credits.
pub async fn close_page(user: AdminUser, PageQuery(q): PageQuery<CloseQuery>) -> Response {
    html(StatusCode::OK, &ClosePage { chrome: chrome(&user, "SLA", None), period: q.period })
}

pub async fn close(
    State(state): State<AppState>,
    user: AdminUser,
    PageForm(form): PageForm<CsrfPeriodForm>,
) -> Response {
    if !csrf_ok(&user.csrf, &form.csrf) {
        return refusal(StatusCode::FORBIDDEN, STALE_FORM);
    }
    let request = pb::ClosePeriodRequest { period: form.period.clone(), closed_by: user.subject };
    match state.sla.clone().close_period(request).await {
        Ok(r) => {
            let r = r.into_inner();
            let notice = format!(
                "{} closed: {} contracts, {} credits issued now, {} in all",
                r.period, r.contracts, r.credits_issued_now, r.credits_total
            );
            back(&form.period, &notice)
        }
        Err(status) => service_refusal(status),
    }
}
