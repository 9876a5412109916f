//! What the scheduler needs from the contracts service, cached so admission
//! does not wait on it for every request: a tenant's active contracts for a
//! model, and the model's weights. Entries are re-read after a few seconds
//! in the background while the cached one keeps serving (a reserved request
//! must not wait for a database round trip on a loaded machine).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reservoir_proto::v1 as pb;
use reservoir_proto::v1::contract_service_client::ContractServiceClient;
use reservoir_runtime::InternalChannel;
use reservoir_sched::Weights;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use tonic::Status;
use uuid::Uuid;

/// How long a looked-up contract or model is used without asking again.
const FRESH_FOR: Duration = Duration::from_secs(5);
/// How long a looked-up entry may still serve admission while a refresh runs
/// in the background: requests never wait on the contracts service (and its
/// database) for a tenant seen in the last minute.
const USABLE_FOR: Duration = Duration::from_secs(60);
/// Active contracts of one tenant for one model that admission considers
/// (the contracts service's page limit).
const CONTRACTS_PER_TENANT_MODEL_MAX: u32 = 1000;
/// Entries kept at most per cache; past it the cache starts over.
const CACHE_ENTRIES_MAX: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveContract {
    pub id: Uuid,
    pub rate_tokens_per_s: u32,
    pub allow_burst: bool,
}

struct Entry<T> {
    at: Instant,
    value: T,
    refreshing: bool,
}

/// A small read-through cache with stale-while-revalidate.
struct Cache<T>(Mutex<HashMap<String, Entry<T>>>);

enum Lookup<T> {
    Fresh(T),
    /// Usable, and the caller is the one to refresh it.
    Stale(T),
    Missing,
}

impl<T: Clone> Cache<T> {
    fn new() -> Arc<Self> {
        Arc::new(Cache(Mutex::new(HashMap::new())))
    }

    fn lookup(&self, key: &str) -> Lookup<T> {
        let Ok(mut map) = self.0.lock() else { return Lookup::Missing };
        match map.get_mut(key) {
            Some(e) if e.at.elapsed() < FRESH_FOR => Lookup::Fresh(e.value.clone()),
            Some(e) if e.at.elapsed() < USABLE_FOR => {
                if std::mem::replace(&mut e.refreshing, true) {
                    Lookup::Fresh(e.value.clone())
                } else {
                    Lookup::Stale(e.value.clone())
                }
            }
            _ => Lookup::Missing,
        }
    }

    fn put(&self, key: String, value: T) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= CACHE_ENTRIES_MAX {
                map.clear();
            }
            map.insert(key, Entry { at: Instant::now(), value, refreshing: false });
        }
    }

    /// A background refresh failed: the next lookup may try again.
    fn refresh_failed(&self, key: &str) {
        if let Ok(mut map) = self.0.lock()
            && let Some(e) = map.get_mut(key)
        {
            e.refreshing = false;
        }
    }

    /// The cached value, refreshed in the background when stale, or fetched
    /// now when missing.
    async fn get<F, Fut>(self: &Arc<Self>, key: String, fetch: F) -> Result<T, Status>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, Status>> + Send + 'static,
        T: Send + 'static,
    {
        match self.lookup(&key) {
            Lookup::Fresh(v) => Ok(v),
            Lookup::Stale(v) => {
                let (cache, refresh) = (self.clone(), fetch());
                tokio::spawn(async move {
                    match refresh.await {
                        Ok(v) => cache.put(key, v),
                        Err(e) => {
                            tracing::warn!(error = %e, "refreshing a cached contract lookup failed");
                            cache.refresh_failed(&key);
                        }
                    }
                });
                Ok(v)
            }
            Lookup::Missing => {
                let v = fetch().await?;
                self.put(key, v.clone());
                Ok(v)
            }
        }
    }
}

pub struct Directory {
    client: ContractServiceClient<InternalChannel>,
    contracts: Arc<Cache<Vec<ActiveContract>>>,
    weights: Arc<Cache<Weights>>,
}

/// A weight such as "0.25" in thousandths (250), rounded half-even.
fn milli(weight: &str) -> Result<u64, Status> {
    let w: Decimal = weight.parse().map_err(|_| Status::internal("a model weight is not a decimal"))?;
    (w * Decimal::from(1000)).round().to_u64().ok_or_else(|| Status::internal("a model weight is out of range"))
}

impl Directory {
    pub fn new(channel: InternalChannel) -> Self {
        Directory { client: ContractServiceClient::new(channel), contracts: Cache::new(), weights: Cache::new() }
    }

    /// The model's weights; NOT_FOUND for an unknown model.
    pub async fn weights(&self, model: &str) -> Result<Weights, Status> {
        // The fetch is built only when the cache has to ask.
        self.weights
            .get(model.to_owned(), || {
                let (mut client, id) = (self.client.clone(), model.to_owned());
                async move {
                    let m = client.get_model(pb::GetModelRequest { id }).await?.into_inner();
                    Ok(Weights {
                        prompt_milli: milli(&m.prompt_weight)?,
                        completion_milli: milli(&m.completion_weight)?,
                    })
                }
            })
            .await
    }

    /// The tenant's contracts for the model that are active now, largest
    /// rate first (ties by id), the order admission tries their buckets in.
    pub async fn contracts(&self, tenant: &str, model: &str) -> Result<Vec<ActiveContract>, Status> {
        let key = format!("{tenant}\u{0}{model}");
        // The fetch is built only when the cache has to ask.
        self.contracts
            .get(key, || {
                let mut client = self.client.clone();
                let request = pb::ListReservationsRequest {
                    tenant_id: tenant.to_owned(),
                    model: model.to_owned(),
                    status: "active".into(),
                    active_at: None,
                    limit: CONTRACTS_PER_TENANT_MODEL_MAX,
                };
                async move {
                    let list = client.list_reservations(request).await?.into_inner();
                    let mut contracts: Vec<ActiveContract> = list
                        .reservations
                        .iter()
                        .filter_map(|r| {
                            Some(ActiveContract {
                                id: Uuid::parse_str(&r.id).ok()?,
                                rate_tokens_per_s: r.rate_tokens_per_s,
                                allow_burst: r.allow_burst,
                            })
                        })
                        .collect();
                    contracts.sort_by(|a, b| b.rate_tokens_per_s.cmp(&a.rate_tokens_per_s).then(a.id.cmp(&b.id)));
                    Ok(contracts)
                }
            })
            .await
    }
}
