//! `reservoir healthcheck`: the probe container health checks run, so the
//! image needs no extra tools.

use std::time::Duration;

use anyhow::Context;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const TIMEOUT: Duration = Duration::from_secs(3);

pub async fn run(url: &str, grpc_service: Option<&str>) -> anyhow::Result<()> {
    match grpc_service {
        Some(service) => {
            let channel = tonic::transport::Endpoint::from_shared(url.to_owned())?
                .connect_timeout(TIMEOUT)
                .timeout(TIMEOUT)
                .connect()
                .await
                .with_context(|| format!("connecting to {url}"))?;
            let status = HealthClient::new(channel)
                .check(HealthCheckRequest { service: service.to_owned() })
                .await?
                .into_inner()
                .status;
            anyhow::ensure!(status == ServingStatus::Serving as i32, "{service} is not serving");
        }
        None => {
            let response = reqwest::Client::builder().timeout(TIMEOUT).build()?.get(url).send().await?;
            anyhow::ensure!(response.status().is_success(), "{url} answered {}", response.status());
        }
    }
    println!("healthy");
    Ok(())
}
