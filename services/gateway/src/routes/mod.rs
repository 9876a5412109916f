pub mod admin;
pub mod health;
pub mod tenant;
pub mod usage;
