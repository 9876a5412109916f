//! Generated gRPC types and stubs. Proto types stop at the service edge:
//! services convert them to domain types with `TryFrom` right away.

#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("reservoir.v1");
}

/// The descriptor set of every Reservoir proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/reservoir_descriptor.bin"));
