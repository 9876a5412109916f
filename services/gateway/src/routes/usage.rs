//! A tenant's own usage, from metering.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use reservoir_proto::enums::class_from_pb;
use reservoir_proto::time::{instant, timestamp};
use reservoir_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::answered;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::QueryParams;
use crate::state::{AppState, AuthTenant};

/// Longest window one usage query covers.
const USAGE_WINDOW_MAX_DAYS: i64 = 400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Day,
    Class,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Start (RFC 3339, inclusive); the start of the current month (UTC) when omitted.
    pub from: Option<DateTime<Utc>>,
    /// End (RFC 3339, exclusive); now when omitted.
    pub to: Option<DateTime<Utc>>,
    /// `class` (default) or `day`.
    pub group_by: Option<GroupBy>,
}

/// Usage of one group.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsageRow {
    /// Midnight UTC of the day (group_by=day).
    pub day: Option<DateTime<Utc>>,
    /// `reserved`, `burst` or `spot` (group_by=class).
    pub class: Option<String>,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub cached_prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Weighted tokens, exact decimal string.
    pub weighted_tokens: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub group_by: GroupBy,
    pub rows: Vec<UsageRow>,
}

fn month_start(now: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0).single().unwrap_or(now)
}

/// The tenant's usage over a window, by class or by day.
#[utoipa::path(get, path = "/v1/usage", tag = "usage",
    params(UsageQuery),
    responses(
        (status = 200, description = "Usage per group", body = Usage),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not a tenant token", body = ErrorBody),
        (status = 422, description = "Invalid window", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn usage(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    QueryParams(q): QueryParams<UsageQuery>,
) -> ApiResult<Json<Usage>> {
    let now = Utc::now();
    let to = q.to.unwrap_or(now);
    let from = q.from.unwrap_or_else(|| month_start(to));
    if to <= from {
        return Err(ApiError::invalid("to must be after from"));
    }
    if to - from > Duration::days(USAGE_WINDOW_MAX_DAYS) {
        return Err(ApiError::invalid(format!("the window may span at most {USAGE_WINDOW_MAX_DAYS} days")));
    }
    let group_by = q.group_by.unwrap_or(GroupBy::Class);
    let totals = state
        .metering
        .clone()
        .usage_totals(pb::UsageTotalsRequest {
            tenant_id: tenant.to_string(),
            from: Some(timestamp(from)),
            to: Some(timestamp(to)),
            by_day: group_by == GroupBy::Day,
        })
        .await?
        .into_inner()
        .totals;
    Ok(Json(Usage { from, to, group_by, rows: group(totals, group_by)? }))
}

/// The wire name of a class, as the API shows it.
fn class_name(class: i32) -> ApiResult<&'static str> {
    answered("class", class_from_pb("class", class)).map(|c| c.as_str())
}

/// Sums metering's finer rows (per contract, class, model and day) into the asked groups.
fn group(totals: Vec<pb::UsageTotal>, group_by: GroupBy) -> ApiResult<Vec<UsageRow>> {
    // Each row with its exact weighted sum (written as a string at the end).
    let mut rows: Vec<(UsageRow, rust_decimal::Decimal)> = Vec::new();
    for t in totals {
        let (day, class) = match group_by {
            GroupBy::Day => (t.day.as_ref().and_then(instant), None),
            GroupBy::Class => (None, Some(class_name(t.class)?.to_owned())),
        };
        let weighted: rust_decimal::Decimal = t.weighted_tokens.parse().map_err(|_| ApiError::internal())?;
        let at = match rows.iter().position(|(r, _)| r.day == day && r.class == class) {
            Some(i) => i,
            None => {
                let empty = UsageRow {
                    day,
                    class,
                    requests: 0,
                    prompt_tokens: 0,
                    cached_prompt_tokens: 0,
                    completion_tokens: 0,
                    weighted_tokens: String::new(),
                };
                rows.push((empty, rust_decimal::Decimal::ZERO));
                rows.len() - 1
            }
        };
        let (row, sum) = &mut rows[at];
        row.requests += t.requests;
        row.prompt_tokens += t.prompt_tokens;
        row.cached_prompt_tokens += t.cached_prompt_tokens;
        row.completion_tokens += t.completion_tokens;
        *sum += weighted;
    }
    let mut out: Vec<UsageRow> = rows
        .into_iter()
        .map(|(mut row, sum)| {
            row.weighted_tokens = sum.normalize().to_string();
            row
        })
        .collect();
    out.sort_by(|a, b| (a.day, &a.class).cmp(&(b.day, &b.class)));
    Ok(out)
}
