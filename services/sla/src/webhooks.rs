//! Webhook endpoints and their deliveries.
//!
//! Each event is POSTed as JSON to every endpoint it concerns, at least once:
//! a delivery is retried with exponential backoff until the receiver
//! answers 2xx or `ATTEMPTS_MAX` tries have failed. Headers:
//!
//! - `Reservoir-Event-Id`: the event id (the same on every retry: dedupe on it);
//! - `Reservoir-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`,
//!   so a receiver checks the body and refuses old replays by `t`.
//!
//! Tenant endpoints must not point into the platform's own network: a URL
//! whose host resolves to a loopback, private or link-local address is
//! refused (at registration and again at each delivery, on the address
//! actually connected to) unless `allow_private_targets` is set.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::{Result, SlaError};

/// Tries per delivery before it is given up (about a day of backoff).
pub const ATTEMPTS_MAX: i32 = 16;
/// Deliveries taken per round.
const BATCH: i64 = 32;
/// Deliveries POSTed at once: one slow receiver must not hold up the others.
const CONCURRENT_POSTS: usize = 8;
/// How long one POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// Endpoints one owner may register.
pub const ENDPOINTS_PER_OWNER_MAX: i64 = 10;
pub const URL_BYTES_MAX: usize = 2048;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Endpoint {
    pub id: Uuid,
    pub tenant_id: Option<String>,
    pub url: String,
    pub secret: String,
    pub created_at: DateTime<Utc>,
}

/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast()
                // 100.64.0.0/10, carrier-grade NAT
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xC0) == 64)
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

/// Checks a URL's form: http or https, a host, no credentials, bounded.
pub fn check_url(url: &str) -> Result<reqwest::Url> {
    let invalid = |why: &str| SlaError::Invalid(format!("url {why}"));
    if url.len() > URL_BYTES_MAX {
        return Err(invalid(&format!("must be at most {URL_BYTES_MAX} bytes")));
    }
    let parsed = reqwest::Url::parse(url).map_err(|_| invalid("is not a valid URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("must use http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("must name a host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("must not hold credentials"));
    }
    Ok(parsed)
}

/// Resolves `url`'s host; refuses private targets unless allowed.
async fn resolve(url: &reqwest::Url, allow_private: bool) -> Result<Vec<SocketAddr>> {
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|_| SlaError::Invalid(format!("url host {host:?} does not resolve")))?
        .collect();
    if addrs.is_empty() {
        return Err(SlaError::Invalid(format!("url host {host:?} does not resolve")));
    }
    if !allow_private && addrs.iter().any(|a| is_private(a.ip())) {
        return Err(SlaError::Invalid(
            "url must point to a public address (loopback, private and link-local addresses are refused)".into(),
        ));
    }
    Ok(addrs)
}

pub async fn create(pool: &PgPool, tenant: Option<&str>, url: &str, allow_private: bool) -> Result<Endpoint> {
    let parsed = check_url(url)?;
    resolve(&parsed, allow_private).await?;
    let mut tx = pool.begin().await?;
    // One owner's registrations are serialized, so the bound holds under races.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('sla.webhooks:' || coalesce($1, '')))")
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sla.webhook_endpoints WHERE deleted_at IS NULL AND tenant_id IS NOT DISTINCT FROM $1",
    )
    .bind(tenant)
    .fetch_one(&mut *tx)
    .await?;
    if count >= ENDPOINTS_PER_OWNER_MAX {
        return Err(SlaError::Invalid(format!(
            "at most {ENDPOINTS_PER_OWNER_MAX} webhook endpoints; delete one first"
        )));
    }
    // 244 random bits from two v4 UUIDs (getrandom underneath).
    let secret = format!("whsec_{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let endpoint = sqlx::query_as(
        "INSERT INTO sla.webhook_endpoints (id, tenant_id, url, secret) VALUES ($1, $2, $3, $4) \
         RETURNING id, tenant_id, url, secret, created_at",
    )
    .bind(Uuid::now_v7())
    .bind(tenant)
    .bind(parsed.as_str())
    .bind(secret)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(endpoint)
}

pub async fn list(pool: &PgPool, tenant: Option<&str>) -> Result<Vec<Endpoint>> {
    Ok(sqlx::query_as(
        "SELECT id, tenant_id, url, secret, created_at FROM sla.webhook_endpoints \
         WHERE deleted_at IS NULL AND tenant_id IS NOT DISTINCT FROM $1 ORDER BY created_at",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await?)
}

/// Deletes an endpoint of `tenant` (`None`: an admin's); its pending
/// deliveries stop.
pub async fn delete(pool: &PgPool, id: Uuid, tenant: Option<&str>) -> Result<Endpoint> {
    sqlx::query_as(
        "UPDATE sla.webhook_endpoints SET deleted_at = now() \
         WHERE id = $1 AND deleted_at IS NULL AND tenant_id IS NOT DISTINCT FROM $2 \
         RETURNING id, tenant_id, url, secret, created_at",
    )
    .bind(id)
    .bind(tenant)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| SlaError::NotFound(format!("webhook endpoint {id}")))
}

