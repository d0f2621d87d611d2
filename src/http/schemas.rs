//! Request and answer shapes for the OpenAPI document. The handlers read multipart forms field by field
//! (`http::upload::Form`) and answer `serde_json` values, so these types exist only to describe them;
//! `tests/api/api_docs.rs` validates live answers against the document so they cannot drift unnoticed.
#![allow(dead_code)]

use serde_json::{Map, Value};
use utoipa::ToSchema;

/// `meta` of every envelope.
#[derive(ToSchema)]
pub struct Meta {
    /// `app.version` of the config.
    api_version: String,
    /// `api.locale` of the config.
    locale: String,
    /// Also sent as the `X-Request-ID` header.
    request_id: String,
    /// UTC RFC 3339 with microseconds.
    requested_time: String,
}

/// The envelope of every JSON answer; `status_code` equals the HTTP status.
#[derive(ToSchema)]
pub struct Envelope<T: ToSchema> {
    data: T,
    message: String,
    meta: Meta,
    status_code: u16,
    /// Item count for list answers, else 0.
    total: u64,
}

/// `data` of a handled error. On `{prefix}/chat/...` paths `error_type` is the constant `Error` and
/// `error_class` carries the class.
#[derive(ToSchema)]
pub struct ErrorData {
    /// `ValidationError`, `FileProcessingError`, `UnsupportedFileTypeError`, `PayloadTooLarge`, … (or `Error`).
    error_type: String,
    error_class: String,
    /// Structured context (`field`, `missing_columns`, `allowed_extensions`, …) or null.
    #[schema(value_type = Object, nullable)]
    details: Option<Value>,
}

/// An error answer: `data` is the error (null for unknown routes and wrong methods).
#[derive(ToSchema)]
pub struct ErrorEnvelope {
    #[schema(nullable)]
    data: Option<ErrorData>,
    message: String,
    meta: Meta,
    status_code: u16,
    total: u64,
}

/// A JSON object whose keys depend on the request or the stored state.
#[derive(ToSchema)]
#[schema(value_type = Object)]
pub struct AnyObject(Map<String, Value>);

// ---------------------------------------------------------------------------------------------------
// Answers (`data` of the envelope)

#[derive(ToSchema)]
pub struct HealthData {
    /// Always `healthy` (liveness).
    status: String,
    uptime_seconds: u64,
    /// WebSocket counters (connections, subscriptions, events, rejections).
    #[schema(value_type = Object)]
    websocket: Value,
    /// HTTP request counters.
    #[schema(value_type = Object)]
    http: Value,
}

#[derive(ToSchema)]
pub struct ReadyData {
    ready: bool,
    /// Per check: `{"ok": true}` or `{"ok": false, "reason": …}`.
    #[schema(value_type = Object)]
    checks: Value,
}

/// A generated output file.
#[derive(ToSchema)]
pub struct DownloadData {
    /// Absolute URL of `{prefix}/files/downloads/{filename}`.
    download_url: String,
}

#[derive(ToSchema)]
pub struct FileInfoData {
    file_name: String,
    file_path: String,
    /// Sheet names (workbooks only).
    #[schema(nullable)]
    sheets: Option<Vec<String>>,
    rows: u64,
    columns: u64,
    column_names: Vec<String>,
    #[schema(value_type = Object)]
    data_types: Value,
    #[schema(value_type = Object)]
    inferred_types: Value,
    /// CSV only.
    #[schema(nullable)]
    delimiter: Option<String>,
    /// CSV only.
    #[schema(nullable)]
    encoding: Option<String>,
}

#[derive(ToSchema)]
pub struct ExtractionData {
    #[schema(value_type = Object)]
    extraction_info: Value,
    /// Column name → `{values, value_count, statistics?}`.
    #[schema(value_type = Object)]
    columns: Value,
    total_rows: u64,
    rows_extracted: u64,
}

#[derive(ToSchema)]
pub struct MapColumnsData {
    download_url: String,
    #[schema(value_type = Vec<Object>)]
    warnings: Vec<Value>,
}

#[derive(ToSchema)]
pub struct SearchData {
    download_url: String,
    total_rows: u64,
    filtered_rows: u64,
    conditions_applied: u64,
}

