//! The gRPC face of the contracts service: convert, call, convert back.

use chrono::{Duration, Utc};
use reservoir_domain::capacity::{peak_per_bucket, reserved_steps};
use reservoir_domain::{Currency, ModelId, TenantId, Tier, TimeRange};
use reservoir_proto::enums::{status_from_pb, term_from_pb, tier_from_pb, unless_unspecified};
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::contract_service_server::ContractService;
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::convert::{self, instant, optional, optional_decimal, optional_instant, parse};
use crate::error::ContractsError;
use crate::models::ModelChange;
use crate::reservations::{self, Cancellation, ListFilter, NewReservation};
use crate::{api_tokens, catalog, ledger, models, tenants};

/// Longest window `GetCapacity` answers for.
const CAPACITY_WINDOW_MAX: Duration = Duration::days(3 * 366);

#[derive(Debug, Clone)]
pub struct Contracts {
    pub pool: PgPool,
    pub default_currency: Currency,
}

type Reply<T> = Result<Response<T>, Status>;

/// What a quote or a reservation asks for. Fields left out stay `None` here:
/// defaults are applied after the request's fingerprint is taken.
fn order(r: Option<&pb::QuoteRequest>) -> Result<NewReservation, ContractsError> {
    let r = r.ok_or_else(|| ContractsError::Invalid("order is required".into()))?;
    Ok(NewReservation {
        tenant: parse(&r.tenant_id)?,
        model: parse(&r.model)?,
        rate_tokens_per_s: r.rate_tokens_per_s,
        tier: tier_from_pb("tier", r.tier)?,
        term: term_from_pb("term", r.term)?,
        starts_at: optional_instant("starts_at", r.starts_at.as_ref())?,
        ends_at: optional_instant("ends_at", r.ends_at.as_ref())?,
        allow_burst: None,
        idempotency_key: None,
    })
}

fn token_ref(r: &pb::ApiTokenRef) -> Result<(TenantId, uuid::Uuid), ContractsError> {
    Ok((parse(&r.tenant_id)?, convert::uuid("API token", &r.id)?))
}

#[tonic::async_trait]
impl ContractService for Contracts {
    async fn ensure_tenant(&self, req: Request<pb::EnsureTenantRequest>) -> Reply<pb::Tenant> {
        let id: TenantId = parse(&req.get_ref().id)?;
        Ok(Response::new(tenants::ensure(&self.pool, &id, self.default_currency).await?.into()))
    }

    async fn create_tenant(&self, req: Request<pb::CreateTenantRequest>) -> Reply<pb::Tenant> {
        let r = req.get_ref();
        let id: TenantId = parse(&r.id)?;
        let currency = optional::<Currency>(&r.currency)?.unwrap_or(self.default_currency);
        Ok(Response::new(tenants::create(&self.pool, &id, currency).await?.into()))
    }

    async fn get_tenant(&self, req: Request<pb::GetTenantRequest>) -> Reply<pb::Tenant> {
        let id: TenantId = parse(&req.get_ref().id)?;
        Ok(Response::new(tenants::get(&self.pool, &id).await?.into()))
    }

    async fn list_tenants(&self, req: Request<pb::ListTenantsRequest>) -> Reply<pb::ListTenantsResponse> {
        let r = req.get_ref();
        let page = tenants::Page { search: r.search.trim(), limit: r.limit, offset: r.offset };
        let (found, total) = tenants::list(&self.pool, &page).await?;
        Ok(Response::new(pb::ListTenantsResponse { tenants: found.into_iter().map(Into::into).collect(), total }))
    }

    async fn create_api_token(&self, req: Request<pb::CreateApiTokenRequest>) -> Reply<pb::ApiToken> {
        let r = req.get_ref();
        let tenant: TenantId = parse(&r.tenant_id)?;
        Ok(Response::new(api_tokens::create(&self.pool, &tenant, &r.name, r.lifetime_days).await?.into()))
    }

