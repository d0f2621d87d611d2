//! The REST listener: route table, the request-context middleware (request id, access log, error envelope),
//! CORS, and one module per resource. Handlers stay thin: parse, call `ops/` or `chat/`, wrap.

pub mod admission;
pub mod asyncapi;
pub mod auth;
pub mod bind;
pub mod body_guard;
pub mod bot;
pub mod chat;
pub mod console;
pub mod csv;
pub mod excel;
pub mod files;
pub mod health;
pub mod json;
pub mod metrics;
pub mod normalization;
pub mod openapi;
pub mod routes;
pub mod schemas;
pub mod sql;
pub mod tables;
pub mod upload;

use std::time::Instant;

use actix_cors::Cors;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{from_fn, Next};
use actix_web::{guard, web, HttpMessage, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::envelope::{envelope_body, envelope_response, new_request_id, EnvelopeMeta, RequestId};
use crate::error::{ApiError, ErrorKind};
use crate::AppState;

/// Builds the actix application of the REST port.
pub fn rest_app(
    state: web::Data<AppState>,
) -> actix_web::App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let prefix = state.config.api.prefix.clone();
    let json_limit = state.config.max_body_bytes() as usize;
    let serve_ws =
        state.config.chat_workflows.enabled && state.config.chat_workflows.websocket.serve_on_rest_port;
    let cors = cors_policy(&state.config.cors.allowed_origins);
    actix_web::App::new()
        .app_data(state.clone())
        .app_data(
            web::JsonConfig::default().limit(json_limit).error_handler(|err, _| json_body_error(err).into()),
        )
        .app_data(web::PayloadConfig::default().limit(json_limit))
        .configure(|cfg| {
            if serve_ws {
                crate::ws::server::configure_rest_aliases(cfg, &prefix);
            }
        })
        .configure(routes::register_root)
        .service(
            web::scope(&prefix)
                // Auth first (outermost), then admission: an unauthenticated request never takes a place.
                .wrap(from_fn(admission::admit_heavy))
                .wrap(from_fn(auth::require_token))
                .configure(|cfg| {
                    for table in routes::api_tables() {
                        routes::register(cfg, table);
                    }
                })
                .default_service(web::to(not_found)),
        )
        .default_service(web::to(not_found))
        .wrap(from_fn(body_guard::guard_bodies))
        .wrap(cors)
        .wrap(from_fn(request_context))
}

/// Any origin by default (echoed, with `Vary: Origin`), every requested header, the methods the API uses.
fn cors_policy(allowed_origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
        .allow_any_header()
        .expose_headers([header::CONTENT_DISPOSITION, header::HeaderName::from_static("x-request-id")]);
    if allowed_origins.is_empty() || allowed_origins.iter().any(|o| o == "*") {
        cors = cors.allow_any_origin();
    } else {
        for origin in allowed_origins {
            cors = cors.allowed_origin(origin);
        }
    }
    cors
}

/// `GET` routes answer `HEAD` too (the body is dropped by the HTTP layer).
pub fn get() -> actix_web::Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// Default service of a resource: `OPTIONS` is answered with `Allow`, every other method gets a 405 envelope.
pub fn method_not_allowed(allow: impl Into<String>) -> actix_web::Route {
    let allow: std::sync::Arc<str> = allow.into().into();
    web::route().to(move |req: HttpRequest| {
        let allow = allow.clone();
        async move {
            if req.method() == Method::OPTIONS {
                return Ok(HttpResponse::Ok().insert_header((header::ALLOW, &*allow)).finish());
            }
            Err(ApiError::new(ErrorKind::MethodNotAllowed, "Method not allowed")
                .with_details(json!({ "allow": &*allow })))
        }
    })
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("Resource not found"))
}

