//! The OpenAPI 3.1 document served at `/openapi.json`, for client generators and API gateways.
//! Generated once at startup from the code, so it cannot drift from it: routes and bodies from
//! the handlers' `#[utoipa::path]` annotations and the answer types, error codes from
//! `ApiError` itself (every variant, with its status and `Retry-After`).
//!
//! What utoipa's annotations cannot say without repeating it per route is added here: the
//! `stream` path parameter, `Content-Encoding`, the API key, every error answer of each route,
//! and the `HEAD` twins of the operator's `GET` routes. The document describes this instance:
//! without `auth.required` there is no API key in it, without `[cors]` no `origin_not_allowed`.

use std::collections::BTreeMap;

use strum::IntoEnumIterator;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, OneOfBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Components, OpenApi as Document, RefOr, Required, Schema};
use utoipa::OpenApi;

use super::auth::{API_KEY_HEADER, API_KEY_PARAM};
use super::error::{ApiError, ACCEPTED_CODINGS};
use super::paths::{ROUTE_RECORDS, ROUTE_SHORT, ROUTE_STREAM};
use super::{events, ops};
use actix_web::ResponseError;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kinesis-proxy",
        description = "An HTTP front door for Amazon Kinesis Data Streams: POST JSON events, get back the shard and sequence number once Kinesis accepted them. Every error body is `{\"error\": \"<message>\", \"code\": \"<stable code>\"}`; clients switch on `code`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        events::put_event_stream_route,
        events::put_event_short_route,
        events::put_records,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        ops::openapi,
    ),
    tags(
        (name = "events", description = "Writing events to Kinesis streams"),
        (name = "operations", description = "Health, readiness, metrics and this document; no API key needed"),
    ),
)]
struct ApiDoc;

/// What of the configuration the document reflects.
#[derive(Debug, Clone, Copy)]
pub struct DocumentOptions {
    pub auth_required: bool,
    pub cors: bool,
}

/// The document, serialized.
pub fn document(options: DocumentOptions) -> bytes::Bytes {
    let doc = build(options);
    // Serializing plain data structures cannot fail; an empty body would show it if it did.
    serde_json::to_vec(&doc).unwrap_or_default().into()
}

const API_KEY_SCHEME: &str = "api_key";
/// Publishable keys (`auth.public_keys`) may come in the query, for `navigator.sendBeacon`.
const API_KEY_QUERY_SCHEME: &str = "api_key_query";

fn build(options: DocumentOptions) -> Document {
    let mut doc = ApiDoc::openapi();
    let components = doc.components.get_or_insert_with(Components::new);
    components
        .schemas
        .insert("ErrorCode".into(), error_code_schema());
    components
        .schemas
        .insert("ErrorBody".into(), error_body_schema());
    if options.auth_required {
        components.add_security_scheme(
            API_KEY_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                API_KEY_HEADER,
                "One of the proxy's API keys (auth.keys); a key may be limited to some streams",
            ))),
        );
        if options.cors {
            components.add_security_scheme(
                API_KEY_QUERY_SCHEME,
                SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                    API_KEY_PARAM,
                    "A publishable key (auth.public_keys), only from a page of cors.allowed_origins; a secret key here is refused (400 api_key_in_url)",
                ))),
            );
        }
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        let writes = [ROUTE_STREAM, ROUTE_SHORT, ROUTE_RECORDS].contains(&path.as_str());
        if writes {
            if let Some(post) = item.post.as_mut() {
                describe_write(post, options);
            }
        }
        if let Some(get) = item.get.as_mut() {
            add_errors(get, &route_errors(false, options));
            let mut head = get.clone();
            head.operation_id = get.operation_id.as_ref().map(|id| format!("{id}_head"));
            head.summary = Some("The same as GET, without the body".into());
            head.description = None;
            for response in head.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    response.content.clear();
                }
            }
            item.head = Some(head);
        }
    }
    doc
}

