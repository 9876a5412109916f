//! The typed quote and catalog on the wire <-> the pricing crate's `Quote`
//! and `Catalog`.
//!
//! Every decimal is written with `Decimal`'s `Display`, which keeps its
//! scale ("0.0100" stays "0.0100", "26.2" stays "26.2"), and read back with
//! the plain-decimal rule below, so an amount crosses the wire exactly as the
//! pricing crate computed it: proto -> domain -> proto is the identity.
//! Reading validates the shape (decimals, enums, ids, no entry twice); the
//! pricing rules themselves (bounds increasing, discounts below 1, ...) stay
//! in `Catalog::validate`, which the contracts service runs on publish.

use std::collections::BTreeMap;

use prost_types::Timestamp;
use reservoir_domain::{Currency, DomainError, ModelId, Money};
use reservoir_pricing::{Catalog, ModelPrices, PriceTier, Quote, ReservationTerms, TierLine, TierMode, TierTable};
use rust_decimal::Decimal;

use crate::enums::{term_from_pb, tier_from_pb};
use crate::time::{instant, timestamp};
use crate::v1 as pb;

type DateTime = chrono::DateTime<chrono::Utc>;

/// A non-negative decimal written plainly: digits, optionally a point and
/// more digits (no sign, exponent or spaces), as the API documents.
pub fn plain_decimal(s: &str) -> Option<Decimal> {
    let (whole, fraction) = s.split_once('.').unwrap_or((s, "0"));
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return None;
    }
    s.parse().ok()
}

fn decimal(what: &'static str, field: &str, s: &str) -> Result<Decimal, DomainError> {
    plain_decimal(s).ok_or_else(|| {
        DomainError::invalid(what, format!("{field} must be a decimal number such as \"0.25\", got {s:?}"))
    })
}

fn optional_decimal(what: &'static str, field: &str, s: Option<&str>) -> Result<Option<Decimal>, DomainError> {
    s.map(|s| decimal(what, field, s)).transpose()
}

fn required_instant(what: &'static str, field: &str, t: Option<&Timestamp>) -> Result<DateTime, DomainError> {
    t.and_then(instant)
        .ok_or_else(|| DomainError::invalid(what, format!("{field} is required and must be a valid instant")))
}

fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl From<&TierLine> for pb::TierLine {
    fn from(l: &TierLine) -> Self {
        pb::TierLine {
            tier_index: u32_of(l.tier_index),
            up_to: l.up_to.map(|d| d.to_string()),
            quantity: l.quantity.to_string(),
            unit_price: l.unit_price.to_string(),
            flat_fee: l.flat_fee.to_string(),
            amount: l.amount.to_string(),
        }
    }
}

fn tier_line(i: usize, l: &pb::TierLine) -> Result<TierLine, DomainError> {
    let d = |name: &str, s: &str| decimal("quote", &format!("rate_tiers[{i}].{name}"), s);
    Ok(TierLine {
        tier_index: l.tier_index as usize,
        up_to: optional_decimal("quote", &format!("rate_tiers[{i}].up_to"), l.up_to.as_deref())?,
        quantity: d("quantity", &l.quantity)?,
        unit_price: d("unit_price", &l.unit_price)?,
        flat_fee: d("flat_fee", &l.flat_fee)?,
        amount: d("amount", &l.amount)?,
    })
}

/// Amounts that are `Money` in the domain travel as bare strings: every one
/// is in the quote's currency.
impl From<&Quote> for pb::Quote {
    fn from(q: &Quote) -> Self {
        pb::Quote {
            catalog_version: q.catalog_version,
            currency: q.currency.to_string(),
            model: q.model.to_string(),
            rate_tokens_per_s: q.rate_tokens_per_s,
            tier: pb::Tier::from(q.tier).into(),
            term: pb::Term::from(q.term).into(),
            rate_tiers: q.rate_tiers.iter().map(Into::into).collect(),
            base_price_per_hour: q.base_price_per_hour.to_string(),
            tier_multiplier: q.tier_multiplier.to_string(),
            term_discount: q.term_discount.to_string(),
            price_per_hour: q.price_per_hour.to_string(),
            price_per_hour_rounded: q.price_per_hour_rounded.amount.to_string(),
            starts_at: Some(timestamp(q.starts_at)),
            ends_at: q.ends_at.map(timestamp),
            term_seconds: q.term_seconds,
            total_for_term: q.total_for_term.map(|m| m.amount.to_string()),
            total_for_term_rounded: q.total_for_term_rounded.map(|m| m.amount.to_string()),
        }
    }
}

