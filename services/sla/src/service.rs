//! The gRPC face of the SLA service: validation at the edge, then the job's
//! state, the read models and the stores.

use chrono::Utc;
use reservoir_domain::{Period, TenantId};
use reservoir_proto::time::{instant, timestamp};
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::sla_service_server::SlaService;
use reservoir_sla::TierPolicy;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::error::SlaError;
use crate::job::Sla;
use crate::read::{self, IncidentFilter};
use crate::{close, events, maintenance, status, webhooks};

type Reply<T> = Result<Response<T>, Status>;

pub struct SlaApi {
    pub sla: Sla,
    pub allow_private_webhooks: bool,
}

fn period(s: &str) -> Result<Period, SlaError> {
    Ok(s.parse::<Period>()?)
}

fn tenant(s: &str) -> Result<Option<TenantId>, SlaError> {
    if s.is_empty() { Ok(None) } else { Ok(Some(s.parse()?)) }
}

fn uuid(what: &str, s: &str) -> Result<Uuid, SlaError> {
    Uuid::parse_str(s).map_err(|_| SlaError::NotFound(format!("{what} {s:?}")))
}

fn text(field: &str, s: &str, max: usize) -> Result<String, SlaError> {
    let t = s.trim();
    if t.is_empty() || t.len() > max || t.chars().any(|c| c.is_control() && c != '\n') {
        return Err(SlaError::Invalid(format!("{field} must be 1 to {max} bytes of text")));
    }
    Ok(t.to_owned())
}

fn maintenance_to_pb(m: maintenance::Scheduled) -> pb::Maintenance {
    pb::Maintenance {
        id: m.id.to_string(),
        model: m.model_id,
        from: Some(timestamp(m.starts_at)),
        to: Some(timestamp(m.ends_at)),
        note: m.note,
        created_by: m.created_by,
        cancelled_at: m.cancelled_at.map(timestamp),
    }
}

fn endpoint_to_pb(e: webhooks::Endpoint, with_secret: bool) -> pb::WebhookEndpoint {
    pb::WebhookEndpoint {
        id: e.id.to_string(),
        tenant_id: e.tenant_id.unwrap_or_default(),
        url: e.url,
        secret: if with_secret { e.secret } else { String::new() },
        created_at: Some(timestamp(e.created_at)),
    }
}

fn scope_filter(v: i32) -> Result<Option<&'static str>, SlaError> {
    match pb::IncidentScope::try_from(v) {
        Ok(pb::IncidentScope::Unspecified) => Ok(None),
        Ok(pb::IncidentScope::Contract) => Ok(Some("contract")),
        Ok(pb::IncidentScope::Pool) => Ok(Some("pool")),
        Err(_) => Err(SlaError::Invalid(format!("scope {v} is not a known value"))),
    }
}

fn status_filter(v: i32) -> Result<Option<&'static str>, SlaError> {
    match pb::IncidentStatus::try_from(v) {
        Ok(pb::IncidentStatus::Unspecified) => Ok(None),
        Ok(pb::IncidentStatus::Open) => Ok(Some("open")),
        Ok(pb::IncidentStatus::Resolved) => Ok(Some("resolved")),
        Err(_) => Err(SlaError::Invalid(format!("status {v} is not a known value"))),
    }
}

impl SlaApi {
    async fn incident(&self, id: Uuid) -> Result<pb::Incident, SlaError> {
        let filter = IncidentFilter { id: Some(id), ..Default::default() };
        read::incidents(&self.sla.pool, &filter)
            .await?
            .pop()
            .ok_or_else(|| SlaError::NotFound(format!("incident {id}")))
    }