fn json_body_error(err: actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError;
    match err {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::payload_too_large("Request body too large")
        }
        JsonPayloadError::ContentType => {
            ApiError::bad_request("Request body must be JSON (Content-Type: application/json)")
        }
        other => ApiError::bad_request(format!("Invalid JSON body: {other}")),
    }
}

/// A well-formed client request id is reused (1–64 chars of `[A-Za-z0-9._-]`).
fn client_request_id(req: &ServiceRequest) -> Option<String> {
    let value = req.headers().get("x-request-id")?.to_str().ok()?;
    let ok = (1..=64).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then(|| value.to_string())
}

/// Assigns the request id, renders every error as the JSON envelope (never an HTML or empty error page),
/// sets `X-Request-ID`, and writes the access log line.
async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let request_id = client_request_id(&req).unwrap_or_else(new_request_id);
    req.extensions_mut().insert(RequestId(request_id.clone()));
    // No clone of the request itself: routing needs it uniquely owned.
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let method = req.method().clone();
    // The path only: query strings may carry tokens.
    let path = req.path().to_string();
    let ctx = ErrorContext { state: state.as_ref(), path: &path, request_id: &request_id };

    let outcome = match next.call(req).await {
        Ok(res) => {
            let res = res.map_into_boxed_body();
            let status = res.status();
            let needs_envelope = res.response().error().is_some()
                || ((status.is_client_error() || status.is_server_error()) && !is_json(res.headers()));
            if needs_envelope {
                let (http_req, old) = res.into_parts();
                let new = render_error(old.error(), status, old.headers(), &ctx);
                Ok(ServiceResponse::new(http_req, new))
            } else {
                Ok(res)
            }
        }
        Err(err) => {
            let old = err.error_response();
            Err(render_error(Some(&err), old.status(), old.headers(), &ctx))
        }
    };
    let status = match &outcome {
        Ok(res) => res.status(),
        Err(res) => res.status(),
    };
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(state) = &state {
        // The matched route pattern keeps the label set bounded; errors raised before routing have none.
        let route = outcome.as_ref().ok().and_then(|res| res.request().match_pattern());
        state.metrics.observe_http(method.as_str(), route.as_deref(), status.as_u16(), elapsed);
    }
    let millis = elapsed * 1000.0;
    let line = format!("{method} {path} {} {millis:.1}ms request_id={request_id}", status.as_u16());
    if status.is_server_error() {
        log::error!("{line}");
    } else {
        log::info!("{line}");
    }
    let with_id = |mut res: HttpResponse| {
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            res.headers_mut().insert(header::HeaderName::from_static("x-request-id"), value);
        }
        res
    };
    match outcome {
        Ok(mut res) => {
            if let Ok(value) = HeaderValue::from_str(&request_id) {
                res.headers_mut().insert(header::HeaderName::from_static("x-request-id"), value);
            }
            Ok(res)
        }
        // An error the inner layers raised instead of answering: hand actix the finished envelope.
        Err(res) => {
            Err(actix_web::error::InternalError::from_response("request failed", with_id(res)).into())
        }
    }
}

struct ErrorContext<'a> {
    state: Option<&'a web::Data<AppState>>,
    path: &'a str,
    request_id: &'a str,
}

