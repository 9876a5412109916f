//! Prometheus metrics of the scheduler, served as text at `/metrics` on
//! their own HTTP port (`scheduler.metrics_listen`).

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// TTFT buckets in seconds: the SLA tiers' targets (0.5, 1, 2 s) are bounds.
const TTFT_BUCKETS_S: &[f64] = &[0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];

pub struct Metrics {
    registry: Registry,
    pub queue_depth: IntGaugeVec,
    pub admitted: IntCounterVec,
    pub shed: IntCounterVec,
    pub deadline_passed: IntCounterVec,
    pub ttft_seconds: HistogramVec,
    pub worker_kv_used_ratio: GaugeVec,
    pub worker_tokens_per_s: GaugeVec,
    pub worker_up: IntGaugeVec,
    pub tokenizer_known: IntGaugeVec,
    pub prompt_tokens_at_admission: IntCounterVec,
    pub contracts: super::directory::StaleSignals,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("reservoir_scheduler".into()), None)?;
        let queue_depth =
            IntGaugeVec::new(Opts::new("queue_depth", "Requests waiting, per model and class"), &["model", "class"])?;
        let admitted = IntCounterVec::new(Opts::new("admitted_total", "Requests admitted, per class"), &["class"])?;
        let shed = IntCounterVec::new(Opts::new("shed_total", "Requests shed (429), per class"), &["class"])?;
        let deadline_passed = IntCounterVec::new(
            Opts::new("queue_deadline_passed_total", "Requests answered 503 after their queue deadline, per class"),
            &["class"],
        )?;
        let ttft_seconds = HistogramVec::new(
            HistogramOpts::new("ttft_seconds", "Time to first token from arrival, per class")
                .buckets(TTFT_BUCKETS_S.to_vec()),
            &["class"],
        )?;
        let worker_kv_used_ratio =
            GaugeVec::new(Opts::new("worker_kv_used_ratio", "Share of a worker's KV blocks in use"), &["worker"])?;
        let worker_tokens_per_s = GaugeVec::new(
            Opts::new("worker_tokens_per_s", "Tokens a worker processed per second, recently"),
            &["worker"],
        )?;
        let worker_up =
            IntGaugeVec::new(Opts::new("worker_up", "1 while a worker's stats stream is alive"), &["worker"])?;
        let tokenizer_known =
            IntGaugeVec::new(Opts::new("tokenizer_known", "1 once a worker taught the model's tokenizer"), &["model"])?;
        let prompt_tokens_at_admission = IntCounterVec::new(
            Opts::new(
                "prompt_tokens_at_admission_total",
                "Admitted prompts, by how their tokens were found (counted, estimated)",
            ),
            &["how"],
        )?;
        let contracts = super::directory::StaleSignals {
            stale_admissions: IntCounter::new(
                "contracts_stale_admissions_total",
                "Admissions decided on contracts known from before the contracts service became unreachable",
            )?,
            unreachable: IntGauge::new("contracts_unreachable", "1 while the last contracts lookup failed")?,
        };
        for c in [
            Box::new(contracts.stale_admissions.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(contracts.unreachable.clone()),
            Box::new(queue_depth.clone()),
            Box::new(admitted.clone()),
            Box::new(shed.clone()),
            Box::new(deadline_passed.clone()),
            Box::new(ttft_seconds.clone()),
            Box::new(worker_kv_used_ratio.clone()),
            Box::new(worker_tokens_per_s.clone()),
            Box::new(worker_up.clone()),
            Box::new(tokenizer_known.clone()),
            Box::new(prompt_tokens_at_admission.clone()),
        ] {
            registry.register(c)?;
        }
        Ok(Metrics {
            registry,
            queue_depth,
            admitted,
            shed,
            deadline_passed,
            ttft_seconds,
            worker_kv_used_ratio,
            worker_tokens_per_s,
            worker_up,
            tokenizer_known,
            prompt_tokens_at_admission,
            contracts,
        })
    }

    /// Where other parts of the scheduler (the usage log) add their metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}
