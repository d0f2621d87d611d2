//! `GET /asyncapi.json` on the REST port, outside the API prefix: the AsyncAPI 3.0 document of the
//! WebSocket protocol (`ws::asyncapi`). It describes the protocol and holds no data, so it needs no token.

use actix_web::{web, HttpResponse};
use utoipa::OpenApi;

use crate::http::get;
use crate::http::routes::{errors, Endpoint};
use crate::AppState;

pub const ENDPOINTS: &[Endpoint] = &[Endpoint::get("/asyncapi.json", || get().to(document), errors::NONE)];

#[derive(OpenApi)]
#[openapi(paths(document))]
pub struct Doc;

/// The AsyncAPI 3.0 document of the WebSocket protocol (channels, client messages, server events).
#[utoipa::path(get, path = "/asyncapi.json", tag = "docs",
    responses((status = 200, description = "The AsyncAPI 3.0 document of the WebSocket protocol", content_type = "application/json", body = Object)))]
async fn document(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(crate::ws::asyncapi::document(&state.config))
}