    async fn get_api_token(&self, req: Request<pb::ApiTokenRef>) -> Reply<pb::ApiToken> {
        let (tenant, id) = token_ref(req.get_ref())?;
        Ok(Response::new(api_tokens::get(&self.pool, &tenant, id).await?.into()))
    }

    async fn list_api_tokens(&self, req: Request<pb::ListApiTokensRequest>) -> Reply<pb::ListApiTokensResponse> {
        let tenant: TenantId = parse(&req.get_ref().tenant_id)?;
        let tokens = api_tokens::list(&self.pool, &tenant).await?;
        Ok(Response::new(pb::ListApiTokensResponse { tokens: tokens.into_iter().map(Into::into).collect() }))
    }

    async fn revoke_api_token(&self, req: Request<pb::ApiTokenRef>) -> Reply<pb::ApiToken> {
        let (tenant, id) = token_ref(req.get_ref())?;
        Ok(Response::new(api_tokens::revoke(&self.pool, &tenant, id).await?.into()))
    }

    async fn create_model(&self, req: Request<pb::CreateModelRequest>) -> Reply<pb::Model> {
        let r = req.get_ref();
        let id: ModelId = parse(&r.id)?;
        let settings = ModelChange {
            capacity_tokens_per_s: Some(r.capacity_tokens_per_s),
            headroom: optional_decimal("headroom", Some(&r.headroom))?,
            prompt_weight: optional_decimal("prompt_weight", Some(&r.prompt_weight))?,
            completion_weight: optional_decimal("completion_weight", Some(&r.completion_weight))?,
            prefill_tokens_per_s: Some(r.prefill_tokens_per_s),
        };
        Ok(Response::new(models::create(&self.pool, &id, &settings).await?.into()))
    }

    async fn update_model(&self, req: Request<pb::UpdateModelRequest>) -> Reply<pb::Model> {
        let r = req.get_ref();
        let id: ModelId = parse(&r.id)?;
        let change = ModelChange {
            capacity_tokens_per_s: r.capacity_tokens_per_s,
            headroom: optional_decimal("headroom", r.headroom.as_deref())?,
            prompt_weight: optional_decimal("prompt_weight", r.prompt_weight.as_deref())?,
            completion_weight: optional_decimal("completion_weight", r.completion_weight.as_deref())?,
            prefill_tokens_per_s: r.prefill_tokens_per_s,
        };
        Ok(Response::new(models::update(&self.pool, &id, &change).await?.into()))
    }

    async fn get_model(&self, req: Request<pb::GetModelRequest>) -> Reply<pb::Model> {
        let id: ModelId = parse(&req.get_ref().id)?;
        Ok(Response::new(models::get(&self.pool, &id).await?.into()))
    }

    async fn list_models(&self, _: Request<pb::ListModelsRequest>) -> Reply<pb::ListModelsResponse> {
        let models = models::list(&self.pool).await?.into_iter().map(Into::into).collect();
        Ok(Response::new(pb::ListModelsResponse { models }))
    }

    async fn get_catalog(&self, req: Request<pb::GetCatalogRequest>) -> Reply<pb::Catalog> {
        let version = Some(req.get_ref().version).filter(|v| *v != 0);
        let mut conn = self.pool.acquire().await.map_err(ContractsError::from)?;
        Ok(Response::new(catalog_reply(catalog::get(&mut conn, version).await?)))
    }

    async fn publish_catalog(&self, req: Request<pb::PublishCatalogRequest>) -> Reply<pb::Catalog> {
        let r = req.get_ref();
        let document = r.document.clone().ok_or_else(|| ContractsError::Invalid("document is required".into()))?;
        let document = reservoir_pricing::Catalog::try_from(document).map_err(ContractsError::from)?;
        Ok(Response::new(catalog_reply(catalog::publish(&self.pool, document, &r.published_by).await?)))
    }

