//! Reservation quotes: the price of reserving N weighted tokens/s of a model
//! at an SLA tier for a term, with the whole breakdown.
//!
//! ```text
//! base_price_per_hour = reservation table, graduated, at rate_tokens_per_s
//! price_per_hour      = base_price_per_hour x tier_multiplier x (1 - term_discount)
//! total_for_term      = price_per_hour prorated to the second over [starts_at, ends_at)
//! ```
//!
//! Instants are billed to the second: sub-second parts of `starts_at` and
//! `ends_at` are dropped (truncated) before anything is computed, and the
//! quote echoes the truncated instants, which the contract should store.
//!
//! A quote is a pure function of the catalog and the request (no clock, no
//! randomness), so the same catalog version and request give the same quote.

use chrono::{DateTime, SubsecRound, Utc};
use reservoir_domain::{Currency, ModelId, Money, Term, Tier, term_end};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::amount::{mul, presented, sub};
use crate::{Catalog, PricingError, TierLine, prorate};

/// What a tenant asks to reserve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "smollm2-135m-instruct"))]
    pub model: ModelId,
    /// Reserved throughput in weighted tokens per second; at least 1.
    pub rate_tokens_per_s: u32,
    pub tier: Tier,
    pub term: Term,
    pub starts_at: DateTime<Utc>,
    /// Month and half-year: omit it, or give exactly the term's end.
    /// Hourly: omit it for an open-ended contract, or give any later instant.
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
}

/// A priced reservation with its breakdown. Decimals serialize as strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Quote {
    pub catalog_version: i64,
    pub currency: Currency,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "smollm2-135m-instruct"))]
    pub model: ModelId,
    pub rate_tokens_per_s: u32,
    pub tier: Tier,
    pub term: Term,
    /// Lines of the graduated reservation table at this rate.
    pub rate_tiers: Vec<TierLine>,
    /// Sum of `rate_tiers`, per hour, before tier and term.
    pub base_price_per_hour: Decimal,
    pub tier_multiplier: Decimal,
    /// Fraction taken off for the term's commitment.
    pub term_discount: Decimal,
    /// `base_price_per_hour x tier_multiplier x (1 - term_discount)`, exact.
    pub price_per_hour: Decimal,
    /// `price_per_hour` rounded half to even to the currency's minor unit,
    /// written with exactly the minor unit's places (`0.10`).
    pub price_per_hour_rounded: Money,
    /// Truncated to the second.
    pub starts_at: DateTime<Utc>,
    /// `None` for an open-ended hourly contract.
    pub ends_at: Option<DateTime<Utc>>,
    /// Whole seconds from `starts_at` to `ends_at`; `None` when open-ended.
    pub term_seconds: Option<i64>,
    /// `price_per_hour x term_seconds / 3600`, at 12 places; `None` when open-ended.
    pub total_for_term: Option<Money>,
    /// `total_for_term` rounded half to even to the currency's minor unit,
    /// written with exactly the minor unit's places.
    pub total_for_term_rounded: Option<Money>,
}

/// Prices `req` with `catalog` (validated first). Errors are meant for the
/// tenant: an unknown model, a zero rate, an `ends_at` that does not fit the
/// term, an invalid catalog, or an amount too large to compute.
pub fn quote(catalog: &Catalog, req: &QuoteRequest) -> Result<Quote, PricingError> {
    quote_in(catalog, req, catalog.currency)
}

/// [`quote`] in `currency`: the catalog's own, or one of its other price
/// lists (see [`Catalog::model_prices_in`]).
pub fn quote_in(catalog: &Catalog, req: &QuoteRequest, currency: Currency) -> Result<Quote, PricingError> {
    if req.rate_tokens_per_s == 0 {
        return Err(PricingError::request("rate_tokens_per_s", "must be at least 1 token/s"));
    }
    catalog.validate()?;
    let prices = catalog.model_prices_in(&req.model, currency)?;
    let rate = prices.reservation.price(Decimal::from(req.rate_tokens_per_s))?;
    let tier_multiplier = catalog.tier_multiplier(req.tier)?;
    let term_discount = catalog.term_discount(req.term)?;

    // Multiplier first, then discount, each step rounded at 12 places by the
    // crate's rule. Nothing is lost in practice: the built-in prices need
    // 4 + 1 + 2 = 7 places (0.0090 x 2.5 x 0.80).
    let keep = sub(Decimal::ONE, term_discount, "term discount")?;
    let with_tier = mul(rate.total, tier_multiplier, "price per hour")?;
    let price_per_hour = mul(with_tier, keep, "price per hour")?;

    let (starts_at, ends_at) = term_bounds(req)?;
    let term_seconds = ends_at.map(|end| (end - starts_at).num_seconds());
    let total_for_term = match term_seconds {
        Some(seconds) => Some(Money::new(prorate(price_per_hour, seconds)?, currency)),
        None => None,
    };

    Ok(Quote {
        catalog_version: catalog.version,
        currency,
        model: req.model.clone(),
        rate_tokens_per_s: req.rate_tokens_per_s,
        tier: req.tier,
        term: req.term,
        rate_tiers: rate.lines,
        base_price_per_hour: rate.total,
        tier_multiplier,
        term_discount,
        price_per_hour,
        price_per_hour_rounded: presented(Money::new(price_per_hour, currency)),
        starts_at,
        ends_at,
        term_seconds,
        total_for_term_rounded: total_for_term.map(presented),
        total_for_term,
    })
}

