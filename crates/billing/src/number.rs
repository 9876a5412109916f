//! Invoice numbers: `RSV-2026-000123`, one gapless sequence per calendar
//! year (the year the invoice is finalized in). The service hands out the
//! sequence under a lock, in the transaction that finalizes the invoice, so
//! a number is only ever used by a finalized invoice.

use std::fmt;
use std::str::FromStr;

use crate::BillingError;

pub const NUMBER_PREFIX: &str = "RSV";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InvoiceNumber {
    pub year: i32,
    /// From 1, without gaps within the year.
    pub sequence: u64,
}

impl fmt::Display for InvoiceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Six digits at least; a busier year just gets longer numbers.
        write!(f, "{NUMBER_PREFIX}-{:04}-{:06}", self.year, self.sequence)
    }
}

impl FromStr for InvoiceNumber {
    type Err = BillingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || BillingError::Invalid(format!("{s:?} is not an invoice number like RSV-2026-000123"));
        let rest = s.strip_prefix(NUMBER_PREFIX).and_then(|r| r.strip_prefix('-')).ok_or_else(invalid)?;
        let (year, sequence) = rest.split_once('-').ok_or_else(invalid)?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if year.len() != 4 || sequence.len() < 6 || !digits(year) || !digits(sequence) {
            return Err(invalid());
        }
        let number = InvoiceNumber {
            year: year.parse().map_err(|_| invalid())?,
            sequence: sequence.parse().map_err(|_| invalid())?,
        };
        // One text per number: `RSV-2026-0000123` is not a second spelling.
        if number.sequence == 0 || number.to_string() != s {
            return Err(invalid());
        }
        Ok(number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_and_parse_one_way() {
        let n = InvoiceNumber { year: 2026, sequence: 123 };
        assert_eq!(n.to_string(), "RSV-2026-000123");
        assert_eq!("RSV-2026-000123".parse::<InvoiceNumber>().unwrap(), n);
        assert_eq!(InvoiceNumber { year: 2027, sequence: 1_234_567 }.to_string(), "RSV-2027-1234567");
        for bad in ["RSV-2026-123", "RSV-2026-0000123", "INV-2026-000123", "RSV-26-000123", "RSV-2026-000000", ""] {
            assert!(bad.parse::<InvoiceNumber>().is_err(), "{bad}");
        }
    }
}
