//! Identifiers. Tenant and model ids are human-readable slugs chosen by the
//! identity provider or the operator; so are worker ids, which a worker
//! chooses itself when none is configured (`WorkerId::unique`); reservation
//! ids are UUIDs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// Longest slug accepted for a tenant or model id.
pub const SLUG_LEN_MAX: usize = 64;

fn check_slug(what: &'static str, s: &str) -> Result<(), DomainError> {
    if s.is_empty() {
        return Err(DomainError::invalid(what, "must not be empty"));
    }
    if s.len() > SLUG_LEN_MAX {
        return Err(DomainError::invalid(what, format!("longer than {SLUG_LEN_MAX} bytes")));
    }
    let first_ok = s.as_bytes()[0].is_ascii_alphanumeric();
    let all_ok = s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !first_ok || !all_ok {
        return Err(DomainError::invalid(
            what,
            "use ASCII letters, digits, '-', '_' or '.', starting with a letter or digit",
        ));
    }
    Ok(())
}

macro_rules! slug_id {
    ($name:ident, $what:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = DomainError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                check_slug($what, s)?;
                Ok(Self(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = DomainError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                check_slug($what, &s)?;
                Ok(Self(s))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

slug_id!(TenantId, "tenant id");
slug_id!(ModelId, "model id");
slug_id!(WorkerId, "worker id");

impl WorkerId {
    /// A worker's own id when none is configured: its host's name (odd
    /// bytes made `-`, cut to leave room) and `suffix` (the caller's random
    /// letters and digits). Replicas started from one configuration (same
    /// host name in a copied image, or several on one host) thus differ by
    /// the suffix, and the host name still says where each runs.
    pub fn unique(hostname: &str, suffix: &str) -> WorkerId {
        let suffix: String = suffix.chars().filter(char::is_ascii_alphanumeric).take(16).collect();
        let room = SLUG_LEN_MAX - suffix.len() - 1;
        let host: String = hostname
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' })
            .take(room)
            .collect();
        let host = host.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
        let host = if host.is_empty() { "worker" } else { host };
        let id = if suffix.is_empty() { host.to_owned() } else { format!("{host}-{suffix}") };
        WorkerId(id)
    }
}

/// A reservation's id: a UUID, chosen by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReservationId(pub uuid::Uuid);

impl ReservationId {
    /// Time-ordered ids (UUIDv7) keep the primary-key index append-mostly.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
    }
}

impl Default for ReservationId {
    fn default() -> Self {
        Self::new()
    }
}

impl FromStr for ReservationId {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(Self).map_err(|_| DomainError::invalid("reservation id", "not a UUID"))
    }
}

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workers_own_id_is_a_valid_slug_from_any_host_name() {
        assert_eq!(WorkerId::unique("a1b2c3d4e5f6", "9f8e7d6c").as_str(), "a1b2c3d4e5f6-9f8e7d6c");
        assert_eq!(WorkerId::unique("", "0a1b").as_str(), "worker-0a1b", "no host name");
        assert_eq!(WorkerId::unique("-héllo world", "x").as_str(), "h-llo-world-x", "odd bytes made -");
        let long = WorkerId::unique(&"h".repeat(200), "12345678");
        assert_eq!(long.as_str().len(), SLUG_LEN_MAX);
        assert!(long.as_str().ends_with("-12345678"), "the suffix survives the cut");
        for (host, suffix) in [("\u{0}", "\n"), ("..", "-"), ("ünï", "ß"), ("a", "")] {
            let id = WorkerId::unique(host, suffix);
            assert!(id.as_str().parse::<WorkerId>().is_ok(), "{host:?} {suffix:?} gave {id}");
        }
        assert_ne!(WorkerId::unique("same", "aaaa"), WorkerId::unique("same", "bbbb"));
    }

    #[test]
    fn slugs_accept_the_usual_names() {
        for ok in ["acme", "smollm2-135m-instruct", "a", "Tenant_1.eu"] {
            assert!(ok.parse::<TenantId>().is_ok(), "{ok}");
        }
    }

    #[test]
    fn slugs_reject_empty_long_and_odd_bytes() {
        let long = "a".repeat(SLUG_LEN_MAX + 1);
        for bad in ["", "-acme", "ac me", "acme\0", "ação", long.as_str(), "a/b"] {
            assert!(bad.parse::<ModelId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serde_validates_ids() {
        assert!(serde_json::from_str::<TenantId>("\"acme\"").is_ok());
        assert!(serde_json::from_str::<TenantId>("\"\"").is_err());
    }
}