    async fn quote(&self, req: Request<pb::QuoteRequest>) -> Reply<pb::QuoteResponse> {
        let wanted = order(Some(req.get_ref()))?;
        wanted.validate()?;
        let mut conn = self.pool.acquire().await.map_err(ContractsError::from)?;
        // Quoting an unknown model is a 404, as reserving it would be.
        models::get_with(&mut conn, &wanted.model, false).await?;
        let quote = reservations::quote(&mut conn, &wanted, Utc::now()).await?;
        Ok(Response::new(pb::QuoteResponse { quote: Some((&quote).into()) }))
    }

    async fn create_reservation(&self, req: Request<pb::CreateReservationRequest>) -> Reply<pb::Reservation> {
        let r = req.get_ref();
        let wanted = NewReservation {
            allow_burst: r.allow_burst,
            idempotency_key: Some(r.idempotency_key.clone()).filter(|k| !k.is_empty()),
            ..order(r.order.as_ref())?
        };
        let created = reservations::create(&self.pool, &wanted).await?;
        Ok(Response::new(convert::reservation(created, Utc::now())))
    }

    async fn get_reservation(&self, req: Request<pb::GetReservationRequest>) -> Reply<pb::Reservation> {
        let r = req.get_ref();
        let id = convert::uuid("reservation", &r.id)?;
        let tenant = optional::<TenantId>(&r.tenant_id)?;
        let found = reservations::get(&self.pool, id, tenant.as_ref()).await?;
        Ok(Response::new(convert::reservation(found, Utc::now())))
    }

    async fn list_reservations(
        &self,
        req: Request<pb::ListReservationsRequest>,
    ) -> Reply<pb::ListReservationsResponse> {
        let r = req.get_ref();
        let filter = ListFilter {
            tenant: optional(&r.tenant_id)?,
            model: optional(&r.model)?,
            status: unless_unspecified("status", r.status, status_from_pb).map_err(ContractsError::from)?,
            active_at: optional_instant("active_at", r.active_at.as_ref())?,
            running: match (
                optional_instant("running_from", r.running_from.as_ref())?,
                optional_instant("running_to", r.running_to.as_ref())?,
            ) {
                (Some(from), Some(to)) if from < to => Some((from, to)),
                (None, None) => None,
                _ => {
                    return Err(ContractsError::Invalid(
                        "running_from and running_to go together, running_from first".into(),
                    )
                    .into());
                }
            },
            limit: Some(r.limit).filter(|l| *l > 0),
            page_after: if r.page_after.is_empty() { None } else { Some(convert::uuid("page_after", &r.page_after)?) },
            sort: sort_from_pb(r.sort)?,
            ascending: r.ascending,
            offset: r.offset,
        };
        let now = Utc::now();
        let reservations =
            reservations::list(&self.pool, &filter).await?.into_iter().map(|r| convert::reservation(r, now)).collect();
        let total = if r.with_total { Some(reservations::count(&self.pool, &filter).await?) } else { None };
        Ok(Response::new(pb::ListReservationsResponse { reservations, total }))
    }

    async fn cancel_reservation(&self, req: Request<pb::CancelReservationRequest>) -> Reply<pb::Reservation> {
        let r = req.get_ref();
        let cancellation = Cancellation {
            id: convert::uuid("reservation", &r.id)?,
            tenant: optional(&r.tenant_id)?,
            by_admin: r.by_admin,
            reason: Some(r.reason.clone()).filter(|s| !s.is_empty()),
            cancelled_by: if r.cancelled_by.is_empty() { r.tenant_id.clone() } else { r.cancelled_by.clone() },
        };
        let cancelled = reservations::cancel(&self.pool, &cancellation).await?;
        Ok(Response::new(convert::reservation(cancelled, Utc::now())))
    }