/// Backoff after `attempts` failed tries: 10 s doubling, at most 2 hours.
fn backoff(attempts: i32) -> chrono::TimeDelta {
    let seconds = 10i64.saturating_mul(1i64 << attempts.clamp(0, 10));
    chrono::TimeDelta::seconds(seconds.min(2 * 3600))
}

type Due = (Uuid, Uuid, i32, String, String, serde_json::Value);

/// One round: takes due deliveries (leasing them for a minute, so a crash
/// only delays them), POSTs each, and records the outcome. Returns how many
/// were delivered.
pub async fn deliver_due(pool: &PgPool, allow_private: bool) -> Result<usize> {
    let due: Vec<Due> = sqlx::query_as(
        "WITH taken AS ( \
           SELECT d.event_id, d.endpoint_id FROM sla.deliveries d \
           JOIN sla.webhook_endpoints e ON e.id = d.endpoint_id \
           WHERE d.delivered_at IS NULL AND d.next_attempt_at <= now() AND d.attempts < $1 AND e.deleted_at IS NULL \
           ORDER BY d.next_attempt_at LIMIT $2 FOR UPDATE OF d SKIP LOCKED) \
         UPDATE sla.deliveries d SET next_attempt_at = now() + interval '1 minute' FROM taken, sla.webhook_endpoints e, sla.events v \
         WHERE d.event_id = taken.event_id AND d.endpoint_id = taken.endpoint_id AND e.id = d.endpoint_id AND v.id = d.event_id \
         RETURNING d.event_id, d.endpoint_id, d.attempts, e.url, e.secret, v.payload",
    )
    .bind(ATTEMPTS_MAX)
    .bind(BATCH)
    .fetch_all(pool)
    .await?;
    let posts = due.into_iter().map(|(event, endpoint, attempts, url, secret, payload)| async move {
        let outcome = post(&url, &secret, event, &payload, allow_private).await;
        (event, endpoint, attempts, outcome)
    });
    let outcomes: Vec<_> = futures_util::stream::iter(posts).buffer_unordered(CONCURRENT_POSTS).collect().await;
    let mut delivered = 0;
    for (event, endpoint, attempts, outcome) in outcomes {
        let (ok, status, error) = match outcome {
            Ok(status) if (200..300).contains(&status) => (true, Some(i32::from(status)), None),
            Ok(status) => (false, Some(i32::from(status)), Some(format!("answered {status}"))),
            Err(e) => (false, None, Some(e)),
        };
        delivered += usize::from(ok);
        sqlx::query(
            "UPDATE sla.deliveries SET attempts = attempts + 1, last_status = $3, last_error = $4, \
               delivered_at = CASE WHEN $5 THEN now() END, next_attempt_at = now() + $6 \
             WHERE event_id = $1 AND endpoint_id = $2",
        )
        .bind(event)
        .bind(endpoint)
        .bind(status)
        .bind(error)
        .bind(ok)
        .bind(backoff(attempts))
        .execute(pool)
        .await?;
    }
    Ok(delivered)
}

/// POSTs one event, connecting only to the addresses checked.
async fn post(
    url: &str,
    secret: &str,
    event: Uuid,
    payload: &serde_json::Value,
    allow_private: bool,
) -> Result<u16, String> {
    let parsed = check_url(url).map_err(|e| e.to_string())?;
    let addrs = resolve(&parsed, allow_private).await.map_err(|e| e.to_string())?;
    let host = parsed.host_str().unwrap_or_default().to_owned();
    let client = reqwest::Client::builder()
        .timeout(POST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .resolve_to_addrs(&host, &addrs)
        .build()
        .map_err(|e| format!("client: {e}"))?;
    let body = serde_json::to_vec(payload).map_err(|e| format!("body: {e}"))?;
    let response = client
        .post(parsed)
        .header("content-type", "application/json")
        .header("reservoir-event-id", event.to_string())
        .header("reservoir-signature", signature(secret, Utc::now().timestamp(), &body))
        .body(body)
        .send()
        .await
        .map_err(|e| format!("post: {e}"))?;
    Ok(response.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently with Python's hmac module
        // (python3 -c "import hmac,hashlib;print(hmac.new(b'whsec_x',b'1700000000.{}',hashlib.sha256).hexdigest())").
        assert_eq!(
            signature("whsec_x", 1_700_000_000, b"{}"),
            "t=1700000000,v1=be8cb8325f2202445260a855532f967e30ad2a9394ce28da66ee02880ddcb661"
        );
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("https://example.com/hook").is_ok());
        assert!(check_url("ftp://example.com").is_err());
        assert!(check_url("https://user:pw@example.com").is_err());
        assert!(check_url("not a url").is_err());
        assert!(check_url(&format!("https://example.com/{}", "a".repeat(URL_BYTES_MAX))).is_err());
    }

    #[test]
    fn private_addresses_are_recognised() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "0.0.0.0",
        ] {
            assert!(is_private(private.parse().expect("address")), "{private}");
        }
        for public in ["93.184.216.34", "2606:4700::1111", "100.128.0.1"] {
            assert!(!is_private(public.parse().expect("address")), "{public}");
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0).num_seconds(), 10);
        assert_eq!(backoff(3).num_seconds(), 80);
        assert_eq!(backoff(15).num_seconds(), 7200);
    }
}
