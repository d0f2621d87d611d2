//! `GET /console` on the REST port, outside the API prefix: the live console, a static page (HTML, CSS,
//! JS embedded in the binary) that reads the chat endpoints, health and the WebSocket protocol itself.
//! The page holds no data, so it stays open when the REST API asks for a token; the page asks for it.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::error::ApiError;
use crate::http::get;
use crate::http::routes::{errors, Endpoint};
use crate::AppState;

const PAGE: &str = include_str!("../../assets/console/index.html");
const STYLE: &str = include_str!("../../assets/console/console.css");
const SCRIPT: &str = include_str!("../../assets/console/console.js");

/// Where the page's settings go: a JSON data block the script reads (never executed, so the CSP holds).
const SETTINGS_SLOT: &str = "{{CONSOLE_SETTINGS}}";

/// Same-origin scripts, styles and sockets only; `ws:`/`wss:` for a WebSocket listener on its own port.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint::get("/console", || get().to(page), errors::NONE),
    Endpoint::get("/console/", || get().to(page), errors::NONE).same_as("/console"),
    Endpoint::get("/console/{asset}", || get().to(asset), &[404]),
];

/// The documented operations of this module (see `http::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(page, asset))]
pub struct Doc;

#[utoipa::path(get, path = "/console", tag = "console", responses((status = 200, description = "The live console page", content_type = "text/html", body = String)))]
async fn page(state: web::Data<AppState>) -> HttpResponse {
    static_response("text/html; charset=utf-8", PAGE.replace(SETTINGS_SLOT, &settings_json(&state)))
}

#[utoipa::path(get, path = "/console/{asset}", tag = "console", params(("asset" = String, Path, description = "`console.css` or `console.js`")), responses((status = 200, description = "Stylesheet or script", content((String = "text/css"), (String = "text/javascript")))))]
async fn asset(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    match name.as_str() {
        "console.css" => Ok(static_response("text/css; charset=utf-8", STYLE.to_string())),
        "console.js" => Ok(static_response("text/javascript; charset=utf-8", SCRIPT.to_string())),
        _ => Err(ApiError::not_found("Resource not found")),
    }
}

fn static_response(content_type: &str, body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        // Revalidated on each load so a new binary's console is picked up at once.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .body(body)
}

/// What the script cannot know by itself: the API prefix, where the WebSocket protocol is served, and
/// which auth settings are on (so it asks for the token before the first call instead of after a 401).
fn settings_json(state: &AppState) -> String {
    let config = &state.config;
    let chat = &config.chat_workflows;
    let ws = &chat.websocket;
    let settings = json!({
        "api_prefix": config.api.prefix,
        "version": config.app.version,
        "chat_workflows_enabled": chat.enabled,
        "websocket": {
            // Same origin (`/ws/chat/{chat_id}` on this port) when offered, else the WebSocket port.
            "same_origin": ws.serve_on_rest_port,
            "port": ws.port,
            "max_subscriptions": ws.max_subscriptions_per_connection,
        },
        "auth": {
            "rest": ws.auth.protect_rest_api,
            "websocket": ws.auth.enabled,
        },
    });
    // `<` escaped so no value can close the surrounding <script> element.
    settings.to_string().replace('<', "\\u003c")
}
