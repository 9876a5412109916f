//! Metering: one usage record per request (`record`), stored in batches
//! (`recorder`), queried for the SLA and billing (`store`), served over gRPC
//! (`service`).

pub mod record;
pub mod recorder;
pub mod service;
pub mod store;
