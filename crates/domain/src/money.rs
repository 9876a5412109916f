//! Exact money. Amounts are `rust_decimal::Decimal`, never floats.
//!
//! Rounding rule (written down once, used everywhere): amounts are kept
//! exact while they are computed; a line that lands on an invoice or a quote
//! total is rounded to the currency's minor unit with banker's rounding
//! (half to even), and a total is the sum of rounded lines.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::DomainError;

/// An ISO 4217 currency code such as `USD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, pattern = r"^[A-Z]{3}$", example = "USD"))]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");
    pub const EUR: Currency = Currency(*b"EUR");

    pub fn as_str(&self) -> &str {
        // Only ASCII uppercase letters get in through `from_str`.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// Digits after the decimal point of the currency's minor unit.
    pub fn minor_unit_digits(&self) -> u32 {
        match &self.0 {
            b"JPY" | b"KRW" | b"VND" | b"CLP" | b"ISK" | b"UGX" => 0,
            b"BHD" | b"KWD" | b"OMR" | b"JOD" | b"TND" | b"LYD" | b"IQD" => 3,
            _ => 2,
        }
    }
}

impl Default for Currency {
    fn default() -> Self {
        Currency::USD
    }
}

impl FromStr for Currency {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(DomainError::invalid("currency", "expected a 3-letter ISO 4217 code such as USD"));
        }
        Ok(Currency([bytes[0], bytes[1], bytes[2]]))
    }
}

impl TryFrom<String> for Currency {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An exact amount in one currency. Serialized as `{"amount": "12.34", "currency": "USD"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Money {
    /// Exact decimal amount as a string.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "12.34"))]
    pub amount: Decimal,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: Decimal, currency: Currency) -> Self {
        Self { amount, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Self { amount: Decimal::ZERO, currency }
    }

    /// Rounded to the currency's minor unit, half to even.
    pub fn rounded(&self) -> Money {
        Money { amount: round_half_even(self.amount, self.currency.minor_unit_digits()), currency: self.currency }
    }

    /// Sum of two amounts in the same currency; `None` when the currencies
    /// differ or the sum overflows.
    pub fn checked_add(&self, other: &Money) -> Option<Money> {
        if self.currency != other.currency {
            return None;
        }
        Some(Money { amount: self.amount.checked_add(other.amount)?, currency: self.currency })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

/// Banker's rounding to `digits` decimal places.
pub fn round_half_even(amount: Decimal, digits: u32) -> Decimal {
    amount.round_dp_with_strategy(digits, RoundingStrategy::MidpointNearestEven)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn rounds_half_to_even_at_the_minor_unit() {
        let usd = |a| Money::new(a, Currency::USD).rounded().amount;
        assert_eq!(usd(dec!(0.125)), dec!(0.12));
        assert_eq!(usd(dec!(0.135)), dec!(0.14));
        assert_eq!(usd(dec!(-0.125)), dec!(-0.12));
        assert_eq!(usd(dec!(1.005000001)), dec!(1.01));
        let jpy: Currency = "JPY".parse().unwrap();
        assert_eq!(Money::new(dec!(2.5), jpy).rounded().amount, dec!(2));
    }

    #[test]
    fn currency_codes_are_validated() {
        assert!("usd".parse::<Currency>().is_err());
        assert!("US".parse::<Currency>().is_err());
        assert_eq!("EUR".parse::<Currency>().unwrap(), Currency::EUR);
    }

    #[test]
    fn money_serializes_amount_as_string() {
        let m = Money::new(dec!(12.340), Currency::USD);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"amount":"12.340","currency":"USD"}"#);
        assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), m);
    }

    #[test]
    fn adding_other_currencies_is_refused() {
        let a = Money::new(dec!(1), Currency::USD);
        let b = Money::new(dec!(1), Currency::EUR);
        assert_eq!(a.checked_add(&b), None);
        assert_eq!(a.checked_add(&a).unwrap().amount, dec!(2));
    }
}