#[derive(ToSchema)]
pub struct NormalizationData {
    download_url: String,
    /// With `return_report=true`.
    output_file: Option<String>,
    /// With `return_report=true`.
    #[schema(value_type = Option<Object>)]
    report: Option<Value>,
}

#[derive(ToSchema)]
pub struct DatabasesData {
    databases: Vec<String>,
}

/// Statements inline, or only `download_url` with `return_file=true`.
#[derive(ToSchema)]
pub struct SqlData {
    download_url: Option<String>,
    success: Option<bool>,
    table_name: Option<String>,
    database_type: Option<String>,
    total_rows: Option<u64>,
    total_statements: Option<u64>,
    statements: Option<Vec<String>>,
    generated_at: Option<String>,
}

#[derive(ToSchema)]
pub struct JsonFileData {
    download_url: String,
    total_records: u64,
    /// Bytes written.
    file_size: u64,
}

/// `download_url` plus the binding statistics.
#[derive(ToSchema)]
pub struct BindData {
    download_url: String,
}

#[derive(ToSchema)]
pub struct ConversationListData {
    #[schema(value_type = Vec<Object>)]
    conversations: Vec<Value>,
    count: u64,
}

#[derive(ToSchema)]
pub struct ConversationData {
    chat_id: String,
}

#[derive(ToSchema)]
pub struct ChatIdData {
    chat_id: String,
}

#[derive(ToSchema)]
pub struct ChatUploadData {
    /// Path inside the conversation folder.
    file_path: String,
    filename: String,
    download_url: String,
}

/// Synchronous run: `results`, `output_files`, `job_id`; with `async`: `job_id`, `status`, `position` (202).
#[derive(ToSchema)]
pub struct ExecuteData {
    job_id: String,
    #[schema(value_type = Option<Vec<Object>>)]
    results: Option<Vec<Value>>,
    #[schema(value_type = Option<Vec<Object>>)]
    output_files: Option<Vec<Value>>,
    status: Option<String>,
    position: Option<u64>,
}

#[derive(ToSchema)]
pub struct JobListData {
    #[schema(value_type = Vec<Object>)]
    jobs: Vec<Value>,
    count: u64,
}

#[derive(ToSchema)]
pub struct JobData {
    job_id: String,
    status: String,
}

#[derive(ToSchema)]
pub struct DumpData {
    dump_file: String,
    download_url: String,
}

// ---------------------------------------------------------------------------------------------------
// Requests. Multipart text fields that hold JSON are documented as strings (that is what is sent).

