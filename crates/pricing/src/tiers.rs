//! Tier tables: graduated and volume pricing as Stripe and Lago define them
//! (the semantics are documented on [`TierTable`]).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::PricingError;
use crate::amount::{add, check_number, mul, sub, within_limit, within_scale};

/// Most tiers a table may have: real price lists have a handful, and a bound
/// keeps pricing O(small) whatever an admin uploads.
pub const TIERS_MAX: usize = 32;

/// Tokens in the "million tokens" unit of per-token prices.
const TOKENS_PER_MILLION_SCALE: u32 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TierMode {
    /// Each unit priced in its own tier.
    Graduated,
    /// All units priced at the tier the total quantity falls in.
    Volume,
}

/// One tier of a table. Serialized with decimals as strings:
/// `{"up_to": "100", "unit_price": "0.0100", "flat_fee": "0"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PriceTier {
    /// Inclusive upper bound of the tier; `None` for the open last tier.
    #[serde(default)]
    pub up_to: Option<Decimal>,
    /// Price of one unit in this tier.
    pub unit_price: Decimal,
    /// Charged once when the quantity enters this tier (graduated) or falls
    /// in it (volume).
    #[serde(default)]
    pub flat_fee: Decimal,
}

impl PriceTier {
    /// A bounded tier without flat fee.
    pub fn up_to(bound: Decimal, unit_price: Decimal) -> Self {
        Self { up_to: Some(bound), unit_price, flat_fee: Decimal::ZERO }
    }

    /// The open last tier, without flat fee.
    pub fn open(unit_price: Decimal) -> Self {
        Self { up_to: None, unit_price, flat_fee: Decimal::ZERO }
    }

    pub fn with_flat_fee(self, flat_fee: Decimal) -> Self {
        Self { flat_fee, ..self }
    }
}

/// A tiered price list: graduated or volume pricing as Stripe and Lago define them.
///
/// A table is a list of tiers with inclusive upper bounds; tier `i` covers the
/// quantities in `(up_to[i-1], up_to[i]]` (the first tier starts above 0),
/// and the last tier is open. Quantities are non-negative decimals and may be
/// fractional (millions of tokens), so bounds are continuous, not `n + 1`.
///
/// - Graduated: each unit is priced in its own tier; a tier's flat fee is
///   charged once, when the quantity enters that tier (is above the previous
///   tier's bound). `price(1500)` on `100 @ 0.01, 1000 @ 0.009, open @ 0.008`
///   is `100 x 0.01 + 900 x 0.009 + 500 x 0.008`.
/// - Volume: every unit is priced at the unit price of the tier the total
///   quantity falls in, plus that tier's flat fee. Totals may drop when the
///   quantity crosses a bound (`1000 x 0.05 = 50` but `1001 x 0.04 = 40.04`):
///   that cliff is what volume pricing means.
///
/// Zero quantity charges nothing in both modes, flat fees included, and has
/// no lines. (Billing systems differ here, some charge the first tier's flat
/// fee on zero units; Reservoir prices usage, and a period without usage must
/// be a zero line.)
///
/// Amounts follow the crate's rounding rule: exact, at most 12 places.
///
/// Fields are public so the admin API can build and edit tables;
/// [`TierTable::validate`] states the rules, and [`TierTable::price`] checks
/// them before pricing anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TierTable {
    pub mode: TierMode,
    pub tiers: Vec<PriceTier>,
}

/// How much of the quantity one tier priced, for a charge's breakdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TierLine {
    /// Index of the tier in the table, from 0.
    pub tier_index: usize,
    /// The tier's inclusive upper bound, `None` for the open tier.
    pub up_to: Option<Decimal>,
    /// Units priced in this tier (graduated) or all units (volume).
    pub quantity: Decimal,
    pub unit_price: Decimal,
    pub flat_fee: Decimal,
    /// `quantity x unit_price + flat_fee`, exact.
    pub amount: Decimal,
}

/// The price of a quantity: the exact total and the lines that make it up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TieredCharge {
    pub mode: TierMode,
    pub quantity: Decimal,
    /// Graduated: one line per tier entered, in order. Volume: one line.
    /// Zero quantity: no lines.
    pub lines: Vec<TierLine>,
    /// Sum of the lines' amounts, exact.
    pub total: Decimal,
}

impl TierTable {
    /// A graduated table, validated.
    pub fn graduated(tiers: Vec<PriceTier>) -> Result<Self, PricingError> {
        let table = Self { mode: TierMode::Graduated, tiers };
        table.validate()?;
        Ok(table)
    }

    /// A volume table, validated.
    pub fn volume(tiers: Vec<PriceTier>) -> Result<Self, PricingError> {
        let table = Self { mode: TierMode::Volume, tiers };
        table.validate()?;
        Ok(table)
    }

