//! `GET {prefix}/files/downloads/{filename}` (streamed, Range/ETag aware, never outside the output folder)
//! and the background sweeper that deletes outputs older than `file.output_retention_hours`, on either
//! storage backend (see `crate::files`): local files are served in place, objects streamed from the store.

use std::path::Path;
use std::time::{Duration, SystemTime};

use actix_files::{HttpRange, NamedFile};
use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::ApiError;
use crate::files::{FileStore, FileStoreError};
use crate::http::get;
use crate::http::routes::{errors, Endpoint};
use crate::table::names::sanitize_filename;
use crate::AppState;

pub const ENDPOINTS: &[Endpoint] =
    &[Endpoint::get("/files/downloads/{filename}", || get().to(download), errors::DOWNLOAD)];

/// The documented operations of this module (see `http::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(download))]
pub struct Doc;

/// Content type by extension (rest-api.md §7.7.1 with the IMPROVE for `.json` and `.csv`).
pub fn content_type_for(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "xls" => "application/vnd.ms-excel",
        "txt" | "sql" => "text/plain; charset=utf-8",
        "json" => "application/json",
        "csv" => "text/csv; charset=utf-8",
        "gz" => "application/gzip",
        _ => "application/octet-stream",
    }
}

/// Serves `path` as an attachment named `name`, with Range, ETag and Last-Modified support.
pub fn serve_attachment(req: &HttpRequest, path: &Path, name: &str) -> Result<HttpResponse, ApiError> {
    let file = match NamedFile::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found("File not found"))
        }
        Err(e) => return Err(ApiError::internal("Failed to read file", e)),
    };
    let mime: mime::Mime = content_type_for(name).parse().unwrap_or(mime::APPLICATION_OCTET_STREAM);
    let mut res = file
        .set_content_type(mime)
        .set_content_disposition(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(name.to_string())],
        })
        .into_response(req);
    res.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
    Ok(res)
}

fn attachment(name: &str) -> ContentDisposition {
    ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters: vec![DispositionParam::Filename(name.to_string())],
    }
}

/// Serves the object `key` of a store as an attachment named `name`, with the headers and statuses of
/// [`serve_attachment`]: Content-Length, the first byte range of a `Range` header (206, or 416 with
/// `Content-Range: bytes */len`), ETag with `If-None-Match` (304) and Last-Modified. The body streams from
/// the store; nothing is buffered whole.
pub async fn serve_object(
    req: &HttpRequest,
    store: &FileStore,
    key: &str,
    name: &str,
) -> Result<HttpResponse, ApiError> {
    let failed = |e: FileStoreError| ApiError::internal("Failed to read file", e);
    let meta = store.head(key).await.map_err(failed)?.ok_or_else(|| ApiError::not_found("File not found"))?;
    let size = meta.size;
    let mut res = HttpResponse::Ok();
    res.insert_header((header::CONTENT_TYPE, content_type_for(name)))
        .insert_header(attachment(name))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((
            header::LAST_MODIFIED,
            meta.last_modified.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        ));
    // Some S3-compatible servers answer HEAD without an ETag: a weak one from size and modification time
    // (the same on every node) still lets clients revalidate.
    let tag = meta
        .e_tag
        .clone()
        .unwrap_or_else(|| format!("W/\"{:x}-{:x}\"", meta.size, meta.last_modified.timestamp_micros()));
    res.insert_header((header::ETAG, tag.as_str()));
    let if_none_match = req.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok());
    if if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*")) {
        return Ok(res.status(StatusCode::NOT_MODIFIED).finish());
    }
    let mut range = None;
    if let Some(value) = req.headers().get(header::RANGE) {
        let Ok(text) = value.to_str() else { return Ok(res.status(StatusCode::BAD_REQUEST).finish()) };
        match HttpRange::parse(text, size).ok().and_then(|r| r.first().copied()) {
            Some(r) => {
                res.status(StatusCode::PARTIAL_CONTENT).insert_header((
                    header::CONTENT_RANGE,
                    format!("bytes {}-{}/{size}", r.start, r.start + r.length - 1),
                ));
                range = Some(r.start..r.start + r.length);
            }
            None => {
                res.insert_header((header::CONTENT_RANGE, format!("bytes */{size}")));
                return Ok(res.status(StatusCode::RANGE_NOT_SATISFIABLE).finish());
            }
        }
    }
    let length = range.as_ref().map_or(size, |r| r.end - r.start);
    if length == 0 {
        return Ok(res.no_chunking(0).finish());
    }
    let body = store.get_stream(key, range).await.map_err(|e| match e {
        FileStoreError::NotFound => ApiError::not_found("File not found"),
        other => failed(other),
    })?;
    Ok(res.no_chunking(length).streaming(body))
}