impl TryFrom<pb::Quote> for Quote {
    type Error = DomainError;

    fn try_from(q: pb::Quote) -> Result<Self, DomainError> {
        let currency: Currency = q.currency.parse()?;
        let d = |field: &str, s: &str| decimal("quote", field, s);
        let money = |field: &str, s: Option<&str>| {
            Ok::<_, DomainError>(optional_decimal("quote", field, s)?.map(|a| Money::new(a, currency)))
        };
        Ok(Quote {
            catalog_version: q.catalog_version,
            currency,
            model: q.model.parse()?,
            rate_tokens_per_s: q.rate_tokens_per_s,
            tier: tier_from_pb("tier", q.tier)?,
            term: term_from_pb("term", q.term)?,
            rate_tiers: q.rate_tiers.iter().enumerate().map(|(i, l)| tier_line(i, l)).collect::<Result<_, _>>()?,
            base_price_per_hour: d("base_price_per_hour", &q.base_price_per_hour)?,
            tier_multiplier: d("tier_multiplier", &q.tier_multiplier)?,
            term_discount: d("term_discount", &q.term_discount)?,
            price_per_hour: d("price_per_hour", &q.price_per_hour)?,
            price_per_hour_rounded: Money::new(d("price_per_hour_rounded", &q.price_per_hour_rounded)?, currency),
            starts_at: required_instant("quote", "starts_at", q.starts_at.as_ref())?,
            ends_at: q.ends_at.as_ref().map(|t| required_instant("quote", "ends_at", Some(t))).transpose()?,
            term_seconds: q.term_seconds,
            total_for_term: money("total_for_term", q.total_for_term.as_deref())?,
            total_for_term_rounded: money("total_for_term_rounded", q.total_for_term_rounded.as_deref())?,
        })
    }
}

impl From<&TierTable> for pb::TierTable {
    fn from(t: &TierTable) -> Self {
        let mode = match t.mode {
            TierMode::Graduated => pb::TierMode::Graduated,
            TierMode::Volume => pb::TierMode::Volume,
        };
        let tiers = t
            .tiers
            .iter()
            .map(|p| pb::PriceTier {
                up_to: p.up_to.map(|d| d.to_string()),
                unit_price: p.unit_price.to_string(),
                flat_fee: p.flat_fee.to_string(),
            })
            .collect();
        pb::TierTable { mode: mode.into(), tiers }
    }
}

/// `name` is the table's path in the catalog, for messages
/// (`models["m"].reservation`).
fn tier_table(name: &str, t: Option<&pb::TierTable>) -> Result<TierTable, DomainError> {
    let t = t.ok_or_else(|| DomainError::invalid("catalog", format!("{name} is required")))?;
    let mode = match t.mode() {
        pb::TierMode::Graduated => TierMode::Graduated,
        pb::TierMode::Volume => TierMode::Volume,
        pb::TierMode::Unspecified => {
            return Err(DomainError::invalid("catalog", format!("{name}.mode is required: graduated or volume")));
        }
    };
    let mut tiers = Vec::with_capacity(t.tiers.len());
    for (i, p) in t.tiers.iter().enumerate() {
        let field = |f: &str| format!("{name}.tiers[{i}].{f}");
        // proto3's empty string is "not given": no flat fee, as in the JSON form.
        let flat_fee = if p.flat_fee.is_empty() { "0" } else { p.flat_fee.as_str() };
        tiers.push(PriceTier {
            up_to: optional_decimal("catalog", &field("up_to"), p.up_to.as_deref())?,
            unit_price: decimal("catalog", &field("unit_price"), &p.unit_price)?,
            flat_fee: decimal("catalog", &field("flat_fee"), flat_fee)?,
        });
    }
    Ok(TierTable { mode, tiers })
}

/// What billing and the SLA need of a stored reservation to price it.
pub fn reservation_terms(r: &pb::Reservation) -> Result<ReservationTerms, DomainError> {
    let starts_at = r
        .starts_at
        .as_ref()
        .and_then(instant)
        .ok_or_else(|| DomainError::invalid("reservation", "starts_at is missing"))?;
    Ok(ReservationTerms {
        term: term_from_pb("term", r.term)?,
        currency: r.currency.parse::<Currency>()?,
        price_per_hour: decimal("reservation", "price_per_hour", &r.price_per_hour)?,
        total_for_term: optional_decimal("reservation", "total_for_term", r.total_for_term.as_deref())?,
        starts_at,
        ends_at: r.ends_at.as_ref().and_then(instant),
        cancelled_at: r.cancelled_at.as_ref().and_then(instant),
    })
}

