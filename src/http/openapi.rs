//! `GET /openapi.json` (OpenAPI 3.1, outside the API prefix like `/metrics`) and `GET /docs` (Swagger UI,
//! its files embedded in the binary by utoipa-swagger-ui's vendored archive).
//!
//! Each handler module annotates its handlers with `#[utoipa::path]` (request body, parameters, success
//! answer) and collects them in its own `Doc`. The document is then laid out from the route tables
//! (`http::routes`): every served route gets the operation of its handler under its full path (so the
//! configured prefix is honoured), plus the error answers its table row lists. An annotated operation no
//! route serves stays in the document under its annotated path, where the route test finds it.

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock};

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, Required};
use utoipa::OpenApi;

use crate::config::Config;
use crate::error::ApiError;
use crate::http::get;
use crate::http::routes::{self, errors, Endpoint, Scope, Verb};
use crate::http::schemas::ErrorEnvelope;
use crate::AppState;

pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint::get("/openapi.json", || get().to(openapi_json), errors::NONE),
    Endpoint::get("/docs", || get().to(docs_redirect), errors::NONE),
    Endpoint::get("/docs/", || get().to(docs_index), errors::NONE),
    Endpoint::get("/docs/{file}", || get().to(docs_file), &[404]),
];

/// The part of the document that is not per route: title, shared schemas.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "oxcelize REST API",
        description = "Excel/CSV processing and chat workflows. Every JSON answer uses the envelope \
            (`data`, `message`, `meta`, `status_code`, `total`). Unknown routes answer a JSON 404 and wrong \
            methods a JSON 405 with `Allow`. `GET` routes answer `HEAD` too, every route answers `OPTIONS`. \
            The WebSocket protocol is described by `/asyncapi.json`."
    ),
    components(schemas(ErrorEnvelope)),
    modifiers(&BearerAuth)
)]
struct Base;

/// The bearer token of `chat_workflows.websocket.auth` (asked only with `auth.protect_rest_api: true`).
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut Document) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The annotated operations of every handler module.
fn annotated() -> Document {
    use crate::http::*;
    let mut doc = Base::openapi();
    for part in [
        health::Doc::openapi(),
        files::Doc::openapi(),
        excel::Doc::openapi(),
        csv::Doc::openapi(),
        normalization::Doc::openapi(),
        sql::Doc::openapi(),
        json::Doc::openapi(),
        bind::Doc::openapi(),
        chat::Doc::openapi(),
        bot::Doc::openapi(),
        metrics::Doc::openapi(),
        console::Doc::openapi(),
        asyncapi::Doc::openapi(),
        Doc::openapi(),
        crate::ws::server::Doc::openapi(),
    ] {
        doc.merge(part);
    }
    doc
}

/// The document of the REST port for this config.
pub fn document(config: &Config) -> Document {
    let mut annotated = annotated();
    let mut unused: BTreeSet<(String, Verb)> = BTreeSet::new();
    for (path, item) in &annotated.paths.paths {
        for verb in [Verb::Get, Verb::Post, Verb::Delete] {
            if operation(item, verb).is_some() {
                unused.insert((path.clone(), verb));
            }
        }
    }
    // Operations of routes this config does not serve (the WebSocket aliases when off) are left out.
    for endpoint in routes::all_endpoints() {
        unused.remove(&(endpoint.same_as.unwrap_or(endpoint.path).to_string(), endpoint.verb));
    }
    let mut out = std::mem::take(&mut annotated.paths.paths);
    let mut paths = utoipa::openapi::path::Paths::new();
    for route in routes::served(config) {
        let endpoint = route.endpoint;
        let key = endpoint.same_as.unwrap_or(endpoint.path);
        unused.remove(&(key.to_string(), endpoint.verb));
        let Some(mut op) = out.get(key).and_then(|item| operation(item, endpoint.verb)).cloned() else {
            continue;
        };
        if endpoint.same_as.is_some() {
            op.operation_id = op.operation_id.map(|id| format!("{id}{}", alias_suffix(&route.path)));
        }
        let auth =
            route.scope == Scope::Api && !route.path.starts_with(&format!("{}/health", config.api.prefix));
        add_errors(&mut op, endpoint.errors, auth);
        if auth {
            let requirement =
                utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new());
            op.security = Some(vec![utoipa::openapi::security::SecurityRequirement::default(), requirement]);
        }
        paths.add_path_operation(route.path.as_str(), vec![http_method(endpoint.verb)], op);
    }
    // Annotated but not served: kept visible so the route test fails on it.
    for (path, verb) in unused {
        if let Some(op) = out.get(&path).and_then(|item| operation(item, verb)).cloned() {
            paths.add_path_operation(&path, vec![http_method(verb)], op);
        }
    }
    out.clear();
    annotated.paths = paths;
    annotated.info.version = config.app.version.clone();
    annotated
}

