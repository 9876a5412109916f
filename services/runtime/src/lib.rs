//! What every Reservoir service shares: layered configuration, logging, the
//! database pool and migrations, gRPC serving with health and reflection, and
//! shutdown on SIGINT/SIGTERM.

pub mod config;
pub mod db;
pub mod grpc;
pub mod shutdown;
pub mod telemetry;

pub use config::Config;
pub use shutdown::Shutdown;
