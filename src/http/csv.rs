//! `POST {prefix}/csv/...` endpoints (rest-api.md §7.3): info, conversion to a workbook, search and
//! operator suggestions. CSV rows are streamed from the upload straight into the output in one pass, so
//! memory does not grow with the file.

use actix_web::{web, HttpRequest};
use serde_json::json;

use crate::envelope::{download_url, ApiResponse};
use crate::error::blocking;
use crate::http::routes::{errors, Endpoint};
use crate::http::tables::{
    output_filename, output_target, search_request, search_response, search_target, workbook_style,
    INFO_ERROR_PREFIX,
};
use crate::http::upload::Form;
use crate::http::ApiResult;
use crate::ops::convert::{csv_file_to_xlsx, resolve_sheet_name};
use crate::ops::info::{csv_file_inferred_types, csv_file_info};
use crate::ops::search::{search_csv_file, suggest_operators};
use crate::table::names::base_name;
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

/// §7.3.1: size, column names and types, plus the delimiter and encoding the reader chose.
#[utoipa::path(post, path = "/csv/info", tag = "csv", request_body(content = crate::http::schemas::FileForm, content_type = "multipart/form-data"), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::FileInfoData>)))]
async fn info(state: web::Data<AppState>, form: Form) -> ApiResult {
    form.require_file("file")?;
    let config = state.config.clone();
    let info = blocking(move || {
        let file = form.require_file("file")?;
        Ok(csv_file_info(&file.client_name, file.path(), &config.file.supported_encodings)?)
    })
    .await
    .map_err(|e| e.prefixed(INFO_ERROR_PREFIX))?;
    Ok(ApiResponse::ok("CSV file information retrieved successfully", info))
}

/// §7.3.2: the CSV as a standard workbook whose data sheet is `sheet_name` (validated up front).
#[utoipa::path(post, path = "/csv/convert-to-excel", tag = "csv", request_body(content = crate::http::schemas::CsvConvertForm, content_type = "multipart/form-data"), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::DownloadData>)))]
async fn convert(req: HttpRequest, state: web::Data<AppState>, form: Form) -> ApiResult {
    form.require_file("file")?;
    let config = state.config.clone();
    let sheet_name = resolve_sheet_name(form.text("sheet_name"), &config.excel.default_sheet_name)?;
    let name = blocking(move || {
        let file = form.require_file("file")?;
        let base = base_name(&file.client_name);
        let user_name = output_filename(form.text("output_filename"));
        let target = output_target(&config, user_name, &[&base, "converted"], "xlsx")?;
        let style = workbook_style(&config, &sheet_name);
        csv_file_to_xlsx(file.path(), &config.file.supported_encodings, &target.path, &style)?;
        Ok(target.name)
    })
    .await?;
    crate::http::files::publish_output(&state, &name).await?;
    let url = download_url(&req, &state.config, &name);
    Ok(ApiResponse::ok("Converted to Excel file successfully", json!({ "download_url": url })))
}

/// §7.3.3: as `excel/search`, for a CSV file, with `csv` as the default output format.
#[utoipa::path(post, path = "/csv/search", tag = "csv", request_body(content = crate::http::schemas::SearchForm, content_type = "multipart/form-data"), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::SearchData>)))]
async fn search(req: HttpRequest, state: web::Data<AppState>, form: Form) -> ApiResult {
    let request = search_request(&form, OutputFormat::Csv)?;
    let config = state.config.clone();
    let (name, outcome) = blocking(move || {
        let file = form.require_file("file")?;
        let target = search_target(&config, &request)?;
        let outcome = search_csv_file(file.path(), &config.file.supported_encodings, &request, &target.path)?;
        Ok((target.name, outcome))
    })
    .await?;
    crate::http::files::publish_output(&state, &name).await?;
    Ok(search_response(&req, &state.config, &name, &outcome))
}

/// §7.3.4: as `excel/search/suggest-operators`, for a CSV file (types inferred while streaming).
#[utoipa::path(post, path = "/csv/search/suggest-operators", tag = "csv", request_body(content = crate::http::schemas::FileForm, content_type = "multipart/form-data"), responses((status = 200, description = "Operators per column", body = crate::http::schemas::Envelope<crate::http::schemas::AnyObject>)))]
async fn suggest(state: web::Data<AppState>, form: Form) -> ApiResult {
    form.require_file("file")?;
    let config = state.config.clone();
    let suggestions = blocking(move || {
        let file = form.require_file("file")?;
        let (columns, inferred) = csv_file_inferred_types(file.path(), &config.file.supported_encodings)?;
        Ok(suggest_operators(&columns, &inferred))
    })
    .await
    .map_err(|e| e.prefixed(INFO_ERROR_PREFIX))?;
    Ok(ApiResponse::ok("Operator suggestions generated successfully", suggestions))
}
