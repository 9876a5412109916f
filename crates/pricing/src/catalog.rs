//! The price catalog: one JSON document per version, decimals as strings.
//!
//! A catalog is an immutable value. Every change (a model's prices, a
//! multiplier, a discount) yields the next version through the `with_*`
//! helpers, so a quote names the version it was priced with and can be
//! reproduced from it to the last decimal.
//!
//! ```json
//! {
//!   "version": 1,
//!   "currency": "USD",
//!   "tier_multipliers": {"standard": "1.0", "premium": "1.5", "enterprise": "2.5"},
//!   "term_discounts": {"hourly": "0", "month": "0.20", "half_year": "0.35"},
//!   "models": {"smollm2-135m-instruct": {"reservation": {..}, "on_demand_per_million": {..}, "spot_per_million": {..}}},
//!   "other_currencies": {"EUR": {"smollm2-135m-instruct": {..}}, "JPY": {..}}
//! }
//! ```
//!
//! `models` prices in the catalog's own `currency`. A tenant billed in
//! another currency is priced from `other_currencies`, which holds a whole
//! price list per currency, set by hand as price lists are (no exchange
//! rate is ever applied). A model without prices in a tenant's currency
//! cannot be sold to that tenant.

use std::collections::BTreeMap;

use reservoir_domain::{Currency, ModelId, Term, Tier};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::amount::check_number;
use crate::{PriceTier, PricingError, TierMode, TierTable};

/// The model the built-in catalog prices.
pub const BUILTIN_MODEL: &str = "smollm2-135m-instruct";

/// Prices of one model. Units are in each field's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ModelPrices {
    /// Graduated volume discount on the reserved rate: unit price per
    /// weighted token/s per hour, by rate tier.
    pub reservation: TierTable,
    /// Burst above the reserved rate, per million weighted tokens,
    /// graduated over the month's burst usage.
    pub on_demand_per_million: TierTable,
    /// Spot work, per million tokens, volume tiers over the month's usage.
    pub spot_per_million: TierTable,
}

impl ModelPrices {
    /// Checks each table and the mode each must have: reservation and
    /// on-demand graduated, spot volume.
    pub fn validate(&self) -> Result<(), PricingError> {
        self.check().map_err(|reason| PricingError::InvalidCatalog { reason })
    }

    fn check(&self) -> Result<(), String> {
        let tables = [
            ("reservation", &self.reservation, TierMode::Graduated),
            ("on_demand_per_million", &self.on_demand_per_million, TierMode::Graduated),
            ("spot_per_million", &self.spot_per_million, TierMode::Volume),
        ];
        for (name, table, mode) in tables {
            if table.mode != mode {
                let want = match mode {
                    TierMode::Graduated => "graduated",
                    TierMode::Volume => "volume",
                };
                return Err(format!("{name} must be a {want} table"));
            }
            table.check().map_err(|reason| format!("{name}: {reason}"))?;
        }
        Ok(())
    }

    /// Prices of the built-in model (see [`Catalog::builtin_default`]).
    pub fn builtin_default() -> Self {
        let d = Decimal::new; // Decimal::new(100, 4) is 0.0100, as written in the price list.
        ModelPrices {
            reservation: TierTable {
                mode: TierMode::Graduated,
                tiers: vec![
                    PriceTier::up_to(d(100, 0), d(100, 4)),
                    PriceTier::up_to(d(1000, 0), d(90, 4)),
                    PriceTier::open(d(80, 4)),
                ],
            },
            on_demand_per_million: TierTable {
                mode: TierMode::Graduated,
                tiers: vec![
                    PriceTier::up_to(d(100, 0), d(20, 2)),
                    PriceTier::up_to(d(1000, 0), d(15, 2)),
                    PriceTier::open(d(10, 2)),
                ],
            },
            spot_per_million: TierTable {
                mode: TierMode::Volume,
                tiers: vec![PriceTier::up_to(d(1000, 0), d(5, 2)), PriceTier::open(d(4, 2))],
            },
        }
    }
}

