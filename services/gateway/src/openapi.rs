//! The OpenAPI 3.1 document, generated from the handlers' annotations. The
//! committed copy at `openapi/openapi.json` is checked against it by a test.

use utoipa::openapi::header::Header;
use utoipa::openapi::schema::{Object, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::routes::{admin, billing, billing_admin, health, sla, sla_admin, status, tenant, usage};

#[derive(OpenApi)]
#[openapi(
    info(title = "Reservoir API", description = "Reserved LLM inference throughput: reservations, capacity, catalog, administration."),
    paths(
        health::healthz, health::readyz,
        tenant::quote, tenant::create, tenant::list, tenant::get, tenant::cancel, tenant::capacity, tenant::catalog,
        usage::usage,
        sla::sla, sla::credits, sla::create_webhook, sla::list_webhooks, sla::delete_webhook,
        status::status_html, status::status_json, status::status_feed,
        crate::openai::chat_completions, crate::openai::completions, crate::openai::models,
        admin::list_tenants, admin::create_tenant, admin::list_models, admin::create_model, admin::update_model,
        admin::get_catalog, admin::publish_catalog, admin::list_reservations, admin::cancel_reservation,
        sla_admin::incidents, sla_admin::add_update, sla_admin::set_postmortem, sla_admin::close_period,
        sla_admin::create_maintenance, sla_admin::list_maintenance, sla_admin::cancel_maintenance,
        sla_admin::export_credits, sla_admin::create_webhook, sla_admin::list_webhooks, sla_admin::delete_webhook,
        billing::list, billing::get, billing::credit_balance,
        billing_admin::run_period, billing_admin::list, billing_admin::get, billing_admin::finalize,
        billing_admin::hold, billing_admin::release, billing_admin::void, billing_admin::credit_note,
        billing_admin::credit_notes, billing_admin::export_invoices, billing_admin::export_lines,
        billing_admin::export_credit_notes,
    ),
    // Enums of query parameters: referenced by the parameters, so the
    // document must hold them.
    components(schemas(sla_admin::ScopeFilter, sla_admin::StatusFilter, sla_admin::ExportFormat, billing::InvoiceStatus)),
    modifiers(&BearerAuth),
    tags(
        (name = "reservations", description = "Reserve throughput"),
        (name = "capacity", description = "Free capacity over time"),
        (name = "catalog", description = "Prices"),
        (name = "usage", description = "What a tenant used"),
        (name = "sla", description = "Availability per contract, incidents, credits, webhooks"),
        (name = "billing", description = "Invoices and the credit balance"),
        (name = "status", description = "The public status page (no login)"),
        (name = "inference", description = "OpenAI-compatible completions (the tenant token is the API key)"),
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
        // Every authenticated operation is rate limited per caller; the
        // OpenAI routes document their own 429 (in OpenAI's error shape).
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
            for operation in operations.into_iter().flatten() {
                if operation.security.is_some() {
                    operation.responses.responses.entry("429".into()).or_insert_with(too_many_requests);
                }
            }
        }
    }
}

fn too_many_requests() -> RefOr<Response> {
    ResponseBuilder::new()
        .description("Too many requests from this caller; retry after the Retry-After header's seconds")
        .header("Retry-After", Header::new(Object::with_type(Type::Integer)))
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
        .build()
        .into()
}
