//! `POST {prefix}/excel/...` read-side endpoints (rest-api.md §7.2.1–7.2.4, §7.2.7–7.2.8): info, column
//! extraction (JSON and file), column mapping, search and operator suggestions. Each handler validates
//! the form in the documented order, then does all file work on the blocking pool.

use actix_web::{web, HttpRequest};
use serde_json::json;

use crate::engine::StepControl;
use crate::envelope::{download_url, ApiPieces, ApiResponse};
use crate::error::{blocking, ApiError};
use crate::http::routes::{errors, Endpoint};
use crate::http::tables::{
    object_field, output_filename, output_target, search_request, search_response, search_target,
    spool_uploaded_workbook, string_list_field, summarize_uploaded_workbook, workbook_style,
    INFO_ERROR_PREFIX,
};
use crate::http::upload::Form;
use crate::http::ApiResult;
use crate::ops::extract::{
    extract_spooled_columns, extract_spooled_to_file, ExtractParams, Extraction, JsonArrayText,
};
use crate::ops::info::excel_info;
use crate::ops::mapping::map_spooled_to_file;
use crate::ops::search::{search_rows_to_file, suggest_operators};
use crate::ops::{clock, require_columns, OpError};
use crate::table::names::base_name;
use crate::table::write::OutputFormat;
use crate::AppState;

pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint::post("/excel/info", || web::post().to(info), errors::UPLOAD),
    Endpoint::post("/excel/extract-columns", || web::post().to(extract), errors::UPLOAD),
    Endpoint::post("/excel/extract-columns-to-file", || web::post().to(extract_to_file), errors::UPLOAD),
    Endpoint::post("/excel/map-columns", || web::post().to(map), errors::UPLOAD),
    Endpoint::post("/excel/search", || web::post().to(search), errors::UPLOAD),
    Endpoint::post("/excel/search/suggest-operators", || web::post().to(suggest), errors::UPLOAD),
];

/// The documented operations of this module (see `http::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(info, extract, extract_to_file, map, search, suggest))]
pub struct Doc;

const NO_COLUMNS: &str = "No columns specified for extraction";

fn no_columns() -> ApiError {
    ApiError::validation(NO_COLUMNS).with_details(json!({ "field": "columns" }))
}

/// §7.2.1: sheets, size, column names and types of the first sheet.
#[utoipa::path(post, path = "/excel/info", tag = "excel", request_body(content = crate::http::schemas::FileForm, content_type = "multipart/form-data"), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::FileInfoData>)))]
async fn info(state: web::Data<AppState>, form: Form) -> ApiResult {
    form.require_file("file")?;
    let config = state.config.clone();
    let info = blocking(move || {
        let file = form.require_file("file")?;
        let sheet = summarize_uploaded_workbook(file, &config)?;
        Ok(excel_info(&file.client_name, &sheet))
    })
    .await
    .map_err(|e| e.prefixed(INFO_ERROR_PREFIX))?;
    Ok(ApiResponse::ok("File information retrieved successfully", info))
}

/// §7.2.2: the requested columns' values (and statistics) as JSON; every requested column must exist
/// (422 naming the missing and the available ones), unlike the workflow step, which skips unknown names.
#[utoipa::path(post, path = "/excel/extract-columns", tag = "excel", request_body(content = crate::http::schemas::ExtractColumnsForm, content_type = "multipart/form-data"), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::ExtractionData>)))]
async fn extract(state: web::Data<AppState>, form: Form) -> ApiResult<ApiPieces> {
    form.require_file("file")?;
    let columns = string_list_field(form.text("columns"), "columns")?;
    if columns.is_empty() {
        return Err(no_columns());
    }
    let params = ExtractParams {
        columns,
        remove_duplicates: form.bool("remove_duplicates", false),
        include_statistics: form.bool("include_statistics", true),
    };
    let config = state.config.clone();
    blocking(move || {
        let table = spool_uploaded_workbook(form.require_file("file")?, &config)?;
        require_columns(&table.columns, params.columns.iter().map(String::as_str))?;
        let extraction: Extraction<JsonArrayText> =
            extract_spooled_columns(table, &params, clock::now_iso(), &StepControl::NONE)?;
        Ok(ApiPieces { message: extraction.message(), data: extraction.into_sorted_json() })
    })
    .await
}

