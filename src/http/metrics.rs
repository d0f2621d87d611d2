//! `GET /metrics` on the REST port, outside the API prefix (Prometheus scrape target).

use actix_web::middleware::from_fn;
use actix_web::{web, HttpResponse};

use crate::error::ApiError;
use crate::http::{get, method_not_allowed};
use crate::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/metrics")
            .wrap(from_fn(crate::http::auth::require_token))
            .route(get().to(metrics))
            .default_service(method_not_allowed("GET, HEAD, OPTIONS")),
    );
}

async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let text = state.metrics.render().map_err(|e| ApiError::internal("Internal server error", e))?;
    Ok(HttpResponse::Ok().content_type(crate::metrics::CONTENT_TYPE).body(text))
}