    /// The pool incident `id`: admins write only on pool incidents (the
    /// public ones); a contract incident's timeline is the job's.
    async fn pool_incident(&self, id: &str) -> Result<Uuid, SlaError> {
        let id = uuid("incident", id)?;
        let scope: Option<String> = sqlx::query_scalar("SELECT scope FROM sla.incidents WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.sla.pool)
            .await?;
        match scope.as_deref() {
            Some("pool") => Ok(id),
            Some(_) => Err(SlaError::Invalid("only pool incidents take public updates and postmortems".into())),
            None => Err(SlaError::NotFound(format!("incident {id}"))),
        }
    }
}

#[tonic::async_trait]
impl SlaService for SlaApi {
    async fn get_contract_sla(&self, req: Request<pb::GetContractSlaRequest>) -> Reply<pb::GetContractSlaResponse> {
        let r = req.get_ref();
        let period = period(&r.period)?;
        let tenant = tenant(&r.tenant_id)?;
        let sla = &self.sla;
        let measured_until = sla.measured_until().await?.unwrap_or(period.start());
        let until = measured_until.min(period.end());
        let contracts = sla.peers.contracts_running(period.start(), period.end(), tenant.as_ref()).await?;
        let schedule = maintenance::by_model(&sla.pool).await?;
        let mut out = Vec::new();
        for c in contracts {
            let closed: Option<(i64, i64, i64, rust_decimal::Decimal)> = sqlx::query_as(
                "SELECT windows_in_term, maintenance_windows, bad_windows, availability FROM sla.period_results \
                 WHERE contract_id = $1 AND period = $2",
            )
            .bind(c.id)
            .bind(period.to_string())
            .fetch_optional(&sla.pool)
            .await
            .map_err(SlaError::from)?;
            let counts = close::availability(sla, &c, period, until, &schedule).await?;
            let (in_term, in_maintenance, bad, availability) = match closed {
                Some((t, m, b, a)) => (t as u64, m as u64, b as u64, a),
                None => (counts.windows_in_term, counts.maintenance_windows, counts.bad_windows, counts.ratio()),
            };
            let filter = IncidentFilter {
                contract: Some(c.id),
                overlapping: Some((period.start(), period.end())),
                ..Default::default()
            };
            out.push(pb::ContractSla {
                contract_id: c.id.to_string(),
                tenant_id: c.tenant.to_string(),
                model: c.model.to_string(),
                tier: pb::Tier::from(c.tier) as i32,
                availability: availability.normalize().to_string(),
                target: TierPolicy::of(c.tier).availability_target.to_string(),
                windows_in_term: in_term,
                maintenance_windows: in_maintenance,
                bad_windows: bad,
                closed: closed.is_some(),
                bad: read::bad_windows(&sla.pool, c.id, period.start(), period.end()).await?,
                incidents: read::incidents(&sla.pool, &filter).await?,
                measured_until: Some(timestamp(until)),
            });
        }
        Ok(Response::new(pb::GetContractSlaResponse { contracts: out }))
    }

    async fn list_credits(&self, req: Request<pb::ListCreditsRequest>) -> Reply<pb::ListCreditsResponse> {
        let r = req.get_ref();
        let tenant = tenant(&r.tenant_id)?.map(|t| t.to_string());
        let period = if r.period.is_empty() { None } else { Some(period(&r.period)?.to_string()) };
        let credits = read::credits(&self.sla.pool, tenant.as_deref(), period.as_deref()).await?;
        Ok(Response::new(pb::ListCreditsResponse { credits }))
    }

    async fn list_incidents(&self, req: Request<pb::ListIncidentsRequest>) -> Reply<pb::ListIncidentsResponse> {
        let r = req.get_ref();
        let filter = IncidentFilter {
            tenant: tenant(&r.tenant_id)?.map(|t| t.to_string()),
            scope: scope_filter(r.scope)?,
            status: status_filter(r.status)?,
            model: if r.model.is_empty() { None } else { Some(r.model.clone()) },
            limit: r.limit,
            ..Default::default()
        };
        Ok(Response::new(pb::ListIncidentsResponse { incidents: read::incidents(&self.sla.pool, &filter).await? }))
    }