/// Puts a REST output, written to `file.output_folder/{name}`, into the store (streamed up, then removed
/// locally). With the local backend the file already is the object.
pub async fn publish_output(state: &AppState, name: &str) -> Result<(), ApiError> {
    let store = &state.files.outputs;
    if store.is_local() {
        return Ok(());
    }
    let path = state.config.file.output_folder.join(name);
    let put = store.put_file(name, &path).await;
    let _ = tokio::fs::remove_file(&path).await;
    put.map_err(|e| ApiError::internal("Failed to store output file", e))
}

#[utoipa::path(get, path = "/files/downloads/{filename}", tag = "files", params(("filename" = String, Path, description = "Name of a generated output")), responses((status = 200, description = "The file (Range and ETag aware)", content_type = "application/octet-stream", body = String), (status = 206, description = "Requested byte range", content_type = "application/octet-stream", body = String)))]
async fn download(
    req: HttpRequest,
    state: web::Data<AppState>,
    filename: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = sanitize_filename(&filename);
    if name.is_empty() {
        return Err(ApiError::file_processing("Invalid file path"));
    }
    if !state.files.outputs.is_local() {
        return serve_object(&req, &state.files.outputs, &name, &name).await;
    }
    let folder = state.config.file.output_folder.clone();
    let path = folder.join(&name);
    // The sanitized name has no separators, so the path is a direct child; refuse links pointing elsewhere.
    let resolved = web::block(move || -> Result<Option<std::path::PathBuf>, std::io::Error> {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(meta.is_file().then_some(path))
    })
    .await??;
    match resolved {
        Some(path) => serve_attachment(&req, &path, &name),
        None => Err(ApiError::not_found("File not found")),
    }
}

/// Deletes outputs older than the retention period, forever, at a period tied to the retention.
pub fn spawn_output_sweeper(state: web::Data<AppState>) {
    let hours = state.config.file.output_retention_hours;
    if hours == 0 {
        return;
    }
    let retention = Duration::from_secs(hours * 3600);
    let period = (retention / 10).clamp(Duration::from_secs(60), Duration::from_secs(600));
    let folder = state.config.file.output_folder.clone();
    let store = state.files.outputs.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        loop {
            ticker.tick().await;
            // Every node sweeps a shared bucket; deleting an object twice is harmless.
            let removed = if store.is_local() {
                let folder = folder.clone();
                tokio::task::spawn_blocking(move || sweep_folder(&folder, retention))
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|r| r)
            } else {
                store.sweep_older_than(retention).await.map_err(std::io::Error::from)
            };
            match removed {
                Ok(n) if n > 0 => log::info!("output sweeper removed {n} expired file(s)"),
                Err(e) => log::warn!("output sweeper: {e}"),
                _ => {}
            }
        }
    });
}

/// Removes regular files in `folder` last modified longer than `retention` ago; returns how many.
pub fn sweep_folder(folder: &Path, retention: Duration) -> std::io::Result<usize> {
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in std::fs::read_dir(folder)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        let age = meta.modified().ok().and_then(|m| now.duration_since(m).ok()).unwrap_or_default();
        if age > retention && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}
