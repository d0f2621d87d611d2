//! `{prefix}/chat/bot/...` (chatbot.md §2): parse, call `bot::service`, wrap. Soft failures of `/message`
//! are answers, not errors: HTTP 200 and body status 200 with `data.understood: false`; rejected
//! confirmations carry `bot_response` in `data` next to the usual error fields.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use crate::bot::service::{Answer, BotService};
use crate::bot::{view, Reply, Status, Step};
use crate::envelope::{envelope_body, envelope_response, public_origin, request_id_of, ApiResponse};
use crate::error::ApiError;
use crate::http::chat::{chat_of, receive_upload, run};
use crate::http::routes::{errors, Endpoint};
use crate::http::{get, ApiResult};
use crate::AppState;

/// Longest accepted `/message` text, in characters.
pub const MAX_MESSAGE_CHARS: usize = 10_000;

pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint::get("/chat/bot/operations", || get().to(operations), errors::NONE),
    Endpoint::post("/chat/bot/conversations", || web::post().to(start), &[400, 408, 409, 413, 422, 429, 503]),
    Endpoint::delete("/chat/bot/conversations/{chat_id}", || web::delete().to(delete), &[404, 409, 422]),
    Endpoint::post(
        "/chat/bot/conversations/{chat_id}/message",
        || web::post().to(message),
        errors::CHAT_WRITE,
    ),
    Endpoint::post(
        "/chat/bot/conversations/{chat_id}/upload",
        || web::post().to(upload),
        errors::CHAT_UPLOAD,
    ),
    Endpoint::post(
        "/chat/bot/conversations/{chat_id}/confirm",
        || web::post().to(confirm),
        errors::CHAT_WRITE,
    ),
    Endpoint::get("/chat/bot/conversations/{chat_id}/history", || get().to(history), errors::CHAT_READ),
    Endpoint::get(
        "/chat/bot/conversations/{chat_id}/workflow/status/{job_id}",
        || get().to(job_status),
        errors::CHAT_READ,
    ),
];

/// The documented operations of this module (see `http::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(operations, start, delete, message, upload, confirm, history, job_status))]
pub struct Doc;

fn service(state: &AppState) -> Result<BotService, ApiError> {
    Ok(BotService::new(chat_of(state)?))
}

/// An envelope the middleware would not produce: soft failures (a success status with a reason as the
/// message) and rejections that carry `bot_response`. The body's `status_code` is the HTTP status.
fn envelope_with(
    req: &HttpRequest,
    state: &AppState,
    status: StatusCode,
    message: &str,
    data: Value,
) -> HttpResponse {
    let body = envelope_body(status, message, data, 0, &request_id_of(req), &state.meta);
    envelope_response(status, &body)
}

/// The JSON object of a body; empty or unparseable bodies and non-objects are `None`.
fn json_object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

#[utoipa::path(get, path = "/chat/bot/operations", tag = "bot", responses((status = 200, description = "Operations the bot understands", body = crate::http::schemas::Envelope<crate::http::schemas::AnyObject>)))]
async fn operations() -> ApiResult {
    Ok(ApiResponse::ok("Supported operations retrieved successfully", crate::bot::operations_catalogue()))
}

/// §2.1 body rules: an empty body, or one not declared as JSON, is `{}`; a body declared as JSON must
/// parse (400 `Invalid JSON body`).
fn start_body(req: &HttpRequest, body: &[u8]) -> Result<Option<Map<String, Value>>, ApiError> {
    let declared_json = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON));
    if !declared_json || body.trim_ascii().is_empty() {
        return Ok(json_object(body));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(_) => Ok(None),
        Err(e) => {
            Err(ApiError::bad_request("Invalid JSON body").with_details(json!({"error": e.to_string()})))
        }
    }
}

#[utoipa::path(post, path = "/chat/bot/conversations", tag = "bot", request_body(content = crate::http::schemas::BotStartRequest, content_type = "application/json"), responses((status = 201, description = "Started", body = crate::http::schemas::Envelope<crate::http::schemas::AnyObject>)))]
async fn start(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> ApiResult {
    let svc = service(&state)?;
    let chat_id = start_body(&req, &body)?.and_then(|mut m| m.remove("chat_id"));
    let base = public_origin(&req, &state.config);
    let data = run("Failed to start bot conversation", move || svc.start(chat_id.as_ref(), &base)).await?;
    Ok(ApiResponse::ok("Bot conversation started successfully", data).with_status(StatusCode::CREATED))
}

/// §2.2 body rules, in order.
fn message_text(body: &[u8]) -> Result<String, ApiError> {
    let text = match json_object(body).and_then(|mut m| m.remove("message")) {
        None => return Err(ApiError::validation("No message provided")),
        Some(Value::String(s)) => s,
        Some(_) => return Err(ApiError::validation("Message must be a string")),
    };
    if text.trim().is_empty() {
        return Err(ApiError::validation("Empty message"));
    }
    if text.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ApiError::validation("Message too long")
            .with_details(json!({"max_characters": MAX_MESSAGE_CHARS})));
    }
    Ok(text)
}