impl From<&Catalog> for pb::CatalogDocument {
    fn from(c: &Catalog) -> Self {
        pb::CatalogDocument {
            version: c.version,
            currency: c.currency.to_string(),
            tier_multipliers: c
                .tier_multipliers
                .iter()
                .map(|(t, m)| pb::TierMultiplier { tier: pb::Tier::from(*t).into(), multiplier: m.to_string() })
                .collect(),
            term_discounts: c
                .term_discounts
                .iter()
                .map(|(t, d)| pb::TermDiscount { term: pb::Term::from(*t).into(), discount: d.to_string() })
                .collect(),
            models: model_prices_to_pb(&c.models),
            other_currencies: c
                .other_currencies
                .iter()
                .map(|(currency, models)| pb::CurrencyPrices {
                    currency: currency.to_string(),
                    models: model_prices_to_pb(models),
                })
                .collect(),
        }
    }
}

fn model_prices_to_pb(models: &BTreeMap<ModelId, ModelPrices>) -> Vec<pb::ModelPrices> {
    models
        .iter()
        .map(|(id, p)| pb::ModelPrices {
            model: id.to_string(),
            reservation: Some((&p.reservation).into()),
            on_demand_per_million: Some((&p.on_demand_per_million).into()),
            spot_per_million: Some((&p.spot_per_million).into()),
        })
        .collect()
}

fn model_prices_from_pb(list: &[pb::ModelPrices], at: &str) -> Result<BTreeMap<ModelId, ModelPrices>, DomainError> {
    let mut models = BTreeMap::new();
    for m in list {
        let id: ModelId = m.model.parse()?;
        let path = |table: &str| format!("{at}[\"{id}\"].{table}");
        let prices = ModelPrices {
            reservation: tier_table(&path("reservation"), m.reservation.as_ref())?,
            on_demand_per_million: tier_table(&path("on_demand_per_million"), m.on_demand_per_million.as_ref())?,
            spot_per_million: tier_table(&path("spot_per_million"), m.spot_per_million.as_ref())?,
        };
        insert_once(&mut models, at, id, prices)?;
    }
    Ok(models)
}

/// Inserts `value` under `key`, refusing a key listed twice (a map on the
/// wire is a list, and a second entry must not silently win).
fn insert_once<K: Ord + std::fmt::Display, V>(
    map: &mut BTreeMap<K, V>,
    list: &str,
    key: K,
    value: V,
) -> Result<(), DomainError> {
    let shown = key.to_string();
    match map.insert(key, value) {
        None => Ok(()),
        Some(_) => Err(DomainError::invalid("catalog", format!("{list} lists {shown} twice"))),
    }
}

impl TryFrom<pb::CatalogDocument> for Catalog {
    type Error = DomainError;

