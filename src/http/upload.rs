//! Streamed `multipart/form-data` parsing: file parts go straight to uniquely named temporary files in the
//! upload folder (deleted when the request ends), text parts are collected, and the whole body is counted
//! against the size limit (413) while it streams — nothing is buffered whole in memory.
//!
//! [`Form::read_streaming`] also hands one file part to blocking work while it arrives (CSV parsed as it
//! uploads): its chunks go through a bounded channel to the work, which spools them to the same temporary
//! file as it reads them, so the form ends up exactly as [`Form::read`] leaves it.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use actix_multipart::Multipart;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::admission::{start_blocking, BlockingTask};
use crate::error::ApiError;
use crate::table::names::client_extension;
use crate::table::read::{ArrivingFile, NextChunk};
use crate::AppState;

/// Largest accepted text part; templates and mappings are far smaller.
const MAX_TEXT_FIELD_BYTES: usize = 8 * 1024 * 1024;
/// Largest number of parts in one request.
const MAX_PARTS: usize = 256;
/// File parts are written in batches of at least this size, one blocking-pool call per batch.
const WRITE_BATCH_BYTES: usize = 1024 * 1024;
/// Chunks of a streamed file part in flight between the receiving task and the work that parses it
/// (each chunk is what one read of the connection brought, tens of KiB: a few MiB at most).
const STREAM_CHANNEL_CHUNKS: usize = 64;

/// Blocking work that reads a file part as it arrives: it gets the text fields received before the part,
/// the client's file name and the arriving bytes.
pub type StreamWork<T> = Box<dyn FnOnce(&Form, &str, ArrivingFile) -> Result<T, ApiError> + Send>;

/// What [`Form::read_streaming`] returns: the whole form, and the streamed work's result when it is the
/// answer (the work ran, and none of the fields it reads arrived after the file part).
pub struct StreamedForm<T> {
    pub form: Form,
    pub early: Option<Result<T, ApiError>>,
    /// The work's result when a field it reads arrived too late: not the answer, its output is the
    /// caller's to remove before it runs its ordinary path.
    pub superseded: Option<T>,
}

/// The streaming of one file part, while the form is read.
struct Streaming<T> {
    field: &'static str,
    /// The text fields the work reads.
    reads: &'static [&'static str],
    work: Option<StreamWork<T>>,
    task: Option<BlockingTask<Result<T, ApiError>>>,
    /// Those of `reads` received before the part began.
    known_at_start: Vec<&'static str>,
}

impl<T: Send + 'static> Streaming<T> {
    /// Starts the work on the part now beginning; returns the sender of its chunks (`None` ends them).
    fn start(
        &mut self,
        form: &Form,
        client_name: &str,
        spool: std::fs::File,
        spool_path: PathBuf,
    ) -> Option<tokio::sync::mpsc::Sender<Option<Bytes>>> {
        let work = self.work.take()?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<Bytes>>(STREAM_CHANNEL_CHUNKS);
        let seen =
            Form { files: Vec::new(), fields: form.fields.clone(), empty_files: form.empty_files.clone() };
        let client_name = client_name.to_string();
        self.known_at_start = self.reads.iter().copied().filter(|r| form.fields.contains_key(*r)).collect();
        self.task = Some(start_blocking(move || {
            let next_chunk: NextChunk = Box::new(move || match rx.blocking_recv() {
                Some(chunk) => Ok(chunk),
                // The receiving side gave up (body error, limit, client gone): never a short file.
                None => {
                    Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "the upload ended early"))
                }
            });
            let input = ArrivingFile::new(next_chunk, spool, spool_path);
            let result = work(&seen, &client_name, input.clone());
            // The stored file must be whole, for a run on it when later fields change the request.
            input.receive_rest()?;
            result
        }));
        Some(tx)
    }

    /// The work's outcome (it has received the whole part, or its sender is gone).
    async fn outcome(&mut self) -> Option<Result<T, ApiError>> {
        let task = self.task.take()?;
        Some(task.await.unwrap_or_else(|e| Err(ApiError::internal("Internal server error", e))))
    }
}

/// One uploaded file, on disk under a unique temporary name; the file is removed when this is dropped.
#[derive(Debug)]
pub struct UploadedFile {
    pub field: String,
    /// The file name as the client sent it (unsanitized; use `table::names` before showing or storing it).
    pub client_name: String,
    pub size: u64,
    path: tempfile::TempPath,
}

impl UploadedFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the file on disk (e.g. moved into chat storage) by handing its path to the caller.
    pub fn into_kept_path(self) -> Result<PathBuf, ApiError> {
        self.path.keep().map_err(|e| ApiError::internal("Failed to store upload", e))
    }
}