#[derive(ToSchema)]
pub struct FileForm {
    /// The workbook or CSV file.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

#[derive(ToSchema)]
pub struct ExtractColumnsForm {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// JSON array of column names, e.g. `["name","age"]`.
    columns: String,
    /// Default false.
    remove_duplicates: Option<bool>,
    /// Default true.
    include_statistics: Option<bool>,
}

#[derive(ToSchema)]
pub struct ExtractToFileForm {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// JSON array of column names.
    columns: String,
    remove_duplicates: Option<bool>,
}

#[derive(ToSchema)]
pub struct MapColumnsForm {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// JSON object: target column → source column (or `{"source": …, "default": …}`).
    mapping: String,
    output_filename: Option<String>,
}

#[derive(ToSchema)]
pub struct SearchForm {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// JSON array of `{"column", "operator", "value"}`.
    conditions: String,
    /// `AND` (default) or `OR`.
    logic: Option<String>,
    /// `xlsx`, `csv` or `json`.
    output_format: Option<String>,
    output_filename: Option<String>,
}

#[derive(ToSchema)]
pub struct CsvConvertForm {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    sheet_name: Option<String>,
    output_filename: Option<String>,
}

#[derive(ToSchema)]
pub struct NormalizationForm {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// JSON array of `{"column_name", "normalization_type", "parameters"}`.
    normalizations: String,
    /// Default false.
    return_report: Option<bool>,
    output_filename: Option<String>,
}

#[derive(ToSchema)]
pub struct SqlForm {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    table_name: String,
    /// JSON object: SQL column → sheet column.
    column_mapping: String,
    /// JSON array of column names.
    columns: Option<String>,
    /// `postgresql` (default), `mysql`, `sqlite`, …
    database_type: Option<String>,
    batch_size: Option<i64>,
    /// JSON object describing an auto-increment column.
    auto_increment: Option<String>,
    template: Option<String>,
    include_transaction: Option<bool>,
    /// Write a file and answer its `download_url`.
    return_file: Option<bool>,
    remove_duplicates: Option<bool>,
}

#[derive(ToSchema)]
pub struct CustomSqlForm {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Statement template with `{column}` / `{column:type}` placeholders.
    template: String,
    sheet_name: Option<String>,
    remove_duplicates: Option<bool>,
    output_filename: Option<String>,
}

#[derive(ToSchema)]
pub struct JsonGenerateForm {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// JSON array of column names.
    columns: Option<String>,
    /// JSON object: JSON key → column.
    column_mapping: Option<String>,
    /// `include` (default), `exclude` or `default`.
    null_handling: Option<String>,
    array_wrapper: Option<bool>,
    pretty_print: Option<bool>,
    output_filename: Option<String>,
}

#[derive(ToSchema)]
pub struct JsonTemplateForm {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// JSON template with `{{placeholder}}` values.
    template: String,
    /// JSON object: placeholder → column.
    column_mapping: String,
    /// `array` (default), `single` or `nested`.
    aggregation_mode: Option<String>,
    pretty_print: Option<bool>,
    output_filename: Option<String>,
}

#[derive(ToSchema)]
pub struct BindSingleForm {
    #[schema(value_type = String, format = Binary)]
    source_file: Vec<u8>,
    #[schema(value_type = String, format = Binary)]
    bind_file: Vec<u8>,
    comparison_column: String,
    /// JSON array of columns copied from `bind_file`.
    bind_columns: String,
    output_filename: Option<String>,
}

#[derive(ToSchema)]
pub struct BindMultiForm {
    #[schema(value_type = String, format = Binary)]
    source_file: Vec<u8>,
    #[schema(value_type = String, format = Binary)]
    bind_file: Vec<u8>,
    /// JSON array of key columns.
    comparison_columns: String,
    /// JSON array of columns copied from `bind_file`.
    bind_columns: String,
    output_filename: Option<String>,
}

#[derive(ToSchema)]
pub struct FilesBindForm {
    #[schema(value_type = String, format = Binary)]
    source_file: Vec<u8>,
    #[schema(value_type = String, format = Binary)]
    target_file: Vec<u8>,
    /// JSON object: target column → source column.
    column_mapping: String,
    output_filename: Option<String>,
}

#[derive(ToSchema)]
pub struct FilesBindPreviewForm {
    #[schema(value_type = String, format = Binary)]
    source_file: Vec<u8>,
    #[schema(value_type = String, format = Binary)]
    target_file: Vec<u8>,
    /// JSON object: target column → source column.
    column_mapping: Option<String>,
}

#[derive(ToSchema)]
pub struct RestoreForm {
    /// A `.tar.gz` made by `dump`.
    #[schema(value_type = String, format = Binary)]
    dump_file: Vec<u8>,
    /// Restore under this id instead of the archived one.
    chat_id: Option<String>,
    /// Replace an existing conversation (default false).
    overwrite: Option<bool>,
}

#[derive(ToSchema)]
pub struct ExecuteRequest {
    /// Workflow steps: `{"operation", "arguments", "input_file"?}`.
    #[schema(value_type = Vec<Object>)]
    steps: Vec<Value>,
    /// Submit and answer 202 at once (also `?async=true`).
    #[schema(rename = "async")]
    run_async: Option<bool>,
}

#[derive(ToSchema)]
pub struct BotStartRequest {
    /// Reuse this id for the new conversation.
    chat_id: Option<String>,
}

#[derive(ToSchema)]
pub struct BotMessageRequest {
    /// At most 10 000 characters.
    message: String,
}

#[derive(ToSchema)]
pub struct BotConfirmRequest {
    confirmed: bool,
    /// Replacement steps for the pending workflow.
    #[schema(value_type = Option<Vec<Object>>)]
    modified_workflow: Option<Vec<Value>>,
}
