//! The closed vocabularies of a reservation: SLA tier, term, status, and the
//! priority class a request is served in. Each parses from and prints as its
//! lowercase wire name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::DomainError;

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
        }

        impl FromStr for $name {
            type Err = DomainError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    _ => Err(DomainError::invalid(
                        $what,
                        format!("{s:?} is not one of: {}", [$($wire),+].join(", ")),
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// SLA tier of a reservation.
    Tier, "tier", { Standard => "standard", Premium => "premium", Enterprise => "enterprise" }
);

wire_enum!(
    /// Commitment of a reservation: how long, and whether it may be cancelled early.
    Term, "term", { Hourly => "hourly", Month => "month", HalfYear => "half_year" }
);

wire_enum!(
    /// Lifecycle of a reservation. `scheduled` and `active` hold capacity.
    ReservationStatus, "status", {
        Scheduled => "scheduled",
        Active => "active",
        Cancelled => "cancelled",
        Expired => "expired",
    }
);

wire_enum!(
    /// Who a caller is, as stated by its token.
    Role, "role", { Tenant => "tenant", Admin => "admin" }
);

wire_enum!(
    /// The class a request is served in, highest priority first.
    PriorityClass, "class", { Reserved => "reserved", Burst => "burst", Spot => "spot" }
);

impl Term {
    /// Only hourly contracts may be cancelled by the tenant before their end.
    pub fn tenant_may_cancel_early(&self) -> bool {
        matches!(self, Term::Hourly)
    }

    /// Calendar months a committed term lasts; `None` for hourly (open-ended).
    pub fn months(&self) -> Option<u32> {
        match self {
            Term::Hourly => None,
            Term::Month => Some(1),
            Term::HalfYear => Some(6),
        }
    }
}

impl ReservationStatus {
    /// Whether a reservation in this status counts against pool capacity.
    pub fn holds_capacity(&self) -> bool {
        matches!(self, ReservationStatus::Scheduled | ReservationStatus::Active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for t in Term::ALL {
            assert_eq!(t.as_str().parse::<Term>().unwrap(), *t);
            let json = serde_json::to_string(t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
        }
        for t in Tier::ALL {
            assert_eq!(t.as_str().parse::<Tier>().unwrap(), *t);
        }
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let err = "gold".parse::<Tier>().unwrap_err().to_string();
        assert!(err.contains("standard, premium, enterprise"), "{err}");
        assert!("Hourly".parse::<Term>().is_err());
    }

    #[test]
    fn priority_orders_reserved_first() {
        assert!(PriorityClass::Reserved < PriorityClass::Burst);
        assert!(PriorityClass::Burst < PriorityClass::Spot);
    }
}
