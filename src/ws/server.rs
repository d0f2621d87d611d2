//! The WebSocket listener (websocket.md C.2): `/chat/{chat_id}`, `/ws/chat/{chat_id}` (bound), `/` and
//! `/chat/` (unbound), 404 for anything else; the same protocol on the REST port when configured.

use std::net::{IpAddr, Ipv4Addr};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{guard, web, HttpRequest, HttpResponse};

use crate::http::routes::Endpoint;
use crate::ws::session::{self, Handshake};
use crate::AppState;

/// The actix application of the WebSocket port.
pub fn ws_app(
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
    let echo = state.config.chat_workflows.websocket.test_echo_route;
    actix_web::App::new()
        .app_data(state)
        .configure(|cfg| {
            if echo {
                cfg.route("/echo", web::get().to(crate::ws::echo::echo));
            }
        })
        .route("/", web::get().to(unbound))
        .route("/chat", web::get().to(unbound))
        .route("/chat/", web::get().to(unbound))
        .route("/chat/{chat_id}", web::get().to(bound))
        .route("/chat/{chat_id}/", web::get().to(bound))
        .route("/ws/chat/{chat_id}", web::get().to(bound))
        .route("/ws/chat/{chat_id}/", web::get().to(bound))
        .default_service(web::to(|| async { HttpResponse::NotFound().body("Not Found") }))
}

/// Upgrade routes on the REST port: `/chat/{id}`, `/ws/chat/{id}` and `{prefix}/ws/chat/{id}`, only for
/// requests that ask for a WebSocket upgrade (so REST routes of the same shape are unaffected).
/// `{prefix}` stands for the API prefix; the routes are outside the API scope (the socket checks tokens).
pub const REST_ALIASES: &[Endpoint] = &[
    Endpoint::get("/ws/chat/{chat_id}", upgrade_route, &[400, 403, 405]),
    Endpoint::get("/chat/{chat_id}", upgrade_route, &[400, 403, 405]).same_as("/ws/chat/{chat_id}"),
    Endpoint::get("{prefix}/ws/chat/{chat_id}", upgrade_route, &[400, 403, 405])
        .same_as("/ws/chat/{chat_id}"),
];

/// The documented operations of this module (see `http::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(bound))]
pub struct Doc;

fn upgrade_route() -> actix_web::Route {
    web::get().guard(guard::Header("upgrade", "websocket")).to(bound)
}

pub fn configure_rest_aliases(cfg: &mut web::ServiceConfig, prefix: &str) {
    for endpoint in REST_ALIASES {
        cfg.route(&crate::http::routes::alias_path(prefix, endpoint), (endpoint.route)());
    }
}

fn peer_ip(req: &HttpRequest) -> IpAddr {
    req.peer_addr().map(|a| a.ip()).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

#[utoipa::path(get, path = "/ws/chat/{chat_id}", tag = "websocket", params(("chat_id" = String, Path, description = "Conversation id")), responses((status = 101, description = "Switching to the WebSocket protocol of `/asyncapi.json`")))]
async fn bound(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    chat_id: web::Path<String>,
) -> Result<HttpResponse, actix_web::Error> {
    let handshake = Handshake::from_request(&req, Some(chat_id.into_inner()), peer_ip(&req));
    session::accept(req, body, state, handshake)
}

async fn unbound(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let handshake = Handshake::from_request(&req, None, peer_ip(&req));
    session::accept(req, body, state, handshake)
}
