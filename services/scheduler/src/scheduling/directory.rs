//! What the scheduler needs from the contracts service, cached so admission
//! does not wait on it for every request: a tenant's active contracts for a
//! model (with their SLA tier), the model's weights and prefill rate, and the
//! catalog version in force. Entries are
//! re-read after a few seconds in the background while the cached one keeps
//! serving (a reserved request must not wait for a database round trip on a
//! loaded machine).
//!
//! When the contracts service (or its database) cannot be reached, what was
//! known keeps serving admission for `GRACE` (15 minutes), counted in
//! `contracts_stale_admissions_total` and logged; a tenant never seen is
//! refused with UNAVAILABLE at once (every call has a deadline), not hung.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntGauge};
use reservoir_domain::Tier;
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::contract_service_client::ContractServiceClient;
use reservoir_runtime::InternalChannel;
use reservoir_sched::Weights;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use tonic::{Code, Status};
use uuid::Uuid;

/// How long a looked-up contract or model is used without asking again.
const FRESH_FOR: Duration = Duration::from_secs(5);
/// How long a looked-up entry may serve admission while a refresh runs in
/// the background: requests never wait on the contracts service (and its
/// database) for a tenant seen in the last minute.
const USABLE_FOR: Duration = Duration::from_secs(60);
/// How long what was known serves admission while the contracts service
/// cannot be reached.
pub const GRACE: Duration = Duration::from_secs(15 * 60);
/// After a failed lookup, requests do not wait on another one for this long
/// (a background refresh tries meanwhile).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);
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
    /// Its SLA tier: a reserved request's queue deadline follows from it.
    pub tier: Tier,
}

/// What admission needs of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFacts {
    pub weights: Weights,
    /// Prompt tokens/s one request is prefilled at (0: not measured); part
    /// of a request's TTFT target.
    pub prefill_tokens_per_s: u32,
}

struct Entry<T> {
    fetched_at: Instant,
    value: T,
    refreshing: bool,
    failed_at: Option<Instant>,
}

/// How the directory tells the outside that it serves on stale knowledge.
#[derive(Clone)]
pub struct StaleSignals {
    /// Admissions decided on an entry older than `USABLE_FOR` because the
    /// contracts service could not be reached.
    pub stale_admissions: IntCounter,
    /// 1 while the last lookup failed.
    pub unreachable: IntGauge,
}

/// A small read-through cache with stale-while-revalidate and a grace
/// period for outages.
struct Cache<T> {
    map: Mutex<HashMap<String, Entry<T>>>,
    signals: StaleSignals,
}

enum Lookup<T> {
    Fresh(T),
    /// Usable now; the caller starts a background refresh.
    Stale(T),
    /// Too old to use without asking; usable if asking fails (within grace).
    Expired(T),
    Missing,
}

impl<T: Clone> Cache<T> {
    fn new(signals: StaleSignals) -> Arc<Self> {
        Arc::new(Cache { map: Mutex::new(HashMap::new()), signals })
    }

    fn lookup(&self, key: &str) -> Lookup<T> {
        let Ok(mut map) = self.map.lock() else { return Lookup::Missing };
        let Some(e) = map.get_mut(key) else { return Lookup::Missing };
        let age = e.fetched_at.elapsed();
        let failing = e.failed_at.is_some_and(|f| f.elapsed() < RETRY_AFTER_FAILURE);
        if age < FRESH_FOR {
            return Lookup::Fresh(e.value.clone());
        }
        if age >= GRACE {
            return Lookup::Missing;
        }
        if age < USABLE_FOR || failing {
            if age >= USABLE_FOR {
                self.signals.stale_admissions.inc();
            }
            return if std::mem::replace(&mut e.refreshing, true) {
                Lookup::Fresh(e.value.clone())
            } else {
                Lookup::Stale(e.value.clone())
            };
        }
        Lookup::Expired(e.value.clone())
    }

