//! Generated gRPC types and stubs. Proto types stop at the service edge:
//! services convert them to domain types with `TryFrom` right away.
//!
//! The conversions that several services need (closed vocabularies, the
//! typed quote and catalog) live here once, so that every edge reads the
//! wire the same way and refuses the same values with the same message.

// In tests a failed unwrap is a failed test, with the value in the message.
#![cfg_attr(test, allow(clippy::unwrap_used))]

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("reservoir.v1");
}

pub mod enums;
pub mod pricing;

/// The descriptor set of every Reservoir proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/reservoir_descriptor.bin"));

/// `google.protobuf.Timestamp` <-> `chrono::DateTime<Utc>`.
pub mod time {
    use chrono::{DateTime, Utc};
    use prost_types::Timestamp;

    pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
        Timestamp { seconds: t.timestamp(), nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0) }
    }

    /// `None` when the timestamp is outside chrono's range or malformed.
    pub fn instant(t: &Timestamp) -> Option<DateTime<Utc>> {
        u32::try_from(t.nanos).ok().and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos))
    }
}
