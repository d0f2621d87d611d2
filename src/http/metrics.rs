//! `GET /metrics` on the REST port, outside the API prefix (Prometheus scrape target).

use actix_web::middleware::from_fn;
use actix_web::{web, HttpResponse};

use crate::error::ApiError;
use crate::http::routes::{allow_header, Endpoint};
use crate::http::{get, method_not_allowed};
use crate::AppState;

/// `/metrics` asks for the token when the REST API does (the counters reveal traffic).
pub const ENDPOINTS: &[Endpoint] = &[Endpoint::get("/metrics", || get().to(metrics), &[401])];

/// The documented operations of this module (see `http::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(metrics))]
pub struct Doc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    for endpoint in ENDPOINTS {
        cfg.service(
            web::resource(endpoint.path)
                .wrap(from_fn(crate::http::auth::require_token))
                .route((endpoint.route)())
                .default_service(method_not_allowed(allow_header(ENDPOINTS, endpoint.path))),
        );
    }
}

#[utoipa::path(get, path = "/metrics", tag = "metrics", responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String)))]
async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let text = state.metrics.render().map_err(|e| ApiError::internal("Internal server error", e))?;
    Ok(HttpResponse::Ok().content_type(crate::metrics::CONTENT_TYPE).body(text))
}
