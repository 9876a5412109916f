//! Proto enums <-> domain enums, one pair per closed vocabulary.
//!
//! Domain -> proto is `From` (total). Proto -> domain reads the raw `i32`
//! prost keeps (a number this build does not know arrives as is) with the
//! field's name, and refuses UNSPECIFIED and unknown numbers with a
//! `DomainError` that names the field and the accepted values; every
//! service maps `DomainError` to INVALID_ARGUMENT. Written once here so that
//! the worker, scheduler, contracts, metering and gateway cannot drift apart.

use reservoir_domain::{DomainError, Outcome, PriorityClass, ReservationStatus, Term, Tier};

use crate::v1 as pb;

fn refused(field: &'static str, what: String, accepted: &[&str]) -> DomainError {
    DomainError::invalid(field, format!("{what}; send one of: {}", accepted.join(", ")))
}

macro_rules! wire_enum {
    ($(#[$doc:meta])* $from_pb:ident: $domain:ident <=> $pb:ident { $($d:ident <=> $p:ident),+ $(,)? }) => {
        impl From<$domain> for pb::$pb {
            fn from(v: $domain) -> Self {
                match v {
                    $($domain::$d => pb::$pb::$p),+
                }
            }
        }

        $(#[$doc])*
        pub fn $from_pb(field: &'static str, value: i32) -> Result<$domain, DomainError> {
            let accepted: Vec<&str> = $domain::ALL.iter().map(|v| v.as_str()).collect();
            match pb::$pb::try_from(value) {
                $(Ok(pb::$pb::$p) => Ok($domain::$d),)+
                Ok(pb::$pb::Unspecified) => Err(refused(field, "a value is required (got UNSPECIFIED)".into(), &accepted)),
                Err(_) => Err(refused(field, format!("{value} is not a known value"), &accepted)),
            }
        }
    };
}

wire_enum!(
    /// A request's priority class.
    class_from_pb: PriorityClass <=> PriorityClass { Reserved <=> Reserved, Burst <=> Burst, Spot <=> Spot }
);

wire_enum!(
    /// A reservation's SLA tier.
    tier_from_pb: Tier <=> Tier { Standard <=> Standard, Premium <=> Premium, Enterprise <=> Enterprise }
);

wire_enum!(
    /// A reservation's term.
    term_from_pb: Term <=> Term { Hourly <=> Hourly, Month <=> Month, HalfYear <=> HalfYear }
);

wire_enum!(
    /// A reservation's status.
    status_from_pb: ReservationStatus <=> ReservationStatus {
        Scheduled <=> Scheduled,
        Active <=> Active,
        Cancelled <=> Cancelled,
        Expired <=> Expired,
    }
);

wire_enum!(
    /// How a metered request ended.
    outcome_from_pb: Outcome <=> Outcome {
        Ok <=> Ok,
        Shed <=> Shed,
        ClientCancelled <=> ClientCancelled,
        PlatformError <=> PlatformError,
        Interrupted <=> Interrupted,
    }
);

/// For filters, where UNSPECIFIED means "any" rather than a mistake.
pub fn unless_unspecified<T>(
    field: &'static str,
    value: i32,
    from_pb: fn(&'static str, i32) -> Result<T, DomainError>,
) -> Result<Option<T>, DomainError> {
    if value == 0 { Ok(None) } else { from_pb(field, value).map(Some) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips() {
        for c in PriorityClass::ALL {
            assert_eq!(class_from_pb("class", pb::PriorityClass::from(*c) as i32).unwrap(), *c);
        }
        for t in Tier::ALL {
            assert_eq!(tier_from_pb("tier", pb::Tier::from(*t) as i32).unwrap(), *t);
        }
        for t in Term::ALL {
            assert_eq!(term_from_pb("term", pb::Term::from(*t) as i32).unwrap(), *t);
        }
        for s in ReservationStatus::ALL {
            assert_eq!(status_from_pb("status", pb::ReservationStatus::from(*s) as i32).unwrap(), *s);
        }
        for o in Outcome::ALL {
            assert_eq!(outcome_from_pb("outcome", pb::Outcome::from(*o) as i32).unwrap(), *o);
        }
    }

    #[test]
    fn unspecified_and_unknown_values_name_the_field_and_the_choices() {
        let e = tier_from_pb("tier", pb::Tier::Unspecified as i32).unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid tier: a value is required (got UNSPECIFIED); send one of: standard, premium, enterprise"
        );
        let e = class_from_pb("priority_class", 42).unwrap_err().to_string();
        assert!(e.contains("priority_class") && e.contains("42") && e.contains("reserved, burst, spot"), "{e}");
        assert!(term_from_pb("term", 0).unwrap_err().to_string().contains("hourly, month, half_year"));
    }

    #[test]
    fn a_filter_reads_unspecified_as_any() {
        assert_eq!(unless_unspecified("status", 0, status_from_pb).unwrap(), None);
        let active = pb::ReservationStatus::Active as i32;
        assert_eq!(unless_unspecified("status", active, status_from_pb).unwrap(), Some(ReservationStatus::Active));
        assert!(unless_unspecified("status", 9, status_from_pb).is_err());
    }
}