/// A parsed multipart form.
#[derive(Debug, Default)]
pub struct Form {
    files: Vec<UploadedFile>,
    fields: HashMap<String, String>,
    /// File parts sent with an empty filename (dropped, but some endpoints report them differently).
    empty_files: Vec<String>,
}

impl Form {
    /// Parses the request body as multipart, with `max_body_bytes` for the whole body. A body that is not
    /// multipart yields an empty form (the endpoint then reports the missing file, as the reference does).
    pub async fn read(
        req: &HttpRequest,
        payload: Payload,
        upload_dir: &Path,
        max_body_bytes: u64,
    ) -> Result<Form, ApiError> {
        Self::read_buffered(req, payload, upload_dir, max_body_bytes, WRITE_BATCH_BYTES).await
    }

    /// [`Form::read`] with uploaded files written in batches of `write_batch_bytes` (the chat endpoints use
    /// `chat_workflows.file.chunk_size_bytes`).
    pub async fn read_buffered(
        req: &HttpRequest,
        payload: Payload,
        upload_dir: &Path,
        max_body_bytes: u64,
        write_batch_bytes: usize,
    ) -> Result<Form, ApiError> {
        let none = None::<&mut Streaming<()>>;
        Self::read_checked(req, payload, upload_dir, max_body_bytes, write_batch_bytes, None, none).await
    }