    async fn add_incident_update(&self, req: Request<pb::AddIncidentUpdateRequest>) -> Reply<pb::Incident> {
        let r = req.get_ref();
        let id = self.pool_incident(&r.incident_id).await?;
        let message = text("message", &r.message, 4000)?;
        let author = text("author", &r.author, 128)?;
        sqlx::query("INSERT INTO sla.incident_updates (incident_id, at, kind, message, author) VALUES ($1, now(), 'note', $2, $3)")
            .bind(id)
            .bind(message)
            .bind(author)
            .execute(&self.sla.pool)
            .await
            .map_err(SlaError::from)?;
        Ok(Response::new(self.incident(id).await?))
    }

    async fn set_postmortem(&self, req: Request<pb::SetPostmortemRequest>) -> Reply<pb::Incident> {
        let r = req.get_ref();
        let id = self.pool_incident(&r.incident_id).await?;
        let postmortem = text("postmortem", &r.postmortem, 20_000)?;
        sqlx::query("UPDATE sla.incidents SET postmortem = $2 WHERE id = $1")
            .bind(id)
            .bind(postmortem)
            .execute(&self.sla.pool)
            .await
            .map_err(SlaError::from)?;
        Ok(Response::new(self.incident(id).await?))
    }

    async fn create_maintenance(&self, req: Request<pb::CreateMaintenanceRequest>) -> Reply<pb::Maintenance> {
        let r = req.get_ref();
        let model: reservoir_domain::ModelId = r.model.parse().map_err(SlaError::from)?;
        let at = |field: &str, t: Option<&prost_types::Timestamp>| {
            t.and_then(instant).ok_or_else(|| SlaError::Invalid(format!("{field} is required")))
        };
        let new = maintenance::NewMaintenance {
            model: model.as_str(),
            from: at("from", r.from.as_ref())?,
            to: at("to", r.to.as_ref())?,
            note: &r.note,
            created_by: &text("created_by", &r.created_by, 128)?,
        };
        Ok(Response::new(maintenance_to_pb(maintenance::create(&self.sla.pool, &new, Utc::now()).await?)))
    }

    async fn list_maintenance(&self, req: Request<pb::ListMaintenanceRequest>) -> Reply<pb::ListMaintenanceResponse> {
        let model = &req.get_ref().model;
        let rows = maintenance::list(&self.sla.pool, (!model.is_empty()).then_some(model.as_str())).await?;
        Ok(Response::new(pb::ListMaintenanceResponse {
            maintenance: rows.into_iter().map(maintenance_to_pb).collect(),
        }))
    }

    async fn cancel_maintenance(&self, req: Request<pb::CancelMaintenanceRequest>) -> Reply<pb::Maintenance> {
        let id = uuid("maintenance", &req.get_ref().id)?;
        Ok(Response::new(maintenance_to_pb(maintenance::cancel(&self.sla.pool, id).await?)))
    }

    async fn close_period(&self, req: Request<pb::ClosePeriodRequest>) -> Reply<pb::ClosePeriodResponse> {
        let r = req.get_ref();
        let period = period(&r.period)?;
        let by = text("closed_by", &r.closed_by, 128)?;
        let report = close::close_period(&self.sla, period, &by, Utc::now()).await?;
        Ok(Response::new(pb::ClosePeriodResponse {
            period: period.to_string(),
            contracts: report.contracts,
            credits_issued_now: report.credits_issued_now,
            credits_total: report.credits_total,
        }))
    }

