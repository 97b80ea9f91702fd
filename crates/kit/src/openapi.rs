//! OpenAPI documents: each service's is generated from its handlers (utoipa) and
//! completed here with what every service shares.
//!
//! **The answers kit gives.** A handler's annotation lists what its own code
//! answers (200, and 404 or 409 where its rules say so). What kit answers for
//! it, a service cannot forget: [`finish`] adds them to every operation from
//! the operation's shape — 401 where a token is declared, 403 where the
//! requirement names a role (`security(("bearer" = ["admin"]))`), 400, 413, 415 and
//! 422 where there is a body, 400 for path and query parameters kit parses,
//! 500 and 503 everywhere — each a problem document, and gives every answer
//! its description. The gateway adds its own the same way ([`add_answers`]:
//! 429, 502, 503, 504) to the document it merges.
//!
//! **Examples.** Every request body and success answer gets an example
//! composed from its schema ([`add_examples`]): the `example` of each field
//! (`#[schema(example = …)]`), a format's canonical value (a UUID, a
//! timestamp, an address), an enum's first value. A body whose required
//! field has none gets no example, and the contract test names it.

use http::StatusCode;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, Ref, RefOr};
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
    for operation in operations(&mut doc) {
        complete(operation);
    }
    add_examples(doc)
}

/// Media types whose examples kit composes: JSON, and forms (whose fields
/// are a flat object).
const EXAMPLE_MEDIA: [&str; 2] = ["application/json", "application/x-www-form-urlencoded"];

/// Gives every request body and 2xx answer of `doc` without an example one
/// composed from its schema, where every required field has a value to
/// show. (Worked on the document's JSON: once per start, and utoipa's typed
/// schema tree would take five times the code.)
pub fn add_examples(doc: OpenApi) -> OpenApi {
    let Ok(mut value) = serde_json::to_value(&doc) else { return doc };
    let schemas = value.pointer("/components/schemas").cloned().unwrap_or_default();
    let Some(paths) = value.get_mut("paths").and_then(serde_json::Value::as_object_mut) else { return doc };
    for operation in paths.values_mut().filter_map(serde_json::Value::as_object_mut).flat_map(|item| item.values_mut())
    {
        let Some(operation) = operation.as_object_mut() else { continue };
        let mut bodies: Vec<&mut serde_json::Value> = Vec::new();
        for (key, part) in operation.iter_mut() {
            match key.as_str() {
                "requestBody" => bodies.extend(part.get_mut("content")),
                "responses" => bodies.extend(
                    part.as_object_mut()
                        .into_iter()
                        .flat_map(|responses| responses.iter_mut())
                        .filter(|(status, _)| status.starts_with('2'))
                        .filter_map(|(_, response)| response.get_mut("content")),
                ),
                _ => {}
            }
        }
        for content in bodies.into_iter().filter_map(serde_json::Value::as_object_mut) {
            for (_, body) in content.iter_mut().filter(|(media, _)| EXAMPLE_MEDIA.contains(&media.as_str())) {
                if body.get("example").is_some() || body.get("examples").is_some() {
                    continue;
                }
                if let Some(example) = body.get("schema").and_then(|schema| example_of(schema, &schemas, 0)) {
                    body["example"] = example;
                }
            }
        }
    }
    serde_json::from_value(value).unwrap_or(doc)
}

