//! The OpenAPI 3.1 document of the control plane (`GET /v1/openapi.json`).
//!
//! Nothing here lists routes: every handler carries its `#[utoipa::path]`
//! and [`crate::api::routes`] registers it with `utoipa_axum::routes!`, which
//! adds it to the axum router and to this document at once. What this module
//! adds is what is common to many operations: the bearer and session-cookie
//! security schemes (the cookie wherever a session token goes, never on the
//! operator routes), and the problem responses that come from the shared extractors (a missing or
//! bad `Authorization` header, a `{tid}` the caller may not see, a body that is
//! not the expected JSON) and from the store (500).
//!
//! `/metrics` is the one operation documented here but served outside this
//! crate: `aerie serve` and `aerie control` add it next to this router
//! (services/aerie/src/http.rs), because the Prometheus recorder belongs to
//! the binary. It is declared below with [`metrics`], a function that only
//! carries the documentation.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{Content, OpenApi as Document, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::error::{PROBLEM_JSON, Problem};

/// The name of the security scheme every protected operation requires.
pub const BEARER: &str = "bearer";
/// The console's session cookie: accepted wherever a session token is (not
/// on the operator routes, which take the admin token only).
pub const SESSION_COOKIE: &str = "session_cookie";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Aerie control plane",
        description = "REST API v1 of Aerie, a multi-tenant MQTT broker: accounts, tenants, API keys, \
                       device tokens, and the tenant's live MQTT state (clients, messages, retained \
                       messages) and usage. Errors are `application/problem+json` (RFC 9457).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(metrics),
    components(schemas(Problem)),
    modifiers(&BearerScheme),
    tags(
        (name = "accounts", description = "Sign up and log in: a person's account and its session tokens."),
        (name = "account-api-keys", description = "Account API keys: long-lived credentials of machines acting as the account \
                                                    (every tenant of it), managed with a session token only."),
        (name = "tenants", description = "Tenants: isolated MQTT namespaces with their own limits and endpoints."),
        (name = "api-keys", description = "Tenant API keys: long-lived credentials scoped to one tenant."),
        (name = "tokens", description = "Device and browser tokens (EdDSA JWTs) for MQTT clients, and the JWKS that verifies them."),
        (name = "broker", description = "The tenant's live MQTT state: connected clients, publishing, retained messages. \
                                         Answers 503 when no broker is attached to this control plane."),
        (name = "usage", description = "Hourly usage per tenant: connection time, messages and bytes."),
        (name = "meta", description = "Health, readiness, metrics and this document."),
    )
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, doc: &mut Document) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "An account session token (from `POST /v1/accounts` or `POST /v1/sessions`; \
                 sees every tenant of the account), an account API key (`aerie_acct_…`, from \
                 `POST /v1/account/api-keys`; may do what a session token may but manage \
                 account API keys) or a tenant API key (`aerie_…`, from \
                 `POST /v1/tenants/{tid}/api-keys`; sees that tenant only).",
            ))
            .build();
        let cookie = ApiKeyValue::with_description(
            "aerie_session",
            "The console's session cookie, set by `POST /v1/accounts` and `POST /v1/sessions` \
             (named `__Host-aerie_session` when the control plane's URL is https): the session \
             token, HttpOnly, SameSite=Strict. A POST, PUT, PATCH or DELETE it authenticates \
             must come from the control plane's own origin and carry the header \
             `X-Aerie-CSRF: <csrf_token>` (from the log-in answer or `GET /v1/account`), else \
             403. Ended by `DELETE /v1/sessions/current`.",
        );
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(BEARER, SecurityScheme::Http(scheme));
        components.add_security_scheme(
            SESSION_COOKIE,
            SecurityScheme::ApiKey(ApiKey::Cookie(cookie)),
        );
    }
}

/// Prometheus text exposition of the broker's and the control plane's metrics.
///
/// Served by the `aerie` binary next to the control plane's router.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    responses((status = 200, description = "Metrics in the Prometheus text format", body = String,
               content_type = "text/plain; version=0.0.4")),
)]
#[allow(dead_code)] // documentation only: the route is in services/aerie/src/http.rs
fn metrics() {}

/// The complete document: every route of [`crate::app`] plus `/metrics`.
pub fn document() -> Document {
    let (_, mut doc) = crate::api::routes().split_for_parts();
    for (path, item) in doc.paths.paths.iter_mut() {
        let operator_route = path.starts_with("/v1/admin/");
        for (op, changes) in operations_with_writes(item) {
            if !operator_route {
                accept_session_cookie(op, changes);
            }
            add_common_problems(op);
        }
    }
    doc
}

/// Each operation, and whether it may change something (POST, PUT, PATCH,
/// DELETE: what the CSRF checks apply to).
fn operations_with_writes(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = (&mut Operation, bool)> {
    [
        (&mut item.get, false),
        (&mut item.put, true),
        (&mut item.post, true),
        (&mut item.delete, true),
        (&mut item.options, false),
        (&mut item.head, false),
        (&mut item.patch, true),
        (&mut item.trace, false),
    ]
    .into_iter()
    .filter_map(|(op, changes)| op.as_mut().map(|op| (op, changes)))
}

/// An operation that takes a bearer credential takes the session cookie as
/// an alternative (the `Principal` extractor reads either); a state-changing
/// one says it answers 403 to a cookie without its CSRF header.
fn accept_session_cookie(op: &mut Operation, changes: bool) {
    let Some(security) = op.security.as_mut() else {
        return;
    };
    let cookie = SecurityRequirement::new::<_, _, &str>(SESSION_COOKIE, []);
    if security.is_empty() || security.contains(&cookie) {
        return;
    }
    security.push(cookie);
    if changes {
        op.responses
            .responses
            .entry("403".to_owned())
            .or_insert_with(|| {
                RefOr::T(problem(
                    "Forbidden: the credential may not do this, or a request authenticated by the \
                     session cookie came without its `X-Aerie-CSRF` header or from another site",
                ))
            });
    }
}

/// A problem response with `description`.
pub fn problem(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            Content::new(Some(RefOr::Ref(Ref::from_schema_name("Problem")))),
        )
        .build()
}

/// The problem responses an operation gets from the extractors it uses
/// (recognised by what the operation declares), unless it declares them itself.
fn add_common_problems(op: &mut Operation) {
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let has_body = op.request_body.is_some();
    let in_tenant = op.parameters.iter().flatten().any(|p| p.name == "tid");
    let mut add = |status: &str, description: &str| {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(problem(description)));
    };
    if has_body {
        add(
            "400",
            "The body is not valid JSON, or a value breaks a rule",
        );
        add("413", "The body is larger than 64 KiB");
        add("415", "The body is not `application/json`");
        add(
            "422",
            "The body is JSON but not of the expected shape, or a value is out of bounds",
        );
    }
    if secured {
        add(
            "401",
            "Missing, malformed, expired or revoked credentials (answered with `WWW-Authenticate: Bearer`)",
        );
    }
    if in_tenant {
        add(
            "404",
            "No such tenant, or not one the caller may see (the same answer either way)",
        );
    }
    if secured || has_body {
        add("500", "Internal error (details in the server log only)");
    }
}

/// The document as JSON, made once.
static DOCUMENT_JSON: LazyLock<String> = LazyLock::new(|| {
    document()
        .to_json()
        .expect("the OpenAPI document serializes")
});

/// This document: the OpenAPI 3.1 description of every route.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object,
               content_type = "application/json")),
)]
pub async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT_JSON.as_str(),
    )
}
