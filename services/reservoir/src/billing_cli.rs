//! `reservoir billing run --period 2026-11`: closes a month through the
//! running billing service, as the admin API does.

use reservoir_proto::v1 as pb;
use reservoir_proto::v1::billing_service_client::BillingServiceClient;

use crate::Config;

#[derive(clap::Subcommand)]
pub enum BillingCommand {
    /// Draft every tenant's invoice of an ended month (again: the same
    /// invoices, recomputed while they are drafts).
    Run {
        /// The month, YYYY-MM.
        #[arg(long)]
        period: String,
        /// The billing service's gRPC URL; by default the one `reservoir up`
        /// wrote to its endpoints file, else `billing.listen`.
        #[arg(long)]
        url: Option<String>,
    },
}

pub async fn run(config: &Config, command: &BillingCommand) -> anyhow::Result<()> {
    let BillingCommand::Run { period, url } = command;
    let period: reservoir_domain::Period = period.parse()?;
    let url = match url {
        Some(url) => url.clone(),
        None => running_url(config).unwrap_or_else(|| format!("http://{}", config.billing.listen)),
    };
    // `reservoir up` keeps the internal token in its state folder.
    let token = match config.internal.token() {
        t if t.is_set() => t,
        _ => {
            let path = config.state_dir.join("internal-token");
            let secret = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("no internal token set and {} unreadable: {e}", path.display()))?;
            reservoir_runtime::InternalToken::new(Some(secret.trim()))
        }
    };
    let channel = reservoir_runtime::grpc::client_channel(&url, std::time::Duration::from_secs(600))?;
    let mut client = BillingServiceClient::new(token.attach(channel));
    let request = pb::RunPeriodRequest { period: period.to_string(), actor: "cli".into() };
    let report = client
        .run_period(request)
        .await
        .map_err(|status| anyhow::anyhow!("billing run for {period} failed: {}", status.message()))?
        .into_inner();
    println!(
        "{}: {} tenants, {} drafts created or recomputed, {} already finalized",
        report.period, report.tenants, report.drafted, report.already_final
    );
    Ok(())
}

fn running_url(config: &Config) -> Option<String> {
    let text = std::fs::read_to_string(config.state_dir.join("endpoints.json")).ok()?;
    let endpoints: serde_json::Value = serde_json::from_str(&text).ok()?;
    endpoints["billing"].as_str().filter(|u| !u.is_empty()).map(str::to_owned)
}