/// §7.2.3: the requested columns (all must exist) written to `extracted_columns_{ts}_{hex}.xlsx`.
#[utoipa::path(post, path = "/excel/extract-columns-to-file", tag = "excel", request_body(content = crate::http::schemas::ExtractToFileForm, content_type = "multipart/form-data"), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::DownloadData>)))]
async fn extract_to_file(req: HttpRequest, state: web::Data<AppState>, form: Form) -> ApiResult {
    form.require_file("file")?;
    let columns = string_list_field(form.text("columns"), "columns")?;
    if columns.is_empty() {
        return Err(no_columns());
    }
    let remove_duplicates = form.bool("remove_duplicates", false);
    let config = state.config.clone();
    let name = blocking(move || {
        let table = spool_uploaded_workbook(form.require_file("file")?, &config)?;
        // Checked before the output is named, as before: a bad column leaves nothing behind.
        require_columns(&table.columns, columns.iter().map(String::as_str))?;
        let target = output_target(&config, None, &["extracted_columns"], "xlsx")?;
        let style = workbook_style(&config, "Sheet1");
        let none = StepControl::NONE;
        extract_spooled_to_file(table, &columns, remove_duplicates, &target.path, &style, &none)?;
        Ok(target.name)
    })
    .await?;
    crate::http::files::publish_output(&state, &name).await?;
    let url = download_url(&req, &state.config, &name);
    Ok(ApiResponse::ok("Extracted Excel file generated successfully", json!({ "download_url": url })))
}

/// §7.2.4: a new workbook built from `mapping` (new column → rule), named `{base}_mapped_{ts}_{hex}.xlsx`.
#[utoipa::path(post, path = "/excel/map-columns", tag = "excel", request_body(content = crate::http::schemas::MapColumnsForm, content_type = "multipart/form-data"), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::MapColumnsData>)))]
async fn map(req: HttpRequest, state: web::Data<AppState>, form: Form) -> ApiResult {
    form.require_file("file")?;
    let mapping = object_field(form.text("mapping"), "mapping")?;
    if mapping.is_empty() {
        return Err(
            OpError::validation_with("No column mapping provided", json!({ "field": "mapping" })).into()
        );
    }
    let config = state.config.clone();
    let (name, warnings) = blocking(move || {
        let file = form.require_file("file")?;
        let table = spool_uploaded_workbook(file, &config)?;
        let base = base_name(&file.client_name);
        let target = output_target(
            &config,
            output_filename(form.text("output_filename")),
            &[&base, "mapped"],
            "xlsx",
        )?;
        let style = workbook_style(&config, &config.excel.default_sheet_name);
        let warnings = map_spooled_to_file(table, &mapping, &target.path, &style, &StepControl::NONE)?;
        Ok((target.name, warnings))
    })
    .await?;
    crate::http::files::publish_output(&state, &name).await?;
    let url = download_url(&req, &state.config, &name);
    // The reference's message for this endpoint is the extraction one (sic).
    Ok(ApiResponse::ok(
        "Extracted Excel file generated successfully",
        json!({ "download_url": url, "warnings": warnings }),
    ))
}

/// §7.2.7: rows matching the conditions, written as xlsx (default), csv or json.
#[utoipa::path(post, path = "/excel/search", tag = "excel", request_body(content = crate::http::schemas::SearchForm, content_type = "multipart/form-data"), responses((status = 200, description = "Success", body = crate::http::schemas::Envelope<crate::http::schemas::SearchData>)))]
async fn search(req: HttpRequest, state: web::Data<AppState>, form: Form) -> ApiResult {
    let request = search_request(&form, OutputFormat::Xlsx)?;
    let config = state.config.clone();
    let (name, outcome) = blocking(move || {
        let mut table = spool_uploaded_workbook(form.require_file("file")?, &config)?;
        let compiled = request.compile(&table.columns)?;
        let target = search_target(&config, &request)?;
        let total = table.rows.len() as u64;
        let rows = &mut table.rows.reader()?;
        let outcome = search_rows_to_file(
            &table.columns,
            rows,
            total,
            &compiled,
            request.format,
            &target.path,
            &StepControl::NONE,
        )?;
        Ok((target.name, outcome))
    })
    .await?;
    crate::http::files::publish_output(&state, &name).await?;
    Ok(search_response(&req, &state.config, &name, &outcome))
}

/// §7.2.8: per column, the storage type, the operators to offer and the content-based type.
#[utoipa::path(post, path = "/excel/search/suggest-operators", tag = "excel", request_body(content = crate::http::schemas::FileForm, content_type = "multipart/form-data"), responses((status = 200, description = "Operators per column", body = crate::http::schemas::Envelope<crate::http::schemas::AnyObject>)))]
async fn suggest(state: web::Data<AppState>, form: Form) -> ApiResult {
    form.require_file("file")?;
    let config = state.config.clone();
    let suggestions = blocking(move || {
        let sheet = summarize_uploaded_workbook(form.require_file("file")?, &config)?;
        Ok(suggest_operators(&sheet.columns, &sheet.inferred))
    })
    .await
    .map_err(|e| e.prefixed(INFO_ERROR_PREFIX))?;
    Ok(ApiResponse::ok("Operator suggestions generated successfully", suggestions))
}