/// An example of a value of `schema`, if every required part has one.
fn example_of(schema: &serde_json::Value, schemas: &serde_json::Value, depth: u8) -> Option<serde_json::Value> {
    use serde_json::{Value, json};
    if depth > 12 {
        return None;
    }
    let first = |key: &str| schema.get(key).and_then(Value::as_array).and_then(|a| a.first()).cloned();
    if let Some(example) = schema.get("example").cloned().or_else(|| first("examples")) {
        return Some(example);
    }
    if let Some(name) = schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/components/schemas/"))
    {
        return example_of(schemas.get(name)?, schemas, depth + 1);
    }
    if let Some(value) =
        schema.get("const").cloned().or_else(|| schema.get("default").cloned()).or_else(|| first("enum"))
    {
        return Some(value);
    }
    // A union: its first variant that is not null and has an example.
    for key in ["oneOf", "anyOf"] {
        if let Some(variants) = schema.get(key).and_then(Value::as_array) {
            return variants
                .iter()
                .filter(|v| v.get("type").and_then(Value::as_str) != Some("null"))
                .find_map(|v| example_of(v, schemas, depth + 1));
        }
    }
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        let mut merged = serde_json::Map::new();
        for part in parts {
            match example_of(part, schemas, depth + 1)? {
                Value::Object(fields) => merged.extend(fields),
                other if parts.len() == 1 => return Some(other),
                _ => return None,
            }
        }
        return Some(Value::Object(merged));
    }
    // `type` is a name, or a list of them (`["string", "null"]`).
    let kind = match schema.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(Value::Array(kinds)) => kinds.iter().filter_map(Value::as_str).find(|k| *k != "null")?,
        _ if schema.get("properties").is_some() => "object",
        _ => return None,
    };
    match kind {
        "object" => {
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut fields = serde_json::Map::new();
            for (name, property) in schema.get("properties").and_then(Value::as_object).into_iter().flatten() {
                match example_of(property, schemas, depth + 1) {
                    Some(value) => {
                        fields.insert(name.clone(), value);
                    }
                    None if required.contains(&name.as_str()) => return None,
                    None => {}
                }
            }
            Some(Value::Object(fields))
        }
        "array" => Some(json!([example_of(schema.get("items")?, schemas, depth + 1)?])),
        "boolean" => Some(json!(false)),
        "integer" | "number" => Some(schema.get("minimum").cloned().unwrap_or(json!(0))),
        "string" => match schema.get("format").and_then(Value::as_str)? {
            "uuid" => Some(json!("01a23ce5-3f4f-7d4b-8ada-5bdc3de59327")),
            "date-time" => Some(json!("2026-12-03T17:13:06Z")),
            "date" => Some(json!("2026-12-03")),
            "email" => Some(json!("ada@example.com")),
            "uri" | "url" => Some(json!("https://panal.example/")),
            _ => None,
        },
        _ => None,
    }
}

/// The content type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The operation extension by which a handler says it answers the errors of
/// its own body and parameters itself, in another shape
/// (`extensions(("x-panal-errors" = json!("own")))`): kit then adds no 400,
/// 415 or 422 of its own to it.
pub const OWN_ERRORS: &str = "x-panal-errors";

/// Every operation of `doc`.
pub fn operations(doc: &mut OpenApi) -> impl Iterator<Item = &mut Operation> {
    doc.paths.paths.values_mut().flat_map(|item: &mut PathItem| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
    })
}

/// Adds `answers` (status, description) as problem documents to every
/// operation of `doc` that does not document them already.
pub fn add_answers(doc: &mut OpenApi, answers: &[(StatusCode, &str)]) {
    for operation in operations(doc) {
        for (status, description) in answers {
            add_problem(operation, *status, description);
        }
    }
}