    /// Rules: 1 to [`TIERS_MAX`] tiers; every tier but the last has an
    /// `up_to`, the last has none (so every quantity has a price); bounds are
    /// positive and strictly increasing; prices and fees are not negative;
    /// every number has at most [`crate::INTERNAL_SCALE`] decimal places and is
    /// below [`crate::AMOUNT_LIMIT`] (10^16).
    pub fn validate(&self) -> Result<(), PricingError> {
        self.check().map_err(|reason| PricingError::InvalidTable { reason })
    }

    /// The reason a table is invalid, for callers that add their own context.
    pub(crate) fn check(&self) -> Result<(), String> {
        let count = self.tiers.len();
        if count == 0 {
            return Err("a table needs at least one tier".into());
        }
        if count > TIERS_MAX {
            return Err(format!("a table has at most {TIERS_MAX} tiers, this one has {count}"));
        }
        let last = count - 1;
        let mut previous_bound: Option<Decimal> = None;
        for (i, tier) in self.tiers.iter().enumerate() {
            for (field, value) in [("unit_price", tier.unit_price), ("flat_fee", tier.flat_fee)] {
                if value < Decimal::ZERO {
                    return Err(format!("tiers[{i}].{field} must not be negative, got {value}"));
                }
                check_number(&format!("tiers[{i}].{field}"), value)?;
            }
            match (tier.up_to, i == last) {
                (None, true) => {}
                (None, false) => {
                    return Err(format!("tiers[{i}] has no up_to: only the last tier may be open"));
                }
                (Some(_), true) => {
                    return Err(format!(
                        "the last tier (tiers[{i}]) must be open (no up_to) so that every quantity has a price"
                    ));
                }
                (Some(bound), false) => {
                    check_number(&format!("tiers[{i}].up_to"), bound)?;
                    if bound <= Decimal::ZERO {
                        return Err(format!("tiers[{i}].up_to must be greater than 0, got {bound}"));
                    }
                    if let Some(prev) = previous_bound
                        && bound <= prev
                    {
                        return Err(format!(
                            "tiers[{i}].up_to ({bound}) must be greater than tiers[{}].up_to ({prev})",
                            i - 1
                        ));
                    }
                    previous_bound = Some(bound);
                }
            }
        }
        Ok(())
    }

    /// Prices `quantity` (non-negative, below 10^16, at most 12 places) with this
    /// table. Validates the table first, so an invalid table never prices.
    pub fn price(&self, quantity: Decimal) -> Result<TieredCharge, PricingError> {
        self.validate()?;
        if quantity < Decimal::ZERO {
            return Err(PricingError::InvalidQuantity { quantity, reason: "must not be negative" });
        }
        if !within_scale(quantity) {
            return Err(PricingError::InvalidQuantity { quantity, reason: "has more than 12 decimal places" });
        }
        if !within_limit(quantity) {
            return Err(PricingError::InvalidQuantity { quantity, reason: "must be below 10^16" });
        }
        // Canonical text in the breakdown: `150` for 150,000,000 tokens, not
        // `150.000000`, and `0` for `-0`.
        let quantity = quantity.normalize();
        let lines = if quantity.is_zero() {
            Vec::new()
        } else {
            match self.mode {
                TierMode::Graduated => self.graduated_lines(quantity)?,
                TierMode::Volume => vec![self.volume_line(quantity)?],
            }
        };
        let mut total = Decimal::ZERO;
        for line in &lines {
            total = add(total, line.amount, "tiered total")?;
        }
        Ok(TieredCharge { mode: self.mode, quantity, lines, total })
    }

    /// Graduated pricing of the `quantity` units that follow the first
    /// `before` units of the same month: the lines of the units in
    /// `(before, before + quantity]`, and the flat fee of every tier those
    /// units enter. Slices that follow one another add up to the price of
    /// their sum, so usage priced under several catalog versions in a month
    /// moves up the tiers together. Only for graduated tables.
    pub fn price_slice(&self, before: Decimal, quantity: Decimal) -> Result<TieredCharge, PricingError> {
        if self.mode != TierMode::Graduated {
            return Err(PricingError::InvalidTable { reason: "only a graduated table prices a slice".into() });
        }
        let whole = self.price(add(before, quantity, "tier quantity")?)?;
        let already = self.price(before)?;
        let quantity = quantity.normalize();
        let mut lines = Vec::new();
        let mut total = Decimal::ZERO;
        for line in whole.lines {
            let earlier = already.lines.iter().find(|l| l.tier_index == line.tier_index);
            let (units, flat_fee) = match earlier {
                Some(e) => (sub(line.quantity, e.quantity, "tier quantity")?, Decimal::ZERO),
                None => (line.quantity, line.flat_fee),
            };
            if units.is_zero() && flat_fee.is_zero() {
                continue;
            }
            let amount = add(mul(units, line.unit_price, "tier amount")?, flat_fee, "tier amount")?;
            total = add(total, amount, "tiered total")?;
            lines.push(TierLine { quantity: units, flat_fee, amount, ..line });
        }
        Ok(TieredCharge { mode: self.mode, quantity, lines, total })
    }

