//! What billing reads from other services: tenants, contracts and catalog
//! versions from the contracts service, usage totals from metering, SLA
//! credits from the SLA service (which also delivers billing's events).
//! Proto types stop here: each answer becomes a domain value.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use reservoir_billing::{ContractInput, CreditInput, UsageClass, UsageInput};
use reservoir_domain::{Currency, Period};
use reservoir_pricing::Catalog;
use reservoir_proto::enums::tier_from_pb;
use reservoir_proto::time::{instant, timestamp};
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::contract_service_client::ContractServiceClient;
use reservoir_proto::v1::metering_service_client::MeteringServiceClient;
use reservoir_proto::v1::sla_service_client::SlaServiceClient;
use reservoir_runtime::{InternalChannel, InternalToken};
use rust_decimal::Decimal;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::error::{BillingServiceError, Result};

/// Reservations asked for per page (the contracts service's maximum).
const CONTRACTS_PAGE: u32 = 1000;

/// How long one call to a peer may take.
const PEER_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Catalog versions with when each was published.
type CatalogCache = BTreeMap<i64, (Catalog, DateTime<Utc>)>;

#[derive(Clone)]
pub struct Peers {
    contracts: ContractServiceClient<InternalChannel>,
    metering: MeteringServiceClient<InternalChannel>,
    sla: SlaServiceClient<InternalChannel>,
    /// Catalog versions never change once published: fetched once.
    catalogs: Arc<Mutex<CatalogCache>>,
}

fn peer(service: &'static str) -> impl FnOnce(tonic::Status) -> BillingServiceError {
    move |status| BillingServiceError::Peer { service, status }
}

fn bad_answer(what: &str, detail: impl std::fmt::Display) -> BillingServiceError {
    BillingServiceError::Internal(format!("unexpected {what} from a peer: {detail}"))
}

fn decimal(what: &str, s: &str) -> Result<Decimal> {
    s.parse().map_err(|e| bad_answer(what, e))
}

impl Peers {
    pub fn connect(
        contracts_url: &str,
        metering_url: &str,
        sla_url: &str,
        token: &InternalToken,
    ) -> anyhow::Result<Peers> {
        let channel = |url: &str| -> anyhow::Result<InternalChannel> {
            Ok(token.attach(reservoir_runtime::grpc::client_channel(url, PEER_CALL_TIMEOUT)?))
        };
        Ok(Peers {
            contracts: ContractServiceClient::new(channel(contracts_url)?),
            metering: MeteringServiceClient::new(channel(metering_url)?),
            sla: SlaServiceClient::new(channel(sla_url)?),
            catalogs: Arc::default(),
        })
    }

    /// Every tenant's billing currency, read page by page.
    pub async fn tenant_currencies(&self) -> Result<HashMap<String, Currency>> {
        const PAGE: u32 = 5_000;
        let mut currencies = HashMap::new();
        loop {
            let request = pb::ListTenantsRequest { limit: PAGE, offset: currencies.len() as u32, ..Default::default() };
            let page = self.contracts.clone().list_tenants(request).await.map_err(peer("contracts"))?.into_inner();
            let last = page.tenants.len() < PAGE as usize;
            for t in page.tenants {
                currencies.insert(t.id, t.currency.parse().map_err(|e| bad_answer("currency", e))?);
            }
            if last {
                return Ok(currencies);
            }
        }
    }

    /// One tenant's billing currency. (`EnsureTenant` reads the one row; the
    /// tenants billing asks about were provisioned before they could have
    /// contracts, usage or a session, so it creates nothing in practice.)
    pub async fn tenant_currency(&self, tenant: &str) -> Result<Currency> {
        let answer = self
            .contracts
            .clone()
            .ensure_tenant(pb::EnsureTenantRequest { id: tenant.to_owned() })
            .await
            .map_err(peer("contracts"))?;
        answer.into_inner().currency.parse().map_err(|e| bad_answer("currency", e))
    }

    /// Reservations running at some instant of `period`, with their tenant.
    pub async fn contracts(&self, period: Period, tenant: Option<&str>) -> Result<Vec<(String, ContractInput)>> {
        let mut contracts = Vec::new();
        let mut page_after = String::new();
        loop {
            let request = pb::ListReservationsRequest {
                tenant_id: tenant.unwrap_or_default().to_owned(),
                running_from: Some(timestamp(period.start())),
                running_to: Some(timestamp(period.end())),
                limit: CONTRACTS_PAGE,
                page_after,
                ..Default::default()
            };
            let answer = self.contracts.clone().list_reservations(request).await.map_err(peer("contracts"))?;
            let page = answer.into_inner().reservations;
            let last = page.len() < CONTRACTS_PAGE as usize;
            page_after = page.last().map(|r| r.id.clone()).unwrap_or_default();
            for r in page {
                let contract = ContractInput {
                    id: Uuid::parse_str(&r.id).map_err(|e| bad_answer("reservation id", e))?,
                    model: r.model.parse().map_err(|e| bad_answer("model id", e))?,
                    tier: tier_from_pb("tier", r.tier).map_err(|e| bad_answer("tier", e))?,
                    rate_tokens_per_s: r.rate_tokens_per_s,
                    catalog_version: r.catalog_version,
                    terms: reservoir_proto::pricing::reservation_terms(&r).map_err(|e| bad_answer("reservation", e))?,
                };
                contracts.push((r.tenant_id, contract));
            }
            if last {
                return Ok(contracts);
            }
        }
    }