fn default_tier_multipliers() -> BTreeMap<Tier, Decimal> {
    BTreeMap::from([
        (Tier::Standard, Decimal::new(10, 1)),
        (Tier::Premium, Decimal::new(15, 1)),
        (Tier::Enterprise, Decimal::new(25, 1)),
    ])
}

fn default_term_discounts() -> BTreeMap<Term, Decimal> {
    BTreeMap::from([
        (Term::Hourly, Decimal::ZERO),
        (Term::Month, Decimal::new(20, 2)),
        (Term::HalfYear, Decimal::new(35, 2)),
    ])
}

/// A versioned price catalog. Deserializing does not validate: call
/// [`Catalog::validate`] on a parsed document ([`crate::quote`] does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Positive, increasing with every change. Assigned by the service that
    /// stores catalogs, so a document sent for publishing may leave it out.
    #[serde(default)]
    pub version: i64,
    pub currency: Currency,
    /// Price multiplier per SLA tier; every tier must be listed.
    #[serde(default = "default_tier_multipliers")]
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::TierMultipliers))]
    pub tier_multipliers: BTreeMap<Tier, Decimal>,
    /// Discount per term as a fraction in `[0, 1)`; every term must be listed.
    #[serde(default = "default_term_discounts")]
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::TermDiscounts))]
    pub term_discounts: BTreeMap<Term, Decimal>,
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, ModelPrices>))]
    pub models: BTreeMap<ModelId, ModelPrices>,
    /// Price lists in other currencies than `currency`, each model's prices
    /// set per currency. Left out of the JSON when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, BTreeMap<String, ModelPrices>>))]
    pub other_currencies: BTreeMap<Currency, BTreeMap<ModelId, ModelPrices>>,
}

impl Catalog {
    /// Version 1, USD, the default multipliers and discounts, and the prices
    /// of `smollm2-135m-instruct`:
    /// - reservation (graduated, per token/s per hour): up to 100 at 0.0100,
    ///   up to 1000 at 0.0090, above at 0.0080;
    /// - on-demand (graduated, per million tokens): up to 100 M at 0.20, up
    ///   to 1000 M at 0.15, above at 0.10;
    /// - spot (volume, per million tokens): up to 1000 M at 0.05, above at 0.04.
    pub fn builtin_default() -> Self {
        let mut models = BTreeMap::new();
        if let Ok(model) = BUILTIN_MODEL.parse::<ModelId>() {
            // Always Ok: the slug is a valid constant (a test checks it).
            models.insert(model, ModelPrices::builtin_default());
        }
        Catalog {
            version: 1,
            currency: Currency::USD,
            tier_multipliers: default_tier_multipliers(),
            term_discounts: default_term_discounts(),
            models,
            other_currencies: BTreeMap::new(),
        }
    }

    /// Rules: version >= 1; a multiplier > 0 for every tier; a discount in
    /// `[0, 1)` for every term; at most 12 decimal places everywhere; every
    /// model's tables valid and of the right mode (see [`ModelPrices::validate`]).
    pub fn validate(&self) -> Result<(), PricingError> {
        self.check().map_err(|reason| PricingError::InvalidCatalog { reason })
    }

