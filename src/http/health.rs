//! `GET {prefix}/health` (liveness, always 200) and `GET {prefix}/health/ready` (readiness with real checks).

use actix_web::http::StatusCode;
use actix_web::web;
use serde_json::json;

use crate::envelope::ApiResponse;
use crate::http::get;
use crate::http::routes::{errors, Endpoint};
use crate::AppState;

pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint::get("/health", || get().to(health), errors::NONE),
    Endpoint::get("/health/", || get().to(health), errors::NONE).same_as("/health"),
    Endpoint::get("/health/ready", || get().to(ready), &[503]),
];

/// The documented operations of this module (see `http::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(health, ready))]
pub struct Doc;

#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, description = "Liveness: always healthy", body = crate::http::schemas::Envelope<crate::http::schemas::HealthData>)))]
async fn health(state: web::Data<AppState>) -> ApiResponse {
    let config = &state.config;
    ApiResponse::ok(
        "Service is healthy",
        json!({
            "service": config.app.name,
            "status": "healthy",
            "version": config.app.version,
            "uptime_seconds": state.started_at.elapsed().as_secs(),
            "websocket": state.hub.stats(),
            "http": state.metrics.http_summary(),
            "processing": state.admission.snapshot().to_json(),
        }),
    )
}

/// Each readiness check: a name and whether it passed (with the reason when it did not).
#[utoipa::path(get, path = "/health/ready", tag = "health", responses((status = 200, description = "Ready", body = crate::http::schemas::Envelope<crate::http::schemas::ReadyData>), (status = 503, description = "Not ready (a check failed)", body = crate::http::schemas::Envelope<crate::http::schemas::ReadyData>)))]
async fn ready(state: web::Data<AppState>) -> ApiResponse {
    let checks = web::block({
        let state = state.clone();
        move || readiness_checks(&state)
    })
    .await
    .unwrap_or_else(|e| vec![("blocking_pool".to_string(), Err(e.to_string()))]);
    let ready = checks.iter().all(|(_, r)| r.is_ok());
    let details: serde_json::Map<String, serde_json::Value> = checks
        .into_iter()
        .map(|(name, r)| {
            (
                name,
                match r {
                    Ok(()) => json!({"ok": true}),
                    Err(reason) => json!({"ok": false, "reason": reason}),
                },
            )
        })
        .collect();
    let data = json!({ "ready": ready, "checks": details });
    if ready {
        ApiResponse::ok("Service is ready", data)
    } else {
        ApiResponse::ok("Service is not ready", data).with_status(StatusCode::SERVICE_UNAVAILABLE)
    }
}

fn readiness_checks(state: &AppState) -> Vec<(String, Result<(), String>)> {
    let config = &state.config;
    let mut checks = vec![
        ("upload_folder".to_string(), writable(&config.file.upload_folder)),
        ("output_folder".to_string(), writable(&config.file.output_folder)),
    ];
    checks.extend(state.readiness_probes.iter().map(|probe| (probe.name().to_string(), probe.check())));
    checks
}

/// Creates and removes a probe file: the only honest way to know a folder is writable.
fn writable(dir: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let probe = tempfile::NamedTempFile::new_in(dir).map_err(|e| e.to_string())?;
    probe.close().map_err(|e| e.to_string())
}
