//! OpenAPI documents: each service's is generated from its handlers (utoipa) and
//! completed here with what every service shares.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi};
use utoipa::{PartialSchema, ToSchema};

use crate::problem::{FieldError, Problem};

/// Adds the title, version, bearer security scheme and the shared schemas.
pub fn finish(service: &str, mut doc: OpenApi) -> OpenApi {
    doc.info = InfoBuilder::new()
        .title(format!("Panal {service} API"))
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(format!(
            "The `{service}` service of Panal. Errors are RFC 9457 `application/problem+json` documents."
        )))
        .build();
    let shared = ComponentsBuilder::new()
        .schema(Problem::name(), Problem::schema())
        .schema(FieldError::name(), FieldError::schema())
        .security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        )
        .build();
    match doc.components.as_mut() {
        Some(components) => {
            components.schemas.extend(shared.schemas);
            components.security_schemes.extend(shared.security_schemes);
        }
        None => doc.components = Some(shared),
    }
    doc
}