    fn check(&self) -> Result<(), String> {
        if self.version < 1 {
            return Err(format!("version must be at least 1, got {}", self.version));
        }
        for tier in Tier::ALL {
            let m =
                self.tier_multipliers.get(tier).ok_or_else(|| format!("tier_multipliers has no entry for {tier}"))?;
            if *m <= Decimal::ZERO {
                return Err(format!("tier_multipliers.{tier} must be greater than 0, got {m}"));
            }
            check_number(&format!("tier_multipliers.{tier}"), *m)?;
        }
        for term in Term::ALL {
            let d = self.term_discounts.get(term).ok_or_else(|| format!("term_discounts has no entry for {term}"))?;
            if *d < Decimal::ZERO || *d >= Decimal::ONE {
                return Err(format!(
                    "term_discounts.{term} must be a fraction from 0 up to (not including) 1, got {d}"
                ));
            }
            check_number(&format!("term_discounts.{term}"), *d)?;
        }
        for (model, prices) in &self.models {
            prices.check().map_err(|reason| format!("model \"{model}\": {reason}"))?;
        }
        for (currency, models) in &self.other_currencies {
            if *currency == self.currency {
                return Err(format!(
                    "other_currencies.{currency} repeats the catalog's own currency: its prices belong in models"
                ));
            }
            for (model, prices) in models {
                prices.check().map_err(|reason| format!("other_currencies.{currency}, model \"{model}\": {reason}"))?;
            }
        }
        Ok(())
    }

    /// Every currency the catalog prices in, its own first.
    pub fn currencies(&self) -> Vec<Currency> {
        std::iter::once(self.currency).chain(self.other_currencies.keys().copied()).collect()
    }

    /// Prices of `model` in `currency`, or [`PricingError::UnknownModel`]
    /// (naming the currency when the model is priced in another one).
    pub fn model_prices_in(&self, model: &ModelId, currency: Currency) -> Result<&ModelPrices, PricingError> {
        if currency == self.currency {
            return self.model_prices(model);
        }
        self.other_currencies
            .get(&currency)
            .and_then(|models| models.get(model))
            .ok_or_else(|| PricingError::NotPricedIn { model: model.clone(), currency, catalog_version: self.version })
    }

    /// Prices of `model`, or [`PricingError::UnknownModel`].
    pub fn model_prices(&self, model: &ModelId) -> Result<&ModelPrices, PricingError> {
        self.models
            .get(model)
            .ok_or_else(|| PricingError::UnknownModel { model: model.clone(), catalog_version: self.version })
    }

    /// Multiplier of `tier`; an error only for a catalog that fails validation.
    pub fn tier_multiplier(&self, tier: Tier) -> Result<Decimal, PricingError> {
        self.tier_multipliers
            .get(&tier)
            .copied()
            .ok_or_else(|| PricingError::InvalidCatalog { reason: format!("tier_multipliers has no entry for {tier}") })
    }

    /// Discount of `term`; an error only for a catalog that fails validation.
    pub fn term_discount(&self, term: Term) -> Result<Decimal, PricingError> {
        self.term_discounts
            .get(&term)
            .copied()
            .ok_or_else(|| PricingError::InvalidCatalog { reason: format!("term_discounts has no entry for {term}") })
    }

    /// The next version with `model` priced at `prices` (added or replaced),
    /// validated.
    pub fn with_model_prices(&self, model: ModelId, prices: ModelPrices) -> Result<Catalog, PricingError> {
        let mut next = self.next_version()?;
        next.models.insert(model, prices);
        next.validate()?;
        Ok(next)
    }

    /// The next version without `model`; [`PricingError::UnknownModel`] if it
    /// was not priced.
    pub fn without_model(&self, model: &ModelId) -> Result<Catalog, PricingError> {
        self.model_prices(model)?;
        let mut next = self.next_version()?;
        next.models.remove(model);
        next.validate()?;
        Ok(next)
    }

    /// The next version with `model` priced at `prices` in `currency` (the
    /// catalog's own or another), validated.
    pub fn with_model_prices_in(
        &self,
        model: ModelId,
        currency: Currency,
        prices: ModelPrices,
    ) -> Result<Catalog, PricingError> {
        if currency == self.currency {
            return self.with_model_prices(model, prices);
        }
        let mut next = self.next_version()?;
        next.other_currencies.entry(currency).or_default().insert(model, prices);
        next.validate()?;
        Ok(next)
    }