/// The answers kit gives for `operation`, from its shape; then a description
/// for every answer that has none (the status's reason phrase).
fn complete(operation: &mut Operation) {
    let mut answers: Vec<(StatusCode, &str)> = Vec::new();
    if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
        answers.push((StatusCode::UNAUTHORIZED, "Missing, invalid, expired or revoked access token"));
    }
    // Roles named in the requirement (`security(("bearer" = ["admin"]))`,
    // as OpenAPI 3.1 allows for bearer schemes): a token without one is 403.
    let needs_role = operation.security.iter().flatten().any(|requirement| {
        serde_json::to_value(requirement)
            .ok()
            .and_then(|v| {
                v.as_object().map(|o| o.values().any(|roles| roles.as_array().is_some_and(|r| !r.is_empty())))
            })
            .unwrap_or(false)
    });
    if needs_role {
        answers.push((StatusCode::FORBIDDEN, "The token does not carry the role this operation needs"));
    }
    let takes = |place: ParameterIn| {
        operation.parameters.iter().flatten().any(|p| matches!(p, RefOr::T(p) if p.parameter_in == place))
    };
    if takes(ParameterIn::Path) {
        answers.push((StatusCode::BAD_REQUEST, "A path parameter is malformed"));
    }
    // An operation that reads its own body and parameters and answers their
    // errors in another shape (the OAuth endpoints) gets only what kit
    // answers before it runs: the body limit.
    let own_errors = operation.extensions.as_ref().and_then(|e| e.get(OWN_ERRORS)).is_some_and(|v| v == "own");
    if takes(ParameterIn::Query) && !own_errors {
        answers.push((StatusCode::BAD_REQUEST, "A query parameter is malformed"));
        answers.push((StatusCode::UNPROCESSABLE_ENTITY, "A query parameter is out of bounds"));
    }
    if operation.request_body.is_some() {
        answers.push((StatusCode::PAYLOAD_TOO_LARGE, "The body is over the limit"));
    }
    if operation.request_body.is_some() && !own_errors {
        answers.push((StatusCode::BAD_REQUEST, "The body is malformed"));
        answers.push((StatusCode::UNSUPPORTED_MEDIA_TYPE, "The body is not of a type this operation takes"));
        answers.push((
            StatusCode::UNPROCESSABLE_ENTITY,
            "The body is well-formed but invalid (each field's error listed)",
        ));
    }
    answers.push((StatusCode::INTERNAL_SERVER_ERROR, "An unexpected failure (the request id is in the document)"));
    answers.push((StatusCode::SERVICE_UNAVAILABLE, "Overloaded, too slow, or a dependency is down (see Retry-After)"));
    for (status, description) in answers {
        add_problem(operation, status, description);
    }
    for (status, response) in operation.responses.responses.iter_mut() {
        if let RefOr::T(response) = response
            && response.description.is_empty()
        {
            response.description = status
                .parse::<u16>()
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .and_then(|s| s.canonical_reason())
                .unwrap_or("The answer")
                .to_owned();
        }
    }
}

fn add_problem(operation: &mut Operation, status: StatusCode, description: &str) {
    operation.responses.responses.entry(status.as_u16().to_string()).or_insert_with(|| {
        // An example of the document, so a reader (or a generated client's
        // docs) sees the shape of this very answer.
        let example = serde_json::json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": description,
            "request_id": "01a23ce5-3f4f-7d4b-8ada-5bdc3de59327",
        });
        let content =
            ContentBuilder::new().schema(Some(Ref::from_schema_name(Problem::name()))).example(Some(example)).build();
        RefOr::T(ResponseBuilder::new().description(description).content(PROBLEM_JSON, content).build())
    });
}