    /// Reads the form of a processing endpoint (as its extractor does) while `work` reads the file part
    /// `field` as it arrives, on the heavy lane inside an admitted request. `reads` names the text fields
    /// the work reads: it sees those sent before the file part (Python `requests` sends its `data`
    /// first). The form's file is stored as always, so the caller runs its ordinary path on it when
    /// `early` is `None`: no such part, or one of `reads` arrived after it. A body that fails (413,
    /// broken multipart, client gone) fails the read, after the work has stopped and removed what it
    /// wrote.
    pub async fn read_streaming<T: Send + 'static>(
        req: &HttpRequest,
        payload: Payload,
        field: &'static str,
        reads: &'static [&'static str],
        work: impl FnOnce(&Form, &str, ArrivingFile) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<StreamedForm<T>, ApiError> {
        let state = app_state(req)?;
        let limit = state.config.max_body_bytes();
        let allowed = state.config.file.allowed_extensions.as_slice();
        let upload_dir = &state.config.file.upload_folder;
        let mut streaming =
            Streaming { field, reads, work: Some(Box::new(work)), task: None, known_at_start: Vec::new() };
        let read = Form::read_checked(
            req,
            payload,
            upload_dir,
            limit,
            WRITE_BATCH_BYTES,
            Some(allowed),
            Some(&mut streaming),
        )
        .await;
        // Wait for the work in every case, so that a failed request leaves nothing behind when answered.
        let outcome = streaming.outcome().await;
        let form = read?;
        let complete =
            reads.iter().all(|r| form.fields.contains_key(*r) == streaming.known_at_start.contains(r));
        Ok(match outcome {
            Some(early) if complete => StreamedForm { form, early: Some(early), superseded: None },
            Some(early) => StreamedForm { form, early: None, superseded: early.ok() },
            None => StreamedForm { form, early: None, superseded: None },
        })
    }

    /// The reading itself. With `allowed_extensions`, a file part whose name has an unlisted extension is
    /// refused from its part header (415), before any of its bytes are stored. With `streaming`, its file
    /// part goes to its work as it arrives (see [`Form::read_streaming`]).
    async fn read_checked<T: Send + 'static>(
        req: &HttpRequest,
        payload: Payload,
        upload_dir: &Path,
        max_body_bytes: u64,
        write_batch_bytes: usize,
        allowed_extensions: Option<&[String]>,
        mut streaming: Option<&mut Streaming<T>>,
    ) -> Result<Form, ApiError> {
        let too_large = || {
            ApiError::payload_too_large(format!(
                "Request body too large: the limit is {} MB",
                max_body_bytes / (1024 * 1024)
            ))
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max_body_bytes) {
            return Err(too_large());
        }
        let is_multipart =
            req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
                v.to_ascii_lowercase().starts_with("multipart/form-data") && v.contains("boundary=")
            });
        if !is_multipart {
            return Ok(Form::default());
        }
        std::fs::create_dir_all(upload_dir)?;

        let mut multipart = Multipart::new(req.headers(), payload);
        let mut form = Form::default();
        let mut total: u64 = 0;
        let mut parts = 0usize;
        while let Some(field) = multipart.next().await {
            let mut field = field.map_err(|e| multipart_error(&e, too_large))?;
            parts += 1;
            if parts > MAX_PARTS {
                return Err(ApiError::bad_request(format!("Too many form parts (at most {MAX_PARTS})")));
            }
            let disposition = field.content_disposition().cloned();
            let name = disposition.as_ref().and_then(|d| d.get_name()).unwrap_or("").to_string();
            let filename = disposition.as_ref().and_then(|d| d.get_filename()).map(str::to_string);
            match filename {
                Some(client_name) => {
                    if let Some(allowed) = allowed_extensions {
                        refuse_unlisted_extension(&name, &client_name, allowed)?;
                    }
                    let temp = tempfile::Builder::new()
                        .prefix(crate::leftovers::UPLOAD_PREFIX)
                        .tempfile_in(upload_dir)
                        .map_err(|e| ApiError::internal("Failed to store upload", e))?;
                    let (file, temp_path) = temp.into_parts();
                    let streamed = match streaming.as_deref_mut() {
                        Some(s)
                            if s.field == name && !client_name.is_empty() && form.file(&name).is_none() =>
                        {
                            s.start(&form, &client_name, file.try_clone()?, temp_path.to_path_buf())
                                .map(|tx| (s, tx))
                        }
                        _ => None,
                    };
                    let size = match streamed {
                        Some((s, tx)) => {
                            drop(file);
                            let mut size: u64 = 0;
                            while let Some(chunk) = field.next().await {
                                let chunk = chunk.map_err(|e| multipart_error(&e, too_large))?;
                                count_chunk(&chunk, &mut size, &mut total, max_body_bytes, too_large)?;
                                if tx.send(Some(chunk)).await.is_err() {
                                    // The work stopped before the end of its part: only a failure does.
                                    return Err(match s.outcome().await {
                                        Some(Err(e)) => e,
                                        _ => ApiError::internal(
                                            "Failed to store upload",
                                            "the upload's reader stopped",
                                        ),
                                    });
                                }
                            }
                            // Ignored if the work already ended (it failed; its outcome says how).
                            let _ = tx.send(None).await;
                            size
                        }
                        None => {
                            // The received chunks themselves are batched (no copy) and written with std
                            // I/O on the blocking pool: one copy per byte, into the kernel. One batch is
                            // written while the next is received, as with an async file.
                            let mut file = FileWriter::Idle(file);
                            let mut batch: Vec<Bytes> = Vec::new();
                            let mut batch_bytes = 0usize;
                            let mut size: u64 = 0;
                            while let Some(chunk) = field.next().await {
                                let chunk = chunk.map_err(|e| multipart_error(&e, too_large))?;
                                count_chunk(&chunk, &mut size, &mut total, max_body_bytes, too_large)?;
                                batch_bytes += chunk.len();
                                batch.push(chunk);
                                if batch_bytes >= write_batch_bytes {
                                    file = file.write(std::mem::take(&mut batch)).await?;
                                    batch_bytes = 0;
                                }
                            }
                            if !batch.is_empty() {
                                file = file.write(batch).await?;
                            }
                            drop(file.finish().await?);
                            size
                        }
                    };
                    let upload = UploadedFile { field: name, client_name, size, path: temp_path };
                    // An empty filename means "no file" (rest-api.md §1.2); the temp file is dropped here.
                    if !upload.client_name.is_empty() {
                        form.files.push(upload);
                    } else {
                        form.empty_files.push(upload.field.clone());
                    }
                }
                None => {
                    let mut value = Vec::new();
                    while let Some(chunk) = field.next().await {
                        let chunk = chunk.map_err(|e| multipart_error(&e, too_large))?;
                        total += chunk.len() as u64;
                        if total > max_body_bytes {
                            return Err(too_large());
                        }
                        if value.len() + chunk.len() > MAX_TEXT_FIELD_BYTES {
                            return Err(ApiError::payload_too_large(format!(
                                "Form field '{name}' is larger than {} MB",
                                MAX_TEXT_FIELD_BYTES / (1024 * 1024)
                            )));
                        }
                        value.extend_from_slice(&chunk);
                    }
                    let text = String::from_utf8(value).map_err(|_| {
                        ApiError::validation(format!("Form field '{name}' is not valid UTF-8"))
                    })?;
                    // First occurrence wins, as with Flask's `request.form.get`.
                    form.fields.entry(name).or_insert(text);
                }
            }
        }
        Ok(form)
    }

    /// The file part `name`, if present with a non-empty filename.
    pub fn file(&self, name: &str) -> Option<&UploadedFile> {
        self.files.iter().find(|f| f.field == name)
    }

    /// True when a file part `name` was sent with an empty filename (and therefore dropped).
    pub fn has_empty_file(&self, name: &str) -> bool {
        self.empty_files.iter().any(|f| f == name)
    }

    /// The file part `name`, or 422 `No file uploaded`.
    pub fn require_file(&self, name: &str) -> Result<&UploadedFile, ApiError> {
        self.file(name).ok_or_else(|| {
            ApiError::validation("No file uploaded").with_details(serde_json::json!({ "field": name }))
        })
    }

    /// Takes ownership of a file part (to keep it beyond the request).
    pub fn take_file(&mut self, name: &str) -> Option<UploadedFile> {
        let index = self.files.iter().position(|f| f.field == name)?;
        Some(self.files.remove(index))
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// Text field, absent → `default`.
    pub fn text_or<'a>(&'a self, name: &str, default: &'a str) -> &'a str {
        self.text(name).unwrap_or(default)
    }

    /// Boolean field (rest-api.md §1.2): `true`, `1`, `yes`, `on` (case-insensitive, trimmed) are true.
    pub fn bool(&self, name: &str, default: bool) -> bool {
        match self.text(name) {
            None => default,
            Some(v) => matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on"),
        }
    }

    /// JSON field parsed into `T`; absent or empty text → `None`; malformed or wrong shape → 422 naming the field.
    pub fn json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ApiError> {
        match self.text(name) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Ok(None),
            Some(v) => serde_json::from_str(v).map(Some).map_err(|e| {
                ApiError::validation(format!("Invalid JSON in field '{name}': {e}"))
                    .with_details(serde_json::json!({ "field": name }))
            }),
        }
    }

    /// Integer field; absent → `None`; not an integer → 422 naming the field.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.text(name) {
            None => Ok(None),
            Some(v) => v.trim().parse::<i64>().map(Some).map_err(|_| {
                ApiError::validation(format!("Field '{name}' must be an integer, got '{v}'"))
                    .with_details(serde_json::json!({ "field": name }))
            }),
        }
    }
}

