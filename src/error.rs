//! The HTTP-layer error: every failure a handler can return, and the one place that maps each kind to a
//! status code and `error_type`. Lower layers (table, ops, chat) have their own error enums with a `From`
//! conversion into `ApiError`, so the mapping to the wire happens exactly once.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};

use crate::ops::OpError;
use crate::table::TableError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 422: missing or invalid request fields, unknown columns, invalid options.
    Validation,
    /// 400: malformed request (unparseable JSON body, broken multipart).
    BadRequest,
    /// 400: a file could not be read, parsed or written.
    FileProcessing,
    /// 415: the uploaded content is not the kind the endpoint needs.
    UnsupportedFileType,
    /// 401: REST token authentication failed.
    Unauthorized,
    /// 404: unknown route, conversation, job or file.
    NotFound,
    /// 405: known path, wrong method.
    MethodNotAllowed,
    /// 409: duplicate id, restore over an existing conversation, forbidden state transition.
    Conflict,
    /// 408: a request body that arrives too slowly (below the minimum transfer rate).
    RequestTimeout,
    /// 413: body, upload or decompressed content over its limit.
    PayloadTooLarge,
    /// 416: a download's `Range` lies outside the file (the answer keeps `Content-Range: bytes */len`).
    RangeNotSatisfiable,
    /// 429: request rate limit.
    RateLimited,
    /// 500: unexpected failure; the message is generic, the cause goes to the log.
    Internal,
    /// 503: not ready (storage not writable, database unreachable).
    Unavailable,
    /// 507: an output could not be written because the disk is full (the partial output is removed).
    InsufficientStorage,
}

impl ErrorKind {
    /// The class of an answer that was given only a status (bot rejections); 400 is `BadRequest`.
    pub fn from_status(status: u16) -> ErrorKind {
        match status {
            401 => ErrorKind::Unauthorized,
            404 => ErrorKind::NotFound,
            405 => ErrorKind::MethodNotAllowed,
            408 => ErrorKind::RequestTimeout,
            409 => ErrorKind::Conflict,
            413 => ErrorKind::PayloadTooLarge,
            416 => ErrorKind::RangeNotSatisfiable,
            415 => ErrorKind::UnsupportedFileType,
            422 => ErrorKind::Validation,
            429 => ErrorKind::RateLimited,
            503 => ErrorKind::Unavailable,
            507 => ErrorKind::InsufficientStorage,
            s if s >= 500 => ErrorKind::Internal,
            _ => ErrorKind::BadRequest,
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::Validation => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::BadRequest | ErrorKind::FileProcessing => StatusCode::BAD_REQUEST,
            ErrorKind::UnsupportedFileType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
        }
    }

    /// The `data.error_type` string of the envelope (rest-api.md §4.1).
    pub fn error_type(self) -> &'static str {
        match self {
            ErrorKind::Validation => "ValidationError",
            ErrorKind::BadRequest => "BadRequest",
            ErrorKind::FileProcessing => "FileProcessingError",
            ErrorKind::UnsupportedFileType => "UnsupportedFileTypeError",
            ErrorKind::Unauthorized => "Unauthorized",
            ErrorKind::NotFound => "NotFound",
            ErrorKind::MethodNotAllowed => "MethodNotAllowed",
            ErrorKind::Conflict => "Conflict",
            ErrorKind::RequestTimeout => "RequestTimeout",
            ErrorKind::PayloadTooLarge => "PayloadTooLarge",
            ErrorKind::RangeNotSatisfiable => "RangeNotSatisfiable",
            ErrorKind::RateLimited => "RateLimited",
            ErrorKind::Internal => "InternalError",
            ErrorKind::Unavailable => "ServiceUnavailable",
            ErrorKind::InsufficientStorage => "InsufficientStorage",
        }
    }
}

/// An error answered with the JSON error envelope. `cause` is logged with the request id, never sent.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    pub details: Option<Box<Value>>,
    pub cause: Option<String>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError { kind, message: message.into(), details: None, cause: None }
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Validation, message)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }
    pub fn file_processing(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::FileProcessing, message)
    }
    pub fn unsupported_file_type(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::UnsupportedFileType, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PayloadTooLarge, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, message)
    }
    /// A 500 with a generic public message; `cause` is kept for the log only.
    pub fn internal(public_message: impl Into<String>, cause: impl std::fmt::Display) -> Self {
        ApiError {
            kind: ErrorKind::Internal,
            message: public_message.into(),
            details: None,
            cause: Some(cause.to_string()),
        }
    }
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(Box::new(details));
        self
    }
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.kind.error_type(), self.status().as_u16(), self.message)?;
        if let Some(cause) = &self.cause {
            write!(f, "; cause: {cause}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    /// The body is rendered by the request-context middleware, which knows the request id and the
    /// envelope metadata; this placeholder is only seen if that middleware is missing.
    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status()).finish()
    }
}

