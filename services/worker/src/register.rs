//! A worker started with `worker.scheduler_url` announces itself to the
//! scheduler, then again every few seconds: a scheduler that restarted (and
//! forgot its workers) learns them back without anyone restarting them.
//!
//! Identity: every worker registers under an id of its own. Without
//! `worker.id` it picks one at start (`own_id`: its host name and random
//! letters), so replicas started from one configuration (`docker compose
//! --scale worker=3`) are three workers to the scheduler, not one that keeps
//! moving. It is reached at `worker.advertise_url`, else at its listen
//! address, else (listening on every interface) at the address this host
//! reaches the scheduler from (`Advertise`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reservoir_domain::WorkerId;
use reservoir_proto::v1 as pb;
use reservoir_proto::v1::scheduler_service_client::SchedulerServiceClient;
use reservoir_runtime::{InternalToken, Shutdown};

const REGISTER_EVERY: Duration = Duration::from_secs(5);
/// First retry after a failed registration (the scheduler may still be starting).
const RETRY_FIRST: Duration = Duration::from_millis(200);

/// The worker's id: `configured` (refused when not a valid id), or one of
/// its own, unique to this process.
pub fn own_id(configured: Option<&str>) -> anyhow::Result<WorkerId> {
    if let Some(id) = configured {
        return id.parse().map_err(|e| anyhow::anyhow!("worker.id: {e}"));
    }
    let hostname = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .unwrap_or_default();
    let random = uuid::Uuid::new_v4().simple().to_string();
    Ok(WorkerId::unique(hostname.trim(), &random[..8]))
}

/// Where the scheduler reaches this worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advertise {
    /// `worker.advertise_url`, or the listen address when it names one host.
    Url(String),
    /// Listening on every interface: this host's address on the route to
    /// the scheduler, at this port (found at each registration, so it
    /// follows the network the scheduler is on).
    RouteToScheduler { port: u16 },
}

impl Advertise {
    /// From the configuration and the address the worker is bound to.
    pub fn new(advertise_url: Option<String>, bound: SocketAddr) -> Advertise {
        match advertise_url {
            Some(url) => Advertise::Url(url),
            None if bound.ip().is_unspecified() => Advertise::RouteToScheduler { port: bound.port() },
            None => Advertise::Url(format!("http://{bound}")),
        }
    }

    async fn url(&self, scheduler_url: &str) -> anyhow::Result<String> {
        match self {
            Advertise::Url(url) => Ok(url.clone()),
            Advertise::RouteToScheduler { port } => {
                let ip = ip_towards(scheduler_url).await?;
                Ok(format!("http://{}", SocketAddr::new(ip, *port)))
            }
        }
    }
}

/// The local address this host sends from to reach `url`'s host: a UDP
/// socket "connected" there sends nothing, but the kernel picks the route
/// and so the source address another host can reach this one at.
async fn ip_towards(url: &str) -> anyhow::Result<IpAddr> {
    let uri: tonic::transport::Uri = url.parse()?;
    let host = uri.host().ok_or_else(|| anyhow::anyhow!("{url} names no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
    let target =
        tokio::net::lookup_host((host, port)).await?.next().ok_or_else(|| anyhow::anyhow!("{host} has no address"))?;
    let any: SocketAddr = if target.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = tokio::net::UdpSocket::bind(any).await?;
    socket.connect(target).await?;
    Ok(socket.local_addr()?.ip())
}

/// Registers `worker_id`, reached as `advertise` says, with the scheduler
/// until shutdown.
pub async fn register_with_scheduler(
    scheduler_url: String,
    worker_id: WorkerId,
    advertise: Advertise,
    token: InternalToken,
    shutdown: Shutdown,
) {
    let mut pause = RETRY_FIRST;
    let mut registered = false;
    loop {
        let answer = async {
            let url = advertise.url(&scheduler_url).await?;
            let request = pb::RegisterWorkerRequest { worker_id: worker_id.to_string(), url: url.clone() };
            let channel = tonic::transport::Endpoint::from_shared(scheduler_url.clone())?.connect().await?;
            let mut client = SchedulerServiceClient::new(token.attach(channel));
            client.register_worker(request).await.map_err(anyhow::Error::from)?;
            anyhow::Ok(url)
        };
        match tokio::time::timeout(Duration::from_secs(2), answer).await {
            Ok(Ok(url)) => {
                if !registered {
                    tracing::info!(scheduler = %scheduler_url, worker = %worker_id, %url, "registered with the scheduler");
                }
                registered = true;
                pause = REGISTER_EVERY;
            }
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".into(),
                };
                tracing::warn!(scheduler = %scheduler_url, %error, "cannot register with the scheduler; retrying");
                registered = false;
                pause = (pause * 2).min(REGISTER_EVERY);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.wait() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_from_one_configuration_get_ids_of_their_own() {
        let (a, b) = (own_id(None).expect("id"), own_id(None).expect("id"));
        assert_ne!(a, b, "same host, same (absent) setting: still two workers");
        assert_eq!(own_id(Some("w7")).expect("configured").as_str(), "w7");
        assert!(own_id(Some("w 7")).is_err(), "a configured id must be valid");
    }

    #[tokio::test]
    async fn a_worker_on_every_interface_advertises_its_address_towards_the_scheduler() {
        let bound = |ip: [u8; 4]| SocketAddr::from((ip, 50061));
        let named = Advertise::new(Some("http://w:1".into()), bound([0, 0, 0, 0]));
        assert_eq!(named.url("http://scheduler:50071").await.expect("url"), "http://w:1");
        let loopback = Advertise::new(None, bound([127, 0, 0, 1]));
        assert_eq!(loopback.url("http://127.0.0.1:50071").await.expect("url"), "http://127.0.0.1:50061");
        let any = Advertise::new(None, bound([0, 0, 0, 0]));
        assert_eq!(any, Advertise::RouteToScheduler { port: 50061 });
        // Towards a scheduler on this host the route is the loopback.
        assert_eq!(any.url("http://127.0.0.1:50071").await.expect("url"), "http://127.0.0.1:50061");
    }
}