    /// The next version with `tier` priced at `multiplier`, validated.
    pub fn with_tier_multiplier(&self, tier: Tier, multiplier: Decimal) -> Result<Catalog, PricingError> {
        let mut next = self.next_version()?;
        next.tier_multipliers.insert(tier, multiplier);
        next.validate()?;
        Ok(next)
    }

    /// The next version with `term` discounted by `discount`, validated.
    pub fn with_term_discount(&self, term: Term, discount: Decimal) -> Result<Catalog, PricingError> {
        let mut next = self.next_version()?;
        next.term_discounts.insert(term, discount);
        next.validate()?;
        Ok(next)
    }

    /// A copy with `version + 1`: the one place versions move.
    pub fn next_version(&self) -> Result<Catalog, PricingError> {
        let version = self.version.checked_add(1).ok_or(PricingError::Overflow { what: "catalog version" })?;
        Ok(Catalog { version, ..self.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn model(s: &str) -> ModelId {
        s.parse().unwrap()
    }

    fn reason(err: PricingError) -> String {
        match err {
            PricingError::InvalidCatalog { reason } => reason,
            other => panic!("expected an invalid catalog, got {other:?}"),
        }
    }

    #[test]
    fn builtin_default_is_valid_and_prices_the_builtin_model() {
        let c = Catalog::builtin_default();
        c.validate().unwrap();
        assert_eq!((c.version, c.currency), (1, Currency::USD));
        let prices = c.model_prices(&model(BUILTIN_MODEL)).unwrap();
        assert_eq!(prices.reservation.tiers[0].unit_price.to_string(), "0.0100");
        assert_eq!(prices.on_demand_per_million.tiers[2].unit_price, dec!(0.10));
        assert_eq!(prices.spot_per_million.mode, TierMode::Volume);
        assert_eq!(c.tier_multiplier(Tier::Premium).unwrap(), dec!(1.5));
        assert_eq!(c.tier_multiplier(Tier::Enterprise).unwrap(), dec!(2.5));
        assert_eq!(c.term_discount(Term::HalfYear).unwrap(), dec!(0.35));
        assert_eq!(c.term_discount(Term::Hourly).unwrap(), dec!(0));
    }

    #[test]
    fn unknown_models_name_the_model_and_version() {
        let err = Catalog::builtin_default().model_prices(&model("llama-9000")).unwrap_err();
        assert_eq!(err.to_string(), "model \"llama-9000\" has no prices in the price catalog (version 1)");
    }

    #[test]
    fn json_keeps_decimals_as_written_and_fills_defaults() {
        let c = Catalog::builtin_default();
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains(r#""tier_multipliers":{"standard":"1.0","premium":"1.5","enterprise":"2.5"}"#), "{json}");
        assert!(json.contains(r#""unit_price":"0.0100""#), "{json}");
        let back: Catalog = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
        // Multipliers and discounts may be left out: the defaults apply.
        let minimal = r#"{"version": 3, "currency": "EUR", "models": {}}"#;
        let c: Catalog = serde_json::from_str(minimal).unwrap();
        c.validate().unwrap();
        assert_eq!(c.term_discount(Term::Month).unwrap(), dec!(0.20));
        // Unknown keys (a misspelled tier) are refused at parse time.
        let bad_tier = r#"{"version": 1, "currency": "USD", "models": {}, "tier_multipliers": {"gold": "3"}}"#;
        assert!(serde_json::from_str::<Catalog>(bad_tier).is_err());
    }

    #[test]
    fn invalid_catalogs_say_what_to_fix() {
        let base = Catalog::builtin_default();

        let mut c = base.clone();
        c.version = 0;
        assert!(reason(c.validate().unwrap_err()).contains("version must be at least 1"));

        let mut c = base.clone();
        c.tier_multipliers.remove(&Tier::Premium);
        assert_eq!(reason(c.validate().unwrap_err()), "tier_multipliers has no entry for premium");
        assert!(c.tier_multiplier(Tier::Premium).is_err());

        let mut c = base.clone();
        c.tier_multipliers.insert(Tier::Standard, dec!(0));
        assert!(reason(c.validate().unwrap_err()).contains("tier_multipliers.standard must be greater than 0"));

        for bad in [dec!(1), dec!(1.5), dec!(-0.1)] {
            let err = base.with_term_discount(Term::Month, bad).unwrap_err();
            assert!(reason(err).contains("term_discounts.month must be a fraction"));
        }

        let mut c = base.clone();
        c.term_discounts.remove(&Term::Hourly);
        assert!(reason(c.validate().unwrap_err()).contains("term_discounts has no entry for hourly"));

        let mut prices = ModelPrices::builtin_default();
        prices.spot_per_million.mode = TierMode::Graduated;
        let err = base.with_model_prices(model("m"), prices).unwrap_err();
        assert_eq!(reason(err), "model \"m\": spot_per_million must be a volume table");

        let mut prices = ModelPrices::builtin_default();
        prices.reservation.mode = TierMode::Volume;
        assert!(reason(prices.validate().unwrap_err()).contains("reservation must be a graduated table"));

        let mut prices = ModelPrices::builtin_default();
        prices.on_demand_per_million.tiers[1].up_to = Some(dec!(50));
        let err = base.with_model_prices(model("m"), prices).unwrap_err();
        assert_eq!(
            reason(err),
            "model \"m\": on_demand_per_million: tiers[1].up_to (50) must be greater than tiers[0].up_to (100)"
        );

        let err = base.with_tier_multiplier(Tier::Premium, dec!(1.0000000000001)).unwrap_err();
        assert!(reason(err).contains("more than 12 decimal places"));
    }

    #[test]
    fn changes_make_new_versions_and_leave_the_old_one_alone() {
        let v1 = Catalog::builtin_default();
        let v2 = v1.with_model_prices(model("tiny"), ModelPrices::builtin_default()).unwrap();
        assert_eq!(v2.version, 2);
        assert!(v2.model_prices(&model("tiny")).is_ok());
        assert!(v1.model_prices(&model("tiny")).is_err());
        let v3 = v2.with_tier_multiplier(Tier::Premium, dec!(1.6)).unwrap();
        assert_eq!((v3.version, v3.tier_multiplier(Tier::Premium).unwrap()), (3, dec!(1.6)));
        let v4 = v3.without_model(&model("tiny")).unwrap();
        assert_eq!(v4.version, 4);
        assert!(matches!(v4.without_model(&model("tiny")), Err(PricingError::UnknownModel { .. })));
        let mut last = v4;
        last.version = i64::MAX;
        assert_eq!(last.next_version(), Err(PricingError::Overflow { what: "catalog version" }));
    }

    #[test]
    fn tables_serialize_with_string_decimals() {
        let json = serde_json::to_string(&ModelPrices::builtin_default().spot_per_million).unwrap();
        assert_eq!(
            json,
            r#"{"mode":"volume","tiers":[{"up_to":"1000","unit_price":"0.05","flat_fee":"0"},{"up_to":null,"unit_price":"0.04","flat_fee":"0"}]}"#
        );
        // flat_fee and up_to may be left out.
        let t: TierTable = serde_json::from_str(r#"{"mode":"graduated","tiers":[{"unit_price":"0.5"}]}"#).unwrap();
        assert_eq!(t.tiers, vec![PriceTier::open(dec!(0.5))]);
        // JSON numbers would go through floats somewhere: refused.
        assert!(serde_json::from_str::<TierTable>(r#"{"mode":"graduated","tiers":[{"unit_price":0.5}]}"#).is_err());
        // Typos are refused rather than silently ignored.
        let typo = r#"{"mode":"graduated","tiers":[{"unit_price":"0.5","flat_fees":"1"}]}"#;
        assert!(serde_json::from_str::<TierTable>(typo).is_err());
    }
}
