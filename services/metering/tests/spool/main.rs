//! The durable usage spool against real files: group commit, recovery from
//! torn and corrupt data, trimming, a SIGKILL mid-append, and a property test.

mod basics;
mod common;
mod crash;
mod prop;
mod recovery;
mod trim;
