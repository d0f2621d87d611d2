//! `{prefix}/chat/workflows/...`, `/chat/downloads/...` and `/chat/sqlite/backup` (chat-workflows.md §8):
//! parse, call `chat/`, wrap. `/chat/bot/*` lives in its own module.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use crate::chat::jobs::JobKind;
use crate::chat::model::ConversationRow;
use crate::chat::storage::Located;
use crate::chat::{workflow, Chat, ChatError};
use crate::envelope::{public_origin, ApiResponse};
use crate::error::{blocking, ApiError};
use crate::http::routes::{errors, Endpoint};
use crate::http::upload::{Form, UploadedFile};
use crate::http::{get, ApiResult};
use crate::AppState;

pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint::post("/chat/workflows", || web::post().to(create), &[422, 503]),
    Endpoint::get("/chat/workflows", || get().to(list), &[400, 422]),
    // Static segments before `{chat_id}` so `restore` is never a conversation id.
    Endpoint::post(
        "/chat/workflows/restore",
        || web::post().to(restore),
        &[400, 408, 409, 413, 415, 422, 429],
    ),
    Endpoint::get("/chat/workflows/{chat_id}", || get().to(show), errors::CHAT_READ),
    Endpoint::delete("/chat/workflows/{chat_id}", || web::delete().to(delete), &[404, 409, 422]),
    Endpoint::post("/chat/workflows/{chat_id}/upload", || web::post().to(upload), errors::CHAT_UPLOAD),
    Endpoint::post("/chat/workflows/{chat_id}/execute", || web::post().to(execute), errors::CHAT_WRITE),
    Endpoint::post("/chat/workflows/{chat_id}/dump", || web::post().to(dump), &[404, 409, 422]),
    Endpoint::get("/chat/workflows/{chat_id}/files/{filename}", || get().to(file), &[400, 404, 416, 422]),
    Endpoint::get("/chat/workflows/{chat_id}/jobs", || get().to(jobs), errors::CHAT_READ),
    Endpoint::get("/chat/workflows/{chat_id}/jobs/{job_id}", || get().to(job), errors::CHAT_READ),
    Endpoint::post(
        "/chat/workflows/{chat_id}/jobs/{job_id}/cancel",
        || web::post().to(cancel),
        &[404, 409, 422],
    ),
    Endpoint::get("/chat/workflows/{chat_id}/events", || get().to(events), &[400, 404, 422]),
    Endpoint::post("/chat/sqlite/backup", || web::post().to(backup), &[409, 422]),
    Endpoint::get("/chat/downloads/{filename}", || get().to(download_dump), &[400, 404, 416, 422]),
];

/// The documented operations of this module (see `http::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    create,
    list,
    restore,
    show,
    delete,
    upload,
    execute,
    dump,
    file,
    jobs,
    job,
    cancel,
    events,
    backup,
    download_dump
))]
pub struct Doc;

/// The chat services, or 422 when the feature is off (§1.3).
pub fn chat_of(state: &AppState) -> Result<Arc<Chat>, ApiError> {
    state.chat.clone().ok_or_else(|| ApiError::validation("Chat workflows feature is not enabled"))
}

fn base(req: &HttpRequest, state: &AppState) -> String {
    public_origin(req, &state.config)
}

/// Runs chat (and bot) work on the blocking pool; failures read `{action}: …` when unexpected.
pub(crate) async fn run<T: Send + 'static>(
    action: &'static str,
    work: impl FnOnce() -> Result<T, ChatError> + Send + 'static,
) -> Result<T, ApiError> {
    blocking(move || work().map_err(|e| e.api(action))).await
}

/// The shared start of the chat and bot upload endpoints: the conversation (404 if unknown) and its streamed
/// `file` part (422 when absent or without a name).
pub(crate) async fn receive_upload(
    req: &HttpRequest,
    payload: web::Payload,
    state: &web::Data<AppState>,
    chat_id: String,
) -> Result<(Arc<Chat>, ConversationRow, UploadedFile), ApiError> {
    let chat = chat_of(state)?;
    let c = chat.clone();
    let row = run("Failed to upload file", move || c.require_row(&chat_id)).await?;
    let dir = chat.storage.upload_dir(&row, &state.config.file.upload_folder);
    let mut form = read_chat_form(req, payload, state, &dir).await?;
    let Some(file) = form.take_file("file") else {
        return Err(ApiError::validation(if form.has_empty_file("file") {
            "Empty filename"
        } else {
            "No file provided"
        }));
    };
    Ok((chat, row, file))
}

fn query_int(
    query: &HashMap<String, String>,
    key: &str,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, ApiError> {
    match query.get(key) {
        None => Ok(default),
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(ApiError::validation(format!("{key} must be an integer between {min} and {max}"))
                .with_details(json!({"field": key, "value": raw}))),
        },
    }
}

