//! The platform as a library: its configuration (`Config`, every service's
//! section together) and the one composition root (`platform::build`) that
//! the `reservoir` binary, the benches and the end-to-end tests start
//! services through, and the pool's calibration (`calibrate`), which
//! `reservoir up`, the benches and the tests measure models with.

pub mod calibrate;
pub mod config;
pub mod platform;

pub use config::Config;
pub use platform::{Endpoints, Given, Platform, Service, build};