    async fn summarize_reservations(
        &self,
        req: Request<pb::SummarizeReservationsRequest>,
    ) -> Reply<pb::SummarizeReservationsResponse> {
        let at = optional_instant("active_at", req.get_ref().active_at.as_ref())?.unwrap_or_else(Utc::now);
        let mut rows = Vec::new();
        for (model, tier, contracts, rate) in reservations::summarize(&self.pool, at).await? {
            let tier: Tier = tier.parse().map_err(|e| ContractsError::Internal(format!("stored tier: {e}")))?;
            rows.push(pb::ReservationSummary {
                model,
                tier: pb::Tier::from(tier).into(),
                contracts: u64::try_from(contracts).unwrap_or(0),
                rate_tokens_per_s: u64::try_from(rate).unwrap_or(0),
            });
        }
        Ok(Response::new(pb::SummarizeReservationsResponse { rows }))
    }

    async fn get_capacity(&self, req: Request<pb::GetCapacityRequest>) -> Reply<pb::GetCapacityResponse> {
        let r = req.get_ref();
        let model_id: ModelId = parse(&r.model)?;
        let now = Utc::now();
        let from = optional_instant("from", r.from.as_ref())?.unwrap_or(now);
        let to = match r.to.as_ref() {
            Some(t) => instant("to", t)?,
            None => from + Duration::days(31),
        };
        if to - from > CAPACITY_WINDOW_MAX {
            return Err(ContractsError::Invalid("the window may span at most three years".into()).into());
        }
        let window = TimeRange::new(from, Some(to)).map_err(ContractsError::from)?;
        let mut conn = self.pool.acquire().await.map_err(ContractsError::from)?;
        let model = models::get_with(&mut conn, &model_id, false).await?;
        let holdings: Vec<_> =
            ledger::holdings(&mut conn, &model_id, window).await?.into_iter().map(|h| h.holding).collect();
        let sellable = model.sellable_tokens_per_s();
        let mut steps = reserved_steps(&holdings, window);
        if let Some(bucket_s) = r.bucket_s {
            if !(60..=86_400).contains(&bucket_s) || (to - from).num_seconds() / i64::from(bucket_s) > 2_000 {
                return Err(ContractsError::Invalid("bucket_s must be 60 to 86400, at most 2000 buckets".into()).into());
            }
            steps = peak_per_bucket(&steps, from, to, Duration::seconds(i64::from(bucket_s)));
        }
        let steps = steps
            .into_iter()
            .map(|s| {
                let reserved = u32::try_from(s.reserved_tokens_per_s).unwrap_or(u32::MAX);
                pb::CapacityStep {
                    from: Some(convert::timestamp(s.from)),
                    to: s.to.map(convert::timestamp),
                    reserved_tokens_per_s: reserved,
                    free_tokens_per_s: sellable.saturating_sub(reserved),
                }
            })
            .collect();
        Ok(Response::new(pb::GetCapacityResponse {
            model: model_id.to_string(),
            sellable_tokens_per_s: sellable,
            steps,
        }))
    }
}

fn catalog_reply(v: catalog::CatalogVersion) -> pb::Catalog {
    pb::Catalog {
        version: v.catalog.version,
        document: Some((&v.catalog).into()),
        created_at: Some(convert::timestamp(v.created_at)),
        created_by: v.created_by,
    }
}

/// The list order asked for; a number this build does not know is refused.
fn sort_from_pb(value: i32) -> Result<reservations::SortBy, Status> {
    use pb::ReservationSort as S;
    use reservations::SortBy;
    match S::try_from(value) {
        Ok(S::Unspecified | S::CreatedAt) => Ok(SortBy::CreatedAt),
        Ok(S::Tenant) => Ok(SortBy::Tenant),
        Ok(S::Model) => Ok(SortBy::Model),
        Ok(S::Rate) => Ok(SortBy::Rate),
        Ok(S::StartsAt) => Ok(SortBy::StartsAt),
        Err(_) => Err(Status::invalid_argument(format!("sort: {value} is not a known order"))),
    }
}