#[utoipa::path(post, path = "/chat/workflows", tag = "chat", responses((status = 201, description = "Created", body = crate::http::schemas::Envelope<crate::http::schemas::ConversationData>)))]
async fn create(state: web::Data<AppState>) -> ApiResult {
    let chat = chat_of(&state)?;
    let conv = run("Failed to create conversation", move || chat.create_conversation(None)).await?;
    Ok(ApiResponse::ok("Conversation created successfully", conv).with_status(StatusCode::CREATED))
}

#[utoipa::path(get, path = "/chat/workflows", tag = "chat", params(("limit" = Option<i64>, Query, description = "1–1000, default 100"), ("offset" = Option<i64>, Query, description = "Default 0"), ("status" = Option<String>, Query, description = "Only conversations in this status")), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::ConversationListData>)))]
async fn list(state: web::Data<AppState>, query: web::Query<HashMap<String, String>>) -> ApiResult {
    let chat = chat_of(&state)?;
    let limit = query_int(&query, "limit", 100, 1, 1000)?;
    let offset = query_int(&query, "offset", 0, 0, i64::MAX)?;
    let status = query.get("status").cloned();
    let (items, total) = run("Failed to list conversations", move || {
        chat.list_conversations(status.as_deref(), limit, offset)
    })
    .await?;
    let count = items.len();
    Ok(ApiResponse::ok(
        "Conversations retrieved successfully",
        json!({"conversations": items, "count": count}),
    )
    .with_total(total))
}