/// Renders a handler reply that is not a success: soft failure (HTTP 200, `understood: false`) or
/// rejection.
fn failure_response(req: &HttpRequest, state: &AppState, answer: &Answer) -> Option<HttpResponse> {
    let reply: &Reply = &answer.reply;
    match &reply.status {
        Status::SoftFailure(reason) => Some(envelope_with(
            req,
            state,
            StatusCode::OK,
            reason,
            view::soft_failure_data(reply, &answer.context),
        )),
        Status::Rejected { status, message, .. } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST);
            Some(envelope_with(req, state, status, message, view::rejected_data(reply, &answer.context)))
        }
        Status::Ok | Status::Submitted => None,
    }
}

#[utoipa::path(post, path = "/chat/bot/conversations/{chat_id}/message", tag = "bot", request_body(content = crate::http::schemas::BotMessageRequest, content_type = "application/json"), params(("chat_id" = String, Path, description = "Conversation id")), responses((status = 200, description = "Understood or not (data.understood)", body = crate::http::schemas::Envelope<crate::http::schemas::AnyObject>)))]
async fn message(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let svc = service(&state)?;
    let text = message_text(&body)?;
    let base = public_origin(&req, &state.config);
    let id = path.into_inner();
    let answer = run("Failed to process message", move || svc.message(&id, &text, &base)).await?;
    if let Some(res) = failure_response(&req, &state, &answer) {
        return Ok(res);
    }
    let data = view::message_data(&answer.reply, &answer.context, answer.submission.as_ref());
    Ok(envelope_with(&req, &state, StatusCode::OK, "Message processed successfully", data))
}

#[utoipa::path(post, path = "/chat/bot/conversations/{chat_id}/upload", tag = "bot", request_body(content = crate::http::schemas::FileForm, content_type = "multipart/form-data"), params(("chat_id" = String, Path, description = "Conversation id")), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::AnyObject>)))]
async fn upload(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult {
    let (chat, row, file) = receive_upload(&req, payload, &state, path.into_inner()).await?;
    let base = public_origin(&req, &state.config);
    let svc = BotService::new(chat);
    let up = run("Failed to upload file", move || {
        let out = svc.upload(&row, file.path(), &file.client_name, &base);
        drop(file);
        out
    })
    .await?;
    let data = view::upload_data(
        &up.answer.reply,
        &up.answer.context,
        &up.file_path,
        &up.filename,
        &up.download_url,
    );
    Ok(ApiResponse::ok("File uploaded successfully", data))
}

/// §2.4 body rules: `{}`/missing/non-object → `No data provided`; `confirmed` must be a boolean (absent =
/// false); `modified_workflow` an array of steps (empty = absent).
fn confirm_body(body: &[u8]) -> Result<(bool, Option<Vec<Step>>), ApiError> {
    let Some(mut map) = json_object(body).filter(|m| !m.is_empty()) else {
        return Err(ApiError::validation("No data provided"));
    };
    let confirmed = match map.remove("confirmed") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(ApiError::validation("confirmed must be a boolean")),
    };
    let modified = match map.remove("modified_workflow") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) if items.is_empty() => None,
        Some(Value::Array(items)) => {
            let mut steps = Vec::with_capacity(items.len());
            let mut errors = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                match serde_json::from_value::<Step>(item) {
                    Ok(s) => steps.push(s),
                    Err(e) => errors.push(json!({"step": i + 1, "field": "step", "error": e.to_string()})),
                }
            }
            if let Some(first) = errors.first() {
                let message = format!(
                    "Invalid workflow: step {} {}: {}",
                    first["step"],
                    first["field"].as_str().unwrap_or(""),
                    first["error"].as_str().unwrap_or("")
                );
                return Err(ApiError::validation(message).with_details(json!({"errors": errors})));
            }
            Some(steps)
        }
        Some(_) => return Err(ApiError::validation(
            "Invalid workflow: modified_workflow must be an array of steps",
        )
        .with_details(
            json!({"errors": [{"step": 0, "field": "modified_workflow", "error": "must be an array"}]}),
        )),
    };
    Ok((confirmed, modified))
}

#[utoipa::path(post, path = "/chat/bot/conversations/{chat_id}/confirm", tag = "bot", request_body(content = crate::http::schemas::BotConfirmRequest, content_type = "application/json"), params(("chat_id" = String, Path, description = "Conversation id")), responses((status = 200, description = "Declined or answered", body = crate::http::schemas::Envelope<crate::http::schemas::AnyObject>), (status = 202, description = "Workflow submitted", body = crate::http::schemas::Envelope<crate::http::schemas::AnyObject>)))]
async fn confirm(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let svc = service(&state)?;
    let (confirmed, modified) = confirm_body(&body)?;
    let base = public_origin(&req, &state.config);
    let id = path.into_inner();
    let answer =
        run("Failed to confirm workflow", move || svc.confirm(&id, confirmed, modified, &base)).await?;
    if let Some(res) = failure_response(&req, &state, &answer) {
        return Ok(res);
    }
    Ok(match &answer.submission {
        Some(sub) => envelope_with(
            &req,
            &state,
            StatusCode::ACCEPTED,
            "Workflow submitted for background execution",
            view::submitted_data(&answer.reply, sub),
        ),
        None => envelope_with(
            &req,
            &state,
            StatusCode::OK,
            "Workflow confirmation processed",
            view::declined_data(&answer.reply, &answer.context),
        ),
    })
}

