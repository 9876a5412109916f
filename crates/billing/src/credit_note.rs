//! Credit notes: the one way to correct a finalized invoice.

use reservoir_domain::Currency;
use rust_decimal::Decimal;

use crate::BillingError;

/// Checks a credit note of `amount` against an invoice of `invoice_total`
/// that earlier credit notes already credited `credited` of. The amount
/// must be positive, written in the currency's minor unit at most, and no
/// more than what is left of the invoice. Returns what is left after it.
pub fn check_credit_note(
    amount: Decimal,
    invoice_total: Decimal,
    credited: Decimal,
    currency: Currency,
) -> Result<Decimal, BillingError> {
    let digits = currency.minor_unit_digits();
    if amount <= Decimal::ZERO {
        return Err(BillingError::Invalid(format!("a credit note must be for more than 0 {currency}, got {amount}")));
    }
    if amount.normalize().scale() > digits {
        return Err(BillingError::Invalid(format!(
            "{currency} amounts have {digits} decimal places at most, got {amount}"
        )));
    }
    let left = invoice_total - credited;
    if amount > left {
        return Err(BillingError::Invalid(format!(
            "a credit note can be for {left} {currency} at most: the invoice is {invoice_total} and {credited} \
             of it was already credited"
        )));
    }
    Ok(left - amount)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    #[test]
    fn a_credit_note_takes_at_most_what_is_left() {
        let usd = Currency::USD;
        assert_eq!(check_credit_note(dec!(40), dec!(100), dec!(50), usd).unwrap(), dec!(10));
        assert_eq!(check_credit_note(dec!(50), dec!(100), dec!(50), usd).unwrap(), dec!(0));
        let err = check_credit_note(dec!(50.01), dec!(100), dec!(50), usd).unwrap_err();
        assert!(err.to_string().contains("50 USD at most"), "{err}");
        assert!(check_credit_note(dec!(0), dec!(100), dec!(0), usd).is_err());
        assert!(check_credit_note(dec!(-1), dec!(100), dec!(0), usd).is_err());
        assert!(check_credit_note(dec!(0.001), dec!(100), dec!(0), usd).is_err());
        assert!(check_credit_note(dec!(0.5), dec!(100), dec!(0), "JPY".parse().unwrap()).is_err());
        assert!(check_credit_note(dec!(0.001), dec!(100), dec!(0), "BHD".parse().unwrap()).is_ok());
    }

    proptest! {
        /// Whatever notes are asked for, in whatever amounts, the accepted
        /// ones never add up to more than the invoice.
        #[test]
        fn accepted_notes_never_exceed_the_invoice(
            total_cents in 0i64..1_000_000,
            asks in proptest::collection::vec(1i64..400_000, 0..12),
        ) {
            let total = Decimal::new(total_cents, 2);
            let mut credited = Decimal::ZERO;
            for ask in asks {
                let amount = Decimal::new(ask, 2);
                if let Ok(left) = check_credit_note(amount, total, credited, Currency::USD) {
                    credited += amount;
                    prop_assert_eq!(left, total - credited);
                }
                prop_assert!(credited <= total);
            }
        }
    }
}