fn alias_suffix(path: &str) -> String {
    let slug: String = path.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("_at{}", slug.trim_end_matches('_'))
}

fn operation(item: &PathItem, verb: Verb) -> Option<&Operation> {
    match verb {
        Verb::Get => item.get.as_ref(),
        Verb::Post => item.post.as_ref(),
        Verb::Delete => item.delete.as_ref(),
    }
}

fn http_method(verb: Verb) -> utoipa::openapi::HttpMethod {
    match verb {
        Verb::Get => utoipa::openapi::HttpMethod::Get,
        Verb::Post => utoipa::openapi::HttpMethod::Post,
        Verb::Delete => utoipa::openapi::HttpMethod::Delete,
    }
}

/// What each error status means here (README "Responses and errors").
fn error_description(status: u16) -> &'static str {
    match status {
        400 => "BadRequest / FileProcessingError: malformed request or a file that cannot be processed",
        401 => "Unauthorized: missing or invalid bearer token (with `auth.protect_rest_api: true`)",
        403 => "Origin not allowed (with `reject_at_handshake: true`)",
        404 => "NotFound: unknown conversation, job or file",
        408 => "RequestTimeout: the request body arrived too slowly",
        409 => "Conflict: the resource is busy or already exists",
        413 => "PayloadTooLarge: body, upload or uncompressed workbook over its limit",
        415 => "UnsupportedFileTypeError: a file extension or content the endpoint does not take",
        405 => "MethodNotAllowed: a plain request where only a WebSocket upgrade is served",
        416 => "Range not satisfiable",
        422 => "ValidationError: a field is missing or invalid (details name it)",
        429 => "RateLimited: too many request bodies in transit from this address",
        503 => "ServiceUnavailable: not ready, or the job queue is full",
        _ => "Error",
    }
}

fn add_errors(op: &mut Operation, statuses: &[u16], auth: bool) {
    let mut all: BTreeSet<u16> = statuses.iter().copied().collect();
    if auth {
        all.insert(401);
    }
    for status in all {
        let key = status.to_string();
        if op.responses.responses.contains_key(&key) {
            continue;
        }
        let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorEnvelope"))).build();
        let response = ResponseBuilder::new()
            .description(error_description(status))
            .content("application/json", content)
            .build();
        op.responses.responses.insert(key, RefOr::T(response));
    }
    if let Some(body) = op.request_body.as_mut() {
        body.required.get_or_insert(Required::True);
    }
}

#[derive(OpenApi)]
#[openapi(paths(openapi_json, docs_redirect, docs_index, docs_file))]
pub struct Doc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "docs",
    responses((status = 200, description = "The OpenAPI 3.1 document of the REST port", content_type = "application/json", body = Object)))]
async fn openapi_json(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let config = state.config.clone();
    let json = web::block(move || document(&config).to_json())
        .await
        .map_err(|e| ApiError::internal("Internal server error", e))?
        .map_err(|e| ApiError::internal("Internal server error", e))?;
    Ok(HttpResponse::Ok().content_type("application/json").body(json))
}

/// Swagger UI lives under `/docs/` (its files are addressed relative to it).
#[utoipa::path(get, path = "/docs", tag = "docs",
    responses((status = 308, description = "Redirect to `/docs/`", headers(("location" = String, description = "`/docs/`")))))]
async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header((header::LOCATION, "/docs/")).finish()
}

/// Swagger UI for `/openapi.json`, served from the binary.
#[utoipa::path(get, path = "/docs/", tag = "docs",
    responses((status = 200, description = "Swagger UI page", content_type = "text/html", body = String)))]
async fn docs_index() -> Result<HttpResponse, ApiError> {
    swagger_file("")
}

/// A file of Swagger UI (`swagger-ui-bundle.js`, `swagger-ui.css`, `swagger-initializer.js`, …).
#[utoipa::path(get, path = "/docs/{file}", tag = "docs",
    params(("file" = String, Path, description = "File name")),
    responses((status = 200, description = "The file", content((String = "application/javascript"), (String = "text/javascript"), (String = "text/css"), (String = "text/html"), (String = "image/png"), (String = "application/json")))))]
async fn docs_file(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    swagger_file(&file)
}

static SWAGGER_CONFIG: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> =
    LazyLock::new(|| Arc::new(utoipa_swagger_ui::Config::from("/openapi.json")));

fn swagger_file(name: &str) -> Result<HttpResponse, ApiError> {
    match utoipa_swagger_ui::serve(name, SWAGGER_CONFIG.clone()) {
        Ok(Some(file)) => Ok(HttpResponse::Ok()
            .content_type(file.content_type)
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .body(file.bytes.to_vec())),
        Ok(None) => Err(ApiError::not_found("Resource not found")),
        Err(e) => Err(ApiError::internal("Internal server error", e.to_string())),
    }
}