    fn try_from(c: pb::CatalogDocument) -> Result<Self, DomainError> {
        let mut tier_multipliers = BTreeMap::new();
        for m in &c.tier_multipliers {
            let tier = tier_from_pb("tier_multipliers.tier", m.tier)?;
            let multiplier = decimal("catalog", &format!("tier_multipliers.{tier}"), &m.multiplier)?;
            insert_once(&mut tier_multipliers, "tier_multipliers", tier, multiplier)?;
        }
        let mut term_discounts = BTreeMap::new();
        for d in &c.term_discounts {
            let term = term_from_pb("term_discounts.term", d.term)?;
            let discount = decimal("catalog", &format!("term_discounts.{term}"), &d.discount)?;
            insert_once(&mut term_discounts, "term_discounts", term, discount)?;
        }
        let models = model_prices_from_pb(&c.models, "models")?;
        let mut other_currencies = BTreeMap::new();
        for list in &c.other_currencies {
            let currency: Currency = list.currency.parse()?;
            let models = model_prices_from_pb(&list.models, &format!("other_currencies.{currency}"))?;
            insert_once(&mut other_currencies, "other_currencies", currency, models)?;
        }
        Ok(Catalog {
            version: c.version,
            currency: c.currency.parse()?,
            tier_multipliers,
            term_discounts,
            models,
            other_currencies,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use reservoir_domain::{Term, Tier};
    use reservoir_pricing::QuoteRequest;

    use super::*;

    fn quote(term: Term, ends_at: Option<DateTime>) -> Quote {
        let req = QuoteRequest {
            model: reservoir_pricing::BUILTIN_MODEL.parse().unwrap(),
            rate_tokens_per_s: 1500,
            tier: Tier::Enterprise,
            term,
            starts_at: chrono::Utc.with_ymd_and_hms(2026, 1, 15, 0, 0, 0).unwrap(),
            ends_at,
        };
        reservoir_pricing::quote(&Catalog::builtin_default(), &req).unwrap()
    }

    #[test]
    fn a_quote_crosses_the_wire_exactly() {
        for q in [quote(Term::Month, None), quote(Term::Hourly, None)] {
            let wire = pb::Quote::from(&q);
            let back = Quote::try_from(wire.clone()).unwrap();
            assert_eq!(back, q, "domain -> proto -> domain");
            assert_eq!(pb::Quote::from(&back), wire, "proto -> domain -> proto");
        }
        // The amounts are the pricing crate's exact strings, scale included.
        let wire = pb::Quote::from(&quote(Term::Month, None));
        assert_eq!(wire.base_price_per_hour, "13.1");
        assert_eq!((wire.tier_multiplier.as_str(), wire.term_discount.as_str()), ("2.5", "0.20"));
        assert_eq!((wire.price_per_hour.as_str(), wire.price_per_hour_rounded.as_str()), ("26.2", "26.20"));
        assert_eq!(wire.total_for_term.as_deref(), Some("19492.8"));
        assert_eq!(wire.total_for_term_rounded.as_deref(), Some("19492.80"));
        assert_eq!(wire.rate_tiers[0].unit_price, "0.0100");
        assert_eq!(wire.rate_tiers[2].up_to, None, "the open tier has no bound");
        assert_eq!(wire.term_seconds, Some(2_678_400));
        // Open-ended hourly: no end, no total.
        let hourly = pb::Quote::from(&quote(Term::Hourly, None));
        assert_eq!((hourly.ends_at, hourly.total_for_term, hourly.term_seconds), (None, None, None));
    }

    #[test]
    fn a_bad_quote_says_which_field() {
        let wire = pb::Quote::from(&quote(Term::Month, None));
        let mut bad = wire.clone();
        bad.rate_tiers[1].amount = "1e3".into();
        let e = Quote::try_from(bad).unwrap_err().to_string();
        assert!(e.contains("rate_tiers[1].amount"), "{e}");
        let e = Quote::try_from(pb::Quote { tier: 0, ..wire.clone() }).unwrap_err().to_string();
        assert!(e.contains("tier") && e.contains("UNSPECIFIED"), "{e}");
        assert!(Quote::try_from(pb::Quote { starts_at: None, ..wire }).is_err());
    }

    #[test]
    fn a_catalog_crosses_the_wire_exactly() {
        let catalog = Catalog::builtin_default();
        let wire = pb::CatalogDocument::from(&catalog);
        let back = Catalog::try_from(wire.clone()).unwrap();
        assert_eq!(back, catalog, "domain -> proto -> domain");
        assert_eq!(pb::CatalogDocument::from(&back), wire, "proto -> domain -> proto");
        let reservation = wire.models[0].reservation.as_ref().unwrap();
        assert_eq!(reservation.mode(), pb::TierMode::Graduated);
        assert_eq!(reservation.tiers[0].up_to.as_deref(), Some("100"));
        assert_eq!(reservation.tiers[0].unit_price, "0.0100");
        assert_eq!(wire.term_discounts[2].discount, "0.35");
    }

    #[test]
    fn a_bad_catalog_says_what_is_wrong() {
        let wire = pb::CatalogDocument::from(&Catalog::builtin_default());
        let error = |c: pb::CatalogDocument| Catalog::try_from(c).unwrap_err().to_string();

        let mut twice = wire.clone();
        twice.tier_multipliers.push(twice.tier_multipliers[0].clone());
        assert!(error(twice).contains("tier_multipliers lists standard twice"));

        let mut unspecified = wire.clone();
        unspecified.term_discounts[0].term = 0;
        assert!(error(unspecified).contains("term_discounts.term"));

        let mut no_mode = wire.clone();
        if let Some(t) = no_mode.models[0].spot_per_million.as_mut() {
            t.mode = 0;
        }
        assert!(error(no_mode).contains("spot_per_million.mode is required"));

        let mut negative = wire.clone();
        negative.tier_multipliers[1].multiplier = "-1.5".into();
        assert!(error(negative).contains("tier_multipliers.premium"));

        let mut missing = wire.clone();
        missing.models[0].reservation = None;
        assert!(error(missing).contains("reservation is required"));

        // An empty flat fee is "not given": zero, as in the JSON form.
        let mut no_fee = wire;
        if let Some(t) = no_fee.models[0].reservation.as_mut() {
            t.tiers[0].flat_fee = String::new();
        }
        assert_eq!(Catalog::try_from(no_fee).unwrap(), Catalog::builtin_default());
    }
}