#[utoipa::path(get, path = "/chat/workflows/{chat_id}", tag = "chat", params(("chat_id" = String, Path, description = "Conversation id")), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::ConversationData>)))]
async fn show(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> ApiResult {
    let chat = chat_of(&state)?;
    let base = base(&req, &state);
    let id = path.into_inner();
    let conv = run("Failed to get conversation", move || chat.conversation_json(&id, &base)).await?;
    Ok(ApiResponse::ok("Conversation retrieved successfully", conv))
}

#[utoipa::path(delete, path = "/chat/workflows/{chat_id}", tag = "chat", params(("chat_id" = String, Path, description = "Conversation id")), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::ChatIdData>)))]
async fn delete(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult {
    let chat = chat_of(&state)?;
    let id = path.into_inner();
    let deleted = id.clone();
    run("Failed to delete conversation", move || chat.delete_conversation(&id)).await?;
    Ok(ApiResponse::ok("Conversation deleted successfully", json!({"chat_id": deleted})))
}

/// Streams a multipart body into the conversation folder with the chat upload limit (§5.4).
pub async fn read_chat_form(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    dir: &std::path::Path,
) -> Result<Form, ApiError> {
    let cw = &state.config.chat_workflows;
    let mb = cw.file.max_upload_size_mb.min(state.config.file.max_file_size_mb);
    let limit = mb.saturating_mul(1024 * 1024);
    let form = Form::read_buffered(req, payload.into_inner(), dir, limit, cw.file.chunk_size_bytes).await;
    form.map_err(|e| {
        if e.kind == crate::error::ErrorKind::PayloadTooLarge {
            ApiError::payload_too_large(format!("File too large (max {mb} MB)"))
        } else {
            e
        }
    })
}

#[utoipa::path(post, path = "/chat/workflows/{chat_id}/upload", tag = "chat", request_body(content = crate::http::schemas::FileForm, content_type = "multipart/form-data"), params(("chat_id" = String, Path, description = "Conversation id")), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::ChatUploadData>)))]
async fn upload(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult {
    let (chat, row, file) = receive_upload(&req, payload, &state, path.into_inner()).await?;
    let base = base(&req, &state);
    let (stored, name) = run("Failed to upload file", move || {
        let placed = chat.store_upload(&row, file.path(), &file.client_name, Map::new(), &base);
        placed.map(|(stored, name)| {
            let url = chat.storage.file_url(&base, &row.chat_id, &stored);
            (stored, (name, url))
        })
    })
    .await?;
    let (name, url) = name;
    Ok(ApiResponse::ok(
        "File uploaded successfully",
        json!({"file_path": stored, "filename": name, "download_url": url}),
    ))
}

#[utoipa::path(post, path = "/chat/workflows/{chat_id}/execute", tag = "chat", request_body(content = crate::http::schemas::ExecuteRequest, content_type = "application/json"), params(("chat_id" = String, Path, description = "Conversation id"), ("async" = Option<bool>, Query, description = "Submit and answer 202 at once")), responses((status = 200, description = "Completed", body = crate::http::schemas::Envelope<crate::http::schemas::ExecuteData>), (status = 202, description = "Submitted (async)", body = crate::http::schemas::Envelope<crate::http::schemas::ExecuteData>)))]
async fn execute(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> ApiResult {
    let chat = chat_of(&state)?;
    let id = path.into_inner();
    let c = chat.clone();
    let row = run("Failed to execute workflow", move || c.require_row(&id)).await?;
    let body: Map<String, Value> = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => m,
        _ => return Err(ApiError::validation("Invalid JSON body")),
    };
    let asynchronous = body.get("async").and_then(Value::as_bool).unwrap_or(false)
        || query
            .get("async")
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"));
    let base = base(&req, &state);
    let c = chat.clone();
    let b = base.clone();
    let submitted = run("Failed to execute workflow", move || {
        let plan = workflow::plan(&c, &row, &body)?;
        c.submit(plan, JobKind::Execute, &b, None)
    })
    .await?;
    let job_id = submitted.job_id.clone();
    if asynchronous {
        return Ok(ApiResponse::ok(
            "Workflow submitted for background execution",
            json!({"job_id": job_id, "status": "submitted", "position": submitted.position}),
        )
        .with_status(StatusCode::ACCEPTED));
    }
    let outcome = submitted.wait().await.ok_or_else(|| {
        ApiError::internal("Failed to execute workflow: Internal server error", "job vanished")
    })?;
    if outcome.status != "completed" {
        let error = outcome.error.clone().unwrap_or_default();
        let f = outcome.failed_step.as_ref();
        return Err(ApiError::validation(format!("Workflow execution failed: {error}")).with_details(
            json!({
                "job_id": job_id,
                "failed_step": f.map(|f| f.index),
                "step_id": f.map(|f| f.step_id.clone()),
                "operation": f.map(|f| f.operation.clone()),
                "error": f.map(|f| f.error.clone()).unwrap_or(error),
                "cancelled": outcome.status == "cancelled",
                "results": outcome.results,
            }),
        ));
    }
    let chat_id = outcome.chat_id.clone();
    let files = run("Failed to execute workflow", move || {
        let paths = chat.store.files(&chat_id, "output")?;
        Ok(paths
            .iter()
            .map(|p| json!({"file_path": p, "download_url": chat.storage.file_url(&base, &chat_id, p)}))
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(ApiResponse::ok(
        "Workflow executed successfully",
        json!({"results": outcome.results, "output_files": files, "job_id": job_id}),
    ))
}

#[utoipa::path(get, path = "/chat/workflows/{chat_id}/files/{filename}", tag = "chat", params(("chat_id" = String, Path, description = "Conversation id"), ("filename" = String, Path, description = "Stored file name"), ("folder" = Option<String>, Query, description = "`uploads` or `outputs`")), responses((status = 200, description = "The file", content_type = "application/octet-stream", body = String), (status = 206, description = "Requested byte range", content_type = "application/octet-stream", body = String)))]
async fn file(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let chat = chat_of(&state)?;
    let (id, name) = path.into_inner();
    let folder = query.get("folder").cloned();
    let (located, name) = run("Failed to download file", move || {
        let row = chat.require_row(&id)?;
        chat.storage.find_download(&row, &name, folder.as_deref())
    })
    .await?;
    serve_located(&req, located, &name).await
}

#[utoipa::path(get, path = "/chat/workflows/{chat_id}/jobs", tag = "chat", params(("chat_id" = String, Path, description = "Conversation id")), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::JobListData>)))]
async fn jobs(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> ApiResult {
    let chat = chat_of(&state)?;
    let base = base(&req, &state);
    let id = path.into_inner();
    let jobs = run("Failed to list jobs", move || chat.jobs_json(&id, &base)).await?;
    let count = jobs.len();
    Ok(ApiResponse::ok("Jobs retrieved successfully", json!({"jobs": jobs, "count": count})))
}

#[utoipa::path(get, path = "/chat/workflows/{chat_id}/jobs/{job_id}", tag = "chat", params(("chat_id" = String, Path, description = "Conversation id"), ("job_id" = String, Path, description = "Job id")), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::JobData>)))]
async fn job(req: HttpRequest, state: web::Data<AppState>, path: web::Path<(String, String)>) -> ApiResult {
    let chat = chat_of(&state)?;
    let base = base(&req, &state);
    let (id, job_id) = path.into_inner();
    let job = run("Failed to get job status", move || chat.job_json(&id, &job_id, &base)).await?;
    Ok(ApiResponse::ok("Job status retrieved successfully", job))
}

#[utoipa::path(post, path = "/chat/workflows/{chat_id}/jobs/{job_id}/cancel", tag = "chat", params(("chat_id" = String, Path, description = "Conversation id"), ("job_id" = String, Path, description = "Job id")), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::JobData>)))]
async fn cancel(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult {
    let chat = chat_of(&state)?;
    let base = base(&req, &state);
    let (id, job_id) = path.into_inner();
    let job = run("Failed to cancel job", move || {
        chat.cancel_job(&id, &job_id)?;
        chat.job_json(&id, &job_id, &base)
    })
    .await?;
    Ok(ApiResponse::ok("Job cancellation requested", job))
}

#[utoipa::path(get, path = "/chat/workflows/{chat_id}/events", tag = "chat", params(("chat_id" = String, Path, description = "Conversation id"), ("after_seq" = Option<i64>, Query, description = "Events after this seq, default 0"), ("limit" = Option<i64>, Query, description = "1–1000, default 200")), responses((status = 200, description = "Stored events", body = crate::http::schemas::Envelope<crate::http::schemas::AnyObject>)))]
async fn events(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> ApiResult {
    let chat = chat_of(&state)?;
    let after = query_int(&query, "after_seq", 0, 0, i64::MAX)? as u64;
    let limit = query_int(&query, "limit", 200, 1, 1000)? as usize;
    let id = path.into_inner();
    let data = run("Failed to get events", move || chat.events_json(&id, after, limit)).await?;
    Ok(ApiResponse::ok("Events retrieved successfully", data))
}

#[utoipa::path(post, path = "/chat/workflows/{chat_id}/dump", tag = "chat", params(("chat_id" = String, Path, description = "Conversation id")), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::DumpData>)))]
async fn dump(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> ApiResult {
    let chat = chat_of(&state)?;
    let base = base(&req, &state);
    let id = path.into_inner();
    let data = run("Failed to dump conversation", move || {
        let name = chat.dump_conversation(&id)?;
        let url = chat.storage.dump_url(&base, &name);
        Ok(json!({"dump_file": name, "download_url": url}))
    })
    .await?;
    Ok(ApiResponse::ok("Conversation dumped successfully", data))
}

#[utoipa::path(post, path = "/chat/workflows/restore", tag = "chat", request_body(content = crate::http::schemas::RestoreForm, content_type = "multipart/form-data"), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::ConversationData>)))]
async fn restore(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> ApiResult {
    let chat = chat_of(&state)?;
    let cw = &state.config.chat_workflows;
    // The archive is streamed to a temporary upload file, never into `dumps_path` under the client's name.
    let staging = state.config.file.upload_folder.clone();
    let mb = state.config.file.max_file_size_mb.max(cw.file.max_upload_size_mb);
    let limit = mb.saturating_mul(1024 * 1024);
    let mut form =
        Form::read_buffered(&req, payload.into_inner(), &staging, limit, cw.file.chunk_size_bytes).await?;
    let Some(archive) = form.take_file("dump_file") else {
        let message =
            if form.has_empty_file("dump_file") { "Empty filename" } else { "No dump file provided" };
        return Err(ApiError::validation(message));
    };
    let overwrite = form.bool("overwrite", false);
    let target = form.text("chat_id").filter(|s| !s.trim().is_empty()).map(|s| s.trim().to_string());
    let base = base(&req, &state);
    let conv = run("Failed to restore conversation", move || {
        let id = chat.restore_archive(archive.path(), target.as_deref(), overwrite)?;
        drop(archive);
        chat.conversation_json(&id, &base)
    })
    .await?;
    Ok(ApiResponse::ok("Conversation restored successfully", conv))
}

#[utoipa::path(post, path = "/chat/sqlite/backup", tag = "chat", responses((status = 200, description = "Snapshot written", body = crate::http::schemas::Envelope<crate::http::schemas::AnyObject>)))]
async fn backup(state: web::Data<AppState>) -> ApiResult {
    let chat = chat_of(&state)?;
    let data = run("Failed to backup database", move || chat.backup_now()).await?;
    Ok(ApiResponse::ok("Database backup created successfully", data))
}

#[utoipa::path(get, path = "/chat/downloads/{filename}", tag = "chat", params(("filename" = String, Path, description = "Dump archive name")), responses((status = 200, description = "The archive", content_type = "application/octet-stream", body = String), (status = 206, description = "Requested byte range", content_type = "application/octet-stream", body = String)))]
async fn download_dump(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let chat = chat_of(&state)?;
    let name = path.into_inner();
    let (located, name) = run("Failed to download file", move || chat.storage.find_dump(&name)).await?;
    serve_located(&req, located, &name).await
}

/// Serves a conversation file or dump: in place when local, streamed from the store otherwise.
async fn serve_located(req: &HttpRequest, located: Located, name: &str) -> Result<HttpResponse, ApiError> {
    match located {
        Located::Path(path) => crate::http::files::serve_attachment(req, &path, name),
        Located::Object { store, key } => crate::http::files::serve_object(req, &store, &key, name).await,
    }
}