    async fn get_status(&self, _: Request<pb::GetStatusRequest>) -> Reply<pb::StatusPage> {
        let now = Utc::now();
        let mut models: Vec<String> = self.sla.peers.models().await?.keys().map(|m| m.to_string()).collect();
        models.sort();
        let statuses = status::status(&self.sla.pool, &models, now).await?;
        let mut out = Vec::new();
        for s in statuses {
            let filter = IncidentFilter {
                scope: Some("pool"),
                model: Some(s.model.clone()),
                // Resolved in the last 90 days, or still open.
                overlapping: Some((
                    now - chrono::Duration::days(status::HISTORY_DAYS),
                    now + chrono::Duration::days(36_500),
                )),
                ..Default::default()
            };
            let fraction = |d: Option<rust_decimal::Decimal>| d.map(|d| d.normalize().to_string()).unwrap_or_default();
            out.push(pb::ModelStatus {
                model: s.model,
                state: match s.state {
                    status::CurrentState::Operational => pb::PoolState::Operational,
                    status::CurrentState::Degraded => pb::PoolState::Degraded,
                    status::CurrentState::Outage => pb::PoolState::Outage,
                    status::CurrentState::Maintenance => pb::PoolState::Maintenance,
                    status::CurrentState::Unknown => pb::PoolState::Unknown,
                } as i32,
                uptime_24h: fraction(s.uptime[0]),
                uptime_7d: fraction(s.uptime[1]),
                uptime_30d: fraction(s.uptime[2]),
                uptime_90d: fraction(s.uptime[3]),
                daily: s
                    .daily
                    .into_iter()
                    .map(|(day, up)| pb::DailyUptime { day: Some(timestamp(day)), uptime: fraction(up) })
                    .collect(),
                maintenance: s.maintenance.into_iter().map(maintenance_to_pb).collect(),
                incidents: read::incidents(&self.sla.pool, &filter).await?,
            });
        }
        Ok(Response::new(pb::StatusPage { generated_at: Some(timestamp(now)), models: out }))
    }

    async fn create_webhook(&self, req: Request<pb::CreateWebhookRequest>) -> Reply<pb::WebhookEndpoint> {
        let r = req.get_ref();
        let owner = tenant(&r.tenant_id)?.map(|t| t.to_string());
        let endpoint = webhooks::create(&self.sla.pool, owner.as_deref(), &r.url, self.allow_private_webhooks).await?;
        Ok(Response::new(endpoint_to_pb(endpoint, true)))
    }

    async fn list_webhooks(&self, req: Request<pb::ListWebhooksRequest>) -> Reply<pb::ListWebhooksResponse> {
        let owner = tenant(&req.get_ref().tenant_id)?.map(|t| t.to_string());
        let endpoints = webhooks::list(&self.sla.pool, owner.as_deref()).await?;
        Ok(Response::new(pb::ListWebhooksResponse {
            endpoints: endpoints.into_iter().map(|e| endpoint_to_pb(e, false)).collect(),
        }))
    }

    async fn delete_webhook(&self, req: Request<pb::DeleteWebhookRequest>) -> Reply<pb::WebhookEndpoint> {
        let r = req.get_ref();
        let id = uuid("webhook endpoint", &r.id)?;
        let owner = tenant(&r.tenant_id)?.map(|t| t.to_string());
        Ok(Response::new(endpoint_to_pb(webhooks::delete(&self.sla.pool, id, owner.as_deref()).await?, false)))
    }

    async fn publish_event(&self, req: Request<pb::PublishEventRequest>) -> Reply<pb::PublishEventResponse> {
        let r = req.get_ref();
        let id = uuid("event", &r.id)?;
        let kind = match r.r#type.as_str() {
            events::INVOICE_FINALIZED => events::INVOICE_FINALIZED,
            events::CREDIT_NOTE_ISSUED => events::CREDIT_NOTE_ISSUED,
            other => return Err(SlaError::Invalid(format!("event type {other:?} cannot be published")).into()),
        };
        let tenant = tenant(&r.tenant_id)?.ok_or_else(|| SlaError::Invalid("tenant_id is required".into()))?;
        let data: serde_json::Value =
            serde_json::from_str(&r.data_json).map_err(|e| SlaError::Invalid(format!("data_json is not JSON: {e}")))?;
        let at = r.created_at.as_ref().and_then(instant).unwrap_or_else(Utc::now);
        let mut tx = self.sla.pool.begin().await.map_err(SlaError::from)?;
        let created = events::publish(&mut tx, id, kind, tenant.as_str(), data, at).await?;
        tx.commit().await.map_err(SlaError::from)?;
        Ok(Response::new(pb::PublishEventResponse { created }))
    }
}