/// The stream parameter, the content coding, the API key and every error of a write route.
fn describe_write(operation: &mut Operation, options: DocumentOptions) {
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    parameters.push(
        ParameterBuilder::new()
            .name("stream")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some("The Kinesis stream: 1-128 of [a-zA-Z0-9_.-], allowed by streams.allow and by the key's scope"))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[a-zA-Z0-9_.-]{1,128}$"))
                    .build(),
            ))
            .build(),
    );
    parameters.push(
        ParameterBuilder::new()
            .name("Content-Encoding")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(format!(
                "{ACCEPTED_CODINGS}; compressed bodies are decoded within limits.max_decoded_body_bytes"
            )))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["gzip", "x-gzip", "zstd", "identity"]))
                    .build(),
            ))
            .build(),
    );
    if options.auth_required {
        let mut security = vec![SecurityRequirement::new(
            API_KEY_SCHEME,
            Vec::<String>::new(),
        )];
        if options.cors {
            security.push(SecurityRequirement::new(
                API_KEY_QUERY_SCHEME,
                Vec::<String>::new(),
            ));
        }
        operation.security = Some(security);
    }
    add_errors(operation, &route_errors(true, options));
    if operation.operation_id.as_deref() == Some("put_records") {
        // When every record failed for the same reason, the answer has that reason's status
        // and still the per-record body (see the README).
        for status in ["500", "503"] {
            if let Some(RefOr::T(response)) = operation.responses.responses.get_mut(status) {
                if let Some(content) = response.content.get_mut("application/json") {
                    let Some(error) = content.schema.take() else {
                        continue;
                    };
                    let both = OneOfBuilder::new()
                        .item(error)
                        .item(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                            "RecordsResponse",
                        )))
                        .build();
                    content.schema = Some(Schema::OneOf(both).into());
                }
                response.description.push_str(
                    "; or, when every record failed for this reason, the records body with each record's error",
                );
            }
        }
    }
}

/// The errors a route can answer with this configuration.
fn route_errors(writes: bool, options: DocumentOptions) -> Vec<ApiError> {
    ApiError::iter()
        .filter(|error| match error {
            // Unmatched paths and preflights never reach a route, and a 405 is the answer to
            // the methods a path has no operation for.
            ApiError::NotFound
            | ApiError::MethodNotAllowed
            | ApiError::InvalidPreflight(_)
            | ApiError::CorsRequestNotAllowed(_) => false,
            ApiError::OriginNotAllowed(_) => options.cors,
            ApiError::MissingApiKey
            | ApiError::InvalidApiKey
            | ApiError::ApiKeyInUrl(_)
            | ApiError::StreamNotInKeyScope(_) => writes && options.auth_required,
            _ => writes,
        })
        .collect()
}

/// One response per status, its `code` narrowed to the codes of that status.
fn add_errors(operation: &mut Operation, errors: &[ApiError]) {
    let mut by_status: BTreeMap<u16, Vec<&ApiError>> = BTreeMap::new();
    for error in errors {
        by_status
            .entry(error.status_code().as_u16())
            .or_default()
            .push(error);
    }
    for (status, errors) in by_status {
        let mut codes: Vec<&'static str> = errors.iter().map(|e| e.code()).collect();
        codes.dedup();
        let schema = AllOfBuilder::new()
            .item(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                "ErrorBody",
            )))
            .item(
                ObjectBuilder::new().property(
                    "code",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(codes.clone())),
                ),
            )
            .build();
        let list: Vec<String> = codes.iter().map(|c| format!("`{c}`")).collect();
        let mut response = ResponseBuilder::new()
            .description(format!("Refused: {}", list.join(", ")))
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Schema::AllOf(schema)))
                    .build(),
            );
        if errors.iter().any(|e| e.retry_after().is_some()) {
            response = response.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(1)),
                    )
                    .description(Some("Seconds to wait before retrying"))
                    .build(),
            );
        }
        // A status the annotations already describe (readyz's 503) keeps its own answer.
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert(RefOr::T(response.build()));
    }
}

/// Every error code, with its status in the description.
fn error_code_schema() -> RefOr<Schema> {
    let mut codes: Vec<(&'static str, u16)> = ApiError::iter()
        .map(|e| (e.code(), e.status_code().as_u16()))
        .collect();
    codes.sort_unstable();
    codes.dedup();
    let lines: Vec<String> = codes
        .iter()
        .map(|(code, status)| format!("- `{code}`: {status}"))
        .collect();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(codes.iter().map(|(code, _)| *code)))
        .description(Some(format!(
            "The stable error codes and their HTTP status; the set only grows.\n\n{}",
            lines.join("\n")
        )))
        .into()
}

fn error_body_schema() -> RefOr<Schema> {
    ObjectBuilder::new()
        .property(
            "error",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("What is wrong and what to do, for a person")),
        )
        .property(
            "code",
            RefOr::Ref(utoipa::openapi::Ref::from_schema_name("ErrorCode")),
        )
        .required("error")
        .required("code")
        .description(Some("The body of every error answer"))
        .into()
}

#[cfg(test)]
mod tests;
