//! The console's live meter: each active contract's reserved rate beside
//! what it used over the last minute, from metering (whose records land
//! within seconds of each request's end).

use chrono::Utc;
use reservoir_proto::time::timestamp;
use reservoir_proto::v1 as pb;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::state::AppState;

/// The window the rate used is averaged over.
const METER_WINDOW_S: i64 = 60;

pub struct Meter {
    pub contract_id: String,
    pub model: String,
    pub reserved: u32,
    /// Weighted tokens per second over the last `METER_WINDOW_S`.
    pub used: u64,
}

/// The tenant's active contracts, each with its meter. The meter is an aid:
/// when a service cannot answer, it shows nothing rather than refusing the
/// page (the warning is logged).
pub async fn meters(state: &AppState, tenant: &str) -> Vec<Meter> {
    let now = Utc::now();
    let (mut contracts, mut metering) = (state.contracts.clone(), state.metering.clone());
    let active = contracts.list_reservations(pb::ListReservationsRequest {
        tenant_id: tenant.to_owned(),
        status: pb::ReservationStatus::Active.into(),
        ..Default::default()
    });
    let totals = metering.usage_totals(pb::UsageTotalsRequest {
        tenant_id: tenant.to_owned(),
        from: Some(timestamp(now - chrono::Duration::seconds(METER_WINDOW_S))),
        to: Some(timestamp(now)),
        by_day: false,
    });
    let (active, totals) = match tokio::join!(active, totals) {
        (Ok(active), Ok(totals)) => (active.into_inner().reservations, totals.into_inner().totals),
        (Err(status), _) | (_, Err(status)) => {
            tracing::warn!(error = %status.message(), "console meter");
            return Vec::new();
        }
    };
    active
        .into_iter()
        .map(|c| {
            let used: Decimal = totals
                .iter()
                .filter(|t| t.contract_id == c.id)
                .map(|t| t.weighted_tokens.parse::<Decimal>().unwrap_or_default())
                .sum();
            Meter {
                model: c.model,
                reserved: c.rate_tokens_per_s,
                used: (used / Decimal::from(METER_WINDOW_S)).round().to_u64().unwrap_or(0),
                contract_id: c.id,
            }
        })
        .collect()
}
