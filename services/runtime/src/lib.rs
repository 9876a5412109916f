//! What every Reservoir service shares: layered configuration, logging, the
//! database pool and migrations, gRPC serving with health and reflection, and
//! shutdown on SIGINT/SIGTERM.

pub mod config;
pub mod db;
pub mod grpc;
pub mod internal_auth;
pub mod shutdown;
pub mod telemetry;

pub use internal_auth::{InternalChannel, InternalToken};
pub use shutdown::Shutdown;
