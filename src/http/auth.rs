//! Optional bearer-token protection of the REST API (`chat_workflows.websocket.auth.protect_rest_api`):
//! the same static tokens and HS256 JWTs as the WebSocket side; health checks and CORS preflights stay open.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::web;

use crate::error::ApiError;
use crate::ws::auth::{bearer_header, Authenticator};
use crate::AppState;

/// Middleware: a 401 envelope unless the request carries a valid `Authorization: Bearer` token.
pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if let Some(state) = req.app_data::<web::Data<AppState>>() {
        let auth = &state.config.chat_workflows.websocket.auth;
        let health = format!("{}/health", state.config.api.prefix);
        let open = req.method() == Method::OPTIONS
            || req.path() == health
            || req.path().starts_with(&format!("{health}/"));
        if auth.protect_rest_api && !open {
            let authenticator = Authenticator::from_config(auth);
            let verdict = match (authenticator, bearer_header(req.request())) {
                (Some(a), Some(token)) => {
                    a.validate(&token).map(|_| ()).map_err(|_| "Invalid or expired token")
                }
                (_, None) => Err("Authentication required"),
                (None, Some(_)) => Err("Authentication required"),
            };
            if let Err(message) = verdict {
                state.hub.count_auth_rejection();
                return Err(ApiError::unauthorized(message).into());
            }
        }
    }
    next.call(req).await
}
