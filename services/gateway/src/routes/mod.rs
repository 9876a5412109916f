pub mod admin;
pub mod health;
pub mod sla;
pub mod sla_admin;
pub mod status;
pub mod tenant;
pub mod usage;