#[cfg(test)]
mod tests {
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, PathItem};
    use utoipa::openapi::request_body::RequestBodyBuilder;
    use utoipa::openapi::security::SecurityRequirement;
    use utoipa::openapi::{PathsBuilder, ResponseBuilder, ResponsesBuilder};

    use super::*;

    fn statuses(doc: &mut OpenApi) -> Vec<String> {
        operations(doc).next().map(|o| o.responses.responses.keys().cloned().collect()).unwrap_or_default()
    }

    #[test]
    fn kits_answers_follow_the_operations_shape() {
        let protected_with_body = OperationBuilder::new()
            .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
            .parameter(ParameterBuilder::new().name("id").parameter_in(ParameterIn::Path))
            .request_body(Some(RequestBodyBuilder::new().build()))
            .responses(ResponsesBuilder::new().response("200", ResponseBuilder::new().build()));
        let doc = OpenApi::builder()
            .paths(PathsBuilder::new().path("/v1/x/{id}", PathItem::new(HttpMethod::Put, protected_with_body)))
            .build();
        let mut doc = finish("x", doc);
        assert_eq!(statuses(&mut doc), ["200", "400", "401", "413", "415", "422", "500", "503"]);
        let op = operations(&mut doc).next().unwrap_or_else(|| unreachable!());
        let RefOr::T(ok) = &op.responses.responses["200"] else { unreachable!() };
        assert_eq!(ok.description, "OK", "an answer without a description gets its reason phrase");
        let RefOr::T(unauthorized) = &op.responses.responses["401"] else { unreachable!() };
        let RefOr::T(content) = &unauthorized.content[PROBLEM_JSON] else { unreachable!() };
        let example = content.example.clone().unwrap_or_default();
        assert_eq!(example["status"], 401, "each added answer shows an example of itself");

        let public_read = OperationBuilder::new()
            .parameter(ParameterBuilder::new().name("q").parameter_in(ParameterIn::Query))
            .responses(ResponsesBuilder::new().response("200", ResponseBuilder::new().description("Found").build()));
        let doc = OpenApi::builder()
            .paths(PathsBuilder::new().path("/v1/x", PathItem::new(HttpMethod::Get, public_read)))
            .build();
        let mut doc = finish("x", doc);
        assert_eq!(statuses(&mut doc), ["200", "400", "422", "500", "503"], "no token, no body: no 401, 413 or 415");
        add_answers(&mut doc, &[(StatusCode::TOO_MANY_REQUESTS, "Slow down")]);
        assert!(statuses(&mut doc).contains(&"429".to_owned()));

        let admin_only = OperationBuilder::new()
            .security(SecurityRequirement::new("bearer", ["admin"]))
            .responses(ResponsesBuilder::new().response("200", ResponseBuilder::new().description("Done").build()));
        let doc = OpenApi::builder()
            .paths(PathsBuilder::new().path("/v1/x/admin", PathItem::new(HttpMethod::Post, admin_only)))
            .build();
        let mut doc = finish("x", doc);
        assert_eq!(statuses(&mut doc), ["200", "401", "403", "500", "503"], "a named role: 403 too");

        let mut extensions = utoipa::openapi::extensions::Extensions::default();
        extensions.insert(OWN_ERRORS.to_owned(), serde_json::json!("own"));
        let oauth = OperationBuilder::new()
            .request_body(Some(RequestBodyBuilder::new().build()))
            .extensions(Some(extensions))
            .responses(ResponsesBuilder::new().response("200", ResponseBuilder::new().description("Token").build()));
        let doc = OpenApi::builder()
            .paths(PathsBuilder::new().path("/v1/x/token", PathItem::new(HttpMethod::Post, oauth)))
            .build();
        let mut doc = finish("x", doc);
        assert_eq!(statuses(&mut doc), ["200", "413", "500", "503"], "its own body errors: only the limit added");
    }

    #[test]
    fn examples_are_composed_from_the_fields_and_only_when_every_required_one_has_one() {
        use serde_json::json;
        let doc: OpenApi = serde_json::from_value(json!({
            "openapi": "3.1.0",
            "info": {"title": "x", "version": "1"},
            "paths": {"/v1/x": {"post": {
                "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/In"}}}},
                "responses": {
                    "200": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Out"}}}},
                    "201": {"description": "made", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Bare"}}}}
                }
            }}},
            "components": {"schemas": {
                "In": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string", "example": "Ada"},
                    "note": {"type": ["string", "null"]}
                }},
                "Out": {"type": "object", "required": ["id", "tags", "kind", "at"], "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "tags": {"type": "array", "items": {"type": "string", "example": "pong"}},
                    "kind": {"type": "string", "enum": ["human", "bot"]},
                    "at": {"type": "string", "format": "date-time"},
                    "owner": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/In"}]}
                }},
                "Bare": {"type": "object", "required": ["secret"], "properties": {"secret": {"type": "string"}}}
            }}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let doc = serde_json::to_value(add_examples(doc)).unwrap_or_default();
        let op = &doc["paths"]["/v1/x"]["post"];
        assert_eq!(op["requestBody"]["content"]["application/json"]["example"], json!({"name": "Ada"}));
        assert_eq!(
            op["responses"]["200"]["content"]["application/json"]["example"],
            json!({"id": "01a23ce5-3f4f-7d4b-8ada-5bdc3de59327", "tags": ["pong"], "kind": "human",
                   "at": "2026-12-03T17:13:06Z", "owner": {"name": "Ada"}})
        );
        assert!(
            op["responses"]["201"]["content"]["application/json"].get("example").is_none(),
            "a required field without an example: no example, for the contract test to name"
        );
    }
}