    /// Burst and spot usage that finished in `period`, per tenant; records
    /// of an unknown catalog version (0) are priced by `default_version`.
    pub async fn usage(
        &self,
        period: Period,
        tenant: Option<&str>,
        default_version: i64,
    ) -> Result<Vec<(String, UsageInput)>> {
        let request = pb::UsageTotalsRequest {
            tenant_id: tenant.unwrap_or_default().to_owned(),
            from: Some(timestamp(period.start())),
            to: Some(timestamp(period.end())),
            by_day: false,
        };
        let answer = self.metering.clone().usage_totals(request).await.map_err(peer("metering"))?;
        let mut usage = Vec::new();
        for t in answer.into_inner().totals {
            let class = match pb::PriorityClass::try_from(t.class) {
                Ok(pb::PriorityClass::Burst) => UsageClass::Burst,
                Ok(pb::PriorityClass::Spot) => UsageClass::Spot,
                // Reserved usage is what the reservation fee pays for.
                _ => continue,
            };
            let contract = match (class, t.contract_id.as_str()) {
                (UsageClass::Spot, _) | (_, "") => None,
                (UsageClass::Burst, id) => Some(Uuid::parse_str(id).map_err(|e| bad_answer("contract id", e))?),
            };
            let version = if t.catalog_version == 0 { default_version } else { i64::from(t.catalog_version) };
            let weighted_tokens = decimal("billable weighted tokens", &t.billable_weighted_tokens)?;
            let model = t.model.parse().map_err(|e| bad_answer("model id", e))?;
            usage.push((t.tenant_id, UsageInput { class, model, catalog_version: version, contract, weighted_tokens }));
        }
        Ok(usage)
    }

    /// SLA credits issued for `period`, per tenant.
    pub async fn credits(&self, period: Period, tenant: Option<&str>) -> Result<Vec<(String, CreditInput)>> {
        let request =
            pb::ListCreditsRequest { tenant_id: tenant.unwrap_or_default().to_owned(), period: period.to_string() };
        let answer = self.sla.clone().list_credits(request).await.map_err(peer("sla"))?;
        answer
            .into_inner()
            .credits
            .into_iter()
            .map(|c| {
                let credit = CreditInput {
                    id: Uuid::parse_str(&c.id).map_err(|e| bad_answer("credit id", e))?,
                    contract: Uuid::parse_str(&c.contract_id).map_err(|e| bad_answer("contract id", e))?,
                    period: c.period.parse().map_err(|e| bad_answer("period", e))?,
                    amount: decimal("credit amount", &c.amount)?,
                };
                Ok((c.tenant_id, credit))
            })
            .collect()
    }

    /// Catalog `version` (cached: versions never change).
    pub async fn catalog(&self, version: i64) -> Result<Catalog> {
        Ok(self.catalog_with_date(version).await?.0)
    }

    async fn catalog_with_date(&self, version: i64) -> Result<(Catalog, DateTime<Utc>)> {
        if version > 0
            && let Some(found) = self.catalogs.lock().await.get(&version)
        {
            return Ok(found.clone());
        }
        let answer =
            self.contracts.clone().get_catalog(pb::GetCatalogRequest { version }).await.map_err(peer("contracts"))?;
        let c = answer.into_inner();
        let created = c.created_at.as_ref().and_then(instant).ok_or_else(|| bad_answer("catalog", "no created_at"))?;
        let document = c.document.ok_or_else(|| bad_answer("catalog", "no document"))?;
        let catalog = Catalog::try_from(document).map_err(|e| bad_answer("catalog", e))?;
        self.catalogs.lock().await.insert(catalog.version, (catalog.clone(), created));
        Ok((catalog, created))
    }

    /// The catalog version in force at `at`: the newest published by then
    /// (version 1 when `at` is before every version).
    pub async fn version_in_force(&self, at: DateTime<Utc>) -> Result<i64> {
        let (latest, created) = self.catalog_with_date(0).await?;
        let (mut version, mut created) = (latest.version, created);
        while version > 1 && created > at {
            version -= 1;
            created = self.catalog_with_date(version).await?.1;
        }
        Ok(version)
    }

    /// Hands an event to the SLA service's webhook deliverer.
    pub async fn publish(&self, event: pb::PublishEventRequest) -> Result<()> {
        self.sla.clone().publish_event(event).await.map_err(peer("sla"))?;
        Ok(())
    }
}
