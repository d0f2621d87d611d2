//! `POST {prefix}/csv/...` endpoints (rest-api.md §7.3): info, conversion to a workbook, search and
//! operator suggestions. The CSV is parsed while it uploads (`Form::read_streaming`) and its rows go
//! straight into the output in one pass, so memory does not grow with the file. When text fields arrive
//! after the file (the work saw the request without them), the operation runs again on the stored file.

use actix_web::{web, HttpRequest};
use serde_json::json;

use crate::config::Config;
use crate::envelope::{download_url, ApiResponse};
use crate::error::{blocking, ApiError};
use crate::http::routes::{errors, Endpoint};
use crate::http::tables::{
    output_filename, output_target, search_params, search_response, search_target, workbook_style,
    INFO_ERROR_PREFIX,
};
use crate::http::upload::Form;
use crate::http::ApiResult;
use crate::ops::convert::{csv_file_to_xlsx, resolve_sheet_name};
use crate::ops::info::{csv_file_inferred_types, csv_file_info};
use crate::ops::search::{search_csv_file, suggest_operators, SearchOutcome, SearchRequest};
use crate::table::names::base_name;
use crate::table::read::CsvInput;
use crate::table::write::OutputFormat;
use crate::AppState;

pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint::post("/csv/info", || web::post().to(info), errors::UPLOAD),
    Endpoint::post("/csv/convert-to-excel", || web::post().to(convert), errors::UPLOAD),
    Endpoint::post("/csv/search", || web::post().to(search), errors::UPLOAD),
    Endpoint::post("/csv/search/suggest-operators", || web::post().to(suggest), errors::UPLOAD),
];

/// The documented operations of this module (see `http::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(info, convert, search, suggest))]
pub struct Doc;

/// The text fields each streamed operation reads (see `Form::read_streaming`).
const CONVERT_FIELDS: &[&str] = &["sheet_name", "output_filename"];
const SEARCH_FIELDS: &[&str] = &["conditions", "logic", "output_format", "output_filename"];

/// Removes the output of a run whose request changed after it started (a field it reads came after the
/// file); the run on the stored file writes its own.
fn remove_output(config: &Config, name: &str) {
    if let Some(path) = crate::table::names::resolve_in_folder(&config.file.output_folder, name) {
        if let Err(e) = std::fs::remove_file(&path) {
            log::warn!("cannot remove the superseded output {name}: {e}");
        }
    }
}

/// Runs `work` on the CSV while it uploads or, when a field it reads came after the file (it saw the
/// request without it), on the stored file once the body is in: `discard` first drops what the early
/// run wrote. The outer error is the request's (body, form, missing file), the inner one the work's.
async fn on_csv<T, W>(
    req: &HttpRequest,
    payload: web::Payload,
    reads: &'static [&'static str],
    work: W,
    discard: impl FnOnce(T) + Send + 'static,
) -> Result<Result<T, ApiError>, ApiError>
where
    T: Send + 'static,
    W: Fn(&Form, &str, &mut dyn CsvInput) -> Result<T, ApiError> + Clone + Send + 'static,
{
    let early_work = work.clone();
    let read = Form::read_streaming(
        req,
        payload.into_inner(),
        "file",
        reads,
        move |form, client_name, mut input| early_work(form, client_name, &mut input),
    )
    .await?;
    if let Some(early) = read.early {
        return Ok(early);
    }
    let (form, superseded) = (read.form, read.superseded);
    form.require_file("file")?;
    Ok(blocking(move || {
        if let Some(superseded) = superseded {
            discard(superseded);
        }
        let file = form.require_file("file")?;
        work(&form, &file.client_name, &mut file.path())
    })
    .await)
}

/// §7.3.1: size, column names and types, plus the delimiter and encoding the reader chose.
#[utoipa::path(post, path = "/csv/info", tag = "csv", request_body(content = crate::http::schemas::FileForm, content_type = "multipart/form-data"), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::FileInfoData>)))]
async fn info(req: HttpRequest, state: web::Data<AppState>, payload: web::Payload) -> ApiResult {
    let encodings = state.config.file.supported_encodings.clone();
    let info = on_csv(
        &req,
        payload,
        &[],
        move |_, client_name, input| Ok(csv_file_info(client_name, input, &encodings)?),
        drop,
    )
    .await?
    .map_err(|e| e.prefixed(INFO_ERROR_PREFIX))?;
    Ok(ApiResponse::ok("CSV file information retrieved successfully", info))
}