fn is_json(headers: &header::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The envelope for an error response, keeping headers set by inner layers (CORS, Allow).
fn render_error(
    error: Option<&actix_web::Error>,
    status: StatusCode,
    old_headers: &header::HeaderMap,
    ctx: &ErrorContext<'_>,
) -> HttpResponse {
    let api_error = match error {
        Some(err) => match err.as_error::<ApiError>() {
            Some(api) => api.clone(),
            None => framework_error(err),
        },
        None => framework_status_error(status),
    };
    let meta =
        ctx.state.map(|s| s.meta.clone()).unwrap_or_else(|| EnvelopeMeta::from_config(&Default::default()));
    let under_chat =
        ctx.state.is_some_and(|s| ctx.path.starts_with(&format!("{}/chat", s.config.api.prefix)));
    if let Some(cause) = &api_error.cause {
        log::error!("request_id={} {}: {cause}", ctx.request_id, ctx.path);
    }
    let data = error_data(&api_error, under_chat);
    let body = envelope_body(api_error.status(), &api_error.message, data, 0, ctx.request_id, &meta);
    let mut new = envelope_response(api_error.status(), &body);
    for (name, value) in old_headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH && !new.headers().contains_key(name)
        {
            new.headers_mut().insert(name.clone(), value.clone());
        }
    }
    if api_error.kind == ErrorKind::MethodNotAllowed {
        if let Some(allow) = api_error.details.as_ref().and_then(|d| d.get("allow")).and_then(Value::as_str) {
            if let Ok(v) = HeaderValue::from_str(allow) {
                new.headers_mut().insert(header::ALLOW, v);
            }
        }
    }
    new
}

/// `data` of an error envelope. Unknown routes and wrong methods keep the reference's `data: null`;
/// handled errors carry `error_type` and `details`. Chat endpoints keep the reference constant `Error` as
/// `error_type` (acceptance-chat A.3); the class is always available as `error_class`.
fn error_data(err: &ApiError, under_chat: bool) -> Value {
    if matches!(err.kind, ErrorKind::MethodNotAllowed)
        || (err.kind == ErrorKind::NotFound && err.message == "Resource not found")
    {
        return Value::Null;
    }
    let class = err.kind.error_type();
    json!({
        "error_type": if under_chat { "Error" } else { class },
        "error_class": class,
        "details": err.details.as_deref().cloned().unwrap_or(Value::Null),
    })
}

fn framework_error(err: &actix_web::Error) -> ApiError {
    use actix_web::error::{JsonPayloadError, PayloadError};
    if let Some(e) = err.as_error::<PayloadError>() {
        if matches!(e, PayloadError::Overflow) {
            return ApiError::payload_too_large("Request body too large");
        }
        return ApiError::bad_request("Bad Request");
    }
    if let Some(e) = err.as_error::<JsonPayloadError>() {
        return match e {
            JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
                ApiError::payload_too_large("Request body too large")
            }
            other => ApiError::bad_request(format!("Invalid JSON body: {other}")),
        };
    }
    let status = err.as_response_error().status_code();
    let mut api = framework_status_error(status);
    if status.is_server_error() {
        api.cause = Some(err.to_string());
    } else if status == StatusCode::BAD_REQUEST {
        api.message = format!("Bad Request: {err}");
    }
    api
}

fn framework_status_error(status: StatusCode) -> ApiError {
    match status {
        StatusCode::NOT_FOUND => ApiError::not_found("Resource not found"),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(ErrorKind::MethodNotAllowed, "Method not allowed"),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large("Request body too large"),
        StatusCode::RANGE_NOT_SATISFIABLE => {
            ApiError::new(ErrorKind::RangeNotSatisfiable, "Range not satisfiable: the file is shorter")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::unsupported_file_type("Unsupported media type"),
        StatusCode::TOO_MANY_REQUESTS => ApiError::new(ErrorKind::RateLimited, "Too many requests"),
        StatusCode::UNAUTHORIZED => ApiError::unauthorized("Unauthorized"),
        StatusCode::CONFLICT => ApiError::conflict("Conflict"),
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::validation("Unprocessable request"),
        s if s.is_server_error() => {
            let mut e = ApiError::internal("Internal server error", format!("status {s}"));
            if s == StatusCode::SERVICE_UNAVAILABLE {
                e.kind = ErrorKind::Unavailable;
                e.message = "Service unavailable".into();
            }
            e
        }
        _ => ApiError::bad_request("Bad Request"),
    }
}

/// Convenience for handlers whose errors never need the request: `Ok(ApiResponse)` or `Err(ApiError)`.
pub type ApiResult<T = crate::envelope::ApiResponse> = Result<T, ApiError>;