/// The term's instants, truncated to the second, checked against the term.
fn term_bounds(req: &QuoteRequest) -> Result<(DateTime<Utc>, Option<DateTime<Utc>>), PricingError> {
    let starts_at = req.starts_at.trunc_subsecs(0);
    let ends_at = req.ends_at.map(|e| e.trunc_subsecs(0));
    match term_end(req.term, starts_at)? {
        // Hourly: open-ended, or any later end.
        None => match ends_at {
            Some(end) if end <= starts_at => Err(PricingError::request(
                "ends_at",
                format!("must be at least one second after starts_at ({})", rfc3339(starts_at)),
            )),
            other => Ok((starts_at, other)),
        },
        // Committed terms last exactly their calendar months.
        Some(expected) => match ends_at {
            Some(end) if end != expected => Err(PricingError::request(
                "ends_at",
                format!(
                    "a {} term starting at {} ends at {}: omit ends_at or send exactly that instant, got {}",
                    req.term,
                    rfc3339(starts_at),
                    rfc3339(expected),
                    rfc3339(end)
                ),
            )),
            _ => Ok((starts_at, Some(expected))),
        },
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rust_decimal_macros::dec;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    fn req(rate: u32, tier: Tier, term: Term) -> QuoteRequest {
        QuoteRequest {
            model: "smollm2-135m-instruct".parse().unwrap(),
            rate_tokens_per_s: rate,
            tier,
            term,
            starts_at: at(2026, 1, 15),
            ends_at: None,
        }
    }

    fn usd(a: Decimal) -> Money {
        Money::new(a, Currency::USD)
    }

    #[test]
    fn enterprise_month_across_all_rate_tiers() {
        let q = quote(&Catalog::builtin_default(), &req(1500, Tier::Enterprise, Term::Month)).unwrap();
        // 100 x 0.0100 + 900 x 0.0090 + 500 x 0.0080 = 1 + 8.1 + 4 = 13.1 per hour
        let lines: Vec<_> = q.rate_tiers.iter().map(|l| (l.quantity, l.amount)).collect();
        assert_eq!(lines, vec![(dec!(100), dec!(1)), (dec!(900), dec!(8.1)), (dec!(500), dec!(4))]);
        assert_eq!(q.base_price_per_hour, dec!(13.1));
        // 13.1 x 2.5 x (1 - 0.20) = 32.75 x 0.8 = 26.2 per hour
        assert_eq!((q.tier_multiplier, q.term_discount), (dec!(2.5), dec!(0.20)));
        assert_eq!(q.price_per_hour, dec!(26.2));
        // Jan 15 -> Feb 15: 31 days = 744 h = 2,678,400 s; 26.2 x 744 = 19492.8
        assert_eq!(q.ends_at, Some(at(2026, 2, 15)));
        assert_eq!(q.term_seconds, Some(2_678_400));
        assert_eq!(q.total_for_term, Some(usd(dec!(19492.8))));
        assert_eq!(q.total_for_term_rounded, Some(usd(dec!(19492.80))));
        assert_eq!(q.catalog_version, 1);
    }

    #[test]
    fn premium_half_year_rounds_only_the_presented_totals() {
        let q = quote(&Catalog::builtin_default(), &req(7, Tier::Premium, Term::HalfYear)).unwrap();
        // 7 x 0.0100 = 0.07; x 1.5 = 0.105; x (1 - 0.35) = 0.06825 per hour
        assert_eq!(q.price_per_hour, dec!(0.06825));
        // 0.06825 -> 0.07 at cents (not a tie)
        assert_eq!(q.price_per_hour_rounded, usd(dec!(0.07)));
        // Jan 15 -> Jul 15 2026: 181 days = 4344 h; 0.06825 x 4344 = 296.478
        assert_eq!(q.term_seconds, Some(4344 * 3600));
        assert_eq!(q.total_for_term, Some(usd(dec!(296.478))));
        assert_eq!(q.total_for_term_rounded, Some(usd(dec!(296.48))));
    }

    #[test]
    fn hourly_open_ended_has_only_a_price_per_hour() {
        let q = quote(&Catalog::builtin_default(), &req(10, Tier::Standard, Term::Hourly)).unwrap();
        // 10 x 0.0100 x 1.0 x (1 - 0) = 0.1
        assert_eq!(q.price_per_hour, dec!(0.1));
        assert_eq!((q.ends_at, q.term_seconds, q.total_for_term, q.total_for_term_rounded), (None, None, None, None));
    }

    #[test]
    fn hourly_with_an_end_is_prorated_to_the_second() {
        let mut r = req(10, Tier::Standard, Term::Hourly);
        // 90 minutes and 1 second, with sub-second parts that are truncated.
        r.starts_at = at(2026, 1, 15) + chrono::Duration::milliseconds(900);
        r.ends_at = Some(at(2026, 1, 15) + chrono::Duration::milliseconds(5_401_999));
        let q = quote(&Catalog::builtin_default(), &r).unwrap();
        assert_eq!(q.starts_at, at(2026, 1, 15));
        assert_eq!(q.term_seconds, Some(5401));
        // 0.1 x 5401 / 3600 = 0.150027777... -> 0.150027777778; at cents 0.15
        assert_eq!(q.total_for_term, Some(usd(dec!(0.150027777778))));
        assert_eq!(q.total_for_term_rounded, Some(usd(dec!(0.15))));
    }

    #[test]
    fn requests_that_do_not_fit_the_term_are_refused_clearly() {
        let catalog = Catalog::builtin_default();
        let err = quote(&catalog, &req(0, Tier::Standard, Term::Month)).unwrap_err();
        assert_eq!(err.to_string(), "invalid rate_tokens_per_s: must be at least 1 token/s");

        let mut r = req(10, Tier::Standard, Term::Month);
        r.ends_at = Some(at(2026, 2, 14));
        let err = quote(&catalog, &r).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid ends_at: a month term starting at 2026-01-15T00:00:00Z ends at 2026-02-15T00:00:00Z: \
             omit ends_at or send exactly that instant, got 2026-02-14T00:00:00Z"
        );
        r.ends_at = Some(at(2026, 2, 15));
        assert!(quote(&catalog, &r).is_ok());

        let mut r = req(10, Tier::Standard, Term::Hourly);
        r.ends_at = Some(r.starts_at + chrono::Duration::milliseconds(500));
        let err = quote(&catalog, &r).unwrap_err().to_string();
        assert!(err.contains("at least one second after starts_at"), "{err}");

        let mut r = req(10, Tier::Standard, Term::Hourly);
        r.model = "unknown-model".parse().unwrap();
        assert!(matches!(quote(&catalog, &r), Err(PricingError::UnknownModel { .. })));

        let mut broken = catalog.clone();
        broken.version = 0;
        assert!(matches!(
            quote(&broken, &req(1, Tier::Standard, Term::Hourly)),
            Err(PricingError::InvalidCatalog { .. })
        ));

        let mut r = req(10, Tier::Standard, Term::HalfYear);
        r.starts_at = DateTime::<Utc>::MAX_UTC;
        assert!(matches!(quote(&catalog, &r), Err(PricingError::Domain(_))));
    }

    #[test]
    fn the_same_catalog_version_and_request_give_the_same_quote() {
        let catalog = Catalog::builtin_default();
        let r = req(4321, Tier::Premium, Term::Month);
        let a = serde_json::to_string(&quote(&catalog, &r).unwrap()).unwrap();
        let reparsed: Catalog = serde_json::from_str(&serde_json::to_string(&catalog).unwrap()).unwrap();
        let b = serde_json::to_string(&quote(&reparsed, &r).unwrap()).unwrap();
        assert_eq!(a, b);
    }

    /// The REST API documents decimals as strings, as they are sent.
    #[cfg(feature = "openapi")]
    #[test]
    fn openapi_schemas_show_decimals_as_strings() {
        let schema = serde_json::to_value(<Quote as utoipa::PartialSchema>::schema()).unwrap();
        let props = &schema["properties"];
        assert_eq!(props["price_per_hour"]["type"], "string", "{schema}");
        assert_eq!(props["model"]["type"], "string", "{schema}");
        let schema = serde_json::to_value(<Catalog as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(schema["properties"]["models"]["type"], "object", "{schema}");
    }

    #[test]
    fn quotes_serialize_decimals_as_strings() {
        let q = quote(&Catalog::builtin_default(), &req(1500, Tier::Enterprise, Term::Month)).unwrap();
        let v: serde_json::Value = serde_json::to_value(&q).unwrap();
        assert_eq!(v["price_per_hour"], "26.2");
        assert_eq!(v["base_price_per_hour"], "13.1");
        assert_eq!(v["total_for_term_rounded"]["amount"], "19492.80");
        assert_eq!(v["total_for_term"]["currency"], "USD");
        assert_eq!(v["rate_tiers"][1]["unit_price"], "0.0090");
        assert_eq!(v["starts_at"], "2026-01-15T00:00:00Z");
        assert_eq!(v["term"], "month");
        let back: Quote = serde_json::from_value(v).unwrap();
        assert_eq!(back, q);
    }
}
