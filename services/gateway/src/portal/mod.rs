//! The portal: server-rendered pages for operators (`/admin/...` pages
//! beside the JSON admin API) and tenants (`/console`), signed in with a
//! session cookie. Pages call the same services as the JSON API.

pub mod admin;
pub mod console;
pub mod page;
pub mod session;