#[utoipa::path(get, path = "/chat/bot/conversations/{chat_id}/history", tag = "bot", params(("chat_id" = String, Path, description = "Conversation id"), ("limit" = Option<i64>, Query, description = "Most recent messages")), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::AnyObject>)))]
async fn history(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> ApiResult {
    let svc = service(&state)?;
    let limit = match query.get("limit") {
        None => None,
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(n) if n >= 1 => Some(n as usize),
            _ => {
                return Err(ApiError::validation("limit must be a positive integer")
                    .with_details(json!({"field": "limit", "value": raw})))
            }
        },
    };
    let base = public_origin(&req, &state.config);
    let id = path.into_inner();
    let data = run("Failed to get conversation history", move || svc.history(&id, limit, &base)).await?;
    Ok(ApiResponse::ok("Conversation history retrieved successfully", data))
}

#[utoipa::path(get, path = "/chat/bot/conversations/{chat_id}/workflow/status/{job_id}", tag = "bot", params(("chat_id" = String, Path, description = "Conversation id"), ("job_id" = String, Path, description = "Job id")), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::AnyObject>)))]
async fn job_status(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult {
    let svc = service(&state)?;
    let base = public_origin(&req, &state.config);
    let (id, job_id) = path.into_inner();
    let job = run("Failed to get job status", move || svc.job_status(&id, &job_id, &base)).await?;
    Ok(ApiResponse::ok("Job status retrieved successfully", job))
}

#[utoipa::path(delete, path = "/chat/bot/conversations/{chat_id}", tag = "bot", params(("chat_id" = String, Path, description = "Conversation id")), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::ChatIdData>)))]
async fn delete(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult {
    let svc = service(&state)?;
    let id = path.into_inner();
    let deleted = id.clone();
    run("Failed to delete bot conversation", move || svc.delete(&id)).await?;
    Ok(ApiResponse::ok("Bot conversation deleted successfully", json!({"chat_id": deleted})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_body_rules() {
        let msg = |b: &str| message_text(b.as_bytes()).map_err(|e| e.message);
        assert_eq!(msg(r#"{"message": "hi"}"#), Ok("hi".into()));
        assert_eq!(msg(""), Err("No message provided".into()));
        assert_eq!(msg("not json"), Err("No message provided".into()));
        assert_eq!(msg("[1]"), Err("No message provided".into()));
        assert_eq!(msg("{}"), Err("No message provided".into()));
        assert_eq!(msg(r#"{"message": 123}"#), Err("Message must be a string".into()));
        assert_eq!(msg(r#"{"message": null}"#), Err("Message must be a string".into()));
        assert_eq!(msg(r#"{"message": "   "}"#), Err("Empty message".into()));
        let long = format!(r#"{{"message": "{}"}}"#, "é".repeat(MAX_MESSAGE_CHARS + 1));
        assert_eq!(msg(&long), Err("Message too long".into()));
        let ok = format!(r#"{{"message": "{}"}}"#, "é".repeat(MAX_MESSAGE_CHARS));
        assert!(msg(&ok).is_ok());
    }

    #[test]
    fn confirm_body_rules() {
        let c = |b: &str| confirm_body(b.as_bytes()).map_err(|e| e.message);
        assert_eq!(c("{}"), Err("No data provided".into()));
        assert_eq!(c(""), Err("No data provided".into()));
        assert_eq!(c("[true]"), Err("No data provided".into()));
        assert_eq!(c(r#"{"confirmed": "yes"}"#), Err("confirmed must be a boolean".into()));
        assert_eq!(c(r#"{"confirmed": true}"#), Ok((true, None)));
        assert_eq!(c(r#"{"other": 1}"#), Ok((false, None)));
        assert_eq!(c(r#"{"confirmed": true, "modified_workflow": []}"#), Ok((true, None)));
        let (ok, steps) = confirm_body(
            br#"{"confirmed": true, "modified_workflow": [{"operation": "json/generate", "arguments": {"pretty_print": false}}]}"#,
        )
        .unwrap();
        assert!(ok);
        assert_eq!(steps.unwrap()[0].operation, "json/generate");
        let e =
            confirm_body(br#"{"confirmed": true, "modified_workflow": [{"arguments": {}}]}"#).unwrap_err();
        assert!(e.message.starts_with("Invalid workflow: step 1"), "{}", e.message);
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let e = confirm_body(br#"{"confirmed": true, "modified_workflow": {"operation": "x"}}"#).unwrap_err();
        assert!(e.message.starts_with("Invalid workflow"));
    }
}