impl From<std::io::Error> for ApiError {
    fn from(err: std::io::Error) -> Self {
        ApiError::from_io(&err)
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(err: actix_web::error::BlockingError) -> Self {
        ApiError::internal("Internal server error", err)
    }
}

impl ApiError {
    /// An I/O failure is a 500, except a text output stopped at `file.max_output_mb` (413) and a full
    /// disk (507).
    pub fn from_io(err: &std::io::Error) -> ApiError {
        if let Some(max_mb) = crate::table::write::output_cap_reached(err) {
            return ApiError::from_table(&TableError::OutputTooLarge { max_mb });
        }
        if crate::table::error::is_storage_full(err) {
            let mut e = ApiError::from_table(&TableError::StorageFull);
            e.cause = Some(err.to_string());
            return e;
        }
        ApiError::internal("Internal server error", err)
    }

    /// The single mapping of table-layer errors to statuses (the variants document the same).
    pub fn from_table(err: &TableError) -> ApiError {
        let message = err.to_string();
        match err {
            TableError::ReadExcel(_) | TableError::ReadCsv(_) | TableError::Encoding(_) => {
                ApiError::file_processing(message)
            }
            TableError::WriteExcel(_) | TableError::WriteFile(_) => ApiError::file_processing(message),
            TableError::UnsupportedKind { .. } => ApiError::unsupported_file_type(message),
            TableError::TooLarge(_) => ApiError::payload_too_large(message),
            TableError::OutputTooLarge { max_mb } => ApiError::payload_too_large(message)
                .with_details(json!({"limit_mb": max_mb, "config_key": "file.max_output_mb"})),
            TableError::CompressionRatio { part, ratio, max_ratio } => ApiError::payload_too_large(message)
                .with_details(json!({
                    "part": part,
                    "ratio": ratio,
                    "max_ratio": max_ratio,
                    "config_key": "file.max_compression_ratio",
                })),
            TableError::CellTooLong { cell, characters, max_characters } => ApiError::validation(message)
                .with_details(
                    json!({"cell": cell, "characters": characters, "max_characters": max_characters}),
                ),
            TableError::TooManyColumns { row, max_columns } => {
                ApiError::validation(message).with_details(json!({"row": row, "max_columns": max_columns}))
            }
            TableError::FieldTooLong { row, column, max_characters } => ApiError::validation(message)
                .with_details(json!({"row": row, "column": column, "max_characters": max_characters})),
            TableError::UnsupportedEncoding(encoding) => {
                ApiError::unsupported_file_type(message).with_details(json!({"encoding": encoding}))
            }
            TableError::TooManyCells { rows, columns, max_cells } => ApiError::validation(message)
                .with_details(json!({"rows": rows, "columns": columns, "max_cells": max_cells})),
            TableError::SheetNotFound { name, available } => ApiError::validation(message)
                .with_details(json!({"sheet_name": name, "available_sheets": available})),
            TableError::InvalidSheetName { name, reason } => ApiError::validation(message)
                .with_details(json!({"field": "sheet_name", "sheet_name": name, "reason": reason})),
            TableError::Cancelled => ApiError::new(ErrorKind::Unavailable, message),
            TableError::StorageFull => ApiError::new(ErrorKind::InsufficientStorage, message),
            TableError::Io(e) => ApiError::from_io(e),
        }
    }

    /// The single mapping of operation-layer errors to statuses.
    pub fn from_op(err: &OpError) -> ApiError {
        match err {
            OpError::Validation { message, details } => {
                let e = ApiError::validation(message.clone());
                match details {
                    Some(d) => e.with_details(d.clone()),
                    None => e,
                }
            }
            OpError::Generation(message) => ApiError::file_processing(message.clone()),
            OpError::Table(t) => ApiError::from_table(t),
            OpError::Io(e) => ApiError::from_io(e),
        }
    }

    /// Prefixes the message (e.g. `Failed to get file info: ` on the info endpoints), keeping kind and details.
    pub fn prefixed(mut self, prefix: &str) -> ApiError {
        self.message = format!("{prefix}{}", self.message);
        self
    }
}

impl From<TableError> for ApiError {
    fn from(err: TableError) -> Self {
        ApiError::from_table(&err)
    }
}

impl From<OpError> for ApiError {
    fn from(err: OpError) -> Self {
        ApiError::from_op(&err)
    }
}

/// Runs blocking work (file parsing, SQLite, archives) on the blocking pool and flattens the join error.
pub async fn blocking<T, F>(work: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    // Inside an admitted heavy request this runs on the heavy lane (see `crate::admission`).
    crate::admission::run_blocking(work).await.map_err(|e| ApiError::internal("Internal server error", e))?
}
