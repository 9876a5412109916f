//! The OpenAPI 3.1 document, generated from the handlers' annotations. The
//! committed copy at `openapi/openapi.json` is checked against it by a test.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{admin, health, tenant};

#[derive(OpenApi)]
#[openapi(
    info(title = "Reservoir API", description = "Reserved LLM inference throughput: reservations, capacity, catalog, administration."),
    paths(
        health::healthz, health::readyz,
        tenant::quote, tenant::create, tenant::list, tenant::get, tenant::cancel, tenant::capacity, tenant::catalog,
        admin::list_tenants, admin::create_tenant, admin::list_models, admin::create_model, admin::update_model,
        admin::get_catalog, admin::publish_catalog, admin::list_reservations, admin::cancel_reservation,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "reservations", description = "Reserve throughput"),
        (name = "capacity", description = "Free capacity over time"),
        (name = "catalog", description = "Prices"),
        (name = "admin", description = "Operators (role admin)"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}
