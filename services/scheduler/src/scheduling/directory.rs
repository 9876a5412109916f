//! What the scheduler needs from the contracts service, cached briefly so
//! admission does not wait on it for every request: a tenant's active
//! contract for a model, and the model's weights.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reservoir_proto::v1 as pb;
use reservoir_proto::v1::contract_service_client::ContractServiceClient;
use reservoir_sched::Weights;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use tonic::Status;
use tonic::transport::Channel;
use uuid::Uuid;

/// How long a looked-up contract or model stays fresh.
const FRESH_FOR: Duration = Duration::from_secs(5);
/// Entries kept at most per cache; past it the cache starts over.
const CACHE_ENTRIES_MAX: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveContract {
    pub id: Uuid,
    pub rate_tokens_per_s: u32,
    pub allow_burst: bool,
}

type Cached<T> = Mutex<HashMap<String, (Instant, T)>>;

pub struct Directory {
    client: ContractServiceClient<Channel>,
    contracts: Cached<Option<ActiveContract>>,
    weights: Cached<Weights>,
}

fn fresh<T: Clone>(cache: &Cached<T>, key: &str) -> Option<T> {
    let cache = cache.lock().ok()?;
    cache.get(key).filter(|(at, _)| at.elapsed() < FRESH_FOR).map(|(_, v)| v.clone())
}

fn remember<T>(cache: &Cached<T>, key: String, value: T) {
    if let Ok(mut cache) = cache.lock() {
        if cache.len() >= CACHE_ENTRIES_MAX {
            cache.clear();
        }
        cache.insert(key, (Instant::now(), value));
    }
}

/// A weight such as "0.25" in thousandths (250), rounded half-even.
fn milli(weight: &str) -> Result<u64, Status> {
    let w: Decimal = weight.parse().map_err(|_| Status::internal("a model weight is not a decimal"))?;
    (w * Decimal::from(1000)).round().to_u64().ok_or_else(|| Status::internal("a model weight is out of range"))
}

impl Directory {
    pub fn new(channel: Channel) -> Self {
        Directory { client: ContractServiceClient::new(channel), contracts: Mutex::default(), weights: Mutex::default() }
    }

    /// The model's weights; NOT_FOUND for an unknown model.
    pub async fn weights(&self, model: &str) -> Result<Weights, Status> {
        if let Some(w) = fresh(&self.weights, model) {
            return Ok(w);
        }
        let m = self.client.clone().get_model(pb::GetModelRequest { id: model.to_owned() }).await?.into_inner();
        let weights = Weights { prompt_milli: milli(&m.prompt_weight)?, completion_milli: milli(&m.completion_weight)? };
        remember(&self.weights, model.to_owned(), weights);
        Ok(weights)
    }

    /// The tenant's contract for the model that is active now, if any (the
    /// one with the highest rate when several are).
    pub async fn contract(&self, tenant: &str, model: &str) -> Result<Option<ActiveContract>, Status> {
        let key = format!("{tenant}\u{0}{model}");
        if let Some(c) = fresh(&self.contracts, &key) {
            return Ok(c);
        }
        let list = self
            .client
            .clone()
            .list_reservations(pb::ListReservationsRequest {
                tenant_id: tenant.to_owned(),
                model: model.to_owned(),
                status: "active".into(),
                active_at: None,
                limit: 100,
            })
            .await?
            .into_inner();
        let best = list
            .reservations
            .iter()
            .filter_map(|r| {
                Some(ActiveContract {
                    id: Uuid::parse_str(&r.id).ok()?,
                    rate_tokens_per_s: r.rate_tokens_per_s,
                    allow_burst: r.allow_burst,
                })
            })
            .max_by_key(|c| c.rate_tokens_per_s);
        remember(&self.contracts, key, best);
        Ok(best)
    }
}