    fn put(&self, key: String, value: T) {
        self.signals.unreachable.set(0);
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= CACHE_ENTRIES_MAX {
                map.clear();
            }
            map.insert(key, Entry { fetched_at: Instant::now(), value, refreshing: false, failed_at: None });
        }
    }

    /// A lookup failed: the next one may try again, and requests use what
    /// is known without waiting for a while.
    fn failed(&self, key: &str, error: &Status) {
        tracing::warn!(code = ?error.code(), message = error.message(), "contracts lookup failed; admission uses what it knew (up to 15 minutes)");
        self.signals.unreachable.set(1);
        if let Ok(mut map) = self.map.lock()
            && let Some(e) = map.get_mut(key)
        {
            e.refreshing = false;
            e.failed_at = Some(Instant::now());
        }
    }

    /// The cached value, refreshed in the background when stale, or fetched
    /// now when missing or expired (an expired one still serves, within the
    /// grace period, when the fetch fails for want of the service).
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
                        Err(e) => cache.failed(&key, &e),
                    }
                });
                Ok(v)
            }
            Lookup::Expired(old) => match fetch().await {
                Ok(v) => {
                    self.put(key, v.clone());
                    Ok(v)
                }
                Err(e) if is_outage(&e) => {
                    self.failed(&key, &e);
                    self.signals.stale_admissions.inc();
                    Ok(old)
                }
                Err(e) => Err(e),
            },
            Lookup::Missing => match fetch().await {
                Ok(v) => {
                    self.put(key, v.clone());
                    Ok(v)
                }
                Err(e) if is_outage(&e) => {
                    self.failed(&key, &e);
                    Err(Status::unavailable(
                        "the contracts service cannot be reached, and this tenant's contracts are not known here yet; retry later",
                    ))
                }
                Err(e) => Err(e),
            },
        }
    }
}

/// Whether a failed lookup says nothing about the answer (the service or its
/// database is down or slow), as opposed to a real answer such as NOT_FOUND.
fn is_outage(status: &Status) -> bool {
    !matches!(status.code(), Code::NotFound | Code::InvalidArgument | Code::PermissionDenied | Code::Unauthenticated)
}

pub struct Directory {
    client: ContractServiceClient<InternalChannel>,
    contracts: Arc<Cache<Vec<ActiveContract>>>,
    models: Arc<Cache<ModelFacts>>,
    catalog_version: Arc<Cache<u32>>,
}

/// A weight such as "0.25" in thousandths (250), rounded half-even.
fn milli(weight: &str) -> Result<u64, Status> {
    let w: Decimal = weight.parse().map_err(|_| Status::internal("a model weight is not a decimal"))?;
    (w * Decimal::from(1000)).round().to_u64().ok_or_else(|| Status::internal("a model weight is out of range"))
}

impl Directory {
    pub fn new(channel: InternalChannel, signals: StaleSignals) -> Self {
        Directory {
            client: ContractServiceClient::new(channel),
            contracts: Cache::new(signals.clone()),
            models: Cache::new(signals.clone()),
            catalog_version: Cache::new(signals),
        }
    }

    /// The price catalog version in force now (what usage is priced by).
    pub async fn catalog_version(&self) -> Result<u32, Status> {
        self.catalog_version
            .get(String::new(), || {
                let mut client = self.client.clone();
                async move {
                    let catalog = client.get_catalog(pb::GetCatalogRequest { version: 0 }).await?.into_inner();
                    u32::try_from(catalog.version).map_err(|_| Status::internal("a catalog version is out of range"))
                }
            })
            .await
    }

    /// The model's weights and prefill rate; NOT_FOUND for an unknown model.
    pub async fn model(&self, model: &str) -> Result<ModelFacts, Status> {
        // The fetch is built only when the cache has to ask.
        self.models
            .get(model.to_owned(), || {
                let (mut client, id) = (self.client.clone(), model.to_owned());
                async move {
                    let m = client.get_model(pb::GetModelRequest { id }).await?.into_inner();
                    Ok(ModelFacts {
                        weights: Weights {
                            prompt_milli: milli(&m.prompt_weight)?,
                            completion_milli: milli(&m.completion_weight)?,
                        },
                        prefill_tokens_per_s: m.prefill_tokens_per_s,
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
                    status: pb::ReservationStatus::Active.into(),
                    active_at: None,
                    limit: CONTRACTS_PER_TENANT_MODEL_MAX,
                    ..Default::default()
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
                                tier: reservoir_proto::enums::tier_from_pb("tier", r.tier).ok()?,
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