/// An upload's temporary file, with at most one batch being written on the blocking pool.
enum FileWriter {
    Idle(std::fs::File),
    Busy(tokio::task::JoinHandle<std::io::Result<std::fs::File>>),
}

impl FileWriter {
    /// Waits for the write in flight, if any, and hands the file back.
    async fn finish(self) -> Result<std::fs::File, ApiError> {
        match self {
            FileWriter::Idle(file) => Ok(file),
            FileWriter::Busy(task) => task
                .await
                .map_err(|e| ApiError::internal("Failed to store upload", e))?
                .map_err(ApiError::from),
        }
    }

    /// Starts appending `batch` once the previous batch is written.
    async fn write(self, batch: Vec<Bytes>) -> Result<FileWriter, ApiError> {
        let mut file = self.finish().await?;
        Ok(FileWriter::Busy(actix_web::rt::task::spawn_blocking(move || {
            for chunk in &batch {
                file.write_all(chunk)?;
            }
            Ok(file)
        })))
    }
}

fn app_state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal("Internal server error", "application state missing"))
}

/// Adds a received chunk to its part's size and the body's total; past the body limit, 413.
fn count_chunk(
    chunk: &Bytes,
    size: &mut u64,
    total: &mut u64,
    max_body_bytes: u64,
    too_large: impl Fn() -> ApiError,
) -> Result<(), ApiError> {
    *size += chunk.len() as u64;
    *total += chunk.len() as u64;
    match *total > max_body_bytes {
        true => Err(too_large()),
        false => Ok(()),
    }
}

fn multipart_error(err: &actix_multipart::MultipartError, too_large: impl Fn() -> ApiError) -> ApiError {
    let text = err.to_string();
    if text.to_ascii_lowercase().contains("overflow") || text.contains("too large") {
        return too_large();
    }
    ApiError::bad_request(format!("Malformed multipart body: {text}"))
}

/// Extractor for the processing endpoints: the whole body is limited by `file.max_file_size_mb`.
impl FromRequest for Form {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Form, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let state = app_state(&req)?;
            let limit = state.config.max_body_bytes();
            let allowed = state.config.file.allowed_extensions.as_slice();
            let upload_dir = &state.config.file.upload_folder;
            // A refusal drops the form, which deletes every file it had received.
            let none = None::<&mut Streaming<()>>;
            Form::read_checked(&req, payload, upload_dir, limit, WRITE_BATCH_BYTES, Some(allowed), none).await
        })
    }
}

/// rest-api.md §5.2 (new 2026-12): a file whose name has an extension outside `allowed`
/// (`file.allowed_extensions`) → 415 naming the allowed ones. A name without an extension passes; its content
/// decides, as for every file.
fn refuse_unlisted_extension(field: &str, client_name: &str, allowed: &[String]) -> Result<(), ApiError> {
    let Some(ext) = client_extension(client_name) else { return Ok(()) };
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(&ext)) {
        return Ok(());
    }
    Err(ApiError::unsupported_file_type(format!(
        "File type not allowed: {ext}. Allowed extensions: {}",
        allowed.join(", ")
    ))
    .with_details(serde_json::json!({
        "field": field,
        "extension": ext,
        "allowed_extensions": allowed,
    })))
}
