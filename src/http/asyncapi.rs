//! `GET /asyncapi.json` on the REST port, outside the API prefix: the AsyncAPI 3.0 document of the
//! WebSocket protocol (`ws::asyncapi`). It describes the protocol and holds no data, so it needs no token.

use actix_web::{web, HttpResponse};

use crate::http::{get, method_not_allowed};
use crate::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/asyncapi.json")
            .route(get().to(document))
            .default_service(method_not_allowed("GET, HEAD, OPTIONS")),
    );
}

async fn document(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(crate::ws::asyncapi::document(&state.config))
}
