//! The targets the scheduler is held to on `bench isolation`'s figures, and
//! whether a run met them: reserved service under a spot flood as good as
//! alone, and spot filling what reserved work leaves.
//!
//! A run meets them when, in the phases with our scheduler (reserved alone
//! and under the flood):
//! - the reserved TTFT p99 under the flood is within `TTFT_P99_RATIO_MAX`
//!   of the p99 alone;
//! - at least `WITHIN_TARGET_MIN` of reserved requests got their first
//!   token within their TTFT target, in each phase;
//! - reserved tenants received at least `DELIVERED_MIN` of what they
//!   demanded, in each phase;
//! - no reserved request was shed;
//! - under the flood, spot's goodput is at least `SPOT_SHARE_MIN` of the
//!   capacity reserved work left, and useful work at least
//!   `UTILIZATION_MIN` of capacity.
//!
//! A figure that could not be measured (NaN: no reserved request got a
//! token, say) does not meet its target.

use crate::report::PhaseSummary;

pub const TTFT_P99_RATIO_MAX: f64 = 1.2;
pub const WITHIN_TARGET_MIN: f64 = 0.99;
pub const DELIVERED_MIN: f64 = 0.99;
pub const SPOT_SHARE_MIN: f64 = 0.8;
pub const UTILIZATION_MIN: f64 = 0.9;

/// One target's figure in a run, and whether it held.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: &'static str,
    /// The figure as printed ("1.07x", "99.2%", "0").
    pub shown: String,
    pub held: bool,
}

/// Every target, in the order above, for a run's phase alone and phase
/// under the flood.
pub fn check(alone: &PhaseSummary, flood: &PhaseSummary) -> Vec<Check> {
    let p99 = |s: &PhaseSummary| s.reserved_ttft_ms.map_or(f64::NAN, |q| q.p99);
    let ratio = p99(flood) / p99(alone);
    let worst = |f: fn(&PhaseSummary) -> f64| {
        let (a, b) = (f(alone), f(flood));
        if a.is_nan() || b.is_nan() { f64::NAN } else { a.min(b) }
    };
    let within = worst(|s| s.reserved_within_target);
    let delivered = worst(|s| s.reserved_delivered_over_demanded);
    let shed = alone.reserved_shed + flood.reserved_shed;
    let pct = |x: f64| if x.is_nan() { "-".to_owned() } else { format!("{:.1}%", x * 100.0) };
    // `>=` and `<=` are false for NaN: an unmeasured figure misses.
    vec![
        Check {
            name: "TTFT p99 flood/alone",
            shown: if ratio.is_nan() { "-".to_owned() } else { format!("{ratio:.2}x") },
            held: ratio <= TTFT_P99_RATIO_MAX,
        },
        Check { name: "in target", shown: pct(within), held: within >= WITHIN_TARGET_MIN },
        Check { name: "delivered", shown: pct(delivered), held: delivered >= DELIVERED_MIN },
        Check { name: "shed", shown: shed.to_string(), held: shed == 0 },
        Check {
            name: "spot of left",
            shown: pct(flood.spot_share_of_left),
            held: flood.spot_share_of_left >= SPOT_SHARE_MIN,
        },
        Check { name: "util", shown: pct(flood.utilization), held: flood.utilization >= UTILIZATION_MIN },
    ]
}

/// Whether a run met every one of its targets.
pub fn all_held(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.held)
}

/// The most consecutive runs that met every target.
pub fn longest_streak(all_held: &[bool]) -> usize {
    let mut best = 0;
    let mut current = 0;
    for &held in all_held {
        current = if held { current + 1 } else { 0 };
        best = best.max(current);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Quantiles;

    fn phase(p99: f64, within: f64, spot: f64, util: f64) -> PhaseSummary {
        PhaseSummary {
            reserved_requests: 30,
            reserved_ttft_ms: Some(Quantiles { p50: p99 / 4.0, p95: p99 / 2.0, p99 }),
            reserved_without_token: 0,
            reserved_decode_tokens_per_s_p50: Some(8.0),
            reserved_within_target: within,
            reserved_delivered_over_demanded: 1.0,
            reserved_shed: 0,
            reserved_work_per_s: 100.0,
            spot_requests: 400,
            spot_shed: 0,
            spot_goodput_per_s: 300.0,
            spot_share_of_left: spot,
            utilization: util,
            cached_prompt_share: 0.0,
        }
    }

    fn held(checks: &[Check]) -> Vec<(&'static str, bool)> {
        checks.iter().map(|c| (c.name, c.held)).collect()
    }

    #[test]
    fn a_run_at_the_thresholds_meets_every_target() {
        let alone = phase(1000.0, 1.0, f64::NAN, 0.4);
        let flood = phase(1200.0, 0.99, 0.8, 0.9);
        let checks = check(&alone, &flood);
        assert!(all_held(&checks), "{checks:?}");
        assert_eq!(checks[0].shown, "1.20x");
        assert_eq!(checks[5].shown, "90.0%");
    }

    #[test]
    fn each_figure_past_its_threshold_misses_its_own_target() {
        let alone = phase(1000.0, 1.0, f64::NAN, 0.4);
        let slow = check(&alone, &phase(1210.0, 1.0, 0.9, 0.95));
        assert_eq!(held(&slow)[0], ("TTFT p99 flood/alone", false));
        assert!(all_held(&slow[1..]));
        assert!(!all_held(&slow));
        // In target and delivered take the worse phase.
        let mut late_alone = alone.clone();
        late_alone.reserved_within_target = 0.98;
        late_alone.reserved_delivered_over_demanded = 0.5;
        late_alone.reserved_shed = 1;
        let missed = check(&late_alone, &phase(1000.0, 1.0, 0.9, 0.95));
        assert_eq!(held(&missed)[1..4], [("in target", false), ("delivered", false), ("shed", false)], "{missed:?}");
        let starved = check(&alone, &phase(1000.0, 1.0, 0.79, 0.89));
        assert_eq!(held(&starved)[4..], [("spot of left", false), ("util", false)]);
    }

    #[test]
    fn an_unmeasured_figure_misses() {
        let mut silent = phase(1000.0, 1.0, f64::NAN, 0.4);
        silent.reserved_ttft_ms = None;
        let checks = check(&silent, &phase(1000.0, f64::NAN, f64::NAN, 0.95));
        assert_eq!(checks[0], Check { name: "TTFT p99 flood/alone", shown: "-".into(), held: false });
        assert!(!checks[1].held && !checks[4].held);
    }

    #[test]
    fn the_streak_counts_consecutive_runs_that_met_everything() {
        assert_eq!(longest_streak(&[]), 0);
        assert_eq!(longest_streak(&[true, false, true, true, false]), 2);
        assert_eq!(longest_streak(&[true, true, true]), 3);
    }
}