    /// Volume pricing of `quantity` units when the month's total is
    /// `month_total`: every unit at the unit price of the tier the total
    /// falls in, plus that tier's flat fee when `with_flat_fee` (the fee is
    /// charged once a month, on one of its lines). Only for volume tables.
    pub fn price_at_volume(
        &self,
        quantity: Decimal,
        month_total: Decimal,
        with_flat_fee: bool,
    ) -> Result<TieredCharge, PricingError> {
        if self.mode != TierMode::Volume {
            return Err(PricingError::InvalidTable { reason: "only a volume table prices at a month's volume".into() });
        }
        if quantity > month_total {
            return Err(PricingError::InvalidQuantity { quantity, reason: "must not exceed the month's total" });
        }
        let at_total = self.price(month_total)?;
        let quantity = self.price(quantity)?.quantity;
        let Some(tier) = at_total.lines.first() else {
            return Ok(TieredCharge { mode: self.mode, quantity, lines: Vec::new(), total: Decimal::ZERO });
        };
        if quantity.is_zero() && !with_flat_fee {
            return Ok(TieredCharge { mode: self.mode, quantity, lines: Vec::new(), total: Decimal::ZERO });
        }
        let flat_fee = if with_flat_fee { tier.flat_fee } else { Decimal::ZERO };
        let amount = add(mul(quantity, tier.unit_price, "tier amount")?, flat_fee, "tier amount")?;
        let line = TierLine { quantity, flat_fee, amount, ..tier.clone() };
        Ok(TieredCharge { mode: self.mode, quantity, lines: vec![line], total: amount })
    }

    /// Needs a valid table and `quantity > 0`.
    fn graduated_lines(&self, quantity: Decimal) -> Result<Vec<TierLine>, PricingError> {
        let mut lines = Vec::with_capacity(self.tiers.len());
        // Exclusive lower bound of the current tier: the previous tier's up_to.
        let mut lower = Decimal::ZERO;
        for (index, tier) in self.tiers.iter().enumerate() {
            if quantity <= lower {
                break; // The quantity does not enter this tier: no units, no flat fee.
            }
            let upper = tier.up_to.map_or(quantity, |bound| bound.min(quantity));
            let in_tier = sub(upper, lower, "tier quantity")?;
            lines.push(line(index, tier, in_tier)?);
            match tier.up_to {
                Some(bound) => lower = bound,
                None => break,
            }
        }
        Ok(lines)
    }

    /// Needs a valid table and `quantity > 0`.
    fn volume_line(&self, quantity: Decimal) -> Result<TierLine, PricingError> {
        let (index, tier) = self
            .tiers
            .iter()
            .enumerate()
            .find(|(_, tier)| tier.up_to.is_none_or(|bound| quantity <= bound))
            // Unreachable for a validated table (its last tier is open); an
            // error rather than a panic keeps that promise checked.
            .ok_or_else(|| PricingError::InvalidTable { reason: "the last tier must be open".into() })?;
        line(index, tier, quantity)
    }
}

fn line(tier_index: usize, tier: &PriceTier, quantity: Decimal) -> Result<TierLine, PricingError> {
    let units = mul(quantity, tier.unit_price, "tier amount")?;
    let amount = add(units, tier.flat_fee, "tier amount")?;
    Ok(TierLine {
        tier_index,
        up_to: tier.up_to,
        quantity,
        unit_price: tier.unit_price,
        flat_fee: tier.flat_fee,
        amount,
    })
}

/// `tokens` (whole or weighted, at most 6 decimal places) in the million
/// tokens that per-token prices are quoted in, exact: a shift of the decimal
/// point, no division.
pub fn millions_of(tokens: Decimal) -> Result<Decimal, PricingError> {
    let mut millions = tokens;
    let scale = millions.scale() + TOKENS_PER_MILLION_SCALE;
    if scale > crate::INTERNAL_SCALE {
        return Err(PricingError::InvalidQuantity { quantity: tokens, reason: "has more than 6 decimal places" });
    }
    millions.set_scale(scale).map_err(|_| PricingError::Overflow { what: "token count" })?;
    Ok(millions.normalize())
}

/// Prices `tokens` with a per-million-tokens table (on-demand or spot): the
/// quantity is `tokens / 1,000,000`, exact (a scale-6 decimal, no division).
pub fn price_tokens(table: &TierTable, tokens: u64) -> Result<TieredCharge, PricingError> {
    let millions = Decimal::try_from_i128_with_scale(i128::from(tokens), TOKENS_PER_MILLION_SCALE)
        .map_err(|_| PricingError::Overflow { what: "token count" })?;
    table.price(millions)
}

#[cfg(test)]
mod tests;