/// §7.3.2: the CSV as a standard workbook whose data sheet is `sheet_name` (validated up front).
#[utoipa::path(post, path = "/csv/convert-to-excel", tag = "csv", request_body(content = crate::http::schemas::CsvConvertForm, content_type = "multipart/form-data"), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::DownloadData>)))]
async fn convert(req: HttpRequest, state: web::Data<AppState>, payload: web::Payload) -> ApiResult {
    let (config, on_superseded) = (state.config.clone(), state.config.clone());
    let name = on_csv(
        &req,
        payload,
        CONVERT_FIELDS,
        move |form, client_name, input| {
            let sheet_name = resolve_sheet_name(form.text("sheet_name"), &config.excel.default_sheet_name)?;
            convert_csv(&config, form, client_name, input, &sheet_name)
        },
        move |name| remove_output(&on_superseded, &name),
    )
    .await??;
    crate::http::files::publish_output(&state, &name).await?;
    let url = download_url(&req, &state.config, &name);
    Ok(ApiResponse::ok("Converted to Excel file successfully", json!({ "download_url": url })))
}

/// The conversion itself, on the stored file or the arriving upload; the output's name.
fn convert_csv(
    config: &Config,
    form: &Form,
    client_name: &str,
    input: impl CsvInput,
    sheet_name: &str,
) -> Result<String, ApiError> {
    let base = base_name(client_name);
    let user_name = output_filename(form.text("output_filename"));
    let target = output_target(config, user_name, &[&base, "converted"], "xlsx")?;
    let style = workbook_style(config, sheet_name);
    csv_file_to_xlsx(input, &config.file.supported_encodings, &target.path, &style)?;
    Ok(target.name)
}

/// §7.3.3: as `excel/search`, for a CSV file, with `csv` as the default output format.
#[utoipa::path(post, path = "/csv/search", tag = "csv", request_body(content = crate::http::schemas::SearchForm, content_type = "multipart/form-data"), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::SearchData>)))]
async fn search(req: HttpRequest, state: web::Data<AppState>, payload: web::Payload) -> ApiResult {
    let (config, on_superseded) = (state.config.clone(), state.config.clone());
    let (name, outcome) = on_csv(
        &req,
        payload,
        SEARCH_FIELDS,
        move |form, _, input| {
            let request = search_params(form, OutputFormat::Csv)?;
            search_csv(&config, &request, input)
        },
        move |(name, _)| remove_output(&on_superseded, &name),
    )
    .await??;
    crate::http::files::publish_output(&state, &name).await?;
    Ok(search_response(&req, &state.config, &name, &outcome))
}

/// The search itself, on the stored file or the arriving upload; the output's name and the counts.
fn search_csv(
    config: &Config,
    request: &SearchRequest,
    input: impl CsvInput,
) -> Result<(String, SearchOutcome), ApiError> {
    let target = search_target(config, request)?;
    let outcome = search_csv_file(input, &config.file.supported_encodings, request, &target.path)?;
    Ok((target.name, outcome))
}

/// §7.3.4: as `excel/search/suggest-operators`, for a CSV file (types inferred while streaming).
#[utoipa::path(post, path = "/csv/search/suggest-operators", tag = "csv", request_body(content = crate::http::schemas::FileForm, content_type = "multipart/form-data"), responses((status = 200, description = "Operators per column", body = crate::http::schemas::Envelope<crate::http::schemas::AnyObject>)))]
async fn suggest(req: HttpRequest, state: web::Data<AppState>, payload: web::Payload) -> ApiResult {
    let encodings = state.config.file.supported_encodings.clone();
    let suggestions = on_csv(
        &req,
        payload,
        &[],
        move |_, _, input| {
            let (columns, inferred) = csv_file_inferred_types(input, &encodings)?;
            Ok(suggest_operators(&columns, &inferred))
        },
        drop,
    )
    .await?
    .map_err(|e| e.prefixed(INFO_ERROR_PREFIX))?;
    Ok(ApiResponse::ok("Operator suggestions generated successfully", suggestions))
}
